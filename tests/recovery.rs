//! A restart finishes jobs where they stopped: settled recipients keep their outcome and are
//! never sent again, the job's status and budget come back, and the ledger holds one charge
//! per message. (The SIGKILL crash test of the real binary is `tests/crash_recovery.rs`.)

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{contacts_csv, Gateway};
use reqwest::Method;
use serde_json::{json, Value};

fn job_body(n: usize) -> Value {
    let contacts: Vec<Value> = (0..n)
        .map(|i| json!({"contact_id": format!("c{i}")}))
        .collect();
    json!({
        "campaign_id": "restart",
        "channel": "sms",
        "purpose": "transactional",
        "template": {"body": "Your code is 1234"},
        "audience": {"contacts": contacts},
    })
}

fn with_snapshot_file(dir: &std::path::Path, n: usize) -> impl Fn(&mut herald::config::Config) {
    let path = dir.join("contacts.csv");
    std::fs::write(&path, contacts_csv(n)).unwrap();
    let path = path.display().to_string();
    move |c| {
        c.snapshot.load_path = Some(path.clone());
        // Slow enough to pause half-way.
        c.providers[0].rate_limit_parts_per_second = 400;
        c.providers[0].burst_parts = 20;
    }
}

#[tokio::test]
async fn a_paused_job_comes_back_paused_and_finishes_without_resending_anyone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let n = 600;
    let adjust = with_snapshot_file(dir.path(), n);

    let g = Gateway::start_at(&data, &adjust).await;
    let (status, job) = g.submit(&job_body(n)).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    g.wait_until(&id, Duration::from_secs(20), |j| {
        j["counts"]["sent"].as_u64().unwrap() >= 100
    })
    .await;
    let r = g
        .req(Method::POST, &format!("/v1/jobs/{id}/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    g.stop().await;

    // After the restart the job is still paused, with what it had sent.
    let g = Gateway::start_at(&data, &adjust).await;
    let before = g.job(&id).await;
    assert_eq!(before["status"], "paused", "{before:#}");
    let sent_before = before["counts"]["sent"].as_u64().unwrap();
    assert!(sent_before >= 100 && sent_before < n as u64, "{before:#}");
    let (ids, total) = g.ledger_charges(&id).await;
    assert_eq!(ids.len() as u64, sent_before);
    assert_eq!(total, before["counts"]["cost_micros"].as_i64().unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        g.job(&id).await["counts"]["sent"],
        sent_before,
        "a paused job sent"
    );

    // Resumed, it finishes, and nobody is charged (or sent) twice.
    let r = g
        .req(Method::POST, &format!("/v1/jobs/{id}/resume"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done = g
        .wait_status(&id, "completed", Duration::from_secs(30))
        .await;
    assert_eq!(done["counts"]["sent"], n as u64, "{done:#}");
    let (ids, total) = g.ledger_charges(&id).await;
    assert_eq!(ids.len(), n);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        n,
        "a message was charged twice"
    );
    assert_eq!(total, done["counts"]["cost_micros"].as_i64().unwrap());
    let recipients = g.recipients(&id).await;
    assert!(recipients.iter().all(|r| r["outcome"] == "sent"));
    g.stop().await;

    // A finished job reads the same after another restart (it is restored in the
    // background: until then it answers 503, never 404).
    let g = Gateway::start_at(&data, &adjust).await;
    let again = loop {
        let r = g
            .req(Method::GET, &format!("/v1/jobs/{id}"))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => break r.json::<Value>().await.unwrap(),
            503 => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("a finished job answered {other} after a restart"),
        }
    };
    assert_eq!(again["status"], "completed");
    for field in [
        "audience",
        "accepted",
        "sent",
        "failed",
        "segments",
        "cost_micros",
        "delivered",
        "undelivered",
    ] {
        assert_eq!(again["counts"][field], done["counts"][field], "{field}");
    }
    assert_eq!(again["finished_at"], done["finished_at"]);
    g.stop().await;
}

#[tokio::test]
async fn a_job_stopped_mid_way_resumes_by_itself_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let n = 600;
    // The snapshot arrives over the API (not from a file in the config), so the restart
    // must bring it back from the data directory, patch included.
    let adjust = |c: &mut herald::config::Config| {
        c.providers[0].rate_limit_parts_per_second = 400;
        c.providers[0].burst_parts = 20;
    };

    let g = Gateway::start_at(&data, adjust).await;
    g.load_csv(&contacts_csv(n)).await;
    let r = g
        .req(Method::PATCH, "/v1/contacts")
        .header("content-type", "application/x-ndjson")
        .body("{\"contact_id\":\"c7\",\"deleted\":true}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, job) = g.submit(&job_body(n)).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    g.wait_until(&id, Duration::from_secs(20), |j| {
        j["counts"]["sent"].as_u64().unwrap() >= 50
    })
    .await;
    g.stop().await;

    let g = Gateway::start_at(&data, adjust).await;
    let done = g
        .wait_status(&id, "completed", Duration::from_secs(30))
        .await;
    assert_eq!(done["counts"]["sent"], n as u64 - 1, "{done:#}");
    assert_eq!(done["counts"]["rejected"]["unknown_contact"], 1, "{done:#}");
    let (ids, total) = g.ledger_charges(&id).await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), n - 1);
    assert_eq!(ids.len(), n - 1, "a message was charged twice");
    assert_eq!(total, done["counts"]["cost_micros"].as_i64().unwrap());
    g.stop().await;
}

