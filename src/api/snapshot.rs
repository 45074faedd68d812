//! Snapshot routes: `PUT /v1/snapshot` (CSV or NDJSON, streamed, replaced atomically),
//! `GET /v1/snapshot`, and `PATCH /v1/contacts` (NDJSON upserts and deletes).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::io::SyncIoBridge;
use utoipa::{IntoParams, ToSchema};

use super::body::{capped_reader, CapFlag};
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::ApiQuery;
use crate::access::Principal;
use crate::app::AppState;
use crate::snapshot::{
    load_csv, load_ndjson, LoadReport, PatchReport, Refused, SnapshotError, UploadFormat,
};

/// Query of `PUT /v1/snapshot`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PutQuery {
    /// When the export was taken; defaults to now. Freshness is judged from it.
    #[serde(default)]
    pub as_of: Option<DateTime<Utc>>,
    /// The caller intends the upload to drop many live contacts: lifts the
    /// `snapshot.max_shrink_share` check (never the rejected-rows one).
    #[serde(default)]
    pub allow_shrink: bool,
}

enum Format {
    Csv,
    Ndjson,
}

fn format_of(headers: &HeaderMap) -> Result<Format, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("text/csv") {
        Ok(Format::Csv)
    } else if ct.starts_with("application/x-ndjson") {
        Ok(Format::Ndjson)
    } else {
        Err(ApiError::unsupported_media(
            "text/csv or application/x-ndjson",
        ))
    }
}

fn load_error(e: SnapshotError, cap: &CapFlag, limit: u64) -> ApiError {
    if let Some(refusal) = cap.refusal(limit) {
        return refusal;
    }
    match e {
        SnapshotError::Io(_) => ApiError::bad_request(format!("could not read the upload: {e}")),
        SnapshotError::Refused(refused) => refused_error(&refused),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// 422 `snapshot_rejected`, with the failed check, the upload's counts and its first row
/// errors, so the uploader can fix the export.
fn refused_error(refused: &Refused) -> ApiError {
    let report = &refused.report;
    let mut details = serde_json::Map::new();
    details.insert("refusal".into(), serde_json::json!(refused.refusal));
    details.insert("contacts".into(), report.contacts.into());
    details.insert("rejected_rows".into(), report.rejected_rows.into());
    details.insert("duplicate_rows".into(), report.duplicate_rows.into());
    details.insert("errors".into(), serde_json::json!(report.errors));
    ApiError::new(ErrorCode::SnapshotRejected, refused.refusal.to_string()).with_details(details)
}

/// `PUT /v1/snapshot?as_of=RFC3339&allow_shrink=false`: replaces the whole snapshot.
///
/// The upload is read and loaded into a new snapshot beside the live one, then checked
/// ([`crate::snapshot::UploadGuard`]: `snapshot.max_rejected_share` of rejected rows,
/// `snapshot.max_shrink_share` of lost live contacts unless `allow_shrink=true`). A refused
/// upload is answered 422 `snapshot_rejected` with its first row errors, and changes nothing:
/// the live snapshot stays in memory and its kept copy in the data directory stays as it was.
///
/// What running jobs see: workers take the current snapshot once per chunk of recipients and
/// keep it for that chunk. The swap is one atomic pointer store, made only after the whole
/// upload loaded and passed the checks, so a chunk is decided entirely against the previous
/// snapshot or entirely against the new one, never against a partly loaded one; chunks
/// started after the swap use the new one. Segment audiences were already resolved against
/// the snapshot current at submission.
#[utoipa::path(
    put,
    path = "/v1/snapshot",
    operation_id = "replace_snapshot",
    tag = "snapshot",
    params(PutQuery),
    request_body(
        description = "Every contact: CSV with a header line, or one JSON object a line (the array's items)",
        content((String = "text/csv"), (Vec<Object> = "application/x-ndjson"))
    ),
    responses(
        (status = 200, description = "The snapshot was replaced", body = LoadReport),
        (status = 415, description = "Content-Type is not text/csv or application/x-ndjson (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "The upload was refused (`snapshot_rejected`, with `refusal`, counts and row `errors`); nothing changed", body = ErrorBody),
    )
)]
pub async fn put(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiQuery(q): ApiQuery<PutQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let format = format_of(&headers)?;
    let now = state.clock.now();
    let as_of = q.as_of.unwrap_or(now);
    if as_of > now + chrono::Duration::minutes(5) {
        return Err(ApiError::invalid("as_of", "is in the future"));
    }
    let limit = state.config.config.server.max_upload_bytes;
    let (reader, cap) = capped_reader(body, limit)?;
    let book = state
        .books
        .book_for_write(&by.tenant)
        .map_err(|_| ApiError::internal("opening the tenant's contact book"))?;
    let (snapshots, files) = (book.store, book.files);
    let region = state.config.config.snapshot.region();
    let guard = state.config.config.snapshot.upload_guard(q.allow_shrink);
    let result = tokio::task::spawn_blocking(move || {
        // Copied aside while read, so that a restart finds the snapshot in use.
        let mut tee = files.tee_upload(SyncIoBridge::new(reader))?;
        let installed = match format {
            Format::Csv => load_csv(&mut tee, as_of, region),
            Format::Ndjson => load_ndjson(
                std::io::BufReader::with_capacity(1 << 20, &mut tee),
                as_of,
                region,
            ),
        }
        .and_then(|(snapshot, report)| {
            // Nothing is swapped unless the whole upload loaded and passed the checks against
            // the live snapshot: readers never see half of it, nor a broken one.
            snapshots.replace_if(snapshot, |live| {
                guard.check(&report, live.len()).map_err(|refusal| {
                    SnapshotError::Refused(Box::new(Refused {
                        refusal,
                        report: report.clone(),
                    }))
                })
            })?;
            Ok(report)
        });
        let report = match installed {
            Ok(report) => report,
            Err(e) => {
                if let Err(io) = files.discard_upload(tee) {
                    tracing::warn!(error = %io, "the copy of a snapshot upload that was not installed could not be removed");
                }
                return Err(e);
            }
        };
        let kept = match format {
            Format::Csv => UploadFormat::Csv,
            Format::Ndjson => UploadFormat::Ndjson,
        };
        if let Err(e) = files.keep_upload(tee, kept, as_of) {
            tracing::error!(error = %e, "the new snapshot is in use but could not be kept on disk; a restart would load the previous one");
        }
        Ok::<_, SnapshotError>(report)
    })
    .await
    .map_err(|_| ApiError::internal("loading the snapshot"))?;
    let report = result.map_err(|e| load_error(e, &cap, limit))?;
    tracing::info!(
        version = report.version,
        contacts = report.contacts,
        rejected_rows = report.rejected_rows,
        "snapshot replaced"
    );
    Ok(Json(report).into_response())
}

/// The caller's tenant's live contact book, as `GET /v1/snapshot` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotStatus {
    pub version: u64,
    /// When the export was taken (the upload's `as_of`).
    pub as_of: DateTime<Utc>,
    pub contacts: usize,
    pub age_seconds: i64,
    /// Older than `snapshot.max_age_seconds`: the tenant's jobs that would send now are held.
    pub stale: bool,
}

