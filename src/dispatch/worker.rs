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
use super::in_doubt::InDoubtSettler;
use super::job::Job;
use super::journal::codec::{SendingItem, SettledItem, Settlement};
use super::journal::{Journal, JournalError};
use super::retry;
use crate::domain::{JobStatus, MessageId};
use crate::ledger::{EntryBatch, EntryBatchBuilder, EntryKind, EntryRef, Ledger, NewEntry};
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
    if indices.is_empty() {
        return true;
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
    if !journal_sending(inner, job, &metas, &messages, decided_at).await {
        return true;
    }
    if !mark_sending(inner, job, &metas, &messages, decided_at).await {
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

/// Records the chunk as handed to the provider, durably, before it is: after a crash its
/// messages are known to be in flight. A journal that cannot be written stops the chunk: its
/// messages fail (caps and budget given back) rather than go out unrecorded.
async fn journal_sending(
    inner: &Inner,
    job: &Job,
    metas: &[Meta],
    messages: &[OutboundMessage],
    decided_at: DateTime<Utc>,
) -> bool {
    let Some(journal) = &inner.deps.journal else {
        return true;
    };
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=5 {
        let items = metas
            .iter()
            .zip(messages)
            .map(|(m, msg)| (m.index, m.region, msg));
        let result = match journal.sending(&job.id, items) {
            Ok(pending) => pending.wait().await.map(drop).map_err(JournalError::from),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return true,
            Err(e) => {
                tracing::error!(job = %job.id, attempt, error = %e, "could not journal a chunk before sending");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    fail_unsent(inner, job, metas, messages, decided_at).await;
    false
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
        job.budget.give_back(message_cost(job, m, msg));
        job.record_failed(m.index);
    }
    let caps: Vec<CapRequest> = metas.iter().filter_map(|m| m.cap).collect();
    release_caps(inner, &caps, decided_at).await;
}

/// With shared work and a provider that cannot drop repeats: writes the chunk's `sending`
/// marks to the shared record before it goes out, so an instance taking the shard over after
/// a crash marks these in doubt rather than sending them again. When the marks cannot be
/// written the chunk does not go out: its messages fail (caps and budget given back).
async fn mark_sending(
    inner: &Inner,
    job: &Job,
    metas: &[Meta],
    messages: &[OutboundMessage],
    decided_at: DateTime<Utc>,
) -> bool {
    let Some(marks) = inner.sending_marks.get() else {
        return true;
    };
    if job.share().is_none() || inner.deps.providers[job.provider].idempotent {
        return true;
    }
    let indices: Vec<u32> = metas.iter().map(|m| m.index).collect();
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=4 {
        if marks.mark_sending(job, &indices).await {
            return true;
        }
        tracing::debug!(job = %job.id, attempt, "sending marks not written");
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    tracing::warn!(job = %job.id, count = indices.len(), "sending marks could not be written; the chunk was not sent");
    fail_unsent(inner, job, metas, messages, decided_at).await;
    false
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
        let outcomes = send(&inner, &job, &messages).await;
        let (retry_metas, retry_messages, throttle, transient) =
            record_outcomes(&inner, &job, metas, messages, outcomes, now).await;
        if !retry_messages.is_empty() {
            retry(
                &inner,
                &job,
                retry_metas,
                retry_messages,
                (throttle, transient),
                now,
                seed,
            )
            .await;
        }
    }
    tracing::info!(job = %job.id, count = items.len(), "messages in flight at the last stop were sent again");
    drop(permit);
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
    let mut entries = EntryBatchBuilder::with_capacity(match inner.deps.ledger {
        Some(_) => metas.len(),
        None => 0,
    });
    let mut id_text = [0u8; 36];
    let journaled = inner.deps.journal.is_some();
    let mut settled: Vec<SettledItem> = Vec::new();
    let now = inner.deps.clock.now();
    for ((meta, message), outcome) in metas.into_iter().zip(messages).zip(outcomes) {
        match outcome {
            SendOutcome::Accepted {
                provider_message_id,
            } => {
                let unit = job.prices.unit_price(meta.region);
                let cost = unit.times(message.parts);
                if inner.deps.ledger.is_some() {
                    entries.push(&EntryRef {
                        kind: EntryKind::Charge,
                        message_id: message.id.write_str(&mut id_text),
                        job_id: job.id.as_str(),
                        campaign_id: &job.spec.campaign_id,
                        channel: job.spec.channel,
                        provider: slot.provider.name(),
                        country: meta.region.as_str(),
                        parts: message.parts,
                        unit_price_micros: unit,
                        cost_micros: cost,
                        currency: job.currency,
                        at: now,
                        references: None,
                        provider_message_id: Some(&provider_message_id),
                    });
                }
                if journaled {
                    settled.push(SettledItem {
                        index: meta.index,
                        settlement: Settlement::Sent,
                        parts: message.parts,
                        cost_micros: cost.0,
                        region: meta.region,
                        provider_message_id: provider_message_id.clone(),
                    });
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
                if journaled {
                    settled.push(failed_item(&meta, &message));
                }
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
    if !entries.is_empty() || !settled.is_empty() {
        let permit = inner.ledger_slots.clone().acquire_owned().await.ok();
        let durable = Durable {
            ledger: inner.deps.ledger.clone(),
            journal: inner.deps.journal.clone(),
        };
        let job = job.clone();
        let entries = entries.finish();
        tokio::spawn(async move {
            durable.settle(&job, settled, entries).await;
            for (index, parts, cost) in sent {
                job.record_sent(index, parts, cost);
            }
            drop(durable);
            drop(permit);
        });
    } else {
        for (index, parts, cost) in sent {
            job.record_sent(index, parts, cost);
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
            if inner.deps.journal.is_some() {
                let failed = metas
                    .iter()
                    .zip(&messages)
                    .map(|(m, msg)| failed_item(m, msg))
                    .collect();
                let durable = Durable {
                    ledger: None,
                    journal: inner.deps.journal.clone(),
                };
                durable.settle(job, failed, EntryBatch::empty()).await;
            }
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

/// Settles in-doubt messages when a receipt proves they reached the provider.
pub(super) struct Settler(pub std::sync::Weak<Inner>);

impl InDoubtSettler for Settler {
    fn settle(&self, id: &crate::domain::JobId, index: u32) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let Some(job) = inner.job(id) else {
            return;
        };
        let Some(message) = job.in_doubt.take(index) else {
            return;
        };
        let message_id =
            MessageId::derive(&job.id, job.audience.contact_id(index), job.spec.channel);
        let settled = vec![SettledItem {
            index,
            settlement: Settlement::Sent,
            parts: message.parts,
            cost_micros: message.cost_micros,
            region: message.region,
            provider_message_id: message_id.to_string(),
        }];
        let entries = match inner.deps.ledger {
            Some(_) => EntryBatch::of(&[NewEntry {
                kind: EntryKind::Charge,
                message_id: message_id.to_string(),
                job_id: job.id.to_string(),
                campaign_id: job.spec.campaign_id.clone(),
                channel: job.spec.channel,
                provider: job.provider_name.clone(),
                country: message.region.as_str().to_string(),
                parts: message.parts,
                unit_price_micros: job.prices.unit_price(message.region),
                cost_micros: crate::domain::Micros(message.cost_micros),
                currency: job.currency,
                at: inner.deps.clock.now(),
                references: None,
                provider_message_id: Some(message_id.to_string()),
            }]),
            None => EntryBatch::empty(),
        };
        let durable = Durable {
            ledger: inner.deps.ledger.clone(),
            journal: inner.deps.journal.clone(),
        };
        tokio::spawn(async move {
            durable.settle(&job, settled, entries).await;
            job.settle_in_doubt(index, message);
            tracing::info!(job = %job.id, index, "an in-doubt message was settled as sent by its receipt");
        });
    }
}

fn failed_item(meta: &Meta, message: &OutboundMessage) -> SettledItem {
    SettledItem {
        index: meta.index,
        settlement: Settlement::Failed,
        parts: message.parts,
        cost_micros: 0,
        region: meta.region,
        provider_message_id: String::new(),
    }
}

/// Where provider answers are made durable: the journal (with the charges in the same
/// commit) when it is on, the ledger alone otherwise.
struct Durable {
    ledger: Option<Ledger>,
    journal: Option<Journal>,
}

impl Durable {
    /// Writes the answers and charges, retrying a failing disk a few times; the sends already
    /// happened, so they must not be dropped silently.
    async fn settle(&self, job: &Job, settled: Vec<SettledItem>, entries: EntryBatch) {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=5 {
            let result = match (&self.journal, &self.ledger) {
                (Some(journal), _) => match journal.settle(&job.id, &settled, &entries) {
                    Ok(pending) => pending.wait().await.map(drop).map_err(JournalError::from),
                    Err(e) => Err(e),
                },
                (None, Some(ledger)) => match ledger.commit(&entries, Vec::new()) {
                    Ok(pending) => pending.wait().await.map(drop).map_err(JournalError::from),
                    Err(e) => Err(e.into()),
                },
                (None, None) => Ok(()),
            };
            match result {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(job = %job.id, attempt, error = %e, count = entries.len(), "ledger append failed");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        tracing::error!(job = %job.id, count = entries.len(), "ledger entries could not be written; sends are counted but unrecorded");
    }
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
