//! One job at run time, as three things: its [`plan`] (what was accepted, fixed), its
//! [`schedule`] (which recipients go next: shards with cursors, deferred recipients, those
//! held by the budget) and its [`progress`] (status, every recipient's outcome, counters,
//! budget, in-doubt messages, receipts). Workers lease one chunk of a shard at a time, so
//! each recipient is decided once; every outcome change goes through the progress.

pub mod plan;
pub mod progress;
pub mod schedule;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::audience::Audience;
use super::delivery::{AcceptedMessage, ReceiptEffect, ReceiptStatus, ReceiptUpdate};
use super::in_doubt::InDoubt;
use super::journal::DeliveryNotes;
use super::pricing::ProviderPrices;
use super::share::ShardShare;
use crate::clock::Clock;
use crate::domain::{Currency, JobId, JobStatus, Reason, RecipientOutcome};
use crate::policy::JobPolicy;
use crate::provider::DeliveryStatus;
use crate::template::rollout::RolloutDecision;
use crate::template::Assignment;

pub use plan::{JobPlan, JobSpec};
use progress::Adopted;
pub use progress::{JobState, Progress};
pub use schedule::Lease;
use schedule::Schedule;

/// A job and everything needed to run it. It reads as its plan (`job.id`, `job.spec`,
/// `job.audience`); its progress is `job.progress`.
pub struct Job {
    plan: JobPlan,
    schedule: Schedule,
    pub progress: Progress,
}

impl std::ops::Deref for Job {
    type Target = JobPlan;

    fn deref(&self) -> &JobPlan {
        &self.plan
    }
}

/// Everything [`Job::new`] needs besides the audience.
pub struct JobParts {
    pub id: JobId,
    pub spec: JobSpec,
    pub policy: JobPolicy,
    pub provider: usize,
    pub provider_name: String,
    pub currency: Currency,
    /// Every provider's name and prices for the job's channel, by slot.
    pub providers: Vec<(String, ProviderPrices)>,
    pub shards: usize,
    /// Times receipts, opens and clicks for the per-minute series.
    pub clock: Arc<dyn Clock>,
}

impl Job {
    /// Plans a job: marks duplicates, shards the rest.
    pub fn new(parts: JobParts, audience: Audience, now: DateTime<Utc>) -> Arc<Job> {
        let status = match parts.spec.send_at {
            Some(at) if at > now => JobStatus::Scheduled,
            _ => JobStatus::Queued,
        };
        let progress = Progress::new(audience.len(), audience.duplicates(), status, parts.clock);
        let schedule = Schedule::new(audience.shard(parts.shards));
        let plan = JobPlan::new(
            parts.id,
            parts.spec,
            parts.policy,
            audience,
            (parts.provider, parts.provider_name),
            parts.currency,
            parts.providers,
        );
        Arc::new(Job {
            plan,
            schedule,
            progress,
        })
    }

    /// The current state.
    pub fn state(&self) -> JobState {
        self.progress.state().lock().clone()
    }

    /// The current status.
    pub fn status(&self) -> JobStatus {
        self.progress.state().lock().status
    }

