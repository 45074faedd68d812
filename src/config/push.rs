//! The tables of the push and WeChat kinds: `[providers.fcm]`, `[providers.apns]` and
//! `[providers.wechat]`. Key material stays out of the file: FCM and APNs name key files
//! (a service-account JSON, a `.p8` key), WeChat names the environment variables of its AppID,
//! AppSecret and callback token. Base URLs default to the public endpoints and can point
//! anywhere (a regional endpoint, APNs' sandbox, a test double). docs/providers-push.md and
//! docs/providers-wechat.md have an example of each.

use serde::Deserialize;

use super::http::validate_transport;
use super::model::{ProviderConfig, ProviderKind};
use super::Secret;
use crate::domain::Channel;

/// Firebase Cloud Messaging, HTTP v1 API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FcmConfig {
    /// Scheme and host of the FCM API, without a trailing `/`.
    pub base_url: String,
    /// The service account's JSON key file (`project_id`, `client_email`, `private_key`,
    /// `token_uri`), read at start-up; it never goes in this file.
    pub service_account_file: String,
    /// Overrides the key file's `project_id`.
    pub project_id: Option<String>,
    /// How long a message waits after `QUOTA_EXCEEDED` without `Retry-After`.
    pub throttle_retry_ms: u64,
}

impl Default for FcmConfig {
    fn default() -> Self {
        FcmConfig {
            base_url: "https://fcm.googleapis.com".into(),
            service_account_file: String::new(),
            project_id: None,
            throttle_retry_ms: 60_000,
        }
    }
}

/// Apple Push Notification service, token-based (HTTP/2, ES256 provider token).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApnsConfig {
    /// `https://api.push.apple.com` or `https://api.sandbox.push.apple.com`.
    pub base_url: String,
    /// The Team ID (the token's `iss`) and the signing key's Key ID (its `kid`).
    pub team_id: String,
    pub key_id: String,
    /// The `.p8` signing key (PKCS#8 PEM, P-256), read at start-up.
    pub key_file: String,
    /// `apns-topic`: the app's bundle id.
    pub topic: String,
    /// `apns-push-type`: `alert` for title and body.
    pub push_type: String,
    /// `apns-priority`: 10 delivers at once, 5 lets the device save power.
    pub priority: u8,
    /// The provider token is reused for this long; Apple refuses tokens older than an hour
    /// and updates more often than every 20 minutes, so it must be within 20..=55.
    pub token_refresh_minutes: u64,
    /// How long a message waits after `TooManyRequests` (APNs sends no `Retry-After`).
    pub throttle_retry_ms: u64,
}

impl Default for ApnsConfig {
    fn default() -> Self {
        ApnsConfig {
            base_url: "https://api.push.apple.com".into(),
            team_id: String::new(),
            key_id: String::new(),
            key_file: String::new(),
            topic: String::new(),
            push_type: "alert".into(),
            priority: 10,
            token_refresh_minutes: 40,
            throttle_retry_ms: 5_000,
        }
    }
}

/// A WeChat official account's template messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WechatConfig {
    /// Scheme and host of the API, without a trailing `/`.
    pub base_url: String,
    /// The account's name in contacts' `account:openid` lists; unset, this provider takes a
    /// contact's openid only when the contact has a single one.
    pub account: Option<String>,
    /// Environment variables of the AppID, the AppSecret and the token the account's event
    /// callbacks are signed with (set in the official account's server configuration).
    pub appid_env: String,
    pub secret_env: String,
    pub callback_token_env: String,
    /// Environment variable of the account's EncodingAESKey (43 characters), for events in
    /// encrypted ("safe") or compatible mode; unset, only plaintext events are taken.
    pub encoding_aes_key_env: String,
    /// How long a message waits after 45009 (the account's daily quota is used up).
    pub throttle_retry_ms: u64,
    #[serde(skip)]
    pub appid: Option<Secret>,
    #[serde(skip)]
    pub secret: Option<Secret>,
    #[serde(skip)]
    pub callback_token: Option<Secret>,
    #[serde(skip)]
    pub encoding_aes_key: Option<Secret>,
}

