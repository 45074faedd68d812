//! Test harness: a real gateway bound to 127.0.0.1:0 with a pinned clock, driven over HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use herald::app::{self, Running};
use herald::clock::ManualClock;
use herald::config::{Config, ConfigSource, LoadedConfig, DEFAULT_TOML};
use serde_json::Value;

pub const KEY: &str = "test-key";

/// 12:00 in Shanghai: inside the default quiet-hours window.
pub fn noon_shanghai() -> DateTime<Utc> {
    "2026-11-23T04:00:00Z".parse().expect("time")
}

/// A gateway under test.
pub struct Gateway {
    pub base: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub running: Option<Running>,
    _dir: tempfile::TempDir,
}

/// The default config made deterministic: an instant sandbox that never fails, no rate limit.
pub fn test_config() -> Config {
    let mut c: Config = toml::from_str(DEFAULT_TOML).expect("default config");
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.auth.api_keys = vec![KEY.to_string()];
    c.snapshot.load_path = None;
    // Hundreds of short-lived gateways: 128 MiB of spare log segments each would be most of
    // the suite's disk writes. The crash tests run the binary with its defaults.
    c.ledger.prepare_log_spares = false;
    let p = &mut c.providers[0];
    p.latency_ms = 0;
    p.transient_failure_rate = 0.0;
    p.permanent_failure_rate = 0.0;
    p.delivery_rate = 1.0;
    p.receipt_delay_ms = 0;
    p.rate_limit_parts_per_second = 0;
    c
}

