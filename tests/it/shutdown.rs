//! Graceful shutdown under load: intake stops, in-flight sends, retries and ledger writes
//! finish, and nothing that was sent is missing from the ledger or the counts.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use herald::domain::JobId;
use herald_testkit::{contacts_csv, sms_job, Gateway};
use serde_json::{json, Value};

#[tokio::test]
async fn graceful_shutdown_under_load_loses_nothing() {
    let mut g = Gateway::start_with(|c| {
        c.policy.frequency_caps.clear();
        let p = &mut c.providers[0];
        p.rate_limit_parts_per_second = 1_000;
        p.burst_parts = 20;
        p.latency_ms = 20;
        p.transient_failure_rate = 0.05;
    })
    .await;
    g.load_csv(&contacts_csv(3_000)).await;
    let audience: Vec<Value> = (0..3_000)
        .map(|i| json!({"contact_id": format!("c{i}")}))
        .collect();
    let (_, body) = g
        .submit(&sms_job("drain", "Hi {{first_name}}", json!(audience)))
        .await;
    let id = body["id"].as_str().unwrap().to_string();
    g.wait_until(&id, Duration::from_secs(10), |j| {
        j["counts"]["sent"].as_u64().unwrap_or(0) >= 300
    })
    .await;

    let running = g.running.take().unwrap();
    let state = running.state.clone();
    let addr = running.addr;
    let started = Instant::now();
    running.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "drained within the timeout"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "intake is closed"
    );

    let job = state.dispatcher.get(&JobId::parse(&id).unwrap()).unwrap();
    let c = &job.progress.counters;
    let (sent, failed) = (
        c.sent.load(Ordering::SeqCst),
        c.failed.load(Ordering::SeqCst),
    );
    assert!((300..3_000).contains(&sent), "stopped mid-job: {sent}");
    // Everything counted as sent is in the ledger, once, and nothing else is.
    let entries = state.ledger.entries().unwrap();
    let mine: Vec<_> = entries.iter().filter(|e| e.entry.job_id == id).collect();
    assert_eq!(mine.len() as u64, sent);
    let distinct: std::collections::HashSet<&str> =
        mine.iter().map(|e| e.entry.message_id.as_str()).collect();
    assert_eq!(distinct.len() as u64, sent);
    assert_eq!(
        mine.iter().map(|e| e.entry.cost_micros.0).sum::<i64>(),
        c.cost_micros.load(Ordering::SeqCst)
    );
    assert!(state.ledger.verify().is_ok());
    // Every recipient is accounted for: decided and finished, or still pending for a resume.
    assert_eq!(sent + failed + c.rejected_total() + job.remaining(), 3_000);
}
