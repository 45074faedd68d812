//! The `[providers.smtp]` table of a `kind = "smtp"` provider: the relay, its TLS mode, the
//! account and the sender. Validated with the rest of the configuration; every problem names
//! its field (`providers[2].smtp.from_address`).
//!
//! ```toml
//! [[providers]]
//! name = "mail"
//! kind = "smtp"
//! channel = "email"
//! currency = "CNY"
//! [providers.smtp]
//! host = "smtp.example.com"
//! tls = "starttls"
//! username = "herald"
//! password_env = "HERALD_SMTP_PASSWORD"
//! from_address = "news@example.com"
//! from_name = "Example News"
//! ```

use serde::Deserialize;

use crate::config::Secret;
use crate::domain::normalize_email;

/// Most pooled connections to one relay.
pub const MAX_CONNECTIONS: u32 = 256;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which the relay must offer (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
    /// No TLS: only for a relay on the loopback interface.
    None,
}

/// `[providers.smtp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: 587 for STARTTLS, 465 for implicit TLS, 25 without TLS.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// The AUTH user; without it herald does not authenticate.
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable holding the AUTH password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Read from `password_env`.
    #[serde(skip)]
    pub password: Option<Secret>,
    /// Pooled connections kept to the relay (messages in flight at once).
    #[serde(default = "default_connections")]
    pub connections: u32,
    /// The envelope sender and `From:` address.
    pub from_address: String,
    /// The display name in `From:`.
    #[serde(default)]
    pub from_name: Option<String>,
    /// An address that unsubscribes by mail, offered in `List-Unsubscribe` beside the
    /// one-click link (`mailto:` with the message id as subject).
    #[serde(default)]
    pub unsubscribe_mailto: Option<String>,
    /// One SMTP exchange slower than this is a transient failure.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_connections() -> u32 {
    8
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl SmtpConfig {
    /// The port, explicit or the usual one of the TLS mode.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        })
    }

    /// Reads the password from the environment.
    pub fn read_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        self.password = self
            .password_env
            .as_deref()
            .and_then(env)
            .filter(|v| !v.is_empty())
            .map(Secret::new);
    }

    /// Every problem, each naming its field under `at`.
    pub fn validate(&self, at: &str, errs: &mut Vec<String>) {
        if self.host.trim().is_empty() {
            errs.push(format!("{at}.host: must not be empty"));
        }
        let loopback = matches!(
            self.host.as_str(),
            "localhost" | "127.0.0.1" | "::1" | "[::1]"
        );
        if self.tls == SmtpTls::None && !loopback {
            errs.push(format!(
                "{at}.tls: \"none\" only for a relay on loopback (localhost, 127.0.0.1, ::1)"
            ));
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            errs.push(format!("{at}.connections: must be 1 to {MAX_CONNECTIONS}"));
        }
        if let Err(e) = normalize_email(&self.from_address) {
            errs.push(format!("{at}.from_address: {e}"));
        }
        if let Some(m) = &self.unsubscribe_mailto {
            if let Err(e) = normalize_email(m) {
                errs.push(format!("{at}.unsubscribe_mailto: {e}"));
            }
        }
        if self
            .from_name
            .as_deref()
            .is_some_and(|n| n.contains(['\r', '\n']))
        {
            errs.push(format!("{at}.from_name: must be one line"));
        }
        match (&self.username, &self.password_env, &self.password) {
            (Some(_), None, _) => errs.push(format!("{at}.password_env: required with username")),
            (Some(_), Some(var), None) => errs.push(format!("{at}.password_env: {var} is not set")),
            (None, Some(_), _) => errs.push(format!("{at}.username: required with password_env")),
            _ => {}
        }
        if self.timeout_ms == 0 {
            errs.push(format!("{at}.timeout_ms: must be above 0"));
        }
    }
}
