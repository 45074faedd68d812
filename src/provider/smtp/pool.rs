//! The connections to the relay: opened by herald (TCP with `TCP_NODELAY`, then implicit TLS,
//! or STARTTLS, then AUTH) and kept for reuse.
//!
//! lettre's own transport opens its sockets without `TCP_NODELAY` and writes a message's body
//! and its `.` terminator in two writes before it reads the reply; with Nagle's algorithm the
//! terminator then waits for the relay's delayed ACK of the body (about 40 ms on Linux) on
//! every message. So herald opens the socket itself and hands it to lettre's connection, which
//! still speaks SMTP (EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A connection idle longer than this is closed rather than reused (relays drop idle clients).
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// How the socket is protected, with what each mode needs.
pub enum Protection {
    /// Plain, for a relay on loopback.
    None,
    /// STARTTLS, required: a relay that does not offer it is an error.
    Starttls(TlsParameters),
    /// TLS from the first byte.
    Implicit {
        connector: TlsConnector,
        server_name: ServerName<'static>,
    },
}

/// Builds the rustls connector for implicit TLS: the roots of `ca_file` (PEM) or the system's.
pub fn implicit_tls(host: &str, ca_file: Option<&str>) -> Result<Protection, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| e.to_string())?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            if certs.is_empty() {
                return Err("no certificate in it".into());
            }
            for cert in certs {
                roots.add(cert).map_err(|e| e.to_string())?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("host {host:?} is not a valid TLS server name"))?;
    Ok(Protection::Implicit {
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

/// Why a message was not sent.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened (refused, TLS handshake): nothing was sent.
    Connect(String),
    /// The relay's answer or a failure in the SMTP exchange, as lettre reports it.
    Smtp(lettre::transport::smtp::Error),
    /// No answer within the time limit: the relay may have taken the message.
    Timeout,
}

/// Where and how to connect, and the pooled idle connections.
pub struct Pool {
    pub host: String,
    pub port: u16,
    pub protection: Protection,
    pub credentials: Option<Credentials>,
    /// The limit for opening a connection and for each message's exchange.
    pub timeout: Duration,
    pub idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl Pool {
    /// Sends one message on an idle connection, or a new one; the connection goes back to the
    /// pool unless the exchange broke it.
    pub async fn send(&self, envelope: &Envelope, body: &[u8]) -> Result<(), SendError> {
        let mut conn = match self.take_idle() {
            Some(c) => c,
            None => tokio::time::timeout(self.timeout, self.open())
                .await
                .map_err(|_| SendError::Connect("connect timed out".into()))??,
        };
        match tokio::time::timeout(self.timeout, conn.send(envelope, body)).await {
            Err(_) => Err(SendError::Timeout),
            Ok(result) => {
                if !conn.has_broken() {
                    self.idle.lock().push((conn, Instant::now()));
                }
                result.map(|_| ()).map_err(SendError::Smtp)
            }
        }
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock();
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < IDLE_LIMIT && !conn.has_broken() {
                return Some(conn);
            }
        }
        None
    }

    async fn open(&self) -> Result<AsyncSmtpConnection, SendError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| SendError::Connect(format!("connect: {e}")))?;
        tcp.set_nodelay(true)
            .map_err(|e| SendError::Connect(format!("TCP_NODELAY: {e}")))?;
        let hello = ClientId::default();
        let stream: Box<dyn AsyncTokioStream> = match &self.protection {
            Protection::Implicit {
                connector,
                server_name,
            } => Box::new(Implicit(
                connector
                    .connect(server_name.clone(), tcp)
                    .await
                    .map_err(|e| SendError::Connect(format!("TLS handshake: {e}")))?,
            )),
            _ => Box::new(tcp),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &hello)
            .await
            .map_err(SendError::Smtp)?;
        if let Protection::Starttls(params) = &self.protection {
            conn.starttls(params.clone(), &hello)
                .await
                .map_err(SendError::Smtp)?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(SendError::Smtp)?;
        }
        Ok(conn)
    }
}

/// A TLS stream lettre can run on (it needs `Debug` and the peer's address).
struct Implicit(TlsStream<TcpStream>);

impl fmt::Debug for Implicit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("implicit TLS stream")
    }
}

impl AsyncTokioStream for Implicit {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for Implicit {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Implicit {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