/// `GET /v1/snapshot`.
#[utoipa::path(
    get,
    path = "/v1/snapshot",
    operation_id = "get_snapshot",
    tag = "snapshot",
    responses((status = 200, description = "The live snapshot", body = SnapshotStatus))
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
) -> Json<SnapshotStatus> {
    let snap = state.books.store(&by.tenant).current();
    let now = state.clock.now();
    Json(SnapshotStatus {
        version: snap.version(),
        as_of: snap.as_of(),
        contacts: snap.len(),
        age_seconds: (now - snap.as_of()).num_seconds().max(0),
        stale: state.snapshot_stale_at(snap.as_of(), now),
    })
}

/// `PATCH /v1/contacts`: NDJSON upserts and `{"contact_id", "deleted": true}` lines.
#[utoipa::path(
    patch,
    path = "/v1/contacts",
    operation_id = "patch_contacts",
    tag = "snapshot",
    request_body(
        description = "One contact a line, or `{\"contact_id\": ..., \"deleted\": true}`",
        content((Vec<Object> = "application/x-ndjson"))
    ),
    responses(
        (status = 200, description = "The patch was applied", body = PatchReport),
        (status = 415, description = "Content-Type is not application/x-ndjson (`unsupported_media_type`)", body = ErrorBody),
    )
)]
pub async fn patch(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !matches!(format_of(&headers)?, Format::Ndjson) {
        return Err(ApiError::unsupported_media("application/x-ndjson"));
    }
    let limit = state.config.config.server.max_upload_bytes;
    let (reader, cap) = capped_reader(body, limit)?;
    let book = state
        .books
        .book_for_write(&by.tenant)
        .map_err(|_| ApiError::internal("opening the tenant's contact book"))?;
    let (snapshots, files) = (book.store, book.files);
    let result = tokio::task::spawn_blocking(move || {
        let mut tee = files.tee_patch(SyncIoBridge::new(reader))?;
        let report = snapshots.apply_patch(std::io::BufReader::new(&mut tee))?;
        if let Err(e) = files.keep_patch(tee) {
            tracing::error!(error = %e, "the patch is applied but could not be kept on disk; a restart would lose it");
        }
        Ok::<_, SnapshotError>(report)
    })
    .await
    .map_err(|_| ApiError::internal("applying the patch"))?;
    let report = result.map_err(|e| load_error(e, &cap, limit))?;
    Ok(Json(report).into_response())
}
