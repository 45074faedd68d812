//! Reports: `GET /v1/jobs/{id}/report` and `GET /v1/campaigns/{campaign_id}/report`, JSON by
//! default, CSV with `?format=csv` (see [`crate::report::campaign`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery};
use crate::access::Principal;
use crate::app::AppState;
use crate::dispatch::Job;
use crate::report::campaign::{self, Report};

/// `?format=json|csv`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// `json` (default) or `csv` (a `metric,dimension,value` table).
    #[param(pattern = "^(json|csv)$")]
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
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/report",
    operation_id = "get_job_report",
    tag = "reports",
    params(("id" = String, Path, description = "The job id"), ReportQuery),
    responses(
        (status = 200, description = "The job's funnel", content(
            (Report = "application/json"),
            (String = "text/csv; charset=utf-8"),
        )),
        (status = 404, description = "No such job (`not_found`)", body = ErrorBody),
        (status = 503, description = "The job is being restored after a restart (`unavailable`), or the state backend does not answer (`state_unavailable`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn job(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let format = format(&q)?;
    let job = super::jobs::find(&state, &by, &id)?;
    respond(&state, "job", id, &[job], format).await
}

/// `GET /v1/campaigns/{campaign_id}/report`: every job of the campaign, oldest first.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{campaign_id}/report",
    operation_id = "get_campaign_report",
    tag = "reports",
    params(("campaign_id" = String, Path, description = "The campaign id jobs were submitted with"), ReportQuery),
    responses(
        (status = 200, description = "The campaign's funnel over all its jobs", content(
            (Report = "application/json"),
            (String = "text/csv; charset=utf-8"),
        )),
        (status = 404, description = "No job of this campaign (`not_found`)", body = ErrorBody),
        (status = 503, description = "The state backend does not answer (`state_unavailable`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn campaign(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiPath(campaign_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let format = format(&q)?;
    let mut jobs = campaign::jobs_of(&state.dispatcher, &campaign_id);
    jobs.retain(|j| by.owns(j.spec.tenant.as_str()));
    if jobs.is_empty() {
        return Err(ApiError::not_found("campaign"));
    }
    respond(&state, "campaign", campaign_id, &jobs, format).await
}
