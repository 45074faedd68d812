//! A job's shards when several instances share its work: which shards this instance holds
//! a lease on, where each recipient sits in its shard, and the outcome changes not yet
//! written to the shared store.
//!
//! Instances share outcome codes, not cursors: the instance that takes a shard over reads
//! the shard's codes and goes on from its first undecided recipient. A change is noted here
//! when it happens and written by the cluster's flusher a moment later, fenced by the lease,
//! so an instance that lost a shard can never overwrite what the new holder decided.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::journal::codec::SettledItem;
use crate::domain::{Reason, RecipientOutcome};
use crate::store::{OutcomeUpdate, ShardStats};

/// An event waiting to be written with its shard's outcome changes (see
/// [`crate::webhooks`]): the outcome's commit carries it, so an outcome is never shared
/// without the event that announces it.
#[derive(Debug, Clone, PartialEq)]
pub enum EventNote {
    /// A provider's answer: sent (with its id, parts and cost) or failed. `at`: Unix seconds.
    Settled {
        provider: u16,
        at: i64,
        item: SettledItem,
    },
    /// A message a taken-over shard holds in doubt.
    InDoubt { at: i64, index: u32 },
}

/// Writes `sending` marks to the shared record before a chunk goes to a provider that cannot
/// drop repeated ids: an instance taking the shard over then knows which messages may have
/// reached the provider and marks them in doubt instead of sending them again.
#[async_trait::async_trait]
pub trait SendingMarks: Send + Sync {
    /// Answers false when the marks could not be written: the chunk must not be sent.
    async fn mark_sending(&self, job: &super::Job, indices: &[u32]) -> bool;
}

/// Marks duplicates, which belong to no shard.
const NO_SHARD: u32 = u32::MAX;

/// The shared-work side of one job.
pub struct ShardShare {
    owned: Vec<AtomicBool>,
    /// Recipient index → (shard, position in the shard).
    loc: Vec<(u32, u32)>,
    /// Events of each shard waiting for its next commit.
    events: Vec<Mutex<Vec<EventNote>>>,
    /// Opens and clicks not written yet: (Unix seconds, recipient, what).
    engaged: Mutex<Vec<(i64, u32, u8)>>,
    /// Since when each shard's delivery states wait for their messages' outcomes.
    deliveries_waiting: Vec<Mutex<Option<Instant>>>,
    lens: Vec<u32>,
    pending: Vec<Mutex<Vec<OutcomeUpdate>>>,
    /// Final delivery states from receipts not written yet: (position, state code).
    deliveries: Vec<Mutex<Vec<(u32, u8)>>>,
    /// Final recipients per shard, as last read from the shared record.
    finals: Vec<AtomicI64>,
    renewed: Mutex<Instant>,
    counts: Mutex<Option<(SharedCounts, Instant)>>,
}

/// A job's counters summed over every shard's shared record: what any instance reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedCounts {
    pub sent: u64,
    pub failed: u64,
    pub in_doubt: u64,
    pub deferred: u64,
    /// Handed to the provider, answer not written yet.
    pub sending: u64,
    pub rejected: Vec<(Reason, u64)>,
    pub segments: u64,
    pub cost_micros: i64,
    /// Final delivery states from receipts, whichever instance applied them.
    pub delivered: u64,
    pub undelivered: u64,
    pub expired: u64,
    /// Recipients with a final outcome (duplicates not included).
    pub finals: u64,
    /// Read after the job ended with nothing left to write: these are its last figures.
    pub settled: bool,
}

