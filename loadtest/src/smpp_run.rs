//! `herald-loadtest run <smpp scenario>`: a promotion sent by herald over SMPP to the SMSC
//! sink, measured end to end on this machine.
//!
//! The sink runs as a child process (its CPU apart from herald's); herald runs in this
//! process with one SMPP provider bound to it. The run uploads a snapshot of synthetic
//! opted-in contacts with distinct numbers, streams a job to all of them, waits for it to
//! complete and for every receipt the sink sends back to be applied, then prints `submit_sm`
//! per second as the sink saw them, herald's sends per second, lost and duplicated messages
//! (both must be 0), the largest window the sink saw on a bind against the configured one,
//! receipts applied against those the sink sent, and CPU seconds of herald and the sink.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::report::{mark, thousands};
use crate::smpp_scenario::SmppScenario;
use crate::smsc::child::SinkProcess;
use crate::smsc::tally::TallyView;

const KEY: &str = "loadtest-key";

/// Removes the run's data directory however the run ends.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one run measured.
struct Measured {
    sink: TallyView,
    job: Value,
    dispatch: Duration,
    herald_cpu: f64,
    sink_cpu: f64,
    receipts_wait: Duration,
}

/// Where herald binds when the run does not start the sink itself: an SMSC in between (a
/// gateway under test) that forwards to a sink started by someone else, whose stats are read.
#[derive(Debug, Clone, Copy)]
pub struct Upstream {
    pub smsc: std::net::SocketAddr,
    pub sink_stats: std::net::SocketAddr,
}

/// Runs the SMPP scenario at `path`; `recipients` overrides its size; with `summary`, the
/// figures are also written there as JSON. With `upstream`, herald binds there instead of to a
/// sink of its own (the window and bind checks are then skipped: the sink sees the gateway's).
pub async fn run(
    path: &Path,
    recipients: Option<usize>,
    summary: Option<&Path>,
    upstream: Option<Upstream>,
) -> anyhow::Result<()> {
    let mut s = SmppScenario::load(path)?;
    if let Some(n) = recipients {
        s.recipients = n;
    }
    if !s.description.trim().is_empty() {
        println!("{}", s.description.trim());
    }
    println!(
        "scenario {}: {} recipients; herald SMPP provider: {} binds, window {}; sink latency {} ms, {} receipts",
        s.name,
        thousands(s.recipients as u64),
        s.provider.binds,
        s.provider.window,
        s.smsc.latency_ms,
        crate::smsc::value_name(&s.smsc.receipts),
    );
    let sink = match upstream {
        None => Sink::Own(SinkProcess::start(&s.smsc)?),
        Some(u) => Sink::Upstream(u),
    };
    let dir =
        TempDir(std::env::temp_dir().join(format!("herald-loadtest-smpp-{}", std::process::id())));
    let config = s.herald_config(sink.smpp(), &dir.0.display().to_string())?;
    let running = crate::start_gateway(config).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let result = drive(&s, &http, &base, &sink).await;
    running.stop().await;
    drop(sink);
    drop(dir);
    let m = result?;
    let problems = print(&s, &m, upstream.is_none());
    if let Some(path) = summary {
        let text = serde_json::to_string_pretty(&summary_json(&s, &m, &problems))?;
        std::fs::write(path, text)
            .with_context(|| format!("writing the summary to {}", path.display()))?;
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("the run failed its checks: {}", problems.join("; "))
    }
}

/// The sink herald's messages end at: started by the run, or by someone else upstream.
enum Sink {
    Own(SinkProcess),
    Upstream(Upstream),
}

impl Sink {
    fn smpp(&self) -> std::net::SocketAddr {
        match self {
            Sink::Own(p) => p.smpp,
            Sink::Upstream(u) => u.smsc,
        }
    }

    async fn stats(&self, http: &reqwest::Client) -> anyhow::Result<TallyView> {
        let addr = match self {
            Sink::Own(p) => p.stats,
            Sink::Upstream(u) => u.sink_stats,
        };
        SinkProcess::stats_at(http, addr).await
    }

