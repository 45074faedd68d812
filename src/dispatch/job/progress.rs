//! Where a job stands: its status, the outcome of every recipient, the counters, the budget
//! spent, messages in doubt, and what happened to sent messages afterwards (receipts, opens,
//! clicks). Every outcome change goes through here, so counters, the `remaining` count and
//! the shared record of a job split across instances never disagree.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::*};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use crate::clock::Clock;
use crate::dispatch::budget::Budget;
use crate::dispatch::counters::JobCounters;
use crate::dispatch::delivery::{Delivery, ReceiptEffect, ReceiptUpdate};
use crate::dispatch::in_doubt::{InDoubt, InDoubtSet};
use crate::dispatch::journal::DeliveryNotes;
use crate::dispatch::share::{EventNote, ShardShare};
use crate::dispatch::DeliveryState;
use crate::domain::{JobId, JobStatus, Reason, RecipientOutcome};

/// Where a job's life stands; changed only under its lock.
#[derive(Debug, Clone)]
pub struct JobState {
    pub status: JobStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why a runnable job is not sending right now (e.g. `snapshot_stale`).
    pub blocked: Option<&'static str>,
}

/// The progress of one job.
pub struct Progress {
    pub counters: JobCounters,
    /// The spending budget (unlimited unless the job was given one).
    pub budget: Budget,
    /// Receipts, opens, clicks and the per-minute and per-country figures.
    pub delivery: Delivery,
    /// Messages in flight at a crash and not sent again, waiting for a receipt to settle them.
    pub in_doubt: InDoubtSet,
    outcomes: Vec<AtomicU8>,
    /// Recipients without a final outcome yet.
    remaining: AtomicU64,
    state: Mutex<JobState>,
    /// Where final delivery states are noted, when dispatch is journaled.
    delivery_notes: OnceLock<DeliveryNotes>,
    /// Set when several instances share this job's shards.
    share: OnceLock<ShardShare>,
    /// Times receipts, opens and clicks for the per-minute series.
    clock: Arc<dyn Clock>,
}

impl Progress {
    /// Progress of `n` recipients, `duplicates` of them rejected from the start.
    pub(super) fn new(
        n: usize,
        duplicates: &[u32],
        status: JobStatus,
        clock: Arc<dyn Clock>,
    ) -> Progress {
        let outcomes: Vec<AtomicU8> = (0..n).map(|_| AtomicU8::new(0)).collect();
        let counters = JobCounters::default();
        counters.audience.store(n as u64, Relaxed);
        let duplicate = RecipientOutcome::Rejected(Reason::Duplicate).to_code();
        for &d in duplicates {
            outcomes[d as usize].store(duplicate, Relaxed);
        }
        counters.reject(Reason::Duplicate, duplicates.len() as u64);
        Progress {
            counters,
            budget: Budget::default(),
            delivery: Delivery::new(n),
            in_doubt: InDoubtSet::default(),
            outcomes,
            remaining: AtomicU64::new((n - duplicates.len()) as u64),
            state: Mutex::new(JobState {
                status,
                started_at: None,
                finished_at: None,
                blocked: None,
            }),
            delivery_notes: OnceLock::new(),
            share: OnceLock::new(),
            clock,
        }
    }

    pub(super) fn state(&self) -> &Mutex<JobState> {
        &self.state
    }

    pub(super) fn remaining(&self) -> u64 {
        self.remaining.load(Acquire)
    }

    pub(super) fn share(&self) -> Option<&ShardShare> {
        self.share.get()
    }

    pub(super) fn share_or_init(&self, init: impl FnOnce() -> ShardShare) -> &ShardShare {
        self.share.get_or_init(init)
    }

    /// Recipient `i`'s outcome code.
    pub(super) fn code(&self, i: u32) -> u8 {
        self.outcomes[i as usize].load(Relaxed)
    }

    pub(super) fn is_pending(&self, i: u32) -> bool {
        self.code(i) == RecipientOutcome::Pending.to_code()
    }

    pub(super) fn len(&self) -> usize {
        self.outcomes.len()
    }

