//! The connection under a bind: TCP, or TLS over it (rustls, with the roots of `ca_file` or
//! else the system's).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A byte stream a bind runs on.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Stream = Box<dyn Io>;

/// Why TLS could not be set up from the config.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("host {0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// What a bind needs to speak TLS to the SMSC.
pub struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl Tls {
    /// The server is checked against `host` and the roots of `ca_file` (PEM), or the
    /// system's roots when it is `None`.
    pub fn new(host: &str, ca_file: Option<&str>) -> Result<Tls, TlsError> {
        let mut roots = RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let ca_err = |reason: String| TlsError::CaFile {
                    path: path.to_string(),
                    reason,
                };
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| ca_err(e.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ca_err(e.to_string()))?;
                if certs.is_empty() {
                    return Err(ca_err("no certificate in it".into()));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|_| TlsError::ServerName(host.to_string()))?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

/// Connects (and, with `tls`, completes the handshake) within `limit`; the error in words.
pub async fn connect(
    host: &str,
    port: u16,
    limit: Duration,
    tls: Option<&Tls>,
) -> Result<Stream, String> {
    let work = async {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        Ok::<Stream, String>(match tls {
            None => Box::new(tcp),
            Some(t) => Box::new(
                t.connector
                    .connect(t.server_name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake: {e}"))?,
            ),
        })
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| "connect timed out".to_string())?
}
