//! One worker's loop and the processing of one chunk: decide, wait for rate-limit tokens,
//! send, retry transient failures with backoff, and record every recipient's outcome.
//! Also the task that applies simulated delivery receipts when they come due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::dispatcher::Inner;
use super::job::Job;
use super::retry;
use crate::domain::{JobStatus, MessageId};
use crate::ledger::{EntryKind, Ledger, NewEntry};
use crate::metrics;
use crate::policy::{Decision, PolicyInput, PolicyRunner};
use crate::provider::{DeliveryStatus, OutboundMessage, SendOutcome};
use crate::store::CapRequest;

/// Receipts of one chunk that come due together.
pub struct ReceiptBatch {
    due: Instant,
    job: Arc<Job>,
    receipts: Vec<(u32, DeliveryStatus)>,
}

/// A worker: takes work until shutdown.
pub(super) async fn run(inner: Arc<Inner>, worker_no: u64) {
    let mut seed = worker_no.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    while !inner.shutdown.load(Ordering::SeqCst) {
        let notified = inner.work_ready.notified();
        match inner.next_work() {
            Some((job, lease)) => {
                seed = seed.wrapping_add(1);
                let done = process(&inner, &job, &lease.indices, seed).await;
                let now = inner.deps.clock.now();
                job.release(lease, done, now);
                if !done {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                inner.maybe_complete(&job, now);
            }
            None => {
                let _ = tokio::time::timeout(inner.idle_wait(), notified).await;
            }
        }
    }
}

/// What the worker keeps about a message while the provider has it.
struct Meta {
    index: u32,
    region: crate::phone::RegionCode,
    cap: Option<CapRequest>,
}

/// Processes one chunk. Answers false when the chunk must be offered again (the store could
/// not answer before anything was decided).
async fn process(inner: &Arc<Inner>, job: &Arc<Job>, indices: &[u32], seed: u64) -> bool {
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
            metrics::policy_error(job.spec.channel);
            tracing::warn!(job = %job.id, error = %e, "policy could not run; will retry the chunk");
            return false;
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
                if over_budget || !job.budget.try_reserve(cost.0) {
                    over_budget = true;
                    job.hold_over_budget(i);
                    held_caps.extend(m.cap);
                    continue;
                }
                tally.accepted();
                job.counters.accepted.fetch_add(1, Ordering::Relaxed);
                if m.corrected {
                    job.counters.phone_corrected.fetch_add(1, Ordering::Relaxed);
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
        return true;
    }
    if !take_tokens(inner, job, &mut metas, &mut messages, decided_at).await {
        return true;
    }
    let outcomes = send(inner, job, &messages).await;
    let (retry_metas, retry_messages, throttle, transient) =
        record_outcomes(inner, job, metas, messages, outcomes, decided_at).await;
    if !retry_messages.is_empty() {
        // Retries wait on their own task, so the worker goes straight on to the next chunk.
        let permit = inner.retry_slots.clone().acquire_owned().await.ok();
        let (inner, job) = (inner.clone(), job.clone());
        tokio::spawn(async move {
            retry(
                &inner,
                &job,
                retry_metas,
                retry_messages,
                (throttle, transient),
                decided_at,
                seed,
            )
            .await;
            // Release the slot last: a drain that sees it free finds nothing held.
            drop(inner);
            drop(permit);
        });
    }
    true
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
            job.budget.give_back(message_cost(job, m, msg));
        }
        release_caps(inner, &abandoned, decided_at).await;
        metas.truncate(granted);
        messages.truncate(granted);
    }
    !messages.is_empty()
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

