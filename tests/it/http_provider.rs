//! A job through the generic HTTP provider against a recording provider on 127.0.0.1:0 that
//! throttles, fails transiently and rejects some messages retryably on first sight: every
//! eligible recipient must reach it exactly once by message id, and nobody else.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald::config::{ProviderKind, Secret};
use herald_testkit::{sms_job, Gateway};
use parking_lot::Mutex;
use serde_json::{json, Value};

/// What the recording provider saw.
#[derive(Default)]
struct Record {
    requests: AtomicU64,
    throttled: AtomicU64,
    failed: AtomicU64,
    /// Every id ever offered, accepted or not.
    offered: Mutex<HashSet<String>>,
    /// Accepted ids and how often each was accepted.
    accepted: Mutex<HashMap<String, u32>>,
    /// Every destination offered.
    to: Mutex<HashSet<String>>,
    /// Requests whose idempotency key did not match the single message in the body.
    bad_keys: AtomicU64,
    unauthorised: AtomicU64,
}

/// The messages of a single or batch body.
fn messages(body: &Value) -> Vec<Value> {
    match body.get("messages").and_then(Value::as_array) {
        Some(list) => list.clone(),
        None => vec![body.clone()],
    }
}

/// A request made only of ids seen before is a retry and always succeeds. A first attempt
/// is throttled (every 5th request), fails with 503 (every 5th + 1), or is accepted except
/// for ids ending in `0`, which are rejected as retryable.
fn answer(rec: &Record, headers: &HeaderMap, body: &Value, token: Option<&str>) -> Response {
    let k = rec.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(t) = token {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(t) {
            rec.unauthorised.fetch_add(1, Ordering::SeqCst);
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    let msgs = messages(body);
    let ids: Vec<String> = msgs
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_string())
        .collect();
    if body.get("messages").is_none() {
        let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
        if key != ids.first().map(String::as_str) {
            rec.bad_keys.fetch_add(1, Ordering::SeqCst);
        }
    }
    let first_try = {
        let mut offered = rec.offered.lock();
        let mut to = rec.to.lock();
        for m in &msgs {
            to.insert(m["to"].as_str().unwrap_or_default().to_string());
        }
        let mut fresh = false;
        for id in &ids {
            fresh |= offered.insert(id.clone());
        }
        fresh
    };
    if first_try && k % 5 == 1 {
        rec.throttled.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")]).into_response();
    }
    if first_try && k % 5 == 2 {
        rec.failed.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let mut results = Vec::new();
    let mut accepted = rec.accepted.lock();
    for id in &ids {
        if first_try && id.ends_with('0') {
            results.push(
                json!({"id": id, "status": "rejected", "error_code": "busy", "retryable": true}),
            );
        } else {
            *accepted.entry(id.clone()).or_default() += 1;
            results.push(
                json!({"id": id, "provider_message_id": format!("p-{id}"), "status": "accepted"}),
            );
        }
    }
    if body.get("messages").is_none() {
        let single = results.pop().unwrap_or(Value::Null);
        let code = if single["status"] == "accepted" {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return (code, single.to_string()).into_response();
    }
    (StatusCode::OK, json!({ "results": results }).to_string()).into_response()
}

/// Starts the recording provider; answers its URL and record.
async fn recording_provider(token: Option<&'static str>) -> (String, Arc<Record>) {
    let rec = Arc::new(Record::default());
    let r = rec.clone();
    let handler = move |headers: HeaderMap, body: Bytes| {
        let r = r.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            answer(&r, &headers, &v, token)
        }
    };
    let app = axum::Router::new().route("/v1/messages", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/v1/messages"), rec)
}

const LANDLINE: &str = "+861012520004";

/// `n` contacts: every 40th opted out, every 97th on a landline, the rest sendable.
fn contacts_csv(n: usize) -> (String, usize) {
    let mut s = String::from("contact_id,phone,timezone,sms_consent,first_name\n");
    let mut eligible = 0;
    for i in 0..n {
        let (phone, consent) = if i % 97 == 3 {
            (LANDLINE.to_string(), "opt_in")
        } else if i % 40 == 7 {
            (format!("+86131{:08}", 23_000_000 + i), "opt_out")
        } else {
            eligible += 1;
            (format!("+86131{:08}", 23_000_000 + i), "opt_in")
        };
        s.push_str(&format!("c{i},{phone},Asia/Shanghai,{consent},N{i}\n"));
    }
    (s, eligible)
}

fn audience(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"contact_id": format!("c{i}")}))
            .collect(),
    )
}

/// Runs `n` recipients through a gateway whose provider speaks HTTP to `url`; checks that
/// every eligible recipient reached the provider exactly once and nobody else did.
async fn run_job(
    n: usize,
    url: &str,
    rec: &Record,
    adjust: impl FnOnce(&mut herald::config::ProviderConfig),
) -> Value {
    let url = url.to_string();
    let g = Gateway::start_with(|c| {
        c.policy.frequency_caps.clear();
        let p = &mut c.providers[0];
        p.kind = ProviderKind::Http;
        p.url = Some(url);
        p.request_timeout_ms = 2_000;
        adjust(p);
    })
    .await;
    let (csv, eligible) = contacts_csv(n);
    g.load_csv(&csv).await;
    let (status, body) = g
        .submit(&sms_job("http", "Hi {{first_name}}", audience(n)))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("job id").to_string();
    let done = g
        .wait_status(&id, "completed", Duration::from_secs(60))
        .await;
    let counts = &done["counts"];

    let accepted = rec.accepted.lock().clone();
    assert_eq!(counts["sent"], eligible as u64, "{counts}");
    assert_eq!(counts["failed"], 0, "{counts}");
    assert_eq!(accepted.len(), eligible, "distinct ids at the provider");
    let twice: Vec<_> = accepted.iter().filter(|(_, &c)| c != 1).collect();
    assert!(twice.is_empty(), "accepted more than once: {twice:?}");
    assert!(!rec.to.lock().contains(LANDLINE), "a landline was offered");

    let sent_ids: HashSet<String> = g
        .recipients(&id)
        .await
        .iter()
        .filter(|l| l["outcome"] == "sent")
        .filter_map(|l| l["message_id"].as_str().map(str::to_string))
        .collect();
    let provider_ids: HashSet<String> = accepted.into_keys().collect();
    assert_eq!(
        sent_ids, provider_ids,
        "the provider got exactly the sent ids"
    );
    assert!(counts["retries"].as_u64().unwrap_or(0) > 0, "{counts}");
    done
}

#[tokio::test]
async fn every_eligible_recipient_reaches_the_provider_exactly_once_in_batches() {
    let (url, rec) = recording_provider(None).await;
    run_job(2_000, &url, &rec, |p| {
        p.batch_size = 50;
        p.max_in_flight = 4;
    })
    .await;
    assert!(rec.throttled.load(Ordering::SeqCst) > 0);
    assert!(rec.failed.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn single_message_requests_carry_the_key_and_the_credential() {
    let (url, rec) = recording_provider(Some("Bearer t0ken")).await;
    run_job(300, &url, &rec, |p| {
        p.batch_size = 1;
        p.max_in_flight = 8;
        p.auth_header = "Authorization".into();
        p.auth_header_env = Some("HERALD_TEST_PROVIDER_TOKEN".into());
        p.auth_value = Some(Secret::new("Bearer t0ken"));
    })
    .await;
    assert_eq!(rec.bad_keys.load(Ordering::SeqCst), 0);
    assert_eq!(rec.unauthorised.load(Ordering::SeqCst), 0);
    assert!(rec.throttled.load(Ordering::SeqCst) > 0);
}
