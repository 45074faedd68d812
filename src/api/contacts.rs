//! Contact audit views: `GET /v1/contacts/{id}/consent-history`, every consent change
//! recorded for the contact (inbound STOP/START, API), oldest first, with source and time.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use crate::app::AppState;

/// `GET /v1/contacts/{id}/consent-history`: 404 when neither the snapshot nor the history
/// knows the contact.
pub async fn consent_history(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = id.trim();
    let changes = state.store.consent_history(id).await?;
    if changes.is_empty() && state.snapshots.current().lookup(id).is_none() {
        return Err(ApiError::not_found("contact"));
    }
    Ok(Json(serde_json::json!({ "contact_id": id, "changes": changes })).into_response())
}
