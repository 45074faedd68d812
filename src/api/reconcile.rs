//! `POST /v1/ledger/reconcile`: diffs a provider's invoice (CSV) against the ledger. The
//! upload is streamed under a byte cap and indexed in memory; the ledger is then streamed past
//! it off the async runtime (see [`crate::ledger::reconcile`]). Answers a JSON report, or with
//! `?format=csv` one CSV row per difference, missing item and bad line.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::IntoParams;

use super::body::{capped_reader, next_line};
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use crate::app::AppState;
use crate::ledger::reconcile::{Columns, IdColumn, Invoice, Reconciler, Report, LIST_LIMIT};
use crate::ledger::LedgerEntry;
use crate::report::csv_cell;

/// The invoice is held in memory while the ledger streams past it, so its cap is lower than
/// that of streamed audiences.
const MAX_INVOICE_BYTES: u64 = 256 << 20;
/// Longest invoice line.
const MAX_INVOICE_LINE: usize = 64 << 10;

/// Query of `POST /v1/ledger/reconcile`: narrows the ledger side.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReconcileQuery {
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
    /// `json` (default) or `csv`.
    #[serde(default)]
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

impl ReconcileQuery {
    fn matches(&self, e: &LedgerEntry) -> bool {
        self.provider
            .as_deref()
            .is_none_or(|p| e.entry.provider == p)
            && self.from.is_none_or(|f| e.entry.at >= f)
            && self.to.is_none_or(|t| e.entry.at < t)
    }
}

/// `POST /v1/ledger/reconcile?provider=&from=&to=&format=json|csv` with a `text/csv` invoice.
#[utoipa::path(
    post,
    path = "/v1/ledger/reconcile",
    operation_id = "reconcile_invoice",
    tag = "ledger",
    params(ReconcileQuery),
    request_body(description = "The provider's invoice: a CSV header naming the id, charge and optional parts and currency columns, then one line per message", content((String = "text/csv"))),
    responses(
        (status = 200, description = "The differences", content(
            (Report = "application/json"),
            (String = "text/csv"),
        )),
        (status = 415, description = "Content-Type is not text/csv (`unsupported_media_type`)", body = ErrorBody),
    )
)]
pub async fn reconcile(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<ReconcileQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::invalid("format", "must be json or csv")),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("text/csv") {
        return Err(ApiError::unsupported_media("text/csv"));
    }
    let invoice = read_invoice(&state, body).await?;
    let ledger = state.ledger.clone();
    if csv {
        return Ok(stream_csv(ledger, q, invoice));
    }
    let report = tokio::task::spawn_blocking(move || {
        let mut r = Reconciler::new(invoice);
        ledger.scan(|e| {
            if q.matches(e) {
                r.observe(e);
            }
            true
        })?;
        Ok::<_, crate::ledger::LedgerError>(r.finish(LIST_LIMIT))
    })
    .await
    .map_err(|_| ApiError::internal("reconciling the ledger"))?
    .map_err(|e| {
        tracing::error!(error = %e, "ledger read failed");
        ApiError::internal("reading the ledger")
    })?;
    Ok(Json(report).into_response())
}

/// Reads the invoice: the header decides the columns; bad data lines become report errors.
async fn read_invoice(state: &AppState, body: Body) -> Result<Invoice, ApiError> {
    let limit = state
        .config
        .config
        .server
        .max_upload_bytes
        .min(MAX_INVOICE_BYTES);
    let (mut reader, cap) = capped_reader(body, limit)?;
    let io_err = |e: std::io::Error, line_no: u64| {
        cap.refusal(limit)
            .unwrap_or_else(|| ApiError::bad_request(format!("line {line_no}: {e}")))
    };
    let mut line = Vec::with_capacity(256);
    if !next_line(&mut reader, &mut line, MAX_INVOICE_LINE)
        .await
        .map_err(|e| io_err(e, 1))?
    {
        return Err(ApiError::bad_request(
            "empty body: the first line must be the CSV header",
        ));
    }
    let header = split_csv(&line).map_err(|m| ApiError::invalid("header", m))?;
    let columns = Columns::from_header(header.iter())
        .map_err(|e| ApiError::invalid("header", e.to_string()))?;
    let mut invoice = Invoice::new(columns);
    let mut line_no: u64 = 1;
    loop {
        line_no += 1;
        if !next_line(&mut reader, &mut line, MAX_INVOICE_LINE)
            .await
            .map_err(|e| io_err(e, line_no))?
        {
            break;
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match split_csv(&line) {
            Ok(fields) => invoice.push(line_no, &fields.iter().collect::<Vec<_>>()),
            Err(m) => invoice.push_error(line_no, m),
        }
    }
    Ok(invoice)
}

/// Splits one CSV line into fields (quotes and escaped quotes as RFC 4180).
fn split_csv(line: &[u8]) -> Result<csv::StringRecord, String> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(line.len().max(64))
        .from_reader(line);
    let mut rec = csv::StringRecord::new();
    match r.read_record(&mut rec) {
        Ok(_) => Ok(rec),
        Err(e) => Err(format!("not a CSV line: {e}")),
    }
}

