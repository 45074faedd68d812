//! The configuration's shape. Every field has a default so a partial file still runs.

use chrono::NaiveTime;
use serde::Deserialize;
use std::net::SocketAddr;

use super::callbacks::{CallbacksConfig, MessageIdFormat, Secret, TrackingConfig};
pub use super::cloud::{AliyunConfig, TencentConfig, TwilioConfig};
use super::http::validate_http_provider;
pub use super::push::{ApnsConfig, FcmConfig, WechatConfig};
use super::routes::{ChannelLimitConfig, HealthConfig, RouteConfig};
use super::state::StateConfig;
use crate::domain::{Channel, Currency, Purpose};
use crate::phone::RegionCode;
pub use crate::provider::smpp::config::{
    BindMode, DataCodingPolicy, LongMessages, ReceiptIdConversion, SmppConfig,
};
pub use crate::provider::smtp::config::{SmtpConfig, SmtpTls};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub dispatch: DispatchConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub ledger: LedgerConfig,
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    #[serde(default)]
    pub prices: Vec<PriceConfig>,
    /// Which providers each channel and country goes to (see [`super::routes`]).
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// When a provider is taken out of its routes and tried again.
    #[serde(default)]
    pub health: HealthConfig,
    /// Limits on a whole channel across its providers.
    #[serde(default)]
    pub channel_limits: Vec<ChannelLimitConfig>,
    /// Rate limits and monthly quotas per tenant (see [`super::tenants`]).
    #[serde(default)]
    pub tenants: Vec<super::TenantConfig>,
    #[serde(default)]
    pub callbacks: CallbacksConfig,
    #[serde(default)]
    pub tracking: TrackingConfig,
    /// Content rules templates and messages are held to (see [`super::compliance`]).
    #[serde(default)]
    pub compliance: super::compliance::ComplianceConfig,
    /// The report pages under `/ui/`.
    #[serde(default)]
    pub ui: super::UiConfig,
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// When set, `/metrics` is served on this address only (a port the scraper reaches and
    /// the public does not), and no longer on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    pub data_dir: String,
    pub max_json_body_bytes: usize,
    pub max_upload_bytes: u64,
    /// On SIGTERM, how long in-flight sends, retries and ledger writes may take to finish.
    pub shutdown_timeout_seconds: u64,
    /// Connections served in full at once. Past it, new connections are still accepted but
    /// answer only `/healthz`, `/readyz` and `/metrics` (one request each), so a flood of
    /// slow clients cannot starve the load balancer's and the scraper's checks.
    pub max_connections: usize,
    /// A connection that has not sent a whole request head within this is closed (slow or
    /// half-open clients); it also bounds how long an idle keep-alive connection stays open.
    pub header_read_timeout_ms: u64,
    /// A request whose body stops arriving for this long ends with 408.
    pub body_idle_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            data_dir: "./herald-data".into(),
            max_json_body_bytes: 16 << 20,
            max_upload_bytes: 8 << 30,
            shutdown_timeout_seconds: 10,
            max_connections: 1024,
            header_read_timeout_ms: 10_000,
            body_idle_timeout_ms: 30_000,
        }
    }
}

/// API keys. Keys never appear in logs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub api_keys: Vec<String>,
    /// Lets the shipped demo key ([`DEMO_API_KEY`](super::DEMO_API_KEY)) be served on an
    /// address other than loopback, for a demo on purpose. Set by `--allow-demo-key` or
    /// `HERALD_ALLOW_DEMO_KEY=1`; without it such a start is refused, since anyone who has
    /// read the README knows that key.
    pub allow_demo_key: bool,
}

/// Contact snapshot settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    pub default_region: String,
    pub max_age_seconds: u64,
    pub load_path: Option<String>,
    /// An uploaded snapshot with a larger share of rejected rows is refused: a broken export
    /// must not replace the contacts every job is checked against.
    pub max_rejected_share: f64,
    /// An uploaded snapshot that would drop this share of the live contacts or more is
    /// refused unless the upload says `allow_shrink=true`: a truncated export looks valid.
    pub max_shrink_share: f64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            default_region: "CN".into(),
            max_age_seconds: 86_400,
            load_path: None,
            max_rejected_share: 0.01,
            max_shrink_share: 0.5,
        }
    }
}

impl SnapshotConfig {
    /// The parsed default region (validated at load).
    pub fn region(&self) -> RegionCode {
        RegionCode::parse(&self.default_region).unwrap_or(RegionCode(*b"ZZ"))
    }

