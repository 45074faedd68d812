//! The recording provider: an idempotent (or not) HTTP provider that counts every id it gets.

use super::*;

/// What the provider received: every message id and how many times it arrived.
#[derive(Default)]
pub(crate) struct Received {
    pub(crate) by_id: Mutex<HashMap<String, u32>>,
    pub(crate) requests: AtomicU64,
    pub(crate) malformed: AtomicU64,
    /// When each id arrived (a batch's ids share its arrival), for rate checks.
    pub(crate) arrivals: Mutex<Vec<Instant>>,
}

/// A tally of [`Received`] at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) distinct: usize,
    pub(crate) receptions: u64,
    pub(crate) requests: u64,
}

impl Received {
    pub(crate) fn tally(&self) -> Tally {
        let by_id = self.by_id.lock();
        Tally {
            distinct: by_id.len(),
            receptions: by_id.values().map(|&n| u64::from(n)).sum(),
            requests: self.requests.load(Ordering::SeqCst),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct WireId {
    pub(crate) id: String,
}

/// A single message (`{"id", ...}`) or a batch (`{"messages": [...]}`); only ids matter here.
#[derive(Deserialize)]
pub(crate) struct WireBody {
    #[serde(default)]
    pub(crate) messages: Option<Vec<WireId>>,
    #[serde(default)]
    pub(crate) id: Option<String>,
}

/// Records the ids of one request, then answers `accepted` for each after 1–5 ms, so that
/// requests are in flight when a kill lands. An id counts as received as soon as the request
/// arrives: a provider that got a message has it, whether or not herald lived to read the
/// answer. A repeated id is accepted again, as an idempotent provider answers a resend.
pub(crate) async fn receive(
    rec: &Received,
    rng: &Mutex<SmallRng>,
    latency: Option<Duration>,
    body: &[u8],
) -> Response {
    rec.requests.fetch_add(1, Ordering::SeqCst);
    let (ids, batch) = match serde_json::from_slice::<WireBody>(body) {
        Ok(WireBody {
            messages: Some(list),
            ..
        }) => (list.into_iter().map(|m| m.id).collect::<Vec<_>>(), true),
        Ok(WireBody { id: Some(id), .. }) => (vec![id], false),
        _ => {
            rec.malformed.fetch_add(1, Ordering::SeqCst);
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    {
        let mut by_id = rec.by_id.lock();
        for id in &ids {
            *by_id.entry(id.clone()).or_default() += 1;
        }
        let now = Instant::now();
        rec.arrivals.lock().extend(ids.iter().map(|_| now));
    }
    let latency = latency.unwrap_or_else(|| Duration::from_millis(rng.lock().gen_range(1..=5)));
    tokio::time::sleep(latency).await;
    let answer = if batch {
        let results: Vec<Value> = ids
            .iter()
            .map(|id| {
                json!({"id": id, "provider_message_id": format!("p-{id}"), "status": "accepted"})
            })
            .collect();
        json!({ "results": results })
    } else {
        json!({"provider_message_id": format!("p-{}", ids[0]), "status": "accepted"})
    };
    (StatusCode::OK, answer.to_string()).into_response()
}

/// Starts the provider on 127.0.0.1:0 for the rest of the test, answering after `latency`
/// (1–5 ms when `None`); answers its URL and record.
pub(crate) async fn recording_provider(
    seed: u64,
    latency: Option<Duration>,
) -> (String, Arc<Received>) {
    let rec = Arc::new(Received::default());
    let rng = Arc::new(Mutex::new(SmallRng::seed_from_u64(seed ^ 0x5eed_1a7e)));
    let r = rec.clone();
    let handler = move |body: Bytes| {
        let (r, rng) = (r.clone(), rng.clone());
        async move { receive(&r, &rng, latency, &body).await }
    };
    let app = axum::Router::new().route("/v1/messages", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the provider");
    let addr = listener.local_addr().expect("provider address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/v1/messages"), rec)
}
