//! One worker's loop and the processing of one chunk: decide, wait for rate-limit tokens,
//! record it as `sending`, send, and retry transient failures with backoff. What is done with
//! the provider's answers is in [`super::settle`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::dispatcher::Inner;
use super::job::{Job, Lease};
use super::journal::codec::SendingItem;
use super::retry;
use super::settle::{failed_item, record_outcomes, Unanswered};
use crate::domain::{JobStatus, MessageId};
use crate::ledger::EntryBatch;
use crate::metrics;
use crate::policy::{Decision, PolicyInput, PolicyRunner};
use crate::provider::{OutboundMessage, SendOutcome};
use crate::store::CapRequest;

/// A worker: takes work until shutdown. It keeps one chunk at the provider and prepares the
/// next one meanwhile (decisions, the durable `sending` record), so the provider gets the
/// next chunk as soon as it has answered the last, and the time spent deciding and syncing
/// overlaps the time spent waiting for the provider. Chunks for a rate-limited provider are
/// sent as soon as they are prepared (see [`prepare_next`]).
///
/// On shutdown a prepared chunk that has not gone out is withdrawn at once ([`withdraw`]):
/// only what was handed to the provider can be in doubt after the stop.
pub(super) async fn run(inner: Arc<Inner>, worker_no: u64) {
    let mut seed = worker_no.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut at_provider: Option<ReadyChunk> = None;
    loop {
        let stopping = inner.shutdown.load(Ordering::SeqCst);
        if stopping {
            if let Some(chunk) = at_provider.take() {
                withdraw(&inner, chunk).await;
            }
            break;
        }
        let current = at_provider.take();
        let (answered, answered_rx) = tokio::sync::oneshot::channel::<()>();
        let (next, ()) = tokio::join!(
            async {
                let next = prepare_next(&inner, &mut seed).await?;
                // Held until the provider has answered the current chunk.
                tokio::select! {
                    _ = answered_rx => Some(next),
                    () = inner.stopping.cancelled() => {
                        withdraw(&inner, next).await;
                        None
                    }
                }
            },
            async {
                if let Some(chunk) = current {
                    deliver(&inner, chunk).await;
                }
                let _ = answered.send(());
            }
        );
        at_provider = next;
    }
}

/// Takes back a prepared chunk that never reached the provider (shutdown came first): its
/// `sending` record is withdrawn in the journal, so a restart decides these recipients again
/// instead of holding them in doubt; budget and cap reservations are given back and the
/// lease returned undone.
async fn withdraw(inner: &Arc<Inner>, chunk: ReadyChunk) {
    let ReadyChunk {
        job,
        lease,
        metas,
        messages,
        decided_at,
        ..
    } = chunk;
    let indices: Vec<u32> = metas.iter().map(|m| m.index).collect();
    inner.deps.send_log.withdrawn(&job, &indices).await;
    for (m, msg) in metas.iter().zip(&messages) {
        job.progress.budget.give_back(message_cost(&job, m, msg));
    }
    job.progress
        .counters
        .accepted
        .fetch_sub(metas.len() as u64, Ordering::Relaxed);
    let caps: Vec<CapRequest> = metas.iter().filter_map(|m| m.cap).collect();
    release_caps(inner, &caps, decided_at).await;
    release(inner, &job, lease, false);
}

/// A chunk decided, given its rate-limit tokens and recorded as `sending`: ready to go to
/// the provider. Its lease is held until the provider's answers are recorded.
struct ReadyChunk {
    job: Arc<Job>,
    lease: Lease,
    metas: Vec<Meta>,
    messages: Vec<OutboundMessage>,
    decided_at: DateTime<Utc>,
    seed: u64,
}

/// What preparing a chunk came to.
enum Prepared {
    /// Messages ready for the provider.
    Ready(Vec<Meta>, Vec<OutboundMessage>, DateTime<Utc>),
    /// Every recipient has its outcome (or is deferred); nothing to send.
    Finished,
    /// The store could not answer before anything was decided: offer the chunk again.
    Again,
}

