//! Which of a job's recipients are taken next: the audience split into shards with cursors
//! that workers lease a chunk at a time, recipients deferred until their quiet hours end, and
//! those held back by the budget. Each recipient is handed to one worker at a time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use crate::dispatch::share::ShardShare;

struct Shard {
    indices: Vec<u32>,
    cursor: AtomicUsize,
    leased: AtomicBool,
    /// The end of the chunk a worker holds (meaningful while `leased`): those recipients are
    /// taken even though the cursor has not moved past them yet.
    leased_to: AtomicUsize,
}

/// A unit of work a worker holds: recipients from one shard, or due deferred recipients.
pub struct Lease {
    pub indices: Vec<u32>,
    shard: Option<(usize, usize)>,
}

/// The schedule of one job's recipients.
pub(super) struct Schedule {
    shards: Vec<Shard>,
    next_shard: AtomicUsize,
    deferred: Mutex<BTreeMap<DateTime<Utc>, Vec<u32>>>,
    /// Recipients whose send did not fit the budget: offered again (first) after a resume.
    over_budget: Mutex<Vec<u32>>,
    leases: AtomicUsize,
}

impl Schedule {
    /// A schedule over `shards` (recipient indices, each shard in its send order).
    pub(super) fn new(shards: Vec<Vec<u32>>) -> Schedule {
        Schedule {
            shards: shards
                .into_iter()
                .map(|indices| Shard {
                    indices,
                    cursor: AtomicUsize::new(0),
                    leased: AtomicBool::new(false),
                    leased_to: AtomicUsize::new(0),
                })
                .collect(),
            next_shard: AtomicUsize::new(0),
            deferred: Mutex::new(BTreeMap::new()),
            over_budget: Mutex::new(Vec::new()),
            leases: AtomicUsize::new(0),
        }
    }

    pub(super) fn has_leases(&self) -> bool {
        self.leases.load(Acquire) > 0
    }

    pub(super) fn deferred_len(&self) -> usize {
        self.deferred.lock().values().map(Vec::len).sum()
    }

    pub(super) fn next_deferred_due(&self) -> Option<DateTime<Utc>> {
        self.deferred.lock().keys().next().copied()
    }

    /// Queues recipients until `until`.
    pub(super) fn defer(&self, until: DateTime<Utc>, indices: impl IntoIterator<Item = u32>) {
        self.deferred
            .lock()
            .entry(until)
            .or_default()
            .extend(indices);
    }

    /// Drops every deferred recipient (on cancel).
    pub(super) fn clear_deferred(&self) {
        self.deferred.lock().clear();
    }

    /// Holds a recipient back until a resume.
    pub(super) fn hold(&self, i: u32) {
        self.over_budget.lock().push(i);
    }

    /// Takes up to `max` recipients: those held by the budget first, then due deferred ones,
    /// then the next chunk of a shard nobody else holds, keeping only recipients `pending`
    /// says are undecided. With shared work only recipients and shards this instance owns
    /// are taken. `None` when there is nothing to do right now.
    pub(super) fn lease(
        &self,
        max: usize,
        now: DateTime<Utc>,
        share: Option<&ShardShare>,
        pending: impl Fn(u32) -> bool,
    ) -> Option<Lease> {
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
            if let Some(share) = share {
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
            if share.is_some_and(|s| !s.owns(s_idx)) {
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
            let indices = shard.indices[from..to]
                .iter()
                .copied()
                .filter(|&i| pending(i))
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
    pub(super) fn release(&self, lease: Lease, done: bool, now: DateTime<Utc>) {
        match lease.shard {
            Some((s_idx, to)) => {
                let shard = &self.shards[s_idx];
                if done {
                    shard.cursor.store(to, Release);
                }
                shard.leased.store(false, Release);
            }
            None if !done => self.defer(now, lease.indices),
            None => {}
        }
        self.leases.fetch_sub(1, AcqRel);
    }

    /// Recipients no worker has taken on: the unleased rest of every shard, those held back
    /// by the budget, and deferred ones.
    pub(super) fn untaken(&self) -> u64 {
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

    pub(super) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Every shard's recipients, in order (for the shared-work side).
    pub(super) fn shard_indices(&self) -> Vec<&[u32]> {
        self.shards.iter().map(|s| s.indices.as_slice()).collect()
    }

    /// Shard `k`'s recipients, in order.
    pub(super) fn shard(&self, k: usize) -> &[u32] {
        &self.shards[k].indices
    }

    /// Moves shard `k`'s cursor to `pos`.
    pub(super) fn set_cursor(&self, k: usize, pos: usize) {
        self.shards[k].cursor.store(pos, Release);
    }

    pub(super) fn shard_busy(&self, k: usize) -> bool {
        self.shards[k].leased.load(Acquire)
    }
}
