//! A/B variants of a job's template: several named bodies with weights, and an optional
//! holdout share (a control group that is decided but never sent).
//!
//! Assignment is a pure function of (job id, contact id) through a seeded hash, so a retry,
//! a restart or another instance always puts a contact in the same variant, and the report
//! can recompute it instead of storing it. The holdout takes the lowest `holdout` share of
//! one hash; the variant is picked by weight from a second, independent hash.
//!
//! The bodies travel as one text, joined by [`JOIN`]: the job's stored template body. Links
//! are rewritten over the joined text, so every variant's links share one index space (one
//! job, one tag) and a click resolves to the link of the variant it was sent in.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::compile::Template;
use super::error::TemplateError;
use super::rollout::{hits, share_below, Engagement, Rollout, RolloutSpec, TestResult};

/// Separates variant bodies in the joined text. It ends any link before it (a newline), and
/// a body may not hold the record separator in it.
pub const JOIN: &str = "\n\u{1E}\n";
/// The character a variant body may not contain.
pub const JOIN_MARK: char = '\u{1E}';
/// The most variants one job may have.
pub const MAX_VARIANTS: usize = 16;
/// The open pixel link rewriting appends to an email's body starts so; it goes with every
/// variant, not only the last.
const PIXEL_START: &str = "\n<img src=\"";

/// A variant as the job keeps it (its body is in the joined template text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantSpec {
    pub name: String,
    pub weight: u32,
}

/// A job's variants as accepted: names and weights in order, the holdout share, and an
/// optional rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantsSpec {
    pub variants: Vec<VariantSpec>,
    /// Share of the audience held out (0 to below 1).
    #[serde(default)]
    pub holdout: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,
}

/// Where a contact falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    Holdout,
    /// The variant the contact is (or will be) sent.
    Variant(usize),
    /// In a rollout's remainder, before its winner is chosen.
    Undecided,
}

/// What the policy does with a contact now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Holdout,
    Send(usize),
    /// A rollout's remainder waits for the winner, chosen at this time.
    Wait(DateTime<Utc>),
}

/// Sends and cost per variant, added as the provider accepts messages (and again from the
/// journal on a restart).
#[derive(Debug, Default)]
pub struct VariantTally {
    pub messages: AtomicU64,
    pub parts: AtomicU64,
    pub cost_micros: AtomicI64,
    /// Unique openers and clickers, as they come (for a rollout's decision).
    pub engagement: Engagement,
}

/// A job's compiled variants (links as stand-ins, like the job's template) and its
/// assignment function.
#[derive(Debug)]
pub struct Variants {
    pub spec: VariantsSpec,
    pub templates: Vec<Arc<Template>>,
    pub tallies: Vec<VariantTally>,
    pub rollout: Option<Rollout>,
    seed: u64,
    /// Contacts whose first hash is below this are held out.
    holdout_below: u64,
    /// Running sums of the weights.
    cumulative: Vec<u64>,
}

/// Joins variant bodies into the one text a job stores.
pub fn join(bodies: &[&str]) -> String {
    bodies.join(JOIN)
}

/// Splits a joined text back into its bodies; an email's open pixel (appended once, to the
/// end) goes with each.
pub fn split(joined: &str) -> Vec<String> {
    let mut parts: Vec<String> = joined.split(JOIN).map(str::to_string).collect();
    let pixel = parts.last().and_then(|last| {
        let at = last.rfind(PIXEL_START)?;
        let tail = &last[at..];
        (tail.contains("/o/") && tail.ends_with("alt=\"\">")).then(|| tail.to_string())
    });
    if let Some(pixel) = pixel {
        let n = parts.len();
        for p in &mut parts[..n - 1] {
            p.push_str(&pixel);
        }
    }
    parts
}

impl Variants {
    /// Compiles the variants of a job from its joined (possibly link-rewritten) body.
    /// Fails when the number of bodies differs from the spec's, or a body does not compile.
    /// A rollout's clock starts at `start` (the job's `send_at`, or its acceptance).
    pub fn build(
        job_id: &str,
        spec: VariantsSpec,
        joined: &str,
        start: DateTime<Utc>,
    ) -> Result<Variants, String> {
        let bodies = split(joined);
        if bodies.len() != spec.variants.len() {
            return Err(format!(
                "{} variant bodies for {} variants",
                bodies.len(),
                spec.variants.len()
            ));
        }
        let templates = bodies
            .iter()
            .map(|b| Template::compile(b).map(Arc::new))
            .collect::<Result<Vec<_>, TemplateError>>()
            .map_err(|e| e.to_string())?;
        let mut sum = 0u64;
        let cumulative = spec
            .variants
            .iter()
            .map(|v| {
                sum += u64::from(v.weight);
                sum
            })
            .collect();
        // 2^64 times the share, saturating: a share below one never holds everyone out.
        let holdout_below = share_below(spec.holdout);
        Ok(Variants {
            rollout: spec.rollout.clone().map(|r| Rollout::new(r, start)),
            tallies: spec
                .variants
                .iter()
                .map(|_| VariantTally::default())
                .collect(),
            spec,
            templates,
            seed: xxh3_64(job_id.as_bytes()),
            holdout_below,
            cumulative,
        })
    }

