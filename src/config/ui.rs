//! `[ui]`: the report pages under `/ui/`: how long a sign-in lasts, the secret its cookie is
//! signed with, and whether the cookies are marked `Secure`.

use serde::Deserialize;

use super::Secret;

/// `[ui]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// A sign-in ends this long after it was made; the reader signs in again.
    pub sign_in_minutes: u64,
    /// Environment variable holding the secret sign-in cookies are signed with. Unset: a
    /// random secret per process (everyone signs in again after a restart, and instances
    /// behind one load balancer do not accept each other's cookies).
    pub secret_env: String,
    /// The secret read from `secret_env`.
    #[serde(skip)]
    pub secret: Option<Secret>,
    /// Mark the cookies `Secure` (sent over HTTPS only). Set it when a TLS proxy fronts herald.
    pub secure_cookies: bool,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            sign_in_minutes: 480,
            secret_env: "HERALD_UI_SECRET".into(),
            secret: None,
            secure_cookies: false,
        }
    }
}

/// Adds every problem with `[ui]` to `errs`.
pub(super) fn validate(ui: &UiConfig, errs: &mut Vec<String>) {
    if !(1..=7 * 24 * 60).contains(&ui.sign_in_minutes) {
        errs.push("ui.sign_in_minutes: must be between 1 and 10080 (a week)".into());
    }
    if ui.secret.as_ref().is_some_and(|s| s.expose().len() < 16) {
        errs.push(format!(
            "ui.secret_env: the secret in {} must be at least 16 bytes",
            ui.secret_env
        ));
    }
}
