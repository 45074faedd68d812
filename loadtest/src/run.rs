//! `herald-loadtest run <scenario.toml>`: a promotion rehearsed end to end on this machine.
//!
//! Synthesises the scenario's population, starts the mock provider as a child process on
//! loopback, starts herald in process with the generic HTTP provider pointed at it, loads
//! the snapshot over HTTP, streams the job as NDJSON, shows progress while it runs, and
//! prints a summary: throughput, provider latency (measured in the mock), duplicates and
//! losses (which must both be 0), rejections by reason against what the synthesis expects,
//! and cost. The mock is killed at the end, on error too.
//!
//! The way back is rehearsed too (unless `[receipts] enabled = false`): the run draws a
//! callback secret, gives it to herald through the variable the provider's
//! `callback_secret_envs` names and to the mock through its environment, and points herald's
//! tracked links at herald itself on loopback. The mock sends a signed receipt for each
//! message it accepted and clicks some tracked links; after the job completes the run waits
//! (up to `receipts.wait_seconds`) until herald has applied them all, and checks herald's
//! delivered and undelivered counts and recorded clicks against what the mock decided.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use herald::config::{Config, PriceConfig, ProviderKind, DEFAULT_TOML};
use herald::domain::{Channel, Currency};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rand::Rng;
use serde_json::{json, Value};

use crate::child::MockProcess;
use crate::mock::stats::StatsView;
use crate::population::Population;
use crate::report::{self, Outcome};
use crate::scenario::Scenario;
use crate::way_back::WayBack;

const KEY: &str = "loadtest-key";
/// The variable herald's provider config names for the credential (supplied in process,
/// never set in the real environment).
const TOKEN_VAR: &str = "HERALD_LOADTEST_PROVIDER_TOKEN";
/// The variable the provider's `callback_secret_envs` names (also supplied in process).
const CALLBACK_SECRET_VAR: &str = "HERALD_LOADTEST_CALLBACK_SECRET";
const PROVIDER: &str = "mock";

/// Secrets and addresses of one run.
struct Wiring<'a> {
    mock_url: &'a str,
    /// The CA file of an `https://` mock.
    ca_file: Option<&'a str>,
    data_dir: &'a str,
    credential: &'a str,
    /// Receipts are signed with it; `None` when the scenario turns receipts off.
    callback_secret: Option<&'a str>,
    /// herald's own address, for its listener and its tracked links.
    herald_port: u16,
}

/// Removes the run's data directory however the run ends.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn herald_config(s: &Scenario, w: &Wiring<'_>) -> anyhow::Result<Config> {
    let mut c: Config = toml::from_str(DEFAULT_TOML)?;
    c.server.listen = SocketAddr::from(([127, 0, 0, 1], w.herald_port));
    c.server.data_dir = w.data_dir.to_string();
    if w.herald_port != 0 {
        // Tracked links point at herald itself, so the mock can click them.
        c.tracking.base_url = format!("http://127.0.0.1:{}", w.herald_port);
    }
    c.auth.api_keys = vec![KEY.into()];
    c.snapshot.load_path = None;
    c.snapshot.default_region = "CN".into();
    c.dispatch.workers = s.herald.workers;
    c.dispatch.batch_size = s.herald.batch_size;
    c.dispatch.retry.max_attempts = s.herald.retry_max_attempts;
    c.dispatch.retry.initial_delay_ms = s.herald.retry_initial_delay_ms;
    c.dispatch.retry.max_delay_ms = s.herald.retry_max_delay_ms;
    c.policy.quiet_hours.enabled = s.herald.quiet_hours;
    if !s.herald.frequency_caps {
        c.policy.frequency_caps.clear();
    }
    let currency = Currency::parse(&s.prices.currency).ok_or_else(|| {
        anyhow!(
            "prices.currency: {:?} is not a currency code",
            s.prices.currency
        )
    })?;
    c.providers.truncate(1);
    let p = c
        .providers
        .first_mut()
        .ok_or_else(|| anyhow!("default config has no provider"))?;
    p.name = PROVIDER.into();
    p.kind = ProviderKind::Http;
    p.channel = Channel::Sms;
    p.currency = currency;
    p.url = Some(format!("{}/v1/messages", w.mock_url));
    p.ca_file = w.ca_file.map(str::to_string);
    p.auth_header = "authorization".into();
    p.auth_header_env = Some(TOKEN_VAR.into());
    p.batch_size = s.provider.batch_size;
    p.max_in_flight = s.provider.max_in_flight;
    p.request_timeout_ms = s.provider.request_timeout_ms;
    p.connect_timeout_ms = s.provider.connect_timeout_ms;
    p.rate_limit_parts_per_second = s.provider.rate_limit_parts_per_second;
    p.burst_parts = s.provider.burst_parts;
    p.callback_secret_envs = vec![CALLBACK_SECRET_VAR.into()];
    c.prices = s
        .prices
        .by_country
        .iter()
        .map(|(country, &unit_micros)| PriceConfig {
            provider: PROVIDER.into(),
            channel: Channel::Sms,
            country: country.clone(),
            unit_micros,
        })
        .chain(std::iter::once(PriceConfig {
            provider: PROVIDER.into(),
            channel: Channel::Sms,
            country: "*".into(),
            unit_micros: s.prices.default_micros,
        }))
        .collect();
    c.apply_env(&|k| match k {
        TOKEN_VAR => Some(w.credential.to_string()),
        CALLBACK_SECRET_VAR => w.callback_secret.map(str::to_string),
        _ => None,
    });
    c.validate().map_err(|errs| {
        anyhow!(
            "herald config for the scenario is invalid:\n  - {}",
            errs.join("\n  - ")
        )
    })?;
    Ok(c)
}

