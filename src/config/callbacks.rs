//! Settings of the way back: signed provider callbacks (delivery receipts, inbound replies)
//! and tracked links. Secrets never sit in the file: the file names environment variables,
//! and [`super::Config::apply_env`] reads them into [`Secret`]s, which never print.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

/// `[callbacks]`: how receipts and inbound replies are authenticated and kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbacksConfig {
    /// A signed request whose `X-Herald-Timestamp` is further than this from now is refused.
    pub signature_tolerance_seconds: u64,
    /// A sent message without any receipt after this long reads as `unknown`.
    pub receipt_timeout_seconds: u64,
    /// How long the provider-id index remembers a message (late or repeated receipts are
    /// recognised within it); at least `receipt_timeout_seconds`.
    pub index_retention_seconds: u64,
    /// A receipt for an id not registered yet (the send answer is still on its way) is kept
    /// this long and applied when the message is registered.
    pub pending_receipt_seconds: u64,
    /// At most this many such early receipts are kept; beyond it they are dropped and counted.
    pub max_pending_receipts: usize,
    /// How often the background sweep runs (timeouts, retention, early receipts, replays).
    pub sweep_interval_ms: u64,
    /// Cap on one callback request body (it is read whole: the signature covers it).
    pub max_body_bytes: usize,
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        CallbacksConfig {
            signature_tolerance_seconds: 300,
            receipt_timeout_seconds: 259_200,
            index_retention_seconds: 345_600,
            pending_receipt_seconds: 600,
            max_pending_receipts: 100_000,
            sweep_interval_ms: 5_000,
            max_body_bytes: 4 << 20,
        }
    }
}

/// `[tracking]`: tracked links and the email open pixel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// Scheme and host (optionally a path prefix) of tracked links, without a trailing `/`:
    /// a link becomes `<base_url>/c/<22-character token>`.
    pub base_url: String,
    /// Environment variable holding the link-signing secret. Unset: a random secret per
    /// process (links then stop resolving after a restart), with a warning at start-up.
    pub link_secret_env: String,
    /// The secret read from `link_secret_env`.
    #[serde(skip)]
    pub link_secret: Option<Secret>,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        TrackingConfig {
            base_url: "https://hrld.io".into(),
            link_secret_env: "HERALD_LINK_SECRET".into(),
            link_secret: None,
        }
    }
}

/// How a provider writes its message ids back in receipts, so that the id it answered at
/// send time and the id in a receipt are recognised as the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageIdFormat {
    /// Byte for byte (surrounding whitespace ignored).
    #[default]
    Opaque,
    /// ASCII letters compare case-insensitively.
    CaseInsensitive,
    /// A decimal number: leading zeros ignored.
    Decimal,
    /// A hexadecimal number: case, a `0x` prefix and leading zeros ignored.
    Hex,
}

/// Secret bytes from the environment. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: impl AsRef<[u8]>) -> Secret {
        Secret(Arc::from(bytes.as_ref()))
    }

    /// The bytes, for keying a MAC.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads every secret the config names from `env`; empty values count as unset.
pub(super) fn read_secrets(config: &mut super::Config, env: &dyn Fn(&str) -> Option<String>) {
    let read = |name: &str| {
        env(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| Secret::new(v.trim()))
    };
    for p in &mut config.providers {
        p.callback_secrets = p
            .callback_secret_envs
            .iter()
            .filter_map(|n| read(n))
            .collect();
    }
    if let Some(s) = read(&config.tracking.link_secret_env) {
        config.tracking.link_secret = Some(s);
    }
    if let Some(s) = read(&config.ui.secret_env) {
        config.ui.secret = Some(s);
    }
    if let Some(url) = env("HERALD_TRACKING_BASE_URL").filter(|v| !v.trim().is_empty()) {
        config.tracking.base_url = url.trim().to_string();
    }
}

/// Adds every problem with the callback and tracking settings to `errs`.
pub(super) fn validate(config: &super::Config, errs: &mut Vec<String>) {
    let c = &config.callbacks;
    if c.signature_tolerance_seconds == 0 {
        errs.push("callbacks.signature_tolerance_seconds: must be at least 1".into());
    }
    if c.receipt_timeout_seconds == 0 {
        errs.push("callbacks.receipt_timeout_seconds: must be at least 1".into());
    }
    if c.index_retention_seconds < c.receipt_timeout_seconds {
        errs.push(
            "callbacks.index_retention_seconds: must be at least receipt_timeout_seconds".into(),
        );
    }
    if c.sweep_interval_ms == 0 {
        errs.push("callbacks.sweep_interval_ms: must be at least 1".into());
    }
    if c.max_body_bytes == 0 {
        errs.push("callbacks.max_body_bytes: must be at least 1".into());
    }
    let url = &config.tracking.base_url;
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !url.ends_with('/') => {
            if url.chars().any(|ch| ch.is_whitespace() || !ch.is_ascii()) {
                errs.push("tracking.base_url: must be ASCII without spaces".into());
            }
        }
        _ => errs.push(format!(
            "tracking.base_url: {url:?} must be http(s)://host[/prefix] without a trailing /"
        )),
    }
    for (i, p) in config.providers.iter().enumerate() {
        if p.callback_secret_envs.iter().any(|n| n.trim().is_empty()) {
            errs.push(format!(
                "providers[{i}].callback_secret_envs: names must not be empty"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), b"hunter2");
    }

    #[test]
    fn secrets_come_from_the_named_variables() {
        let mut c: super::super::Config =
            toml::from_str(super::super::DEFAULT_TOML).expect("default config");
        let env = |k: &str| match k {
            "HERALD_SANDBOX_SECRET" => Some("one".to_string()),
            "HERALD_SANDBOX_SECRET_NEXT" => Some(" ".to_string()),
            "HERALD_LINK_SECRET" => Some("links".to_string()),
            _ => None,
        };
        c.apply_env(&env);
        assert_eq!(c.providers[0].callback_secrets, vec![Secret::new("one")]);
        assert_eq!(c.tracking.link_secret, Some(Secret::new("links")));
        assert!(c.validate().is_ok());
        c.tracking.base_url = "hrld.io/".into();
        c.callbacks.index_retention_seconds = 1;
        assert_eq!(c.validate().expect_err("invalid").len(), 2);
    }
}
