//! The tables of the cloud SMS kinds: `[providers.aliyun]`, `[providers.tencent]` and
//! `[providers.twilio]`. Credentials are never in the file: each table names the environment
//! variables that hold them, read by [`super::Config::apply_env`]. Endpoints default to the
//! providers' public ones and can point anywhere (a regional endpoint, a test double).
//! The shared HTTP settings (`max_in_flight`, timeouts, `batch_size`, `ca_file`) stay on the
//! provider itself. docs/providers-cloud.md has an example of each.

use serde::Deserialize;

use super::http::validate_transport;
use super::model::{ProviderConfig, ProviderKind};
use super::Secret;

/// Alibaba Cloud SMS (Dysmsapi `SendSms` / `SendBatchSms`, version 2017-05-25).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AliyunConfig {
    /// The RPC endpoint messages are POSTed to.
    pub endpoint: String,
    pub region_id: String,
    /// Environment variables of the AccessKey pair.
    pub access_key_id_env: String,
    pub access_key_secret_env: String,
    /// The approved signature (`SignName`) and template (`TemplateCode`) every message uses.
    pub sign_name: String,
    pub template_code: String,
    /// The template variable that receives herald's rendered text: the template is expected
    /// to be `${content}` (or whatever this names) and nothing else.
    pub template_param_name: String,
    /// How long a message waits after `isv.BUSINESS_LIMIT_CONTROL` (the per-number frequency
    /// limit: one a minute, five an hour by default).
    pub throttle_retry_ms: u64,
    #[serde(skip)]
    pub access_key_id: Option<Secret>,
    #[serde(skip)]
    pub access_key_secret: Option<Secret>,
}

impl Default for AliyunConfig {
    fn default() -> Self {
        AliyunConfig {
            endpoint: "https://dysmsapi.aliyuncs.com/".into(),
            region_id: "cn-hangzhou".into(),
            access_key_id_env: "HERALD_ALIYUN_ACCESS_KEY_ID".into(),
            access_key_secret_env: "HERALD_ALIYUN_ACCESS_KEY_SECRET".into(),
            sign_name: String::new(),
            template_code: String::new(),
            template_param_name: "content".into(),
            throttle_retry_ms: 60_000,
            access_key_id: None,
            access_key_secret: None,
        }
    }
}

/// Tencent Cloud SMS (`SendSms`, API version 2021-01-11, TC3-HMAC-SHA256).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TencentConfig {
    pub endpoint: String,
    /// `X-TC-Region`.
    pub region: String,
    /// Environment variables of the SecretId / SecretKey pair.
    pub secret_id_env: String,
    pub secret_key_env: String,
    pub sms_sdk_app_id: String,
    pub sign_name: String,
    /// A template with one parameter (`{1}`), which receives herald's rendered text.
    pub template_id: String,
    /// How long a message waits after `LimitExceeded.PhoneNumberThirtySecondLimit`.
    pub throttle_retry_ms: u64,
    #[serde(skip)]
    pub secret_id: Option<Secret>,
    #[serde(skip)]
    pub secret_key: Option<Secret>,
}

impl Default for TencentConfig {
    fn default() -> Self {
        TencentConfig {
            endpoint: "https://sms.tencentcloudapi.com/".into(),
            region: "ap-guangzhou".into(),
            secret_id_env: "HERALD_TENCENT_SECRET_ID".into(),
            secret_key_env: "HERALD_TENCENT_SECRET_KEY".into(),
            sms_sdk_app_id: String::new(),
            sign_name: String::new(),
            template_id: String::new(),
            throttle_retry_ms: 30_000,
            secret_id: None,
            secret_key: None,
        }
    }
}