fn bar(mp: &MultiProgress, len: u64, template: &str) -> ProgressBar {
    let b = mp.add(ProgressBar::new(len));
    b.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b
}

/// A free port on 127.0.0.1 (free when asked: the caller binds it at once).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    Ok(l.local_addr()?.port())
}

/// Builds and starts herald on a port picked in advance (its tracked links must name it);
/// tries again with another port if someone took it in between.
async fn start_herald(s: &Scenario, w: &mut Wiring<'_>) -> anyhow::Result<herald::app::Running> {
    let mut last = None;
    for _ in 0..3 {
        w.herald_port = free_port()?;
        let config = herald_config(s, w)?;
        match crate::start_gateway(config).await {
            Ok(running) => return Ok(running),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("herald did not start")))
}

/// Runs the scenario at `path`; `recipients` overrides its size. With `summary`, the
/// figures are also written there as JSON.
pub async fn run(
    path: &Path,
    recipients: Option<usize>,
    summary: Option<&Path>,
    https: bool,
) -> anyhow::Result<()> {
    let mut s = Scenario::load(path)?;
    if let Some(n) = recipients {
        s.recipients = n;
    }
    let mp = MultiProgress::new();
    if !s.description.trim().is_empty() {
        println!("{}", s.description.trim());
    }
    println!(
        "scenario {}: {} contacts; herald HTTP provider: {} messages/request, {} in flight, timeout {} ms",
        s.name,
        report::thousands(s.recipients as u64),
        s.provider.batch_size,
        s.provider.max_in_flight,
        s.provider.request_timeout_ms
    );

    let t = Instant::now();
    let spin = bar(&mp, 0, "{spinner} synthesising {msg}");
    spin.enable_steady_tick(Duration::from_millis(120));
    spin.set_message(format!(
        "{} contacts",
        report::thousands(s.recipients as u64)
    ));
    let mix = s.audience.clone();
    let (n, seed) = (s.recipients, s.seed);
    let pop =
        Arc::new(tokio::task::spawn_blocking(move || Population::generate(n, &mix, seed)).await?);
    let csv = pop.snapshot_csv();
    spin.finish_and_clear();
    let synth_time = t.elapsed();

    let credential = format!("Bearer {:032x}", rand::thread_rng().gen::<u128>());
    let callback_secret = s
        .receipts
        .enabled
        .then(|| format!("{:032x}", rand::thread_rng().gen::<u128>()));
    // A timed-out request is held a second past herald's timeout.
    let hold_ms = s.provider.request_timeout_ms + 1_000;
    let mock = MockProcess::start(
        &s.mock,
        &s.receipts,
        hold_ms,
        s.seed,
        &credential,
        callback_secret.as_deref(),
        https,
    )?;
    let (mock_url, ca_file) = match &mock.https {
        Some((url, ca)) => (url.clone(), Some(ca.as_str())),
        None => (format!("http://{}", mock.addr), None),
    };
    println!(
        "herald speaks to the mock over {}",
        if https {
            "HTTPS (rustls, HTTP/2 by ALPN, the mock's own CA)"
        } else {
            "plain HTTP/1.1"
        }
    );

    let dir = TempDir(std::env::temp_dir().join(format!("herald-loadtest-{}", std::process::id())));
    let data_dir = dir.0.display().to_string();
    let mut wiring = Wiring {
        mock_url: &mock_url,
        ca_file,
        data_dir: &data_dir,
        credential: &credential,
        callback_secret: callback_secret.as_deref(),
        herald_port: 0,
    };
    let running = start_herald(&s, &mut wiring).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let result = async {
        if s.receipts.enabled {
            mock.set_herald(&http, &credential, &base).await?;
        }
        drive(&s, &pop, csv, &mp, &http, &base, &mock, synth_time, summary).await
    }
    .await;
    running.stop().await;
    drop(mock);
    drop(dir);
    result
}

