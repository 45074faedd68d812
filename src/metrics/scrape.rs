//! Gauges observed at scrape time from the gateway's own state: jobs by status, queue depths,
//! provider rate limits, snapshot age, state backend health, and per-job progress for the
//! promotion dashboard.
//! Reading them here, rather than keeping gauges up to date on the hot path, costs the
//! workers nothing and can never drift from what the API reports.
//!
//! Per-job series exist for jobs that are not finished or finished within [`JOB_RETENTION`];
//! a job that falls out of that window stops being set and its series disappear.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use ::metrics::{gauge, Label};
use chrono::{DateTime, Utc};

use super::*;
use crate::cluster::Seen;
use crate::dispatch::{Dispatcher, Job};
use crate::domain::JobStatus;
use crate::snapshot::Snapshot;

/// How long a finished job keeps its per-job series.
pub const JOB_RETENTION: chrono::Duration = chrono::Duration::hours(1);

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

/// What a scrape reads, handed over by the `/metrics` handler.
pub struct Sources<'a> {
    pub now: DateTime<Utc>,
    pub dispatcher: &'a Dispatcher,
    /// The snapshot in use.
    pub snapshot: &'a Snapshot,
    pub snapshot_max_age_seconds: u64,
    /// Whether the state backend answers.
    pub state_up: bool,
    /// What this instance sees of the cluster, when instances share jobs.
    pub cluster: Option<Seen>,
}