    /// The checks an uploaded snapshot must pass; `allow_shrink` comes from the request.
    pub fn upload_guard(&self, allow_shrink: bool) -> crate::snapshot::UploadGuard {
        crate::snapshot::UploadGuard {
            max_rejected_share: self.max_rejected_share,
            max_shrink_share: self.max_shrink_share,
            allow_shrink,
        }
    }
}

/// Policy rules that come from configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub quiet_hours: QuietHoursConfig,
    pub frequency_caps: Vec<FrequencyCapConfig>,
}

/// The local-time window in which marketing messages may be sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuietHoursConfig {
    pub enabled: bool,
    /// Start of the allowed window, `HH:MM` local time.
    pub start: String,
    /// End of the allowed window, `HH:MM` local time.
    pub end: String,
    /// The channels whose marketing messages keep to the window (default: every channel).
    pub channels: Vec<Channel>,
}

impl Default for QuietHoursConfig {
    fn default() -> Self {
        QuietHoursConfig {
            enabled: true,
            start: "08:00".into(),
            end: "21:00".into(),
            channels: Channel::ALL.to_vec(),
        }
    }
}

impl QuietHoursConfig {
    /// Whether marketing messages of `channel` keep to the window.
    pub fn applies_to(&self, channel: Channel) -> bool {
        self.enabled && self.channels.contains(&channel)
    }

    /// The allowed window as times (validated at load).
    pub fn window(&self) -> Option<(NaiveTime, NaiveTime)> {
        let start = NaiveTime::parse_from_str(&self.start, "%H:%M").ok()?;
        let end = NaiveTime::parse_from_str(&self.end, "%H:%M").ok()?;
        Some((start, end))
    }
}

/// One frequency-cap rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCapConfig {
    pub channel: Channel,
    pub purpose: Purpose,
    pub max: u32,
    pub window_seconds: u64,
}

/// The cost ledger.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Record every billable send durably before it counts as sent. Off only for
    /// benchmarks that measure the in-memory path.
    pub enabled: bool,
    /// At start, write the log's spare segments (4 × 32 MiB of zeros, once, at the lowest
    /// CPU priority) so that log syncs write over existing blocks from the first send on.
    pub prepare_log_spares: bool,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            enabled: true,
            prepare_log_spares: true,
        }
    }
}

/// Worker pool and retry settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    pub workers: usize,
    pub batch_size: usize,
    pub retry: RetryConfig,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            workers: 8,
            batch_size: 512,
            retry: RetryConfig::default(),
        }
    }
}

/// Exponential backoff with full jitter for transient provider failures.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            initial_delay_ms: 50,
            max_delay_ms: 2_000,
        }
    }
}

/// Which adapter a provider uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Sandbox,
    /// The generic HTTP/JSON protocol (see `provider::http`).
    Http,
    /// SMPP 3.4 to an SMSC (see `provider::smpp`), set up in the `smpp` table.
    Smpp,
    /// Alibaba Cloud SMS (`provider::aliyun`), set up in the `aliyun` table.
    Aliyun,
    /// Tencent Cloud SMS (`provider::tencent`), set up in the `tencent` table.
    Tencent,
    /// Twilio Programmable Messaging (`provider::twilio`), set up in the `twilio` table.
    Twilio,
    /// Firebase Cloud Messaging HTTP v1 (`provider::fcm`), set up in the `fcm` table.
    Fcm,
    /// Apple Push Notification service (`provider::apns`), set up in the `apns` table.
    Apns,
    /// WeChat official-account template messages (`provider::wechat`), in the `wechat` table.
    Wechat,
    /// Email to an SMTP relay (`provider::smtp`), set up in the `smtp` table.
    Smtp,
}

impl ProviderKind {
    /// The channels an adapter of this kind can send; a provider configured for another
    /// channel is refused at start-up, so a job never reaches an adapter that cannot carry it.
    pub fn channels(self) -> &'static [Channel] {
        match self {
            ProviderKind::Sandbox | ProviderKind::Http => &Channel::ALL,
            ProviderKind::Smpp
            | ProviderKind::Aliyun
            | ProviderKind::Tencent
            | ProviderKind::Twilio => &[Channel::Sms],
            ProviderKind::Fcm | ProviderKind::Apns => &[Channel::Push],
            ProviderKind::Wechat => &[Channel::Wechat],
            ProviderKind::Smtp => &[Channel::Email],
        }
    }

    /// The cloud SMS kinds: HTTPS APIs with their own request format, signature and receipts.
    pub fn is_cloud(self) -> bool {
        matches!(
            self,
            ProviderKind::Aliyun | ProviderKind::Tencent | ProviderKind::Twilio
        )
    }
}

