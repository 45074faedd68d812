//! Event webhooks against a receiver on loopback: every sent and delivered message and the
//! job's end arrive, signed the Standard Webhooks way (checked here with an HMAC of our own),
//! in order per message, batched as asked, and a receiver that fails for a while loses
//! nothing. Bad registrations are refused naming the field.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use herald_testkit::{sms_job, Gateway};
use parking_lot::Mutex;
use serde_json::{json, Value};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// What the receiver got: every event in arrival order, and requests per size.
#[derive(Default)]
struct Received {
    events: Mutex<Vec<Value>>,
    requests: AtomicU32,
    bad_signatures: AtomicU32,
    largest_batch: AtomicU32,
    /// Requests to answer 500 before accepting.
    fail_first: AtomicU32,
}

async fn receiver() -> (String, Arc<Received>) {
    let rec = Arc::new(Received::default());
    let r = rec.clone();
    let handler = move |headers: HeaderMap, body: Bytes| {
        let r = r.clone();
        async move {
            r.requests.fetch_add(1, Ordering::SeqCst);
            if r.fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
            if !herald_testkit::webhook_signature::signed_right(SECRET, &headers, &body) {
                r.bad_signatures.fetch_add(1, Ordering::SeqCst);
                return StatusCode::UNAUTHORIZED;
            }
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let events = match v {
                Value::Array(list) => list,
                one => vec![one],
            };
            r.largest_batch
                .fetch_max(events.len() as u32, Ordering::SeqCst);
            r.events.lock().extend(events);
            StatusCode::NO_CONTENT
        }
    };
    let app = axum::Router::new().route("/hook", axum::routing::post(handler));
    let addr = herald_testkit::loopback::serve(app).await;
    (format!("http://{addr}/hook"), rec)
}

