//! Event webhooks' delivery rate: a gateway sends a job of 200,000 recipients through the
//! instant sandbox while an endpoint on loopback receives `message.sent` events in batches of
//! 1,000; prints the events per second from the first event received to the last.
//!
//! `cargo bench --bench webhooks` (add `-- 500000` for another audience size, `-- fleet` to
//! run the gateway as a fleet of one sharing its work through the Redis on 127.0.0.1:6379,
//! where events are read from the jobs' Redis streams instead of the journal).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use herald_testkit::{sms_job, Gateway};
use parking_lot::Mutex;
use serde_json::{json, Value};

#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Default)]
struct Counted {
    events: AtomicU64,
    first: Mutex<Option<Instant>>,
    last: Mutex<Option<Instant>>,
}

async fn receiver() -> (String, Arc<Counted>) {
    let counted = Arc::new(Counted::default());
    let c = counted.clone();
    let handler = move |body: Bytes| {
        let c = c.clone();
        async move {
            let n = match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Array(list)) => list.len() as u64,
                Ok(_) => 1,
                Err(_) => return StatusCode::BAD_REQUEST,
            };
            let now = Instant::now();
            c.first.lock().get_or_insert(now);
            *c.last.lock() = Some(now);
            c.events.fetch_add(n, Ordering::SeqCst);
            StatusCode::NO_CONTENT
        }
    };
    let app = axum::Router::new().route("/hook", axum::routing::post(handler));
    let addr = herald_testkit::loopback::serve(app).await;
    (format!("http://{addr}/hook"), counted)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let fleet = std::env::args().skip(1).any(|a| a == "fleet");
    let prefix = herald_testkit::redis::unique_prefix();
    // Declared before the gateway: its keys go when the bench ends.
    let _cleanup = fleet.then(|| herald_testkit::redis::Cleanup {
        prefix: prefix.clone(),
        node_urls: vec![herald_testkit::redis::SHARED_URL.to_string()],
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (url, counted) = receiver().await;
        let g = Gateway::start_with(|c| {
            c.policy.frequency_caps.clear();
            c.policy.quiet_hours.enabled = false;
            if fleet {
                c.state.backend = herald::config::StateBackend::Redis;
                c.state.redis.url = herald_testkit::redis::SHARED_URL.to_string();
                c.state.redis.key_prefix = prefix.clone();
                c.state.cluster.enabled = true;
                c.state.cluster.instance_id = "bench-0".into();
            }
        })
        .await;
        let r = g
            .req(reqwest::Method::POST, "/v1/webhooks")
            .json(&json!({"url": url, "event_types": ["message.sent"], "batch_size": 1000}))
            .send()
            .await
            .expect("register");
        assert_eq!(r.status(), 201);
        let (csv, audience) = herald_testkit::loopback::numbered_contacts("w", 10_000_000, n);
        g.load_csv(&csv).await;
        let started = Instant::now();
        let (status, body) = g.submit(&sms_job("bench", "Hi", audience)).await;
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_str().expect("id").to_string();
        g.wait_status(&id, "completed", Duration::from_secs(600))
            .await;
        let sent_in = started.elapsed();
        while counted.events.load(Ordering::SeqCst) < n as u64 {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "events missing"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let events = counted.events.load(Ordering::SeqCst);
        let span = match (*counted.first.lock(), *counted.last.lock()) {
            (Some(a), Some(b)) => b - a,
            _ => Duration::ZERO,
        };
        println!(
            "webhooks ({}): {n} recipients sent in {sent_in:.2?}; {events} message.sent events \
             received in batches of 1,000 over {span:.2?}: {:.0} events/s",
            if fleet {
                "fleet, Redis streams"
            } else {
                "journal"
            },
            events as f64 / span.as_secs_f64().max(1e-9)
        );
        g.stop().await;
    });
}