impl SharedCounts {
    /// Sums the shards' records.
    pub fn sum(stats: &[ShardStats], settled: bool) -> SharedCounts {
        let mut out = SharedCounts {
            settled,
            ..SharedCounts::default()
        };
        let mut rejected = [0u64; Reason::ALL.len()];
        for st in stats {
            for (&code, &n) in &st.by_code {
                let n = n.max(0) as u64;
                match RecipientOutcome::from_code(code) {
                    RecipientOutcome::Sent => out.sent += n,
                    RecipientOutcome::Failed => out.failed += n,
                    RecipientOutcome::InDoubt => out.in_doubt += n,
                    RecipientOutcome::Deferred => out.deferred += n,
                    RecipientOutcome::Sending => out.sending += n,
                    RecipientOutcome::Rejected(r) => rejected[r.index()] += n,
                    _ => {}
                }
            }
            for (&code, &n) in &st.by_delivery {
                let n = n.max(0) as u64;
                match code {
                    1 => out.delivered += n,
                    2 => out.undelivered += n,
                    3 => out.expired += n,
                    _ => {}
                }
            }
            out.segments += st.segments.max(0) as u64;
            out.cost_micros += st.cost_micros;
            out.finals += st.finals.max(0) as u64;
        }
        out.rejected = Reason::ALL
            .iter()
            .map(|&r| (r, rejected[r.index()]))
            .filter(|(_, n)| *n > 0)
            .collect();
        out
    }
}

impl ShardShare {
    /// The share of a job whose shards hold these recipient indices; no shard is owned yet.
    pub fn new(shards: &[&[u32]], audience_len: usize) -> ShardShare {
        let mut loc = vec![(NO_SHARD, 0u32); audience_len];
        for (k, indices) in shards.iter().enumerate() {
            for (pos, &i) in indices.iter().enumerate() {
                loc[i as usize] = (k as u32, pos as u32);
            }
        }
        ShardShare {
            owned: shards.iter().map(|_| AtomicBool::new(false)).collect(),
            loc,
            events: shards.iter().map(|_| Mutex::new(Vec::new())).collect(),
            engaged: Mutex::new(Vec::new()),
            deliveries_waiting: shards.iter().map(|_| Mutex::new(None)).collect(),
            lens: shards.iter().map(|s| s.len() as u32).collect(),
            pending: shards.iter().map(|_| Mutex::new(Vec::new())).collect(),
            deliveries: shards.iter().map(|_| Mutex::new(Vec::new())).collect(),
            finals: shards.iter().map(|_| AtomicI64::new(0)).collect(),
            renewed: Mutex::new(Instant::now()),
            counts: Mutex::new(None),
        }
    }

    /// Shards not every recipient of which has a final outcome yet (as last read).
    pub fn open_shards(&self) -> Vec<usize> {
        (0..self.shards())
            .filter(|&k| self.finals[k].load(Ordering::Relaxed) < i64::from(self.lens[k]))
            .collect()
    }

    /// Takes in what the shared records say: per-shard progress and the job's counters.
    pub fn set_shared(&self, stats: &[ShardStats], settled: bool) {
        for (k, st) in stats.iter().enumerate().take(self.shards()) {
            self.finals[k].store(st.finals, Ordering::Relaxed);
        }
        *self.counts.lock() = Some((SharedCounts::sum(stats, settled), Instant::now()));
    }

    /// The job's counters over every instance, once read.
    pub fn counts(&self) -> Option<SharedCounts> {
        self.counts.lock().as_ref().map(|(c, _)| c.clone())
    }

    /// How long ago the shared counters were read (long ago if never).
    pub fn refreshed_ago(&self) -> Duration {
        self.counts
            .lock()
            .as_ref()
            .map_or(Duration::MAX, |(_, at)| at.elapsed())
    }

    /// Notes that this instance's leases were just renewed.
    pub fn renewed(&self) {
        *self.renewed.lock() = Instant::now();
    }

    /// How long ago the leases were last renewed.
    pub fn renewed_ago(&self) -> Duration {
        self.renewed.lock().elapsed()
    }

    /// How many shards the job has.
    pub fn shards(&self) -> usize {
        self.owned.len()
    }

    /// Whether this instance holds the lease on shard `k` (and may take work from it).
    pub fn owns(&self, k: usize) -> bool {
        self.owned[k].load(Ordering::Acquire)
    }

