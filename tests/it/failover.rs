//! Failover between two HTTP providers of one route: provider A answers 503 to everything
//! for a while in the middle of a job. Traffic must be on B within 2 s, back on A within 10 s
//! of its recovery, and every recipient accepted by exactly one provider, once, with the
//! ledger charging each provider its own price.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald::config::{PriceConfig, ProviderKind, RouteConfig, RouteStrategy};
use herald::domain::Channel;
use herald_testkit::{sms_job, Gateway};
use parking_lot::Mutex;
use serde_json::{json, Value};

/// One recording provider: accepted ids with the time each was accepted.
struct Mock {
    name: &'static str,
    down: AtomicBool,
    accepted: Mutex<HashMap<String, (u32, Instant)>>,
    refused: std::sync::atomic::AtomicU64,
}

impl Mock {
    fn answer(&self, body: &[u8]) -> Response {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let msgs = match v.get("messages").and_then(Value::as_array) {
            Some(list) => list.clone(),
            None => vec![v.clone()],
        };
        let now = Instant::now();
        let mut accepted = self.accepted.lock();
        let results: Vec<Value> = msgs
            .iter()
            .map(|m| {
                let id = m["id"].as_str().unwrap_or_default().to_string();
                accepted.entry(id.clone()).or_insert((0, now)).0 += 1;
                json!({"id": id, "provider_message_id": format!("{}-{id}", self.name), "status": "accepted"})
            })
            .collect();
        (StatusCode::OK, json!({ "results": results }).to_string()).into_response()
    }

    /// The first acceptance at or after `since`.
    fn first_accepted_after(&self, since: Instant) -> Option<Instant> {
        self.accepted
            .lock()
            .values()
            .map(|(_, at)| *at)
            .filter(|at| *at >= since)
            .min()
    }
}

async fn start_mock(name: &'static str) -> (String, Arc<Mock>) {
    let mock = Arc::new(Mock {
        name,
        down: AtomicBool::new(false),
        accepted: Mutex::new(HashMap::new()),
        refused: Default::default(),
    });
    let m = mock.clone();
    let handler = move |body: Bytes| {
        let m = m.clone();
        async move { m.answer(&body) }
    };
    let app = axum::Router::new().route("/v1/messages", axum::routing::post(handler));
    let addr = herald_testkit::loopback::serve(app).await;
    (format!("http://{addr}/v1/messages"), mock)
}

