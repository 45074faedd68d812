//! A webhook receiver in the test process: the distinct `message.sent` events it got, so a
//! test can check that kills of herald lose none (repeats are allowed: at least once), and the
//! `message.in_doubt` events by message.

use super::*;

/// What the receiver got.
#[derive(Default)]
pub(crate) struct Hooked {
    pub(crate) sent: Mutex<HashSet<String>>,
    /// Message id → the distinct ids of the `message.in_doubt` events that named it.
    pub(crate) in_doubt: Mutex<HashMap<String, HashSet<String>>>,
    pub(crate) events: AtomicU64,
}

/// Starts the receiver; answers its URL.
pub(crate) async fn webhook_receiver() -> (String, Arc<Hooked>) {
    let hooked = Arc::new(Hooked::default());
    let h = hooked.clone();
    let handler = move |body: Bytes| {
        let h = h.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let events = match v {
                Value::Array(list) => list,
                one => vec![one],
            };
            h.events.fetch_add(events.len() as u64, Ordering::SeqCst);
            let (mut sent, mut in_doubt) = (h.sent.lock(), h.in_doubt.lock());
            for e in events {
                let Some(id) = e["data"]["message_id"].as_str() else {
                    continue;
                };
                if e["type"] == "message.sent" {
                    sent.insert(id.to_string());
                } else if e["type"] == "message.in_doubt" {
                    let event = e["id"].as_str().unwrap_or_default().to_string();
                    in_doubt.entry(id.to_string()).or_default().insert(event);
                }
            }
            StatusCode::NO_CONTENT
        }
    };
    let app = axum::Router::new().route("/hook", axum::routing::post(handler));
    let addr = herald_testkit::loopback::serve(app).await;
    (format!("http://{addr}/hook"), hooked)
}

impl Harness {
    /// Registers `url` for `message.sent` and `message.in_doubt` events, batched.
    pub(crate) async fn register_webhook(&self, url: &str) {
        let r = self
            .herald
            .http
            .post(self.herald.url("/v1/webhooks"))
            .bearer_auth(KEY)
            .json(&json!({"url": url, "event_types": ["message.sent", "message.in_doubt"], "batch_size": 1000}))
            .send()
            .await
            .expect("register the webhook");
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
    }
}
