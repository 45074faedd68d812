//! The server loop: accepts TCP connections and serves the router over HTTP/1.1 with the
//! limits a public edge needs, which `axum::serve` does not have.
//!
//! - A connection that does not send a whole request head within
//!   `server.header_read_timeout_ms` is closed (slowloris, half-open clients).
//! - A request body that stops arriving for `server.body_idle_timeout_ms` ends the request
//!   with 408 ([`IdleTimeout`]).
//! - At most `server.max_connections` connections are served in full. Past that, accepted
//!   connections answer only [`RESERVED_PATHS`] (health, readiness, metrics), one request
//!   each, and 503 with Retry-After to everything else: a flood of clients cannot keep the
//!   load balancer from seeing that the instance is alive.
//! - Graceful shutdown: on the signal the listener closes, each connection finishes the
//!   request it is serving and closes, and [`serve`] returns once all have.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use super::body::IdleTimeout;
use super::error::ApiError;
use crate::config::ServerConfig;

/// Paths a connection past the cap still answers: what load balancers and scrapers ask.
pub const RESERVED_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// How long the loop waits before accepting again after an accept error other than a
/// client's (out of file descriptors, typically): long enough for connections to close.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The limits of one server loop, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// The limits `config` sets.
    pub fn from_config(config: &ServerConfig) -> Limits {
        Limits {
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            body_idle_timeout: Duration::from_millis(config.body_idle_timeout_ms),
            max_connections: config.max_connections,
        }
    }
}

/// Counts a connection while it is open.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then shuts down gracefully:
/// stops accepting (the socket is closed), lets every connection finish the request in
/// flight, and returns once all connections have closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_client_error(&e) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let reserved_only = open.fetch_add(1, Ordering::SeqCst) >= limits.max_connections;
        let counted = Open(open.clone());
        tokio::spawn(connection(
            stream,
            peer,
            router.clone(),
            limits,
            reserved_only,
            stop_rx.clone(),
            counted,
        ));
    }
    drop(listener);
    // Every connection holds a receiver: `closed` resolves once the last one has ended.
    let _ = stop_tx.send(true);
    drop(stop_rx);
    stop_tx.closed().await;
    Ok(())
}

/// Serves one connection until the client closes it, a limit closes it, or shutdown.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    reserved_only: bool,
    mut stop: watch::Receiver<bool>,
    _counted: Open,
) {
    let _ = stream.set_nodelay(true);
    let idle = limits.body_idle_timeout;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let router = router.clone();
        async move {
            if reserved_only && !RESERVED_PATHS.contains(&req.uri().path()) {
                return Ok::<Response, std::convert::Infallible>(
                    ApiError::over_capacity().into_response(),
                );
            }
            let mut req = req.map(|b| Body::new(IdleTimeout::new(b, idle)));
            // The client's address, for limits kept per address (failed sign-ins).
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            router.oneshot(req).await
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(!reserved_only);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection closed with an error");
    }
}

/// Resolves once shutdown is asked for (or the loop is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Errors that concern one client only; the loop just accepts the next connection.
fn is_client_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
