//! One worker's loop and the processing of one chunk: decide, wait for rate-limit tokens,
//! send, retry transient failures with backoff, and record every recipient's outcome.
//! Also the task that applies simulated delivery receipts when they come due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::dispatcher::Inner;
use super::job::{Job, Lease};
use super::retry;
use crate::domain::{JobStatus, MessageId};
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

struct Pending {
    index: u32,
    message: OutboundMessage,
    region: crate::phone::RegionCode,
    cap: Option<CapRequest>,
}

/// Processes one chunk. Answers false when the chunk must be offered again (the store could
/// not answer before anything was decided).
async fn process(inner: &Inner, job: &Arc<Job>, indices: &[u32], seed: u64) -> bool {
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
    let decisions =
        match PolicyRunner::decide_batch(&job.policy, &snapshot, &*inner.deps.store, &inputs, decided_at).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "policy could not run; will retry the chunk");
                return false;
            }
        };

    let mut pending: Vec<Pending> = Vec::new();
    for (&i, decision) in indices.iter().zip(decisions) {
        match decision {
            Decision::Reject(reason) => job.record_rejected(i, reason),
            Decision::Defer(until) => job.record_deferred(i, until),
            Decision::Send(m) => {
                job.counters.accepted.fetch_add(1, Ordering::Relaxed);
                if m.corrected {
                    job.counters.phone_corrected.fetch_add(1, Ordering::Relaxed);
                }
                pending.push(Pending {
                    index: i,
                    message: OutboundMessage {
                        id: MessageId::derive(&job.id, audience.contact_id(i), job.spec.channel),
                        to: m.phone.e164,
                        channel: job.spec.channel,
                        body: m.body,
                        parts: m.parts.parts,
                    },
                    region: m.phone.region,
                    cap: m.cap,
                });
            }
        }
    }
    if pending.is_empty() {
        return true;
    }

    // Rate limit: take tokens message by message; a cancel or shutdown abandons the rest.
    let slot = &inner.deps.providers[job.provider];
    let keep_waiting = || job.status() != JobStatus::Cancelled && !inner.shutdown.load(Ordering::SeqCst);
    let mut granted = 0;
    for p in &pending {
        if !slot.limiter.acquire(p.message.parts, &keep_waiting).await {
            break;
        }
        granted += 1;
    }
    if granted < pending.len() {
        let abandoned: Vec<CapRequest> = pending[granted..].iter().filter_map(|p| p.cap).collect();
        release_caps(inner, &abandoned, decided_at).await;
        pending.truncate(granted);
    }

    send_with_retries(inner, job, pending, decided_at, seed).await;
    true
}

/// Sends, retrying transient failures (same message ids) on the backoff schedule.
async fn send_with_retries(
    inner: &Inner,
    job: &Arc<Job>,
    mut pending: Vec<Pending>,
    decided_at: chrono::DateTime<chrono::Utc>,
    seed: u64,
) {
    let slot = &inner.deps.providers[job.provider];
    let mut delays = retry::schedule(&inner.deps.config.retry, seed);
    let mut receipts = Vec::new();
    let mut receipt_after = Duration::ZERO;
    let mut to_release: Vec<CapRequest> = Vec::new();
    while !pending.is_empty() {
        let messages: Vec<OutboundMessage> = pending.iter().map(|p| p.message.clone()).collect();
        let outcomes = slot.provider.send_batch(&messages).await;
        let mut retry_list = Vec::new();
        let mut throttle = Duration::ZERO;
        for (p, outcome) in pending.into_iter().zip(outcomes) {
            match outcome {
                SendOutcome::Accepted { .. } => {
                    let unit = job.prices.unit_price(p.region);
                    let cost = unit.times(p.message.parts).0;
                    job.record_sent(p.index, p.message.parts, cost);
                    if let Some(r) = slot.provider.simulated_receipt(&p.message) {
                        receipt_after = r.after;
                        receipts.push((p.index, r.status));
                    }
                }
                SendOutcome::Permanent { .. } => {
                    job.record_failed(p.index);
                    to_release.extend(p.cap);
                }
                SendOutcome::Throttled { retry_after } => {
                    throttle = throttle.max(retry_after);
                    retry_list.push(p);
                }
                SendOutcome::Transient { .. } => retry_list.push(p),
            }
        }
        if retry_list.is_empty() {
            break;
        }
        match delays.next() {
            Some(d) => {
                job.counters.retries.fetch_add(retry_list.len() as u64, Ordering::Relaxed);
                tokio::time::sleep(d.max(throttle)).await;
                pending = retry_list;
            }
            None => {
                for p in retry_list {
                    job.record_failed(p.index);
                    to_release.extend(p.cap);
                }
                break;
            }
        }
    }
    release_caps(inner, &to_release, decided_at).await;
    if !receipts.is_empty() {
        let batch = ReceiptBatch { due: Instant::now() + receipt_after, job: job.clone(), receipts };
        // Backpressure: a full queue slows the worker rather than dropping receipts.
        let _ = inner.receipts.send(batch).await;
    }
}

async fn release_caps(inner: &Inner, caps: &[CapRequest], reserved_at: chrono::DateTime<chrono::Utc>) {
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
                for (i, status) in b.receipts {
                    b.job.record_receipt(i, status);
                }
            }
        }
    }
}
