//! A restart finishes jobs where they stopped: settled recipients keep their outcome and are
//! never sent again, the job's status and budget come back, and the ledger holds one charge
//! per message. (The SIGKILL crash test of the real binary is `tests/crash_recovery.rs`.)

use std::collections::HashSet;
use std::time::Duration;

use herald_testkit::{contacts_csv, Gateway};
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

/// Polls a finished job's three read-outs until it is restored (503 until then) and answers
/// them as text: status, recipients and report.
async fn finished_readouts(g: &Gateway, id: &str) -> [String; 3] {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    for path in [
        format!("/v1/jobs/{id}"),
        format!("/v1/jobs/{id}/recipients"),
        format!("/v1/jobs/{id}/report"),
    ] {
        loop {
            let r = g.req(Method::GET, &path).send().await.unwrap();
            match r.status().as_u16() {
                200 => {
                    out.push(r.text().await.unwrap());
                    break;
                }
                503 if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                other => panic!("{path} answered {other}"),
            }
        }
    }
    [out.remove(0), out.remove(0), out.remove(0)]
}

/// A finished job reads byte for byte the same after a restart: its rejections (opted out,
/// landline, no phone, unknown contact), the deferral of a cancelled job, and the deliveries
/// of what was sent, in the status, the recipients and the report.
#[tokio::test]
async fn a_finished_jobs_rejections_deferrals_and_deliveries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let g = Gateway::start_at(&data, |_| {}).await;
    g.load_csv(
        "contact_id,phone,timezone,sms_consent,first_name\n\
         out,+8613123067884,Asia/Shanghai,opt_out,A\n\
         land,010 1252 0004,Asia/Shanghai,opt_in,B\n\
         nophone,,Asia/Shanghai,opt_in,C\n\
         ok,+8613123079337,Asia/Shanghai,opt_in,D\n\
         night,+12125550123,America/New_York,opt_in,E\n",
    )
    .await;
    let contacts = json!([
        {"contact_id": "out"}, {"contact_id": "land"}, {"contact_id": "nophone"},
        {"contact_id": "unknown"}, {"contact_id": "ok"}
    ]);
    let (status, done_job) = g
        .submit(&herald_testkit::sms_job(
            "restart-same",
            "Hi {{first_name}}",
            contacts,
        ))
        .await;
    assert_eq!(status, 201, "{done_job}");
    let done_id = done_job["id"].as_str().unwrap().to_string();
    let done = g
        .wait_status(&done_id, "completed", Duration::from_secs(20))
        .await;
    assert_eq!(done["counts"]["sent"], 1, "{done:#}");
    g.wait_until(&done_id, Duration::from_secs(20), |j| {
        j["counts"]["delivered"] == 1
    })
    .await;

    // Noon in Shanghai is night in New York: that one waits for its window, then the job is
    // cancelled.
    let contacts = json!([{"contact_id": "night"}, {"contact_id": "out"}]);
    let (status, cancelled_job) = g
        .submit(&herald_testkit::sms_job(
            "restart-same",
            "Hi {{first_name}}",
            contacts,
        ))
        .await;
    assert_eq!(status, 201, "{cancelled_job}");
    let cancelled_id = cancelled_job["id"].as_str().unwrap().to_string();
    g.wait_until(&cancelled_id, Duration::from_secs(20), |j| {
        j["counts"]["deferred"] == 1
    })
    .await;
    let r = g
        .req(Method::POST, &format!("/v1/jobs/{cancelled_id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    g.wait_status(&cancelled_id, "cancelled", Duration::from_secs(20))
        .await;
    // Delivery states are journaled in the background (every 100 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before_done = finished_readouts(&g, &done_id).await;
    let before_cancelled = finished_readouts(&g, &cancelled_id).await;
    assert!(
        before_done[1].contains("\"reason\":\"opted_out\""),
        "{}",
        before_done[1]
    );
    g.stop().await;

    let g = Gateway::start_at(&data, |_| {}).await;
    let after_done = finished_readouts(&g, &done_id).await;
    let after_cancelled = finished_readouts(&g, &cancelled_id).await;
    for (name, before, after) in [
        ("status", &before_done[0], &after_done[0]),
        ("recipients", &before_done[1], &after_done[1]),
        ("report", &before_done[2], &after_done[2]),
        (
            "cancelled status",
            &before_cancelled[0],
            &after_cancelled[0],
        ),
        (
            "cancelled recipients",
            &before_cancelled[1],
            &after_cancelled[1],
        ),
        (
            "cancelled report",
            &before_cancelled[2],
            &after_cancelled[2],
        ),
    ] {
        assert_eq!(before, after, "{name} changed across a restart");
    }
    g.stop().await;
}
