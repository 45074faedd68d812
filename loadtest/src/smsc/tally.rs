//! What the SMSC sink counts: every `submit_sm` it accepted, per recipient and part (so a run
//! can report lost and duplicated messages), how it answered the rest, the most `submit_sm`
//! it ever held unanswered on each bind, and the receipts and replies it delivered back.
//! Served as JSON by the sink's stats endpoint ([`super::control`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

const SHARDS: usize = 64;

/// The sink's counters, shared by every bind.
pub struct Tally {
    started: Instant,
    /// Accepted `submit_sm` per (destination digits, part number), sharded.
    accepted: Vec<Mutex<HashMap<u64, u32>>>,
    pub submits: AtomicU64,
    pub throttled: AtomicU64,
    pub queue_full: AtomicU64,
    pub refused_binds: AtomicU64,
    pub receipts_sent: AtomicU64,
    pub receipts_acknowledged: AtomicU64,
    /// `deliver_sm_resp` with an error: the sink delivers those again.
    pub deliveries_refused: AtomicU64,
    pub planned_delivered: AtomicU64,
    pub planned_undelivered: AtomicU64,
    pub replies_sent: AtomicU64,
    pub replies_acknowledged: AtomicU64,
    /// Micros since start of the first and the latest `submit_sm`.
    first_submit_us: AtomicU64,
    last_submit_us: AtomicU64,
    binds: Mutex<Vec<Arc<BindRecord>>>,
}

/// One bind as the sink saw it.
pub struct BindRecord {
    pub kind: &'static str,
    pub max_outstanding: AtomicUsize,
    pub submits: AtomicU64,
}

impl BindRecord {
    /// Notes `outstanding` unanswered `submit_sm` on this bind.
    pub fn observe_outstanding(&self, outstanding: usize) {
        self.max_outstanding.fetch_max(outstanding, Relaxed);
    }
}

/// A recipient and part as one key: E.164 digits (at most 15) times 256, plus the part.
fn key(destination: u64, part: u8) -> u64 {
    destination.wrapping_mul(256) | u64::from(part)
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            started: Instant::now(),
            accepted: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            submits: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            queue_full: AtomicU64::new(0),
            refused_binds: AtomicU64::new(0),
            receipts_sent: AtomicU64::new(0),
            receipts_acknowledged: AtomicU64::new(0),
            deliveries_refused: AtomicU64::new(0),
            planned_delivered: AtomicU64::new(0),
            planned_undelivered: AtomicU64::new(0),
            replies_sent: AtomicU64::new(0),
            replies_acknowledged: AtomicU64::new(0),
            first_submit_us: AtomicU64::new(u64::MAX),
            last_submit_us: AtomicU64::new(0),
            binds: Mutex::new(Vec::new()),
        }
    }

    /// A new bind of `kind`, counted from now on.
    pub fn bind(&self, kind: &'static str) -> Arc<BindRecord> {
        let record = Arc::new(BindRecord {
            kind,
            max_outstanding: AtomicUsize::new(0),
            submits: AtomicU64::new(0),
        });
        self.binds.lock().push(record.clone());
        record
    }

    /// Counts one `submit_sm` received (whatever its answer).
    pub fn submit_received(&self, bind: &BindRecord) {
        let us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.first_submit_us.fetch_min(us, Relaxed);
        self.last_submit_us.fetch_max(us, Relaxed);
        self.submits.fetch_add(1, Relaxed);
        bind.submits.fetch_add(1, Relaxed);
    }

    /// Records one accepted part for `destination`; answers how many times it was accepted.
    pub fn accept(&self, destination: u64, part: u8) -> u32 {
        let k = key(destination, part);
        let shard = (xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes()) as usize) % SHARDS;
        let mut map = self.accepted[shard].lock();
        let n = map.entry(k).or_insert(0);
        *n += 1;
        *n
    }

    /// A snapshot of every counter.
    pub fn view(&self) -> TallyView {
        let (mut distinct, mut accepted, mut duplicates) = (0u64, 0u64, 0u64);
        for shard in &self.accepted {
            let map = shard.lock();
            distinct += map.len() as u64;
            for &n in map.values() {
                accepted += u64::from(n);
                duplicates += u64::from(n.saturating_sub(1));
            }
        }
        let first = self.first_submit_us.load(Relaxed);
        let last = self.last_submit_us.load(Relaxed);
        let submit_seconds = if first == u64::MAX || last <= first {
            0.0
        } else {
            (last - first) as f64 / 1e6
        };
        TallyView {
            submits: self.submits.load(Relaxed),
            accepted,
            distinct,
            duplicates,
            throttled: self.throttled.load(Relaxed),
            queue_full: self.queue_full.load(Relaxed),
            refused_binds: self.refused_binds.load(Relaxed),
            submit_seconds,
            receipts_sent: self.receipts_sent.load(Relaxed),
            receipts_acknowledged: self.receipts_acknowledged.load(Relaxed),
            deliveries_refused: self.deliveries_refused.load(Relaxed),
            planned_delivered: self.planned_delivered.load(Relaxed),
            planned_undelivered: self.planned_undelivered.load(Relaxed),
            replies_sent: self.replies_sent.load(Relaxed),
            replies_acknowledged: self.replies_acknowledged.load(Relaxed),
            binds: self
                .binds
                .lock()
                .iter()
                .map(|b| BindView {
                    kind: b.kind.to_string(),
                    max_outstanding: b.max_outstanding.load(Relaxed),
                    submits: b.submits.load(Relaxed),
                })
                .collect(),
        }
    }
}

/// The counters as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TallyView {
    /// Every `submit_sm` received, answered with any status.
    pub submits: u64,
    /// `submit_sm` answered `ESME_ROK`.
    pub accepted: u64,
    /// Distinct (recipient, part) accepted.
    pub distinct: u64,
    /// Accepted parts beyond the first for the same recipient and part.
    pub duplicates: u64,
    pub throttled: u64,
    pub queue_full: u64,
    pub refused_binds: u64,
    /// First to latest `submit_sm`, in seconds.
    pub submit_seconds: f64,
    pub receipts_sent: u64,
    pub receipts_acknowledged: u64,
    pub deliveries_refused: u64,
    pub planned_delivered: u64,
    pub planned_undelivered: u64,
    pub replies_sent: u64,
    pub replies_acknowledged: u64,
    pub binds: Vec<BindView>,
}

/// One bind in [`TallyView`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BindView {
    pub kind: String,
    pub max_outstanding: usize,
    pub submits: u64,
}

impl TallyView {
    /// `submit_sm` per second between the first and the latest.
    pub fn submits_per_second(&self) -> f64 {
        if self.submit_seconds > 0.0 {
            self.submits as f64 / self.submit_seconds
        } else {
            0.0
        }
    }

    /// The largest window seen on any bind.
    pub fn max_outstanding(&self) -> usize {
        self.binds
            .iter()
            .map(|b| b.max_outstanding)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_accepted_twice_is_one_duplicate_and_parts_are_apart() {
        let t = Tally::new();
        assert_eq!(t.accept(8613800000001, 1), 1);
        assert_eq!(t.accept(8613800000001, 2), 1);
        assert_eq!(t.accept(8613800000001, 1), 2);
        assert_eq!(t.accept(8613800000002, 1), 1);
        let v = t.view();
        assert_eq!((v.accepted, v.distinct, v.duplicates), (4, 3, 1));
    }
}
