//! Redis goes away under a running job (killed, or stalled so that calls time out) and comes
//! back: dispatch pauses (no send without a
//! frequency-cap decision), `/readyz` turns unready, intake answers 503 with Retry-After, and
//! everything resumes by itself. Every recipient is sent exactly once and the caps still hold.
//!
//! The private Redis runs with an fsync'd append-only file, as a production Redis would: the
//! cap reservations and idempotency keys taken before the outage are there after it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use herald::config::StateBackend;
use herald_testkit::redis::{unique_prefix, RedisServer};
use herald_testkit::{contacts_csv, sms_job, Gateway};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Recipients of the long job: at `RATE` parts per second it takes about three seconds.
const RECIPIENTS: usize = 3_000;
const RATE: u32 = 1_000;

/// Polls `/readyz` until it answers `want`; answers the last body.
async fn wait_ready(g: &Gateway, want: StatusCode, timeout: Duration) -> Value {
    let started = Instant::now();
    loop {
        let r = g.http.get(g.url("/readyz")).send().await.expect("readyz");
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status == want {
            return body;
        }
        assert!(
            started.elapsed() < timeout,
            "/readyz never answered {want}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sent(job: &Value) -> u64 {
    job["counts"]["sent"].as_u64().expect("counts.sent")
}

/// How Redis goes away and comes back.
#[derive(Debug, Clone, Copy)]
enum Outage {
    /// The process is killed and started again on its port, from its append-only file.
    Killed,
    /// The process is stopped (SIGSTOP) and continued: calls get no answer and time out.
    Stalled,
}

impl Outage {
    fn begin(self, redis: &mut RedisServer) {
        match self {
            Outage::Killed => redis.kill(),
            Outage::Stalled => redis.pause(),
        }
    }

    fn end(self, redis: &mut RedisServer) {
        match self {
            Outage::Killed => redis.restart(),
            Outage::Stalled => redis.resume(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_pauses_while_redis_is_down_and_resumes_when_it_restarts() {
    outage(Outage::Killed, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_pauses_while_redis_does_not_answer_and_resumes_when_it_does() {
    outage(Outage::Stalled, false).await;
}

/// With work sharing the shard leases run out during the outage (1 s here): afterwards the
/// instance takes its shards again, writing first what it decided before, so nobody is sent
/// or charged twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_work_pauses_while_redis_is_down_and_resumes_when_it_restarts() {
    outage(Outage::Killed, true).await;
}

async fn outage(how: Outage, shared_work: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut redis = RedisServer::start(
        dir.path(),
        &["--appendonly", "yes", "--appendfsync", "always"],
    );
    let g = Gateway::start_with(|c| {
        c.state.backend = StateBackend::Redis;
        c.state.redis.url = redis.url();
        c.state.redis.key_prefix = unique_prefix();
        c.state.redis.timeout_ms = 500;
        c.policy.frequency_caps.truncate(1);
        c.policy.frequency_caps[0].max = 1;
        c.providers[0].rate_limit_parts_per_second = RATE;
        c.providers[0].burst_parts = 100;
        c.state.cluster.enabled = shared_work;
        c.state.cluster.lease_ttl_ms = 1_000;
        c.state.cluster.poll_ms = 100;
    })
    .await;
    // Ten more contacts than the long job names, for a job submitted as Redis goes away.
    g.load_csv(&contacts_csv(RECIPIENTS + 10)).await;
    wait_ready(&g, StatusCode::OK, Duration::from_secs(5)).await;

    let contacts: Vec<Value> = (0..RECIPIENTS)
        .map(|i| json!({ "contact_id": format!("c{i}") }))
        .collect();
    let r = g
        .req(Method::POST, "/v1/jobs")
        .header("Idempotency-Key", "outage-1")
        .json(&sms_job("outage", "Hi {{first_name}}", json!(contacts)))
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status(), 201);
    let job: Value = r.json().await.expect("json");
    let id = job["id"].as_str().expect("id").to_string();
    let before = g
        .wait_until(&id, Duration::from_secs(10), |j| sent(j) >= 500)
        .await;
    assert_eq!(before["status"], "running", "{before:#}");

    // Redis goes away mid-job. A job submitted at that moment may still be accepted (the
    // outage is not known yet) or refused; if accepted, it must not be lost.
    how.begin(&mut redis);
    let began = Instant::now();
    let racing: Vec<Value> = (RECIPIENTS..RECIPIENTS + 10)
        .map(|i| json!({ "contact_id": format!("c{i}") }))
        .collect();
    let (racing_status, racing_job) = g.submit(&sms_job("racing", "Hi", json!(racing))).await;
    assert!(
        racing_status == 201 || racing_status == 503,
        "{racing_status} {racing_job}"
    );
    let unready = wait_ready(&g, StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5)).await;
    let unready_after = began.elapsed();
    assert_eq!(unready["status"], "unready", "{unready}");
    assert!(
        unready["reasons"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("state_unavailable"))),
        "{unready}"
    );
    let health = g.http.get(g.url("/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200, "the process is alive");
    let metrics = g.http.get(g.url("/metrics")).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("text");
    assert!(metrics.contains("herald_state_backend_up 0"), "{metrics}");

    // Intake refuses, with a reason and a time to come back; with or without a key.
    for key in [None, Some("outage-2")] {
        let mut req = g.req(Method::POST, "/v1/jobs").json(&sms_job(
            "during",
            "Hi",
            json!([{"contact_id": "c0"}]),
        ));
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let r = req.send().await.expect("submit during the outage");
        assert_eq!(r.status(), 503, "key {key:?}");
        let retry_after: u64 = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("a numeric Retry-After");
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "state_unavailable", "{body}");
    }
    let r = g
        .req(Method::PUT, "/v1/suppressions")
        .body("{\"contact_id\":\"c1\"}\n")
        .send()
        .await
        .expect("suppressions");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));

    // Sends decided before the outage finish; after that nothing more goes out.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let paused = g.job(&id).await;
    assert_eq!(paused["status"], "running", "{paused:#}");
    assert_eq!(paused["blocked"], "state_unavailable", "{paused:#}");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let still = g.job(&id).await;
    assert_eq!(
        sent(&still),
        sent(&paused),
        "no send without a cap decision"
    );
    assert_eq!(still["blocked"], "state_unavailable", "{still:#}");
    let c = &still["counts"];
    assert_eq!(c["failed"], 0, "{c:#}");
    assert!(
        c["rejected"].as_object().is_none_or(|r| r.is_empty()),
        "nobody is rejected for an outage: {c:#}"
    );

    // Redis comes back (on the same port, with its data).
    let down_for = began.elapsed();
    how.end(&mut redis);
    let ended = Instant::now();
    wait_ready(&g, StatusCode::OK, Duration::from_secs(10)).await;
    let ready_after = ended.elapsed();
    let done = g.wait_completed(&job, Duration::from_secs(30)).await;
    let finished_after = ended.elapsed();
    assert!(done.get("blocked").is_none(), "{done:#}");
    let c = &done["counts"];
    assert_eq!(c["sent"], RECIPIENTS, "{c:#}");
    assert_eq!(c["failed"], 0, "{c:#}");
    assert_eq!(c["accepted"], RECIPIENTS, "{c:#}");
    assert!(
        c["rejected"].as_object().is_none_or(|r| r.is_empty()),
        "{c:#}"
    );

    // One charge per message id in the ledger: nobody was sent twice.
    let ledger = g
        .req(
            Method::GET,
            &format!("/v1/ledger?job_id={id}&format=ndjson"),
        )
        .send()
        .await
        .expect("ledger");
    assert_eq!(ledger.status(), 200);
    let text = ledger.text().await.expect("text");
    let ids: Vec<String> = text
        .lines()
        .map(|l| {
            let e: Value = serde_json::from_str(l).expect("ndjson line");
            e["message_id"].as_str().expect("message_id").to_string()
        })
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), RECIPIENTS, "one ledger entry per send");
    assert_eq!(unique.len(), RECIPIENTS, "no message id charged twice");

    if racing_status == 201 {
        let racing = g.wait_completed(&racing_job, Duration::from_secs(10)).await;
        assert_eq!(racing["counts"]["sent"], 10, "{racing:#}");
    }

    // The cap slots taken before and after the outage are all in Redis: a second campaign
    // to the same contacts is capped for every one of them.
    let again: Vec<Value> = (0..RECIPIENTS)
        .step_by(10)
        .map(|i| json!({ "contact_id": format!("c{i}") }))
        .collect();
    let n = again.len();
    let (s, second) = g.submit(&sms_job("after", "Hi", json!(again))).await;
    assert_eq!(s, 201, "intake is back: {second}");
    let second = g.wait_completed(&second, Duration::from_secs(10)).await;
    assert_eq!(
        second["counts"]["rejected"]["frequency_capped"], n,
        "{second:#}"
    );
    assert_eq!(second["counts"]["sent"], 0, "{second:#}");

    // The idempotency key taken before the outage is known after it.
    let r = g
        .req(Method::POST, "/v1/jobs")
        .header("Idempotency-Key", "outage-1")
        .json(&sms_job("outage", "Hi {{first_name}}", json!(contacts)))
        .send()
        .await
        .expect("resubmit");
    assert_eq!(r.status(), 200, "the same job, not a new one");

    eprintln!(
        "{how:?}: unready {unready_after:?} after the outage began; down {down_for:?}; \
         ready {ready_after:?} after it ended; job completed {finished_after:?} after it; \
         sent {} before the outage, {} during it; a job submitted as it began: {racing_status}",
        sent(&before),
        sent(&still)
    );
    g.stop().await;
}
