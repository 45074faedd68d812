//! Pause, resume and cancel under a rate limit; frequency caps across concurrent jobs; a
//! streamed NDJSON audience; priority between jobs sharing a provider.

use std::time::{Duration, Instant};

use herald_testkit::{contacts_csv, sms_job, Gateway};
use reqwest::Method;
use serde_json::{json, Value};

/// `n` opted-in contacts with valid, distinct Chinese mobile numbers.
fn audience(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"contact_id": format!("c{i}")}))
            .collect(),
    )
}

async fn post(g: &Gateway, path: &str) -> Value {
    let r = g.req(Method::POST, path).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

fn sent(j: &Value) -> u64 {
    j["counts"]["sent"].as_u64().unwrap()
}

#[tokio::test]
async fn pause_holds_within_a_second_and_resume_sends_nobody_twice() {
    let g = Gateway::start_with(|c| {
        c.providers[0].rate_limit_parts_per_second = 100;
        c.providers[0].burst_parts = 5;
        c.policy.frequency_caps.clear();
    })
    .await;
    g.load_csv(&contacts_csv(150)).await;
    let (_, body) = g
        .submit(&sms_job("slow", "Hi {{first_name}}", audience(150)))
        .await;
    let id = body["id"].as_str().unwrap().to_string();
    g.wait_until(&id, Duration::from_secs(5), |j| sent(j) >= 20)
        .await;
    post(&g, &format!("/v1/jobs/{id}/pause")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = g.job(&id).await;
    assert_eq!(held["status"], "paused");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        sent(&g.job(&id).await),
        sent(&held),
        "nothing is sent while paused"
    );
    assert!(sent(&held) < 150);
    post(&g, &format!("/v1/jobs/{id}/resume")).await;
    let done = g
        .wait_status(&id, "completed", Duration::from_secs(10))
        .await;
    assert_eq!(sent(&done), 150);
    let lines = g.recipients(&id).await;
    assert_eq!(lines.iter().filter(|l| l["outcome"] == "sent").count(), 150);
    let ids: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|l| l["message_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 150, "one message id per recipient");
}

#[tokio::test]
async fn cancel_stops_sending_and_counts_the_rest_as_cancelled() {
    let g = Gateway::start_with(|c| {
        c.providers[0].rate_limit_parts_per_second = 50;
        c.providers[0].burst_parts = 5;
        c.policy.frequency_caps.clear();
    })
    .await;
    g.load_csv(&contacts_csv(200)).await;
    let (_, body) = g.submit(&sms_job("cancel", "Hi", audience(200))).await;
    let id = body["id"].as_str().unwrap().to_string();
    g.wait_until(&id, Duration::from_secs(5), |j| sent(j) >= 10)
        .await;
    post(&g, &format!("/v1/jobs/{id}/cancel")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let j = g.job(&id).await;
    assert_eq!(j["status"], "cancelled");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = g.job(&id).await;
    assert_eq!(sent(&later), sent(&j));
    assert_eq!(
        sent(&later) + later["counts"]["cancelled"].as_u64().unwrap(),
        200
    );
    let r = g
        .req(Method::POST, &format!("/v1/jobs/{id}/resume"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "a cancelled job cannot resume");
}

#[tokio::test]
async fn caps_hold_across_two_concurrent_jobs() {
    let g = Gateway::start_with(|c| {
        c.policy.frequency_caps.truncate(1);
        c.policy.frequency_caps[0].max = 1;
    })
    .await;
    g.load_csv(&contacts_csv(500)).await;
    let a = sms_job("race-a", "A", audience(500));
    let b = sms_job("race-b", "B", audience(500));
    let ((_, ja), (_, jb)) = tokio::join!(g.submit(&a), g.submit(&b));
    let ja = g.wait_completed(&ja, Duration::from_secs(10)).await;
    let jb = g.wait_completed(&jb, Duration::from_secs(10)).await;
    assert_eq!(
        sent(&ja) + sent(&jb),
        500,
        "each contact got exactly one message"
    );
    let capped = ja["counts"]["rejected"]["frequency_capped"]
        .as_u64()
        .unwrap_or(0)
        + jb["counts"]["rejected"]["frequency_capped"]
            .as_u64()
            .unwrap_or(0);
    assert_eq!(capped, 500);
}

#[tokio::test]
async fn a_streamed_ndjson_audience_is_sent_in_full() {
    let g = Gateway::start_with(|c| c.policy.frequency_caps.clear()).await;
    let n = 20_000;
    g.load_csv(&contacts_csv(n)).await;
    let head = json!({"campaign_id": "stream", "channel": "sms", "purpose": "marketing", "template": {"body": "Hi {{first_name}}"}});
    // Send the body in many small chunks, as a real upload arrives.
    let mut chunks: Vec<Result<String, std::io::Error>> = vec![Ok(format!("{head}\n"))];
    for block in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut s = String::new();
        for i in block {
            s.push_str(&format!("{{\"contact_id\":\"c{i}\"}}\n"));
        }
        chunks.push(Ok(s));
    }
    chunks.push(Ok("{\"contact_id\":\"c0\"}\n".into()));
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let r = g
        .req(Method::POST, "/v1/jobs")
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let job: Value = r.json().await.unwrap();
    let done = g.wait_completed(&job, Duration::from_secs(20)).await;
    assert_eq!(done["counts"]["audience"], n + 1);
    assert_eq!(sent(&done), n as u64);
    assert_eq!(done["counts"]["rejected"]["duplicate"], 1);
}

#[tokio::test]
async fn an_ndjson_line_error_names_the_line_and_field() {
    let g = Gateway::start().await;
    g.load_csv(&contacts_csv(3)).await;
    let head = json!({"campaign_id": "bad", "channel": "sms", "purpose": "marketing", "template": {"body": "Hi"}});
    let body = format!("{head}\n{{\"contact_id\":\"c0\"}}\n{{\"contact\":\"c1\"}}\n");
    let r = g
        .req(Method::POST, "/v1/jobs")
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]["field"].as_str().unwrap().starts_with("line 3"),
        "{e}"
    );
    let list = g.get_json("/v1/jobs").await;
    assert_eq!(
        list["jobs"].as_array().unwrap().len(),
        0,
        "a rejected submission creates no job"
    );
}

#[tokio::test]
async fn a_small_transactional_job_is_not_stuck_behind_a_big_marketing_job() {
    let g = Gateway::start_with(|c| {
        c.providers[0].rate_limit_parts_per_second = 200;
        c.providers[0].burst_parts = 10;
        c.policy.frequency_caps.clear();
    })
    .await;
    g.load_csv(&contacts_csv(3000)).await;
    let (_, big) = g.submit(&sms_job("blast", "Sale!", audience(3000))).await;
    let big_id = big["id"].as_str().unwrap().to_string();
    g.wait_until(&big_id, Duration::from_secs(5), |j| sent(j) >= 50)
        .await;
    let mut tx = sms_job("otp", "Code {{code}}", json!([{"contact_id": "c1"}]));
    tx["purpose"] = json!("transactional");
    tx["variables"] = json!({"code": "9921"});
    let submitted = Instant::now();
    let (_, small) = g.submit(&tx).await;
    g.wait_until(small["id"].as_str().unwrap(), Duration::from_secs(2), |j| {
        sent(j) == 1
    })
    .await;
    assert!(submitted.elapsed() < Duration::from_secs(2));
    post(&g, &format!("/v1/jobs/{big_id}/cancel")).await;
}

#[tokio::test]
async fn a_preview_predicts_the_finish_of_a_rate_limited_job_within_five_percent() {
    let g = Gateway::start_on_system_clock(|c| {
        c.policy.quiet_hours.enabled = false;
        c.providers[0].rate_limit_parts_per_second = 100;
        c.providers[0].burst_parts = 10;
        c.policy.frequency_caps.clear();
    })
    .await;
    g.load_csv(&contacts_csv(300)).await;
    // A 2-part message: 600 parts at 100 parts/s.
    let job = sms_job("eta", &"x".repeat(200), audience(300));
    let r = g
        .req(Method::POST, "/v1/jobs?dry_run=true")
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["eligible"], 300);
    assert_eq!(p["segments"], 600);
    assert_eq!(p["cost_micros"], 600 * 45_000);
    let predicted = chrono::DateTime::parse_from_rfc3339(p["predicted_finish"].as_str().unwrap())
        .unwrap()
        - chrono::DateTime::parse_from_rfc3339(p["predicted_start"].as_str().unwrap()).unwrap();
    let list = g.get_json("/v1/jobs").await;
    assert_eq!(
        list["jobs"].as_array().unwrap().len(),
        0,
        "a preview creates no job"
    );

    let (_, body) = g.submit(&job).await;
    let done = g.wait_completed(&body, Duration::from_secs(20)).await;
    let at = |k: &str| chrono::DateTime::parse_from_rfc3339(done[k].as_str().unwrap()).unwrap();
    let actual = (at("finished_at") - at("started_at")).num_milliseconds() as f64 / 1000.0;
    let predicted = predicted.num_milliseconds() as f64 / 1000.0;
    let error = (actual - predicted).abs() / actual;
    assert!(
        error < 0.05,
        "predicted {predicted:.2}s, actual {actual:.2}s ({:.1}% off)",
        error * 100.0
    );
}

/// At night a marketing preview still prices what will be sent: the deferred recipients go
/// when their window opens, so their parts and cost count, and sending is predicted to start
/// at 08:00 local time.
#[tokio::test]
async fn a_night_preview_prices_deferred_recipients_and_starts_when_the_window_opens() {
    let g = Gateway::start().await;
    g.load_csv(&contacts_csv(2)).await;
    // 23:00 in Shanghai.
    g.clock.set("2026-11-23T15:00:00Z".parse().unwrap());
    let job = sms_job("night", "Hi {{first_name}}, 20% off tonight", audience(2));
    let r = g
        .req(Method::POST, "/v1/jobs?dry_run=true")
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["eligible"], 2, "{p:#}");
    assert_eq!(p["deferred"], 2, "{p:#}");
    assert_eq!(p["segments"], 2, "{p:#}");
    assert_eq!(p["cost_micros"], 2 * 45_000, "{p:#}");
    assert_eq!(p["predicted_start"], "2026-11-24T00:00:00Z", "{p:#}");
    let finish = p["predicted_finish"].as_str().unwrap();
    assert!(finish >= "2026-11-24T00:00:00Z", "{p:#}");
}
