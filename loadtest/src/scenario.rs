//! Scenario files (`loadtest/scenarios/*.toml`): the audience to synthesise, the template,
//! prices, how the mock provider behaves, the HTTP provider settings herald uses against it,
//! and herald's dispatch settings. Every field has a default, so a scenario names only what
//! it changes.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::mock::latency::Shape;

/// One rehearsal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Contacts in the snapshot; each is in the job once (plus duplicates and unknowns).
    pub recipients: usize,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub audience: AudienceMix,
    #[serde(default)]
    pub template: TemplateSpec,
    #[serde(default)]
    pub prices: Prices,
    #[serde(default)]
    pub mock: MockSpec,
    #[serde(default)]
    pub provider: ProviderSpec,
    #[serde(default)]
    pub herald: HeraldSpec,
    #[serde(default)]
    pub receipts: ReceiptSpec,
}

fn default_seed() -> u64 {
    20_261_123
}

/// Who is in the audience.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudienceMix {
    /// Destination countries and their weights (normalised).
    pub countries: BTreeMap<String, f64>,
    /// Contacts that opted out of SMS.
    pub opt_out_rate: f64,
    /// Contacts with no recorded consent (marketing needs an opt-in).
    pub no_consent_rate: f64,
    /// Numbers that fail numbering-plan validation.
    pub invalid_rate: f64,
    /// Fixed-line (or toll-free) numbers: valid, but no SMS reaches them.
    pub landline_rate: f64,
    /// Contacts without a phone number.
    pub missing_phone_rate: f64,
    /// Job recipients the snapshot does not know (per contact, one extra line).
    pub unknown_rate: f64,
    /// Contacts listed twice in the job.
    pub duplicate_rate: f64,
}

impl Default for AudienceMix {
    fn default() -> Self {
        AudienceMix {
            countries: [
                ("CN", 0.55),
                ("US", 0.12),
                ("GB", 0.08),
                ("DE", 0.07),
                ("IN", 0.12),
                ("BR", 0.06),
            ]
            .into_iter()
            .map(|(c, w)| (c.to_string(), w))
            .collect(),
            opt_out_rate: 0.03,
            no_consent_rate: 0.01,
            invalid_rate: 0.004,
            landline_rate: 0.006,
            missing_phone_rate: 0.002,
            unknown_rate: 0.001,
            duplicate_rate: 0.002,
        }
    }
}

/// The message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateSpec {
    pub campaign_id: String,
    pub body: String,
}

impl Default for TemplateSpec {
    fn default() -> Self {
        TemplateSpec {
            campaign_id: "promotion".into(),
            body: "Hi {{first_name}}, 20% off at our {{city}} store tonight only: https://shop.example.com/sale Reply STOP to opt out"
                .into(),
        }
    }
}

/// Unit price per SMS part by destination country, in micros of `currency`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prices {
    pub currency: String,
    /// Price for countries without their own entry.
    pub default_micros: i64,
    pub by_country: BTreeMap<String, i64>,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            currency: "CNY".into(),
            default_micros: 300_000,
            by_country: [
                ("CN", 45_000),
                ("US", 60_000),
                ("GB", 280_000),
                ("DE", 520_000),
                ("IN", 15_000),
                ("BR", 110_000),
            ]
            .into_iter()
            .map(|(c, p)| (c.to_string(), p))
            .collect(),
        }
    }
}

/// How the mock provider behaves (see `herald-loadtest mock-provider --help`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockSpec {
    pub latency: Shape,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub throttle_rate: f64,
    pub retry_after_seconds: u64,
    pub error_rate: f64,
    pub timeout_rate: f64,
    pub reject_rate: f64,
    pub retryable_reject_rate: f64,
    pub threads: usize,
}

impl Default for MockSpec {
    fn default() -> Self {
        MockSpec {
            latency: Shape::Lognormal,
            latency_p50_ms: 5.0,
            latency_p99_ms: 40.0,
            throttle_rate: 0.002,
            retry_after_seconds: 1,
            error_rate: 0.002,
            timeout_rate: 0.0005,
            reject_rate: 0.001,
            retryable_reject_rate: 0.001,
            threads: 1,
        }
    }
}

/// What comes back from the mock after a send: one signed delivery receipt per accepted
/// message, after a delay, and clicks on the tracked link of some delivered messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiptSpec {
    /// Off: no receipts or clicks (the run then measures sends only).
    pub enabled: bool,
    /// Share of accepted messages reported delivered; the rest are reported undelivered.
    pub delivered_rate: f64,
    /// Delay from acceptance to the receipt's send: shape, median and 99th percentile.
    pub delay: Shape,
    pub delay_p50_ms: f64,
    pub delay_p99_ms: f64,
    /// Receipts per callback request.
    pub batch_size: usize,
    /// Concurrent callback requests (and connections).
    pub connections: usize,
    /// Share of delivered messages whose tracked link is clicked (after the receipt is sent).
    pub click_rate: f64,
    /// The run fails if receipts and clicks have not all been applied this long after the
    /// job completed.
    pub wait_seconds: u64,
}

