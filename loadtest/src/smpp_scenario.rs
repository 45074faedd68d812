//! An SMPP scenario file: a promotion sent by herald over SMPP to the SMSC sink. The `[smsc]`
//! table is the sink's behaviour ([`crate::smsc::SinkSettings`]), `[provider]` herald's SMPP
//! provider against it, `[herald]` the gateway. Turned into a herald config here.
//!
//! ```toml
//! name = "promotion-smpp"
//! recipients = 1_000_000
//! [smsc]
//! latency_ms = 1.0
//! receipt_delay_ms = 500
//! [provider]
//! binds = 4
//! window = 64
//! ```

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use herald::config::{
    Config, MessageIdFormat, PriceConfig, ProviderKind, SmppConfig, DEFAULT_TOML,
};
use herald::domain::{Channel, Currency};
use serde::Deserialize;

use crate::smsc::deliver::IdFormat;
use crate::smsc::SinkSettings;

/// The provider's name in herald, its prices and its metrics.
pub const PROVIDER: &str = "smsc";
/// The variable `password_env` names (supplied in process, never set in the environment).
const PASSWORD_VAR: &str = "HERALD_LOADTEST_SMSC_PASSWORD";
const KEY: &str = "loadtest-key";

/// One SMPP scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppScenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub recipients: usize,
    #[serde(default)]
    pub smsc: SinkSettings,
    #[serde(default)]
    pub provider: SmppProviderSpec,
    #[serde(default)]
    pub herald: SmppHeraldSpec,
}

/// herald's SMPP provider against the sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmppProviderSpec {
    pub binds: usize,
    pub window: usize,
    pub response_timeout_ms: u64,
    pub throttle_retry_ms: u64,
    /// 0 turns herald's rate limit off.
    pub rate_limit_parts_per_second: u32,
    pub burst_parts: u32,
    /// How the SMSC's ids compare; unset: as the sink writes them (`hex` or `decimal`).
    pub message_id_format: Option<MessageIdFormat>,
}

impl Default for SmppProviderSpec {
    fn default() -> Self {
        SmppProviderSpec {
            binds: 4,
            window: 64,
            response_timeout_ms: 5_000,
            throttle_retry_ms: 200,
            rate_limit_parts_per_second: 0,
            burst_parts: 1,
            message_id_format: None,
        }
    }
}

/// herald's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmppHeraldSpec {
    pub workers: usize,
    pub batch_size: usize,
    /// The default durable state (embedded state, dispatch journal, cost ledger); false keeps
    /// everything in memory.
    pub durable: bool,
    /// The run fails if the job has not completed after this long.
    pub timeout_seconds: u64,
    /// ... or if the receipts are not all applied this long after the job completed.
    pub receipts_wait_seconds: u64,
}

impl Default for SmppHeraldSpec {
    fn default() -> Self {
        SmppHeraldSpec {
            workers: 8,
            batch_size: 512,
            durable: true,
            timeout_seconds: 600,
            receipts_wait_seconds: 120,
        }
    }
}

impl SmppScenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<SmppScenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        let s: SmppScenario = toml::from_str(&text)
            .with_context(|| format!("parsing scenario {}", path.display()))?;
        let mut errs = s.smsc.problems();
        if s.recipients == 0 || s.recipients > 50_000_000 {
            errs.push("recipients: must be between 1 and 50,000,000".into());
        }
        if s.provider.binds == 0 || s.provider.window == 0 {
            errs.push("provider: binds and window must be at least 1".into());
        }
        if !errs.is_empty() {
            bail!("invalid scenario:\n  - {}", errs.join("\n  - "));
        }
        Ok(s)
    }

    /// herald's config: one SMPP provider bound to the sink at `smsc`, data in `data_dir`.
    pub fn herald_config(
        &self,
        smsc: std::net::SocketAddr,
        data_dir: &str,
    ) -> anyhow::Result<Config> {
        let mut c: Config = toml::from_str(DEFAULT_TOML)?;
        c.server.listen = "127.0.0.1:0".parse()?;
        c.server.data_dir = data_dir.to_string();
        c.auth.api_keys = vec![KEY.into()];
        c.snapshot.load_path = None;
        c.dispatch.workers = self.herald.workers;
        c.dispatch.batch_size = self.herald.batch_size;
        if !self.herald.durable {
            c.state.backend = herald::config::StateBackend::Memory;
            c.ledger.enabled = false;
        }
        // Throughput, not policy, is measured: no quiet hours or caps holding recipients back.
        c.policy.quiet_hours.enabled = false;
        c.policy.frequency_caps.clear();
        c.providers.truncate(1);
        let p = c
            .providers
            .first_mut()
            .ok_or_else(|| anyhow!("default config has no provider"))?;
        p.name = PROVIDER.into();
        p.kind = ProviderKind::Smpp;
        p.channel = Channel::Sms;
        p.currency = Currency::parse("CNY").ok_or_else(|| anyhow!("CNY is a currency"))?;
        p.url = None;
        p.idempotent = false;
        p.latency_ms = 0;
        p.transient_failure_rate = 0.0;
        p.permanent_failure_rate = 0.0;
        p.rate_limit_parts_per_second = self.provider.rate_limit_parts_per_second;
        p.burst_parts = self.provider.burst_parts;
        p.message_id_format =
            self.provider
                .message_id_format
                .unwrap_or(match self.smsc.message_id {
                    IdFormat::Hex => MessageIdFormat::Hex,
                    IdFormat::Decimal => MessageIdFormat::Decimal,
                });
        let v = &self.provider;
        p.smpp = Some(SmppConfig {
            host: smsc.ip().to_string(),
            port: smsc.port(),
            system_id: self.smsc.system_id.clone(),
            password_env: Some(PASSWORD_VAR.into()),
            binds: v.binds,
            window: v.window,
            response_timeout_ms: v.response_timeout_ms,
            throttle_retry_ms: v.throttle_retry_ms,
            connect_timeout_ms: 2_000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 2_000,
            source_addr: "HERALD".into(),
            ..SmppConfig::default()
        });
        c.prices = vec![PriceConfig {
            provider: PROVIDER.into(),
            channel: Channel::Sms,
            country: "*".into(),
            unit_micros: 45_000,
        }];
        let password = self.smsc.password.clone();
        c.apply_env(&|k| (k == PASSWORD_VAR).then(|| password.clone()));
        c.validate().map_err(|errs| {
            anyhow!(
                "herald config for the scenario is invalid:\n  - {}",
                errs.join("\n  - ")
            )
        })?;
        Ok(c)
    }
}

/// Whether the scenario at `path` is an SMPP one (it has an `[smsc]` table).
pub fn is_smpp(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .is_some_and(|t| t.contains_key("smsc"))
}