    /// Recipient `i`'s shard and position in it (`None` for a duplicate).
    pub fn locate(&self, i: u32) -> Option<(usize, u32)> {
        match self.loc.get(i as usize) {
            Some(&(k, pos)) if k != NO_SHARD => Some((k as usize, pos)),
            _ => None,
        }
    }

    /// Whether this instance holds the shard recipient `i` belongs to.
    pub fn owns_recipient(&self, i: u32) -> bool {
        match self.loc.get(i as usize) {
            Some(&(k, _)) if k != NO_SHARD => self.owns(k as usize),
            _ => false,
        }
    }

    /// Records that the lease on shard `k` was won or lost.
    pub fn set_owned(&self, k: usize, owned: bool) {
        self.owned[k].store(owned, Ordering::Release);
    }

    /// Gives up every shard this instance holds (locally); answers which they were, for
    /// releasing their leases in Redis.
    pub fn disown_all(&self) -> Vec<u32> {
        let owned = self.owned_shards();
        for &k in &owned {
            self.set_owned(k as usize, false);
        }
        owned
    }

    /// Shards this instance holds.
    pub fn owned_shards(&self) -> Vec<u32> {
        (0..self.shards())
            .filter(|&k| self.owns(k))
            .map(|k| k as u32)
            .collect()
    }

    /// Notes that recipient `i`'s outcome code became `code` (with the parts and cost of a send).
    pub fn note(&self, i: u32, code: u8, segments: u32, cost_micros: i64) {
        let Some(&(k, pos)) = self.loc.get(i as usize) else {
            return;
        };
        if k == NO_SHARD {
            return;
        }
        self.pending[k as usize].lock().push(OutcomeUpdate {
            pos,
            code,
            segments,
            cost_micros,
        });
    }

    /// Notes an event of recipient `i`, to be written with its shard's next commit. Noted
    /// before the outcome it announces, so a commit never carries an outcome without it.
    pub fn note_event(&self, i: u32, note: EventNote) {
        if let Some(&(k, _)) = self.loc.get(i as usize) {
            if k != NO_SHARD {
                self.events[k as usize].lock().push(note);
            }
        }
    }

    /// Notes events of several recipients (a chunk's), one lock per run of one shard.
    pub fn note_events(&self, notes: Vec<(u32, EventNote)>) {
        let mut notes = notes.into_iter().peekable();
        while let Some((i, note)) = notes.next() {
            let Some(&(k, _)) = self.loc.get(i as usize) else {
                continue;
            };
            if k == NO_SHARD {
                continue;
            }
            let mut list = self.events[k as usize].lock();
            list.push(note);
            while let Some((j, _)) = notes.peek() {
                if self.loc.get(*j as usize).map(|&(s, _)| s) != Some(k) {
                    break;
                }
                if let Some((_, note)) = notes.next() {
                    list.push(note);
                }
            }
        }
    }

    /// Takes shard `k`'s unwritten events, oldest first. Taken after its outcome changes.
    pub fn take_events(&self, k: usize) -> Vec<EventNote> {
        std::mem::take(&mut *self.events[k].lock())
    }

    /// Puts back events that could not be written, before any noted since.
    pub fn put_back_events(&self, k: usize, mut older: Vec<EventNote>) {
        let mut pending = self.events[k].lock();
        older.append(&mut pending);
        *pending = older;
    }

    /// Notes an open (`what` 0) or a click (1 + the link's number) of recipient `i`.
    pub fn note_engaged(&self, at: i64, i: u32, what: u8) {
        self.engaged.lock().push((at, i, what));
    }

    /// Takes the unwritten opens and clicks.
    pub fn take_engaged(&self) -> Vec<(i64, u32, u8)> {
        std::mem::take(&mut *self.engaged.lock())
    }

    /// Puts back opens and clicks that could not be written.
    pub fn put_back_engaged(&self, mut older: Vec<(i64, u32, u8)>) {
        let mut pending = self.engaged.lock();
        older.append(&mut pending);
        *pending = older;
    }

