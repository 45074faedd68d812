//! The global do-not-contact list: `PUT /v1/suppressions` (NDJSON of `phone`, `contact_id`,
//! `email` or `push_token`) and `DELETE /v1/suppressions/{phone-id-email-or-token}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{capped_reader, next_line};
use super::error::{parse_json, ApiError, ErrorBody};
use super::extract::ApiPath;
use crate::access::Principal;
use crate::app::AppState;
use crate::domain::{email_entry, normalize_email, normalize_push_token, push_entry, PushPlatform};
use crate::phone;
use crate::store::SuppressionKey;

/// One NDJSON line: exactly one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SuppressionLine)]
pub struct Line {
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    contact_id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    /// A device token of either platform (tokens are suppressed whatever their platform).
    #[serde(default)]
    push_token: Option<String>,
}

impl Line {
    /// The one entry the line names.
    fn key(self, region: phone::RegionCode) -> Result<SuppressionKey, (&'static str, String)> {
        match (self.phone, self.contact_id, self.email, self.push_token) {
            (Some(p), None, None, None) => phone::parse(&p, region)
                .map(|p| SuppressionKey::Phone(p.e164))
                .map_err(|e| ("phone", e.to_string())),
            (None, Some(c), None, None) if !c.trim().is_empty() => {
                Ok(SuppressionKey::ContactId(c.trim().to_string()))
            }
            (None, None, Some(e), None) => normalize_email(&e)
                .map(|e| SuppressionKey::Address(email_entry(&e)))
                .map_err(|e| ("email", e.to_string())),
            (None, None, None, Some(t)) => push_token_key(&t).ok_or((
                "push_token",
                "is neither an apns nor an fcm token".to_string(),
            )),
            _ => Err((
                "",
                "give exactly one of phone, contact_id, email or push_token".to_string(),
            )),
        }
    }
}

/// The entry of a token of either platform, checked for the shape of one.
fn push_token_key(token: &str) -> Option<SuppressionKey> {
    [PushPlatform::Apns, PushPlatform::Fcm]
        .into_iter()
        .find_map(|p| normalize_push_token(p, token).ok())
        .map(|t| SuppressionKey::Address(push_entry(&t)))
}

const BATCH: usize = 4096;

/// What `PUT /v1/suppressions` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionsAdded {
    /// Entries read.
    pub lines: u64,
    /// Entries that were not on the list yet.
    pub added: usize,
}

/// `PUT /v1/suppressions`: adds every line; answers how many were new.
#[utoipa::path(
    put,
    path = "/v1/suppressions",
    operation_id = "add_suppressions",
    tag = "suppressions",
    request_body(
        description = "One `{\"phone\": ...}` or `{\"contact_id\": ...}` a line (the array's items)",
        content((Vec<Line> = "application/x-ndjson"))
    ),
    responses(
        (status = 200, description = "Every line was added", body = SuppressionsAdded),
        (status = 503, description = "The state backend does not answer (`state_unavailable`); nothing was accepted", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn put(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    body: Body,
) -> Result<Response, ApiError> {
    super::health::require_state(&state)?;
    let limit = state.config.config.server.max_upload_bytes;
    let region = state.config.config.snapshot.region();
    let (mut reader, cap) = capped_reader(body, limit)?;
    let mut buf = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    let (mut line_no, mut added, mut lines) = (0u64, 0usize, 0u64);
    loop {
        line_no += 1;
        let more = next_line(&mut reader, &mut buf, 4096).await.map_err(|e| {
            cap.refusal(limit)
                .unwrap_or_else(|| ApiError::bad_request(format!("line {line_no}: {e}")))
        })?;
        if !more {
            break;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let l: Line = parse_json(&buf, &format!("line {line_no}: "))?;
        let key = l.key(region).map_err(|(field, message)| match field {
            "" => ApiError::invalid(format!("line {line_no}"), message),
            field => ApiError::invalid(format!("line {line_no}: {field}"), message),
        })?;
        batch.push(key);
        lines += 1;
        if batch.len() >= BATCH {
            added += state.store.add_suppressions(&by.tenant, &batch).await?;
            batch.clear();
        }
    }
    added += state.store.add_suppressions(&by.tenant, &batch).await?;
    Ok(Json(SuppressionsAdded { lines, added }).into_response())
}

/// `DELETE /v1/suppressions/{phone-id-email-or-token}`: 204 when something was removed, else 404.
#[utoipa::path(
    delete,
    path = "/v1/suppressions/{key}",
    operation_id = "delete_suppression",
    tag = "suppressions",
    params(("key" = String, Path, description = "A phone number, contact id, email address or push token")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "Not on the list (`not_found`)", body = ErrorBody),
        (status = 503, description = "The state backend does not answer (`state_unavailable`); nothing was accepted", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiPath(key): ApiPath<String>,
) -> Result<Response, ApiError> {
    super::health::require_state(&state)?;
    let region = state.config.config.snapshot.region();
    let mut removed = state
        .store
        .remove_suppression(&by.tenant, &SuppressionKey::ContactId(key.clone()))
        .await?;
    if let Ok(p) = phone::parse(&key, region) {
        removed |= state
            .store
            .remove_suppression(&by.tenant, &SuppressionKey::Phone(p.e164))
            .await?;
    }
    if let Ok(e) = normalize_email(&key) {
        removed |= state
            .store
            .remove_suppression(&by.tenant, &SuppressionKey::Address(email_entry(&e)))
            .await?;
    }
    if let Some(k) = push_token_key(&key) {
        removed |= state.store.remove_suppression(&by.tenant, &k).await?;
    }
    if removed {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("suppression"))
    }
}