impl Default for WechatConfig {
    fn default() -> Self {
        WechatConfig {
            base_url: "https://api.weixin.qq.com".into(),
            account: None,
            appid_env: "HERALD_WECHAT_APPID".into(),
            secret_env: "HERALD_WECHAT_SECRET".into(),
            callback_token_env: "HERALD_WECHAT_CALLBACK_TOKEN".into(),
            encoding_aes_key_env: "HERALD_WECHAT_ENCODING_AES_KEY".into(),
            throttle_retry_ms: 600_000,
            appid: None,
            secret: None,
            callback_token: None,
            encoding_aes_key: None,
        }
    }
}

/// Reads the credentials a WeChat table names; empty values count as unset.
pub(super) fn read_env(p: &mut ProviderConfig, env: &dyn Fn(&str) -> Option<String>) {
    let read = |name: &str| {
        env(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(Secret::new)
    };
    if let Some(w) = p.wechat.as_mut() {
        w.appid = read(&w.appid_env);
        w.secret = read(&w.secret_env);
        w.callback_token = read(&w.callback_token_env);
        w.encoding_aes_key = read(&w.encoding_aes_key_env);
    }
}

/// Adds every problem of a provider's push or WeChat table (or of one where it does not
/// belong).
pub(super) fn validate(i: usize, p: &ProviderConfig, errs: &mut Vec<String>) {
    let tables = [
        ("fcm", ProviderKind::Fcm, p.fcm.is_some()),
        ("apns", ProviderKind::Apns, p.apns.is_some()),
        ("wechat", ProviderKind::Wechat, p.wechat.is_some()),
    ];
    super::model::check_kind_tables(i, p.kind, &tables, errs);
    let channel = match p.kind {
        ProviderKind::Fcm | ProviderKind::Apns => Channel::Push,
        ProviderKind::Wechat => Channel::Wechat,
        _ => return,
    };
    validate_transport(i, p, errs);
    if p.channel != channel {
        errs.push(format!(
            "providers[{i}].channel: this provider sends {}",
            channel.as_str()
        ));
    }
    if p.batch_size != 1 {
        errs.push(format!(
            "providers[{i}].batch_size: these APIs take one message per request; must be 1"
        ));
    }
    // FCM and APNs do not drop a repeated send; WeChat's `client_msg_id` does, but only
    // within its own window, so in-flight messages stay in doubt after a crash everywhere.
    if p.idempotent {
        errs.push(format!(
            "providers[{i}].idempotent: this API does not deduplicate by herald's id; must be false"
        ));
    }
    if let (ProviderKind::Fcm, Some(f)) = (p.kind, &p.fcm) {
        url(errs, i, "fcm.base_url", &f.base_url);
        if let Err(reason) =
            crate::provider::fcm::oauth::ServiceAccount::read(&f.service_account_file)
        {
            errs.push(format!("providers[{i}].fcm.service_account_file: {reason}"));
        }
    }
    if let (ProviderKind::Apns, Some(a)) = (p.kind, &p.apns) {
        url(errs, i, "apns.base_url", &a.base_url);
        for (field, value) in [
            ("apns.team_id", &a.team_id),
            ("apns.key_id", &a.key_id),
            ("apns.topic", &a.topic),
            ("apns.push_type", &a.push_type),
        ] {
            if value.trim().is_empty() {
                errs.push(format!("providers[{i}].{field}: required"));
            }
        }
        if !(20..=55).contains(&a.token_refresh_minutes) {
            errs.push(format!(
                "providers[{i}].apns.token_refresh_minutes: must be between 20 and 55"
            ));
        }
        if !matches!(a.priority, 1 | 5 | 10) {
            errs.push(format!("providers[{i}].apns.priority: must be 10, 5 or 1"));
        }
        if let Err(reason) = crate::provider::apns::token::SigningKey::read(&a.key_file) {
            errs.push(format!("providers[{i}].apns.key_file: {reason}"));
        }
    }
    if let (ProviderKind::Wechat, Some(w)) = (p.kind, &p.wechat) {
        url(errs, i, "wechat.base_url", &w.base_url);
        for (field, var, value) in [
            ("wechat.appid_env", &w.appid_env, &w.appid),
            ("wechat.secret_env", &w.secret_env, &w.secret),
            (
                "wechat.callback_token_env",
                &w.callback_token_env,
                &w.callback_token,
            ),
        ] {
            if value.is_none() {
                errs.push(format!(
                    "providers[{i}].{field}: environment variable {var:?} is not set"
                ));
            }
        }
        if let Some(key) = &w.encoding_aes_key {
            let key = String::from_utf8_lossy(key.expose());
            let appid = w
                .appid
                .as_ref()
                .map(|a| String::from_utf8_lossy(a.expose()));
            let appid = appid.as_deref().unwrap_or("");
            if let Err(e) = crate::provider::wechat::crypt::MessageKey::new(&key, appid) {
                errs.push(format!(
                    "providers[{i}].wechat.encoding_aes_key_env: {:?}: {e}",
                    w.encoding_aes_key_env
                ));
            }
        }
    }
}

fn url(errs: &mut Vec<String>, i: usize, field: &str, url: &str) {
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

    fn errors(c: &Config) -> Vec<String> {
        c.validate().expect_err("invalid")
    }

    #[test]
    fn push_kinds_need_their_key_files_and_the_push_channel() {
        let c = config(|p| {
            p.kind = ProviderKind::Apns;
            p.apns = Some(ApnsConfig {
                key_file: "/nonexistent/AuthKey.p8".into(),
                token_refresh_minutes: 61,
                ..ApnsConfig::default()
            });
        });
        let errs = errors(&c);
        for needle in [
            "apns.key_file",
            "apns.team_id",
            "apns.topic",
            "apns.token_refresh_minutes",
            "channel",
        ] {
            assert!(
                errs.iter().any(|e| e.contains(needle)),
                "{needle}: {errs:?}"
            );
        }
        let c = config(|p| {
            p.kind = ProviderKind::Fcm;
            p.channel = Channel::Push;
            p.fcm = Some(FcmConfig::default());
        });
        assert!(
            errors(&c)
                .iter()
                .any(|e| e.contains("fcm.service_account_file: required")),
            "{:?}",
            errors(&c)
        );
    }

    #[test]
    fn wechat_needs_its_secrets_from_the_environment() {
        let mut c = config(|p| {
            p.kind = ProviderKind::Wechat;
            p.channel = Channel::Wechat;
            p.wechat = Some(WechatConfig::default());
        });
        c.apply_env(&|_| None);
        let errs = errors(&c);
        assert!(
            errs.iter().any(|e| e.contains("HERALD_WECHAT_SECRET")),
            "{errs:?}"
        );
        // The EncodingAESKey is optional, but one that is set must be a key.
        c.apply_env(&|k| {
            k.starts_with("HERALD_WECHAT_")
                .then(|| "s3cret".to_string())
        });
        let errs = errors(&c);
        assert!(
            errs.iter()
                .any(|e| e.contains("wechat.encoding_aes_key_env") && e.contains("43 characters")),
            "{errs:?}"
        );
        c.apply_env(&|k| match k {
            "HERALD_WECHAT_ENCODING_AES_KEY" => {
                Some("kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR".to_string())
            }
            k => k
                .starts_with("HERALD_WECHAT_")
                .then(|| "s3cret".to_string()),
        });
        let errs = c.validate().err().unwrap_or_default();
        assert!(!errs.iter().any(|e| e.contains("wechat")), "{errs:?}");
        assert!(!format!("{c:?}").contains("s3cret"), "secrets never print");
        assert!(
            !format!("{c:?}").contains("kWxPEV2UEDyxWpmPdKC3"),
            "secrets never print"
        );
    }
}
