//! Reports: `GET /v1/jobs/{id}/report` and `GET /v1/campaigns/{campaign_id}/report`, JSON by
//! default, CSV with `?format=csv` (see [`crate::report::campaign`]).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use super::error::ApiError;
use crate::access::Principal;
use crate::app::AppState;
use crate::dispatch::Job;
use crate::report::campaign;

/// `?format=json|csv`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    #[serde(default)]
    pub format: Option<String>,
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Csv,
}

fn format(q: &ReportQuery) -> Result<Format, ApiError> {
    match q.format.as_deref().map(str::trim) {
        None | Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(_) => Err(ApiError::invalid("format", "must be json or csv")),
    }
}

async fn respond(
    state: &AppState,
    kind: &'static str,
    id: String,
    jobs: &[Arc<Job>],
    format: Format,
) -> Result<Response, ApiError> {
    let report = campaign::build(kind, id, jobs, &*state.store, state.clock.now()).await?;
    Ok(match format {
        Format::Json => Json(report).into_response(),
        Format::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            campaign::to_csv(&report),
        )
            .into_response(),
    })
}

/// `GET /v1/jobs/{id}/report`.
pub async fn job(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let format = format(&q)?;
    let job = super::jobs::find(&state, &by, &id)?;
    respond(&state, "job", id, &[job], format).await
}

/// `GET /v1/campaigns/{campaign_id}/report`: every job of the campaign, oldest first.
pub async fn campaign(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    Path(campaign_id): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let format = format(&q)?;
    let mut jobs = campaign::jobs_of(&state.dispatcher, &campaign_id);
    jobs.retain(|j| by.owns(j.spec.tenant.as_str()));
    if jobs.is_empty() {
        return Err(ApiError::not_found("campaign"));
    }
    respond(&state, "campaign", campaign_id, &jobs, format).await
}