/// Twilio Programmable Messaging (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioConfig {
    /// Scheme and host of the API, without a trailing `/`.
    pub base_url: String,
    /// Environment variables of the Account SID and its Auth Token (the Auth Token also
    /// verifies `X-Twilio-Signature` on status callbacks).
    pub account_sid_env: String,
    pub auth_token_env: String,
    /// The sender number (`From`), or a Messaging Service (`MessagingServiceSid`): one of them.
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    /// The public URL of this provider's receipts endpoint
    /// (`https://<herald>/v1/callbacks/<name>/receipts`), sent as `StatusCallback` and signed
    /// over by Twilio exactly as written here. Unset: no status callbacks.
    pub status_callback_url: Option<String>,
    /// How long a message waits after a 429 without `Retry-After`.
    pub throttle_retry_ms: u64,
    #[serde(skip)]
    pub account_sid: Option<Secret>,
    #[serde(skip)]
    pub auth_token: Option<Secret>,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        TwilioConfig {
            base_url: "https://api.twilio.com".into(),
            account_sid_env: "HERALD_TWILIO_ACCOUNT_SID".into(),
            auth_token_env: "HERALD_TWILIO_AUTH_TOKEN".into(),
            from: None,
            messaging_service_sid: None,
            status_callback_url: None,
            throttle_retry_ms: 1_000,
            account_sid: None,
            auth_token: None,
        }
    }
}

/// Messages per request each API takes.
pub const ALIYUN_MAX_BATCH: usize = 100;
pub const TENCENT_MAX_BATCH: usize = 200;

