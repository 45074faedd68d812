//! An HTTPS server on `127.0.0.1:0` for playing a provider: a test CA made at test time
//! (rcgen), a server certificate for `127.0.0.1` and `localhost` signed by it, rustls with
//! ALPN (`h2`, `http/1.1`) and hyper serving an axum router over either protocol. The CA's
//! PEM file is what a provider's `ca_file` names; the server counts TLS handshakes and records
//! the negotiated protocol, so tests can see connections being reused.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority of the test's own, and a server certificate it signed.
pub struct TestCa {
    dir: tempfile::TempDir,
    server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    /// Makes a fresh CA and a server certificate for `127.0.0.1` and `localhost`.
    pub fn new() -> TestCa {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "herald test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");

        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "herald test provider");
        let cert = params
            .signed_by(&key, &ca_cert, &ca_key)
            .expect("server certificate");

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
        std::fs::write(dir.path().join("server.pem"), cert.pem()).expect("write server.pem");
        std::fs::write(dir.path().join("server-key.pem"), key.serialize_pem())
            .expect("write server-key.pem");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server TLS config");
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TestCa {
            dir,
            server: Arc::new(server),
        }
    }

    /// The CA certificate's PEM file (what a provider's `ca_file` names).
    pub fn ca_file(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }

    /// The server certificate and its key as PEM files, for a server outside this process
    /// (the SMTP relay of the email tests).
    pub fn server_files(&self) -> (String, String) {
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        (path("server.pem"), path("server-key.pem"))
    }

    /// Serves `router` over HTTPS on `127.0.0.1:0` until the server is dropped.
    pub async fn serve(&self, router: axum::Router) -> HttpsServer {
        self.serve_with(router, self.server.clone()).await
    }

    /// Serves `router` over HTTPS offering HTTP/2 only by ALPN, as APNs does: a client that
    /// cannot speak HTTP/2 fails the handshake.
    pub async fn serve_http2_only(&self, router: axum::Router) -> HttpsServer {
        let mut config = (*self.server).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        self.serve_with(router, Arc::new(config)).await
    }

    async fn serve_with(
        &self,
        router: axum::Router,
        config: Arc<rustls::ServerConfig>,
    ) -> HttpsServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                // As a provider's front end would: small answers go out at once.
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let router = router.clone();
                let stats = s.clone();
                tokio::spawn(async move {
                    // A client that does not trust the CA ends its handshake here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        stats.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    stats.handshakes.fetch_add(1, Ordering::SeqCst);
                    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                        stats.h2_connections.fetch_add(1, Ordering::SeqCst);
                    }
                    let service = TowerToHyperService::new(router);
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        HttpsServer { addr, stats, task }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// What the server saw of its connections.
#[derive(Debug, Default)]
pub struct Stats {
    /// TLS handshakes completed (one per connection).
    pub handshakes: AtomicU64,
    /// Handshakes the client broke off (it did not trust the certificate).
    pub failed_handshakes: AtomicU64,
    /// Connections that negotiated HTTP/2 by ALPN.
    pub h2_connections: AtomicU64,
}

/// A running HTTPS server; stops when dropped.
pub struct HttpsServer {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpsServer {
    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub fn handshakes(&self) -> u64 {
        self.stats.handshakes.load(Ordering::SeqCst)
    }

    pub fn failed_handshakes(&self) -> u64 {
        self.stats.failed_handshakes.load(Ordering::SeqCst)
    }

    pub fn h2_connections(&self) -> u64 {
        self.stats.h2_connections.load(Ordering::SeqCst)
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
