//! The provider-message-id → (job, recipient) index that delivery receipts are matched with.
//!
//! Workers register every accepted message of a provider that sends callbacks, once per
//! provider answer. A receipt looks its key up and applies itself to the job. Keys are
//! normalised, hashed ids (`message_id.rs`), so an entry is a 16-byte key and a job pointer.
//!
//! Order does not matter: a receipt that arrives before the provider's send answer has been
//! registered (the provider's callback raced our HTTP response) is parked under its key, and
//! applied by the registration that follows, atomically with it (both go through the same
//! map entry). Parked receipts are dropped after `pending_receipt_seconds`, and at most
//! `max_pending_receipts` are kept.
//!
//! Registrations are also kept in per-minute buckets so that a sweep can mark messages
//! `unknown` once the receipt timeout passes and forget them after the retention period.

use std::collections::VecDeque;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use parking_lot::Mutex;

use super::message_id::MessageKey;
use crate::dispatch::{Job, ReceiptEffect, ReceiptUpdate};

/// Keys are already uniform hashes: the map hashes them by taking 64 of their bits.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 ^= n as u64 ^ (n >> 64) as u64;
    }
}

impl std::hash::Hash for MessageKeyHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.0 .0);
    }
}

/// The map key (hashed with [`KeyHasher`]).
#[derive(Clone, Copy, PartialEq, Eq)]
struct MessageKeyHash(MessageKey);

/// Most receipts parked under one key (a provider repeating an early receipt).
const MAX_PARKED_PER_KEY: usize = 8;

enum Slot {
    Sent { job: Arc<Job>, index: u32 },
    Parked(Vec<ReceiptUpdate>),
}

struct Bucket {
    minute: i64,
    keys: Vec<MessageKey>,
}

/// Timing and size limits, from `[callbacks]`.
#[derive(Debug, Clone, Copy)]
pub struct IndexLimits {
    pub receipt_timeout_seconds: i64,
    pub retention_seconds: i64,
    pub pending_seconds: i64,
    pub max_pending: usize,
}

/// What happened to one receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Applied,
    Duplicate,
    /// No message is registered under the id (yet): parked, or dropped when too many are.
    Unknown,
}

/// What a sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub marked_unknown: u64,
    pub forgotten: u64,
    pub parked_expired: u64,
}

/// The index.
pub struct MessageIndex {
    map: DashMap<MessageKeyHash, Slot, BuildHasherDefault<KeyHasher>>,
    /// Registrations not yet past the receipt timeout, oldest first.
    awaiting: Mutex<VecDeque<Bucket>>,
    /// Registrations past the timeout, kept until the retention ends (only the sweep uses it).
    retained: Mutex<VecDeque<Bucket>>,
    parked: Mutex<VecDeque<Bucket>>,
    parked_count: AtomicUsize,
    /// Early receipts dropped because too many were parked, or never matched in time.
    pub parked_dropped: AtomicU64,
    limits: IndexLimits,
}

fn push(buckets: &mut VecDeque<Bucket>, minute: i64, keys: impl IntoIterator<Item = MessageKey>) {
    match buckets.back_mut() {
        Some(b) if b.minute == minute => b.keys.extend(keys),
        _ => buckets.push_back(Bucket {
            minute,
            keys: keys.into_iter().collect(),
        }),
    }
}

impl MessageIndex {
    /// An empty index.
    pub fn new(limits: IndexLimits) -> MessageIndex {
        MessageIndex {
            map: DashMap::with_hasher(BuildHasherDefault::default()),
            awaiting: Mutex::new(VecDeque::new()),
            retained: Mutex::new(VecDeque::new()),
            parked: Mutex::new(VecDeque::new()),
            parked_count: AtomicUsize::new(0),
            parked_dropped: AtomicU64::new(0),
            limits,
        }
    }

