//! The A/B section of a job's report: each variant's funnel (assigned, sent, delivered,
//! opened, clicked, opted out, cost) and, for the open and click rates, how it compares with
//! the best variant: the difference with its 95% confidence interval and a two-proportion
//! z-test p-value ([`super::stats`]). The holdout (control group) is counted on its own.
//!
//! Every figure is read from the job's per-recipient state, each recipient's variant found
//! again by its assignment hash; cost comes from the per-variant tallies the job keeps as the
//! provider accepts messages. Rates are over messages sent (receipts may never come).

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::stats::{compare, Comparison};
use crate::dispatch::delivery::DeliveryState;
use crate::dispatch::Job;
use crate::domain::{Consent, Reason, RecipientOutcome};
use crate::store::{StateStore, StoreError};
use crate::template::rollout::{self, Rollout, TestResult};
use crate::template::{Assignment, RolloutMetric, Variants};

/// The A/B section.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VariantsReport {
    pub variants: Vec<VariantLine>,
    pub holdout: HoldoutLine,
    /// The variant with the highest click rate, and with the highest open rate.
    pub best_by_click_rate: Option<String>,
    pub best_by_open_rate: Option<String>,
    /// With a rollout: the test, the winner and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutLine>,
}

/// A rollout's state: the rest of the audience waits for `decide_at`, then goes with the
/// winner of the test on `metric`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RolloutLine {
    pub test_share: f64,
    pub metric: RolloutMetric,
    pub decide_at: DateTime<Utc>,
    /// Recipients of the rest still waiting for the winner.
    pub waiting: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// The test figures the choice was made on, per variant.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<RolloutTestLine>,
    /// Why the winner won, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// One variant's test result at the decision.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RolloutTestLine {
    pub name: String,
    pub sent: u64,
    pub hits: u64,
    pub rate: Option<f64>,
    /// Against the winner; absent for the winner itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_winner: Option<Comparison>,
}

fn rollout_line(r: &Rollout, lines: &[VariantLine], waiting: u64) -> RolloutLine {
    let mut out = RolloutLine {
        test_share: r.spec.test_share,
        metric: r.spec.metric,
        decide_at: r.decide_at,
        waiting,
        winner: None,
        decided_at: None,
        test: Vec::new(),
        why: None,
    };
    let Some(d) = r.decision() else {
        return out;
    };
    let name = |k: usize| lines.get(k).map_or(String::new(), |l| l.name.clone());
    let w = d.results.get(d.winner).copied();
    out.winner = Some(name(d.winner));
    out.decided_at = Some(d.decided_at);
    out.test = d
        .results
        .iter()
        .enumerate()
        .map(|(k, t)| RolloutTestLine {
            name: name(k),
            sent: t.sent,
            hits: t.hits,
            rate: (t.sent > 0).then(|| round4(t.hits as f64 / t.sent as f64)),
            vs_winner: w
                .filter(|_| k != d.winner)
                .and_then(|w| compare(t.hits, t.sent, w.hits, w.sent)),
        })
        .collect();
    let metric = r.spec.metric.as_str().replace('_', " ");
    let mut why = match w {
        Some(w) if w.sent > 0 => format!(
            "{} had the highest {metric} in the test: {} of {} sent ({:.4})",
            name(d.winner),
            w.hits,
            w.sent,
            w.hits as f64 / w.sent as f64
        ),
        _ => format!(
            "nothing was sent in the test; {} was taken as the first variant",
            name(d.winner)
        ),
    };
    for t in out.test.iter().filter(|t| t.vs_winner.is_some()) {
        if let Some(c) = t.vs_winner {
            why.push_str(&format!(
                "; {}: {} of {} (difference {:.4}, p = {:.3e})",
                t.name, t.hits, t.sent, c.difference, c.p_value
            ));
        }
    }
    out.why = Some(why);
    out
}

/// The control group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HoldoutLine {
    /// The share asked for.
    pub share: f64,
    /// Recipients the hash put in the holdout.
    pub assigned: u64,
    /// Of those, recipients who passed every other rule and were held back: the control group.
    pub held_out: u64,
}

/// One variant's funnel.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VariantLine {
    pub name: String,
    pub weight: u32,
    /// Recipients the hash put in this variant.
    pub assigned: u64,
    pub rejected: u64,
    pub sent: u64,
    pub failed: u64,
    pub delivered: u64,
    /// Unique recipients who opened, and who clicked.
    pub opened: u64,
    pub clicked: u64,
    /// Sent a message, then opted out of the channel.
    pub opted_out: u64,
    pub parts: u64,
    pub cost_micros: i64,
    pub open_rate: Option<f64>,
    pub click_rate: Option<f64>,
    /// This variant against the best one; absent for the best itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_rate_vs_best: Option<Comparison>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub click_rate_vs_best: Option<Comparison>,
}

/// The section for `job`, if it has variants.
pub async fn build(
    job: &Job,
    store: &dyn StateStore,
) -> Result<Option<VariantsReport>, StoreError> {
    let Some(variants) = job.policy.variants.as_deref() else {
        return Ok(None);
    };
    let opted_out = opted_out_contacts(job, store).await?;
    Ok(Some(tally(job, variants, &opted_out)))
}

