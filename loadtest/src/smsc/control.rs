//! The sink's stats endpoint: `GET /stats` answers its counters as JSON, on loopback only.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};

use super::tally::{Tally, TallyView};

/// Serves `GET /stats` on 127.0.0.1:`port` in the background; answers its address.
pub async fn start(port: u16, tally: Arc<Tally>) -> anyhow::Result<SocketAddr> {
    let app = Router::new().route(
        "/stats",
        get(move || {
            let tally = tally.clone();
            async move { Json::<TallyView>(tally.view()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}
