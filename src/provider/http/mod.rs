//! The generic HTTP/JSON provider adapter: speaks the protocol of docs/api.md ("The generic
//! HTTP provider protocol") to any provider, test double or load-test mock that does.
//!
//! A batch handed over by the dispatcher is split into requests of the configured
//! `batch_size` (1 sends single-message bodies with an `Idempotency-Key` header), sent
//! concurrently over pooled keep-alive connections (HTTP/2 when the provider offers it,
//! TLS for `https://` URLs; see [`super::https_client`]), with at most `max_in_flight`
//! requests to the provider at once across all workers. Outcomes come back one per message,
//! in order; how answers map to outcomes is in [`wire`].
//!
//! Like every adapter it only translates: it never retries, sleeps or counts. A timeout is a
//! `Transient` outcome, a refused connection, a failed TLS handshake or a 5xx an
//! `Unavailable` one; the dispatcher retries both under the same message ids, so a provider
//! that honours the idempotency key never sends twice.

pub mod wire;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use tokio::sync::Semaphore;

use super::https_client::{self, ClientSettings, Failure};
use super::{OutboundMessage, Provider, SendOutcome};
use crate::clock::Clock;
use crate::config::ProviderConfig;

/// The header carrying a single message's id.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Why an HTTP provider could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum HttpProviderError {
    #[error("provider {name}: url: {reason}")]
    Url { name: String, reason: String },
    #[error("provider {name}: auth header: {reason}")]
    Auth { name: String, reason: String },
    #[error("provider {name}: {source}")]
    Client {
        name: String,
        source: https_client::ClientError,
    },
}

/// The adapter's settings, read from a provider's config block.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub name: String,
    pub url: reqwest::Url,
    /// Header name and value; the value comes from the environment, never the file.
    pub auth: Option<(HeaderName, HeaderValue)>,
    pub batch_size: usize,
    pub max_in_flight: usize,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub sender_id: String,
    /// Extra root certificates (PEM) trusted for this provider, beside the system's.
    pub ca_file: Option<String>,
}

impl HttpSettings {
    /// Reads the settings of a validated `kind = "http"` provider config.
    pub fn from_config(c: &ProviderConfig) -> Result<HttpSettings, HttpProviderError> {
        let url_err = |reason: String| HttpProviderError::Url {
            name: c.name.clone(),
            reason,
        };
        let raw = c.url.as_deref().map(str::trim).unwrap_or("");
        let url = reqwest::Url::parse(raw).map_err(|e| url_err(format!("{raw:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(url_err(format!("{raw:?}: must be http:// or https://")));
        }
        let auth = match &c.auth_value {
            None => None,
            Some(secret) => {
                let auth_err = |reason: &str| HttpProviderError::Auth {
                    name: c.name.clone(),
                    reason: reason.to_string(),
                };
                let name = HeaderName::from_bytes(c.auth_header.trim().as_bytes())
                    .map_err(|_| auth_err("invalid header name"))?;
                let mut value = HeaderValue::from_bytes(secret.expose())
                    .map_err(|_| auth_err("the credential is not a valid header value"))?;
                value.set_sensitive(true);
                Some((name, value))
            }
        };
        Ok(HttpSettings {
            name: c.name.clone(),
            url,
            auth,
            batch_size: c.batch_size.max(1),
            max_in_flight: c.max_in_flight.max(1),
            request_timeout: Duration::from_millis(c.request_timeout_ms.max(1)),
            connect_timeout: Duration::from_millis(c.connect_timeout_ms.max(1)),
            sender_id: c.sender_id.clone(),
            ca_file: c.ca_file.clone(),
        })
    }
}

/// The HTTP provider.
pub struct HttpProvider {
    settings: HttpSettings,
    client: reqwest::Client,
    in_flight: Arc<Semaphore>,
    clock: Arc<dyn Clock>,
}

impl HttpProvider {
    /// Builds the client (no connection is made until the first send).
    pub fn new(
        settings: HttpSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<HttpProvider, HttpProviderError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some((name, value)) = &settings.auth {
            headers.insert(name.clone(), value.clone());
        }
        let client = https_client::build(&ClientSettings {
            request_timeout: settings.request_timeout,
            connect_timeout: settings.connect_timeout,
            max_idle: settings.max_in_flight,
            ca_file: settings.ca_file.clone(),
            default_headers: headers,
            http2_only: false,
        })
        .map_err(|source| HttpProviderError::Client {
            name: settings.name.clone(),
            source,
        })?;
        Ok(HttpProvider {
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            settings,
            client,
            clock,
        })
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// Sends one request (one message or one batch) and maps the answer.
    async fn send_request(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        let Ok(_permit) = self.in_flight.acquire().await else {
            return wire::not_sent(messages, "provider closed");
        };
        let request = match messages {
            [one] if self.settings.batch_size == 1 => self
                .client
                .post(self.settings.url.clone())
                .header(IDEMPOTENCY_KEY, one.id.to_string())
                .body(wire::single_body(one, &self.settings.sender_id)),
            _ => self
                .client
                .post(self.settings.url.clone())
                .body(wire::batch_body(messages, &self.settings.sender_id)),
        };
        match https_client::exchange(request).await {
            Ok(answer) => wire::map_answer(
                messages,
                &wire::Answer {
                    status: answer.status,
                    retry_after: answer.retry_after.as_deref(),
                    body: &answer.body,
                },
                self.clock.now(),
            ),
            Err(Failure::NotSent(e)) => wire::not_sent(messages, &e),
            Err(Failure::MaybeSent(e)) => wire::transport_failure(messages, &e),
        }
    }
}

#[async_trait]
impl Provider for HttpProvider {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn send_batch(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        let size = self.settings.batch_size;
        if messages.is_empty() {
            return Vec::new();
        }
        if messages.len() <= size {
            return self.send_request(messages).await;
        }
        // Futures are lazy: building them all first starts nothing; `buffered` bounds how
        // many run, and the semaphore bounds requests across concurrent callers.
        let requests: Vec<_> = messages
            .chunks(size)
            .map(|chunk| self.send_request(chunk))
            .collect();
        let answers: Vec<Vec<SendOutcome>> = futures::stream::iter(requests)
            .buffered(self.settings.max_in_flight)
            .collect()
            .await;
        answers.into_iter().flatten().collect()
    }
}
