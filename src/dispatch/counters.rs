//! A job's live counters: atomics updated once per chunk by workers, read by the API.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::domain::{Currency, Reason};

/// Live counters of one job.
#[derive(Default)]
pub struct JobCounters {
    pub audience: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: [AtomicU64; Reason::ALL.len()],
    pub deferred: AtomicI64,
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    /// In flight at a crash and not sent again (the provider cannot drop repeats).
    pub in_doubt: AtomicU64,
    pub delivered: AtomicU64,
    pub undelivered: AtomicU64,
    pub expired: AtomicU64,
    /// Sent messages with no receipt within the receipt timeout (a late receipt moves them on).
    pub unknown: AtomicU64,
    pub segments: AtomicU64,
    pub cost_micros: AtomicI64,
    pub phone_corrected: AtomicU64,
    pub retries: AtomicU64,
}

/// The counters as the API shows them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Counts {
    pub audience: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<&'static str, u64>,
    pub deferred: u64,
    pub sent: u64,
    pub failed: u64,
    /// Messages in flight at a crash, not sent again because the provider cannot drop
    /// repeats; a later delivery receipt settles them.
    pub in_doubt: u64,
    pub delivered: u64,
    pub undelivered: u64,
    pub expired: u64,
    pub unknown: u64,
    pub segments: u64,
    pub cost_micros: i64,
    pub currency: Currency,
    pub phone_corrected: u64,
    pub cancelled: u64,
    pub retries: u64,
    /// Recipients left unsent because the job's budget ran out (while `budget_exhausted`).
    pub over_budget: u64,
}

impl JobCounters {
    /// Counts one rejection.
    pub fn reject(&self, reason: Reason, n: u64) {
        self.rejected[reason.index()].fetch_add(n, Relaxed);
    }

    /// Total rejections over every reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// A copy for reading (each field is exact; fields are read one by one). `cancelled` is
    /// the number of recipients a cancel left unsent.
    pub fn snapshot(&self, currency: Currency, cancelled: u64) -> Counts {
        Counts {
            audience: self.audience.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            rejected: Reason::ALL
                .iter()
                .map(|r| (r.as_str(), self.rejected[r.index()].load(Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            deferred: self.deferred.load(Relaxed).max(0) as u64,
            sent: self.sent.load(Relaxed),
            failed: self.failed.load(Relaxed),
            in_doubt: self.in_doubt.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            undelivered: self.undelivered.load(Relaxed),
            expired: self.expired.load(Relaxed),
            unknown: self.unknown.load(Relaxed),
            segments: self.segments.load(Relaxed),
            cost_micros: self.cost_micros.load(Relaxed),
            currency,
            phone_corrected: self.phone_corrected.load(Relaxed),
            cancelled,
            retries: self.retries.load(Relaxed),
            over_budget: 0,
        }
    }
}