/// Leases the next chunk and prepares it; answers it if it has messages for the provider.
async fn prepare_next(inner: &Arc<Inner>, seed: &mut u64) -> Option<ReadyChunk> {
    let notified = inner.work_ready.notified();
    let Some((job, lease)) = inner.next_work() else {
        let _ = tokio::time::timeout(inner.idle_wait(), notified).await;
        return None;
    };
    *seed = seed.wrapping_add(1);
    match prepare(inner, &job, &lease.indices).await {
        Prepared::Ready(metas, messages, decided_at) => {
            let chunk = ReadyChunk {
                job,
                lease,
                metas,
                messages,
                decided_at,
                seed: *seed,
            };
            // A rate-limited provider's chunk goes out as soon as its tokens are granted:
            // granted tokens held while the previous chunk is at the provider would bunch
            // sends past the limit, and the limit, not latency, bounds such a provider anyway.
            if inner.deps.providers[chunk.job.provider].limiter.rate() > 0 {
                deliver(inner, chunk).await;
                return None;
            }
            Some(chunk)
        }
        Prepared::Finished => {
            release(inner, &job, lease, true);
            None
        }
        Prepared::Again => {
            release(inner, &job, lease, false);
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        }
    }
}

/// Gives a chunk's lease back (`done`: its recipients are taken care of) and completes the
/// job if that was its last work.
fn release(inner: &Inner, job: &Arc<Job>, lease: Lease, done: bool) {
    let now = inner.deps.clock.now();
    job.release(lease, done, now);
    inner.maybe_complete(job, now);
}

/// Hands a ready chunk to the provider and records the answers; transient failures are
/// retried on their own task, so the worker goes straight on.
async fn deliver(inner: &Arc<Inner>, chunk: ReadyChunk) {
    let ReadyChunk {
        job,
        lease,
        metas,
        messages,
        decided_at,
        seed,
    } = chunk;
    let left = send_and_record(inner, &job, metas, messages, decided_at).await;
    if !left.messages.is_empty() {
        let permit = inner.retry_slots.clone().acquire_owned().await.ok();
        let (inner, job) = (inner.clone(), job.clone());
        tokio::spawn(async move {
            retry(&inner, &job, left, decided_at, seed).await;
            // Release the slot last: a drain that sees it free finds nothing held.
            drop(inner);
            drop(permit);
        });
    }
    release(inner, &job, lease, true);
}

/// What the worker keeps about a message while the provider has it.
pub(super) struct Meta {
    pub index: u32,
    pub region: crate::phone::RegionCode,
    pub cap: Option<CapRequest>,
}

/// Decides a chunk, waits for its rate-limit tokens and records it as `sending`.
async fn prepare(inner: &Arc<Inner>, job: &Arc<Job>, indices: &[u32]) -> Prepared {
    if indices.is_empty() {
        return Prepared::Finished;
    }
    let snapshot = inner.deps.snapshots.current();
    let audience = &job.audience;
    let inputs: Vec<PolicyInput<'_>> = indices
        .iter()
        .map(|&i| PolicyInput {
            contact_id: audience.contact_id(i),
            upstream_phone: audience.phone(i),
            variables: audience.variables(i),
        })
        .collect();
    let decided_at = inner.deps.clock.now();
    let decisions = match PolicyRunner::decide_batch(
        &job.policy,
        &snapshot,
        &*inner.deps.store,
        &inputs,
        decided_at,
    )
    .await
    {
        Ok(d) => d,
        Err(e) => {
            // Nothing was sent or rejected: the chunk is offered again once the store
            // answers. The outage (not each chunk) is logged, and it stops further leases.
            metrics::policy_error(job.spec.channel);
            inner.deps.state_health.failed(&e);
            tracing::debug!(job = %job.id, error = %e, "policy could not run; the chunk waits for the state store");
            return Prepared::Again;
        }
    };

    let mut metas: Vec<Meta> = Vec::new();
    let mut messages: Vec<OutboundMessage> = Vec::new();
    let mut tally = metrics::DecisionTally::default();
    // Once one message does not fit the budget, the rest of the chunk is held too.
    let mut over_budget = false;
    let mut held_caps: Vec<CapRequest> = Vec::new();
    for (&i, decision) in indices.iter().zip(decisions) {
        match decision {
            Decision::Reject(reason) => {
                tally.rejected(reason);
                job.record_rejected(i, reason);
            }
            Decision::Defer(until) => {
                tally.deferred();
                job.record_deferred(i, until);
            }
            Decision::Send(m) => {
                let cost = job.prices.unit_price(m.phone.region).times(m.parts.parts);
                if over_budget || !job.progress.budget.try_reserve(cost.0) {
                    over_budget = true;
                    job.hold_over_budget(i);
                    held_caps.extend(m.cap);
                    continue;
                }
                tally.accepted();
                job.progress
                    .counters
                    .accepted
                    .fetch_add(1, Ordering::Relaxed);
                if m.corrected {
                    job.progress
                        .counters
                        .phone_corrected
                        .fetch_add(1, Ordering::Relaxed);
                }
                metas.push(Meta {
                    index: i,
                    region: m.phone.region,
                    cap: m.cap,
                });
                messages.push(OutboundMessage {
                    id: MessageId::derive(&job.id, audience.contact_id(i), job.spec.channel),
                    to: m.phone.e164,
                    channel: job.spec.channel,
                    body: job.fill_links(i, m.body),
                    parts: m.parts.parts,
                });
            }
        }
    }
    tally.record(job.spec.channel);
    if over_budget {
        release_caps(inner, &held_caps, decided_at).await;
        let stopped = job.with_state(|st| {
            let running = matches!(st.status, JobStatus::Queued | JobStatus::Running);
            if running {
                st.status = JobStatus::BudgetExhausted;
            }
            running
        });
        if stopped {
            tracing::info!(job = %job.id, "budget exhausted; the job stops until resumed with a raised budget");
            inner.save(job);
        }
    }
    if messages.is_empty() {
        return Prepared::Finished;
    }
    if !take_tokens(inner, job, &mut metas, &mut messages, decided_at).await {
        return Prepared::Finished;
    }
    let items: Vec<_> = metas
        .iter()
        .zip(&messages)
        .map(|(m, msg)| (m.index, m.region, msg))
        .collect();
    if !inner.deps.send_log.sending(job, &items).await {
        // It must not go out unrecorded: its messages fail (caps and budget given back).
        tracing::warn!(job = %job.id, count = items.len(), "a chunk could not be recorded as sending and was not sent");
        drop(items);
        fail_unsent(inner, job, &metas, &messages, decided_at).await;
        return Prepared::Finished;
    }
    drop(items);
    Prepared::Ready(metas, messages, decided_at)
}

