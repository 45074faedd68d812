//! Provider callbacks: `POST /v1/callbacks/{provider}/receipts` and
//! `POST /v1/callbacks/{provider}/inbound`. Authenticated by the provider's HMAC signature,
//! not an API key (see [`crate::callbacks::signature`]): the raw body is read (capped),
//! verified, and only then parsed. Replays are answered idempotently ([`crate::callbacks`]).
//! Receipts of the cloud SMS providers come in their own format and authentication, and are
//! answered in the shape each provider expects ([`crate::callbacks::dialect`]).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use crate::app::AppState;
use crate::callbacks::bounce;
use crate::callbacks::dialect::{CallbackRequest, DialectError};
use crate::callbacks::inbound::{self, InboundTally};
use crate::callbacks::receipt::Receipt;
use crate::callbacks::receipt::{self, WireError};
use crate::callbacks::signature::{Verified, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::callbacks::{ProviderCallbacks, ReceiptTally};
use crate::dispatch::{ReceiptStatus, ReceiptUpdate};
use crate::domain::email_entry;
use crate::store::SuppressionKey;

/// Reads and verifies a signed callback body.
async fn signed<'a>(
    state: &'a AppState,
    provider: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(&'a ProviderCallbacks, Bytes, Verified), ApiError> {
    let cb = &state.callbacks;
    let p = cb
        .provider(provider)
        .ok_or_else(|| ApiError::not_found("provider"))?;
    let limit = cb.max_body_bytes();
    let bytes = super::body::read_whole(body, limit).await?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verified = cb
        .authenticate(
            p,
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            &bytes,
        )
        .map_err(|e| {
            tracing::info!(provider = %p.name, reason = e.code(), "callback refused");
            ApiError::unauthenticated(e)
        })?;
    Ok((p, bytes, verified))
}

fn wire_error(e: WireError) -> ApiError {
    ApiError::invalid(e.field, e.message)
}

/// `POST /v1/callbacks/{provider}/receipts`: answers `{"applied","duplicates","unknown"}`, or
/// the acknowledgement a cloud provider expects.
#[utoipa::path(
    post,
    path = "/v1/callbacks/{provider}/receipts",
    operation_id = "receive_receipts",
    tag = "callbacks",
    params(
        ("provider" = String, Path, description = "A configured provider's name"),
        ("X-Herald-Timestamp" = Option<String>, Header, description = "Unix seconds (herald's own format)"),
        ("X-Herald-Signature" = Option<String>, Header, description = "Hex HMAC-SHA256 of `timestamp.body` (herald's own format)"),
    ),
    request_body(
        description = "Delivery receipts: herald's JSON, or the cloud provider's own format",
        content((Object = "application/json"), (String = "application/x-www-form-urlencoded"))
    ),
    responses(
        (status = 200, description = "herald's format: a `ReceiptTally` (`applied`, `duplicates`, `unknown`); a cloud provider's: the acknowledgement it expects", body = Object),
        (status = 401, description = "Not authentic: `callbacks_not_configured`, `signature_missing`, `signature_malformed`, `timestamp_out_of_window` or `signature_mismatch`", body = ErrorBody),
        (status = 404, description = "No such provider (`not_found`)", body = ErrorBody),
        (status = 503, description = "Not recorded durably (`unavailable`) or the state backend does not answer (`state_unavailable`); send it again", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn receipts(
    State(state): State<Arc<AppState>>,
    ApiPath(provider): ApiPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = state
        .callbacks
        .provider(&provider)
        .ok_or_else(|| ApiError::not_found("provider"))?;
    if p.dialect.is_herald() {
        let (p, bytes, _) = signed(&state, &provider, &headers, body).await?;
        let receipts = receipt::parse(&bytes).map_err(wire_error)?;
        let tally = apply(&state, p, &receipts).await?;
        return Ok(Json(tally).into_response());
    }
    let bytes = super::body::read_whole(body, state.callbacks.max_body_bytes()).await?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let request = CallbackRequest {
        query: query.as_deref(),
        header: &header,
        body: &bytes,
    };
    let verified = p.dialect.receipts(&request);
    let receipts = verified.map_err(|e| match e {
        DialectError::Auth(e) => {
            tracing::info!(provider = %p.name, reason = e.code(), "callback refused");
            ApiError::unauthenticated(e)
        }
        DialectError::Wire(e) => wire_error(e),
    })?;
    let tally = apply(&state, p, &receipts).await?;
    Ok(Json(p.dialect.answer(&tally)).into_response())
}

/// Applies verified receipts and makes them durable before they are acknowledged.
pub(super) async fn apply(
    state: &AppState,
    p: &ProviderCallbacks,
    receipts: &[Receipt],
) -> Result<ReceiptTally, ApiError> {
    let mut unknown = Vec::new();
    let mut tally = state
        .callbacks
        .apply_receipts_noting_unknown(p, receipts, &mut unknown);
    // With shared work, a receipt may be for a message another instance sent.
    if let (Some(cluster), false) = (&state.cluster, unknown.is_empty()) {
        let ids: Vec<&str> = unknown
            .iter()
            .map(|&n| receipts[n].message_id.as_str())
            .collect();
        let placed = cluster
            .place_receipts(&state.callbacks, p, &ids)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "receipts could not be looked up in the shared index");
                ApiError::unavailable("the shared receipts index did not answer; send them again")
            })?;
        tally.unknown -= placed;
        tally.applied += placed;
    }
    // Acknowledged once durable: after a crash before this, the provider sends them again
    // and applying them again changes nothing.
    state.dispatcher.flush_deliveries().await.map_err(|e| {
        tracing::error!(error = %e, "receipts applied but not recorded");
        ApiError::unavailable("the receipts could not be recorded durably; send them again")
    })?;
    Ok(tally)
}