    /// Runs `f` on the state under the lock.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut JobState) -> R) -> R {
        f(&mut self.progress.state().lock())
    }

    /// Recipients without a final outcome.
    pub fn remaining(&self) -> u64 {
        self.progress.remaining()
    }

    /// Whether a worker holds part of this job right now.
    pub fn has_leases(&self) -> bool {
        self.schedule.has_leases()
    }

    /// Number of recipients waiting for quiet hours to end.
    pub fn deferred_len(&self) -> usize {
        self.schedule.deferred_len()
    }

    /// The earliest time a deferred recipient comes due.
    pub fn next_deferred_due(&self) -> Option<DateTime<Utc>> {
        self.schedule.next_deferred_due()
    }

    /// Takes up to `max` recipients: those held back by the budget, then due deferred ones,
    /// then the next chunk of a shard nobody else holds. `None` when there is nothing to do
    /// right now.
    pub fn lease(&self, max: usize, now: DateTime<Utc>) -> Option<Lease> {
        let progress = &self.progress;
        self.schedule
            .lease(max, now, progress.share(), |i| progress.is_pending(i))
    }

    /// Finishes a lease. `done` advances the shard cursor past the chunk; otherwise (the
    /// store could not answer) the chunk is offered again. Deferred leases that were not
    /// done go back to the deferred queue as due now.
    pub fn release(&self, lease: Lease, done: bool, now: DateTime<Utc>) {
        self.schedule.release(lease, done, now);
    }

    /// The outcome of recipient `i`, as the per-recipient report shows it.
    pub fn outcome(&self, i: u32) -> RecipientOutcome {
        let o = RecipientOutcome::from_code(self.progress.code(i));
        if !o.is_final() && self.status() == JobStatus::Cancelled {
            RecipientOutcome::Cancelled
        } else {
            o
        }
    }

    /// Records a rejection.
    pub fn record_rejected(&self, i: u32, reason: Reason) {
        self.progress.record_rejected(i, reason);
    }

    /// The recipients decided without a provider call, as (index, outcome code): rejections
    /// (duplicates aside, which planning marks again) and deferrals. What the journal keeps of
    /// a job that ended, since these outcomes are not journaled while it runs.
    pub fn decided_without_send(&self) -> Vec<(u32, u8)> {
        self.progress.decided_without_send()
    }

    /// Restores an outcome decided without a provider call before a restart (see
    /// [`Job::decided_without_send`]); recipients that already have an outcome keep it. A
    /// deferred recipient is not queued again: only an ended job's decisions are restored.
    pub fn restore_decided(&self, i: u32, code: u8) {
        self.progress.restore_decided(i, code);
    }

    /// Records a deferral until `until`.
    pub fn record_deferred(&self, i: u32, until: DateTime<Utc>) {
        self.progress.mark_deferred(i);
        self.schedule.defer(until, [i]);
    }

    /// Holds recipient `i`, whose send did not fit the budget, until a resume: it goes back
    /// to undecided (a deferral is undone) and is offered again before anything else.
    pub fn hold_over_budget(&self, i: u32) {
        self.progress.undefer(i);
        self.schedule.hold(i);
    }

    /// Recipients no worker has taken on: the unleased rest of every shard, those held back
    /// by the budget, and deferred ones. While the job is `budget_exhausted` these are the
    /// ones its budget left unsent (sends in flight are not among them).
    pub fn untaken(&self) -> u64 {
        self.schedule.untaken()
    }

    /// Records a provider acceptance.
    pub fn record_sent(&self, i: u32, parts: u32, cost_micros: i64) {
        self.progress.record_sent(i, parts, cost_micros);
    }

    /// Restores a send settled before a restart: counted as sent and charged to the budget.
    pub fn restore_sent(&self, i: u32, parts: u32, cost_micros: i64) {
        self.progress.restore_sent(i, parts, cost_micros);
    }

    /// Restores a failure settled before a restart.
    pub fn restore_failed(&self, i: u32) {
        self.progress.restore_failed(i);
    }

    /// Marks recipient `i`, in flight at a crash, as being sent again; its cost stays
    /// reserved against the budget.
    pub fn restore_sending(&self, i: u32, cost_micros: i64) {
        self.progress.restore_sending(i, cost_micros);
    }

    /// Marks recipient `i`, in flight at a crash, as in doubt (not sent again). Its cost
    /// stays reserved: the provider may have charged it.
    pub fn restore_in_doubt(&self, i: u32, message: InDoubt) {
        self.progress.restore_in_doubt(i, message);
    }

    /// Counts an in-doubt message as sent: a receipt proved it reached the provider, and its
    /// charge is durable. Its budget reservation was kept, so only the counters move.
    pub fn settle_in_doubt(&self, i: u32, message: InDoubt) {
        self.progress.settle_in_doubt(i, message);
    }

    /// Records a permanent failure.
    pub fn record_failed(&self, i: u32) {
        self.progress.record_failed(i);
    }

    /// Records a chunk's simulated delivery receipts; a repeated receipt for the same
    /// recipient counts once.
    pub fn record_receipts(&self, receipts: &[(u32, DeliveryStatus)]) {
        let updates = receipts.iter().map(|&(i, status)| {
            let status = match status {
                DeliveryStatus::Delivered => ReceiptStatus::Delivered,
                DeliveryStatus::Undelivered => ReceiptStatus::Undelivered,
            };
            (i, ReceiptUpdate { status, part: None })
        });
        self.progress.apply_receipts(&self.plan.id, updates);
    }

    /// Applies a provider's receipt to recipient `i` (see [`super::delivery::Delivery::apply`]).
    pub fn apply_receipt(&self, i: u32, update: ReceiptUpdate) -> ReceiptEffect {
        let effects = self.progress.apply_receipts(&self.plan.id, [(i, update)]);
        effects
            .into_iter()
            .next()
            .unwrap_or(ReceiptEffect::Duplicate)
    }

    /// Notes final delivery states for the journal from now on (once; later calls are ignored).
    pub fn journal_deliveries(&self, notes: DeliveryNotes) {
        self.progress.journal_deliveries(notes);
    }

    /// Marks recipient `i` `unknown` when no receipt came in time.
    pub fn mark_unknown(&self, i: u32) -> bool {
        self.progress
            .delivery
            .mark_unknown(i, &self.progress.counters)
    }

    /// Records the accepted messages of one provider answer, which arrived at `at`, in the
    /// minute and country figures.
    pub fn record_accepted(&self, batch: &[AcceptedMessage], at: DateTime<Utc>) {
        self.progress.delivery.record_accepted(batch, at);
        if let Some(v) = &self.policy.variants {
            for m in batch {
                if let Assignment::Variant(k) = v.used(self.audience.contact_id(m.index)) {
                    v.record_accepted(k, m.parts, m.cost_micros);
                }
            }
        }
    }

    /// Records an open of recipient `i`'s message (durably, when the journal is kept).
    pub fn record_open(&self, i: u32) {
        let now = self.progress.now();
        let before = self.progress.delivery.engagement(i);
        self.progress.delivery.record_open(i, now);
        self.count_engagement(i, before);
        self.progress
            .note_engaged(&self.id, now, i, super::journal::codec::ENGAGED_OPEN);
    }

    /// The winner of the job's variants rollout, once chosen.
    pub fn rollout_decision(&self) -> Option<RolloutDecision> {
        let v = self.policy.variants.as_ref()?;
        v.rollout.as_ref()?.decision().cloned()
    }

    /// Takes a rollout winner chosen before a restart.
    pub fn restore_rollout(&self, decision: RolloutDecision) {
        if let Some(r) = self
            .policy
            .variants
            .as_ref()
            .and_then(|v| v.rollout.as_ref())
        {
            r.restore(decision);
        }
    }

    /// Counts a recipient's first open or click for its variant (a rollout decides on them).
    fn count_engagement(&self, i: u32, (opened, clicked): (bool, bool)) {
        let Some(v) = &self.policy.variants else {
            return;
        };
        let (now_opened, now_clicked) = self.progress.delivery.engagement(i);
        if let Assignment::Variant(k) = v.used(self.audience.contact_id(i)) {
            v.record_engagement(k, now_opened && !opened, now_clicked && !clicked);
        }
    }

    /// Records a click on link `link` of recipient `i`'s message (durably, when the journal
    /// is kept).
    pub fn record_click(&self, i: u32, link: usize) {
        let now = self.progress.now();
        let before = self.progress.delivery.engagement(i);
        self.progress.delivery.record_click(i, link, now);
        self.count_engagement(i, before);
        if let Ok(what) = u8::try_from(link + 1) {
            self.progress.note_engaged(&self.id, now, i, what);
        }
    }

    /// Restores an open or click journaled before a restart, at its time (its variant's
    /// counts too).
    pub fn restore_engaged(&self, i: u32, what: u8, at: DateTime<Utc>) {
        let before = self.progress.delivery.engagement(i);
        match what {
            super::journal::codec::ENGAGED_OPEN => self.progress.delivery.record_open(i, at),
            link => self
                .progress
                .delivery
                .record_click(i, usize::from(link - 1), at),
        }
        self.count_engagement(i, before);
    }

    /// Drops every deferred recipient (on cancel); they read as cancelled.
    pub fn clear_deferred(&self) {
        self.schedule.clear_deferred();
    }

    /// How many shards the job is split into.
    pub fn shard_count(&self) -> usize {
        self.schedule.shard_count()
    }

    /// The shared-work side of the job, when several instances share it.
    pub fn share(&self) -> Option<&ShardShare> {
        self.progress.share()
    }

    /// Makes the job's shards shared work: from now on this instance takes work only from
    /// shards whose lease it holds, and notes every outcome for the others. Idempotent.
    pub fn share_work(&self) -> &ShardShare {
        self.progress
            .share_or_init(|| ShardShare::new(&self.schedule.shard_indices(), self.progress.len()))
    }

    /// The provider slot recipient `i`'s message to `to` in `region` goes to now: the route's
    /// choice for it (its contact id fixes its draw, so a preview prices what a send will
    /// pay), or the job's first provider when the route reaches nobody. `order` is scratch.
    pub fn route(
        &self,
        router: &super::routing::Router,
        i: u32,
        region: crate::phone::RegionCode,
        to: &crate::domain::Address,
        order: &mut Vec<usize>,
    ) -> usize {
        let draw = xxhash_rust::xxh3::xxh3_64(self.audience.contact_id(i).as_bytes());
        router
            .choose_for(self.spec.channel, region, Some(to), draw, None, order)
            .unwrap_or(self.provider)
    }

    /// The recipient at position `pos` of shard `k`.
    pub fn recipient_at(&self, k: usize, pos: u32) -> Option<u32> {
        self.schedule.shard(k).get(pos as usize).copied()
    }

    /// Whether a worker here holds a chunk of shard `k` right now.
    pub fn shard_busy(&self, k: usize) -> bool {
        self.schedule.shard_busy(k)
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
        let shard = self.schedule.shard(k);
        let mut first_open = shard.len();
        let mut deferred = Vec::new();
        for (pos, &i) in shard.iter().enumerate() {
            let code = codes.get(pos).copied().unwrap_or(0);
            match self.progress.adopt(i, code, resend) {
                Adopted::Final => {}
                Adopted::Deferred => deferred.push(i),
                Adopted::Open => first_open = first_open.min(pos),
            }
        }
        if !deferred.is_empty() {
            self.schedule.defer(now, deferred);
        }
        self.schedule.set_cursor(k, first_open);
        first_open
    }

    /// Fraction of the audience with a final outcome.
    pub fn progress(&self) -> f64 {
        self.progress.fraction_done()
    }
}
