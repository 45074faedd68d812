//! Previews (`dry_run`): the whole decision pipeline over a job's audience without sending or
//! reserving caps, and the finish-time model ops use to answer "will it finish in time, and
//! what will it cost?". A running job's ETA uses the same model with the measured rate.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::dispatcher::Dispatcher;
use super::job::Job;
use crate::domain::{Currency, JobStatus};
use crate::policy::{Decision, PolicyInput, PolicyRunner, ReadyMessage};
use crate::store::{StateStore, StoreError};

/// What a preview answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Preview {
    pub audience: u64,
    pub eligible: u64,
    pub rejected: BTreeMap<&'static str, u64>,
    /// Eligible recipients that wait for their quiet-hours window; counted in `segments` and
    /// `cost_micros` as they will be sent when it opens.
    pub deferred: u64,
    pub segments: u64,
    pub cost_micros: i64,
    pub currency: Currency,
    /// Parts per second the provider allows (0 = unlimited).
    pub rate_limit_parts_per_second: u32,
    /// Parts of jobs at the same or higher priority on the same provider, sent first.
    pub parts_queued_ahead: u64,
    /// When the first message goes: after the jobs ahead, and not before the first
    /// quiet-hours window opens when every eligible recipient waits for one.
    pub predicted_start: DateTime<Utc>,
    pub predicted_finish: DateTime<Utc>,
    /// Frequency caps are not reserved by a preview, so they are not counted here.
    pub frequency_caps_checked: bool,
}

/// The unit price recipient `i` would pay at the provider the route picks for it now.
fn routed_price(dispatcher: &Dispatcher, job: &Job, i: u32, m: &ReadyMessage) -> i64 {
    let slot = job.route(dispatcher.router(), i, m.region, &m.to, &mut Vec::new());
    job.unit_price(slot, m.region).0
}

/// Runs the pipeline over `job` (planned with `reserve_caps = false`).
pub async fn preview(
    dispatcher: &Dispatcher,
    store: &dyn StateStore,
    job: &Job,
) -> Result<Preview, StoreError> {
    let now = dispatcher.clock().now();
    let snapshot = dispatcher.books().store(&job.spec.tenant).current();
    let audience = &job.audience;
    let mut rejected: BTreeMap<&'static str, u64> = BTreeMap::new();
    let dups = audience.duplicates().len() as u64;
    if dups > 0 {
        rejected.insert(crate::domain::Reason::Duplicate.as_str(), dups);
    }
    let (mut eligible, mut segments, mut cost) = (0u64, 0u64, 0i64);
    // Recipients deferred by quiet hours go when their window opens: they are decided again
    // at that time below, so their parts and cost count like everyone else's.
    let mut deferred: BTreeMap<DateTime<Utc>, Vec<u32>> = BTreeMap::new();
    let start_at = job.spec.send_at.unwrap_or(now).max(now);
    let indices: Vec<u32> = audience.shard(1).pop().unwrap_or_default();
    for chunk in indices.chunks(1024) {
        let inputs = policy_inputs(job, chunk);
        let decisions =
            PolicyRunner::decide_batch(&job.policy, &snapshot, store, &inputs, start_at).await?;
        for (&i, d) in chunk.iter().zip(decisions) {
            match d {
                Decision::Reject(r) => *rejected.entry(r.as_str()).or_default() += 1,
                Decision::Send(m) => {
                    eligible += 1;
                    segments += m.parts.parts as u64;
                    cost += routed_price(dispatcher, job, i, &m) * i64::from(m.parts.parts);
                }
                Decision::Defer(until) => {
                    eligible += 1;
                    deferred.entry(until).or_default().push(i);
                }
            }
        }
    }
    let deferred_count: u64 = deferred.values().map(|v| v.len() as u64).sum();
    // (when due, parts) of the deferred recipients, in due order.
    let mut due_parts: Vec<(DateTime<Utc>, u64)> = Vec::new();
    for (until, list) in &deferred {
        let mut parts = 0u64;
        for chunk in list.chunks(1024) {
            let inputs = policy_inputs(job, chunk);
            let decisions =
                PolicyRunner::decide_batch(&job.policy, &snapshot, store, &inputs, *until).await?;
            for (&i, d) in chunk.iter().zip(decisions) {
                // Rejected at that time (a rendering problem shows now, too) or deferred again:
                // one part at least, as before.
                let (p, c) = match d {
                    Decision::Send(m) => (
                        m.parts.parts as u64,
                        routed_price(dispatcher, job, i, &m) * i64::from(m.parts.parts),
                    ),
                    _ => (1, 0),
                };
                parts += p;
                cost += c;
            }
        }
        segments += parts;
        due_parts.push((*until, parts));
    }
    let slot = &dispatcher.providers()[job.provider];
    let rate = slot.limiter.rate();
    let ahead = parts_ahead(dispatcher, job);
    let start = job.spec.send_at.unwrap_or(now).max(now);
    let burst = slot.limiter.burst() as u64;
    let now_parts = segments - due_parts.iter().map(|(_, p)| p).sum::<u64>();
    let mut sending_start = start + send_duration(ahead, rate, 0);
    let mut finish =
        sending_start + send_duration(now_parts, rate, if ahead == 0 { burst } else { 0 });
    if now_parts == 0 {
        // Nothing goes before the first window opens.
        if let Some((first_due, _)) = due_parts.first() {
            sending_start = sending_start.max(*first_due);
        }
    }
    for (due, parts) in &due_parts {
        // Each group goes when due, at the same rate, after whatever is still going.
        finish = finish.max(*due) + send_duration(*parts, rate, 0);
    }
    Ok(Preview {
        audience: audience.len() as u64,
        eligible,
        deferred: deferred_count,
        rejected,
        segments,
        cost_micros: cost,
        currency: job.currency,
        rate_limit_parts_per_second: rate,
        parts_queued_ahead: ahead,
        predicted_start: sending_start,
        predicted_finish: finish,
        frequency_caps_checked: false,
    })
}

