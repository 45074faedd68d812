//! The HTTP edge. The router below lists every route; handlers are thin and map errors in
//! one place ([`error`]). JSON bodies are capped; uploads are streamed with their own cap;
//! a body that declares more than its cap is refused before it is read ([`body`]). The
//! server loop ([`server`]) adds the connection limits: header and body timeouts, and a
//! connection cap that keeps health and metrics answering.

mod auth;
mod body;
mod callbacks;
mod contacts;
pub mod error;
mod extract;
mod health;
mod job_request;
mod jobs;
mod ledger;
pub mod openapi;
mod reconcile;
mod reports;
pub mod request_id;
pub mod server;
mod snapshot;
mod suppressions;
mod telemetry;
mod tracking;
mod webhooks;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{middleware, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

/// The route table: every route herald serves on `server.listen`, in the two groups that
/// differ in authentication. The router and the OpenAPI document are both built from it, and
/// each route's method and path come from its handler's `#[utoipa::path]`, so nothing is
/// served that the document does not describe.
struct Routes {
    /// `/v1` routes behind a bearer API key.
    keyed: OpenApiRouter<Arc<AppState>>,
    /// Provider callbacks (authenticated by their HMAC signature), tracking links (by their
    /// signed tokens), health, readiness, metrics and the document: no API key.
    open: OpenApiRouter<Arc<AppState>>,
}

fn routes(metrics: bool) -> Routes {
    let keyed = OpenApiRouter::new()
        .routes(routes!(snapshot::put, snapshot::get))
        .routes(routes!(snapshot::patch))
        .routes(routes!(suppressions::put))
        .routes(routes!(suppressions::delete))
        .routes(routes!(jobs::submit, jobs::list))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::recipients))
        .routes(routes!(reports::job))
        .routes(routes!(reports::campaign))
        .routes(routes!(contacts::consent_history))
        .routes(routes!(jobs::transition))
        .routes(routes!(ledger::entries))
        .routes(routes!(ledger::summary))
        .routes(routes!(reconcile::reconcile))
        .routes(routes!(webhooks::register, webhooks::list))
        .routes(routes!(webhooks::delete))
        .routes(routes!(webhooks::rotate))
        .routes(routes!(webhooks::replay));
    let mut open = OpenApiRouter::new()
        .routes(routes!(callbacks::receipts))
        .routes(routes!(callbacks::inbound))
        .routes(routes!(tracking::click))
        .routes(routes!(tracking::open))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::document));
    if metrics {
        open = open.routes(routes!(telemetry::metrics));
    }
    Routes { keyed, open }
}

/// The OpenAPI document of every route, `/metrics` included (it may be served on
/// `server.metrics_listen` instead).
fn openapi_document() -> utoipa::openapi::OpenApi {
    let Routes { keyed, open } = routes(true);
    openapi::assemble(keyed.into_openapi(), open.into_openapi())
}

/// Every route herald serves on `server.listen`. `/metrics` is among them unless
/// `server.metrics_listen` moves it to [`metrics_router`].
pub fn router(state: Arc<AppState>) -> Router {
    let Routes { keyed, open } = routes(state.config.config.server.metrics_listen.is_none());
    let keyed = keyed.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_key,
    ));
    let (routes, _) = keyed.merge(open).split_for_parts();
    routes
        .fallback(not_found)
        // Streaming routes enforce their own caps; this guards everything else.
        .layer(DefaultBodyLimit::max(
            state.config.config.server.max_json_body_bytes,
        ))
        .layer(middleware::from_fn(telemetry::track))
        .layer(middleware::from_fn(request_id::tag))
        .with_state(state)
}

/// `/metrics` alone, for `server.metrics_listen`: an address the scraper reaches and the
/// public does not.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(telemetry::metrics))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> error::ApiError {
    error::ApiError::not_found("route")
}
