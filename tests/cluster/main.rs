//! Several instances as one gateway, end to end: three real `herald` processes share one
//! Redis (a key prefix of their own) with work sharing on, and send to one recording HTTP
//! provider under one shared rate limit and one frequency cap (1 per contact per day).
//!
//! A first job reaches 20,000 contacts. A second, of 300,000 contacts (those 20,000 among
//! them), is submitted to another instance, and one instance is killed with SIGKILL while it
//! holds shards of it. The others must take its shards over and finish the job: every
//! eligible contact reached the provider under exactly one message id, nobody got a second
//! message (the cap held across instances and jobs), the aggregate rate never exceeded the
//! limit by more than 2% in any 10-second window, and every instance reports the same counts.
#![cfg(unix)]

#[path = "../crash_recovery/process.rs"]
#[allow(dead_code)]
mod process;
#[path = "../crash_recovery/provider.rs"]
#[allow(dead_code)]
mod provider;
mod webhooks;

use process::*;
use provider::*;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald::domain::{Channel, JobId, MessageId};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{json, Value};

pub(crate) const KEY: &str = "cluster-test-key";
const CALLBACK_SECRET: &str = "cluster-test-callback-secret";
const CALLBACK_SECRET_ENV: &str = "CLUSTER_CALLBACK_SECRET";
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(240);

const INSTANCES: usize = 3;
const FIRST_JOB: usize = 20_000;
const SECOND_JOB: usize = 300_000;
/// The provider's limit, shared by the three instances.
const RATE: u64 = 6_000;
/// The provider's `burst_parts`.
const BURST: u64 = 200;
/// How long a dead instance's shard leases live (the default is 10 s; shorter keeps the
/// test short, the mechanism is the same).
const LEASE_TTL_MS: u64 = 3_000;

/// What one fleet runs with.
struct Setup {
    contacts: usize,
    /// The provider's limit in parts per second, shared by the fleet.
    rate: u64,
    /// Whether the provider drops repeated ids.
    idempotent: bool,
}

/// The tests share two cores: one fleet at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config(
    dir: &Path,
    n: usize,
    port: u16,
    provider_url: &str,
    prefix: &str,
    setup: &Setup,
) -> PathBuf {
    let contacts = dir.join("contacts.csv");
    if !contacts.exists() {
        std::fs::write(&contacts, herald_testkit::contacts_csv(setup.contacts))
            .expect("write the snapshot");
    }
    let text = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
data_dir = {data_dir}
shutdown_timeout_seconds = 10

[auth]
api_keys = ["{KEY}"]

[snapshot]
default_region = "CN"
load_path = {contacts}

[[policy.frequency_caps]]
channel = "sms"
purpose = "marketing"
max = 1
window_seconds = 86_400

[policy.quiet_hours]
enabled = false

[dispatch]
workers = 4
batch_size = 200

[state]
backend = "redis"

[state.redis]
url = "{redis}"
key_prefix = "{prefix}"
pool_size = 8

[state.cluster]
enabled = true
instance_id = "instance-{n}"
lease_ttl_ms = {LEASE_TTL_MS}
poll_ms = 200

[ledger]
enabled = true

[[providers]]
name = "cluster-sms"
kind = "http"
channel = "sms"
currency = "CNY"
url = "{provider_url}"
batch_size = 200
max_in_flight = 4
request_timeout_ms = 2_000
rate_limit_parts_per_second = {rate}
burst_parts = {BURST}
idempotent = {idempotent}
callback_secret_envs = ["{CALLBACK_SECRET_ENV}"]

[[prices]]
provider = "cluster-sms"
channel = "sms"
country = "CN"
unit_micros = 45_000
"#,
        data_dir = toml_str(&dir.join(format!("data-{n}"))),
        contacts = toml_str(&contacts),
        redis = herald_testkit::redis::SHARED_URL,
        rate = setup.rate,
        idempotent = setup.idempotent,
    );
    let path = dir.join(format!("herald-{n}.toml"));
    std::fs::write(&path, text).expect("write the config");
    path
}

/// Herald processes sharing one Redis prefix and one recording provider.
struct Fleet {
    /// Declared first: the processes are killed before their keys and files go.
    instances: Vec<Herald>,
    received: Arc<Received>,
    /// The fleet's Redis key prefix.
    prefix: String,
    _cleanup: herald_testkit::redis::Cleanup,
    _dir: tempfile::TempDir,
}

