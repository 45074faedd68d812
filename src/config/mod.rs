//! Configuration: the commented default TOML compiled into the binary, an optional file, then
//! environment overrides. Validated once, reporting every problem at once; binds nothing.

mod callbacks;
mod cloud;
mod compliance;
mod http;
mod model;
mod push;
mod routes;
mod state;
mod tenants;
mod ui;

pub use callbacks::{CallbacksConfig, MessageIdFormat, Secret, TrackingConfig};
pub use compliance::{ComplianceConfig, ComplianceRuleConfig, RuleKind, SignaturePosition};
pub use http::MAX_HTTP_BATCH_SIZE;
pub use model::*;
pub use routes::{ChannelLimitConfig, HealthConfig, RouteConfig, RouteStrategy};
pub use state::{ClusterConfig, RedisStateConfig, StateBackend, StateConfig};
pub use tenants::{limits_of, TenantConfig, ANY_TENANT};
pub use ui::UiConfig;

use std::path::{Path, PathBuf};

/// The default configuration, as shipped in `config/herald.toml`.
pub const DEFAULT_TOML: &str = include_str!("../../config/herald.toml");

/// The API key the shipped configuration accepts, so that `cargo run` works at once. It is
/// public knowledge: herald refuses to serve it on a non-loopback address unless told that
/// this is a demo (see [`Config::public_demo_key`]).
pub const DEMO_API_KEY: &str = "dev-key-change-me";

/// Where the shipped configuration names the demo snapshot (`snapshot.load_path`). A copy
/// of that configuration started from another directory falls back to the built-in copy
/// ([`DEMO_SNAPSHOT_CSV`]) when no file by that name is beside it.
pub const DEMO_SNAPSHOT_PATH: &str = "demo-contacts.csv";

/// The demo snapshot shipped beside the default configuration, used when the default config
/// is embedded and the file is not on disk.
pub const DEMO_SNAPSHOT_CSV: &str = include_str!("../../config/demo-contacts.csv");

/// Everything that can be wrong with a configuration, listed together.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config is not valid TOML: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid config:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Where the configuration came from, so relative paths inside it resolve sensibly.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    Embedded,
    File(PathBuf),
}

/// A validated configuration plus its origin.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub source: ConfigSource,
}

impl LoadedConfig {
    /// Reads `path` (or the embedded default), applies `env` overrides and validates.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<LoadedConfig, ConfigError> {
        let (text, source) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?,
                ConfigSource::File(p.to_path_buf()),
            ),
            None => (DEFAULT_TOML.to_string(), ConfigSource::Embedded),
        };
        let mut config: Config = toml::from_str(&text)?;
        config.apply_env(env);
        config.validate().map_err(ConfigError::Invalid)?;
        let loaded = LoadedConfig { config, source };
        // The content rules' lists are read now, so a missing one stops the start.
        loaded
            .config
            .compliance
            .load(&|p| loaded.resolve(p))
            .map_err(ConfigError::Invalid)?;
        Ok(loaded)
    }

    /// Resolves a path named in the config against the config file's directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        match (&self.source, p.is_absolute()) {
            (ConfigSource::File(f), false) => f.parent().unwrap_or(Path::new(".")).join(p),
            (ConfigSource::Embedded, false) => Path::new("config").join(p),
            _ => p.to_path_buf(),
        }
    }
}

/// Reads the process environment; tests pass their own closure instead.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = LoadedConfig::load(None, &no_env).expect("default config");
        assert_eq!(c.config.providers[0].name, "sandbox");
        assert!(!c.config.auth.api_keys.is_empty());
    }

    #[test]
    fn env_overrides_listen_and_adds_keys() {
        let env = |k: &str| match k {
            "HERALD_LISTEN" => Some("127.0.0.1:9999".to_string()),
            "HERALD_API_KEYS" => Some("a, b".to_string()),
            _ => None,
        };
        let c = LoadedConfig::load(None, &env).expect("config");
        assert_eq!(c.config.server.listen.port(), 9999);
        assert!(c.config.auth.api_keys.iter().any(|k| k == "a"));
        assert!(c.config.auth.api_keys.iter().any(|k| k == "b"));
    }

    #[test]
    fn the_shipped_config_names_the_demo_snapshot() {
        let c = LoadedConfig::load(None, &no_env).expect("default config");
        assert_eq!(
            c.config.snapshot.load_path.as_deref(),
            Some(DEMO_SNAPSHOT_PATH)
        );
    }

    #[test]
    fn the_demo_key_is_refused_on_a_public_address_unless_allowed() {
        let c = LoadedConfig::load(None, &no_env).expect("default config");
        assert_eq!(c.config.auth.api_keys, vec![DEMO_API_KEY.to_string()]);
        assert!(c.config.public_demo_key().is_none(), "loopback by default");
        let mut public = c.config.clone();
        public.server.listen = "0.0.0.0:8080".parse().expect("addr");
        assert!(public.public_demo_key().is_some());
        public.auth.allow_demo_key = true;
        assert!(public.public_demo_key().is_none());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = DEFAULT_TOML
            .replace("default_region = \"CN\"", "default_region = \"China\"")
            .replace("start = \"08:00\"", "start = \"8am\"")
            .replace("workers = 8", "workers = 0");
        let mut c: Config = toml::from_str(&text).expect("toml");
        let errs = c.validate().expect_err("invalid");
        assert!(errs.len() >= 3, "{errs:?}");
        c.dispatch.workers = 1;
    }
}