/// One provider of one channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub channel: Channel,
    pub currency: Currency,
    /// Message parts per second; 0 turns the limit off.
    #[serde(default)]
    pub rate_limit_parts_per_second: u32,
    #[serde(default = "default_burst")]
    pub burst_parts: u32,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub transient_failure_rate: f64,
    #[serde(default)]
    pub permanent_failure_rate: f64,
    #[serde(default = "default_delivery_rate")]
    pub delivery_rate: f64,
    #[serde(default)]
    pub receipt_delay_ms: u64,
    /// `kind = "http"`: the endpoint messages are POSTed to, `http://` or `https://`.
    #[serde(default)]
    pub url: Option<String>,
    /// HTTP-speaking kinds: a PEM file of root certificates trusted for this provider beside
    /// the system's (a private CA); read and checked at start-up.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// `kind = "http"`: the header that carries the credential.
    #[serde(default = "default_auth_header")]
    pub auth_header: String,
    /// `kind = "http"`: the environment variable holding the whole header value (for example
    /// `Bearer ...`). Secrets never go in the config file itself.
    #[serde(default)]
    pub auth_header_env: Option<String>,
    /// The credential read from `auth_header_env` by [`Config::apply_env`].
    #[serde(skip)]
    pub auth_value: Option<Secret>,
    /// `kind = "http"`: messages per request; 1 sends single-message requests with an
    /// `Idempotency-Key` header, more sends `{"messages": [...]}` batches.
    #[serde(default = "default_http_batch_size")]
    pub batch_size: usize,
    /// `kind = "http"`: requests in flight to this provider at once, across all workers; also
    /// the number of pooled keep-alive connections kept.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// `kind = "http"`: a request (connect, send, answer) slower than this is a transient failure.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// `kind = "http"`: limit on establishing a connection.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// `kind = "http"`: the `from` of every message (sender id or short code).
    #[serde(default = "default_sender_id")]
    pub sender_id: String,
    /// Environment variables holding the secrets its callbacks are signed with; two may be
    /// set during a rotation. None set: its callbacks are refused.
    #[serde(default)]
    pub callback_secret_envs: Vec<String>,
    /// How its message ids are compared when receipts come back.
    #[serde(default)]
    pub message_id_format: MessageIdFormat,
    /// Whether the provider deduplicates by herald's message id (its idempotency key). After
    /// a crash, messages that were in flight are sent again under the same id to such a
    /// provider; to one that is not (SMPP, most SMS HTTP APIs) they are marked `in_doubt`
    /// instead, because a resend could reach a phone twice.
    #[serde(default)]
    pub idempotent: bool,
    /// The secrets read from `callback_secret_envs`.
    #[serde(skip)]
    pub callback_secrets: Vec<Secret>,
    /// `kind = "smpp"`: the SMSC, the binds and the addressing (`[providers.smpp]`).
    #[serde(default)]
    pub smpp: Option<SmppConfig>,
    /// `kind = "aliyun"`: Alibaba Cloud SMS (`[providers.aliyun]`).
    #[serde(default)]
    pub aliyun: Option<AliyunConfig>,
    /// `kind = "tencent"`: Tencent Cloud SMS (`[providers.tencent]`).
    #[serde(default)]
    pub tencent: Option<TencentConfig>,
    /// `kind = "twilio"`: Twilio Programmable Messaging (`[providers.twilio]`).
    #[serde(default)]
    pub twilio: Option<TwilioConfig>,
    /// `kind = "fcm"`: Firebase Cloud Messaging (`[providers.fcm]`).
    #[serde(default)]
    pub fcm: Option<FcmConfig>,
    /// `kind = "apns"`: Apple Push Notification service (`[providers.apns]`).
    #[serde(default)]
    pub apns: Option<ApnsConfig>,
    /// `kind = "wechat"`: a WeChat official account (`[providers.wechat]`).
    #[serde(default)]
    pub wechat: Option<WechatConfig>,
    /// `kind = "smtp"`: the relay, its TLS mode, the account and the sender
    /// (`[providers.smtp]`).
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
}

fn default_burst() -> u32 {
    1
}

fn default_auth_header() -> String {
    "authorization".into()
}

fn default_http_batch_size() -> usize {
    1
}

fn default_max_in_flight() -> usize {
    8
}

fn default_request_timeout_ms() -> u64 {
    5_000
}

fn default_connect_timeout_ms() -> u64 {
    1_000
}

fn default_sender_id() -> String {
    "herald".into()
}

fn default_delivery_rate() -> f64 {
    1.0
}

