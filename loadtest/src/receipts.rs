//! `herald-loadtest receipts`: how many signed delivery receipts per second a gateway takes.
//!
//! Starts a gateway in-process on loopback (sandbox provider with callbacks on, its own
//! simulated receipts pushed out of the run), sends one job of N recipients, reads the
//! message ids back from the per-recipient report, then POSTs signed receipt batches (JSON
//! arrays of `--batch` receipts) over HTTP with `--connections` concurrent connections and
//! prints receipts per second, batch latency percentiles, and a check that every receipt was
//! applied exactly once. Bodies are signed before the clock starts, so the figure is the
//! gateway's (verify, parse, match, apply), not the client's signing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use bytes::Bytes;
use herald::callbacks::signature::sign;
use herald::config::Secret;
use serde_json::{json, Value};

use super::{bench_config, synth, KEY};

const SECRET: &str = "loadtest-callback-secret";

/// Settings of one run.
pub struct Settings {
    pub recipients: usize,
    pub batch: usize,
    pub connections: usize,
    pub workers: usize,
}

struct Signed {
    timestamp: String,
    signature: String,
    body: Bytes,
}

/// Runs the benchmark.
pub async fn run(s: Settings) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("herald-loadtest-rcpt-{}", std::process::id()));
    let mut config = bench_config(s.workers, 0, true, &dir.display().to_string())?;
    let p = &mut config.providers[0];
    p.callback_secrets = vec![Secret::new(SECRET)];
    // The sandbox's own simulated receipts would race ours: push them out of the run.
    p.receipt_delay_ms = 86_400_000;
    p.transient_failure_rate = 0.0;
    p.permanent_failure_rate = 0.0;
    let running = crate::start_gateway(config).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let n = s.recipients;
    println!(
        "herald receipts benchmark: {n} messages, batches of {}, {} connections",
        s.batch, s.connections
    );

    http.put(format!("{base}/v1/snapshot"))
        .bearer_auth(KEY)
        .header("content-type", "text/csv")
        .body(synth::snapshot_csv(n))
        .send()
        .await?
        .error_for_status()?;
    let head = json!({"campaign_id": "receipts", "channel": "sms", "purpose": "marketing",
        "template": {"body": "Hi {{first_name}}, 20% off in {{city}} tonight only"}});
    let body = reqwest::Body::wrap_stream(synth::ndjson_job(&head, n));
    let id = crate::submit_ndjson(&http, &base, body).await?;
    let t = Instant::now();
    let j = crate::wait_completed(&http, &base, &id).await?;
    println!(
        "sent {} messages in {:.2}s",
        j["counts"]["sent"],
        t.elapsed().as_secs_f64()
    );

    let lines = http
        .get(format!("{base}/v1/jobs/{id}/recipients"))
        .bearer_auth(KEY)
        .send()
        .await?
        .text()
        .await?;
    let ids: Vec<String> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["message_id"].as_str().map(str::to_string))
        .map(|m| format!("sbx-{}", m.trim_start_matches("msg_")))
        .collect();
    if ids.len() != n {
        bail!("expected {n} sent messages, found {}", ids.len());
    }

    // Sign every batch up front (timestamps stay well inside the five-minute window).
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        .to_string();
    let batches: Vec<Signed> = ids
        .chunks(s.batch.max(1))
        .enumerate()
        .map(|(b, chunk)| {
            let receipts: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(k, id)| {
                    let status = match (b * s.batch + k) % 100 {
                        0..=3 => "undelivered",
                        4 => "expired",
                        _ => "delivered",
                    };
                    json!({"message_id": id, "status": status, "error_code": "000"})
                })
                .collect();
            let body = Value::Array(receipts).to_string();
            Signed {
                signature: sign(SECRET.as_bytes(), &ts, body.as_bytes()),
                timestamp: ts.clone(),
                body: Bytes::from(body),
            }
        })
        .collect();
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{base}/v1/callbacks/sandbox/receipts");
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..s.connections.max(1) {
        let (batches, next, http, url) = (batches.clone(), next.clone(), http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut totals = [0u64; 3];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(b) = batches.get(i) else { break };
                let started = Instant::now();
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-herald-timestamp", &b.timestamp)
                    .header("x-herald-signature", &b.signature)
                    .body(b.body.clone())
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("batch {i}: {} {}", r.status(), r.text().await?);
                }
                let tally: Value = r.json().await?;
                latencies.push(started.elapsed());
                for (slot, key) in totals.iter_mut().zip(["applied", "duplicates", "unknown"]) {
                    *slot += tally[key].as_u64().unwrap_or(0);
                }
            }
            Ok::<_, anyhow::Error>((latencies, totals))
        }));
    }
    let mut latencies = Vec::new();
    let mut totals = [0u64; 3];
    for task in tasks {
        let (l, t) = task.await??;
        latencies.extend(l);
        for (a, b) in totals.iter_mut().zip(t) {
            *a += b;
        }
    }
    let elapsed = t.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "receipts: {n} in {elapsed:.2}s = {:.0} receipts/s ({:.0} requests/s)",
        n as f64 / elapsed,
        latencies.len() as f64 / elapsed
    );
    println!(
        "  batch latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "  applied {}  duplicates {}  unknown {}",
        totals[0], totals[1], totals[2]
    );
    let j: Value = http
        .get(format!("{base}/v1/jobs/{id}"))
        .bearer_auth(KEY)
        .send()
        .await?
        .json()
        .await?;
    let c = &j["counts"];
    let settled: u64 = ["delivered", "undelivered", "expired"]
        .iter()
        .filter_map(|k| c[k].as_u64())
        .sum();
    println!(
        "  job counts: delivered {} undelivered {} expired {}",
        c["delivered"], c["undelivered"], c["expired"]
    );
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    if totals[0] != n as u64 || settled != n as u64 {
        bail!(
            "lost or double-counted receipts: applied {}, settled {settled}, expected {n}",
            totals[0]
        );
    }
    println!("  check: every receipt applied exactly once");
    Ok(())
}
