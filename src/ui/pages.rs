//! The job list (`/ui/jobs`), a job's page (`/ui/jobs/{id}`) and a campaign's page
//! (`/ui/campaigns/{id}`). Figures come from [`job_view::view`] and [`campaign::build`], as
//! for `GET /v1/jobs` and the JSON reports.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Deserialize;

use super::access::SignedIn;
use super::format;
use super::report_page::ReportPage;
use super::{render, Chrome, PageError};
use crate::api::job_request::MAX_CAMPAIGN_ID;
use crate::app::AppState;
use crate::domain::{JobId, JobStatus};
use crate::report::{campaign, job_view};

/// Jobs listed at most.
const MAX_LISTED: usize = 200;

/// `GET /ui/`.
pub async fn home() -> Redirect {
    Redirect::to("/ui/jobs")
}

/// Any other path under `/ui/`.
pub async fn no_such_page() -> PageError {
    PageError::NotFound("page")
}

/// One job in the list.
struct JobRow {
    id: String,
    campaign_id: String,
    status: &'static str,
    channel: &'static str,
    created_at: String,
    audience: u64,
    sent: u64,
    delivered: u64,
    cost: String,
}

/// The job list.
#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    chrome: Chrome,
    campaign: String,
    status: String,
    statuses: Vec<&'static str>,
    jobs: Vec<JobRow>,
    more: bool,
}

/// `?campaign=&status=` of the job list; empty means any.
#[derive(Debug, Deserialize)]
pub struct JobsQuery {
    #[serde(default)]
    campaign: String,
    #[serde(default)]
    status: String,
}

const STATUSES: [JobStatus; 8] = [
    JobStatus::Queued,
    JobStatus::Scheduled,
    JobStatus::Running,
    JobStatus::Paused,
    JobStatus::Completed,
    JobStatus::Cancelled,
    JobStatus::Failed,
    JobStatus::BudgetExhausted,
];

/// `GET /ui/jobs`: newest first, filtered by campaign and status.
pub async fn jobs(
    State(state): State<Arc<AppState>>,
    Extension(signed_in): Extension<SignedIn>,
    Query(q): Query<JobsQuery>,
) -> Response {
    let campaign = q.campaign.trim().to_string();
    let status = q.status;
    let wanted = STATUSES.into_iter().find(|s| s.as_str() == status);
    let now = state.clock.now();
    let mut matching = state
        .dispatcher
        .list()
        .into_iter()
        .filter(|j| signed_in.principal.owns(j.spec.tenant.as_str()))
        .filter(|j| campaign.is_empty() || j.spec.campaign_id == *campaign)
        .filter(|j| wanted.is_none_or(|s| j.status() == s));
    let jobs: Vec<JobRow> = matching
        .by_ref()
        .take(MAX_LISTED)
        .map(|j| {
            let v = job_view::view(&j, now);
            JobRow {
                id: v.id.to_string(),
                campaign_id: v.campaign_id.to_string(),
                status: v.status.as_str(),
                channel: v.channel.as_str(),
                created_at: v.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                audience: v.counts.audience,
                sent: v.counts.sent,
                delivered: v.counts.delivered,
                cost: format!(
                    "{} {}",
                    format::money(v.counts.cost_micros),
                    v.counts.currency
                ),
            }
        })
        .collect();
    let more = matching.next().is_some();
    drop(matching);
    let page = JobsPage {
        chrome: Chrome::signed_in(&state, &signed_in),
        campaign,
        status: wanted.map_or("", JobStatus::as_str).to_string(),
        statuses: STATUSES.iter().map(|s| s.as_str()).collect(),
        more,
        jobs,
    };
    render(&page)
}

/// `GET /ui/jobs/{id}`.
pub async fn job(
    State(state): State<Arc<AppState>>,
    Extension(signed_in): Extension<SignedIn>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let job_id = JobId::parse(&id).ok_or(PageError::NotFound("job"))?;
    let Some(job) = state.dispatcher.get(&job_id) else {
        return Err(if state.dispatcher.is_recovering(&job_id) {
            PageError::Unavailable("The job is being restored after a restart; reload shortly.")
        } else {
            PageError::NotFound("job")
        });
    };
    // Another tenant's job does not exist for this reader.
    if !signed_in.principal.owns(job.spec.tenant.as_str()) {
        return Err(PageError::NotFound("job"));
    }
    let now = state.clock.now();
    let report = campaign::build("job", id, std::slice::from_ref(&job), &*state.store, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "a job report could not be read");
            PageError::Unavailable("The state store did not answer; reload shortly.")
        })?;
    let view = job_view::view(&job, now);
    let page = ReportPage::new(Chrome::signed_in(&state, &signed_in), &report, Some(&view));
    Ok(render(&page))
}

/// `GET /ui/campaigns/{id}`.
pub async fn campaign(
    State(state): State<Arc<AppState>>,
    Extension(signed_in): Extension<SignedIn>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    if id.trim().is_empty() || id.len() > MAX_CAMPAIGN_ID {
        return Err(PageError::NotFound("campaign"));
    }
    let mut jobs = campaign::jobs_of(&state.dispatcher, &id);
    jobs.retain(|j| signed_in.principal.owns(j.spec.tenant.as_str()));
    if jobs.is_empty() {
        return Err(PageError::NotFound("campaign"));
    }
    let report = campaign::build("campaign", id, &jobs, &*state.store, state.clock.now())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "a campaign report could not be read");
            PageError::Unavailable("The state store did not answer; reload shortly.")
        })?;
    let page = ReportPage::new(Chrome::signed_in(&state, &signed_in), &report, None);
    Ok(render(&page).into_response())
}