/// A unit price for (provider, channel, destination country); `*` is the fallback country.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub provider: String,
    pub channel: Channel,
    pub country: String,
    pub unit_micros: i64,
}

impl Config {
    /// Applies `HERALD_LISTEN`, `HERALD_DATA_DIR`, `HERALD_API_KEYS` (keys are added, and
    /// replace the demo key), `HERALD_ALLOW_DEMO_KEY` and `HERALD_REDIS_URL`, and reads the
    /// secrets the config names (HTTP provider credentials, provider callback secrets, the
    /// link secret).
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        super::callbacks::read_secrets(self, env);
        super::state::apply_env(&mut self.state, env);
        if let Some(addr) = env("HERALD_LISTEN").and_then(|v| v.trim().parse().ok()) {
            self.server.listen = addr;
        }
        if let Some(dir) = env("HERALD_DATA_DIR").filter(|v| !v.trim().is_empty()) {
            self.server.data_dir = dir;
        }
        if let Some(keys) = env("HERALD_API_KEYS") {
            // Keys of one's own replace the shipped demo key; other configured keys stay.
            if keys.split(',').any(|k| !k.trim().is_empty()) {
                self.auth.api_keys.retain(|k| k != super::DEMO_API_KEY);
            }
            for k in keys.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                if !self.auth.api_keys.iter().any(|e| e == k) {
                    self.auth.api_keys.push(k.to_string());
                }
            }
        }
        if let Some(v) = env("HERALD_ALLOW_DEMO_KEY") {
            self.auth.allow_demo_key = matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            );
        }
        for p in &mut self.providers {
            if let Some(var) = p.auth_header_env.as_deref() {
                p.auth_value = env(var).map(Secret::new);
            }
            if let Some(smtp) = p.smtp.as_mut() {
                smtp.read_env(env);
            }
            if let Some(smpp) = p.smpp.as_mut() {
                smpp.read_env(env);
                smpp.state_dir = Some(std::path::Path::new(&self.server.data_dir).join("smpp"));
            }
            super::cloud::read_env(p, env);
            super::push::read_env(p, env);
        }
    }

    /// Why this configuration must not start: the demo key served on an address other than
    /// loopback, unless [`AuthConfig::allow_demo_key`] says this is a demo. Checked when the
    /// app starts, after the command line has set the final listen address.
    pub fn public_demo_key(&self) -> Option<String> {
        let public = !self.server.listen.ip().is_loopback();
        let demo = self.auth.api_keys.iter().any(|k| k == super::DEMO_API_KEY);
        (public && demo && !self.auth.allow_demo_key).then(|| {
            format!(
                "refusing to serve the demo API key {:?} on {}, which is not a loopback \
                 address: anyone who read the README could use it. Set your own keys with \
                 HERALD_API_KEYS=key1,key2 (they replace the demo key), or, for a demo on \
                 purpose, pass --allow-demo-key (or set HERALD_ALLOW_DEMO_KEY=1)",
                super::DEMO_API_KEY,
                self.server.listen
            )
        })
    }

    /// Checks everything and returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if RegionCode::parse(&self.snapshot.default_region).is_none() {
            errs.push(format!(
                "snapshot.default_region: {:?} is not a two-letter region code",
                self.snapshot.default_region
            ));
        }
        for (field, v) in [
            ("max_rejected_share", self.snapshot.max_rejected_share),
            ("max_shrink_share", self.snapshot.max_shrink_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                errs.push(format!("snapshot.{field}: must be between 0 and 1"));
            }
        }
        if self.auth.api_keys.iter().any(|k| k.trim().is_empty()) {
            errs.push("auth.api_keys: keys must not be empty".into());
        }
        super::ui::validate(&self.ui, &mut errs);
        let server = &self.server;
        if server.max_connections == 0 {
            errs.push("server.max_connections: must be at least 1".into());
        }
        if server.header_read_timeout_ms == 0 {
            errs.push("server.header_read_timeout_ms: must be at least 1".into());
        }
        if server.body_idle_timeout_ms == 0 {
            errs.push("server.body_idle_timeout_ms: must be at least 1".into());
        }
        if server.metrics_listen == Some(server.listen) && server.listen.port() != 0 {
            errs.push("server.metrics_listen: must differ from server.listen".into());
        }
        if self.policy.quiet_hours.window().is_none() {
            errs.push("policy.quiet_hours: start and end must be HH:MM".into());
        }
        self.compliance.validate(&mut errs);
        for (i, cap) in self.policy.frequency_caps.iter().enumerate() {
            if cap.max == 0 || cap.window_seconds == 0 {
                errs.push(format!(
                    "policy.frequency_caps[{i}]: max and window_seconds must be > 0"
                ));
            }
        }
        if self.dispatch.workers == 0 {
            errs.push("dispatch.workers: must be at least 1".into());
        }
        if self.dispatch.batch_size == 0 {
            errs.push("dispatch.batch_size: must be at least 1".into());
        }
        if self.dispatch.retry.max_attempts == 0 {
            errs.push("dispatch.retry.max_attempts: must be at least 1".into());
        }
        if self.providers.is_empty() {
            errs.push("providers: at least one provider is required".into());
        }
        for (i, p) in self.providers.iter().enumerate() {
            if self.providers[..i].iter().any(|q| q.name == p.name) {
                errs.push(format!(
                    "providers[{i}].name: {:?} is defined twice",
                    p.name
                ));
            }
            if p.rate_limit_parts_per_second > 0 && p.burst_parts == 0 {
                errs.push(format!("providers[{i}].burst_parts: must be at least 1"));
            }
            for (field, v) in [
                ("transient_failure_rate", p.transient_failure_rate),
                ("permanent_failure_rate", p.permanent_failure_rate),
                ("delivery_rate", p.delivery_rate),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    errs.push(format!("providers[{i}].{field}: must be between 0 and 1"));
                }
            }
            if !p.kind.channels().contains(&p.channel) {
                let can: Vec<&str> = p.kind.channels().iter().map(|c| c.as_str()).collect();
                errs.push(format!(
                    "providers[{i}].channel: this kind of provider sends {}, not {}",
                    can.join(", "),
                    p.channel.as_str()
                ));
            }
            if p.kind == ProviderKind::Http {
                validate_http_provider(i, p, &mut errs);
            }
            super::cloud::validate(i, p, &mut errs);
            super::push::validate(i, p, &mut errs);
            match (p.kind, &p.smpp) {
                (ProviderKind::Smpp, Some(smpp)) => {
                    smpp.validate(&format!("providers[{i}].smpp"), &mut errs);
                    // An SMSC knows nothing of herald's message ids: a resend after a crash
                    // would reach the phone twice, so in-flight messages must stay in doubt.
                    if p.idempotent {
                        errs.push(format!(
                            "providers[{i}].idempotent: an smpp provider cannot drop repeated herald ids; must be false"
                        ));
                    }
                }
                (ProviderKind::Smpp, None) => {
                    errs.push(format!("providers[{i}].smpp: required for kind = \"smpp\""))
                }
                (_, Some(_)) => errs.push(format!("providers[{i}].smpp: only for kind = \"smpp\"")),
                (_, None) => {}
            }
            match (p.kind, &p.smtp) {
                (ProviderKind::Smtp, Some(smtp)) => {
                    smtp.validate(&format!("providers[{i}].smtp"), &mut errs)
                }
                (ProviderKind::Smtp, None) => {
                    errs.push(format!("providers[{i}].smtp: required for kind = \"smtp\""))
                }
                (_, Some(_)) => errs.push(format!("providers[{i}].smtp: only for kind = \"smtp\"")),
                (_, None) => {}
            }
        }
        super::callbacks::validate(self, &mut errs);
        super::state::validate(&self.state, &mut errs);
        super::routes::validate(self, &mut errs);
        super::tenants::validate(self, &mut errs);
        for (i, price) in self.prices.iter().enumerate() {
            if !self.providers.iter().any(|p| p.name == price.provider) {
                errs.push(format!(
                    "prices[{i}].provider: no provider named {:?}",
                    price.provider
                ));
            }
            if price.country != "*" && RegionCode::parse(&price.country).is_none() {
                errs.push(format!(
                    "prices[{i}].country: {:?} is not a region code or \"*\"",
                    price.country
                ));
            }
            if price.unit_micros < 0 {
                errs.push(format!("prices[{i}].unit_micros: must not be negative"));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

/// Adds a problem for each provider table that is missing for its `kind` or present for
/// another kind: `tables` holds (table name, the kind it is for, whether it is present).
pub(super) fn check_kind_tables(
    i: usize,
    kind: ProviderKind,
    tables: &[(&str, ProviderKind, bool)],
    errs: &mut Vec<String>,
) {
    for &(table, for_kind, present) in tables {
        match (kind == for_kind, present) {
            (true, false) => errs.push(format!(
                "providers[{i}].{table}: required for kind = \"{table}\""
            )),
            (false, true) => errs.push(format!(
                "providers[{i}].{table}: only for kind = \"{table}\""
            )),
            _ => {}
        }
    }
}
