//! The summary a run prints, and the checks it must pass: no duplicate deliveries, nothing
//! lost, herald's `sent` equal to the ids the mock holds, rejections as synthesised, and the
//! way back adding up (see [`crate::way_back`]).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::mock::stats::StatsView;
use crate::population::Expected;
use crate::scenario::Scenario;
pub use crate::way_back::WayBack;

/// Everything a run measured.
pub struct Outcome<'a> {
    pub scenario: &'a Scenario,
    pub expected: &'a Expected,
    pub contacts: u64,
    pub snapshot: &'a Value,
    pub job: &'a Value,
    pub mock: &'a StatsView,
    pub synth_time: Duration,
    pub snapshot_time: Duration,
    pub intake_time: Duration,
    pub dispatch_wall: Duration,
    /// (seconds since submission, sent) as polled.
    pub samples: &'a [(f64, u64)],
    /// Receipts and clicks, when the scenario sends them.
    pub way_back: Option<&'a WayBack>,
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn signed(n: i64) -> String {
    if n < 0 {
        format!("-{}", thousands(n.unsigned_abs()))
    } else {
        thousands(n as u64)
    }
}

pub fn mark(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISMATCH"
    }
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()?.parse().ok()
}

fn rate(n: u64, d: Duration) -> String {
    thousands((n as f64 / d.as_secs_f64().max(1e-9)) as u64)
}

/// Money in micros as major units with two decimals.
fn money(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!(
        "{sign}{}.{:02}",
        thousands(m / 1_000_000),
        (m % 1_000_000) / 10_000
    )
}

/// herald's own start → finish of the dispatch, else the wall time the run saw.
fn dispatch_time(o: &Outcome<'_>) -> Duration {
    match (time(&o.job["started_at"]), time(&o.job["finished_at"])) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or(o.dispatch_wall),
        _ => o.dispatch_wall,
    }
}

