//! The mock provider: a separate process that speaks the generic HTTP provider protocol
//! (docs/api.md) on 127.0.0.1 only, with a configurable latency distribution, 429 throttling
//! with `Retry-After`, transient 5xx, timeouts (held past the client's timeout) and
//! per-message rejections. It records every accepted message id, so a run can prove that
//! nothing was delivered twice and nothing was lost.
//!
//! Semantics, per request (one roll): throttled, failed and timed-out requests are not
//! committed; their messages are accepted only when they come again. An accepted request
//! commits each message unless it is rejected: for good (chosen by a hash of the id, so a
//! resend meets the same fate) or retryably (chosen per attempt). A message accepted twice
//! under the same id is a duplicate. `GET /stats` reports the counts.
//!
//! With a callback secret set ([`callbacks::SECRET_ENV`]), the mock also sends each first
//! acceptance's delivery receipt back to herald, and clicks some tracked links (see
//! [`callbacks`]), once the run has told it where herald is: `PUT /control/herald` with the
//! base URL as the body (loopback only, authorised like a send).

pub mod callbacks;
pub mod latency;
pub mod stats;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use latency::{Latency, Shape};
use stats::Stats;

/// Largest request body read.
const MAX_BODY: usize = 64 << 20;

/// The mock's behaviour.
#[derive(Debug, Clone, clap::Args)]
pub struct MockSettings {
    /// Port on 127.0.0.1 (0 picks a free one). The bound address is the first stdout line.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Latency shape.
    #[arg(long, value_enum, default_value_t = Shape::Lognormal)]
    pub latency: Shape,
    /// Median service time, milliseconds.
    #[arg(long, default_value_t = 5.0)]
    pub latency_p50_ms: f64,
    /// 99th-percentile service time, milliseconds.
    #[arg(long, default_value_t = 40.0)]
    pub latency_p99_ms: f64,
    /// Share of requests answered 429 with `Retry-After`.
    #[arg(long, default_value_t = 0.0)]
    pub throttle_rate: f64,
    /// The `Retry-After` of a 429, seconds.
    #[arg(long, default_value_t = 1)]
    pub retry_after_s: u64,
    /// Share of requests answered 503.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of requests held for `timeout_ms` (past the client's timeout), then dropped.
    #[arg(long, default_value_t = 0.0)]
    pub timeout_rate: f64,
    /// How long a timed-out request is held, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Share of messages rejected for good (by a hash of the id: a resend is rejected too).
    #[arg(long, default_value_t = 0.0)]
    pub reject_rate: f64,
    /// Share of message attempts rejected with `retryable: true`.
    #[arg(long, default_value_t = 0.0)]
    pub retryable_reject_rate: f64,
    /// Seed of the outcome and latency draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Runtime threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Exit when standard input closes (the parent that started us has gone).
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
    /// Also serve the same routes over HTTPS (HTTP/2 or HTTP/1.1 by ALPN) on another port,
    /// with a certificate from a CA made at start-up; the first line printed is then
    /// `<address> https://<address> <CA file>`.
    #[arg(long)]
    pub tls: bool,
    #[command(flatten)]
    pub callbacks: callbacks::CallbackSettings,
}

/// The credential requests must carry, if any (from `MOCK_PROVIDER_TOKEN`, not the command
/// line, so it does not show in process lists).
pub const TOKEN_ENV: &str = "MOCK_PROVIDER_TOKEN";

struct Mock {
    settings: MockSettings,
    latency: Latency,
    token: Option<String>,
    rng: Mutex<SmallRng>,
    stats: Stats,
    emitter: Option<callbacks::Emitter>,
}

/// Runs the mock until killed (or until stdin closes, if asked).
pub fn run(settings: MockSettings) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], settings.port)))
                .await?;
        let addr = listener.local_addr()?;
        let app = router(settings.clone());
        // Kept for as long as the mock runs: the CA's file and the HTTPS server.
        let mut _tls = None;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if settings.tls {
                let ca = herald_testkit::https::TestCa::new();
                let server = ca.serve(app.clone()).await;
                writeln!(out, "{addr} {} {}", server.url(""), ca.ca_file())?;
                _tls = Some((ca, server));
            } else {
                writeln!(out, "{addr}")?;
            }
            out.flush()?;
        }
        if settings.exit_on_stdin_eof {
            std::thread::spawn(|| {
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
                std::process::exit(0);
            });
        }
        axum::serve(listener, app).await?;
        Ok(())
    })
}

