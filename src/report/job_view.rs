//! The JSON view of a job (`GET /v1/jobs/{id}`), also the record saved to the state store.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::dispatch::delivery::CostLine;
use crate::dispatch::{BudgetView, Counts, Job};
use crate::domain::{Channel, JobId, JobStatus, Purpose, Reason};

/// A job as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView<'a> {
    pub id: &'a JobId,
    pub campaign_id: &'a str,
    pub channel: Channel,
    pub purpose: Purpose,
    pub priority: u8,
    pub provider: &'a str,
    pub status: JobStatus,
    /// Why a runnable job is not sending right now, if it is held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<&'static str>,
    pub progress: f64,
    pub eta: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub send_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub counts: Counts,
    /// Messages accepted, parts and cost by the provider that accepted them (a route may
    /// spread a job over several).
    pub providers: std::collections::BTreeMap<&'a str, CostLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetView>,
    /// The A/B variants as accepted, with the share held out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variants: Option<VariantsView<'a>>,
}

/// A job's variants in its view.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VariantsView<'a> {
    pub variants: Vec<VariantView<'a>>,
    pub holdout: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<&'a crate::template::RolloutSpec>,
}

/// One variant in a job's view.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VariantView<'a> {
    pub name: &'a str,
    pub weight: u32,
    /// The body as the sender wrote it.
    pub body: String,
}

fn variants_view(job: &Job) -> Option<VariantsView<'_>> {
    let spec = job.spec.variants.as_ref()?;
    let bodies = crate::template::variants::split(&job.spec.template_body);
    Some(VariantsView {
        variants: spec
            .variants
            .iter()
            .zip(bodies)
            .map(|(v, body)| VariantView {
                name: &v.name,
                weight: v.weight,
                body,
            })
            .collect(),
        holdout: spec.holdout,
        rollout: spec.rollout.as_ref(),
    })
}

/// Builds the view at `now`.
pub fn view(job: &Job, now: DateTime<Utc>) -> JobView<'_> {
    let state = job.state();
    let cancelled = if state.status == JobStatus::Cancelled {
        job.remaining()
    } else {
        0
    };
    let shared_progress = job.share().and_then(|s| s.counts()).map(|c| {
        let audience = job.audience.len().max(1) as f64;
        ((c.finals + job.audience.duplicates().len() as u64) as f64 / audience).min(1.0)
    });
    let progress = if state.status.is_terminal() {
        1.0
    } else {
        shared_progress.unwrap_or_else(|| job.progress())
    };
    JobView {
        id: &job.id,
        campaign_id: &job.spec.campaign_id,
        channel: job.spec.channel,
        purpose: job.spec.purpose,
        priority: job.spec.priority,
        provider: &job.provider_name,
        status: state.status,
        blocked: state.blocked,
        progress: (progress * 10_000.0).round() / 10_000.0,
        eta: eta(job, &state, now),
        created_at: job.spec.created_at,
        send_at: job.spec.send_at,
        started_at: state.started_at,
        finished_at: state.finished_at,
        counts: shared_counts(
            job,
            Counts {
                over_budget: if state.status == JobStatus::BudgetExhausted {
                    job.untaken()
                } else {
                    0
                },
                ..job.progress.counters.snapshot(job.currency, cancelled)
            },
        ),
        providers: job
            .progress
            .delivery
            .providers()
            .into_iter()
            .map(|(slot, line)| (job.provider_at(usize::from(slot)), line))
            .collect(),
        budget: job.progress.budget.view(job.currency),
        variants: variants_view(job),
    }
}

/// A job's counts as its report shows them (with shared work, every instance's).
pub fn counts(job: &Job) -> Counts {
    let cancelled = match job.state().status {
        JobStatus::Cancelled => remaining(job),
        _ => 0,
    };
    shared_counts(job, job.progress.counters.snapshot(job.currency, cancelled))
}

/// Recipients without a final outcome yet (with shared work, as every instance wrote them).
pub fn remaining(job: &Job) -> u64 {
    match job.share().and_then(|s| s.counts()) {
        Some(shared) => (job.audience.len() as u64)
            .saturating_sub(job.audience.duplicates().len() as u64)
            .saturating_sub(shared.finals),
        None => job.remaining(),
    }
}

/// With shared work, the counts every instance wrote (duplicates are found at planning;
/// `unknown`, opens and clicks stay this instance's own).
fn shared_counts(job: &Job, local: Counts) -> Counts {
    let Some(shared) = job.share().and_then(|s| s.counts()) else {
        return local;
    };
    let mut rejected: std::collections::BTreeMap<&'static str, u64> = shared
        .rejected
        .iter()
        .map(|(r, n)| (r.as_str(), *n))
        .collect();
    let duplicates = job.audience.duplicates().len() as u64;
    if duplicates > 0 {
        *rejected.entry(Reason::Duplicate.as_str()).or_default() += duplicates;
    }
    Counts {
        accepted: shared.sent + shared.failed + shared.in_doubt + shared.sending,
        rejected,
        deferred: shared.deferred,
        sent: shared.sent,
        failed: shared.failed,
        in_doubt: shared.in_doubt,
        segments: shared.segments,
        cost_micros: shared.cost_micros,
        delivered: shared.delivered,
        undelivered: shared.undelivered,
        expired: shared.expired,
        ..local
    }
}

/// Finish estimate from the measured rate since the job started; deferred recipients push it
/// to when they come due at the earliest.
fn eta(
    job: &Job,
    state: &crate::dispatch::job::JobState,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match state.status {
        JobStatus::Completed | JobStatus::Cancelled | JobStatus::Failed => {
            return state.finished_at
        }
        JobStatus::Running => {}
        _ => return None,
    }
    let started = state.started_at?;
    let elapsed = (now - started).num_milliseconds().max(1) as f64 / 1000.0;
    let audience = job.audience.len() as u64;
    let remaining = job.remaining();
    let deferred = job.deferred_len() as u64;
    let done = audience.saturating_sub(remaining);
    let active = remaining.saturating_sub(deferred);
    let mut eta = now;
    if active > 0 {
        if done == 0 {
            return None;
        }
        let rate = done as f64 / elapsed;
        eta += chrono::Duration::milliseconds((active as f64 / rate * 1000.0) as i64);
    }
    if deferred > 0 {
        if let Some(due) = job.next_deferred_due() {
            eta = eta.max(due);
        }
    }
    Some(eta)
}