/// Sets every scrape-time gauge from `sources`. Call right before rendering.
pub fn observe(sources: &Sources<'_>) {
    let now = sources.now;
    gauge!(BUILD_INFO, VERSION => env!("CARGO_PKG_VERSION")).set(1.0);
    observe_snapshot(sources);
    gauge!(STATE_BACKEND_UP).set(if sources.state_up { 1.0 } else { 0.0 });
    if let Some(seen) = &sources.cluster {
        gauge!(CLUSTER_INSTANCES).set(seen.instances as f64);
        gauge!(CLUSTER_SHARDS_HELD).set(seen.shards_held as f64);
        gauge!(CLUSTER_OUTCOMES_UNWRITTEN).set(seen.outcomes_unwritten as f64);
    }
    let depths = sources.dispatcher.queue_depths();
    gauge!(RETRY_TASKS).set(depths.retry_tasks as f64);
    gauge!(RECEIPT_QUEUE).set(depths.receipt_batches as f64);

    let mut pending: BTreeMap<(&'static str, &str), u64> = BTreeMap::new();
    let router = sources.dispatcher.router();
    for (i, slot) in sources.dispatcher.providers().iter().enumerate() {
        let (ch, name) = (slot.channel.as_str(), slot.provider.name());
        gauge!(PROVIDER_RATE_LIMIT, CHANNEL => ch, PROVIDER => name.to_owned())
            .set(f64::from(slot.limiter.rate()));
        gauge!(PROVIDER_RATE_CURRENT, CHANNEL => ch, PROVIDER => name.to_owned())
            .set(slot.limiter.current_rate());
        if let Some(h) = router.health(i) {
            gauge!(PROVIDER_CIRCUIT, CHANNEL => ch, PROVIDER => name.to_owned())
                .set(f64::from(h.state as u8));
            gauge!(PROVIDER_ERROR_RATIO, CHANNEL => ch, PROVIDER => name.to_owned())
                .set(h.error_share);
            gauge!(PROVIDER_LATENCY, CHANNEL => ch, PROVIDER => name.to_owned())
                .set(h.mean_latency_ms / 1_000.0);
        }
        slot.provider.observe_metrics();
        pending.insert((ch, name), 0);
    }

    let jobs = sources.dispatcher.list();
    let mut by_status = [0u64; STATUSES.len()];
    let mut deferred = 0u64;
    for job in &jobs {
        let st = job.state();
        by_status[status_index(st.status)] += 1;
        let c = &job.progress.counters;
        let sent = c.sent.load(Relaxed);
        let receipts = c.delivered.load(Relaxed) + c.undelivered.load(Relaxed);
        *pending
            .entry((job.spec.channel.as_str(), job.provider_name.as_str()))
            .or_default() += sent.saturating_sub(receipts);
        if !st.status.is_terminal() {
            deferred += c.deferred.load(Relaxed).max(0) as u64;
        }
        let recent = st
            .finished_at
            .is_none_or(|finished| now - finished <= JOB_RETENTION);
        if recent {
            observe_job(job, now);
        }
    }
    for (status, n) in STATUSES.iter().zip(by_status) {
        gauge!(JOBS, STATUS => status.as_str()).set(n as f64);
    }
    gauge!(DEFERRED_RECIPIENTS).set(deferred as f64);
    for ((ch, provider), n) in pending {
        gauge!(RECEIPTS_PENDING, CHANNEL => ch, PROVIDER => provider.to_owned()).set(n as f64);
    }
}

fn observe_snapshot(sources: &Sources<'_>) {
    let snapshot = sources.snapshot;
    let age = (sources.now - snapshot.as_of()).num_milliseconds() as f64 / 1000.0;
    gauge!(SNAPSHOT_AGE).set(age.max(0.0));
    gauge!(SNAPSHOT_CONTACTS).set(snapshot.len() as f64);
    gauge!(SNAPSHOT_MAX_AGE).set(sources.snapshot_max_age_seconds as f64);
}

fn status_index(s: JobStatus) -> usize {
    STATUSES.iter().position(|x| *x == s).unwrap_or(0)
}

fn observe_job(job: &Job, now: DateTime<Utc>) {
    let view = crate::report::job_view::view(job, now);
    let counts = &view.counts;
    let id = job.id.as_str();
    let campaign = job.spec.campaign_id.as_str();
    let labels = |extra: Option<(&'static str, String)>| {
        let mut l = vec![
            Label::new(JOB, id.to_owned()),
            Label::new(CAMPAIGN, campaign.to_owned()),
        ];
        if let Some((k, v)) = extra {
            l.push(Label::new(k, v));
        }
        l
    };
    let mut info = labels(None);
    info.extend([
        Label::new(CHANNEL, job.spec.channel.as_str()),
        Label::new(PURPOSE, job.spec.purpose.as_str()),
        Label::new(PROVIDER, job.provider_name.clone()),
    ]);
    gauge!(JOB_INFO, info).set(1.0);
    for s in STATUSES {
        let on = if s == view.status { 1.0 } else { 0.0 };
        gauge!(JOB_STATUS, labels(Some((STATUS, s.as_str().to_owned())))).set(on);
    }
    gauge!(JOB_AUDIENCE, labels(None)).set(counts.audience as f64);

    let remaining = job.remaining();
    let rejected: u64 = counts.rejected.values().sum();
    let (pending, deferred, cancelled) = if view.status == JobStatus::Cancelled {
        (0, 0, remaining)
    } else {
        let deferred = counts.deferred.min(remaining);
        (remaining - deferred, deferred, 0)
    };
    for (outcome, n) in [
        ("sent", counts.sent),
        ("failed", counts.failed),
        ("rejected", rejected),
        ("deferred", deferred),
        ("pending", pending),
        ("cancelled", cancelled),
    ] {
        gauge!(JOB_RECIPIENTS, labels(Some((OUTCOME, outcome.to_owned())))).set(n as f64);
    }
    for (status, n) in [
        ("delivered", counts.delivered),
        ("undelivered", counts.undelivered),
    ] {
        gauge!(JOB_RECEIPTS, labels(Some((STATUS, status.to_owned())))).set(n as f64);
    }
    gauge!(JOB_PROGRESS, labels(None)).set(view.progress);
    gauge!(
        JOB_COST_MICROS,
        labels(Some((CURRENCY, job.currency.as_str().to_owned())))
    )
    .set(counts.cost_micros as f64);
    if let Some(eta) = view.eta {
        gauge!(JOB_ETA, labels(None)).set(eta.timestamp_millis() as f64 / 1000.0);
    }
}
