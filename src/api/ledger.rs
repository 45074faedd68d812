//! Ledger routes for finance: `GET /v1/ledger` streams entries as NDJSON or CSV, filtered by
//! campaign, job and time; `GET /v1/ledger/summary` totals them by campaign, channel,
//! provider, country and month within each currency.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::IntoParams;

use super::error::ApiError;
use super::extract::ApiQuery;
use crate::access::Principal;
use crate::app::AppState;
use crate::ledger::summary::{LedgerFilter, Summary, TenantJobs};
use crate::ledger::LedgerEntry;
use crate::report::csv_cell;

/// Filters shared by both routes.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LedgerQuery {
    #[serde(default)]
    pub campaign_id: Option<String>,
    #[serde(default)]
    pub job_id: Option<String>,
    /// Entries at or after this time.
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    /// Entries before this time.
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
    /// The entries: `ndjson` (default) or `csv`. The summary is JSON whatever it says.
    #[serde(default)]
    pub format: Option<String>,
}

impl LedgerQuery {
    /// The filter of the query, limited to the caller's tenant.
    fn filter(&self, state: &AppState, by: &Principal) -> LedgerFilter {
        LedgerFilter {
            campaign_id: self.campaign_id.clone(),
            job_id: self.job_id.clone(),
            from: self.from,
            to: self.to,
            tenant: Some(TenantJobs::of(&state.dispatcher, &by.tenant)),
        }
    }
}

const CSV_HEADER: &str = "seq,kind,message_id,job_id,campaign_id,channel,provider,country,parts,unit_price_micros,cost_micros,currency,at,references,prev_hash,hash\n";

/// One entry as a CSV row: text cells neutralised against spreadsheet formulas (a campaign
/// id is upstream text), numbers written as they are.
fn csv_line(e: &LedgerEntry, out: &mut Vec<u8>) {
    use std::io::Write;
    let n = &e.entry;
    let kind = serde_json::to_value(n.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let text = |s: &str| csv_cell::text(s).into_owned();
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let _ = w.write_record([
        e.seq.to_string(),
        text(&kind),
        text(&n.message_id),
        text(&n.job_id),
        text(&n.campaign_id),
        text(n.channel.as_str()),
        text(&n.provider),
        text(&n.country),
        n.parts.to_string(),
        n.unit_price_micros.0.to_string(),
        n.cost_micros.0.to_string(),
        text(&n.currency.to_string()),
        text(&n.at.to_rfc3339()),
        n.references.map(|r| r.to_string()).unwrap_or_default(),
        text(&e.prev_hash),
        text(&e.hash),
    ]);
    if let Ok(bytes) = w.into_inner() {
        let _ = out.write_all(&bytes);
    }
}

/// `GET /v1/ledger?campaign_id=&job_id=&from=&to=&format=csv|ndjson`.
#[utoipa::path(
    get,
    path = "/v1/ledger",
    operation_id = "get_ledger_entries",
    tag = "ledger",
    params(LedgerQuery),
    responses(
        (status = 200, description = "The entries in chain order: one `LedgerEntry` a line, or CSV", content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        )),
    )
)]
pub async fn entries(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiQuery(q): ApiQuery<LedgerQuery>,
) -> Result<Response, ApiError> {
    let csv = match q.format.as_deref() {
        None | Some("ndjson") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::invalid("format", "must be csv or ndjson")),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let ledger = state.ledger.clone();
    let filter = q.filter(&state, &by);
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(1 << 16);
        if csv {
            buf.extend_from_slice(CSV_HEADER.as_bytes());
        }
        let result = ledger.scan(|e| {
            if filter.matches(e) {
                if csv {
                    csv_line(e, &mut buf);
                } else if serde_json::to_writer(&mut buf, e).is_ok() {
                    buf.push(b'\n');
                }
            }
            if buf.len() >= 1 << 16 {
                let chunk = Bytes::from(std::mem::take(&mut buf));
                return tx.blocking_send(Ok(chunk)).is_ok();
            }
            true
        });
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        } else if !buf.is_empty() {
            let _ = tx.blocking_send(Ok(Bytes::from(buf)));
        }
    });
    let content_type = if csv {
        "text/csv"
    } else {
        "application/x-ndjson"
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response())
}

/// `GET /v1/ledger/summary`: totals per currency, and per campaign, channel, provider,
/// country and month within each currency ([`summary`](crate::ledger::summary)).
#[utoipa::path(
    get,
    path = "/v1/ledger/summary",
    operation_id = "get_ledger_summary",
    tag = "ledger",
    params(LedgerQuery),
    responses(
        (status = 200, description = "Totals per currency and by campaign, channel, provider, country and month", body = Summary),
    )
)]
pub async fn summary(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiQuery(q): ApiQuery<LedgerQuery>,
) -> Result<Response, ApiError> {
    let summary = summarize(&state, q.filter(&state, &by)).await?;
    Ok(Json(summary).into_response())
}

/// The summary of the entries `filter` selects, summed off the async runtime; the finance
/// page reads the same.
pub async fn summarize(state: &AppState, filter: LedgerFilter) -> Result<Summary, ApiError> {
    let ledger = state.ledger.clone();
    tokio::task::spawn_blocking(move || crate::ledger::summary::summarize(&ledger, &filter))
        .await
        .map_err(|_| ApiError::internal("summing the ledger"))?
        .map_err(|e| {
            tracing::error!(error = %e, "ledger read failed");
            ApiError::internal("reading the ledger")
        })
}
