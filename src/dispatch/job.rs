//! One job at run time: its spec and policy, its audience split into shards with cursors,
//! the outcome of every recipient, deferred recipients waiting for quiet hours to end, and
//! live counters. Workers lease one shard at a time, so each recipient is decided once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use super::audience::Audience;
use super::budget::Budget;
use super::counters::JobCounters;
use super::delivery::{AcceptedMessage, Delivery, ReceiptEffect, ReceiptStatus, ReceiptUpdate};
use super::in_doubt::{InDoubt, InDoubtSet};
use super::journal::DeliveryNotes;
use super::pricing::ProviderPrices;
use super::share::ShardShare;
use crate::clock::Clock;
use crate::domain::{Channel, Currency, JobId, JobStatus, Purpose, Reason, RecipientOutcome};
use crate::links::JobLinks;
use crate::policy::{JobPolicy, PhoneMismatchPolicy};
use crate::provider::DeliveryStatus;

/// What the upstream system asked for, as accepted.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobSpec {
    pub campaign_id: String,
    pub channel: Channel,
    pub purpose: Purpose,
    /// Higher goes first when jobs share a provider.
    pub priority: u8,
    pub send_at: Option<DateTime<Utc>>,
    pub template_body: String,
    pub phone_mismatch: PhoneMismatchPolicy,
    pub created_at: DateTime<Utc>,
}

struct Shard {
    indices: Vec<u32>,
    cursor: AtomicUsize,
    leased: AtomicBool,
    /// The end of the chunk a worker holds (meaningful while `leased`): those recipients are
    /// taken even though the cursor has not moved past them yet.
    leased_to: AtomicUsize,
}

/// Where a job's life stands; changed only under its lock.
#[derive(Debug, Clone)]
pub struct JobState {
    pub status: JobStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why a runnable job is not sending right now (e.g. `snapshot_stale`).
    pub blocked: Option<&'static str>,
}

/// A unit of work a worker holds: recipients from one shard, or due deferred recipients.
pub struct Lease {
    pub indices: Vec<u32>,
    shard: Option<(usize, usize)>,
}

/// A job and everything needed to run it.
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    pub policy: JobPolicy,
    pub audience: Audience,
    /// Index of the provider slot in the dispatcher.
    pub provider: usize,
    pub provider_name: String,
    pub currency: Currency,
    pub prices: ProviderPrices,
    pub counters: JobCounters,
    /// The spending budget (unlimited unless the job was given one).
    pub budget: Budget,
    outcomes: Vec<AtomicU8>,
    /// Receipts, opens, clicks and the per-minute and per-country figures.
    pub delivery: Delivery,
    clock: Arc<dyn Clock>,
    /// Set once, when the job is accepted with tracked links.
    links: OnceLock<Arc<JobLinks>>,
    /// Messages in flight at a crash and not sent again, waiting for a receipt to settle them.
    pub in_doubt: InDoubtSet,
    /// Where final delivery states are noted, when dispatch is journaled.
    delivery_notes: OnceLock<DeliveryNotes>,
    shards: Vec<Shard>,
    /// Set when several instances share this job's shards.
    share: OnceLock<ShardShare>,
    next_shard: AtomicUsize,
    state: Mutex<JobState>,
    deferred: Mutex<BTreeMap<DateTime<Utc>, Vec<u32>>>,
    /// Recipients whose send did not fit the budget: offered again (first) after a resume.
    over_budget: Mutex<Vec<u32>>,
    /// Recipients without a final outcome yet.
    remaining: AtomicU64,
    leases: AtomicUsize,
}

/// Everything [`Job::new`] needs besides the audience.
pub struct JobParts {
    pub id: JobId,
    pub spec: JobSpec,
    pub policy: JobPolicy,
    pub provider: usize,
    pub provider_name: String,
    pub currency: Currency,
    pub prices: ProviderPrices,
    pub shards: usize,
    /// Times receipts, opens and clicks for the per-minute series.
    pub clock: Arc<dyn Clock>,
}

