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
mod extract;
mod health;
pub(crate) mod job_request;
pub(crate) mod jobs;
mod keys;
pub(crate) mod ledger;
pub mod openapi;
mod reconcile;
mod reports;
pub mod request_id;
pub mod server;
mod snapshot;
mod suppressions;
mod telemetry;
mod tenant;
mod tracking;
mod webhooks;
mod wechat;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{middleware, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::Scope;
use crate::app::AppState;

/// The route table: every route herald serves on `server.listen`, in groups that differ in
/// authentication. The router and the OpenAPI document are both built from it, and each
/// route's method and path come from its handler's `#[utoipa::path]`, so nothing is served
/// that the document does not describe.
struct Routes {
    /// `/v1` routes behind a bearer API key, by the scope they need; routes of the
    /// installation (provider invoices) are marked, only the default tenant's keys may use
    /// them.
    keyed: Vec<KeyedGroup>,
    /// Provider callbacks (authenticated by their HMAC signature), tracking links (by their
    /// signed tokens), health, readiness, metrics and the document: no API key.
    open: OpenApiRouter<Arc<AppState>>,
}

/// Keyed routes that need one scope.
struct KeyedGroup {
    scope: Scope,
    /// Only the default tenant's keys may use them.
    installation: bool,
    routes: OpenApiRouter<Arc<AppState>>,
}

fn group(scope: Scope, installation: bool, routes: OpenApiRouter<Arc<AppState>>) -> KeyedGroup {
    KeyedGroup {
        scope,
        installation,
        routes,
    }
}

fn routes(metrics: bool) -> Routes {
    let new = OpenApiRouter::new;
    let keyed = vec![
        group(
            Scope::SnapshotWrite,
            false,
            new()
                .routes(routes!(snapshot::put))
                .routes(routes!(snapshot::patch)),
        ),
        group(Scope::JobsRead, false, new().routes(routes!(snapshot::get))),
        group(
            Scope::SuppressionsWrite,
            false,
            new()
                .routes(routes!(suppressions::put))
                .routes(routes!(suppressions::delete)),
        ),
        group(
            Scope::JobsWrite,
            false,
            new()
                .routes(routes!(jobs::submit))
                .routes(routes!(jobs::transition)),
        ),
        group(
            Scope::JobsRead,
            false,
            new()
                .routes(routes!(jobs::list))
                .routes(routes!(jobs::get))
                .routes(routes!(jobs::recipients))
                .routes(routes!(tenant::get)),
        ),
        group(
            Scope::ReportsRead,
            false,
            new()
                .routes(routes!(reports::job))
                .routes(routes!(reports::campaign)),
        ),
        group(
            Scope::ReportsRead,
            false,
            new().routes(routes!(contacts::consent_history)),
        ),
        group(
            Scope::LedgerRead,
            false,
            new()
                .routes(routes!(ledger::entries))
                .routes(routes!(ledger::summary)),
        ),
        group(
            Scope::LedgerRead,
            true,
            new().routes(routes!(reconcile::reconcile)),
        ),
        group(
            Scope::WebhooksWrite,
            false,
            new()
                .routes(routes!(webhooks::register, webhooks::list))
                .routes(routes!(webhooks::delete))
                .routes(routes!(webhooks::rotate))
                .routes(routes!(webhooks::replay)),
        ),
        group(
            Scope::Admin,
            false,
            new()
                .routes(routes!(keys::create, keys::list))
                .routes(routes!(keys::revoke)),
        ),
    ];
    let mut open = OpenApiRouter::new()
        .routes(routes!(callbacks::receipts))
        .routes(routes!(callbacks::inbound))
        .routes(routes!(wechat::verify_url, wechat::event))
        .routes(routes!(callbacks::bounces))
        .routes(routes!(tracking::click))
        .routes(routes!(tracking::open))
        .routes(routes!(tracking::unsubscribe_page, tracking::unsubscribe))
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
    let keyed = keyed
        .into_iter()
        .map(|g| (g.scope, g.installation, g.routes.into_openapi()))
        .collect();
    openapi::assemble(keyed, open.into_openapi())
}

/// Every route herald serves on `server.listen`. `/metrics` is among them unless
/// `server.metrics_listen` moves it to [`metrics_router`]. The report pages under `/ui/`
/// are HTML for people, not part of the API, and are added beside the table.
pub fn router(state: Arc<AppState>) -> Router {
    let Routes { keyed, open } = routes(state.config.config.server.metrics_listen.is_none());
    // Inside the key check: the group's scope, then (for the installation's routes) the
    // default tenant.
    let mut all = OpenApiRouter::new();
    for g in keyed {
        let mut routes = g.routes;
        if g.installation {
            routes = routes.route_layer(middleware::from_fn(auth::require_default_tenant));
        }
        let scope = g.scope;
        routes = routes.route_layer(middleware::from_fn(move |req, next| {
            auth::require_scope(scope, req, next)
        }));
        all = all.merge(routes);
    }
    let keyed = all.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_key,
    ));
    let (routes, _) = keyed.merge(open).split_for_parts();
    routes
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
