//! The HTTP edge. The router below lists every route; handlers are thin and map errors in
//! one place ([`error`]). JSON bodies are capped; uploads are streamed with their own cap;
//! a body that declares more than its cap is refused before it is read ([`body`]). The
//! server loop ([`server`]) adds the connection limits: header and body timeouts, and a
//! connection cap that keeps health and metrics answering.

pub(crate) mod auth;
mod body;
mod callbacks;
mod contacts;
pub mod error;
mod health;
pub(crate) mod job_request;
pub(crate) mod jobs;
mod keys;
pub(crate) mod ledger;
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

use crate::access::Scope;
use crate::app::AppState;

/// Every route herald serves on `server.listen`. `/metrics` is among them unless
/// `server.metrics_listen` moves it to [`metrics_router`].
pub fn router(state: Arc<AppState>) -> Router {
    // Each group of routes needs one scope (checked inside the key check); the table is
    // documented in docs/api.md and in the spec.
    let scoped = |scope: Scope, routes: Router<Arc<AppState>>| {
        routes.route_layer(middleware::from_fn(move |req, next| {
            auth::require_scope(scope, req, next)
        }))
    };
    let installation = |routes: Router<Arc<AppState>>| {
        routes.route_layer(middleware::from_fn(auth::require_default_tenant))
    };
    let v1 = Router::new()
        .merge(scoped(
            Scope::SnapshotWrite,
            installation(
                Router::new()
                    .route("/v1/snapshot", put(snapshot::put))
                    .route("/v1/contacts", axum::routing::patch(snapshot::patch)),
            ),
        ))
        .merge(scoped(
            Scope::SuppressionsWrite,
            installation(
                Router::new()
                    .route("/v1/suppressions", put(suppressions::put))
                    .route("/v1/suppressions/{key}", delete(suppressions::delete)),
            ),
        ))
        .merge(scoped(
            Scope::JobsWrite,
            Router::new()
                .route("/v1/jobs", post(jobs::submit))
                .route("/v1/jobs/{id}/{action}", post(jobs::transition)),
        ))
        .merge(scoped(
            Scope::JobsRead,
            Router::new()
                .merge(installation(
                    Router::new().route("/v1/snapshot", get(snapshot::get)),
                ))
                .route("/v1/jobs", get(jobs::list))
                .route("/v1/jobs/{id}", get(jobs::get))
                .route("/v1/jobs/{id}/recipients", get(jobs::recipients)),
        ))
        .merge(scoped(
            Scope::ReportsRead,
            Router::new()
                .route("/v1/jobs/{id}/report", get(reports::job))
                .route("/v1/campaigns/{campaign_id}/report", get(reports::campaign))
                .merge(installation(Router::new().route(
                    "/v1/contacts/{id}/consent-history",
                    get(contacts::consent_history),
                ))),
        ))
        .merge(scoped(
            Scope::LedgerRead,
            Router::new()
                .route("/v1/ledger", get(ledger::entries))
                .route("/v1/ledger/summary", get(ledger::summary))
                .merge(installation(
                    Router::new().route("/v1/ledger/reconcile", post(reconcile::reconcile)),
                )),
        ))
        .merge(scoped(
            Scope::WebhooksWrite,
            Router::new()
                .route("/v1/webhooks", post(webhooks::register).get(webhooks::list))
                .route("/v1/webhooks/{id}", delete(webhooks::delete))
                .route("/v1/webhooks/{id}/rotate", post(webhooks::rotate))
                .route("/v1/webhooks/{id}/replay", post(webhooks::replay)),
        ))
        .merge(scoped(
            Scope::Admin,
            Router::new()
                .route("/v1/keys", post(keys::create).get(keys::list))
                .route("/v1/keys/{id}", delete(keys::revoke)),
        ))
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
        .route("/c/{token}", get(tracking::click))
        .route("/o/{token}", get(tracking::open));
    let mut ops = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    if state.config.config.server.metrics_listen.is_none() {
        ops = ops.route("/metrics", get(telemetry::metrics));
    }
    ops.merge(v1)
        .merge(public)
        .merge(crate::ui::router(state.clone()))
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