impl Job {
    /// Plans a job: marks duplicates, shards the rest.
    pub fn new(parts: JobParts, audience: Audience, now: DateTime<Utc>) -> Arc<Job> {
        let n = audience.len();
        let outcomes: Vec<AtomicU8> = (0..n).map(|_| AtomicU8::new(0)).collect();
        let counters = JobCounters::default();
        counters.audience.store(n as u64, Relaxed);
        for &d in audience.duplicates() {
            outcomes[d as usize].store(
                RecipientOutcome::Rejected(Reason::Duplicate).to_code(),
                Relaxed,
            );
        }
        counters.reject(Reason::Duplicate, audience.duplicates().len() as u64);
        let shards = audience
            .shard(parts.shards)
            .into_iter()
            .map(|indices| Shard {
                indices,
                cursor: AtomicUsize::new(0),
                leased: AtomicBool::new(false),
                leased_to: AtomicUsize::new(0),
            })
            .collect();
        let remaining = (n - audience.duplicates().len()) as u64;
        let status = match parts.spec.send_at {
            Some(at) if at > now => JobStatus::Scheduled,
            _ => JobStatus::Queued,
        };
        Arc::new(Job {
            id: parts.id,
            spec: parts.spec,
            policy: parts.policy,
            provider: parts.provider,
            provider_name: parts.provider_name,
            currency: parts.currency,
            prices: parts.prices,
            counters,
            budget: Budget::default(),
            delivery: Delivery::new(n),
            clock: parts.clock,
            links: OnceLock::new(),
            in_doubt: InDoubtSet::default(),
            delivery_notes: OnceLock::new(),
            outcomes,
            audience,
            shards,
            share: OnceLock::new(),
            next_shard: AtomicUsize::new(0),
            state: Mutex::new(JobState {
                status,
                started_at: None,
                finished_at: None,
                blocked: None,
            }),
            deferred: Mutex::new(BTreeMap::new()),
            over_budget: Mutex::new(Vec::new()),
            remaining: AtomicU64::new(remaining),
            leases: AtomicUsize::new(0),
        })
    }

    /// The current state.
    pub fn state(&self) -> JobState {
        self.state.lock().clone()
    }

    /// The current status.
    pub fn status(&self) -> JobStatus {
        self.state.lock().status
    }