/// Everything after start-up; the caller stops herald and the mock whatever happens here.
#[allow(clippy::too_many_arguments)]
async fn drive(
    s: &Scenario,
    pop: &Arc<Population>,
    csv: Vec<u8>,
    mp: &MultiProgress,
    http: &reqwest::Client,
    base: &str,
    mock: &MockProcess,
    synth_time: Duration,
    summary: Option<&Path>,
) -> anyhow::Result<()> {
    // Snapshot, streamed in 1 MiB pieces so the bar follows the upload.
    let bytes = csv.len() as u64;
    let up = bar(
        mp,
        bytes,
        "snapshot  [{bar:40}] {bytes}/{total_bytes} {msg}",
    );
    let csv = bytes::Bytes::from(csv);
    let pieces: Vec<bytes::Bytes> = (0..csv.len())
        .step_by(1 << 20)
        .map(|i| csv.slice(i..(i + (1 << 20)).min(csv.len())))
        .collect();
    let up2 = up.clone();
    let body = futures::stream::iter(pieces.into_iter().map(move |p| {
        up2.inc(p.len() as u64);
        Ok::<_, std::io::Error>(p)
    }));
    let t = Instant::now();
    let r = http
        .put(format!("{base}/v1/snapshot"))
        .bearer_auth(KEY)
        .header("content-type", "text/csv")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("snapshot rejected: {}", r.text().await?);
    }
    let loaded: Value = r.json().await?;
    let snapshot_time = t.elapsed();
    up.finish_with_message(format!("loaded in {:.1} s", snapshot_time.as_secs_f64()));

    // The job, streamed as NDJSON.
    let audience = pop.expected.audience;
    let intake = bar(
        mp,
        audience,
        "intake    [{bar:40}] {human_pos}/{human_len} recipients {msg}",
    );
    let head = json!({"campaign_id": s.template.campaign_id, "channel": "sms",
        "purpose": "marketing", "template": {"body": s.template.body}});
    let ib = intake.clone();
    let body = pop.ndjson_job(&head, move |n| ib.inc(n));
    let t = Instant::now();
    let id = crate::submit_ndjson(http, base, reqwest::Body::wrap_stream(body)).await?;
    let intake_time = t.elapsed();
    intake.finish_with_message(format!("in {:.1} s", intake_time.as_secs_f64()));

    // Dispatch, watched until the job completes.
    let send = bar(
        mp,
        audience,
        "dispatch  [{bar:40}] {human_pos}/{human_len} decided {msg}",
    );
    let t = Instant::now();
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let limit = Duration::from_secs(s.herald.timeout_seconds);
    let done = loop {
        let j = crate::get_job(http, base, &id).await?;
        let c = &j["counts"];
        let sent = c["sent"].as_u64().unwrap_or(0);
        let failed = c["failed"].as_u64().unwrap_or(0);
        let rejected: u64 = c["rejected"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        let elapsed = t.elapsed().as_secs_f64();
        samples.push((elapsed, sent));
        let m = mock.stats(http).await.unwrap_or_default();
        send.set_position(sent + failed + rejected);
        send.set_message(format!(
            "| sent {} ({}/s) retries {} | mock 429 {} 5xx {} timeouts {}",
            report::thousands(sent),
            report::thousands((sent as f64 / elapsed.max(0.001)) as u64),
            c["retries"],
            m.throttled,
            m.errors,
            m.timeouts
        ));
        if j["status"] == "completed" {
            break j;
        }
        if matches!(
            j["status"].as_str(),
            Some("failed" | "cancelled" | "budget_exhausted")
        ) {
            bail!("job ended {}: {j}", j["status"]);
        }
        if t.elapsed() > limit {
            bail!("job did not complete within {} s: {j}", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    send.finish();
    let wall = t.elapsed();
    let way_back = if s.receipts.enabled {
        Some(await_way_back(s, mp, http, base, mock, &id).await?)
    } else {
        None
    };
    let stats: StatsView = mock.stats(http).await?;
    let outcome = Outcome {
        scenario: s,
        expected: &pop.expected,
        contacts: pop.len() as u64,
        snapshot: &loaded,
        job: &done,
        mock: &stats,
        synth_time,
        snapshot_time,
        intake_time,
        dispatch_wall: wall,
        samples: &samples,
        way_back: way_back.as_ref(),
    };
    let problems = report::print(&outcome);
    if let Some(path) = summary {
        let text = serde_json::to_string_pretty(&report::summary(&outcome, &problems))?;
        std::fs::write(path, text)
            .with_context(|| format!("writing the summary to {}", path.display()))?;
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("the run failed its checks: {}", problems.join("; "))
    }
}

/// Waits until the mock has sent every receipt and click and herald has applied them (or
/// `receipts.wait_seconds` pass), then reads herald's job and its funnel report.
async fn await_way_back(
    s: &Scenario,
    mp: &MultiProgress,
    http: &reqwest::Client,
    base: &str,
    mock: &MockProcess,
    id: &str,
) -> anyhow::Result<WayBack> {
    let get = |path: String| async move {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(KEY)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("GET {path}: {}", r.status());
        }
        Ok::<Value, anyhow::Error>(r.json().await?)
    };
    let rb = bar(
        mp,
        0,
        "receipts  [{bar:40}] {human_pos}/{human_len} applied {msg}",
    );
    let t = Instant::now();
    let limit = Duration::from_secs(s.receipts.wait_seconds);
    let complete = loop {
        let m = mock.stats(http).await?.way_back;
        let j = get(format!("/v1/jobs/{id}")).await?;
        let c = &j["counts"];
        let settled: u64 = ["delivered", "undelivered", "expired"]
            .iter()
            .filter_map(|k| c[*k].as_u64())
            .sum();
        rb.set_length(m.planned);
        rb.set_position(settled);
        rb.set_message(format!(
            "| posted {} unknown-at-answer {} | clicks {}/{} redirected",
            report::thousands(m.sent),
            report::thousands(m.unknown),
            report::thousands(m.clicks_redirected),
            report::thousands(m.clicks_planned)
        ));
        if m.receipts_pending() == 0 && m.clicks_pending() == 0 && settled >= m.sent {
            break true;
        }
        if t.elapsed() > limit {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    rb.finish();
    let waited = t.elapsed();
    Ok(WayBack {
        complete,
        waited,
        job: get(format!("/v1/jobs/{id}")).await?,
        report: get(format!("/v1/jobs/{id}/report")).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_scenario_gives_a_valid_http_config() {
        let s: Scenario = toml::from_str("name = \"t\"\nrecipients = 10").expect("scenario");
        let w = Wiring {
            mock_url: "http://127.0.0.1:1",
            ca_file: None,
            data_dir: "/nonexistent",
            credential: "Bearer x",
            callback_secret: Some("s3cret"),
            herald_port: 4321,
        };
        let c = herald_config(&s, &w).expect("config");
        let p = &c.providers[0];
        assert_eq!(p.kind, ProviderKind::Http);
        assert_eq!(p.url.as_deref(), Some("http://127.0.0.1:1/v1/messages"));
        assert!(p.auth_value.is_some());
        assert_eq!(p.callback_secrets.len(), 1);
        assert_eq!(c.tracking.base_url, "http://127.0.0.1:4321");
        assert_eq!(c.server.listen.port(), 4321);
        assert_eq!(c.prices.len(), 7);
    }
}