/// Waits for rate-limit tokens message by message. A cancel or shutdown abandons the rest:
/// their cap reservations are given back and they stay unsent. Answers whether any remain.
async fn take_tokens(
    inner: &Inner,
    job: &Job,
    metas: &mut Vec<Meta>,
    messages: &mut Vec<OutboundMessage>,
    decided_at: DateTime<Utc>,
) -> bool {
    let slot = &inner.deps.providers[job.provider];
    let keep_waiting =
        || job.status() != JobStatus::Cancelled && !inner.shutdown.load(Ordering::SeqCst);
    let mut granted = 0;
    let started = std::time::Instant::now();
    for m in messages.iter() {
        if !slot.limiter.acquire(m.parts, &keep_waiting).await {
            break;
        }
        granted += 1;
    }
    metrics::rate_limit_wait(job.spec.channel, &job.provider_name, started.elapsed());
    if granted < messages.len() {
        let abandoned: Vec<CapRequest> = metas[granted..].iter().filter_map(|m| m.cap).collect();
        for (m, msg) in metas[granted..].iter().zip(&messages[granted..]) {
            job.progress.budget.give_back(message_cost(job, m, msg));
        }
        release_caps(inner, &abandoned, decided_at).await;
        metas.truncate(granted);
        messages.truncate(granted);
    }
    !messages.is_empty()
}

/// Fails a chunk that must not go out unrecorded: its messages count as failed, their
/// budget and cap reservations are given back.
async fn fail_unsent(
    inner: &Inner,
    job: &Job,
    metas: &[Meta],
    messages: &[OutboundMessage],
    decided_at: DateTime<Utc>,
) {
    for (m, msg) in metas.iter().zip(messages) {
        job.progress.budget.give_back(message_cost(job, m, msg));
        job.record_failed(m.index);
    }
    let caps: Vec<CapRequest> = metas.iter().filter_map(|m| m.cap).collect();
    release_caps(inner, &caps, decided_at).await;
}

/// Sends again, under the same ids, messages that were in flight when the previous process
/// stopped; they were decided, reserved and journaled then, so they skip the policy.
pub(super) async fn resend(inner: Arc<Inner>, job: Arc<Job>, items: Vec<SendingItem>) {
    // Holding a retry slot makes a drain wait for the resend.
    let permit = inner.retry_slots.clone().acquire_owned().await.ok();
    let batch = inner.deps.config.batch_size.max(1);
    let mut seed = 0x5EED_u64;
    for chunk in items.chunks(batch) {
        seed = seed.wrapping_add(1);
        let now = inner.deps.clock.now();
        let mut metas: Vec<Meta> = chunk
            .iter()
            .map(|it| Meta {
                index: it.index,
                region: it.region,
                cap: None,
            })
            .collect();
        let mut messages: Vec<OutboundMessage> = chunk
            .iter()
            .map(|it| OutboundMessage {
                id: MessageId::derive(&job.id, job.audience.contact_id(it.index), job.spec.channel),
                to: it.to,
                channel: job.spec.channel,
                body: it.body.clone(),
                parts: it.parts,
            })
            .collect();
        if !take_tokens(&inner, &job, &mut metas, &mut messages, now).await {
            break;
        }
        let left = send_and_record(&inner, &job, metas, messages, now).await;
        retry(&inner, &job, left, now, seed).await;
    }
    tracing::info!(job = %job.id, count = items.len(), "messages in flight at the last stop were sent again");
    drop(permit);
}