fn router(settings: MockSettings) -> Router {
    let secret = std::env::var(callbacks::SECRET_ENV)
        .ok()
        .filter(|s| !s.is_empty());
    router_with(settings, secret)
}

/// The mock's routes; receipts go back only with a callback `secret`.
fn router_with(settings: MockSettings, secret: Option<String>) -> Router {
    let stats = Stats::new();
    let emitter = secret.map(|s| {
        callbacks::Emitter::start(
            settings.callbacks.clone(),
            s.into_bytes(),
            settings.seed,
            stats.way_back.clone(),
        )
    });
    let mock = Arc::new(Mock {
        latency: Latency::new(
            settings.latency,
            settings.latency_p50_ms,
            settings.latency_p99_ms,
        ),
        token: std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
        rng: Mutex::new(SmallRng::seed_from_u64(settings.seed)),
        stats,
        emitter,
        settings,
    });
    Router::new()
        .route("/stats", get(stats_view))
        .route("/control/herald", axum::routing::put(set_herald))
        .fallback(post(send))
        .with_state(mock)
}

async fn stats_view(State(mock): State<Arc<Mock>>) -> Response {
    Json(mock.stats.view()).into_response()
}

/// `PUT /control/herald`: where receipts and clicks go (a loopback base URL).
async fn set_herald(State(mock): State<Arc<Mock>>, headers: HeaderMap, body: String) -> Response {
    if !authorised(&mock, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match &mock.emitter {
        None => (StatusCode::CONFLICT, "no callback secret set").into_response(),
        Some(e) if e.set_target(&body) => StatusCode::NO_CONTENT.into_response(),
        Some(_) => (StatusCode::BAD_REQUEST, "not a loopback http:// URL").into_response(),
    }
}

/// One message of a request; the mock reads its id, and its body for a tracked link.
#[derive(Deserialize)]
struct InMessage<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    body: Option<Cow<'a, str>>,
}

/// A single message or a batch.
#[derive(Deserialize)]
struct InBody<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    body: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    messages: Option<Vec<InMessage<'a>>>,
}

/// What one roll decided for a request.
enum Fate {
    Throttle,
    Fail,
    Hold,
    Serve(Duration),
}

/// `msg_<32 hex>` as its number; anything else hashed, so it is still counted.
fn id_key(id: &str) -> u128 {
    id.strip_prefix("msg_")
        .filter(|h| h.len() == 32)
        .and_then(|h| u128::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| {
            let h = xxhash_rust::xxh3::xxh3_128(id.as_bytes());
            h | 1 << 127
        })
}

/// A uniform number in [0, 1) from an id: its permanent fate.
fn id_roll(key: u128) -> f64 {
    let mixed = xxhash_rust::xxh3::xxh3_64(&key.to_le_bytes());
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

fn authorised(mock: &Mock, headers: &HeaderMap) -> bool {
    match &mock.token {
        None => true,
        Some(t) => headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == t),
    }
}