    /// The variant `contact_id` is sent (or will be): its own, or in a rollout's remainder
    /// the winner once chosen.
    pub fn used(&self, contact_id: &str) -> Assignment {
        match (self.draw(contact_id), &self.rollout) {
            (Assignment::Variant(_), Some(r)) if !self.in_test(r, contact_id) => r
                .decision()
                .map_or(Assignment::Undecided, |d| Assignment::Variant(d.winner)),
            (a, _) => a,
        }
    }

    /// What to do with `contact_id` at `now`: in a rollout's remainder, wait for the decision
    /// time, then take the winner (chosen by the first to ask).
    pub fn route(&self, contact_id: &str, now: DateTime<Utc>) -> Route {
        match (self.draw(contact_id), &self.rollout) {
            (Assignment::Holdout, _) => Route::Holdout,
            (Assignment::Variant(_), Some(r)) if !self.in_test(r, contact_id) => {
                if now < r.decide_at && r.decision().is_none() {
                    return Route::Wait(r.decide_at);
                }
                Route::Send(r.decide(now, || {
                    self.tallies
                        .iter()
                        .map(|t| TestResult {
                            sent: t.messages.load(Relaxed),
                            hits: hits(&t.engagement, r.spec.metric),
                        })
                        .collect()
                }))
            }
            (Assignment::Variant(k), _) => Route::Send(k),
            (Assignment::Undecided, _) => Route::Wait(now),
        }
    }

    /// Whether a contact is in the rollout's test share.
    pub fn in_test(&self, r: &Rollout, contact_id: &str) -> bool {
        r.in_test(xxh3_64_with_seed(
            contact_id.as_bytes(),
            self.seed ^ 0xC2B2_AE3D_27D4_EB4F,
        ))
    }

    /// Where the hashes put `contact_id`: the holdout, or its own variant.
    pub fn draw(&self, contact_id: &str) -> Assignment {
        let bytes = contact_id.as_bytes();
        if self.holdout_below > 0 && xxh3_64_with_seed(bytes, self.seed) < self.holdout_below {
            return Assignment::Holdout;
        }
        let total = self.cumulative.last().copied().unwrap_or(0);
        let second = xxh3_64_with_seed(bytes, self.seed ^ 0x9E37_79B9_7F4A_7C15);
        // Maps the hash onto [0, total) without modulo bias worth the name.
        let pick = ((u128::from(second) * u128::from(total)) >> 64) as u64;
        let k = self.cumulative.partition_point(|&c| c <= pick);
        Assignment::Variant(k.min(self.templates.len().saturating_sub(1)))
    }

    /// Counts a first open or a first click of a recipient of variant `k`.
    pub fn record_engagement(&self, k: usize, opened: bool, clicked: bool) {
        if let Some(t) = self.tallies.get(k) {
            t.engagement.opened.fetch_add(u64::from(opened), Relaxed);
            t.engagement.clicked.fetch_add(u64::from(clicked), Relaxed);
        }
    }

    /// Adds an accepted message of variant `k`.
    pub fn record_accepted(&self, k: usize, parts: u32, cost_micros: i64) {
        if let Some(t) = self.tallies.get(k) {
            t.messages.fetch_add(1, Relaxed);
            t.parts.fetch_add(u64::from(parts), Relaxed);
            t.cost_micros.fetch_add(cost_micros, Relaxed);
        }
    }