    /// Runs `f` on the state under the lock.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut JobState) -> R) -> R {
        f(&mut self.state.lock())
    }

    /// Recipients without a final outcome.
    pub fn remaining(&self) -> u64 {
        self.remaining.load(Acquire)
    }

    /// Whether a worker holds part of this job right now.
    pub fn has_leases(&self) -> bool {
        self.leases.load(Acquire) > 0
    }

    /// Number of recipients waiting for quiet hours to end.
    pub fn deferred_len(&self) -> usize {
        self.deferred.lock().values().map(Vec::len).sum()
    }

    /// The earliest time a deferred recipient comes due.
    pub fn next_deferred_due(&self) -> Option<DateTime<Utc>> {
        self.deferred.lock().keys().next().copied()
    }

    /// Takes up to `max` recipients: due deferred ones first, then the next chunk of a shard
    /// nobody else holds. `None` when there is nothing to do right now.
    pub fn lease(&self, max: usize, now: DateTime<Utc>) -> Option<Lease> {
        {
            let mut held = self.over_budget.lock();
            if !held.is_empty() {
                let from = held.len() - max.min(held.len());
                let indices = held.drain(from..).collect();
                self.leases.fetch_add(1, AcqRel);
                return Some(Lease {
                    indices,
                    shard: None,
                });
            }
        }
        {
            let mut deferred = self.deferred.lock();
            let mut due = Vec::new();
            while due.len() < max {
                let Some(mut entry) = deferred.first_entry() else {
                    break;
                };
                if *entry.key() > now {
                    break;
                }
                let list = entry.get_mut();
                let take = (max - due.len()).min(list.len());
                due.extend(list.drain(list.len() - take..));
                if list.is_empty() {
                    entry.remove();
                }
            }
            if let Some(share) = self.share.get() {
                // Shards this instance lost are decided by their new holder.
                due.retain(|&i| share.owns_recipient(i));
            }
            if !due.is_empty() {
                self.leases.fetch_add(1, AcqRel);
                return Some(Lease {
                    indices: due,
                    shard: None,
                });
            }
        }
        let n = self.shards.len();
        let start = self.next_shard.fetch_add(1, Relaxed);
        for k in 0..n {
            let s_idx = (start + k) % n;
            let shard = &self.shards[s_idx];
            if shard.cursor.load(Acquire) >= shard.indices.len() {
                continue;
            }
            if self.share.get().is_some_and(|s| !s.owns(s_idx)) {
                continue;
            }
            if shard
                .leased
                .compare_exchange(false, true, AcqRel, Relaxed)
                .is_err()
            {
                continue;
            }
            let from = shard.cursor.load(Acquire);
            if from >= shard.indices.len() {
                shard.leased.store(false, Release);
                continue;
            }
            let to = (from + max).min(shard.indices.len());
            shard.leased_to.store(to, Release);
            self.leases.fetch_add(1, AcqRel);
            // After a restart, recipients settled before the crash (or being sent again)
            // are still in their shard: only the undecided ones are taken.
            let pending = RecipientOutcome::Pending.to_code();
            let indices = shard.indices[from..to]
                .iter()
                .copied()
                .filter(|&i| self.outcomes[i as usize].load(Relaxed) == pending)
                .collect();
            return Some(Lease {
                indices,
                shard: Some((s_idx, to)),
            });
        }
        None
    }

    /// Finishes a lease. `done` advances the shard cursor past the chunk; otherwise (the
    /// store could not answer) the chunk is offered again. Deferred leases that were not
    /// done go back to the deferred queue as due now.
    pub fn release(&self, lease: Lease, done: bool, now: DateTime<Utc>) {
        match lease.shard {
            Some((s_idx, to)) => {
                let shard = &self.shards[s_idx];
                if done {
                    shard.cursor.store(to, Release);
                }
                shard.leased.store(false, Release);
            }
            None if !done => self
                .deferred
                .lock()
                .entry(now)
                .or_default()
                .extend(lease.indices),
            None => {}
        }
        self.leases.fetch_sub(1, AcqRel);
    }

    /// The outcome of recipient `i`, as the per-recipient report shows it.
    pub fn outcome(&self, i: u32) -> RecipientOutcome {
        let o = RecipientOutcome::from_code(self.outcomes[i as usize].load(Relaxed));
        if !o.is_final() && self.status() == JobStatus::Cancelled {
            RecipientOutcome::Cancelled
        } else {
            o
        }
    }

    fn was_deferred(&self, i: u32) -> bool {
        self.outcomes[i as usize].load(Relaxed) == RecipientOutcome::Deferred.to_code()
    }

    fn set_final(&self, i: u32, outcome: RecipientOutcome, parts: u32, cost_micros: i64) {
        if self.was_deferred(i) {
            self.counters.deferred.fetch_sub(1, Relaxed);
        }
        self.put_code(i, outcome.to_code(), parts, cost_micros);
        self.remaining.fetch_sub(1, AcqRel);
    }

    /// Sets recipient `i`'s outcome code, noting it for the other instances when they share
    /// the job.
    fn put_code(&self, i: u32, code: u8, parts: u32, cost_micros: i64) {
        self.outcomes[i as usize].store(code, Relaxed);
        if let Some(share) = self.share.get() {
            share.note(i, code, parts, cost_micros);
        }
    }

    /// Records a rejection.
    pub fn record_rejected(&self, i: u32, reason: Reason) {
        self.set_final(i, RecipientOutcome::Rejected(reason), 0, 0);
        self.counters.reject(reason, 1);
    }

    /// The recipients decided without a provider call, as (index, outcome code): rejections
    /// (duplicates aside, which planning marks again) and deferrals. What the journal keeps of
    /// a job that ended, since these outcomes are not journaled while it runs.
    pub fn decided_without_send(&self) -> Vec<(u32, u8)> {
        let duplicate = RecipientOutcome::Rejected(Reason::Duplicate).to_code();
        let deferred = RecipientOutcome::Deferred.to_code();
        self.outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                let code = o.load(Relaxed);
                let keep = code != duplicate
                    && (code == deferred
                        || matches!(
                            RecipientOutcome::from_code(code),
                            RecipientOutcome::Rejected(_)
                        ));
                keep.then_some((i as u32, code))
            })
            .collect()
    }

    /// Restores an outcome decided without a provider call before a restart (see
    /// [`Job::decided_without_send`]); recipients that already have an outcome keep it. A
    /// deferred recipient is not queued again: only an ended job's decisions are restored.
    pub fn restore_decided(&self, i: u32, code: u8) {
        if (i as usize) >= self.outcomes.len()
            || self.outcome_code(i) != RecipientOutcome::Pending.to_code()
        {
            return;
        }
        match RecipientOutcome::from_code(code) {
            RecipientOutcome::Rejected(reason) => self.record_rejected(i, reason),
            RecipientOutcome::Deferred => {
                self.counters.deferred.fetch_add(1, Relaxed);
                self.put_code(i, code, 0, 0);
            }
            _ => {}
        }
    }

    /// Records a deferral until `until`.
    pub fn record_deferred(&self, i: u32, until: DateTime<Utc>) {
        if !self.was_deferred(i) {
            self.counters.deferred.fetch_add(1, Relaxed);
            self.put_code(i, RecipientOutcome::Deferred.to_code(), 0, 0);
        }
        self.deferred.lock().entry(until).or_default().push(i);
    }

    /// Holds recipient `i`, whose send did not fit the budget, until a resume: it goes back
    /// to undecided (a deferral is undone) and is offered again before anything else.
    pub fn hold_over_budget(&self, i: u32) {
        if self.was_deferred(i) {
            self.counters.deferred.fetch_sub(1, Relaxed);
            self.put_code(i, RecipientOutcome::Pending.to_code(), 0, 0);
        }
        self.over_budget.lock().push(i);
    }

    /// Recipients no worker has taken on: the unleased rest of every shard, those held back
    /// by the budget, and deferred ones. While the job is `budget_exhausted` these are the
    /// ones its budget left unsent (sends in flight are not among them).
    pub fn untaken(&self) -> u64 {
        let in_shards: usize = self
            .shards
            .iter()
            .map(|s| {
                let taken = if s.leased.load(Acquire) {
                    s.leased_to.load(Acquire)
                } else {
                    s.cursor.load(Acquire)
                };
                s.indices.len().saturating_sub(taken)
            })
            .sum();
        (in_shards + self.over_budget.lock().len() + self.deferred_len()) as u64
    }

    /// Records a provider acceptance.
    pub fn record_sent(&self, i: u32, parts: u32, cost_micros: i64) {
        self.set_final(i, RecipientOutcome::Sent, parts, cost_micros);
        self.counters.sent.fetch_add(1, Relaxed);
        self.counters.segments.fetch_add(parts as u64, Relaxed);
        self.counters.cost_micros.fetch_add(cost_micros, Relaxed);
    }

    /// Restores a send settled before a restart: counted as sent and charged to the budget.
    pub fn restore_sent(&self, i: u32, parts: u32, cost_micros: i64) {
        if self.outcome_code(i) != RecipientOutcome::Pending.to_code() {
            return;
        }
        self.counters.accepted.fetch_add(1, Relaxed);
        self.budget.force_reserve(cost_micros);
        self.record_sent(i, parts, cost_micros);
    }

    /// Restores a failure settled before a restart.
    pub fn restore_failed(&self, i: u32) {
        if self.outcome_code(i) != RecipientOutcome::Pending.to_code() {
            return;
        }
        self.counters.accepted.fetch_add(1, Relaxed);
        self.record_failed(i);
    }

    /// Marks recipient `i`, in flight at a crash, as being sent again; its cost stays
    /// reserved against the budget.
    pub fn restore_sending(&self, i: u32, cost_micros: i64) {
        if self.outcome_code(i) != RecipientOutcome::Pending.to_code() {
            return;
        }
        self.counters.accepted.fetch_add(1, Relaxed);
        self.budget.force_reserve(cost_micros);
        self.put_code(i, RecipientOutcome::Sending.to_code(), 0, 0);
    }

    /// Marks recipient `i`, in flight at a crash, as in doubt (not sent again). Its cost
    /// stays reserved: the provider may have charged it.
    pub fn restore_in_doubt(&self, i: u32, message: InDoubt) {
        if self.outcome_code(i) != RecipientOutcome::Pending.to_code() {
            return;
        }
        self.counters.accepted.fetch_add(1, Relaxed);
        self.counters.in_doubt.fetch_add(1, Relaxed);
        self.budget.force_reserve(message.cost_micros);
        self.set_final(i, RecipientOutcome::InDoubt, 0, 0);
        self.in_doubt.insert(i, message);
    }

    /// Counts an in-doubt message as sent: a receipt proved it reached the provider, and its
    /// charge is durable. Its budget reservation was kept, so only the counters move.
    pub fn settle_in_doubt(&self, i: u32, message: InDoubt) {
        if self.outcome_code(i) != RecipientOutcome::InDoubt.to_code() {
            return;
        }
        self.put_code(
            i,
            RecipientOutcome::Sent.to_code(),
            message.parts,
            message.cost_micros,
        );
        self.counters.in_doubt.fetch_sub(1, Relaxed);
        self.counters.sent.fetch_add(1, Relaxed);
        self.counters
            .segments
            .fetch_add(message.parts as u64, Relaxed);
        self.counters
            .cost_micros
            .fetch_add(message.cost_micros, Relaxed);
    }

    fn outcome_code(&self, i: u32) -> u8 {
        self.outcomes[i as usize].load(Relaxed)
    }

    /// Records a permanent failure.
    pub fn record_failed(&self, i: u32) {
        self.set_final(i, RecipientOutcome::Failed, 0, 0);
        self.counters.failed.fetch_add(1, Relaxed);
    }

    /// Records a chunk's simulated delivery receipts; a repeated receipt for the same
    /// recipient counts once.
    pub fn record_receipts(&self, receipts: &[(u32, DeliveryStatus)]) {
        let mut noted = Vec::with_capacity(receipts.len());
        // One reading of the clock for the batch: it arrived at once.
        let now = self.clock.now();
        for &(i, status) in receipts {
            let status = match status {
                DeliveryStatus::Delivered => ReceiptStatus::Delivered,
                DeliveryStatus::Undelivered => ReceiptStatus::Undelivered,
            };
            let update = ReceiptUpdate { status, part: None };
            self.apply_receipt_noting(i, update, now, &mut noted);
        }
        if let Some(notes) = self.delivery_notes.get() {
            notes.note(&self.id, now, &noted);
        }
    }

    /// Applies a provider's receipt to recipient `i` (see [`Delivery::apply`]).
    pub fn apply_receipt(&self, i: u32, update: ReceiptUpdate) -> ReceiptEffect {
        let mut noted = Vec::new();
        let now = self.clock.now();
        let effect = self.apply_receipt_noting(i, update, now, &mut noted);
        if let Some(notes) = self.delivery_notes.get() {
            notes.note(&self.id, now, &noted);
        }
        effect
    }

    /// [`Job::apply_receipt`], adding the final state it settled to `noted` for the journal
    /// instead of noting it there, so that a batch of receipts is noted at once.
    fn apply_receipt_noting(
        &self,
        i: u32,
        update: ReceiptUpdate,
        now: DateTime<Utc>,
        noted: &mut Vec<(u32, u8)>,
    ) -> ReceiptEffect {
        self.in_doubt.receipt_for(&self.id, i);
        let effect = self.delivery.apply(i, update, &self.counters, now);
        if effect == ReceiptEffect::Applied {
            if let Some(state) = self.delivery.state(i) {
                if self.delivery_notes.get().is_some() {
                    noted.push((i, state.code()));
                }
                if let Some(share) = self.share.get() {
                    if state != super::DeliveryState::Unknown {
                        share.note_delivery(i, state.code());
                    }
                }
            }
        }
        effect
    }

    /// Notes final delivery states for the journal from now on (once; later calls are ignored).
    pub fn journal_deliveries(&self, notes: DeliveryNotes) {
        let _ = self.delivery_notes.set(notes);
    }

    /// Marks recipient `i` `unknown` when no receipt came in time.
    pub fn mark_unknown(&self, i: u32) -> bool {
        self.delivery.mark_unknown(i, &self.counters)
    }

    /// Records the accepted messages of one provider answer, which arrived at `at`, in the
    /// minute and country figures.
    pub fn record_accepted(&self, batch: &[AcceptedMessage], at: DateTime<Utc>) {
        self.delivery.record_accepted(batch, at);
    }

    /// Records an open of recipient `i`'s message.
    pub fn record_open(&self, i: u32) {
        self.delivery.record_open(i, self.clock.now());
    }

    /// Records a click on link `link` of recipient `i`'s message.
    pub fn record_click(&self, i: u32, link: usize) {
        self.delivery.record_click(i, link, self.clock.now());
    }

    /// Gives the job its tracked links (once; later calls are ignored).
    pub fn set_links(&self, links: JobLinks) {
        let _ = self.links.set(Arc::new(links));
    }

    /// The job's tracked links, if it has them.
    pub fn links(&self) -> Option<&Arc<JobLinks>> {
        self.links.get()
    }

    /// Recipient `i`'s rendered body with its link tokens filled in.
    pub fn fill_links(&self, i: u32, mut body: String) -> String {
        if let Some(l) = self.links.get() {
            crate::links::rewrite::fill(&mut body, &l.signer, l.tag, i);
        }
        body
    }

    /// Drops every deferred recipient (on cancel); they read as cancelled.
    pub fn clear_deferred(&self) {
        self.deferred.lock().clear();
    }

    /// How many shards the job is split into.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shared-work side of the job, when several instances share it.
    pub fn share(&self) -> Option<&ShardShare> {
        self.share.get()
    }

    /// Makes the job's shards shared work: from now on this instance takes work only from
    /// shards whose lease it holds, and notes every outcome for the others. Idempotent.
    pub fn share_work(&self) -> &ShardShare {
        self.share.get_or_init(|| {
            let shards: Vec<&[u32]> = self.shards.iter().map(|s| s.indices.as_slice()).collect();
            ShardShare::new(&shards, self.outcomes.len())
        })
    }

    /// Whether a worker here holds a chunk of shard `k` right now.
    pub fn shard_busy(&self, k: usize) -> bool {
        self.shards[k].leased.load(Acquire)
    }

    /// Takes shard `k` over from the outcome codes another instance wrote (by position; a
    /// missing code is undecided). Final outcomes are kept, deferred recipients wait here
    /// again (due now, so quiet hours are checked again), and the shard goes on from its
    /// first undecided recipient; anything after it already decided is skipped. Answers
    /// the position it goes on from. Local counters are not corrected: with shared work,
    /// reports read the shared counters.
    /// A message marked `sending` (in flight when its holder died) is sent again when the
    /// provider drops repeats (`resend`), else it is marked in doubt.
    pub fn adopt_shard(&self, k: usize, codes: &[u8], resend: bool, now: DateTime<Utc>) -> usize {
        let shard = &self.shards[k];
        let mut first_open = shard.indices.len();
        let mut deferred = Vec::new();
        for (pos, &i) in shard.indices.iter().enumerate() {
            let code = codes.get(pos).copied().unwrap_or(0);
            let shared = RecipientOutcome::from_code(code);
            let local = RecipientOutcome::from_code(self.outcome_code(i));
            let slot = &self.outcomes[i as usize];
            if shared.is_final() {
                if !local.is_final() {
                    slot.store(code, Relaxed);
                    self.remaining.fetch_sub(1, AcqRel);
                }
            } else {
                if local.is_final() {
                    self.remaining.fetch_add(1, AcqRel);
                }
                if shared == RecipientOutcome::Deferred {
                    if local != RecipientOutcome::Deferred {
                        deferred.push(i);
                    }
                    slot.store(code, Relaxed);
                } else if shared == RecipientOutcome::Sending && !resend {
                    self.put_code(i, RecipientOutcome::InDoubt.to_code(), 0, 0);
                    self.remaining.fetch_sub(1, AcqRel);
                } else {
                    slot.store(RecipientOutcome::Pending.to_code(), Relaxed);
                    first_open = first_open.min(pos);
                }
            }
        }
        if !deferred.is_empty() {
            self.deferred
                .lock()
                .entry(now)
                .or_default()
                .extend(deferred);
        }
        shard.cursor.store(first_open, Release);
        first_open
    }

    /// Fraction of the audience with a final outcome.
    pub fn progress(&self) -> f64 {
        let audience = self.audience.len() as u64;
        if audience == 0 {
            return 1.0;
        }
        let done = audience - self.remaining().min(audience);
        done as f64 / audience as f64
    }
}
