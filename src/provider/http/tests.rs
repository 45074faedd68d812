//! The adapter against a tiny provider on 127.0.0.1:0: request shape, splitting and
//! concurrency, and the mapping of real HTTP answers (including timeouts and refused
//! connections) to outcomes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::{HttpProvider, HttpSettings};
use crate::clock::SystemClock;
use crate::domain::{Address, Channel, JobId, MessageId};
use crate::provider::{OutboundMessage, Provider, SendOutcome};

/// What the test provider answers, given the request's headers and JSON body.
type Answer = dyn Fn(&HeaderMap, &Value) -> Response + Send + Sync;

/// Every request the test provider saw, and the peak of concurrent requests.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(HeaderMap, Value)>>,
    active: AtomicUsize,
    peak: AtomicUsize,
}

/// Serves `answer` on 127.0.0.1:0 after `delay`; returns the URL and the record.
async fn provider_at(delay: Duration, answer: Arc<Answer>) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let rec = seen.clone();
    let handler = move |headers: HeaderMap, body: Bytes| {
        let (rec, answer) = (rec.clone(), answer.clone());
        async move {
            let now = rec.active.fetch_add(1, Ordering::SeqCst) + 1;
            rec.peak.fetch_max(now, Ordering::SeqCst);
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let out = answer(&headers, &v);
            rec.requests.lock().push((headers, v));
            rec.active.fetch_sub(1, Ordering::SeqCst);
            out
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
    (format!("http://{addr}/v1/messages"), seen)
}

fn settings(url: &str, batch_size: usize) -> HttpSettings {
    HttpSettings {
        name: "http-test".into(),
        url: reqwest::Url::parse(url).expect("url"),
        auth: Some((
            reqwest::header::HeaderName::from_static("authorization"),
            reqwest::header::HeaderValue::from_static("Bearer t0ken"),
        )),
        batch_size,
        max_in_flight: 4,
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
        sender_id: "HERALD".into(),
        ca_file: None,
    }
}

fn adapter(s: HttpSettings) -> HttpProvider {
    HttpProvider::new(s, Arc::new(SystemClock)).expect("client")
}

fn msgs(n: usize) -> Vec<OutboundMessage> {
    let job = JobId::generate();
    (0..n)
        .map(|i| OutboundMessage {
            id: MessageId::derive(&job, &format!("c{i}"), Channel::Sms),
            to: Address::Phone(8_613_123_079_000 + i as u64),
            channel: Channel::Sms,
            body: format!("hello {i}"),
            parts: 1,
            content: None,
        })
        .collect()
}

fn status(code: u16, body: &str) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, body.to_string()).into_response()
}

fn accepted_as(pmid: &str) -> SendOutcome {
    SendOutcome::Accepted {
        provider_message_id: pmid.into(),
    }
}

#[tokio::test]
async fn a_single_message_carries_its_id_as_idempotency_key_and_the_auth_header() {
    let (url, seen) = provider_at(
        Duration::ZERO,
        Arc::new(|_, _| status(200, r#"{"provider_message_id":"p-1","status":"accepted"}"#)),
    )
    .await;
    let m = msgs(1);
    let out = adapter(settings(&url, 1)).send_batch(&m).await;
    assert_eq!(out, vec![accepted_as("p-1")]);
    let reqs = seen.requests.lock();
    let (headers, body) = &reqs[0];
    let id = m[0].id.to_string();
    assert_eq!(headers["idempotency-key"], id.as_str());
    assert_eq!(headers["authorization"], "Bearer t0ken");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        body,
        &json!({"id": id, "to": "+8613123079000", "from": "HERALD", "channel": "sms",
                "body": "hello 0", "parts": 1})
    );
}

#[tokio::test]
async fn a_large_batch_is_split_into_requests_and_answered_in_order() {
    // Results come back in reverse order, matched by id.
    let (url, seen) = provider_at(
        Duration::ZERO,
        Arc::new(|_, body| {
            let mut results: Vec<Value> = body["messages"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|m| json!({"id": m["id"], "provider_message_id": format!("p-{}", m["id"].as_str().unwrap_or("?")), "status": "accepted"}))
                        .collect()
                })
                .unwrap_or_default();
            results.reverse();
            status(202, &json!({ "results": results }).to_string())
        }),
    )
    .await;
    let m = msgs(10);
    let out = adapter(settings(&url, 3)).send_batch(&m).await;
    let want: Vec<SendOutcome> = m
        .iter()
        .map(|m| accepted_as(&format!("p-{}", m.id)))
        .collect();
    assert_eq!(out, want);
    let reqs = seen.requests.lock();
    let mut sizes: Vec<usize> = reqs
        .iter()
        .map(|(h, b)| {
            assert!(
                h.get("idempotency-key").is_none(),
                "batches carry ids in the body"
            );
            b["messages"].as_array().map_or(0, Vec::len)
        })
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![1, 3, 3, 3]);
}