/// `POST /v1/callbacks/{provider}/bounces`: one raw DSN (RFC 3464), signed like the other
/// callbacks. A failure makes its message undelivered; a hard one (5.x.x) also suppresses the
/// address. Answers `{"applied","duplicates","unknown","suppressed"}`; a delay or other
/// non-failure report is acknowledged and changes nothing.
#[utoipa::path(
    post,
    path = "/v1/callbacks/{provider}/bounces",
    operation_id = "receive_bounce",
    tag = "callbacks",
    params(
        ("provider" = String, Path, description = "A configured email provider's name"),
        ("X-Herald-Timestamp" = Option<String>, Header, description = "Unix seconds"),
        ("X-Herald-Signature" = Option<String>, Header, description = "Hex HMAC-SHA256 of `timestamp.body`"),
    ),
    request_body(description = "One delivery status notification (RFC 3464), as received", content((String = "message/rfc822"), (String = "text/plain"))),
    responses(
        (status = 200, description = "`applied`, `duplicates`, `unknown` and `suppressed` counts", body = Object),
        (status = 401, description = "Not authentic: `callbacks_not_configured`, `signature_missing`, `signature_malformed`, `timestamp_out_of_window` or `signature_mismatch`", body = ErrorBody),
        (status = 404, description = "No such provider (`not_found`)", body = ErrorBody),
        (status = 503, description = "Not recorded durably (`unavailable`) or the state backend does not answer (`state_unavailable`); send it again", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn bounces(
    State(state): State<Arc<AppState>>,
    ApiPath(provider): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (p, bytes, _) = signed(&state, &provider, &headers, body).await?;
    let bounce = bounce::parse(&bytes).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    let Some(bounce) = bounce else {
        return Ok(Json(serde_json::json!({"applied": 0, "suppressed": 0})).into_response());
    };
    let receipt = Receipt {
        message_id: bounce.message_id.clone(),
        update: ReceiptUpdate {
            status: ReceiptStatus::Undelivered,
            part: None,
        },
        error_code: Some(bounce.status.clone()),
    };
    // The bounced message names its job and so its tenant; looked up before its final
    // receipt may drop it from the index.
    let tenant = state.callbacks.tenant_of(p, &bounce.message_id);
    let tally = apply(&state, p, &[receipt]).await?;
    let mut suppressed = 0;
    if let (true, Some(address)) = (bounce.is_hard(), &bounce.recipient) {
        // A message no longer known: the address is dead for every tenant.
        let tenants = match tenant {
            Some(t) => vec![t],
            None => state.callbacks.tenants_with_books(),
        };
        let entry = [SuppressionKey::Address(email_entry(address))];
        for t in &tenants {
            suppressed = suppressed.max(state.store.add_suppressions(t, &entry).await?);
        }
    }
    Ok(Json(serde_json::json!({
        "applied": tally.applied,
        "duplicates": tally.duplicates,
        "unknown": tally.unknown,
        "suppressed": suppressed,
    }))
    .into_response())
}

/// `POST /v1/callbacks/{provider}/inbound`: keyword replies change consent at once.
#[utoipa::path(
    post,
    path = "/v1/callbacks/{provider}/inbound",
    operation_id = "receive_inbound",
    tag = "callbacks",
    params(
        ("provider" = String, Path, description = "A configured provider's name"),
        ("X-Herald-Timestamp" = Option<String>, Header, description = "Unix seconds"),
        ("X-Herald-Signature" = Option<String>, Header, description = "Hex HMAC-SHA256 of `timestamp.body`"),
    ),
    request_body(description = "Inbound replies", content((Object = "application/json"))),
    responses(
        (status = 200, description = "What the replies did (`replayed` for a signed request already applied)", body = InboundTally),
        (status = 401, description = "Not authentic: `callbacks_not_configured`, `signature_missing`, `signature_malformed`, `timestamp_out_of_window` or `signature_mismatch`", body = ErrorBody),
        (status = 404, description = "No such provider (`not_found`)", body = ErrorBody),
        (status = 503, description = "Not recorded durably (`unavailable`) or the state backend does not answer (`state_unavailable`); send it again", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn inbound(
    State(state): State<Arc<AppState>>,
    ApiPath(provider): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (p, bytes, verified) = signed(&state, &provider, &headers, body).await?;
    let messages = inbound::parse(&bytes).map_err(wire_error)?;
    let cb = &state.callbacks;
    // Recorded before it is applied, in the state store: a replay is recognised after a
    // restart and on any instance. A store that does not answer is a 503 (nothing applied).
    if !cb.first_use(&verified).await? {
        return Ok(Json(InboundTally {
            received: messages.len() as u64,
            replayed: true,
            ..InboundTally::default()
        })
        .into_response());
    }
    match cb.apply_inbound(p, messages).await {
        Ok(tally) => Ok(Json(tally).into_response()),
        Err(e) => {
            if let Err(forget) = cb.forget_use(&verified).await {
                tracing::error!(provider = %p.name, error = %forget, "an inbound request that was not applied stays recorded; a retry within the signature window will be taken for a replay");
            }
            Err(e.into())
        }
    }
}