/// A claim on an Idempotency-Key is durable before its job is; a process that stops in
/// between leaves a claim with no job behind it. The client's retry must get its job (under
/// the claimed id, so the key keeps naming one job), not a 404 for a job that never was.
#[tokio::test]
async fn a_retry_after_a_crash_between_the_key_claim_and_the_job_record_gets_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let n = 5;
    let adjust = with_snapshot_file(dir.path(), n);
    let body = serde_json::to_vec(&job_body(n)).unwrap();

    // A first start creates the data directory; then the claim the crashed request made.
    let g = Gateway::start_at(&data, &adjust).await;
    g.stop().await;
    let claimed = herald::domain::JobId::generate();
    {
        use herald::store::{EmbeddedStore, IdempotencyClaim, StateStore};
        use sha2::{Digest, Sha256};
        let db = redb::Database::create(data.join(herald::app::DATABASE_FILE)).unwrap();
        let store = EmbeddedStore::open(std::sync::Arc::new(db)).unwrap();
        let fingerprint: [u8; 32] = Sha256::digest(&body).into();
        let claim = store
            .claim_idempotency_key("crashed-1", fingerprint, &claimed)
            .await
            .unwrap();
        assert_eq!(claim, IdempotencyClaim::New);
    }

    let send = |g: &Gateway| {
        g.req(Method::POST, "/v1/jobs")
            .header("Idempotency-Key", "crashed-1")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    let g = Gateway::start_at(&data, &adjust).await;
    let first = send(&g).await.unwrap();
    assert_eq!(first.status(), 201);
    let job: Value = first.json().await.unwrap();
    assert_eq!(job["id"], claimed.as_str(), "the job takes the claimed id");
    let again = send(&g).await.unwrap();
    assert_eq!(again.status(), 200, "the key now names that job");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], job["id"]);
    let done = g.wait_completed(&job, Duration::from_secs(20)).await;
    assert_eq!(done["counts"]["sent"], n as u64, "{done:#}");
    let jobs = g.get_json("/v1/jobs").await;
    let listed = jobs["jobs"].as_array().map_or(0, Vec::len);
    assert_eq!(listed, 1, "one job for one key: {jobs:#}");
    g.stop().await;

    // And it is that job after another restart, once restored (a finished job is restored
    // in the background; until then the retry is asked to come back: 503).
    let g = Gateway::start_at(&data, &adjust).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        let r = send(&g).await.unwrap();
        if r.status() != 503 || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(after.status(), 200);
    let after: Value = after.json().await.unwrap();
    assert_eq!(after["id"], job["id"]);
    g.stop().await;
}
