//! Bearer API keys on every `/v1` route, and the scope each route needs.
//!
//! [`require_key`] resolves the key to a [`Principal`] (its tenant and scopes) and hands it to
//! the handlers as a request extension; [`require_scope`] then refuses a key without the
//! route's scope with 403. Keys are compared by digest in constant time and never logged; the
//! tenant is recorded on the request's log span.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use crate::access::{Principal, Scope};
use crate::app::AppState;

/// The bearer token of a request, or "" when it has none.
pub fn bearer(req: &Request) -> &str {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or("")
}

/// Rejects requests without an accepted key with 401; passes the caller on as a
/// [`Principal`] extension.
pub async fn require_key(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let principal = state
        .keys
        .authenticate(bearer(&req))
        .await
        .map_err(|_| ApiError::state_unavailable())?
        .ok_or_else(ApiError::unauthorized)?;
    tracing::Span::current().record("tenant", principal.tenant.as_str());
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

/// Refuses a caller whose key lacks `scope` with 403 (inside [`require_key`]).
pub async fn require_scope(scope: Scope, req: Request, next: Next) -> Result<Response, ApiError> {
    let allowed = req
        .extensions()
        .get::<Principal>()
        .is_some_and(|p| p.allows(scope));
    if allowed {
        Ok(next.run(req).await)
    } else {
        Err(ApiError::missing_scope(scope))
    }
}

/// Refuses callers of a tenant other than the default one on installation-wide routes (inside
/// [`require_key`]): provider bills are the installation's (providers are shared by every
/// tenant), so only the default tenant's keys may reconcile them. Contacts, consent and
/// suppressions are each tenant's own.
pub async fn require_default_tenant(req: Request, next: Next) -> Result<Response, ApiError> {
    let default = req
        .extensions()
        .get::<Principal>()
        .is_some_and(|p| p.tenant.is_default());
    if default {
        Ok(next.run(req).await)
    } else {
        Err(ApiError::forbidden(
            "provider bills belong to the installation: only keys of the default tenant may \
             reconcile them",
        ))
    }
}