    fn was_deferred(&self, i: u32) -> bool {
        self.code(i) == RecipientOutcome::Deferred.to_code()
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

    pub(super) fn record_rejected(&self, i: u32, reason: Reason) {
        self.set_final(i, RecipientOutcome::Rejected(reason), 0, 0);
        self.counters.reject(reason, 1);
    }

    pub(super) fn decided_without_send(&self) -> Vec<(u32, u8)> {
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

    pub(super) fn restore_decided(&self, i: u32, code: u8) {
        if (i as usize) >= self.outcomes.len() || !self.is_pending(i) {
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

    /// Marks recipient `i` deferred; answers whether it was not already.
    pub(super) fn mark_deferred(&self, i: u32) -> bool {
        if self.was_deferred(i) {
            return false;
        }
        self.counters.deferred.fetch_add(1, Relaxed);
        self.put_code(i, RecipientOutcome::Deferred.to_code(), 0, 0);
        true
    }

    /// Undoes a deferral of recipient `i` (it goes back to undecided).
    pub(super) fn undefer(&self, i: u32) {
        if self.was_deferred(i) {
            self.counters.deferred.fetch_sub(1, Relaxed);
            self.put_code(i, RecipientOutcome::Pending.to_code(), 0, 0);
        }
    }

    pub(super) fn record_sent(&self, i: u32, parts: u32, cost_micros: i64) {
        self.set_final(i, RecipientOutcome::Sent, parts, cost_micros);
        self.counters.sent.fetch_add(1, Relaxed);
        self.counters.segments.fetch_add(parts as u64, Relaxed);
        self.counters.cost_micros.fetch_add(cost_micros, Relaxed);
    }

    pub(super) fn restore_sent(&self, i: u32, parts: u32, cost_micros: i64) {
        if !self.is_pending(i) {
            return;
        }
        self.counters.accepted.fetch_add(1, Relaxed);
        self.budget.force_reserve(cost_micros);
        self.record_sent(i, parts, cost_micros);
    }

    pub(super) fn restore_failed(&self, i: u32) {
        if !self.is_pending(i) {
            return;
        }
        self.counters.accepted.fetch_add(1, Relaxed);
        self.record_failed(i);
    }

    pub(super) fn restore_sending(&self, i: u32, cost_micros: i64) {
        if !self.is_pending(i) {
            return;
        }
        self.counters.accepted.fetch_add(1, Relaxed);
        self.budget.force_reserve(cost_micros);
        self.put_code(i, RecipientOutcome::Sending.to_code(), 0, 0);
    }

    pub(super) fn restore_in_doubt(&self, i: u32, message: InDoubt) {
        if !self.is_pending(i) {
            return;
        }
        self.counters.accepted.fetch_add(1, Relaxed);
        self.counters.in_doubt.fetch_add(1, Relaxed);
        self.budget.force_reserve(message.cost_micros);
        self.set_final(i, RecipientOutcome::InDoubt, 0, 0);
        self.in_doubt.insert(i, message);
    }

    pub(super) fn settle_in_doubt(&self, i: u32, message: InDoubt) {
        if self.code(i) != RecipientOutcome::InDoubt.to_code() {
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

    pub(super) fn record_failed(&self, i: u32) {
        self.set_final(i, RecipientOutcome::Failed, 0, 0);
        self.counters.failed.fetch_add(1, Relaxed);
    }

    /// Applies receipts to recipients at once, noting the final states they settled for the
    /// journal (and the other instances) in one go.
    pub(super) fn apply_receipts(
        &self,
        job: &JobId,
        receipts: impl IntoIterator<Item = (u32, ReceiptUpdate)>,
    ) -> Vec<ReceiptEffect> {
        let now = self.clock.now();
        let mut noted = Vec::new();
        let effects = receipts
            .into_iter()
            .map(|(i, update)| {
                self.in_doubt.receipt_for(job, i);
                let effect = self.delivery.apply(i, update, &self.counters, now);
                if effect == ReceiptEffect::Applied {
                    if let Some(state) = self.delivery.state(i) {
                        if self.delivery_notes.get().is_some() {
                            noted.push((i, state.code()));
                        }
                        if let Some(share) = self.share.get() {
                            if state != DeliveryState::Unknown {
                                share.note_delivery(i, state.code());
                            }
                        }
                    }
                }
                effect
            })
            .collect();
        if let Some(notes) = self.delivery_notes.get() {
            notes.note(job, now, &noted);
        }
        effects
    }

    /// Notes an open or click for the journal, when it is kept.
    pub(super) fn note_engaged(&self, job: &JobId, at: DateTime<Utc>, i: u32, what: u8) {
        if let Some(notes) = self.delivery_notes.get() {
            notes.note_engaged(job, at, &[(i, what)]);
        }
        if let Some(share) = self.share.get() {
            share.note_engaged(at.timestamp(), i, what);
        }
    }

    pub(super) fn journal_deliveries(&self, notes: DeliveryNotes) {
        let _ = self.delivery_notes.set(notes);
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Final outcomes adopted from another instance's record of a shard (see
    /// [`super::Job::adopt_shard`]); answers whether recipient `i` is left undecided here.
    pub(super) fn adopt(&self, i: u32, code: u8, resend: bool) -> Adopted {
        let shared = RecipientOutcome::from_code(code);
        let local = RecipientOutcome::from_code(self.code(i));
        let slot = &self.outcomes[i as usize];
        if shared.is_final() {
            if !local.is_final() {
                slot.store(code, Relaxed);
                self.remaining.fetch_sub(1, AcqRel);
            }
            return Adopted::Final;
        }
        if local.is_final() {
            self.remaining.fetch_add(1, AcqRel);
        }
        if shared == RecipientOutcome::Deferred {
            slot.store(code, Relaxed);
            return match local == RecipientOutcome::Deferred {
                true => Adopted::Final,
                false => Adopted::Deferred,
            };
        }
        if shared == RecipientOutcome::Sending && !resend {
            if let Some(share) = self.share.get() {
                let at = self.clock.now().timestamp();
                share.note_event(i, EventNote::InDoubt { at, index: i });
            }
            self.put_code(i, RecipientOutcome::InDoubt.to_code(), 0, 0);
            self.remaining.fetch_sub(1, AcqRel);
            return Adopted::Final;
        }
        slot.store(RecipientOutcome::Pending.to_code(), Relaxed);
        Adopted::Open
    }

    /// Fraction of the audience with a final outcome.
    pub(super) fn fraction_done(&self) -> f64 {
        let audience = self.outcomes.len() as u64;
        if audience == 0 {
            return 1.0;
        }
        let done = audience - self.remaining().min(audience);
        done as f64 / audience as f64
    }
}

/// What adopting another instance's outcome left a recipient as.
pub(super) enum Adopted {
    /// Decided (or already waiting here): nothing to schedule.
    Final,
    /// Deferred there, to wait here again.
    Deferred,
    /// Undecided: the shard goes on from it.
    Open,
}