impl Gateway {
    /// Starts a gateway with the test config, adjusted by `adjust`, on a pinned clock.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Gateway {
        Gateway::start_inner(adjust, false).await
    }

    /// Like [`Gateway::start_with`] but on the system clock, for tests that measure time.
    pub async fn start_on_system_clock(adjust: impl FnOnce(&mut Config)) -> Gateway {
        Gateway::start_inner(adjust, true).await
    }

    /// Starts a gateway on an existing data directory (a restart keeps it), pinned clock.
    pub async fn start_at(data_dir: &std::path::Path, adjust: impl FnOnce(&mut Config)) -> Gateway {
        let path = data_dir.display().to_string();
        Gateway::start_inner(
            move |c| {
                c.server.data_dir = path;
                adjust(c)
            },
            false,
        )
        .await
    }

    /// Stops the gateway gracefully (drains, closes the database).
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    async fn start_inner(adjust: impl FnOnce(&mut Config), system_clock: bool) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config();
        config.server.data_dir = dir.path().join("data").display().to_string();
        adjust(&mut config);
        config.validate().expect("valid test config");
        let clock = Arc::new(ManualClock::new(noon_shanghai()));
        let app_clock: Arc<dyn herald::clock::Clock> = if system_clock {
            Arc::new(herald::clock::SystemClock)
        } else {
            clock.clone()
        };
        let state = app::build_with_clock(
            LoadedConfig {
                config,
                source: ConfigSource::Embedded,
            },
            app_clock,
        )
        .await
        .expect("build");
        let running = app::spawn(state).await.expect("spawn");
        Gateway {
            base: format!("http://{}", running.addr),
            http: reqwest::Client::new(),
            clock,
            running: Some(running),
            _dir: dir,
        }
    }

    /// Starts a gateway with the plain test config.
    pub async fn start() -> Gateway {
        Gateway::start_with(|_| {}).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// An authorised request builder.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(KEY)
    }

    /// GETs `path` (authorised) and parses the JSON answer, whatever its status.
    pub async fn get_json(&self, path: &str) -> Value {
        self.req(reqwest::Method::GET, path)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json")
    }

    /// Loads a CSV snapshot; panics unless it is accepted.
    pub async fn load_csv(&self, csv: &str) -> Value {
        let r = self
            .req(reqwest::Method::PUT, "/v1/snapshot")
            .header("content-type", "text/csv")
            .body(csv.to_string())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "snapshot load failed");
        r.json().await.expect("json")
    }

    /// Submits a JSON job and returns (status, body).
    pub async fn submit(&self, job: &Value) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::POST, "/v1/jobs")
            .json(job)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Reads a job.
    pub async fn job(&self, id: &str) -> Value {
        let r = self
            .req(reqwest::Method::GET, &format!("/v1/jobs/{id}"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        r.json().await.expect("json")
    }

    /// Polls until the job's status is `status` (or the timeout passes, which panics).
    pub async fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let j = self.job(id).await;
            if j["status"] == status {
                return j;
            }
            assert!(
                start.elapsed() < timeout,
                "job never became {status}: {j:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until the job named by a submission's answer (`{"id": ...}`) is completed.
    pub async fn wait_completed(&self, submitted: &Value, timeout: Duration) -> Value {
        let id = submitted["id"]
            .as_str()
            .expect("the submission answered a job id");
        self.wait_status(id, "completed", timeout).await
    }

    /// Polls until `pred` holds for the job.
    pub async fn wait_until(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let j = self.job(id).await;
            if pred(&j) {
                return j;
            }
            assert!(start.elapsed() < timeout, "condition never held: {j:#}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ledger entries as NDJSON objects, filtered by `query` (e.g. `job_id=...`, or "").
    pub async fn ledger_entries(&self, query: &str) -> Vec<Value> {
        let r = self
            .req(reqwest::Method::GET, &format!("/v1/ledger?{query}"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        r.text()
            .await
            .expect("text")
            .lines()
            .map(|l| serde_json::from_str(l).expect("ndjson line"))
            .collect()
    }

    /// The message ids charged in the ledger for `job`, and their total cost.
    pub async fn ledger_charges(&self, job: &str) -> (Vec<String>, i64) {
        let entries = self.ledger_entries(&format!("job_id={job}")).await;
        let total = entries
            .iter()
            .map(|e| e["cost_micros"].as_i64().expect("cost_micros"))
            .sum();
        let ids = entries
            .iter()
            .map(|e| e["message_id"].as_str().expect("message_id").to_string())
            .collect();
        (ids, total)
    }

    /// Per-recipient outcomes, by contact id.
    pub async fn recipients(&self, id: &str) -> Vec<Value> {
        let r = self
            .req(reqwest::Method::GET, &format!("/v1/jobs/{id}/recipients"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        let text = r.text().await.expect("text");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("ndjson line"))
            .collect()
    }
}

/// A marketing SMS job body over inline contacts.
pub fn sms_job(campaign: &str, body: &str, contacts: Value) -> Value {
    serde_json::json!({
        "campaign_id": campaign,
        "channel": "sms",
        "purpose": "marketing",
        "template": { "body": body },
        "audience": { "contacts": contacts },
    })
}

/// A snapshot CSV of `n` opted-in contacts `c0..c{n-1}` with valid, distinct Chinese mobile
/// numbers in Asia/Shanghai.
pub fn contacts_csv(n: usize) -> String {
    let mut s = String::from("contact_id,phone,timezone,sms_consent,first_name\n");
    for i in 0..n {
        s.push_str(&format!(
            "c{i},+86131{:08},Asia/Shanghai,opt_in,N{i}\n",
            23_000_000 + i
        ));
    }
    s
}

/// Asserts that no cell of `csv` would run as a formula when finance opens it in a
/// spreadsheet: text cells never start with `=`, `+`, `-`, `@`, tab or carriage return, and
/// the cells of `numeric` columns (by header name) are plain numbers or empty.
pub fn assert_csv_cells_inert(csv: &str, numeric: &[&str]) {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(csv.as_bytes());
    let header = r.headers().expect("a CSV header").clone();
    for record in r.records() {
        let record = record.expect("a CSV record");
        for (i, cell) in record.iter().enumerate() {
            let column = header.get(i).unwrap_or("");
            if numeric.contains(&column) {
                assert!(
                    cell.is_empty() || cell.parse::<f64>().is_ok(),
                    "{column} is not a number: {cell:?} in {record:?}"
                );
            } else {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{column} would run as a formula: {cell:?} in {record:?}"
                );
            }
        }
    }
}

/// Percent-encodes a path segment whole (ids with `/`, `?` or quotes in them).
pub fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
