//! The HTTP edge: the router lists every route; handlers stay thin.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

use crate::app::AppState;

/// Every route herald serves.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}
