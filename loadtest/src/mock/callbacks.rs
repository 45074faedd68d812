//! The mock provider's way back to herald: for each message it accepts (first acceptance of
//! an id only), one delivery receipt after a sampled delay, and for some delivered messages a
//! click on the tracked link found in the message body.
//!
//! Fates are chosen by a hash of the id and the seed (delivered or undelivered, clicked or
//! not), so a run is reproducible; only the delays are drawn from a seeded generator. Due
//! receipts are taken off a timer heap every 10 ms, cut into batches, and POSTed by a fixed
//! number of connection tasks as JSON arrays to `<herald>/v1/callbacks/<provider>/receipts`,
//! signed with HMAC-SHA256 over `timestamp + "." + body` (herald's scheme). A failed request
//! (transport error, 429 or 5xx) is signed again and retried with backoff; herald applies
//! receipts idempotently, so a retry after a lost answer only adds duplicates. Clicks are
//! GETs with redirects not followed, sent once the receipt batch they follow was answered.
//!
//! Nothing is sent until the run tells the mock where herald is (`PUT /control/herald`), and
//! only to a loopback address.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::callbacks::signature::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::latency::{Latency, Shape};
use super::stats::WayBack;

/// The secret receipts are signed with (from the environment, not the command line).
pub const SECRET_ENV: &str = "MOCK_CALLBACK_SECRET";

/// How receipts and clicks come back.
#[derive(Debug, Clone, clap::Args)]
pub struct CallbackSettings {
    /// Share of accepted messages reported delivered (the rest undelivered).
    #[arg(long, default_value_t = 0.97)]
    pub delivered_rate: f64,
    /// Shape of the delay from acceptance to receipt.
    #[arg(long, value_enum, default_value_t = Shape::Lognormal)]
    pub receipt_delay: Shape,
    /// Median receipt delay, milliseconds.
    #[arg(long, default_value_t = 1_000.0)]
    pub receipt_delay_p50_ms: f64,
    /// 99th-percentile receipt delay, milliseconds.
    #[arg(long, default_value_t = 5_000.0)]
    pub receipt_delay_p99_ms: f64,
    /// Receipts per callback request.
    #[arg(long, default_value_t = 100)]
    pub receipt_batch: usize,
    /// Concurrent callback requests.
    #[arg(long, default_value_t = 4)]
    pub receipt_connections: usize,
    /// Share of delivered messages whose tracked link is clicked.
    #[arg(long, default_value_t = 0.0)]
    pub click_rate: f64,
    /// The provider name in herald's callback path.
    #[arg(long, default_value = "mock")]
    pub callback_provider: String,
}

/// One receipt to send.
struct Planned {
    id: u128,
    delivered: bool,
    click: Option<String>,
}