/// Records the provider's answers; hands back the messages to try again, how long the
/// provider asked us to wait, and how many of them failed transiently (the rest were throttled).
async fn record_outcomes(
    inner: &Inner,
    job: &Arc<Job>,
    metas: Vec<Meta>,
    messages: Vec<OutboundMessage>,
    outcomes: Vec<SendOutcome>,
    decided_at: DateTime<Utc>,
) -> (Vec<Meta>, Vec<OutboundMessage>, Duration, usize) {
    let slot = &inner.deps.providers[job.provider];
    let mut receipts = Vec::new();
    let mut receipt_after = Duration::ZERO;
    let mut to_release = Vec::new();
    let mut cost_total = 0i64;
    let mut accepted = Vec::new();
    let (mut retry_metas, mut retry_messages, mut throttle) =
        (Vec::new(), Vec::new(), Duration::ZERO);
    let mut transient = 0usize;
    let mut sent: Vec<(u32, u32, i64)> = Vec::new();
    let mut entries = Vec::new();
    let now = inner.deps.clock.now();
    for ((meta, message), outcome) in metas.into_iter().zip(messages).zip(outcomes) {
        match outcome {
            SendOutcome::Accepted {
                provider_message_id,
            } => {
                let unit = job.prices.unit_price(meta.region);
                let cost = unit.times(message.parts);
                if inner.deps.ledger.is_some() {
                    let mut entry =
                        ledger_entry(job, slot.provider.name(), &meta, &message, unit, cost, now);
                    entry.provider_message_id = Some(provider_message_id.clone());
                    entries.push(entry);
                }
                sent.push((meta.index, message.parts, cost.0));
                cost_total = cost_total.saturating_add(cost.0);
                accepted.push(super::AcceptedMessage {
                    index: meta.index,
                    region: meta.region,
                    parts: message.parts,
                    cost_micros: cost.0,
                    provider_message_id,
                });
                if let Some(r) = slot.provider.simulated_receipt(&message) {
                    receipt_after = r.after;
                    receipts.push((meta.index, r.status));
                }
            }
            SendOutcome::Permanent { .. } => {
                job.budget.give_back(message_cost(job, &meta, &message));
                job.record_failed(meta.index);
                to_release.extend(meta.cap);
            }
            SendOutcome::Throttled { retry_after } => {
                throttle = throttle.max(retry_after);
                retry_metas.push(meta);
                retry_messages.push(message);
            }
            SendOutcome::Transient { .. } => {
                transient += 1;
                retry_metas.push(meta);
                retry_messages.push(message);
            }
        }
    }
    metrics::cost(
        job.spec.channel,
        &job.provider_name,
        job.currency,
        cost_total,
    );
    // A send counts as sent only once its ledger entry is durable. The commit is awaited on
    // its own task (bounded), so workers keep sending while the ledger groups many chunks
    // into one disk sync.
    match &inner.deps.ledger {
        Some(ledger) if !entries.is_empty() => {
            let permit = inner.ledger_slots.clone().acquire_owned().await.ok();
            let (ledger, job) = (ledger.clone(), job.clone());
            tokio::spawn(async move {
                append_to_ledger(&ledger, &job, entries).await;
                for (index, parts, cost) in sent {
                    job.record_sent(index, parts, cost);
                }
                drop(ledger);
                drop(permit);
            });
        }
        _ => {
            for (index, parts, cost) in sent {
                job.record_sent(index, parts, cost);
            }
        }
    }
    release_caps(inner, &to_release, decided_at).await;
    job.record_accepted(&accepted);
    if let Some(observer) = &inner.deps.observer {
        observer.accepted(job, &accepted);
    }
    if !receipts.is_empty() {
        let batch = ReceiptBatch {
            due: Instant::now() + receipt_after,
            job: job.clone(),
            receipts,
        };
        // Backpressure: a full queue slows the sender rather than dropping receipts.
        let _ = inner.receipts.send(batch).await;
    }
    (retry_metas, retry_messages, throttle, transient)
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
    mut metas: Vec<Meta>,
    mut messages: Vec<OutboundMessage>,
    (mut throttle, mut transient): (Duration, usize),
    decided_at: DateTime<Utc>,
    seed: u64,
) {
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
            for (m, msg) in metas.iter().zip(&messages) {
                job.budget.give_back(message_cost(job, m, msg));
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
        job.counters
            .retries
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        metrics::retries(job.spec.channel, &job.provider_name, messages.len() as u64);
        tokio::time::sleep(delay.max(throttle)).await;
        if !take_tokens(inner, job, &mut metas, &mut messages, decided_at).await {
            return;
        }
        let outcomes = send(inner, job, &messages).await;
        (metas, messages, throttle, transient) =
            record_outcomes(inner, job, metas, messages, outcomes, decided_at).await;
    }
}

/// What a message costs, as reserved against the budget and charged in the ledger.
fn message_cost(job: &Job, meta: &Meta, message: &OutboundMessage) -> i64 {
    job.prices.unit_price(meta.region).times(message.parts).0
}

fn ledger_entry(
    job: &Job,
    provider: &str,
    meta: &Meta,
    message: &OutboundMessage,
    unit: crate::domain::Micros,
    cost: crate::domain::Micros,
    at: DateTime<Utc>,
) -> NewEntry {
    NewEntry {
        kind: EntryKind::Charge,
        message_id: message.id.to_string(),
        job_id: job.id.to_string(),
        campaign_id: job.spec.campaign_id.clone(),
        channel: job.spec.channel,
        provider: provider.to_string(),
        country: meta.region.as_str().to_string(),
        parts: message.parts,
        unit_price_micros: unit,
        cost_micros: cost,
        currency: job.currency,
        at,
        references: None,
        provider_message_id: None,
    }
}

/// Writes the entries, retrying a failing disk a few times; the send already happened, so the
/// entry must not be dropped silently.
async fn append_to_ledger(ledger: &Ledger, job: &Job, entries: Vec<NewEntry>) {
    if entries.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=5 {
        match ledger.append(entries.clone()).await {
            Ok(_) => return,
            Err(e) => {
                tracing::error!(job = %job.id, attempt, error = %e, count = entries.len(), "ledger append failed");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    tracing::error!(job = %job.id, count = entries.len(), "ledger entries could not be written; sends are counted but unrecorded");
}

async fn release_caps(inner: &Inner, caps: &[CapRequest], reserved_at: DateTime<Utc>) {
    if caps.is_empty() {
        return;
    }
    if let Err(e) = inner.deps.store.release_caps(caps, reserved_at).await {
        tracing::warn!(error = %e, count = caps.len(), "could not release frequency-cap reservations");
    }
}

struct Due(ReceiptBatch);

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.0.due == other.0.due
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.due.cmp(&other.0.due)
    }
}

/// Applies simulated receipts when they come due.
pub(super) async fn apply_receipts(mut rx: mpsc::Receiver<ReceiptBatch>) {
    let mut heap: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    loop {
        let next_due = heap.peek().map(|Reverse(d)| d.0.due);
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(b) => heap.push(Reverse(Due(b))),
                None if heap.is_empty() => return,
                None => {
                    if let Some(due) = next_due { tokio::time::sleep_until(due).await; }
                }
            },
            _ = async { match next_due { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {}
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(d)| d.0.due <= now) {
            if let Some(Reverse(Due(b))) = heap.pop() {
                metrics::receipts(
                    b.job.spec.channel,
                    &b.job.provider_name,
                    b.receipts.iter().map(|(_, status)| status),
                );
                for (i, status) in b.receipts {
                    b.job.record_receipt(i, status);
                }
            }
        }
    }
}