/// Contacts whose consent for the job's channel went to opt-out after it started sending.
async fn opted_out_contacts(
    job: &Job,
    store: &dyn StateStore,
) -> Result<HashSet<String>, StoreError> {
    let Some(started) = job.state().started_at else {
        return Ok(HashSet::new());
    };
    Ok(store
        .consent_changes_since(&job.spec.tenant, started)
        .await?
        .into_iter()
        .filter(|c| c.consent == Consent::OptOut && c.channel == job.spec.channel)
        .map(|c| c.contact_id)
        .collect())
}

fn tally(job: &Job, variants: &Variants, opted_out: &HashSet<String>) -> VariantsReport {
    let mut lines: Vec<VariantLine> = variants
        .spec
        .variants
        .iter()
        .zip(&variants.tallies)
        .map(|(v, t)| VariantLine {
            name: v.name.clone(),
            weight: v.weight,
            assigned: 0,
            rejected: 0,
            sent: 0,
            failed: 0,
            delivered: 0,
            opened: 0,
            clicked: 0,
            opted_out: 0,
            parts: t.parts.load(Relaxed),
            cost_micros: t.cost_micros.load(Relaxed),
            open_rate: None,
            click_rate: None,
            open_rate_vs_best: None,
            click_rate_vs_best: None,
        })
        .collect();
    let mut holdout = HoldoutLine {
        share: variants.spec.holdout,
        assigned: 0,
        held_out: 0,
    };
    let delivery = &job.progress.delivery;
    let mut waiting = 0u64;
    for i in 0..job.audience.len() as u32 {
        let contact = job.audience.contact_id(i);
        let outcome = job.outcome(i);
        let k = match variants.used(contact) {
            Assignment::Holdout => {
                holdout.assigned += 1;
                holdout.held_out +=
                    u64::from(outcome == RecipientOutcome::Rejected(Reason::Holdout));
                continue;
            }
            Assignment::Variant(k) => k,
            Assignment::Undecided => {
                waiting += 1;
                continue;
            }
        };
        let Some(line) = lines.get_mut(k) else {
            continue;
        };
        line.assigned += 1;
        match outcome {
            RecipientOutcome::Rejected(_) => line.rejected += 1,
            RecipientOutcome::Failed => line.failed += 1,
            RecipientOutcome::Sent => {
                line.sent += 1;
                let (opened, clicked) = delivery.engagement(i);
                line.opened += u64::from(opened);
                line.clicked += u64::from(clicked);
                line.delivered += u64::from(delivery.state(i) == Some(DeliveryState::Delivered));
                line.opted_out += u64::from(opted_out.contains(contact));
            }
            _ => {}
        }
    }
    let rate = |n: u64, d: u64| (d > 0).then(|| round4(n as f64 / d as f64));
    for l in &mut lines {
        l.open_rate = rate(l.opened, l.sent);
        l.click_rate = rate(l.clicked, l.sent);
    }
    let best_click = best(&lines, |l| l.clicked);
    let best_open = best(&lines, |l| l.opened);
    let snapshot = lines.clone();
    for (k, l) in lines.iter_mut().enumerate() {
        if let Some(b) = best_click.filter(|&b| b != k) {
            l.click_rate_vs_best =
                compare(l.clicked, l.sent, snapshot[b].clicked, snapshot[b].sent);
        }
        if let Some(b) = best_open.filter(|&b| b != k) {
            l.open_rate_vs_best = compare(l.opened, l.sent, snapshot[b].opened, snapshot[b].sent);
        }
    }
    let rollout = variants
        .rollout
        .as_ref()
        .map(|r| rollout_line(r, &snapshot, waiting));
    VariantsReport {
        rollout,
        best_by_click_rate: best_click.map(|b| snapshot[b].name.clone()),
        best_by_open_rate: best_open.map(|b| snapshot[b].name.clone()),
        variants: lines,
        holdout,
    }
}

/// The index of the variant with the highest rate (hits over sent), as a rollout picks it.
fn best(lines: &[VariantLine], hits: impl Fn(&VariantLine) -> u64) -> Option<usize> {
    let results: Vec<TestResult> = lines
        .iter()
        .map(|l| TestResult {
            sent: l.sent,
            hits: hits(l),
        })
        .collect();
    rollout::best(&results)
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The section as rows of the report's long CSV table (`variant.sent,<name>,120`).
pub fn csv_rows(r: &VariantsReport, mut row: impl FnMut(&str, &str, String)) {
    for l in &r.variants {
        for (metric, v) in [
            ("variant.assigned", l.assigned),
            ("variant.sent", l.sent),
            ("variant.delivered", l.delivered),
            ("variant.opened", l.opened),
            ("variant.clicked", l.clicked),
            ("variant.opted_out", l.opted_out),
        ] {
            row(metric, &l.name, v.to_string());
        }
        row("variant.cost_micros", &l.name, l.cost_micros.to_string());
        for (metric, c) in [
            ("variant.click_rate_vs_best.p_value", l.click_rate_vs_best),
            ("variant.open_rate_vs_best.p_value", l.open_rate_vs_best),
        ] {
            if let Some(c) = c {
                row(metric, &l.name, format!("{:.6}", c.p_value));
            }
        }
    }
    row("holdout.assigned", "", r.holdout.assigned.to_string());
    row("holdout.held_out", "", r.holdout.held_out.to_string());
}