/// A planned receipt on the timer heap, earliest first.
struct Due {
    at: Instant,
    seq: u64,
    planned: Planned,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Plans receipts and clicks for accepted messages and sends them when due.
pub struct Emitter {
    settings: CallbackSettings,
    delay: Latency,
    seed: u64,
    rng: Mutex<SmallRng>,
    seq: std::sync::atomic::AtomicU64,
    due: mpsc::UnboundedSender<Due>,
    target: watch::Sender<Option<String>>,
    counters: Arc<WayBack>,
}

/// A uniform number in [0, 1) from an id, the seed and a salt.
fn roll(id: u128, seed: u64, salt: u64) -> f64 {
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(&id.to_le_bytes(), seed ^ salt);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The tracked link in a message body: the URL holding `/c/`, without trailing punctuation.
pub fn tracked_link(body: &str) -> Option<&str> {
    let c = body.find("/c/")?;
    let start = body[..c].rfind("http")?;
    let end = body[c..]
        .find(char::is_whitespace)
        .map_or(body.len(), |e| c + e);
    let url = body[start..end].trim_end_matches(|ch: char| !ch.is_ascii_alphanumeric());
    url.contains("://").then_some(url)
}

/// Whether `url` is plain HTTP to this machine.
pub fn is_loopback(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    ["127.0.0.1:", "localhost:", "[::1]:"]
        .iter()
        .any(|p| host.starts_with(p))
}

impl Emitter {
    /// Starts the scheduler and the connection tasks (on the current runtime).
    pub fn start(
        settings: CallbackSettings,
        secret: Vec<u8>,
        seed: u64,
        counters: Arc<WayBack>,
    ) -> Emitter {
        let (due_tx, due_rx) = mpsc::unbounded_channel();
        let (target, target_rx) = watch::channel(None);
        let connections = settings.receipt_connections.max(1);
        let (batch_tx, batch_rx) = mpsc::channel(connections * 2);
        tokio::spawn(schedule(
            due_rx,
            target_rx.clone(),
            settings.receipt_batch.max(1),
            batch_tx,
        ));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(connections * 2)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let batch_rx = Arc::new(tokio::sync::Mutex::new(batch_rx));
        let sender = Arc::new(Sender {
            http,
            target: target_rx,
            secret,
            provider: settings.callback_provider.clone(),
            counters: counters.clone(),
        });
        for _ in 0..connections {
            tokio::spawn(sender.clone().run(batch_rx.clone()));
        }
        Emitter {
            delay: Latency::new(
                settings.receipt_delay,
                settings.receipt_delay_p50_ms,
                settings.receipt_delay_p99_ms,
            ),
            seed,
            rng: Mutex::new(SmallRng::seed_from_u64(seed ^ 0x5EED_BAC4)),
            seq: Default::default(),
            due: due_tx,
            target,
            counters,
            settings,
        }
    }

    /// Where herald is (`http://127.0.0.1:<port>`); refused unless loopback.
    pub fn set_target(&self, base: &str) -> bool {
        let base = base.trim().trim_end_matches('/');
        if !is_loopback(&format!("{base}/")) {
            return false;
        }
        self.target.send_replace(Some(base.to_string()));
        true
    }

    /// Plans the receipt (and maybe a click) of a message accepted for the first time.
    pub fn plan(&self, id: u128, body: Option<&str>) {
        let s = &self.settings;
        let c = &self.counters;
        let delivered = roll(id, self.seed, 0xD1) < s.delivered_rate;
        let mut click = None;
        if delivered && roll(id, self.seed, 0xC1) < s.click_rate {
            match body.and_then(tracked_link).filter(|u| is_loopback(u)) {
                Some(url) => {
                    c.clicks_planned.fetch_add(1, Relaxed);
                    click = Some(url.to_string());
                }
                None => {
                    c.clicks_skipped.fetch_add(1, Relaxed);
                }
            }
        }
        c.planned.fetch_add(1, Relaxed);
        if delivered {
            c.planned_delivered.fetch_add(1, Relaxed);
        } else {
            c.planned_undelivered.fetch_add(1, Relaxed);
        }
        let delay = self.delay.sample(&mut *self.rng.lock());
        let _ = self.due.send(Due {
            at: Instant::now() + delay,
            seq: self.seq.fetch_add(1, Relaxed),
            planned: Planned {
                id,
                delivered,
                click,
            },
        });
    }
}

/// Moves due receipts from the timer heap to the connection tasks, in batches.
async fn schedule(
    mut due: mpsc::UnboundedReceiver<Due>,
    target: watch::Receiver<Option<String>>,
    batch: usize,
    out: mpsc::Sender<Vec<Planned>>,
) {
    let mut heap: BinaryHeap<Due> = BinaryHeap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        while let Ok(d) = due.try_recv() {
            heap.push(d);
        }
        if target.borrow().is_none() {
            continue;
        }
        let now = Instant::now();
        let mut ready = Vec::new();
        while heap.peek().is_some_and(|d| d.at <= now) {
            if let Some(d) = heap.pop() {
                ready.push(d.planned);
            }
        }
        while !ready.is_empty() {
            let rest = ready.split_off(ready.len().min(batch));
            if out.send(std::mem::replace(&mut ready, rest)).await.is_err() {
                return;
            }
        }
    }
}

/// What the connection tasks share.
struct Sender {
    http: reqwest::Client,
    target: watch::Receiver<Option<String>>,
    secret: Vec<u8>,
    provider: String,
    counters: Arc<WayBack>,
}

const MAX_ATTEMPTS: u32 = 6;

impl Sender {
    async fn run(self: Arc<Self>, batches: Arc<tokio::sync::Mutex<mpsc::Receiver<Vec<Planned>>>>) {
        loop {
            let next = batches.lock().await.recv().await;
            let Some(batch) = next else { return };
            let base = self.target.borrow().clone();
            let Some(base) = base else { continue };
            self.send(&base, batch).await;
        }
    }

