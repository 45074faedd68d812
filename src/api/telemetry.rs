//! `GET /metrics` in the Prometheus text format, and the middleware that counts and times
//! every HTTP request by route pattern (never by raw path, which can carry ids). Like
//! `/healthz`, `/metrics` needs no API key: it shows counts, never contact data.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

/// The content type Prometheus expects for the text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: sets the scrape-time gauges, then renders everything.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "get_metrics",
    tag = "operations",
    responses((status = 200, description = "Every metric in the Prometheus text format", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"))
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let snapshot = state.books.default_store().current();
    crate::metrics::scrape::observe(&crate::metrics::scrape::Sources {
        now: state.clock.now(),
        dispatcher: &state.dispatcher,
        snapshot: &snapshot,
        snapshot_max_age_seconds: state.config.config.snapshot.max_age_seconds,
        state_up: state.state_health.is_up(),
        cluster: state.cluster.as_ref().map(|c| c.seen()),
    });
    let body = state.metrics.render();
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], body).into_response()
}

/// Counts and times one request under its route pattern; unmatched paths share one label.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    crate::metrics::http_request(
        method.as_str(),
        route.as_deref().unwrap_or("unmatched"),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
