//! The HTTP client every HTTP-speaking adapter sends with (the generic `http` provider and
//! the cloud SMS adapters), and the one place a request's transport is turned into an answer.
//!
//! TLS is rustls (no OpenSSL), trusting the system's roots plus, when the provider's config
//! names one, a PEM `ca_file` (a private CA, or a test CA). HTTP/2 is used when the server
//! offers it by ALPN, HTTP/1.1 otherwise; connections are pooled and kept alive, so a
//! handshake is paid once per connection, not per request.
//!
//! The transport only says whether the request may have reached the provider:
//! [`Failure::NotSent`] (no connection: the TLS handshake failed, the connection was
//! refused) means it certainly did not, [`Failure::MaybeSent`] (a timeout, a connection
//! lost before the answer) that it may have. Each adapter maps the rest of the answer.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Largest response body read; a longer one is cut (it then reads as unparsable).
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// How a provider's client is built.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per host (the provider's `max_in_flight`).
    pub max_idle: usize,
    /// A PEM file of extra root certificates.
    pub ca_file: Option<String>,
    /// Headers sent with every request.
    pub default_headers: HeaderMap,
    /// Speak HTTP/2 only (APNs refuses HTTP/1.1): offered alone by ALPN, so a server that
    /// cannot speak it fails the handshake instead of answering in HTTP/1.1.
    pub http2_only: bool,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("ca_file {path:?}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// Reads the root certificates of a PEM file; at least one is required. Used at start-up
/// (config validation) and when the client is built.
pub fn read_ca_file(path: &str) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(Path::new(path)).map_err(|e| format!("cannot read it: {e}"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// Builds a pooled client with TLS (system roots plus `ca_file`) and HTTP/2 by ALPN.
pub fn build(settings: &ClientSettings) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .default_headers(settings.default_headers.clone())
        .timeout(settings.request_timeout)
        .connect_timeout(settings.connect_timeout)
        .pool_max_idle_per_host(settings.max_idle.max(1))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(30))
        .https_only(false)
        // A provider endpoint is configured exactly: no redirects, no proxy from the
        // environment silently in between.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if settings.http2_only {
        builder = builder.http2_prior_knowledge();
    }
    if let Some(path) = &settings.ca_file {
        for cert in read_ca_file(path).map_err(|reason| ClientError::CaFile {
            path: path.clone(),
            reason,
        })? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(ClientError::Build)
}

/// A complete answer from the provider.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

/// A request that got no complete answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The request never left herald: nothing was accepted.
    NotSent(String),
    /// The request may have reached the provider.
    MaybeSent(String),
}

/// Sends a request and reads its whole answer (capped at [`MAX_RESPONSE_BYTES`]).
pub async fn exchange(request: reqwest::RequestBuilder) -> Result<RawAnswer, Failure> {
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Err(Failure::NotSent(describe(&e))),
        Err(e) => return Err(Failure::MaybeSent(describe(&e))),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    body.clear();
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            // The status line is the provider's answer; a body cut short reads as
            // unparsable, except for a success whose details are then unknown.
            Err(e) if !(200..300).contains(&status) => {
                return Err(Failure::MaybeSent(describe(&e)));
            }
            Err(_) => {
                body.clear();
                break;
            }
        }
    }
    Ok(RawAnswer {
        status,
        retry_after,
        body,
    })
}

/// A transport error in a few words (no URL: it may carry credentials in its user info).
/// A TLS handshake refused for the server's certificate is named as such, since it is the
/// usual mistake (a private CA without `ca_file`).
pub fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timeout".into();
    }
    if e.is_connect() {
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            let text = s.to_string();
            if text.contains("certificate") || text.contains("UnknownIssuer") {
                return "tls: the server's certificate is not trusted (set ca_file?)".into();
            }
            source = s.source();
        }
        return "connection failed".into();
    }
    if e.is_body() || e.is_decode() {
        "response body failed".into()
    } else {
        "request failed".into()
    }
}