async fn register(g: &Gateway, body: Value) -> (u16, Value) {
    let r = g
        .req(reqwest::Method::POST, "/v1/webhooks")
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Runs a job of `n` contacts and waits until the receiver has `expected` events.
async fn job_and_events(g: &Gateway, rec: &Received, n: usize, expected: usize) -> String {
    let (csv, audience) = herald_testkit::loopback::numbered_contacts("h", 50_000_000, n);
    g.load_csv(&csv).await;
    let (status, body) = g.submit(&sms_job("hooks", "Hi", audience)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("job id").to_string();
    g.wait_status(&id, "completed", Duration::from_secs(30))
        .await;
    let started = std::time::Instant::now();
    while rec.events.lock().len() < expected {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} of {expected} events arrived",
            rec.events.lock().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_deliveries_and_the_jobs_end_arrive_signed_and_in_order() {
    let (url, rec) = receiver().await;
    let g = Gateway::start().await;
    let (status, hook) = register(
        &g,
        json!({"url": url, "secret": SECRET, "batch_size": 25,
               "event_types": ["message.sent", "message.delivered", "job.completed"]}),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    assert_eq!(hook["secret"], SECRET);
    let n = 60;
    let job = job_and_events(&g, &rec, n, 2 * n + 1).await;

    let events = rec.events.lock().clone();
    assert_eq!(rec.bad_signatures.load(Ordering::SeqCst), 0);
    assert!(
        rec.largest_batch.load(Ordering::SeqCst) > 1,
        "events are batched"
    );
    assert!(rec.largest_batch.load(Ordering::SeqCst) <= 25);
    let ids: HashSet<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), events.len(), "every event once, by id");
    let mut first_seen: HashMap<(String, String), usize> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        let kind = e["type"].as_str().expect("type").to_string();
        let message = e["data"]["message_id"].as_str().unwrap_or("").to_string();
        first_seen.entry((message, kind)).or_insert(i);
        assert!(e["timestamp"].is_string(), "{e}");
        assert!(
            !e.to_string().contains("+86131"),
            "no phone number in an event: {e}"
        );
    }
    let sent: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "message.sent")
        .collect();
    assert_eq!(sent.len(), n);
    for s in &sent {
        assert_eq!(s["data"]["job_id"], job.as_str());
        assert_eq!(s["data"]["campaign_id"], "hooks");
        assert!(s["data"]["cost_micros"].as_i64().is_some(), "{s}");
        let m = s["data"]["message_id"]
            .as_str()
            .expect("message id")
            .to_string();
        let at_sent = first_seen[&(m.clone(), "message.sent".to_string())];
        let at_delivered = first_seen
            .get(&(m, "message.delivered".to_string()))
            .expect("each sent message was delivered");
        assert!(at_sent < *at_delivered, "sent before delivered");
    }
    let end: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "job.completed")
        .collect();
    assert_eq!(end.len(), 1);
    assert_eq!(end[0]["data"]["counts"]["sent"], n as u64);

    let list = g.get_json("/v1/webhooks").await;
    assert_eq!(list["webhooks"][0]["status"], "active");
    assert!(
        list["webhooks"][0].get("secret").is_none(),
        "secrets are shown once"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_for_a_while_loses_nothing() {
    let (url, rec) = receiver().await;
    rec.fail_first.store(3, Ordering::SeqCst);
    let g = Gateway::start().await;
    let (status, hook) = register(
        &g,
        json!({"url": url, "secret": SECRET, "batch_size": 100, "event_types": ["message.sent"]}),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    job_and_events(&g, &rec, 40, 40).await;
    let events = rec.events.lock().clone();
    let distinct: HashSet<&str> = events
        .iter()
        .filter_map(|e| e["data"]["message_id"].as_str())
        .collect();
    assert_eq!(
        distinct.len(),
        40,
        "every message.sent arrived after the failures"
    );
    assert!(rec.requests.load(Ordering::SeqCst) >= 4);
    g.stop().await;
}

#[tokio::test]
async fn bad_registrations_name_the_field() {
    let g = Gateway::start().await;
    for (body, field) in [
        (json!({"url": "ftp://example.com/x"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "https://u:p@example.com/x"}), "url"),
        (
            json!({"url": "https://example.com/x", "event_types": ["message.sent", "nope"]}),
            "event_types[1]",
        ),
        (
            json!({"url": "https://example.com/x", "batch_size": 0}),
            "batch_size",
        ),
        (
            json!({"url": "https://example.com/x", "secret": "whsec_short"}),
            "secret",
        ),
    ] {
        let (status, answer) = register(&g, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_on_a_tracked_link_is_announced_with_its_url() {
    let (url, rec) = receiver().await;
    let g = Gateway::start().await;
    let (status, _) = register(
        &g,
        json!({"url": url, "secret": SECRET, "event_types": ["message.clicked"]}),
    )
    .await;
    assert_eq!(status, 201);
    g.load_csv("contact_id,phone,timezone,sms_consent\nk0,+8613150000000,Asia/Shanghai,opt_in\n")
        .await;
    let (s, body) = g
        .submit(&sms_job(
            "hooks",
            "Sale: https://shop.example/s",
            json!([{"contact_id": "k0"}]),
        ))
        .await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    g.wait_status(&id, "completed", Duration::from_secs(30))
        .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = http
        .get(g.url(&format!("/c/{}", g.token(&id, 0, 0))))
        .send()
        .await
        .expect("click");
    assert_eq!(r.status(), 302);
    let started = std::time::Instant::now();
    while rec.events.lock().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no click event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = rec.events.lock()[0].clone();
    assert_eq!(e["type"], "message.clicked", "{e}");
    assert_eq!(e["data"]["url"], "https://shop.example/s", "{e}");
    assert_eq!(e["data"]["contact_id"], "k0");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stopped_by_its_budget_is_announced() {
    let (url, rec) = receiver().await;
    let g = Gateway::start().await;
    let (status, _) = register(
        &g,
        json!({"url": url, "secret": SECRET, "event_types": ["job.budget_exhausted"]}),
    )
    .await;
    assert_eq!(status, 201);
    let (csv, audience) = herald_testkit::loopback::numbered_contacts("b", 60_000_000, 10);
    g.load_csv(&csv).await;
    let mut job = sms_job("hooks", "Hi", audience);
    // Two CN messages at 45,000 micros each fit; the third does not.
    job["budget"] = json!({"amount_micros": 100_000, "currency": "CNY"});
    let (s, body) = g.submit(&job).await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    g.wait_status(&id, "budget_exhausted", Duration::from_secs(30))
        .await;
    let started = std::time::Instant::now();
    while rec.events.lock().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no budget event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = rec.events.lock()[0].clone();
    assert_eq!(e["type"], "job.budget_exhausted", "{e}");
    assert_eq!(e["data"]["job_id"], id.as_str());
    assert_eq!(e["data"]["budget"]["amount_micros"], 100_000, "{e}");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_reply_is_announced_as_an_opt_out() {
    let (url, rec) = receiver().await;
    let g = Gateway::start_with(herald_testkit::signed::with_callbacks).await;
    let (status, _) = register(
        &g,
        json!({"url": url, "secret": SECRET, "event_types": ["contact.opted_out", "contact.opted_in"]}),
    )
    .await;
    assert_eq!(status, 201);
    g.load_csv("contact_id,phone,timezone,sms_consent\ns0,+8613170000000,Asia/Shanghai,opt_in\n")
        .await;
    for text in ["退订", "START"] {
        let (s, t) = g
            .post_signed(
                "/v1/callbacks/sandbox/inbound",
                &json!({"from": "+8613170000000", "text": text}).to_string(),
            )
            .await;
        assert_eq!(s, 200, "{t}");
    }
    let started = std::time::Instant::now();
    while rec.events.lock().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no consent events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = rec.events.lock().clone();
    assert_eq!(events[0]["type"], "contact.opted_out", "{events:?}");
    assert_eq!(events[0]["data"]["contact_id"], "s0");
    assert_eq!(events[0]["data"]["channel"], "sms");
    assert_eq!(events[0]["data"]["source"], "inbound:sandbox");
    assert_eq!(events[1]["type"], "contact.opted_in");
    assert!(
        !events[0].to_string().contains("13170000000"),
        "no phone number"
    );
    g.stop().await;
}
