//! Bearer API keys on every `/v1` route. Keys are compared in constant time and never logged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use crate::app::AppState;

/// Rejects requests without a configured key with 401.
pub async fn require_key(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or("");
    let ok = !presented.is_empty()
        && state
            .config
            .config
            .auth
            .api_keys
            .iter()
            .fold(false, |acc, k| {
                acc | ct_eq(k.as_bytes(), presented.as_bytes())
            });
    if ok {
        Ok(next.run(req).await)
    } else {
        Err(ApiError::unauthorized())
    }
}

/// Equality whose time does not depend on where the inputs differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