const CSV_HEADER: &str = "kind,line,id,ledger_cost_micros,invoice_charge_micros,difference_micros,ledger_parts,invoice_parts,currency,message\n";

/// One row of the CSV answer; `None` fields stay empty.
#[derive(Default)]
struct Row<'a> {
    kind: &'a str,
    line: Option<u64>,
    id: &'a str,
    ledger_cost: Option<i64>,
    invoice_charge: Option<i64>,
    difference: Option<i64>,
    ledger_parts: Option<u64>,
    invoice_parts: Option<u32>,
    currency: String,
    message: &'a str,
}

/// Writes one row: text cells (kind, invoice ids echoed back, currency, message) neutralised
/// against spreadsheet formulas, numbers (a negative difference too) written as they are.
fn write_row(row: Row<'_>, out: &mut Vec<u8>) {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let text = |s: &str| csv_cell::text(s).into_owned();
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let _ = w.write_record([
        text(row.kind),
        opt(row.line.map(|v| v.to_string())),
        text(row.id),
        opt(row.ledger_cost.map(|v| v.to_string())),
        opt(row.invoice_charge.map(|v| v.to_string())),
        opt(row.difference.map(|v| v.to_string())),
        opt(row.ledger_parts.map(|v| v.to_string())),
        opt(row.invoice_parts.map(|v| v.to_string())),
        text(&row.currency),
        text(row.message),
    ]);
    if let Ok(bytes) = w.into_inner() {
        out.extend_from_slice(&bytes);
    }
}

/// Streams the CSV answer: bad lines, then ledger entries missing from the invoice as the
/// scan finds them (all of them, uncapped), then the invoice side's rows.
fn stream_csv(ledger: crate::ledger::Ledger, q: ReconcileQuery, invoice: Invoice) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(CSV_HEADER.as_bytes());
        for e in &invoice.errors().items {
            write_row(
                Row {
                    kind: "error",
                    line: Some(e.line),
                    message: &e.message,
                    ..Row::default()
                },
                &mut buf,
            );
        }
        let mut r = Reconciler::new(invoice);
        let by = r.matched_by();
        let result = ledger.scan(|e| {
            if q.matches(e) {
                if let Some(m) = r.observe(e) {
                    write_row(
                        Row {
                            kind: "missing_in_invoice",
                            id: match by {
                                IdColumn::MessageId => &m.message_id,
                                IdColumn::ProviderMessageId => {
                                    m.provider_message_id.as_deref().unwrap_or(&m.message_id)
                                }
                            },
                            ledger_cost: Some(m.cost_micros),
                            ledger_parts: Some(u64::from(e.entry.parts)),
                            currency: m.currency.to_string(),
                            ..Row::default()
                        },
                        &mut buf,
                    );
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
            return;
        }
        invoice_rows(&r.finish(usize::MAX), &mut buf);
        let _ = tx.blocking_send(Ok(Bytes::from(buf)));
    });
    (
        [(header::CONTENT_TYPE, "text/csv")],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response()
}

fn invoice_rows(report: &Report, buf: &mut Vec<u8>) {
    for d in &report.amount_differences.items {
        write_row(
            Row {
                kind: "amount_difference",
                line: Some(d.line),
                id: &d.id,
                ledger_cost: Some(d.ledger_cost_micros),
                invoice_charge: Some(d.invoice_charge_micros),
                difference: Some(d.difference_micros),
                currency: d.currency.to_string(),
                ..Row::default()
            },
            buf,
        );
    }
    for d in &report.parts_differences.items {
        write_row(
            Row {
                kind: "parts_difference",
                line: Some(d.line),
                id: &d.id,
                ledger_parts: Some(d.ledger_parts),
                invoice_parts: Some(d.invoice_parts),
                ..Row::default()
            },
            buf,
        );
    }
    for d in &report.currency_differences.items {
        let message = format!(
            "invoiced in {}, recorded in {}",
            d.invoice_currency, d.ledger_currency
        );
        write_row(
            Row {
                kind: "currency_difference",
                line: Some(d.line),
                id: &d.id,
                currency: d.invoice_currency.to_string(),
                message: &message,
                ..Row::default()
            },
            buf,
        );
    }
    for m in &report.missing_in_ledger.items {
        write_row(
            Row {
                kind: "missing_in_ledger",
                line: Some(m.line),
                id: &m.id,
                invoice_charge: Some(m.charge_micros),
                ..Row::default()
            },
            buf,
        );
    }
}
