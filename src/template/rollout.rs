//! A rollout of A/B variants: a test share of the audience is sent first, each contact with
//! its own variant; the rest wait until a set time after the job starts, then all go with
//! the variant that won the test on the named metric (click or open rate over messages sent).
//!
//! The test share is drawn by a third seeded hash of the contact id, like the holdout and the
//! variant, so who is in the test never changes. The winner is chosen once, by the first
//! decision after the set time, from the counts at that moment, and kept with its reasons for
//! the report.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What the test is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutMetric {
    /// Unique clickers over messages sent.
    ClickRate,
    /// Unique openers (a click counts as an open) over messages sent.
    OpenRate,
}

impl RolloutMetric {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutMetric::ClickRate => "click_rate",
            RolloutMetric::OpenRate => "open_rate",
        }
    }
}

/// A rollout as the job keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutSpec {
    /// Share of the (not held out) audience in the test, above 0 and below 1.
    pub test_share: f64,
    /// How long after the job starts (`send_at`, or its acceptance) the winner is chosen.
    pub decide_after_seconds: u64,
    pub metric: RolloutMetric,
}

/// One variant's test figures when the winner was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TestResult {
    pub sent: u64,
    pub hits: u64,
}

/// The choice, with what it was made on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutDecision {
    pub winner: usize,
    pub decided_at: DateTime<Utc>,
    /// Per variant, in order.
    pub results: Vec<TestResult>,
}

/// Unique engagement per variant, counted as it happens, for the decision.
#[derive(Debug, Default)]
pub struct Engagement {
    pub opened: AtomicU64,
    pub clicked: AtomicU64,
}

/// A job's rollout at run time.
#[derive(Debug)]
pub struct Rollout {
    pub spec: RolloutSpec,
    pub decide_at: DateTime<Utc>,
    /// Contacts whose third hash is below this are in the test.
    test_below: u64,
    decision: OnceLock<RolloutDecision>,
}

impl Rollout {
    /// The rollout of a job that starts at `start`.
    pub fn new(spec: RolloutSpec, start: DateTime<Utc>) -> Rollout {
        let after = i64::try_from(spec.decide_after_seconds).unwrap_or(i64::MAX);
        Rollout {
            decide_at: start
                .checked_add_signed(chrono::Duration::seconds(after))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            test_below: share_below(spec.test_share),
            spec,
            decision: OnceLock::new(),
        }
    }

    /// Whether a contact's third hash puts it in the test.
    pub fn in_test(&self, hash: u64) -> bool {
        hash < self.test_below
    }

    /// The decision, if it was made.
    pub fn decision(&self) -> Option<&RolloutDecision> {
        self.decision.get()
    }

    /// The winner: chosen now from `results` (sent and hits per variant) if not yet.
    pub fn decide(&self, now: DateTime<Utc>, results: impl FnOnce() -> Vec<TestResult>) -> usize {
        self.decision
            .get_or_init(|| {
                let results = results();
                RolloutDecision {
                    winner: best(&results).unwrap_or(0),
                    decided_at: now,
                    results,
                }
            })
            .winner
    }
}

/// 2^64 times a share, saturating.
pub(super) fn share_below(share: f64) -> u64 {
    (share.clamp(0.0, 1.0) * 18_446_744_073_709_551_616.0) as u64
}

/// The variant with the highest hits over sent; the first on a tie; `None` when nothing was
/// sent.
pub fn best(results: &[TestResult]) -> Option<usize> {
    let mut best: Option<(usize, TestResult)> = None;
    for (k, r) in results.iter().enumerate() {
        if r.sent == 0 {
            continue;
        }
        // hits/sent > b.hits/b.sent without division.
        let better = best.is_none_or(|(_, b)| {
            u128::from(r.hits) * u128::from(b.sent) > u128::from(b.hits) * u128::from(r.sent)
        });
        if better {
            best = Some((k, *r));
        }
    }
    best.map(|(k, _)| k)
}

/// Reads an engagement counter pair for `metric`.
pub fn hits(e: &Engagement, metric: RolloutMetric) -> u64 {
    match metric {
        RolloutMetric::ClickRate => e.clicked.load(Relaxed),
        RolloutMetric::OpenRate => e.opened.load(Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(sent: u64, hits: u64) -> TestResult {
        TestResult { sent, hits }
    }

    #[test]
    fn the_highest_rate_wins_and_the_first_on_a_tie() {
        assert_eq!(best(&[r(100, 5), r(50, 5), r(10, 0)]), Some(1));
        assert_eq!(best(&[r(10, 1), r(20, 2)]), Some(0));
        assert_eq!(best(&[r(0, 0), r(3, 0)]), Some(1));
        assert_eq!(best(&[r(0, 0)]), None);
    }

    #[test]
    fn the_winner_is_chosen_once() {
        let spec = RolloutSpec {
            test_share: 0.2,
            decide_after_seconds: 600,
            metric: RolloutMetric::ClickRate,
        };
        let start: DateTime<Utc> = "2026-11-23T04:00:00Z".parse().expect("time");
        let rollout = Rollout::new(spec, start);
        assert_eq!(
            rollout.decide_at,
            "2026-11-23T04:10:00Z".parse::<DateTime<Utc>>().expect("t")
        );
        assert_eq!(rollout.decide(start, || vec![r(10, 1), r(10, 4)]), 1);
        assert_eq!(rollout.decide(start, || vec![r(10, 9), r(10, 0)]), 1);
        assert_eq!(
            rollout.decision().map(|d| d.results.clone()),
            Some(vec![r(10, 1), r(10, 4)])
        );
    }
}
