//! The harness: config, data directory, snapshot, provider, kills and the final checks.

use super::*;

/// A herald with its own config, data directory and snapshot, a recording provider, and the
/// seed of the kill delays.
pub(crate) struct Harness {
    /// Declared before the directory, so the process is killed before its files go.
    pub(crate) herald: Herald,
    pub(crate) provider: Arc<Received>,
    pub(crate) scenario: Scenario,
    pub(crate) seed: u64,
    pub(crate) config: PathBuf,
    pub(crate) _dir: tempfile::TempDir,
}

pub(crate) fn seed() -> u64 {
    std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        })
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

/// A TOML string literal for a path.
pub(crate) fn toml_path(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

pub(crate) fn write_config(dir: &Path, port: u16, provider_url: &str, s: &Scenario) -> PathBuf {
    let contacts = dir.join("contacts.csv");
    std::fs::write(&contacts, herald_testkit::contacts_csv(s.recipients))
        .expect("write the snapshot");
    let text = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
data_dir = {data_dir}
shutdown_timeout_seconds = {shutdown}

[auth]
api_keys = ["{KEY}"]

[snapshot]
default_region = "CN"
load_path = {contacts}

[policy]
frequency_caps = []

[policy.quiet_hours]
enabled = false

[dispatch]
workers = {workers}
batch_size = {batch}

[state]
backend = "embedded"

[ledger]
enabled = true

[[providers]]
name = "{PROVIDER}"
kind = "http"
channel = "sms"
currency = "{CURRENCY}"
url = "{provider_url}"
batch_size = {batch}
max_in_flight = {workers}
request_timeout_ms = {request_timeout}
rate_limit_parts_per_second = {rate}
burst_parts = {batch}
idempotent = {idempotent}
callback_secret_envs = ["{CALLBACK_SECRET_ENV}"]

[[prices]]
provider = "{PROVIDER}"
channel = "sms"
country = "CN"
unit_micros = {UNIT_PRICE_MICROS}
"#,
        data_dir = toml_path(&dir.join("data")),
        contacts = toml_path(&contacts),
        workers = s.workers,
        batch = s.batch,
        rate = s.rate,
        idempotent = s.idempotent,
        shutdown = s.shutdown_timeout_seconds,
        request_timeout = 2_000 + 2 * s.provider_latency.map_or(0, |l| l.as_millis()),
    );
    let path = dir.join("herald.toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

impl Harness {
    /// herald's log, over every start and kill: one JSON object per line, the lines written
    /// while a request ran carrying its request id (and the caller's tenant, once known), and
    /// no contact's phone number anywhere.
    pub(crate) fn assert_logs_are_json_without_numbers(&self) {
        let text = std::fs::read_to_string(&self.herald.log).expect("read the herald log");
        let numbers: HashSet<String> = (0..self.scenario.recipients)
            .map(|i| format!("131{:08}", 23_000_000 + i))
            .collect();
        let (mut with_request_id, mut with_tenant) = (0, 0);
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("log line {} is not JSON ({e}): {line}", n + 1));
            assert!(
                v["level"].is_string() && v["timestamp"].is_string(),
                "{line}"
            );
            if v["span"]["request_id"].is_string() {
                with_request_id += 1;
            }
            if v["span"]["tenant"] == "default" {
                with_tenant += 1;
            }
            let leaked = line
                .split(|c: char| !c.is_ascii_digit())
                .filter(|run| run.len() >= 11)
                .any(|run| (0..=run.len() - 11).any(|at| numbers.contains(&run[at..at + 11])));
            assert!(
                !leaked,
                "log line {} holds a contact's number: {line}",
                n + 1
            );
        }
        assert!(with_request_id > 0, "no log line carries a request id");
        assert!(with_tenant > 0, "no log line carries the caller's tenant");
    }

    /// Every request the provider got was one it could read.
    pub(crate) fn assert_well_formed(&self) {
        assert_eq!(
            self.provider.malformed.load(Ordering::SeqCst),
            0,
            "malformed requests"
        );
    }

    pub(crate) async fn start(scenario: Scenario) -> Harness {
        Harness::start_with_env(scenario, Vec::new()).await
    }

    /// As [`Harness::start`], with extra environment for herald.
    pub(crate) async fn start_with_env(scenario: Scenario, env: Vec<(String, String)>) -> Harness {
        let seed = seed();
        println!(
            "{}: seed {seed} (CRASH_SEED={seed} replays the kill delays)",
            scenario.campaign
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, provider) = recording_provider(seed, scenario.provider_latency).await;
        let port = free_port();
        let config = write_config(dir.path(), port, &url, &scenario);
        let mut herald = Herald::new(config.clone(), dir.path().join("herald.log"), port);
        herald.env = env;
        let ready = herald.start().await;
        println!("herald ready in {ready:?}");
        Harness {
            herald,
            provider,
            scenario,
            seed,
            config,
            _dir: dir,
        }
    }

    /// Submits the whole audience as NDJSON; answers the job id.
    pub(crate) async fn submit(&self) -> JobId {
        let mut body = json!({
            "campaign_id": self.scenario.campaign,
            "channel": "sms",
            "purpose": "marketing",
            "template": { "body": "Hi {{first_name}}" },
            "track_links": false,
        })
        .to_string();
        body.push('\n');
        for i in 0..self.scenario.recipients {
            body.push_str(&format!("{{\"contact_id\":\"c{i}\"}}\n"));
        }
        let started = Instant::now();
        let r = self
            .herald
            .http
            .post(self.herald.url("/v1/jobs"))
            .bearer_auth(KEY)
            .header("content-type", "application/x-ndjson")
            .timeout(SUBMIT_TIMEOUT)
            .body(body)
            .send()
            .await
            .expect("submit the job");
        let status = r.status();
        let answer: Value = r.json().await.expect("submission answer");
        assert_eq!(status, 201, "job submission refused: {answer:#}");
        let id = answer["id"].as_str().expect("the answer names the job");
        println!(
            "submitted {} recipients as {id} in {:?}",
            self.scenario.recipients,
            started.elapsed()
        );
        JobId::parse(id).expect("a job id")
    }

    /// Kills herald `scenario.kills` times, each after a random 300–1500 ms of life, and
    /// restarts it on the same config and data directory.
    pub(crate) async fn crash_repeatedly(&mut self) {
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let kills = self.scenario.kills;
        for k in 1..=kills {
            let life = rng.gen_range(300..=1500);
            tokio::time::sleep(Duration::from_millis(life)).await;
            self.herald.sigkill();
            let t = self.provider.tally();
            println!(
                "kill {k}/{kills} after {life} ms: the provider had {} distinct ids \
                 ({} receptions in {} requests)",
                t.distinct, t.receptions, t.requests
            );
            if t.distinct >= self.scenario.recipients {
                assert!(
                    k > 1,
                    "the first kill came after the job was done: the rate limit is too \
                     high for the kills to land mid-job"
                );
                println!("  (this kill came after every id was sent)");
            }
            let ready = self.herald.start().await;
            println!("  restarted, ready in {ready:?}");
        }
    }

    /// Polls the job until it is completed; fails on a timeout, on another terminal status,
    /// or when the restarted herald no longer knows the job.
    pub(crate) async fn wait_completed(&self, job: &JobId) -> Value {
        let path = format!("/v1/jobs/{job}");
        let started = Instant::now();
        let mut last = String::from("(no answer yet)");
        let mut unknown_since: Option<Instant> = None;
        loop {
            match self.herald.get(&path).await {
                Ok((200, view)) => {
                    unknown_since = None;
                    match view["status"].as_str() {
                        Some("completed") => {
                            println!("completed {:?} after the last (re)start", started.elapsed());
                            return view;
                        }
                        Some(s @ ("cancelled" | "failed")) => {
                            panic!("job {job} ended {s}, not completed: {view:#}")
                        }
                        _ => last = format!("{view:#}"),
                    }
                }
                Ok((404, body)) => {
                    let since = *unknown_since.get_or_insert_with(Instant::now);
                    assert!(
                        since.elapsed() < LOST_JOB_GRACE,
                        "herald has not known job {job} for {LOST_JOB_GRACE:?} since the last \
                         restart (404 {body}): the job was lost in the crash; last view: {last}"
                    );
                }
                Ok((code, body)) => last = format!("HTTP {code}: {body}"),
                Err(e) => last = format!("request failed: {e}"),
            }
            assert!(
                started.elapsed() < COMPLETION_TIMEOUT,
                "job {job} not completed {COMPLETION_TIMEOUT:?} after the last restart; \
                 last view: {last}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /v1/ledger/summary?job_id=`: the job's totals in the provider's currency.
    pub(crate) async fn ledger_totals(&self, job: &JobId) -> Value {
        let (status, summary) = self
            .herald
            .get(&format!("/v1/ledger/summary?job_id={job}"))
            .await
            .expect("read the ledger summary");
        assert_eq!(status, 200, "ledger summary: {summary}");
        summary["totals"][CURRENCY].clone()
    }

    /// Posts a signed `delivered` receipt for each message id, naming it by herald's own id.
    pub(crate) async fn post_delivered(&self, ids: &[String]) {
        let body = serde_json::to_string(
            &ids.iter()
                .map(|id| json!({"message_id": id, "status": "delivered"}))
                .collect::<Vec<_>>(),
        )
        .expect("receipts json");
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            .to_string();
        let sig =
            herald::callbacks::signature::sign(CALLBACK_SECRET.as_bytes(), &ts, body.as_bytes());
        let r = self
            .herald
            .http
            .post(
                self.herald
                    .url(&format!("/v1/callbacks/{PROVIDER}/receipts")),
            )
            .header("x-herald-timestamp", ts)
            .header("x-herald-signature", sig)
            .body(body)
            .send()
            .await
            .expect("post receipts");
        assert_eq!(
            r.status(),
            200,
            "receipts: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// The message ids of the job's recipients whose outcome is `outcome`.
    pub(crate) async fn message_ids_with(&self, job: &JobId, outcome: &str) -> Vec<String> {
        let r = self
            .herald
            .http
            .get(self.herald.url(&format!("/v1/jobs/{job}/recipients")))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("recipients");
        assert_eq!(r.status(), 200);
        r.text()
            .await
            .expect("recipients body")
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["outcome"] == outcome)
            .filter_map(|v| v["message_id"].as_str().map(str::to_string))
            .collect()
    }

    /// The ids herald derives for every recipient of the job.
    pub(crate) fn audience_ids(&self, job: &JobId) -> HashSet<String> {
        (0..self.scenario.recipients)
            .map(|i| MessageId::derive(job, &format!("c{i}"), Channel::Sms).to_string())
            .collect()
    }

    /// SIGTERM, a clean exit, then `herald ledger verify` on the stopped gateway.
    pub(crate) async fn stop_and_verify_ledger(&mut self) {
        let stopping = Instant::now();
        let status = self.herald.stop().await;
        println!("herald stopped on SIGTERM in {:?}", stopping.elapsed());
        assert!(status.success(), "herald exited badly on SIGTERM: {status}");
        let dir = self.config.parent().expect("config dir");
        let (out, err) = (dir.join("verify.out"), dir.join("verify.err"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["ledger", "verify", "--config"])
            .arg(&self.config)
            .env_remove("HERALD_CONFIG")
            .env_remove("HERALD_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("verify stdout"))
            .stderr(File::create(&err).expect("verify stderr"))
            .spawn()
            .expect("run herald ledger verify");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("poll verify") {
                break status;
            }
            if started.elapsed() > VERIFY_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("herald ledger verify took longer than {VERIFY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        assert!(
            status.success(),
            "herald ledger verify failed ({status}): {}{}",
            read(&out),
            read(&err)
        );
        println!(
            "{} (verified in {:?})",
            read(&out).trim(),
            started.elapsed()
        );
    }
}

/// Counts a field of the job's `counts`, failing clearly when herald does not report it.
pub(crate) fn count(view: &Value, field: &str) -> u64 {
    view["counts"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("the job view has no counts.{field}: {view:#}"))
}

/// Ids the provider received that belong to no recipient of the job.
pub(crate) fn strangers<'a>(
    expected: &HashSet<String>,
    received: &'a HashMap<String, u32>,
) -> Vec<&'a String> {
    received
        .keys()
        .filter(|id| !expected.contains(*id))
        .collect()
}

/// Fails when the provider received ids outside the audience.
pub(crate) fn assert_none_foreign(strangers: &[&String]) {
    assert!(
        strangers.is_empty(),
        "the provider received {} ids outside the audience, e.g. {:?}",
        strangers.len(),
        examples(strangers.iter().copied())
    );
}

/// Up to five examples from a list, for failure messages.
pub(crate) fn examples<'a>(ids: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    ids.take(5).collect()
}

// ---------------------------------------------------------------------------------------------
// The tests
