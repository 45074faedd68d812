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
use crate::domain::{Address, Channel, JobStatus, MessageId};
use crate::ledger::EntryBatch;
use crate::metrics;
use crate::policy::{address_check, Decision, PolicyInput, PolicyRunner};
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
            if rate_limited(inner, &chunk.job, &chunk.metas) {
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

/// Whether any message of the chunk waits for a rate limit (its provider's, its channel's or
/// its tenant's).
fn rate_limited(inner: &Inner, job: &Job, metas: &[Meta]) -> bool {
    let providers = &inner.deps.providers;
    inner.deps.channel_limits.get(job.spec.channel).is_some()
        || inner.deps.tenant_limits.get(&job.spec.tenant).is_some()
        || metas.iter().any(|m| {
            providers
                .get(m.provider)
                .is_some_and(|p| p.limiter.rate() > 0)
        })
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
    /// The provider slot it goes to.
    pub provider: usize,
    /// The provider answered that it did not take it: it may be routed elsewhere.
    pub refused: bool,
}

/// Decides a chunk, waits for its rate-limit tokens and records it as `sending`.
async fn prepare(inner: &Arc<Inner>, job: &Arc<Job>, indices: &[u32]) -> Prepared {
    if indices.is_empty() {
        return Prepared::Finished;
    }
    let snapshot = inner.deps.books.store(&job.spec.tenant).current();
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
    let mut order = Vec::new();
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
                let provider = job.route(&inner.deps.router, i, m.region, &m.to, &mut order);
                let cost = job.unit_price(provider, m.region).times(m.parts.parts);
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
                    region: m.region,
                    cap: m.cap,
                    provider,
                    refused: false,
                });
                messages.push(OutboundMessage {
                    id: MessageId::derive(&job.id, audience.contact_id(i), job.spec.channel),
                    to: m.to,
                    channel: job.spec.channel,
                    body: job.fill_links(i, m.body),
                    parts: m.parts.parts,
                    content: m.content,
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
    by_provider(&mut metas, &mut messages);
    if !record_sending(inner, job, &metas, &messages).await {
        // It must not go out unrecorded: its messages fail (caps and budget given back).
        tracing::warn!(job = %job.id, count = metas.len(), "a chunk could not be recorded as sending and was not sent");
        fail_unsent(inner, job, &metas, &messages, decided_at).await;
        return Prepared::Finished;
    }
    Prepared::Ready(metas, messages, decided_at)
}

/// Orders a chunk's messages by provider (stable), so each provider's share is one run.
fn by_provider(metas: &mut Vec<Meta>, messages: &mut Vec<OutboundMessage>) {
    if metas.windows(2).all(|w| w[0].provider <= w[1].provider) {
        return;
    }
    let mut paired: Vec<(Meta, OutboundMessage)> = std::mem::take(metas)
        .into_iter()
        .zip(std::mem::take(messages))
        .collect();
    paired.sort_by_key(|(m, _)| m.provider);
    (*metas, *messages) = paired.into_iter().unzip();
}

/// The runs of messages that go to one provider, as (provider, start, end).
pub(super) fn provider_runs(metas: &[Meta]) -> Vec<(usize, usize, usize)> {
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for (i, m) in metas.iter().enumerate() {
        match runs.last_mut() {
            Some(run) if run.0 == m.provider => run.2 = i + 1,
            _ => runs.push((m.provider, i, i + 1)),
        }
    }
    runs
}

/// Records messages (ordered by provider) as `sending`, one record per provider; answers
/// false when one could not be recorded (then none of them may go out).
async fn record_sending(
    inner: &Inner,
    job: &Job,
    metas: &[Meta],
    messages: &[OutboundMessage],
) -> bool {
    for (provider, start, end) in provider_runs(metas) {
        let items: Vec<_> = metas[start..end]
            .iter()
            .zip(&messages[start..end])
            .map(|(m, msg)| (m.index, m.region, msg))
            .collect();
        if !inner.deps.send_log.sending(job, provider, &items).await {
            return false;
        }
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
    let providers = &inner.deps.providers;
    let channel_limit = inner.deps.channel_limits.get(job.spec.channel);
    let tenant_limit = inner.deps.tenant_limits.get(&job.spec.tenant);
    let keep_waiting =
        || job.status() != JobStatus::Cancelled && !inner.shutdown.load(Ordering::SeqCst);
    let mut granted = 0;
    let started = std::time::Instant::now();
    for (meta, m) in metas.iter().zip(messages.iter()) {
        if let Some(limit) = &tenant_limit {
            if !limit.acquire(m.parts, &keep_waiting).await {
                break;
            }
        }
        if let Some(limit) = channel_limit {
            if !limit.acquire(m.parts, &keep_waiting).await {
                break;
            }
        }
        let Some(slot) = providers.get(meta.provider) else {
            break;
        };
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

/// Sends again, under the same ids and to the same provider, messages that were in flight
/// when the previous process stopped; they were decided, reserved and journaled then, so they
/// skip the policy.
pub(super) async fn resend(
    inner: Arc<Inner>,
    job: Arc<Job>,
    provider: usize,
    items: Vec<SendingItem>,
) {
    // Holding a retry slot makes a drain wait for the resend.
    let permit = inner.retry_slots.clone().acquire_owned().await.ok();
    let batch = inner.deps.config.batch_size.max(1);
    let mut seed = 0x5EED_u64;
    for chunk in items.chunks(batch) {
        seed = seed.wrapping_add(1);
        let now = inner.deps.clock.now();
        let snapshot = inner.deps.books.store(&job.spec.tenant).current();
        let mut metas: Vec<Meta> = Vec::with_capacity(chunk.len());
        let mut messages: Vec<OutboundMessage> = Vec::with_capacity(chunk.len());
        for it in chunk {
            let contact_id = job.audience.contact_id(it.index);
            let Some(to) = resend_address(&job, &snapshot, contact_id, it.to) else {
                // The contact or its address left the snapshot since: nowhere to send it.
                job.record_failed(it.index);
                continue;
            };
            metas.push(Meta {
                index: it.index,
                region: it.region,
                cap: None,
                provider,
                refused: false,
            });
            messages.push(OutboundMessage {
                id: MessageId::derive(&job.id, contact_id, job.spec.channel),
                to,
                channel: job.spec.channel,
                body: it.body.clone(),
                parts: it.parts,
                content: None,
            });
        }
        if messages.is_empty() {
            continue;
        }
        if !take_tokens(&inner, &job, &mut metas, &mut messages, now).await {
            break;
        }
        let left = send_and_record(&inner, &job, metas, messages, now).await;
        retry(&inner, &job, left, now, seed).await;
    }
    tracing::info!(job = %job.id, count = items.len(), "messages in flight at the last stop were sent again");
    drop(permit);
}

/// The address a message in flight at the last stop is sent again to: the journaled number
/// of an SMS, or the contact's address on the job's channel in the current snapshot (only
/// numbers are journaled); `None` when the snapshot no longer has one.
fn resend_address(
    job: &Job,
    snapshot: &crate::snapshot::Snapshot,
    contact_id: &str,
    journaled_phone: u64,
) -> Option<Address> {
    match job.spec.channel {
        Channel::Sms => Some(Address::Phone(journaled_phone)),
        channel => {
            let contact = snapshot.lookup(contact_id)?;
            address_check::check(
                &contact,
                channel,
                job.policy.wechat_account.as_deref(),
                job.policy.push_platforms.as_deref(),
            )
            .ok()
        }
    }
}

/// Hands messages (ordered by provider) to their providers, one provider after the other,
/// and records the answers; hands back what was not taken.
async fn send_and_record(
    inner: &Arc<Inner>,
    job: &Arc<Job>,
    mut metas: Vec<Meta>,
    mut messages: Vec<OutboundMessage>,
    decided_at: DateTime<Utc>,
) -> Unanswered {
    let runs = provider_runs(&metas);
    let mut left = Unanswered::default();
    // Taken from the back so that each run is split off without copying the others.
    for (provider, start, _) in runs.into_iter().rev() {
        let run_metas = metas.split_off(start);
        let run_messages = messages.split_off(start);
        let outcomes = send(inner, job, provider, &run_messages).await;
        let answered = record_outcomes(
            inner,
            job,
            provider,
            run_metas,
            run_messages,
            outcomes,
            decided_at,
        )
        .await;
        left.absorb(answered);
    }
    left
}

/// Hands messages to one provider, timing the call, counting its answers and telling its
/// circuit and its limiter how it went.
async fn send(
    inner: &Inner,
    job: &Job,
    provider: usize,
    messages: &[OutboundMessage],
) -> Vec<SendOutcome> {
    use tracing::Instrument;
    let slot = &inner.deps.providers[provider];
    let span = tracing::info_span!(
        "job.send",
        job_id = %job.id,
        provider = %slot.provider.name(),
        messages = messages.len()
    );
    job.trace().adopt(&span);
    let started = std::time::Instant::now();
    let outcomes = slot.provider.send_batch(messages).instrument(span).await;
    let took = started.elapsed();
    let mut failures = 0u64;
    let mut throttled = false;
    for o in &outcomes {
        match o {
            SendOutcome::Transient { .. } | SendOutcome::Unavailable { .. } => failures += 1,
            SendOutcome::Throttled { .. } => throttled = true,
            SendOutcome::Accepted { .. }
            | SendOutcome::Permanent { .. }
            | SendOutcome::Unreachable { .. } => {}
        }
    }
    if throttled {
        slot.limiter.throttled();
    }
    inner
        .deps
        .router
        .record(provider, outcomes.len() as u64, failures, took);
    metrics::provider_call(
        job.spec.channel,
        slot.provider.name(),
        took,
        messages,
        &outcomes,
    );
    outcomes
}

/// Moves messages a provider refused to the next provider of their route, when their
/// budget allows the other provider's price, and records them as `sending` there first.
/// Messages that may have reached their provider are never moved.
async fn reroute(
    inner: &Inner,
    job: &Job,
    metas: &mut Vec<Meta>,
    messages: &mut Vec<OutboundMessage>,
) {
    let mut order = Vec::new();
    // (position, provider it leaves, price difference reserved)
    let mut moved: Vec<(usize, usize, i64)> = Vec::new();
    for (i, (meta, msg)) in metas.iter_mut().zip(messages.iter()).enumerate() {
        if !std::mem::take(&mut meta.refused) {
            continue;
        }
        let draw = xxhash_rust::xxh3::xxh3_64(job.audience.contact_id(meta.index).as_bytes());
        let router = &inner.deps.router;
        let to = router.choose_for(
            job.spec.channel,
            meta.region,
            Some(&msg.to),
            draw,
            Some(meta.provider),
            &mut order,
        );
        let Some(to) = to.filter(|&to| to != meta.provider) else {
            continue;
        };
        let was = job
            .unit_price(meta.provider, meta.region)
            .times(msg.parts)
            .0;
        let will = job.unit_price(to, meta.region).times(msg.parts).0;
        let extra = will - was;
        if extra > 0 && !job.progress.budget.try_reserve(extra) {
            continue;
        }
        if extra < 0 {
            job.progress.budget.give_back(-extra);
        }
        moved.push((i, meta.provider, extra));
        meta.provider = to;
    }
    let mut targets: Vec<usize> = moved.iter().map(|&(i, _, _)| metas[i].provider).collect();
    targets.sort_unstable();
    targets.dedup();
    for to in targets {
        let items: Vec<_> = moved
            .iter()
            .filter(|&&(i, _, _)| metas[i].provider == to)
            .map(|&(i, _, _)| (metas[i].index, metas[i].region, &messages[i]))
            .collect();
        if inner.deps.send_log.sending(job, to, &items).await {
            metrics::rerouted(
                job.spec.channel,
                inner.deps.providers[to].provider.name(),
                items.len() as u64,
            );
            continue;
        }
        // Not recorded there: they stay where they were recorded.
        let back: Vec<(usize, usize, i64)> = moved
            .iter()
            .copied()
            .filter(|&(i, _, _)| metas[i].provider == to)
            .collect();
        for (i, from, extra) in back {
            metas[i].provider = from;
            if extra > 0 {
                job.progress.budget.give_back(extra);
            } else if extra < 0 {
                job.progress.budget.force_reserve(-extra);
            }
        }
    }
    by_provider(metas, messages);
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
                .settled(job, job.provider, now, failed, EntryBatch::empty())
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
        reroute(inner, job, &mut metas, &mut messages).await;
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
    job.unit_price(meta.provider, meta.region)
        .times(message.parts)
        .0
}

pub(super) async fn release_caps(inner: &Inner, caps: &[CapRequest], reserved_at: DateTime<Utc>) {
    if caps.is_empty() {
        return;
    }
    if let Err(e) = inner.deps.store.release_caps(caps, reserved_at).await {
        tracing::warn!(error = %e, count = caps.len(), "could not release frequency-cap reservations");
    }
}
