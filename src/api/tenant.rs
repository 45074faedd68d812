//! `GET /v1/tenant`: the caller's tenant, its limits and this month's quota use, so a
//! campaign system can check what is left before it submits a big job.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use crate::access::Principal;
use crate::app::AppState;
use crate::intake::quota::QuotaView;

/// The caller's tenant and its limits.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub tenant: String,
    /// Message parts per second over all the tenant's jobs; absent when unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts_per_second: Option<u32>,
    /// The largest burst, in parts, under that rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst_parts: Option<u32>,
    /// The monthly quota and its use; absent when unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaView>,
}

/// `GET /v1/tenant`.
#[utoipa::path(
    get,
    path = "/v1/tenant",
    operation_id = "get_tenant",
    tag = "keys",
    responses(
        (status = 200, description = "The caller's tenant, its rate limit and this month's quota use", body = TenantView),
        (status = 503, description = "The state backend does not answer (`state_unavailable`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
) -> Result<Response, ApiError> {
    let limits = state
        .config
        .config
        .tenant_limits(&by.tenant)
        .filter(|t| t.parts_per_second > 0);
    let quota = state.intake.quota(&by.tenant).await?;
    Ok(Json(TenantView {
        tenant: by.tenant.to_string(),
        parts_per_second: limits.map(|t| t.parts_per_second),
        burst_parts: limits.map(|t| t.burst_parts),
        quota,
    })
    .into_response())
}