    async fn send(&self, base: &str, batch: Vec<Planned>) {
        let c = &self.counters;
        let mut body = String::with_capacity(2 + batch.len() * 72);
        body.push('[');
        for (i, p) in batch.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            let (status, code) = if p.delivered {
                ("delivered", "000")
            } else {
                ("undelivered", "001")
            };
            body.push_str(&format!(
                r#"{{"message_id":"mock-{:032x}","status":"{status}","error_code":"{code}"}}"#,
                p.id
            ));
        }
        body.push(']');
        let body = bytes::Bytes::from(body);
        let url = format!("{base}/v1/callbacks/{}/receipts", self.provider);
        let n = batch.len() as u64;
        c.mark_start();
        let mut answered = None;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                c.retries.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let ts = chrono::Utc::now().timestamp().to_string();
            let signature = sign(&self.secret, &ts, &body);
            c.requests.fetch_add(1, Relaxed);
            let r = self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .header(TIMESTAMP_HEADER, &ts)
                .header(SIGNATURE_HEADER, signature)
                .body(body.clone())
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => {
                    answered = r.json::<Value>().await.ok();
                    break;
                }
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {}
                Ok(r) => {
                    eprintln!(
                        "mock provider: receipts refused: {} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                    break;
                }
                Err(_) => {}
            }
        }
        let Some(tally) = answered else {
            c.failed.fetch_add(n, Relaxed);
            let clicks = batch.iter().filter(|p| p.click.is_some()).count();
            c.clicks_failed.fetch_add(clicks as u64, Relaxed);
            c.mark_done();
            return;
        };
        c.sent.fetch_add(n, Relaxed);
        for (slot, key) in [
            (&c.applied, "applied"),
            (&c.duplicates, "duplicates"),
            (&c.unknown, "unknown"),
        ] {
            slot.fetch_add(tally[key].as_u64().unwrap_or(0), Relaxed);
        }
        c.mark_done();
        for url in batch.iter().filter_map(|p| p.click.as_deref()) {
            c.clicks_sent.fetch_add(1, Relaxed);
            match self.http.get(url).send().await {
                Ok(r) if r.status().as_u16() == 302 => {
                    c.clicks_redirected.fetch_add(1, Relaxed);
                }
                _ => {
                    c.clicks_failed.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracked_link_is_found_in_a_body() {
        let body = "Hi Wei, 20% off: http://127.0.0.1:4000/c/AbCdEfGhIjKlMnOpQrStUv Reply STOP";
        assert_eq!(
            tracked_link(body),
            Some("http://127.0.0.1:4000/c/AbCdEfGhIjKlMnOpQrStUv")
        );
        assert_eq!(
            tracked_link("go https://hrld.io/c/Abc."),
            Some("https://hrld.io/c/Abc")
        );
        assert_eq!(tracked_link("no link here"), None);
        assert!(is_loopback("http://127.0.0.1:4000/c/x"));
        assert!(!is_loopback("https://hrld.io/c/x"));
        assert!(!is_loopback("http://127.0.0.1.example.com/c/x"));
    }

    #[test]
    fn fates_follow_the_rates() {
        let n = 100_000u128;
        let delivered = (0..n).filter(|&i| roll(i, 7, 0xD1) < 0.97).count();
        assert!((96_500..97_500).contains(&delivered), "{delivered}");
        assert_eq!(roll(42, 7, 0xD1), roll(42, 7, 0xD1));
    }
}