    /// Messages (and parked ids) currently indexed.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Registers accepted messages of `job` at Unix time `now`, applying any receipts that
    /// were parked under their ids.
    pub fn register(&self, job: &Arc<Job>, messages: &[(MessageKey, u32)], now: i64) {
        if messages.is_empty() {
            return;
        }
        let mut early = Vec::new();
        for &(key, index) in messages {
            let slot = Slot::Sent {
                job: job.clone(),
                index,
            };
            match self.map.entry(MessageKeyHash(key)) {
                Entry::Vacant(v) => {
                    v.insert(slot);
                }
                Entry::Occupied(mut o) => {
                    if let Slot::Parked(list) = std::mem::replace(o.get_mut(), slot) {
                        self.parked_count.fetch_sub(1, Relaxed);
                        early.push((index, list));
                    }
                }
            }
        }
        push(
            &mut self.awaiting.lock(),
            now.div_euclid(60),
            messages.iter().map(|&(k, _)| k),
        );
        for (index, list) in early {
            for update in list {
                job.apply_receipt(index, update);
            }
        }
    }

    /// The job of the message registered under `key`, if it is registered.
    pub fn job_of(&self, key: MessageKey) -> Option<Arc<Job>> {
        match &*self.map.get(&MessageKeyHash(key))? {
            Slot::Sent { job, .. } => Some(job.clone()),
            Slot::Parked(_) => None,
        }
    }

    /// Applies a receipt to the message registered under `key`, or parks it.
    pub fn apply(&self, key: MessageKey, update: ReceiptUpdate, now: i64) -> Resolution {
        let k = MessageKeyHash(key);
        if let Some(slot) = self.map.get(&k) {
            if let Slot::Sent { job, index } = &*slot {
                return effect(job.apply_receipt(*index, update));
            }
        }
        let sent = match self.map.entry(k) {
            Entry::Occupied(mut o) => match o.get_mut() {
                Slot::Sent { job, index } => (job.clone(), *index),
                Slot::Parked(list) => {
                    if list.len() < MAX_PARKED_PER_KEY {
                        list.push(update);
                    }
                    return Resolution::Unknown;
                }
            },
            Entry::Vacant(v) => {
                if self.parked_count.load(Relaxed) >= self.limits.max_pending {
                    self.parked_dropped.fetch_add(1, Relaxed);
                    return Resolution::Unknown;
                }
                v.insert(Slot::Parked(vec![update]));
                self.parked_count.fetch_add(1, Relaxed);
                push(&mut self.parked.lock(), now.div_euclid(60), [key]);
                return Resolution::Unknown;
            }
        };
        effect(sent.0.apply_receipt(sent.1, update))
    }

    /// Marks messages without a receipt past the timeout `unknown`, forgets messages past the
    /// retention, and drops parked receipts past their time. Answers what it did.
    pub fn sweep(&self, now: i64) -> SweepReport {
        let mut report = SweepReport::default();
        let due = |b: &Bucket, after: i64| (b.minute + 1) * 60 + after <= now;
        let timed_out: Vec<Bucket> = {
            let mut awaiting = self.awaiting.lock();
            let n = awaiting
                .iter()
                .take_while(|b| due(b, self.limits.receipt_timeout_seconds))
                .count();
            awaiting.drain(..n).collect()
        };
        for b in &timed_out {
            for key in &b.keys {
                if let Some(slot) = self.map.get(&MessageKeyHash(*key)) {
                    if let Slot::Sent { job, index } = &*slot {
                        report.marked_unknown += u64::from(job.mark_unknown(*index));
                    }
                }
            }
        }
        let mut retained = self.retained.lock();
        retained.extend(timed_out);
        while retained
            .front()
            .is_some_and(|b| due(b, self.limits.retention_seconds))
        {
            if let Some(b) = retained.pop_front() {
                for key in b.keys {
                    let gone = self
                        .map
                        .remove_if(&MessageKeyHash(key), |_, s| matches!(s, Slot::Sent { .. }));
                    report.forgotten += u64::from(gone.is_some());
                }
            }
        }
        drop(retained);
        let expired: Vec<Bucket> = {
            let mut parked = self.parked.lock();
            let n = parked
                .iter()
                .take_while(|b| due(b, self.limits.pending_seconds))
                .count();
            parked.drain(..n).collect()
        };
        for key in expired.into_iter().flat_map(|b| b.keys) {
            let gone = self
                .map
                .remove_if(&MessageKeyHash(key), |_, s| matches!(s, Slot::Parked(_)));
            if gone.is_some() {
                self.parked_count.fetch_sub(1, Relaxed);
                report.parked_expired += 1;
            }
        }
        self.parked_dropped
            .fetch_add(report.parked_expired, Relaxed);
        report
    }
}

