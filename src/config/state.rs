//! Where shared state lives: the `[state]` table and its `[state.redis]` settings, with the
//! `HERALD_REDIS_URL` override and their validation.

use std::fmt;

use serde::Deserialize;

/// Where shared state lives.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub backend: StateBackend,
    /// Read only when `backend = "redis"`.
    pub redis: RedisStateConfig,
    /// Several instances sharing the work of every job (needs `backend = "redis"`).
    pub cluster: ClusterConfig,
}

/// Work sharing between instances: the `[state.cluster]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Off: each instance runs the jobs it accepted. On: every instance takes shards of
    /// every job.
    pub enabled: bool,
    /// This instance's name in shard leases; empty for host name plus process id.
    pub instance_id: String,
    /// A dead instance's shards are taken over by the others within this time.
    pub lease_ttl_ms: u64,
    /// How often jobs, statuses and shared counters are read from Redis.
    pub poll_ms: u64,
    /// How long a finished job's records (audience, outcomes, counts) stay in Redis for
    /// reports; then they expire.
    pub finished_job_retention_seconds: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            instance_id: String::new(),
            lease_ttl_ms: 10_000,
            poll_ms: 500,
            finished_job_retention_seconds: 30 * 86_400,
        }
    }
}

impl ClusterConfig {
    /// The configured id, or one made of the host name and process id (unique per process).
    pub fn instance_id(&self) -> String {
        if !self.instance_id.trim().is_empty() {
            return self.instance_id.trim().to_string();
        }
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "herald".into());
        format!("{host}-{}", std::process::id())
    }
}

/// The state backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// Durable: the embedded database in the data directory (the default).
    #[default]
    Embedded,
    /// In memory only: lost on restart. For tests and benchmarks.
    Memory,
    /// Shared by every instance that names the same Redis and key prefix.
    Redis,
}

/// How to reach the Redis that holds shared state.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisStateConfig {
    /// `redis://[:password@]host:port[/db]`. With `cluster = true`, a comma-separated list of
    /// seed nodes is accepted; the rest of the cluster is discovered from them.
    pub url: String,
    /// Connections per instance. Each is multiplexed, so a few carry many concurrent calls.
    pub pool_size: usize,
    /// Starts every key, so several deployments can share one Redis without meeting.
    pub key_prefix: String,
    /// Talk the Redis Cluster protocol (keys are hash-tagged for it in any case).
    pub cluster: bool,
    /// Bound on one store call, from taking a connection to the last reply: past it the
    /// call fails as "unavailable" instead of stalling dispatch.
    pub timeout_ms: u64,
}

impl Default for RedisStateConfig {
    fn default() -> Self {
        RedisStateConfig {
            url: "redis://127.0.0.1:6379".into(),
            pool_size: 16,
            key_prefix: "herald".into(),
            cluster: false,
            timeout_ms: 2_000,
        }
    }
}

impl RedisStateConfig {
    /// The URLs in `url`: one, or the cluster's seed nodes.
    pub fn urls(&self) -> Vec<String> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// The URL may carry a password: it is never printed.
impl fmt::Debug for RedisStateConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStateConfig")
            .field("url", &mask_credentials(&self.url))
            .field("pool_size", &self.pool_size)
            .field("key_prefix", &self.key_prefix)
            .field("cluster", &self.cluster)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// `redis://user:pw@host` becomes `redis://***@host`; URLs without credentials pass as is.
fn mask_credentials(urls: &str) -> String {
    urls.split(',')
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}***{}", &u[..scheme + 3], &u[at..])
            }
            _ => u.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Applies `HERALD_REDIS_URL` (a deployment names its Redis without editing the file).
pub(super) fn apply_env(state: &mut StateConfig, env: &dyn Fn(&str) -> Option<String>) {
    if let Some(url) = env("HERALD_REDIS_URL").filter(|v| !v.trim().is_empty()) {
        state.redis.url = url.trim().to_string();
    }
    if let Some(on) = env("HERALD_CLUSTER") {
        state.cluster.enabled = matches!(on.trim(), "1" | "true" | "yes" | "on");
    }
    if let Some(id) = env("HERALD_INSTANCE_ID").filter(|v| !v.trim().is_empty()) {
        state.cluster.instance_id = id.trim().to_string();
    }
}