    /// How long shard `k`'s delivery states have waited for their messages' outcomes;
    /// `waiting` false ends the wait.
    pub fn deliveries_waited(&self, k: usize, waiting: bool) -> Duration {
        let mut since = self.deliveries_waiting[k].lock();
        match (waiting, *since) {
            (false, _) => {
                *since = None;
                Duration::ZERO
            }
            (true, Some(t)) => t.elapsed(),
            (true, None) => {
                *since = Some(Instant::now());
                Duration::ZERO
            }
        }
    }

    /// Notes recipient `i`'s final delivery state (from a receipt this instance applied).
    pub fn note_delivery(&self, i: u32, state: u8) {
        if let Some(&(k, pos)) = self.loc.get(i as usize) {
            if k != NO_SHARD {
                self.deliveries[k as usize].lock().push((pos, state));
            }
        }
    }

    /// Takes shard `k`'s unwritten delivery states.
    pub fn take_deliveries(&self, k: usize) -> Vec<(u32, u8)> {
        std::mem::take(&mut *self.deliveries[k].lock())
    }

    /// Puts back delivery states that could not be written.
    pub fn put_back_deliveries(&self, k: usize, mut older: Vec<(u32, u8)>) {
        let mut pending = self.deliveries[k].lock();
        older.append(&mut pending);
        *pending = older;
    }

    /// Takes shard `k`'s unwritten changes, oldest first.
    pub fn take_pending(&self, k: usize) -> Vec<OutcomeUpdate> {
        std::mem::take(&mut *self.pending[k].lock())
    }

    /// Puts back changes that could not be written, before any noted since.
    pub fn put_back(&self, k: usize, mut older: Vec<OutcomeUpdate>) {
        let mut pending = self.pending[k].lock();
        older.append(&mut pending);
        *pending = older;
    }

    /// Drops shard `k`'s unwritten changes (its lease was lost: the new holder decides them).
    pub fn forget(&self, k: usize) {
        self.pending[k].lock().clear();
        self.events[k].lock().clear();
    }

    /// How many outcome changes wait to be written, over every shard.
    pub fn pending_len(&self) -> usize {
        self.pending.iter().map(|p| p.lock().len()).sum()
    }

    /// Whether any shard has changes waiting to be written.
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|p| !p.lock().is_empty())
            || self.events.iter().any(|e| !e.lock().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_land_in_the_recipients_shard_at_its_position() {
        let a: &[u32] = &[0, 2, 5];
        let b: &[u32] = &[1, 4];
        // Recipient 3 is a duplicate: in no shard.
        let share = ShardShare::new(&[a, b], 6);
        share.note(5, 2, 1, 45_000);
        share.note(4, 3, 0, 0);
        share.note(3, 2, 1, 45_000);
        assert_eq!(
            share.take_pending(0),
            vec![OutcomeUpdate {
                pos: 2,
                code: 2,
                segments: 1,
                cost_micros: 45_000
            }]
        );
        let in_b = share.take_pending(1);
        assert_eq!((in_b[0].pos, in_b[0].code), (1, 3));
        assert!(!share.has_pending());
    }

    #[test]
    fn put_back_keeps_older_changes_first() {
        let a: &[u32] = &[0, 1];
        let share = ShardShare::new(&[a], 2);
        share.note(0, 1, 0, 0);
        let older = share.take_pending(0);
        share.note(0, 2, 1, 10);
        share.put_back(0, older);
        let codes: Vec<u8> = share.take_pending(0).iter().map(|u| u.code).collect();
        assert_eq!(codes, vec![1, 2], "the later change must be applied last");
    }

    #[test]
    fn ownership_is_per_shard() {
        let a: &[u32] = &[0];
        let b: &[u32] = &[1];
        let share = ShardShare::new(&[a, b], 2);
        assert!(share.owned_shards().is_empty());
        share.set_owned(1, true);
        assert_eq!(share.owned_shards(), vec![1]);
        assert!(!share.owns(0));
    }
}