/// Reads the credentials a provider's cloud table names; empty values count as unset.
pub(super) fn read_env(p: &mut ProviderConfig, env: &dyn Fn(&str) -> Option<String>) {
    let read = |name: &str| {
        env(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(Secret::new)
    };
    if let Some(a) = p.aliyun.as_mut() {
        a.access_key_id = read(&a.access_key_id_env);
        a.access_key_secret = read(&a.access_key_secret_env);
    }
    if let Some(t) = p.tencent.as_mut() {
        t.secret_id = read(&t.secret_id_env);
        t.secret_key = read(&t.secret_key_env);
    }
    if let Some(t) = p.twilio.as_mut() {
        t.account_sid = read(&t.account_sid_env);
        t.auth_token = read(&t.auth_token_env);
    }
}

/// Adds every problem of a provider's cloud table (or of one where it does not belong).
pub(super) fn validate(i: usize, p: &ProviderConfig, errs: &mut Vec<String>) {
    let tables = [
        ("aliyun", ProviderKind::Aliyun, p.aliyun.is_some()),
        ("tencent", ProviderKind::Tencent, p.tencent.is_some()),
        ("twilio", ProviderKind::Twilio, p.twilio.is_some()),
    ];
    super::model::check_kind_tables(i, p.kind, &tables, errs);
    if !p.kind.is_cloud() {
        return;
    }
    validate_transport(i, p, errs);
    // None of these APIs drops a repeated herald id: a resend after a crash would reach the
    // phone twice, so in-flight messages must stay in doubt.
    if p.idempotent {
        errs.push(format!(
            "providers[{i}].idempotent: this API does not deduplicate by herald's id; must be false"
        ));
    }
    let secret = |errs: &mut Vec<String>, field: &str, var: &str, value: &Option<Secret>| {
        if value.is_none() {
            errs.push(format!(
                "providers[{i}].{field}: environment variable {var:?} is not set"
            ));
        }
    };
    let required = |errs: &mut Vec<String>, field: &str, value: &str| {
        if value.trim().is_empty() {
            errs.push(format!("providers[{i}].{field}: required"));
        }
    };
    let batch = |errs: &mut Vec<String>, max: usize| {
        if !(1..=max).contains(&p.batch_size) {
            errs.push(format!(
                "providers[{i}].batch_size: must be between 1 and {max} for this API"
            ));
        }
    };
    if let (ProviderKind::Aliyun, Some(a)) = (p.kind, &p.aliyun) {
        endpoint(errs, i, "aliyun.endpoint", &a.endpoint);
        secret(
            errs,
            "aliyun.access_key_id_env",
            &a.access_key_id_env,
            &a.access_key_id,
        );
        secret(
            errs,
            "aliyun.access_key_secret_env",
            &a.access_key_secret_env,
            &a.access_key_secret,
        );
        required(errs, "aliyun.sign_name", &a.sign_name);
        required(errs, "aliyun.template_code", &a.template_code);
        required(errs, "aliyun.template_param_name", &a.template_param_name);
        batch(errs, ALIYUN_MAX_BATCH);
    }
    if let (ProviderKind::Tencent, Some(t)) = (p.kind, &p.tencent) {
        endpoint(errs, i, "tencent.endpoint", &t.endpoint);
        secret(
            errs,
            "tencent.secret_id_env",
            &t.secret_id_env,
            &t.secret_id,
        );
        secret(
            errs,
            "tencent.secret_key_env",
            &t.secret_key_env,
            &t.secret_key,
        );
        required(errs, "tencent.sms_sdk_app_id", &t.sms_sdk_app_id);
        required(errs, "tencent.sign_name", &t.sign_name);
        required(errs, "tencent.template_id", &t.template_id);
        required(errs, "tencent.region", &t.region);
        batch(errs, TENCENT_MAX_BATCH);
    }
    if let (ProviderKind::Twilio, Some(t)) = (p.kind, &p.twilio) {
        endpoint(errs, i, "twilio.base_url", &t.base_url);
        secret(
            errs,
            "twilio.account_sid_env",
            &t.account_sid_env,
            &t.account_sid,
        );
        secret(
            errs,
            "twilio.auth_token_env",
            &t.auth_token_env,
            &t.auth_token,
        );
        if t.from.is_some() == t.messaging_service_sid.is_some() {
            errs.push(format!(
                "providers[{i}].twilio: exactly one of from and messaging_service_sid is required"
            ));
        }
        if let Some(url) = &t.status_callback_url {
            endpoint(errs, i, "twilio.status_callback_url", url);
        }
        batch(errs, 1);
    }
}

fn endpoint(errs: &mut Vec<String>, i: usize, field: &str, url: &str) {
    match reqwest::Url::parse(url.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        _ => errs.push(format!(
            "providers[{i}].{field}: {url:?} must be an http:// or https:// URL with a host"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEFAULT_TOML};

    fn config(adjust: impl FnOnce(&mut ProviderConfig)) -> Config {
        let mut c: Config = toml::from_str(DEFAULT_TOML).expect("default config");
        let p = &mut c.providers[0];
        p.idempotent = false;
        adjust(p);
        c
    }

    #[test]
    fn an_aliyun_provider_needs_its_credentials_and_template() {
        let mut c = config(|p| {
            p.kind = ProviderKind::Aliyun;
            p.aliyun = Some(AliyunConfig {
                sign_name: "Herald".into(),
                ..AliyunConfig::default()
            });
        });
        c.apply_env(&|_| None);
        let errs = c.validate().expect_err("no credentials");
        for needle in ["HERALD_ALIYUN_ACCESS_KEY_SECRET", "aliyun.template_code"] {
            assert!(
                errs.iter().any(|e| e.contains(needle)),
                "{needle}: {errs:?}"
            );
        }
        c.providers[0].aliyun.as_mut().expect("table").template_code = "SMS_1".into();
        c.apply_env(&|k| {
            k.starts_with("HERALD_ALIYUN_")
                .then(|| "s3cret".to_string())
        });
        assert_eq!(c.validate(), Ok(()));
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "credentials never print"
        );
    }

    #[test]
    fn a_table_of_another_kind_is_refused_and_a_missing_one_named() {
        let c = config(|p| p.twilio = Some(TwilioConfig::default()));
        let errs = c.validate().expect_err("misplaced table");
        assert!(
            errs.iter().any(|e| e.contains("twilio: only for kind")),
            "{errs:?}"
        );
        let c = config(|p| p.kind = ProviderKind::Tencent);
        let errs = c.validate().expect_err("missing table");
        assert!(
            errs.iter().any(|e| e.contains("tencent: required")),
            "{errs:?}"
        );
    }

    #[test]
    fn twilio_needs_one_sender_single_messages_and_no_idempotency_claim() {
        let mut c = config(|p| {
            p.kind = ProviderKind::Twilio;
            p.batch_size = 5;
            p.idempotent = true;
            p.twilio = Some(TwilioConfig::default());
        });
        c.apply_env(&|k| k.starts_with("HERALD_TWILIO_").then(|| "x".to_string()));
        let errs = c.validate().expect_err("invalid");
        for needle in ["exactly one of from", "batch_size", "idempotent"] {
            assert!(
                errs.iter().any(|e| e.contains(needle)),
                "{needle}: {errs:?}"
            );
        }
    }
}