const PRICE_A: i64 = 40_000;
const PRICE_B: i64 = 55_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_loses_its_traffic_within_seconds_and_gets_it_back() {
    let (url_a, a) = start_mock("a").await;
    let (url_b, b) = start_mock("b").await;
    let g = Gateway::start_with(|c| {
        c.policy.frequency_caps.clear();
        let mut pa = c.providers[0].clone();
        pa.name = "carrier-a".into();
        pa.kind = ProviderKind::Http;
        pa.url = Some(url_a);
        pa.batch_size = 25;
        pa.max_in_flight = 4;
        pa.rate_limit_parts_per_second = 1_000;
        pa.burst_parts = 50;
        let mut pb = pa.clone();
        pb.name = "carrier-b".into();
        pb.url = Some(url_b);
        c.providers = vec![pa, pb];
        c.routes = vec![RouteConfig {
            channel: Channel::Sms,
            countries: vec!["*".into()],
            providers: vec!["carrier-a".into(), "carrier-b".into()],
            strategy: RouteStrategy::Priority,
            weights: Vec::new(),
        }];
        c.prices = vec![
            PriceConfig {
                provider: "carrier-a".into(),
                channel: Channel::Sms,
                country: "*".into(),
                unit_micros: PRICE_A,
            },
            PriceConfig {
                provider: "carrier-b".into(),
                channel: Channel::Sms,
                country: "*".into(),
                unit_micros: PRICE_B,
            },
        ];
    })
    .await;
    let n = 15_000;
    let (csv, audience) = herald_testkit::loopback::numbered_contacts("f", 30_000_000, n);
    g.load_csv(&csv).await;
    let (status, body) = g
        .submit(&sms_job("failover", "Sale tonight", audience))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("job id").to_string();

    // A takes the traffic while healthy.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(!a.accepted.lock().is_empty(), "A is first in the route");
    assert!(
        b.accepted.lock().is_empty(),
        "B gets nothing while A is healthy"
    );

    a.down.store(true, Ordering::SeqCst);
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let on_b = b.first_accepted_after(down_at).expect("traffic moved to B");
    assert!(
        on_b - down_at <= Duration::from_secs(2),
        "B took over after {:?}",
        on_b - down_at
    );

    a.down.store(false, Ordering::SeqCst);
    let up_at = Instant::now();
    let back = loop {
        if let Some(at) = a.first_accepted_after(up_at) {
            break at;
        }
        assert!(
            up_at.elapsed() < Duration::from_secs(12),
            "traffic never came back to A"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        back - up_at <= Duration::from_secs(10),
        "A got traffic back after {:?}",
        back - up_at
    );

    eprintln!(
        "failover: on B {:?} after A failed, back on A {:?} after it recovered",
        on_b - down_at,
        back - up_at
    );
    let done = g
        .wait_status(&id, "completed", Duration::from_secs(60))
        .await;
    assert_eq!(done["counts"]["sent"], n as u64, "{done}");
    assert_eq!(done["counts"]["failed"], 0, "{done}");
    assert!(a.refused.load(Ordering::SeqCst) > 0);

    // Each recipient accepted by exactly one provider, once.
    let at_a = a.accepted.lock().clone();
    let at_b = b.accepted.lock().clone();
    let repeated = at_a
        .values()
        .chain(at_b.values())
        .filter(|(c, _)| *c != 1)
        .count();
    assert_eq!(repeated, 0, "ids accepted twice by one provider");
    let both = at_a.keys().filter(|k| at_b.contains_key(*k)).count();
    assert_eq!(both, 0, "ids accepted by both providers");
    assert_eq!(at_a.len() + at_b.len(), n, "every recipient accepted once");
    assert!(!at_b.is_empty() && at_a.len() > at_b.len() / 10);

    // The ledger charges each provider its own price for what it accepted.
    let entries = g.ledger_entries(&format!("job_id={id}")).await;
    let mut by_provider: HashMap<String, (usize, i64)> = HashMap::new();
    for e in &entries {
        let line = by_provider
            .entry(e["provider"].as_str().expect("provider").to_string())
            .or_default();
        line.0 += 1;
        line.1 += e["cost_micros"].as_i64().expect("cost");
    }
    assert_eq!(
        by_provider.get("carrier-a").copied(),
        Some((at_a.len(), at_a.len() as i64 * PRICE_A))
    );
    assert_eq!(
        by_provider.get("carrier-b").copied(),
        Some((at_b.len(), at_b.len() as i64 * PRICE_B))
    );
    assert_eq!(
        done["counts"]["cost_micros"].as_i64(),
        Some(at_a.len() as i64 * PRICE_A + at_b.len() as i64 * PRICE_B),
        "{done}"
    );
    g.stop().await;
}

/// A gateway with two instant sandbox providers, `left` and `right`, routed by `strategy`.
async fn two_sandboxes(
    strategy: RouteStrategy,
    weights: Vec<u32>,
    adjust: impl FnOnce(&mut herald::config::Config),
) -> Gateway {
    Gateway::start_on_system_clock(|c| {
        c.policy.frequency_caps.clear();
        c.policy.quiet_hours.enabled = false;
        let mut left = c.providers[0].clone();
        left.name = "left".into();
        let mut right = left.clone();
        right.name = "right".into();
        c.providers = vec![left, right];
        c.prices.clear();
        c.routes = vec![RouteConfig {
            channel: Channel::Sms,
            countries: vec!["*".into()],
            providers: vec!["left".into(), "right".into()],
            strategy,
            weights,
        }];
        adjust(c);
    })
    .await
}

async fn run_small_job(g: &Gateway, n: usize) -> (Value, Duration) {
    let (csv, audience) = herald_testkit::loopback::numbered_contacts("w", 40_000_000, n);
    g.load_csv(&csv).await;
    let started = Instant::now();
    let (status, body) = g.submit(&sms_job("routes", "Hi", audience)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("job id").to_string();
    let done = g
        .wait_status(&id, "completed", Duration::from_secs(60))
        .await;
    (done, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_a_job_between_providers_and_the_job_shows_each_ones_share() {
    let g = two_sandboxes(RouteStrategy::Weighted, vec![3, 1], |_| {}).await;
    let (done, _) = run_small_job(&g, 4_000).await;
    let left = done["providers"]["left"]["messages"].as_u64().unwrap_or(0);
    let right = done["providers"]["right"]["messages"].as_u64().unwrap_or(0);
    assert_eq!(left + right, 4_000, "{done}");
    let share = left as f64 / 4_000.0;
    assert!(
        (share - 0.75).abs() < 0.03,
        "left took {share} of the job: {done}"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_limit_holds_the_channel_over_all_its_providers() {
    // Each provider alone is unlimited; together they may send 200 parts a second.
    let g = two_sandboxes(RouteStrategy::Weighted, vec![1, 1], |c| {
        c.channel_limits = vec![herald::config::ChannelLimitConfig {
            channel: Channel::Sms,
            parts_per_second: 200,
            burst_parts: 20,
        }];
    })
    .await;
    let (done, took) = run_small_job(&g, 500).await;
    assert_eq!(done["counts"]["sent"], 500, "{done}");
    assert!(done["providers"]["left"]["messages"].as_u64() > Some(100));
    assert!(done["providers"]["right"]["messages"].as_u64() > Some(100));
    // 480 parts past the burst at 200 a second: at least 2.4 s, whatever the machine.
    assert!(took >= Duration::from_millis(2_300), "took {took:?}");
    g.stop().await;
}
