//! Liveness, readiness, and the gate intake routes pass before touching shared state.
//!
//! `/healthz` answers 200 while the process serves at all. `/readyz` answers 503 with the
//! reasons while the snapshot is stale or the state backend does not answer (from the cached
//! health, so it costs no round trip), so a load balancer sends traffic to instances that can
//! take it. Intake that needs the state backend refuses at once with 503 and Retry-After
//! while the backend is known to be down, rather than read a body it cannot accept.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, STATE_RETRY_AFTER_SECONDS};
use crate::app::AppState;
use crate::domain::Hold;

/// `/readyz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unready`.
    #[schema(value_type = String, pattern = "^(ready|unready)$")]
    status: &'static str,
    /// What keeps the instance unready; empty when ready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<Hold>,
    /// How long the state backend has not answered, while it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    state_down_ms: Option<u64>,
}

/// `/healthz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    #[schema(value_type = String, pattern = "^ok$")]
    status: &'static str,
}

/// `GET /healthz`: the process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses((status = 200, description = "The process serves", body = Liveness))
)]
pub async fn healthz() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// `GET /readyz`: ready only with a fresh snapshot and a state backend that answers.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: `reasons` say why", body = Readiness,
            headers(("Retry-After" = u64, description = "While the state backend does not answer"))),
    )
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut reasons = Vec::new();
    if state.snapshot_stale(state.clock.now()) {
        reasons.push(Hold::SnapshotStale);
    }
    let state_down = state.state_health.down_for();
    if state_down.is_some() {
        reasons.push(Hold::StateUnavailable);
    }
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if reasons.is_empty() {
            "ready"
        } else {
            "unready"
        },
        reasons,
        state_down_ms: state_down.map(|d| d.as_millis().min(u64::MAX as u128) as u64),
    };
    let mut resp = (status, Json(body)).into_response();
    if state_down.is_some() {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(STATE_RETRY_AFTER_SECONDS),
        );
    }
    resp
}

/// Refuses a request that needs the state backend while it is known not to answer. The
/// request may still fail on its own call (an outage that began since the last probe); that
/// answers the same 503.
pub fn require_state(state: &AppState) -> Result<(), ApiError> {
    if state.state_health.is_up() {
        Ok(())
    } else {
        Err(ApiError::state_unavailable())
    }
}
