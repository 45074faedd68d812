//! The way back in a run's summary: receipts the mock sent and herald applied, delivered and
//! undelivered as herald counts them against what the mock decided, and clicks sent,
//! redirected and recorded. Adds a problem for every figure that does not add up.

use std::time::Duration;

use serde_json::{json, Value};

use crate::mock::stats::WayBackView;
use crate::report::{mark, thousands};

/// What the run saw of the way back once it stopped waiting.
pub struct WayBack {
    /// Everything was sent and applied before the wait ran out.
    pub complete: bool,
    /// How long the run waited after the job completed.
    pub waited: Duration,
    /// `GET /v1/jobs/{id}` and `GET /v1/jobs/{id}/report` at the end.
    pub job: Value,
    pub report: Value,
}

/// The figures, read once.
pub struct Figures {
    pub receipts_sent: u64,
    pub receipts_failed: u64,
    pub applied_at_answer: u64,
    pub duplicates_at_answer: u64,
    pub unknown_at_answer: u64,
    pub delivered: u64,
    pub undelivered: u64,
    pub expired: u64,
    pub planned_delivered: u64,
    pub planned_undelivered: u64,
    pub clicks_sent: u64,
    pub clicks_redirected: u64,
    pub clicks_recorded: u64,
    pub clicks_skipped: u64,
    pub receipts_per_second: f64,
    pub window_seconds: f64,
}

impl Figures {
    pub fn read(w: &WayBack, m: &WayBackView) -> Figures {
        let c = &w.job["counts"];
        let n = |k: &str| c[k].as_u64().unwrap_or(0);
        Figures {
            receipts_sent: m.sent,
            receipts_failed: m.failed,
            applied_at_answer: m.applied,
            duplicates_at_answer: m.duplicates,
            unknown_at_answer: m.unknown,
            delivered: n("delivered"),
            undelivered: n("undelivered"),
            expired: n("expired"),
            planned_delivered: m.planned_delivered,
            planned_undelivered: m.planned_undelivered,
            clicks_sent: m.clicks_sent,
            clicks_redirected: m.clicks_redirected,
            clicks_recorded: w.report["funnel"]["clicked"]["total"].as_u64().unwrap_or(0),
            clicks_skipped: m.clicks_skipped,
            receipts_per_second: m.sent as f64 / m.seconds.max(1e-9),
            window_seconds: m.seconds,
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "receipts_sent": self.receipts_sent,
            "receipts_failed": self.receipts_failed,
            "receipts_applied": self.delivered + self.undelivered + self.expired,
            "receipts_applied_at_answer": self.applied_at_answer,
            "receipts_unknown_at_answer": self.unknown_at_answer,
            "receipts_duplicates_at_answer": self.duplicates_at_answer,
            "delivered": self.delivered,
            "undelivered": self.undelivered,
            "mock_delivered": self.planned_delivered,
            "mock_undelivered": self.planned_undelivered,
            "clicks_sent": self.clicks_sent,
            "clicks_redirected": self.clicks_redirected,
            "clicks_recorded": self.clicks_recorded,
            "receipts_per_second": self.receipts_per_second.round(),
            "receipt_window_seconds": self.window_seconds,
        })
    }
}

/// Prints the section; pushes what does not add up to `problems`. `sent` is herald's.
pub fn print(w: &WayBack, m: &WayBackView, sent: u64, problems: &mut Vec<String>) {
    let f = Figures::read(w, m);
    let applied = f.delivered + f.undelivered + f.expired;
    println!();
    println!("the way back (mock → herald over loopback: signed receipt batches, clicks)");
    let sent_ok = f.receipts_sent == sent && f.receipts_failed == 0;
    println!(
        "  {:<36} {:>12}   {}",
        "receipts sent (one per message sent)",
        thousands(f.receipts_sent),
        if sent_ok {
            "= sent"
        } else {
            "!= sent MISMATCH"
        }
    );
    println!(
        "  {:<36} {:>12}   {}",
        "receipts applied (herald's counts)",
        thousands(applied),
        mark(applied == f.receipts_sent)
    );
    println!(
        "  {:<36} {:>12}   (parked until the send answer registered them)",
        "unknown when answered",
        thousands(f.unknown_at_answer)
    );
    if f.duplicates_at_answer > 0 || f.receipts_failed > 0 || m.retries > 0 {
        println!(
            "  duplicates when answered {}  failed {}  retried requests {}",
            thousands(f.duplicates_at_answer),
            thousands(f.receipts_failed),
            thousands(m.retries)
        );
    }
    let delivered_ok = f.delivered == f.planned_delivered;
    let undelivered_ok = f.undelivered == f.planned_undelivered && f.expired == 0;
    println!(
        "  {:<36} {:>12}   mock decided {} {}",
        "delivered (herald)",
        thousands(f.delivered),
        thousands(f.planned_delivered),
        mark(delivered_ok)
    );
    println!(
        "  {:<36} {:>12}   mock decided {} {}",
        "undelivered (herald)",
        thousands(f.undelivered),
        thousands(f.planned_undelivered),
        mark(undelivered_ok)
    );
    let clicks_ok = f.clicks_redirected == f.clicks_sent && f.clicks_recorded == f.clicks_sent;
    println!(
        "  {:<36} {:>12}   redirected (302) {}  recorded by herald {} {}",
        "clicks sent",
        thousands(f.clicks_sent),
        thousands(f.clicks_redirected),
        thousands(f.clicks_recorded),
        mark(clicks_ok)
    );
    if f.clicks_skipped > 0 {
        println!(
            "  ({} chosen clicks had no loopback tracked link in the body)",
            thousands(f.clicks_skipped)
        );
    }
    println!(
        "  receipts/s over the receipt window       {:>10}   ({:.2} s, {} requests; paced by sends and the delay, not a capacity figure)",
        thousands(f.receipts_per_second as u64),
        f.window_seconds,
        thousands(m.requests)
    );
    println!(
        "  waited {:.1} s after the job completed",
        w.waited.as_secs_f64()
    );
    if !w.complete {
        problems.push(format!(
            "receipts and clicks were not all applied within {:.0} s",
            w.waited.as_secs_f64()
        ));
    }
    if !sent_ok {
        problems.push(format!(
            "{} receipts sent ({} failed) for {sent} messages sent",
            f.receipts_sent, f.receipts_failed
        ));
    }
    if applied != f.receipts_sent {
        problems.push(format!(
            "herald applied {applied} receipts of {} sent",
            f.receipts_sent
        ));
    }
    if !delivered_ok || !undelivered_ok {
        problems.push(format!(
            "herald counts {} delivered / {} undelivered / {} expired, the mock decided {} / {}",
            f.delivered, f.undelivered, f.expired, f.planned_delivered, f.planned_undelivered
        ));
    }
    if !clicks_ok {
        problems.push(format!(
            "clicks: {} sent, {} redirected, {} recorded",
            f.clicks_sent, f.clicks_redirected, f.clicks_recorded
        ));
    }
}
