//! Contact audit views: `GET /v1/contacts/{id}/consent-history`, every consent change
//! recorded for the contact (inbound STOP/START, API), oldest first, with source and time.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use crate::access::Principal;
use crate::app::AppState;
use crate::store::ConsentChange;

/// A contact's consent changes, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentHistory {
    pub contact_id: String,
    pub changes: Vec<ConsentChange>,
}

/// `GET /v1/contacts/{id}/consent-history`: 404 when neither the snapshot nor the history
/// knows the contact.
#[utoipa::path(
    get,
    path = "/v1/contacts/{id}/consent-history",
    operation_id = "get_consent_history",
    tag = "reports",
    params(("id" = String, Path, description = "The contact id")),
    responses(
        (status = 200, description = "Every consent change, oldest first", body = ConsentHistory),
        (status = 404, description = "No such contact (`not_found`)", body = ErrorBody),
        (status = 503, description = "The state backend does not answer (`state_unavailable`); nothing was accepted", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn consent_history(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = id.trim();
    let changes = state.store.consent_history(&by.tenant, id).await?;
    if changes.is_empty() && state.books.store(&by.tenant).current().lookup(id).is_none() {
        return Err(ApiError::not_found("contact"));
    }
    Ok(Json(ConsentHistory {
        contact_id: id.to_string(),
        changes,
    })
    .into_response())
}