async fn send(State(mock): State<Arc<Mock>>, req: Request) -> Response {
    let started = Instant::now();
    let c = &mock.stats.counters;
    c.requests.fetch_add(1, Relaxed);
    let (parts, body) = req.into_parts();
    if !authorised(&mock, &parts.headers) {
        c.bad_requests.fetch_add(1, Relaxed);
        return (StatusCode::UNAUTHORIZED, r#"{"error_code":"unauthorised"}"#).into_response();
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        c.bad_requests.fetch_add(1, Relaxed);
        return (
            StatusCode::BAD_REQUEST,
            r#"{"error_code":"unreadable_body"}"#,
        )
            .into_response();
    };
    let Ok(parsed) = serde_json::from_slice::<InBody<'_>>(&bytes) else {
        c.bad_requests.fetch_add(1, Relaxed);
        return (
            StatusCode::BAD_REQUEST,
            r#"{"error_code":"malformed_json"}"#,
        )
            .into_response();
    };
    let (msgs, single): (Vec<InMessage<'_>>, bool) = match (parsed.messages, parsed.id) {
        (Some(list), _) => (list, false),
        (None, Some(id)) => (
            vec![InMessage {
                id,
                body: parsed.body,
            }],
            true,
        ),
        (None, None) => {
            c.bad_requests.fetch_add(1, Relaxed);
            return (StatusCode::BAD_REQUEST, r#"{"error_code":"no_messages"}"#).into_response();
        }
    };
    if single {
        let key = parts
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok());
        if key != Some(&*msgs[0].id) {
            c.key_mismatches.fetch_add(1, Relaxed);
        }
    }
    c.offered.fetch_add(msgs.len() as u64, Relaxed);

    let s = &mock.settings;
    let fate = {
        let mut rng = mock.rng.lock();
        let roll: f64 = rng.gen();
        if roll < s.throttle_rate {
            Fate::Throttle
        } else if roll < s.throttle_rate + s.error_rate {
            Fate::Fail
        } else if roll < s.throttle_rate + s.error_rate + s.timeout_rate {
            Fate::Hold
        } else {
            Fate::Serve(mock.latency.sample(&mut *rng))
        }
    };
    match fate {
        Fate::Throttle => {
            c.throttled.fetch_add(1, Relaxed);
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", s.retry_after_s.to_string())],
                r#"{"error_code":"throttled"}"#,
            )
                .into_response()
        }
        Fate::Fail => {
            c.errors.fetch_add(1, Relaxed);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error_code":"unavailable"}"#,
            )
                .into_response()
        }
        Fate::Hold => {
            c.timeouts.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(s.timeout_ms)).await;
            (StatusCode::GATEWAY_TIMEOUT, r#"{"error_code":"timeout"}"#).into_response()
        }
        Fate::Serve(delay) => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let out = accept(&mock, &msgs, single);
            mock.stats.latency.record(started.elapsed());
            out
        }
    }
}