impl Default for ReceiptSpec {
    fn default() -> Self {
        ReceiptSpec {
            enabled: true,
            delivered_rate: 0.97,
            delay: Shape::Lognormal,
            delay_p50_ms: 1_000.0,
            delay_p99_ms: 5_000.0,
            batch_size: 100,
            connections: 4,
            click_rate: 0.02,
            wait_seconds: 120,
        }
    }
}

/// herald's HTTP provider settings against the mock.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderSpec {
    pub batch_size: usize,
    pub max_in_flight: usize,
    pub request_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// 0 turns the rate limit off.
    pub rate_limit_parts_per_second: u32,
    pub burst_parts: u32,
}

impl Default for ProviderSpec {
    fn default() -> Self {
        ProviderSpec {
            batch_size: 200,
            max_in_flight: 16,
            request_timeout_ms: 2_000,
            connect_timeout_ms: 500,
            rate_limit_parts_per_second: 0,
            burst_parts: 1,
        }
    }
}

/// herald's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeraldSpec {
    pub workers: usize,
    pub batch_size: usize,
    /// Quiet hours would defer recipients past the end of the run: off unless asked.
    pub quiet_hours: bool,
    pub frequency_caps: bool,
    pub retry_max_attempts: u32,
    pub retry_initial_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    /// The run fails if the job has not completed after this long.
    pub timeout_seconds: u64,
}

impl Default for HeraldSpec {
    fn default() -> Self {
        HeraldSpec {
            workers: 8,
            batch_size: 512,
            quiet_hours: false,
            frequency_caps: true,
            retry_max_attempts: 8,
            retry_initial_delay_ms: 100,
            retry_max_delay_ms: 2_000,
            timeout_seconds: 900,
        }
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        let s: Scenario = toml::from_str(&text)
            .with_context(|| format!("parsing scenario {}", path.display()))?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> anyhow::Result<()> {
        let a = &self.audience;
        let mut errs = Vec::new();
        if self.recipients == 0 || self.recipients > 50_000_000 {
            errs.push("recipients: must be between 1 and 50,000,000".to_string());
        }
        if a.countries.is_empty() || a.countries.values().any(|w| !w.is_finite() || *w < 0.0) {
            errs.push("audience.countries: needs at least one country, weights >= 0".into());
        }
        for c in a.countries.keys() {
            if !crate::population::SUPPORTED.contains(&c.as_str()) {
                errs.push(format!(
                    "audience.countries: {c} is not one of {:?}",
                    crate::population::SUPPORTED
                ));
            }
        }
        let rates = [
            ("audience.opt_out_rate", a.opt_out_rate),
            ("audience.no_consent_rate", a.no_consent_rate),
            ("audience.invalid_rate", a.invalid_rate),
            ("audience.landline_rate", a.landline_rate),
            ("audience.missing_phone_rate", a.missing_phone_rate),
            ("audience.unknown_rate", a.unknown_rate),
            ("audience.duplicate_rate", a.duplicate_rate),
            ("mock.throttle_rate", self.mock.throttle_rate),
            ("mock.error_rate", self.mock.error_rate),
            ("mock.timeout_rate", self.mock.timeout_rate),
            ("mock.reject_rate", self.mock.reject_rate),
            (
                "mock.retryable_reject_rate",
                self.mock.retryable_reject_rate,
            ),
            ("receipts.delivered_rate", self.receipts.delivered_rate),
            ("receipts.click_rate", self.receipts.click_rate),
        ];
        for (name, r) in rates {
            if !(0.0..=1.0).contains(&r) {
                errs.push(format!("{name}: must be between 0 and 1"));
            }
        }
        if a.invalid_rate + a.landline_rate + a.missing_phone_rate > 1.0 {
            errs.push("audience: invalid + landline + missing phone rates exceed 1".into());
        }
        if a.opt_out_rate + a.no_consent_rate > 1.0 {
            errs.push("audience: opt-out + no-consent rates exceed 1".into());
        }
        if self.mock.throttle_rate + self.mock.error_rate + self.mock.timeout_rate > 1.0 {
            errs.push("mock: throttle + error + timeout rates exceed 1".into());
        }
        let r = &self.receipts;
        if r.batch_size == 0 || r.connections == 0 {
            errs.push("receipts: batch_size and connections must be at least 1".into());
        }
        if !(r.delay_p50_ms.is_finite() && r.delay_p99_ms.is_finite() && r.delay_p50_ms >= 0.0) {
            errs.push("receipts: delays must be finite and >= 0".into());
        }
        if self.template.body.trim().is_empty() {
            errs.push("template.body: must not be empty".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            bail!("invalid scenario:\n  - {}", errs.join("\n  - "))
        }
    }
}
