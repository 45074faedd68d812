//! `herald-loadtest cluster`: sends/s of one job shared by N gateways on one Redis.
//!
//! N gateways run in this process, each with its own dispatcher, Redis pools, shard leases
//! and data directory, all with work sharing on under a key prefix of their own on the Redis
//! given. The job goes to the first; every gateway takes its share of the shards. The
//! provider is the in-process sandbox (idempotent, 2 ms per call by default), rate limits
//! are off and the default frequency caps are on, so every decision checks and reserves its
//! cap in Redis. Run it with 1 and with 3 instances to compare; the keys are deleted after.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{json, Value};

use herald::config::{Config, DEFAULT_TOML};

use crate::{bench_config, start_gateway, submit_ndjson, synth, wait_completed, KEY};

/// What to run.
pub struct Settings {
    pub instances: usize,
    pub recipients: usize,
    pub workers: usize,
    pub redis_url: String,
}

pub async fn run(s: Settings) -> anyhow::Result<()> {
    if s.instances == 0 {
        bail!("--instances must be at least 1");
    }
    let prefix = format!("herald-loadtest-{}", uuid::Uuid::now_v7().simple());
    let root = std::env::temp_dir().join(format!("herald-loadtest-cluster-{}", std::process::id()));
    println!(
        "herald cluster benchmark: {} recipients, {} instance(s) × {} workers, Redis {}, sandbox provider, caps on, rate limits off",
        s.recipients, s.instances, s.workers, s.redis_url
    );
    let mut gateways = Vec::new();
    for n in 0..s.instances {
        let dir = root.join(format!("instance-{n}"));
        let mut c = bench_config(s.workers, 2, true, &dir.display().to_string())?;
        // The benchmark config drops caps; the shared path is measured with them.
        let defaults: Config = toml::from_str(DEFAULT_TOML)?;
        c.policy.frequency_caps = defaults.policy.frequency_caps;
        c.state.backend = herald::config::StateBackend::Redis;
        c.state.redis.url = s.redis_url.clone();
        c.state.redis.key_prefix = prefix.clone();
        c.state.cluster.enabled = true;
        c.state.cluster.instance_id = format!("bench-{n}");
        c.state.cluster.poll_ms = 200;
        gateways.push(start_gateway(c).await?);
    }
    let bases: Vec<String> = gateways
        .iter()
        .map(|g| format!("http://{}", g.addr))
        .collect();
    let http = reqwest::Client::new();

    let csv = synth::snapshot_csv(s.recipients);
    for base in &bases {
        let r = http
            .put(format!("{base}/v1/snapshot"))
            .bearer_auth(KEY)
            .header("content-type", "text/csv")
            .body(csv.clone())
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("snapshot refused: {}", r.text().await?);
        }
    }

    let head = json!({"campaign_id": "cluster-bench", "channel": "sms", "purpose": "marketing",
        "template": {"body": "Hi {{first_name}}, 20% off in {{city}} tonight only"}});
    let body = synth::ndjson_job(&head, s.recipients);
    let t = Instant::now();
    let id = submit_ndjson(&http, &bases[0], reqwest::Body::wrap_stream(body)).await?;
    println!(
        "intake: {} recipients accepted and published in {:.2}s",
        s.recipients,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let done = wait_completed(&http, &bases[bases.len() - 1], &id).await?;
    let run = t.elapsed().as_secs_f64();
    let c = &done["counts"];
    let sent = c["sent"].as_u64().unwrap_or(0);
    let rejected: u64 = c["rejected"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    println!(
        "dispatch: completed in {run:.2}s, as read on instance {}",
        bases.len() - 1
    );
    println!(
        "  sent     {sent:>9}  ({:.0} sends/s over all instances)",
        sent as f64 / run
    );
    println!("  failed   {:>9}  rejected {rejected}", c["failed"]);
    println!(
        "  segments {:>9}  cost {} micros {}",
        c["segments"], c["cost_micros"], c["currency"]
    );
    for g in gateways {
        g.stop().await;
    }
    let _ = std::fs::remove_dir_all(&root);
    let deleted = delete_keys(&s.redis_url, &prefix).await;
    println!("cleanup: {deleted} keys of prefix {prefix} deleted");
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

/// Deletes every key under the benchmark's prefix.
async fn delete_keys(url: &str, prefix: &str) -> usize {
    let Ok(client) = redis::Client::open(url) else {
        return 0;
    };
    let Ok(mut con) = client.get_multiplexed_async_connection().await else {
        return 0;
    };
    let pattern = format!("{{{prefix}[:}}]*");
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let Ok((next, keys)): redis::RedisResult<(u64, Vec<Vec<u8>>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await
        else {
            break;
        };
        for k in keys {
            if redis::cmd("DEL")
                .arg(k)
                .query_async::<i64>(&mut con)
                .await
                .is_ok()
            {
                deleted += 1;
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    deleted
}