/// Hands messages to the provider and records its answers; hands back what it did not take.
async fn send_and_record(
    inner: &Arc<Inner>,
    job: &Arc<Job>,
    metas: Vec<Meta>,
    messages: Vec<OutboundMessage>,
    decided_at: DateTime<Utc>,
) -> Unanswered {
    let outcomes = send(inner, job, &messages).await;
    record_outcomes(inner, job, metas, messages, outcomes, decided_at).await
}

/// Hands a chunk to the job's provider, timing the call and counting its answers.
async fn send(inner: &Inner, job: &Job, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
    let started = std::time::Instant::now();
    let outcomes = inner.deps.providers[job.provider]
        .provider
        .send_batch(messages)
        .await;
    metrics::provider_call(
        job.spec.channel,
        &job.provider_name,
        started.elapsed(),
        messages,
        &outcomes,
    );
    outcomes
}

/// Most consecutive throttled rounds waited out before they count as failed attempts: a
/// provider that answers 429 forever must not hold messages forever.
const MAX_THROTTLED_ROUNDS: u32 = 100;

/// Re-sends transient failures with the same message ids on the backoff schedule; what is
/// still failing when the attempts run out is failed for good (and its cap given back).
/// A round in which the provider only throttled (429) is not a failure: it waits the
/// provider's Retry-After without using up an attempt.
async fn retry(
    inner: &Arc<Inner>,
    job: &Arc<Job>,
    left: Unanswered,
    decided_at: DateTime<Utc>,
    seed: u64,
) {
    let Unanswered {
        mut metas,
        mut messages,
        mut throttle,
        mut transient,
    } = left;
    let mut delays = retry::schedule(&inner.deps.config.retry, seed);
    let mut throttled_rounds = 0;
    while !messages.is_empty() {
        let only_throttled = transient == 0 && !throttle.is_zero();
        let next = if only_throttled && throttled_rounds < MAX_THROTTLED_ROUNDS {
            throttled_rounds += 1;
            Some(throttle)
        } else {
            delays.next()
        };
        let Some(delay) = next else {
            let caps: Vec<CapRequest> = metas.iter().filter_map(|m| m.cap).collect();
            let failed = metas
                .iter()
                .zip(&messages)
                .map(|(m, msg)| failed_item(m, msg))
                .collect();
            let now = inner.deps.clock.now();
            (inner.deps.send_log)
                .settled(job, now, failed, EntryBatch::empty())
                .await;
            for (m, msg) in metas.iter().zip(&messages) {
                job.progress.budget.give_back(message_cost(job, m, msg));
                job.record_failed(m.index);
            }
            metrics::failed(
                job.spec.channel,
                &job.provider_name,
                metrics::FailureCause::RetriesExhausted,
                metas.len() as u64,
            );
            release_caps(inner, &caps, decided_at).await;
            return;
        };
        job.progress
            .counters
            .retries
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        metrics::retries(job.spec.channel, &job.provider_name, messages.len() as u64);
        tokio::time::sleep(delay.max(throttle)).await;
        if !take_tokens(inner, job, &mut metas, &mut messages, decided_at).await {
            return;
        }
        Unanswered {
            metas,
            messages,
            throttle,
            transient,
        } = send_and_record(inner, job, metas, messages, decided_at).await;
    }
}

/// What a message costs, as reserved against the budget and charged in the ledger.
pub(super) fn message_cost(job: &Job, meta: &Meta, message: &OutboundMessage) -> i64 {
    job.prices.unit_price(meta.region).times(message.parts).0
}

pub(super) async fn release_caps(inner: &Inner, caps: &[CapRequest], reserved_at: DateTime<Utc>) {
    if caps.is_empty() {
        return;
    }
    if let Err(e) = inner.deps.store.release_caps(caps, reserved_at).await {
        tracing::warn!(error = %e, count = caps.len(), "could not release frequency-cap reservations");
    }
}