#[tokio::test]
async fn a_batch_can_partly_fail() {
    let (url, _) = provider_at(
        Duration::ZERO,
        Arc::new(|_, body| {
            let ids: Vec<&str> = body["messages"]
                .as_array()
                .map(|a| a.iter().filter_map(|m| m["id"].as_str()).collect())
                .unwrap_or_default();
            status(
                200,
                &json!({"results": [
                    {"id": ids[0], "provider_message_id": "ok-0", "status": "accepted"},
                    {"id": ids[1], "status": "rejected", "error_code": "invalid_destination", "retryable": false},
                    {"id": ids[2], "status": "rejected", "error_code": "carrier_busy", "retryable": true},
                ]})
                .to_string(),
            )
        }),
    )
    .await;
    let out = adapter(settings(&url, 100)).send_batch(&msgs(4)).await;
    assert_eq!(out[0], accepted_as("ok-0"));
    assert!(
        matches!(&out[1], SendOutcome::Permanent { error } if error.contains("invalid_destination"))
    );
    assert!(matches!(&out[2], SendOutcome::Transient { error } if error.contains("carrier_busy")));
    assert!(
        matches!(&out[3], SendOutcome::Transient { .. }),
        "no result: resend under the same id"
    );
}

#[tokio::test]
async fn throttling_honours_retry_after() {
    let (url, _) = provider_at(
        Duration::ZERO,
        Arc::new(|_, _| {
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "7")],
                "slow down",
            )
                .into_response()
        }),
    )
    .await;
    let out = adapter(settings(&url, 10)).send_batch(&msgs(3)).await;
    assert_eq!(
        out,
        vec![
            SendOutcome::Throttled {
                retry_after: Duration::from_secs(7)
            };
            3
        ]
    );
}

#[tokio::test]
async fn server_errors_are_transient_and_client_errors_permanent() {
    let (url500, _) = provider_at(Duration::ZERO, Arc::new(|_, _| status(500, "oops"))).await;
    let out = adapter(settings(&url500, 1)).send_batch(&msgs(2)).await;
    assert!(
        out.iter()
            .all(|o| matches!(o, SendOutcome::Unavailable { error } if error == "http 500")),
        "{out:?}"
    );
    let (url400, _) = provider_at(
        Duration::ZERO,
        Arc::new(|_, _| status(400, r#"{"error_code":"invalid_number"}"#)),
    )
    .await;
    let out = adapter(settings(&url400, 1)).send_batch(&msgs(1)).await;
    assert_eq!(
        out,
        vec![SendOutcome::Permanent {
            error: "http 400: invalid_number".into()
        }]
    );
}

#[tokio::test]
async fn a_slow_provider_times_out_as_transient() {
    let (url, _) = provider_at(Duration::from_secs(3), Arc::new(|_, _| status(200, ""))).await;
    let mut s = settings(&url, 5);
    s.request_timeout = Duration::from_millis(150);
    let started = std::time::Instant::now();
    let out = adapter(s).send_batch(&msgs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        out.iter()
            .all(|o| matches!(o, SendOutcome::Transient { error } if error == "timeout")),
        "{out:?}"
    );
}

#[tokio::test]
async fn an_empty_success_accepts_every_message_under_its_own_id() {
    let (url, _) = provider_at(Duration::ZERO, Arc::new(|_, _| status(202, ""))).await;
    let m = msgs(3);
    let out = adapter(settings(&url, 2)).send_batch(&m).await;
    let want: Vec<SendOutcome> = m.iter().map(|m| accepted_as(&m.id.to_string())).collect();
    assert_eq!(out, want);
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let out = adapter(settings(&format!("http://{addr}/v1/messages"), 1))
        .send_batch(&msgs(2))
        .await;
    assert!(
        out.iter().all(
            |o| matches!(o, SendOutcome::Unavailable { error } if error == "connection failed")
        ),
        "{out:?}"
    );
}

#[tokio::test]
async fn requests_in_flight_are_bounded_across_callers() {
    let (url, seen) =
        provider_at(Duration::from_millis(40), Arc::new(|_, _| status(200, ""))).await;
    let mut s = settings(&url, 1);
    s.max_in_flight = 3;
    let p = Arc::new(adapter(s));
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.send_batch(&msgs(6)).await })
        })
        .collect();
    for c in calls {
        let out = c.await.expect("join");
        assert!(out
            .iter()
            .all(|o| matches!(o, SendOutcome::Accepted { .. })));
    }
    assert_eq!(seen.requests.lock().len(), 18);
    let peak = seen.peak.load(Ordering::SeqCst);
    assert!((2..=3).contains(&peak), "peak {peak}");
}
