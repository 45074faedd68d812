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
mod health;
mod job_request;
mod jobs;
mod ledger;
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
use axum::routing::{delete, get, post, put};
use axum::{middleware, Router};

use crate::app::AppState;

/// Every route herald serves on `server.listen`. `/metrics` is among them unless
/// `server.metrics_listen` moves it to [`metrics_router`].
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/snapshot", put(snapshot::put).get(snapshot::get))
        .route("/v1/contacts", axum::routing::patch(snapshot::patch))
        .route("/v1/suppressions", put(suppressions::put))
        .route("/v1/suppressions/{key}", delete(suppressions::delete))
        .route("/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route("/v1/jobs/{id}/recipients", get(jobs::recipients))
        .route("/v1/jobs/{id}/report", get(reports::job))
        .route("/v1/campaigns/{campaign_id}/report", get(reports::campaign))
        .route(
            "/v1/contacts/{id}/consent-history",
            get(contacts::consent_history),
        )
        .route("/v1/jobs/{id}/{action}", post(jobs::transition))
        .route("/v1/ledger", get(ledger::entries))
        .route("/v1/ledger/summary", get(ledger::summary))
        .route("/v1/ledger/reconcile", post(reconcile::reconcile))
        .route("/v1/webhooks", post(webhooks::register).get(webhooks::list))
        .route("/v1/webhooks/{id}", axum::routing::delete(webhooks::delete))
        .route("/v1/webhooks/{id}/rotate", post(webhooks::rotate))
        .route("/v1/webhooks/{id}/replay", post(webhooks::replay))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    // Provider callbacks are authenticated by their HMAC signature, tracking links by their
    // signed tokens: neither carries an API key.
    let public = Router::new()
        .route(
            "/v1/callbacks/{provider}/receipts",
            post(callbacks::receipts),
        )
        .route("/v1/callbacks/{provider}/inbound", post(callbacks::inbound))
        .route("/v1/callbacks/{provider}/bounces", post(callbacks::bounces))
        .route("/c/{token}", get(tracking::click))
        .route("/o/{token}", get(tracking::open))
        .route(
            "/u/{token}",
            get(tracking::unsubscribe_page).post(tracking::unsubscribe),
        );
    let mut ops = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    if state.config.config.server.metrics_listen.is_none() {
        ops = ops.route("/metrics", get(telemetry::metrics));
    }
    ops.merge(v1)
        .merge(public)
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