impl Fleet {
    /// Starts `n` instances together (each loads the snapshot) and waits until all are ready.
    async fn start(n: usize, seed: u64, setup: &Setup) -> Fleet {
        let prefix = herald_testkit::redis::unique_prefix();
        let cleanup = herald_testkit::redis::Cleanup {
            prefix: prefix.clone(),
            node_urls: vec![herald_testkit::redis::SHARED_URL.to_string()],
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, received) = recording_provider(seed, None).await;
        let mut instances: Vec<Herald> = (0..n)
            .map(|k| {
                let port = herald_testkit::redis::free_port();
                let cfg = config(dir.path(), k, port, &url, &prefix, setup);
                Herald::new(cfg, dir.path().join(format!("herald-{k}.log")), port)
            })
            .collect();
        futures::future::join_all(instances.iter_mut().map(|h| h.start())).await;
        Fleet {
            instances,
            received,
            prefix,
            _cleanup: cleanup,
            _dir: dir,
        }
    }
}

fn toml_str(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

async fn submit(h: &Herald, campaign: &str, recipients: usize) -> JobId {
    let mut body = json!({
        "campaign_id": campaign,
        "channel": "sms",
        "purpose": "marketing",
        "template": { "body": "Hi {{first_name}}" },
        "track_links": false,
    })
    .to_string();
    body.push('\n');
    for i in 0..recipients {
        body.push_str(&format!("{{\"contact_id\":\"c{i}\"}}\n"));
    }
    let r = h
        .http
        .post(h.url("/v1/jobs"))
        .bearer_auth(KEY)
        .header("content-type", "application/x-ndjson")
        .timeout(Duration::from_secs(120))
        .body(body)
        .send()
        .await
        .expect("submit the job");
    let status = r.status();
    let answer: Value = r.json().await.expect("submission answer");
    assert_eq!(status, 201, "job submission refused: {answer:#}");
    JobId::parse(answer["id"].as_str().expect("job id")).expect("a job id")
}

/// Polls the job on `h` until it is completed; answers its view.
async fn wait_completed(h: &Herald, job: &JobId) -> Value {
    let started = Instant::now();
    let mut last;
    loop {
        match h.get(&format!("/v1/jobs/{job}")).await {
            Ok((200, view)) if view["status"] == "completed" => return view,
            Ok((200, view)) => {
                assert!(
                    !matches!(view["status"].as_str(), Some("cancelled" | "failed")),
                    "job ended {}: {view:#}",
                    view["status"]
                );
                last = format!("{view}");
            }
            Ok((code, body)) => last = format!("HTTP {code}: {body}"),
            Err(e) => last = format!("request failed: {e}"),
        }
        assert!(
            started.elapsed() < COMPLETION_TIMEOUT,
            "job {job} not completed within {COMPLETION_TIMEOUT:?}; last view: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Posts `body` to a callback route of the fleet's provider, signed with its secret; answers
/// the status and body.
async fn post_callback(h: &Herald, route: &str, body: &str) -> (u16, String) {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .to_string();
    let sig = herald::callbacks::signature::sign(CALLBACK_SECRET.as_bytes(), &ts, body.as_bytes());
    let r = h
        .http
        .post(h.url(&format!("/v1/callbacks/cluster-sms/{route}")))
        .header("x-herald-timestamp", ts)
        .header("x-herald-signature", sig)
        .body(body.to_string())
        .send()
        .await
        .expect("post a callback");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// Posts signed `delivered` receipts, in batches of 500, for these provider message ids.
async fn post_delivered(h: &Herald, ids: &[String]) {
    for batch in ids.chunks(500) {
        let body = serde_json::to_string(
            &batch
                .iter()
                .map(|id| json!({"message_id": id, "status": "delivered"}))
                .collect::<Vec<_>>(),
        )
        .expect("receipts json");
        let (status, text) = post_callback(h, "receipts", &body).await;
        assert_eq!(status, 200, "receipts: {text}");
        let tally: Value = serde_json::from_str(&text).expect("tally");
        assert_eq!(
            tally["unknown"], 0,
            "receipts no instance could place: {tally}"
        );
    }
}

fn count(view: &Value, path: &[&str]) -> u64 {
    let mut v = view;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

/// The most ids that arrived within any `window`.
fn max_in_window(arrivals: &mut [Instant], window: Duration) -> usize {
    arrivals.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for end in 0..arrivals.len() {
        while arrivals[end] - arrivals[start] >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_a_job_and_survive_losing_one() {
    let _one = ONE_AT_A_TIME.lock().await;
    let setup = Setup {
        contacts: SECOND_JOB,
        rate: RATE,
        idempotent: true,
    };
    let mut fleet = Fleet::start(INSTANCES, 7, &setup).await;
    let received = fleet.received.clone();
    let fleet = &mut fleet.instances;

    // The first job, submitted to instance 0, read back from instance 1.
    let first = submit(&fleet[0], "cluster-first", FIRST_JOB).await;
    let first_view = wait_completed(&fleet[1], &first).await;
    assert_eq!(
        count(&first_view, &["counts", "sent"]),
        FIRST_JOB as u64,
        "{first_view:#}"
    );

    // The second job, submitted to instance 1; instance 2 dies a third of the way through.
    let started = Instant::now();
    let second = submit(&fleet[1], "cluster-second", SECOND_JOB).await;
    let kill_at = FIRST_JOB + (SECOND_JOB - FIRST_JOB) / 3;
    while received.tally().distinct < kill_at {
        assert!(
            started.elapsed() < COMPLETION_TIMEOUT,
            "the second job stalled before the kill: {:?}",
            received.tally()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fleet[2].sigkill();
    let killed_at = Instant::now();
    println!(
        "instance-2 killed {:?} into the second job, with {} ids at the provider",
        started.elapsed(),
        received.tally().distinct
    );
    let view = wait_completed(&fleet[0], &second).await;
    let elapsed = started.elapsed();
    println!(
        "second job completed {elapsed:?} after submission ({:?} after the kill)",
        killed_at.elapsed()
    );

    // Every instance still up reports the same figures (each learns of the completion at its
    // next read of the job's record).
    let eligible = (SECOND_JOB - FIRST_JOB) as u64;
    let other = wait_completed(&fleet[1], &second).await;
    for v in [&view, &other] {
        assert_eq!(v["status"], "completed", "{v:#}");
        assert_eq!(count(v, &["counts", "sent"]), eligible, "{v:#}");
        assert_eq!(
            count(v, &["counts", "rejected", "frequency_capped"]),
            FIRST_JOB as u64,
            "{v:#}"
        );
        assert_eq!(count(v, &["counts", "failed"]), 0, "{v:#}");
        assert_eq!(
            v["counts"]["cost_micros"].as_i64(),
            Some(eligible as i64 * 45_000),
            "{v:#}"
        );
    }

    // What the provider saw, message by message.
    assert_eq!(received.malformed.load(Ordering::SeqCst), 0);
    let mut owner: HashMap<String, (u8, usize)> = HashMap::new();
    for i in 0..SECOND_JOB {
        let contact = format!("c{i}");
        if i < FIRST_JOB {
            owner.insert(
                MessageId::derive(&first, &contact, Channel::Sms).to_string(),
                (1, i),
            );
        }
        owner.insert(
            MessageId::derive(&second, &contact, Channel::Sms).to_string(),
            (2, i),
        );
    }
    let by_id = received.by_id.lock().clone();
    let mut per_contact = vec![0u32; SECOND_JOB];
    let mut repeats = 0u64;
    for (id, n) in &by_id {
        let &(job, contact) = owner
            .get(id)
            .unwrap_or_else(|| panic!("the provider got an id of no audience: {id}"));
        per_contact[contact] += 1;
        repeats += u64::from(n - 1);
        if job == 2 {
            assert!(
                contact >= FIRST_JOB,
                "contact c{contact} got a message past its cap"
            );
        }
    }
    let never: Vec<usize> = (0..SECOND_JOB)
        .filter(|&c| per_contact[c] == 0)
        .take(5)
        .collect();
    assert!(
        never.is_empty(),
        "contacts that never got their message: {never:?}"
    );
    let twice: Vec<usize> = (0..SECOND_JOB)
        .filter(|&c| per_contact[c] > 1)
        .take(5)
        .collect();
    assert!(
        twice.is_empty(),
        "contacts over their cap of one: {twice:?}"
    );
    assert_eq!(by_id.len(), SECOND_JOB);
    println!(
        "provider: {} distinct ids, {repeats} repeated receptions of an id (sent again after the takeover, dropped by id)",
        by_id.len()
    );

    // The shared rate limit held across the instances (repeats are sends too). The limiter
    // bounds when parts are handed out (the burst plus the rate over any window); the mock
    // counts when requests arrive, which on this machine (three gateways, Redis and the mock
    // on two cores) can lag a hand-out by a scheduling hiccup. The bound allows the burst and
    // a quarter of a second of the rate for that lag: 2.8% over 10 s.
    let mut arrivals = received.arrivals.lock().clone();
    let window = Duration::from_secs(10);
    let max10 = max_in_window(&mut arrivals, window);
    let bound = (RATE * 10 + BURST + RATE / 4) as f64;
    println!(
        "rate: at most {max10} ids in any 10 s (limit {} per 10 s, bound {bound:.0}); {:.0} ids/s over the second job",
        RATE * 10,
        (eligible + repeats) as f64 / elapsed.as_secs_f64()
    );
    assert!(
        max10 as f64 <= bound,
        "{max10} ids in one 10-second window: over {bound:.0}"
    );

    // Receipts reach any instance: 3,000 messages sent by whichever instance held their shard
    // are reported delivered to instance 0, then again to instance 1; both count each once.
    let sample: Vec<String> = (FIRST_JOB..FIRST_JOB + 3_000)
        .map(|i| {
            format!(
                "p-{}",
                MessageId::derive(&second, &format!("c{i}"), Channel::Sms)
            )
        })
        .collect();
    post_delivered(&fleet[0], &sample).await;
    post_delivered(&fleet[1], &sample).await;
    let started = Instant::now();
    loop {
        let mut seen = Vec::new();
        for h in &fleet[..2] {
            let (_, v) = h.get(&format!("/v1/jobs/{second}")).await.expect("read");
            seen.push(count(&v, &["counts", "delivered"]));
        }
        if seen.iter().all(|&d| d == sample.len() as u64) {
            break;
        }
        assert!(
            seen.iter().all(|&d| d <= sample.len() as u64),
            "a receipt counted twice: delivered {seen:?} of {}",
            sample.len()
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "delivered counts {seen:?}, expected {} on both instances",
            sample.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for h in fleet.iter_mut().filter(|h| h.child.is_some()) {
        let status = h.stop().await;
        assert!(status.success(), "herald exited badly: {status}");
    }
}

/// A provider that cannot drop repeats: what the dead instance had in flight is marked in
/// doubt by the instance taking its shards over, never sent a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_never_resends_to_a_provider_without_dedup() {
    let _one = ONE_AT_A_TIME.lock().await;
    const RECIPIENTS: usize = 40_000;
    let setup = Setup {
        contacts: RECIPIENTS,
        rate: 4_000,
        idempotent: false,
    };
    let mut fleet = Fleet::start(2, 11, &setup).await;
    let received = fleet.received.clone();
    let fleet = &mut fleet.instances;
    let job = submit(&fleet[0], "no-dedup", RECIPIENTS).await;
    let started = Instant::now();
    while received.tally().distinct < RECIPIENTS / 3 {
        assert!(started.elapsed() < COMPLETION_TIMEOUT, "the job stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fleet[1].sigkill();
    let view = wait_completed(&fleet[0], &job).await;
    let sent = count(&view, &["counts", "sent"]);
    let in_doubt = count(&view, &["counts", "in_doubt"]);
    let by_id = received.by_id.lock().clone();
    let twice: Vec<&String> = by_id
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(id, _)| id)
        .take(5)
        .collect();
    println!(
        "no dedup: sent {sent}, in doubt {in_doubt}, {} distinct ids at the provider",
        by_id.len()
    );
    assert!(twice.is_empty(), "ids the provider got twice: {twice:?}");
    assert_eq!(sent + in_doubt, RECIPIENTS as u64, "{view:#}");
    assert!(
        by_id.len() as u64 >= sent,
        "every sent message reached the provider"
    );
    assert!(
        by_id.len() as u64 <= sent + in_doubt,
        "only in-doubt messages may have reached it besides the sent ones"
    );
    // In doubt: at most what the dead instance had in flight: two chunks per worker (one at the
    // provider, one ready to go), and as much again for marks written ahead of the rate limiter.
    assert!(in_doubt <= 4 * 200 * 4, "{in_doubt} in doubt");

    // Ops see the fleet shrink and nothing left unwritten.
    let started = Instant::now();
    loop {
        let metrics = fleet[0]
            .http
            .get(fleet[0].url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        let has = |line: &str| metrics.lines().any(|l| l == line);
        if has("herald_cluster_instances 1") && has("herald_cluster_outcomes_unwritten 0") {
            assert!(
                has("herald_cluster_shards_held 0"),
                "a finished job holds no shard"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "cluster gauges: {}",
            metrics
                .lines()
                .filter(|l| l.starts_with("herald_cluster"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = fleet[0].stop().await;
    assert!(status.success(), "herald exited badly: {status}");
}
