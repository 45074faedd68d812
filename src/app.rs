//! Wires configuration, state, dispatch and the HTTP API together, and runs the server until
//! a shutdown signal arrives.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api;
use crate::config::LoadedConfig;

/// Everything a request handler needs, shared behind one `Arc`.
pub struct AppState {
    pub config: LoadedConfig,
}

/// Structured logs to stderr; `RUST_LOG` adjusts the level.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Builds the application state from a validated configuration.
pub async fn build(config: LoadedConfig) -> anyhow::Result<Arc<AppState>> {
    std::fs::create_dir_all(&config.config.server.data_dir)
        .with_context(|| format!("creating data dir {}", config.config.server.data_dir))?;
    Ok(Arc::new(AppState { config }))
}

/// Binds the configured address and serves until SIGINT/SIGTERM.
pub async fn serve(config: LoadedConfig) -> anyhow::Result<()> {
    let addr = config.config.server.listen;
    let state = build(config).await?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "herald listening");
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("herald stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