/// The policy inputs of some of the job's recipients.
fn policy_inputs<'a>(job: &'a Job, indices: &[u32]) -> Vec<PolicyInput<'a>> {
    indices
        .iter()
        .map(|&i| PolicyInput {
            contact_id: job.audience.contact_id(i),
            upstream_phone: job.audience.phone(i),
            variables: job.audience.variables(i),
        })
        .collect()
}

/// Time to send `parts` at `rate` parts/s when `burst` of them can go at once; unlimited
/// providers are modelled at the measured in-process capacity.
pub fn send_duration(parts: u64, rate: u32, burst: u64) -> Duration {
    const UNLIMITED_PARTS_PER_SECOND: f64 = 500_000.0;
    let rate = if rate == 0 {
        UNLIMITED_PARTS_PER_SECOND
    } else {
        rate as f64
    };
    let paced = parts.saturating_sub(burst) as f64;
    Duration::milliseconds((paced / rate * 1000.0).round() as i64)
}

/// Parts still to send for runnable jobs on the same provider at the same or a higher
/// priority (estimated at the parts per message measured so far, one when none yet).
fn parts_ahead(dispatcher: &Dispatcher, job: &Job) -> u64 {
    dispatcher
        .list()
        .iter()
        .filter(|j| j.provider == job.provider && j.spec.priority >= job.spec.priority)
        .filter(|j| matches!(j.status(), JobStatus::Queued | JobStatus::Running))
        .map(|j| {
            let sent = j
                .progress
                .counters
                .sent
                .load(std::sync::atomic::Ordering::Relaxed);
            let segs = j
                .progress
                .counters
                .segments
                .load(std::sync::atomic::Ordering::Relaxed);
            let per_msg = if sent == 0 {
                1.0
            } else {
                segs as f64 / sent as f64
            };
            (j.remaining().saturating_sub(j.deferred_len() as u64) as f64 * per_msg) as u64
        })
        .sum()
}