fn effect(e: ReceiptEffect) -> Resolution {
    match e {
        ReceiptEffect::Applied => Resolution::Applied,
        ReceiptEffect::Duplicate => Resolution::Duplicate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MessageIdFormat;
    use crate::dispatch::delivery::test_support;
    use crate::dispatch::{DeliveryState, ReceiptStatus};

    const T0: i64 = 1_795_406_400;

    fn index() -> MessageIndex {
        MessageIndex::new(IndexLimits {
            receipt_timeout_seconds: 600,
            retention_seconds: 1200,
            pending_seconds: 300,
            max_pending: 2,
        })
    }

    fn key(id: &str) -> MessageKey {
        super::super::message_id::key(0, MessageIdFormat::CaseInsensitive, id).expect("key")
    }

    fn delivered() -> ReceiptUpdate {
        ReceiptUpdate {
            status: ReceiptStatus::Delivered,
            part: None,
        }
    }

    #[test]
    fn a_receipt_before_the_send_answer_is_applied_at_registration() {
        let idx = index();
        let job = test_support::job(3);
        assert_eq!(idx.apply(key("ID-1"), delivered(), T0), Resolution::Unknown);
        assert_eq!(job.progress.delivery.state(1), None);
        idx.register(&job, &[(key("id-0"), 0), (key("id-1"), 1)], T0 + 1);
        assert_eq!(
            job.progress.delivery.state(1),
            Some(DeliveryState::Delivered)
        );
        assert_eq!(job.progress.counters.delivered.load(Relaxed), 1);
        assert_eq!(
            idx.apply(key("id-1"), delivered(), T0 + 2),
            Resolution::Duplicate
        );
        assert_eq!(
            idx.apply(key("Id-0"), delivered(), T0 + 2),
            Resolution::Applied
        );
        assert_eq!(job.progress.counters.delivered.load(Relaxed), 2);
    }

    #[test]
    fn parked_receipts_are_bounded_and_expire() {
        let idx = index();
        for id in ["a", "b", "c"] {
            assert_eq!(idx.apply(key(id), delivered(), T0), Resolution::Unknown);
        }
        assert_eq!(
            idx.parked_dropped.load(Relaxed),
            1,
            "the third is over the cap"
        );
        let r = idx.sweep(T0 + 400);
        assert_eq!(r.parked_expired, 2);
        assert!(idx.is_empty());
        let job = test_support::job(1);
        idx.register(&job, &[(key("a"), 0)], T0 + 401);
        assert_eq!(
            job.progress.delivery.state(0),
            None,
            "expired early receipts are gone"
        );
    }

    #[test]
    fn silence_becomes_unknown_and_is_forgotten_after_retention() {
        let idx = index();
        let job = test_support::job(2);
        idx.register(&job, &[(key("a"), 0), (key("b"), 1)], T0);
        idx.apply(key("a"), delivered(), T0 + 5);
        assert_eq!(idx.sweep(T0 + 300).marked_unknown, 0);
        let r = idx.sweep(T0 + 700);
        assert_eq!(r.marked_unknown, 1);
        assert_eq!(job.progress.delivery.state(1), Some(DeliveryState::Unknown));
        assert_eq!(job.progress.counters.unknown.load(Relaxed), 1);
        // A late receipt still settles it.
        assert_eq!(
            idx.apply(key("b"), delivered(), T0 + 800),
            Resolution::Applied
        );
        assert_eq!(job.progress.counters.unknown.load(Relaxed), 0);
        assert_eq!(idx.sweep(T0 + 1300).forgotten, 2);
        assert_eq!(
            idx.apply(key("b"), delivered(), T0 + 1301),
            Resolution::Unknown
        );
    }
}
