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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutSpec {
    /// Share of the (not held out) audience in the test, above 0 and below 1.
    pub test_share: f64,
    /// How long after the job starts (`send_at`, or its acceptance) the winner is chosen.
    pub decide_after_seconds: u64,
    pub metric: RolloutMetric,
}

/// One variant's test figures when the winner was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    pub sent: u64,
    pub hits: u64,
}

/// The choice, with what it was made on. Journaled with the job's control record, so a
/// restart keeps the winner of those already sent with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Called once, right after the choice is made (it journals it).
    on_decide: OnceLock<DecideHook>,
}

/// What a rollout calls when it chooses.
pub struct DecideHook(pub Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for DecideHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecideHook")
    }
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
            on_decide: OnceLock::new(),
        }
    }

    /// Sets what is called once the winner is chosen (the first setting holds).
    pub fn on_decide(&self, hook: DecideHook) {
        let _ = self.on_decide.set(hook);
    }

    /// Takes a decision made before a restart.
    pub fn restore(&self, decision: RolloutDecision) {
        let _ = self.decision.set(decision);
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
        let mut fresh = false;
        let winner = self
            .decision
            .get_or_init(|| {
                fresh = true;
                let results = results();
                RolloutDecision {
                    winner: best(&results).unwrap_or(0),
                    decided_at: now,
                    results,
                }
            })
            .winner;
        if fresh {
            if let Some(hook) = self.on_decide.get() {
                (hook.0)();
            }
        }
        winner
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
        let calls = std::sync::Arc::new(AtomicU64::new(0));
        let seen = calls.clone();
        rollout.on_decide(DecideHook(Box::new(move || {
            seen.fetch_add(1, Relaxed);
        })));
        assert_eq!(rollout.decide(start, || vec![r(10, 1), r(10, 4)]), 1);
        assert_eq!(rollout.decide(start, || vec![r(10, 9), r(10, 0)]), 1);
        assert_eq!(
            rollout.decision().map(|d| d.results.clone()),
            Some(vec![r(10, 1), r(10, 4)])
        );
        assert_eq!(calls.load(Relaxed), 1, "the hook runs once, for the choice");
        // A restarted job takes the journaled decision instead of choosing again.
        let again = Rollout::new(rollout.spec.clone(), start);
        again.restore(rollout.decision().cloned().expect("decided"));
        assert_eq!(again.decide(start, || vec![r(10, 9), r(10, 0)]), 1);
    }
}
