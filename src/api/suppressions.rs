//! The global do-not-contact list: `PUT /v1/suppressions` (NDJSON of `phone` or
//! `contact_id`) and `DELETE /v1/suppressions/{phone-or-id}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::body::{capped_reader, next_line};
use super::error::{parse_json, ApiError};
use crate::app::AppState;
use crate::phone;
use crate::store::SuppressionKey;

/// One NDJSON line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    contact_id: Option<String>,
}

const BATCH: usize = 4096;

/// `PUT /v1/suppressions`: adds every line; answers how many were new.
pub async fn put(State(state): State<Arc<AppState>>, body: Body) -> Result<Response, ApiError> {
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
        let key = match (l.phone, l.contact_id) {
            (Some(p), None) => SuppressionKey::Phone(
                phone::parse(&p, region)
                    .map_err(|e| {
                        ApiError::invalid(format!("line {line_no}: phone"), e.to_string())
                    })?
                    .e164,
            ),
            (None, Some(c)) if !c.trim().is_empty() => {
                SuppressionKey::ContactId(c.trim().to_string())
            }
            _ => {
                return Err(ApiError::invalid(
                    format!("line {line_no}"),
                    "give exactly one of phone or contact_id",
                ))
            }
        };
        batch.push(key);
        lines += 1;
        if batch.len() >= BATCH {
            added += state.store.add_suppressions(&batch).await?;
            batch.clear();
        }
    }
    added += state.store.add_suppressions(&batch).await?;
    Ok(Json(serde_json::json!({ "lines": lines, "added": added })).into_response())
}

/// `DELETE /v1/suppressions/{phone-or-id}`: 204 when something was removed, else 404.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    super::health::require_state(&state)?;
    let region = state.config.config.snapshot.region();
    let mut removed = state
        .store
        .remove_suppression(&SuppressionKey::ContactId(key.clone()))
        .await?;
    if let Ok(p) = phone::parse(&key, region) {
        removed |= state
            .store
            .remove_suppression(&SuppressionKey::Phone(p.e164))
            .await?;
    }
    if removed {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("suppression"))
    }
}