    /// The variants' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.spec.variants.iter().map(|v| v.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(weights: &[u32], holdout: f64) -> VariantsSpec {
        VariantsSpec {
            variants: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| VariantSpec {
                    name: format!("v{i}"),
                    weight,
                })
                .collect(),
            holdout,
            rollout: None,
        }
    }

    fn start() -> DateTime<Utc> {
        "2026-11-23T04:00:00Z".parse().expect("time")
    }

    fn build(weights: &[u32], holdout: f64) -> Variants {
        let bodies: Vec<String> = (0..weights.len()).map(|i| format!("body {i}")).collect();
        let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
        Variants::build("job_1", spec(weights, holdout), &join(&refs), start()).expect("builds")
    }

    #[test]
    fn shares_follow_the_weights_and_the_holdout() {
        let v = build(&[1, 1, 2], 0.1);
        let n = 100_000;
        let mut counts = [0u32; 4];
        for i in 0..n {
            match v.draw(&format!("c{i}")) {
                Assignment::Holdout => counts[3] += 1,
                Assignment::Variant(k) => counts[k] += 1,
                Assignment::Undecided => panic!("a draw is never undecided"),
            }
        }
        let share = |c: u32| f64::from(c) / f64::from(n);
        assert!((share(counts[3]) - 0.1).abs() < 0.01, "{counts:?}");
        assert!((share(counts[0]) - 0.225).abs() < 0.01, "{counts:?}");
        assert!((share(counts[1]) - 0.225).abs() < 0.01, "{counts:?}");
        assert!((share(counts[2]) - 0.45).abs() < 0.01, "{counts:?}");
    }

    #[test]
    fn assignment_depends_on_the_job_and_the_contact_only() {
        let a = build(&[1, 1], 0.2);
        let b = build(&[1, 1], 0.2);
        let other =
            Variants::build("job_2", spec(&[1, 1], 0.2), "x\n\u{1E}\ny", start()).expect("builds");
        let ids: Vec<String> = (0..1000).map(|i| format!("c{i}")).collect();
        assert!(ids.iter().all(|c| a.draw(c) == b.draw(c)));
        let moved = ids.iter().filter(|c| a.draw(c) != other.draw(c)).count();
        assert!(moved > 300, "another job draws again: {moved}");
    }

    #[test]
    fn a_zero_weight_variant_gets_nobody() {
        let v = build(&[0, 3], 0.0);
        assert!((0..5000).all(|i| v.draw(&format!("c{i}")) == Assignment::Variant(1)));
    }

    #[test]
    fn bodies_split_back_and_the_pixel_goes_with_each() {
        assert_eq!(split(&join(&["a {{x}}", "b"])), ["a {{x}}", "b"]);
        let pixel = "\n<img src=\"https://h.io/o/@@@@OP\" width=\"1\" height=\"1\" alt=\"\">";
        let joined = format!("{}{pixel}", join(&["a", "b"]));
        assert_eq!(split(&joined), [format!("a{pixel}"), format!("b{pixel}")]);
    }

    #[test]
    fn a_body_count_that_differs_from_the_spec_is_refused() {
        assert!(Variants::build("j", spec(&[1, 1], 0.0), "only one", start()).is_err());
    }
}

#[cfg(test)]
mod rollout_tests {
    use super::*;
    use crate::template::rollout::RolloutMetric;

    #[test]
    fn the_test_share_goes_first_and_the_rest_waits_for_the_winner() {
        let start: DateTime<Utc> = "2026-11-23T04:00:00Z".parse().expect("time");
        let spec = VariantsSpec {
            variants: vec![
                VariantSpec {
                    name: "a".into(),
                    weight: 1,
                },
                VariantSpec {
                    name: "b".into(),
                    weight: 1,
                },
            ],
            holdout: 0.0,
            rollout: Some(RolloutSpec {
                test_share: 0.25,
                decide_after_seconds: 600,
                metric: RolloutMetric::ClickRate,
            }),
        };
        let v = Variants::build("job_r", spec, &join(&["a", "b"]), start).expect("builds");
        let ids: Vec<String> = (0..4000).map(|i| format!("c{i}")).collect();
        let before = start + chrono::Duration::seconds(60);
        let routes: Vec<Route> = ids.iter().map(|c| v.route(c, before)).collect();
        let waiting = routes
            .iter()
            .filter(|r| matches!(r, Route::Wait(_)))
            .count();
        assert!((waiting as f64 / 4000.0 - 0.75).abs() < 0.03, "{waiting}");
        let undecided = ids
            .iter()
            .filter(|c| v.used(c) == Assignment::Undecided)
            .count();
        assert_eq!(undecided, waiting, "the waiting ones have no variant yet");
        // b's test messages were clicked; a's not.
        v.record_accepted(0, 1, 0);
        v.record_accepted(1, 1, 0);
        v.record_engagement(1, true, true);
        let after = start + chrono::Duration::seconds(600);
        for (c, r) in ids.iter().zip(&routes) {
            let now = v.route(c, after);
            match r {
                Route::Wait(_) => assert_eq!(now, Route::Send(1)),
                other => assert_eq!(now, *other, "the test share keeps its variants"),
            }
        }
        assert!(ids.iter().all(|c| v.used(c) != Assignment::Undecided));
    }
}