/// Adds every problem with the state settings to `errs`. The Redis table is checked only
/// when it is used, so a stray value cannot stop an embedded deployment.
pub(super) fn validate(state: &StateConfig, errs: &mut Vec<String>) {
    if state.cluster.enabled {
        if state.backend != StateBackend::Redis {
            errs.push(
                "state.cluster.enabled: work sharing needs backend = \"redis\" (the instances share it)"
                    .into(),
            );
        }
        if state.cluster.lease_ttl_ms < 300 {
            errs.push("state.cluster.lease_ttl_ms: must be at least 300".into());
        }
        if state.cluster.poll_ms == 0 {
            errs.push("state.cluster.poll_ms: must be at least 1".into());
        }
        if state.cluster.finished_job_retention_seconds < 60 {
            errs.push("state.cluster.finished_job_retention_seconds: must be at least 60".into());
        }
        let id = &state.cluster.instance_id;
        if id.len() > 128 || id.chars().any(char::is_whitespace) {
            errs.push("state.cluster.instance_id: at most 128 characters, no spaces".into());
        }
    }
    if state.backend != StateBackend::Redis {
        return;
    }
    let r = &state.redis;
    let urls = r.urls();
    if urls.is_empty() {
        errs.push("state.redis.url: must name a Redis (redis://host:port)".into());
    }
    for u in &urls {
        if !u.starts_with("redis://") {
            errs.push(format!(
                "state.redis.url: {:?} must start with redis:// (TLS is not supported)",
                mask_credentials(u)
            ));
        }
    }
    if urls.len() > 1 && !r.cluster {
        errs.push("state.redis.url: several URLs are only accepted with cluster = true".into());
    }
    if r.pool_size == 0 {
        errs.push("state.redis.pool_size: must be at least 1".into());
    }
    if r.timeout_ms == 0 {
        errs.push("state.redis.timeout_ms: must be at least 1".into());
    }
    let prefix_ok = !r.key_prefix.is_empty()
        && r.key_prefix.len() <= 64
        && r.key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if !prefix_ok {
        errs.push(format!(
            "state.redis.key_prefix: {:?} must be 1 to 64 of A-Z a-z 0-9 - _ . :",
            r.key_prefix
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(f: impl FnOnce(&mut RedisStateConfig)) -> StateConfig {
        let mut s = StateConfig {
            backend: StateBackend::Redis,
            redis: RedisStateConfig::default(),
            cluster: ClusterConfig::default(),
        };
        f(&mut s.redis);
        s
    }

    #[test]
    fn defaults_are_valid_and_every_problem_is_listed() {
        let mut errs = Vec::new();
        validate(&redis(|_| {}), &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        validate(
            &redis(|r| {
                r.url = "rediss://h:1,redis://h:2".into();
                r.pool_size = 0;
                r.key_prefix = "has space{".into();
                r.timeout_ms = 0;
            }),
            &mut errs,
        );
        assert_eq!(errs.len(), 5, "{errs:?}");
    }

    #[test]
    fn work_sharing_needs_redis_and_sane_timings() {
        let mut s = redis(|_| {});
        s.cluster.enabled = true;
        let mut errs = Vec::new();
        validate(&s, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        s.backend = StateBackend::Embedded;
        s.cluster.lease_ttl_ms = 10;
        s.cluster.instance_id = "has space".into();
        validate(&s, &mut errs);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("state.cluster.enabled"), "{errs:?}");
        let mut env_on = StateConfig::default();
        apply_env(&mut env_on, &|k| match k {
            "HERALD_CLUSTER" => Some("1".into()),
            "HERALD_INSTANCE_ID" => Some(" node-7 ".into()),
            _ => None,
        });
        assert!(env_on.cluster.enabled);
        assert_eq!(env_on.cluster.instance_id(), "node-7");
    }

    #[test]
    fn cluster_accepts_seed_lists() {
        let mut errs = Vec::new();
        validate(
            &redis(|r| {
                r.url = "redis://a:1, redis://b:2".into();
                r.cluster = true;
            }),
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            redis(|r| r.url = "redis://a:1, redis://b:2".into())
                .redis
                .urls(),
            ["redis://a:1", "redis://b:2"]
        );
    }

    #[test]
    fn unused_redis_settings_are_not_checked() {
        let mut s = redis(|r| r.pool_size = 0);
        s.backend = StateBackend::Embedded;
        let mut errs = Vec::new();
        validate(&s, &mut errs);
        assert!(errs.is_empty());
    }

    #[test]
    fn passwords_never_print() {
        let c = redis(|r| r.url = "redis://:s3cret@db:6379".into());
        let shown = format!("{:?}", c.redis);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redis://***@db:6379"), "{shown}");
    }

    #[test]
    fn the_documented_example_parses_to_the_defaults() {
        // Uncomment the `[state.redis]` example (up to the next blank line) and switch to it.
        let mut in_example = false;
        let text: String = super::super::DEFAULT_TOML
            .lines()
            .map(|l| {
                in_example = (in_example || l == "# [state.redis]") && !l.is_empty();
                let setting = l.strip_prefix("# ").filter(|rest| {
                    rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        })
                });
                match setting {
                    Some(rest) if in_example => format!("{rest}\n"),
                    _ if l == "backend = \"embedded\"" => "backend = \"redis\"\n".into(),
                    _ => format!("{l}\n"),
                }
            })
            .collect();
        assert!(
            text.contains("\n[state.redis]\n"),
            "the example is still there"
        );
        let c: super::super::Config = toml::from_str(&text).expect("example parses");
        assert_eq!(c.state.backend, StateBackend::Redis);
        let d = RedisStateConfig::default();
        let r = &c.state.redis;
        assert_eq!(
            (&r.url, r.pool_size, &r.key_prefix, r.cluster, r.timeout_ms),
            (&d.url, d.pool_size, &d.key_prefix, d.cluster, d.timeout_ms)
        );
        c.validate().expect("valid");
    }

    #[test]
    fn the_environment_names_the_redis() {
        let mut s = StateConfig::default();
        apply_env(&mut s, &|k| {
            (k == "HERALD_REDIS_URL").then(|| " redis://10.0.0.5:6380 ".to_string())
        });
        assert_eq!(s.redis.url, "redis://10.0.0.5:6380");
        apply_env(&mut s, &|_| Some("  ".to_string()));
        assert_eq!(
            s.redis.url, "redis://10.0.0.5:6380",
            "blank values are ignored"
        );
    }
}