/// Commits the messages of an accepted request and writes the answer.
fn accept(mock: &Mock, msgs: &[InMessage<'_>], single: bool) -> Response {
    let s = &mock.settings;
    let c = &mock.stats.counters;
    let retryable_rolls: Vec<bool> = if s.retryable_reject_rate > 0.0 {
        let mut rng = mock.rng.lock();
        msgs.iter()
            .map(|_| rng.gen::<f64>() < s.retryable_reject_rate)
            .collect()
    } else {
        vec![false; msgs.len()]
    };
    let mut out = String::with_capacity(32 + msgs.len() * 110);
    out.push_str(if single { "" } else { "{\"results\":[" });
    let mut single_status = StatusCode::OK;
    for (n, (m, retry_reject)) in msgs.iter().zip(retryable_rolls).enumerate() {
        let id = &m.id;
        if n > 0 {
            out.push(',');
        }
        let key = id_key(id);
        // Ids are `msg_` and hex digits; anything else is written escaped by serde.
        let id_json = serde_json::to_string(&**id).unwrap_or_else(|_| "\"?\"".into());
        if id_roll(key) < s.reject_rate {
            c.rejected.fetch_add(1, Relaxed);
            single_status = StatusCode::UNPROCESSABLE_ENTITY;
            out.push_str(&format!(
                r#"{{"id":{id_json},"status":"rejected","error_code":"invalid_destination","retryable":false}}"#
            ));
        } else if retry_reject {
            c.retryable_rejected.fetch_add(1, Relaxed);
            single_status = StatusCode::SERVICE_UNAVAILABLE;
            out.push_str(&format!(
                r#"{{"id":{id_json},"status":"rejected","error_code":"carrier_busy","retryable":true}}"#
            ));
        } else {
            c.received.fetch_add(1, Relaxed);
            if !mock.stats.deliveries.record(key) {
                c.duplicates.fetch_add(1, Relaxed);
            } else if let Some(e) = &mock.emitter {
                e.plan(key, m.body.as_deref());
            }
            out.push_str(&format!(
                r#"{{"id":{id_json},"provider_message_id":"mock-{:032x}","status":"accepted"}}"#,
                key
            ));
        }
    }
    if !single {
        out.push_str("]}");
        single_status = StatusCode::OK;
    }
    (single_status, [("content-type", "application/json")], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_our_shape_are_read_as_numbers() {
        assert_eq!(id_key("msg_000000000000000000000000000000ff"), 255);
        assert_ne!(id_key("other"), id_key("other2"));
        let r = id_roll(12345);
        assert!((0.0..1.0).contains(&r));
    }
}

#[cfg(test)]
mod server_tests {
    use super::*;
    use serde_json::json;

    fn quiet() -> MockSettings {
        MockSettings {
            port: 0,
            latency: Shape::Fixed,
            latency_p50_ms: 0.0,
            latency_p99_ms: 0.0,
            throttle_rate: 0.0,
            retry_after_s: 1,
            error_rate: 0.0,
            timeout_rate: 0.0,
            timeout_ms: 10,
            reject_rate: 0.0,
            retryable_reject_rate: 0.0,
            seed: 1,
            threads: 1,
            exit_on_stdin_eof: false,
            tls: false,
            callbacks: callbacks::CallbackSettings {
                delivered_rate: 0.97,
                receipt_delay: Shape::Fixed,
                receipt_delay_p50_ms: 0.0,
                receipt_delay_p99_ms: 0.0,
                receipt_batch: 100,
                receipt_connections: 1,
                click_rate: 0.0,
                callback_provider: "mock".into(),
            },
        }
    }

    async fn serve(settings: MockSettings) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router(settings)).await;
        });
        format!("http://{addr}")
    }

    async fn stats(http: &reqwest::Client, base: &str) -> stats::StatsView {
        http.get(format!("{base}/stats"))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("json")
    }

    #[tokio::test]
    async fn accepted_ids_are_counted_and_a_second_delivery_is_a_duplicate() {
        let base = serve(quiet()).await;
        let http = reqwest::Client::new();
        let a = "msg_0000000000000000000000000000000a";
        let b = "msg_0000000000000000000000000000000b";
        let batch = json!({"messages": [
            {"id": a, "to": "+8613123079000", "from": "X", "channel": "sms", "body": "hi", "parts": 1},
            {"id": b, "to": "+8613123079001", "from": "X", "channel": "sms", "body": "hi", "parts": 1},
        ]});
        let r: serde_json::Value = http
            .post(format!("{base}/v1/messages"))
            .json(&batch)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(r["results"][1]["id"], b);
        assert_eq!(r["results"][1]["status"], "accepted");
        let single = json!({"id": a, "to": "+8613123079000", "from": "X", "channel": "sms", "body": "hi", "parts": 1});
        let r = http
            .post(format!("{base}/v1/messages"))
            .header("idempotency-key", a)
            .json(&single)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        let s = stats(&http, &base).await;
        assert_eq!((s.received, s.distinct, s.duplicates), (3, 2, 1));
        assert_eq!((s.requests, s.key_mismatches, s.bad_requests), (2, 0, 0));
    }

    #[tokio::test]
    async fn throttled_and_failed_requests_commit_nothing() {
        let base = serve(MockSettings {
            throttle_rate: 1.0,
            retry_after_s: 3,
            ..quiet()
        })
        .await;
        let http = reqwest::Client::new();
        let single = json!({"id": "msg_0000000000000000000000000000000c", "to": "+1", "from": "X",
            "channel": "sms", "body": "hi", "parts": 1});
        let r = http
            .post(format!("{base}/v1/messages"))
            .json(&single)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "3");
        let s = stats(&http, &base).await;
        assert_eq!((s.throttled, s.received, s.distinct), (1, 0, 0));
        assert_eq!(s.key_mismatches, 1, "no idempotency key was sent");
    }
}