    fn cpu_seconds(&self) -> f64 {
        match self {
            Sink::Own(p) => crate::cpu::seconds(Some(p.pid())).unwrap_or(0.0),
            Sink::Upstream(_) => 0.0,
        }
    }
}

async fn drive(
    s: &SmppScenario,
    http: &reqwest::Client,
    base: &str,
    sink: &Sink,
) -> anyhow::Result<Measured> {
    let n = s.recipients;
    let r = http
        .put(format!("{base}/v1/snapshot"))
        .bearer_auth(KEY)
        .header("content-type", "text/csv")
        .body(crate::synth::snapshot_csv(n))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("snapshot rejected: {}", r.text().await?);
    }
    let head = json!({"campaign_id": s.name, "channel": "sms", "purpose": "marketing",
        "template": {"body": "Hi {{first_name}}, 20% off in {{city}} tonight only"}});
    let cpu_before = crate::cpu::seconds(None).unwrap_or(0.0);
    let sink_cpu_before = sink.cpu_seconds();
    let t = Instant::now();
    let id = crate::submit_ndjson(
        http,
        base,
        reqwest::Body::wrap_stream(crate::synth::ndjson_job(&head, n)),
    )
    .await?;
    let limit = Duration::from_secs(s.herald.timeout_seconds);
    loop {
        let j = crate::get_job(http, base, &id).await?;
        if j["status"] == "completed" {
            break;
        }
        if matches!(
            j["status"].as_str(),
            Some("failed" | "cancelled" | "budget_exhausted")
        ) {
            bail!("job ended {}: {j}", j["status"]);
        }
        if t.elapsed() > limit {
            bail!("job did not complete within {} s: {j}", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dispatch = t.elapsed();
    let herald_cpu = crate::cpu::seconds(None).unwrap_or(0.0) - cpu_before;
    let sink_cpu = sink.cpu_seconds() - sink_cpu_before;
    // The way back: every receipt the sink planned acknowledged, and herald's counts caught up.
    let t = Instant::now();
    let wait = Duration::from_secs(s.herald.receipts_wait_seconds);
    let (sink_view, job) = loop {
        let v = sink.stats(http).await?;
        let j = crate::get_job(http, base, &id).await?;
        let planned = v.planned_delivered + v.planned_undelivered;
        let applied = applied(&j);
        if (v.receipts_acknowledged >= planned && applied >= planned) || t.elapsed() > wait {
            break (v, j);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Ok(Measured {
        sink: sink_view,
        job,
        dispatch,
        herald_cpu,
        sink_cpu,
        receipts_wait: t.elapsed(),
    })
}

fn count(job: &Value, k: &str) -> u64 {
    job["counts"][k].as_u64().unwrap_or(0)
}

/// Receipts herald applied: messages it counts delivered, undelivered or expired.
fn applied(job: &Value) -> u64 {
    count(job, "delivered") + count(job, "undelivered") + count(job, "expired")
}

/// Sent messages the sink never accepted (parts are one each here: the text is one part).
fn lost(m: &Measured) -> i64 {
    count(&m.job, "sent") as i64 - m.sink.distinct as i64
}

fn print(s: &SmppScenario, m: &Measured, own_sink: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let v = &m.sink;
    let (sent, failed) = (count(&m.job, "sent"), count(&m.job, "failed"));
    let n = s.recipients as u64;
    println!();
    println!("== {}: results ==", s.name);
    println!(
        "submit_sm/s at the sink (first to last)   {:>10}   ({} submit_sm in {:.2} s)",
        thousands(v.submits_per_second() as u64),
        thousands(v.submits),
        v.submit_seconds
    );
    println!(
        "herald sends/s (job submitted → completed) {:>10}   ({} sent in {:.2} s, failed {})",
        thousands((sent as f64 / m.dispatch.as_secs_f64().max(1e-9)) as u64),
        thousands(sent),
        m.dispatch.as_secs_f64(),
        thousands(failed)
    );
    println!(
        "CPU seconds during the job: herald {:.2} ({} messages per CPU-second), sink {:.2}",
        m.herald_cpu,
        thousands((sent as f64 / m.herald_cpu.max(1e-9)) as u64),
        m.sink_cpu
    );
    println!(
        "sink answered: throttled {}  queue full {}  (herald sent those again)",
        thousands(v.throttled),
        thousands(v.queue_full)
    );
    let all_ok = sent + failed == n && failed == 0;
    println!(
        "  {:<40} {:>12}   expected {} {}",
        "sent (herald)",
        thousands(sent),
        thousands(n),
        mark(all_ok)
    );
    if !all_ok {
        problems.push(format!("{sent} sent and {failed} failed of {n}"));
    }
    let lost = lost(m);
    println!(
        "  {:<40} {:>12}   {}",
        "lost (sent, never accepted by the sink)",
        lost,
        mark(lost == 0)
    );
    if lost != 0 {
        problems.push(format!("{lost} lost"));
    }
    println!(
        "  {:<40} {:>12}   {}",
        "duplicates (accepted twice)",
        thousands(v.duplicates),
        mark(v.duplicates == 0)
    );
    if v.duplicates != 0 {
        problems.push(format!("{} duplicates", v.duplicates));
    }
    let window_ok = !own_sink || v.max_outstanding() <= s.provider.window;
    println!(
        "  {:<40} {:>12}   configured {} {}",
        "largest window seen on a bind",
        v.max_outstanding(),
        s.provider.window,
        mark(window_ok)
    );
    if !window_ok {
        problems.push(format!(
            "window {} above {}",
            v.max_outstanding(),
            s.provider.window
        ));
    }
    let binds_ok = !own_sink || v.binds.len() <= s.provider.binds;
    println!(
        "  {:<40} {:>12}   configured {} {}",
        "binds made",
        v.binds.len(),
        s.provider.binds,
        mark(binds_ok)
    );
    if !binds_ok {
        problems.push(format!(
            "{} binds made for {}",
            v.binds.len(),
            s.provider.binds
        ));
    }
    if s.smsc.receipts != crate::smsc::deliver::ReceiptForm::None {
        let planned = v.planned_delivered + v.planned_undelivered;
        let (delivered, undelivered) = (count(&m.job, "delivered"), count(&m.job, "undelivered"));
        let ok = delivered == v.planned_delivered && undelivered == v.planned_undelivered;
        println!(
            "  {:<40} {:>12}   sink sent {} ({} refused and sent again), {:.1} s after completion {}",
            "receipts applied by herald",
            thousands(applied(&m.job)),
            thousands(planned),
            thousands(v.deliveries_refused),
            m.receipts_wait.as_secs_f64(),
            mark(ok)
        );
        println!(
            "  {:<40} {:>12}   sink said {}",
            "  delivered",
            thousands(delivered),
            thousands(v.planned_delivered)
        );
        if !ok {
            problems.push(format!(
                "receipts: herald delivered {delivered} / undelivered {undelivered}, sink sent {} / {}",
                v.planned_delivered, v.planned_undelivered
            ));
        }
    }
    if !problems.is_empty() {
        println!("PROBLEMS: {}", problems.join("; "));
    }
    problems
}

fn summary_json(s: &SmppScenario, m: &Measured, problems: &[String]) -> Value {
    let v = &m.sink;
    let sent = count(&m.job, "sent");
    json!({
        "scenario": s.name,
        "recipients": s.recipients,
        "sent": sent,
        "failed": count(&m.job, "failed"),
        "submit_sm": v.submits,
        "submit_sm_per_second": v.submits_per_second().round(),
        "sends_per_second": (sent as f64 / m.dispatch.as_secs_f64().max(1e-9)).round(),
        "herald_cpu_seconds": m.herald_cpu,
        "sink_cpu_seconds": m.sink_cpu,
        "lost": lost(m),
        "duplicates": v.duplicates,
        "throttled": v.throttled + v.queue_full,
        "max_window_seen": v.max_outstanding(),
        "window": s.provider.window,
        "binds": v.binds.len(),
        "receipts_sent": v.planned_delivered + v.planned_undelivered,
        "receipts_applied": applied(&m.job),
        "delivered": count(&m.job, "delivered"),
        "sink_delivered": v.planned_delivered,
        "problems": problems,
    })
}