/// The headline figures and the checks as JSON (`run --summary-json`).
pub fn summary(o: &Outcome<'_>, problems: &[String]) -> Value {
    let c = &o.job["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    let m = o.mock;
    let sent = n("sent");
    let mut v = json!({
        "scenario": o.scenario.name,
        "sent": sent,
        "failed": n("failed"),
        "sends_per_second": (sent as f64 / dispatch_time(o).as_secs_f64().max(1e-9)).round(),
        "latency_ms": {"p50": m.latency_ms.p50, "p99": m.latency_ms.p99},
        "duplicates": m.duplicates,
        "lost": n("accepted") as i64 - m.distinct as i64 - n("failed") as i64,
        "problems": problems,
    });
    if let Some(w) = o.way_back {
        v["way_back"] = crate::way_back::Figures::read(w, &m.way_back).json();
    }
    v
}

/// Prints the summary; answers the failed checks (empty when the run is sound).
pub fn print(o: &Outcome<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    let c = &o.job["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    let (sent, failed, accepted, audience) = (n("sent"), n("failed"), n("accepted"), n("audience"));
    let m = o.mock;
    let herald_dispatch = dispatch_time(o);
    let target = (sent as f64 * 0.99).ceil() as u64;
    let t99 = o
        .samples
        .iter()
        .find(|(_, s)| *s >= target)
        .map(|(t, _)| *t)
        .unwrap_or(o.dispatch_wall.as_secs_f64());

    println!();
    println!("== {}: results ==", o.scenario.name);
    println!("{:<30} {:>10} {:>16}", "phase", "time", "rate");
    println!(
        "{:<30} {:>8.2} s {:>16}",
        "synthesise + check numbers",
        o.synth_time.as_secs_f64(),
        format!("{}/s", rate(o.contacts, o.synth_time))
    );
    println!(
        "{:<30} {:>8.2} s {:>16}",
        "snapshot load over HTTP",
        o.snapshot_time.as_secs_f64(),
        format!("{} rows/s", rate(o.contacts, o.snapshot_time))
    );
    println!(
        "{:<30} {:>8.2} s {:>16}",
        "job intake (NDJSON stream)",
        o.intake_time.as_secs_f64(),
        format!("{}/s", rate(audience, o.intake_time))
    );
    println!(
        "{:<30} {:>8.2} s {:>16}",
        "dispatch (herald start→finish)",
        herald_dispatch.as_secs_f64(),
        format!("{} sends/s", rate(sent, herald_dispatch))
    );
    println!();
    println!("throughput over HTTP to the mock provider");
    println!(
        "  sends/s, whole job (retry tail included)  {:>10}",
        rate(sent, herald_dispatch)
    );
    println!(
        "  sends/s, until 99% were sent              {:>10}   ({:.2} s)",
        thousands((target as f64 / t99.max(1e-9)) as u64),
        t99
    );
    println!(
        "  provider latency, measured in the mock (body read → answer): p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        m.latency_ms.p50, m.latency_ms.p90, m.latency_ms.p99, m.latency_ms.max
    );
    println!(
        "  requests {}  messages offered {}  ({:.1} per request)",
        thousands(m.requests),
        thousands(m.offered),
        m.offered as f64 / m.requests.max(1) as f64
    );
    println!(
        "  mock answered: 429 {}  5xx {}  timeouts {}  rejected {}  retryable rejections {}  herald retries {}",
        thousands(m.throttled),
        thousands(m.errors),
        thousands(m.timeouts),
        thousands(m.rejected),
        thousands(m.retryable_rejected),
        thousands(n("retries"))
    );

    println!();
    println!("accounting (every eligible recipient: at the mock once, or failed)");
    let eligible_ok = accepted == o.expected.eligible;
    println!(
        "  {:<36} {:>12}   expected {} {}",
        "eligible (passed herald's policy)",
        thousands(accepted),
        thousands(o.expected.eligible),
        mark(eligible_ok)
    );
    println!("  {:<36} {:>12}", "sent (herald)", thousands(sent));
    let distinct_ok = m.distinct == sent;
    println!(
        "  {:<36} {:>12}   {}",
        "distinct ids accepted by the mock",
        thousands(m.distinct),
        if distinct_ok {
            "= sent"
        } else {
            "!= sent MISMATCH"
        }
    );
    println!(
        "  {:<36} {:>12}   (mock rejected {} for good)",
        "failed (herald)",
        thousands(failed),
        thousands(m.rejected)
    );
    let dup_ok = m.duplicates == 0;
    println!(
        "  {:<36} {:>12}   {}",
        "duplicates (same id accepted twice)",
        thousands(m.duplicates),
        mark(dup_ok)
    );
    let lost = accepted as i64 - m.distinct as i64 - failed as i64;
    println!(
        "  {:<36} {:>12}   {}",
        "lost (eligible - distinct - failed)",
        signed(lost),
        mark(lost == 0)
    );
    if !dup_ok {
        problems.push(format!("{} duplicate deliveries", m.duplicates));
    }
    if lost != 0 {
        problems.push(format!("{lost} lost"));
    }
    if !distinct_ok {
        problems.push(format!(
            "herald sent {sent} but the mock holds {}",
            m.distinct
        ));
    }
    if !eligible_ok {
        problems.push(format!(
            "{accepted} eligible, {} expected",
            o.expected.eligible
        ));
    }
    if m.key_mismatches > 0 || m.bad_requests > 0 {
        problems.push(format!(
            "mock refused {} requests and saw {} idempotency-key mismatches",
            m.bad_requests, m.key_mismatches
        ));
    }

    println!();
    println!(
        "{:<36} {:>12} {:>12}",
        "rejected by reason", "expected", "herald"
    );
    let got: BTreeMap<String, u64> = c["rejected"]
        .as_object()
        .map(|r| {
            r.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let mut reasons: Vec<String> = o.expected.rejected.keys().map(|k| k.to_string()).collect();
    reasons.extend(got.keys().cloned());
    reasons.sort();
    reasons.dedup();
    for r in &reasons {
        let want = o.expected.rejected.get(r.as_str()).copied().unwrap_or(0);
        let have = got.get(r).copied().unwrap_or(0);
        println!(
            "  {:<34} {:>12} {:>12}   {}",
            r,
            thousands(want),
            thousands(have),
            mark(want == have)
        );
        if want != have {
            problems.push(format!("{r}: {have} rejected, {want} expected"));
        }
    }
    if o.expected.reclassified > 0 {
        println!(
            "  ({} generated numbers were classed otherwise by the numbering plan; expectations follow the plan)",
            thousands(o.expected.reclassified)
        );
    }
    let deferred = n("deferred");
    if deferred > 0 {
        println!("  deferred (quiet hours): {}", thousands(deferred));
    }

    println!();
    println!(
        "cost: {} {} for {} segments of {} messages (price per part by destination)",
        money(c["cost_micros"].as_i64().unwrap_or(0)),
        c["currency"].as_str().unwrap_or("?"),
        thousands(n("segments")),
        thousands(sent)
    );
    println!(
        "eligible by country: {}",
        o.expected
            .eligible_by_country
            .iter()
            .map(|(k, v)| format!("{k} {}", thousands(*v)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "snapshot: {} contacts, {} rows rejected",
        o.snapshot["contacts"], o.snapshot["rejected_rows"]
    );
    if let Some(w) = o.way_back {
        crate::way_back::print(w, &m.way_back, sent, &mut problems);
    }
    println!();
    if problems.is_empty() {
        println!("checks: PASS (no duplicates, nothing lost, counts as expected)");
    } else {
        println!("checks: FAIL");
        for p in &problems {
            println!("  - {p}");
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(signed(-1_500), "-1,500");
        assert_eq!(money(1_234_567_890), "1,234.56");
        assert_eq!(money(-10_000), "-0.01");
    }
}
