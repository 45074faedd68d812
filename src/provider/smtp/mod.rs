//! Email over SMTP: pooled lettre connections on tokio with rustls (STARTTLS, implicit TLS,
//! or plain to a loopback relay) opened by `pool.rs`, AUTH when configured, and the MIME of
//! each message built by `message.rs`.
//!
//! A batch is sent concurrently over the pool's connections, at most `connections` messages
//! in flight across all workers, so connections are reused rather than opened per message. The
//! relay's answer decides the outcome: a 5xx reply is permanent for the message, a 4xx reply
//! means it was not taken (send again), and a lost connection or a timeout may have come after
//! the relay took it (transient, same message id). The accepted message's id is herald's own
//! (it is in `Message-ID` and `X-Herald-Message-Id`), so a bounce names it directly.

pub mod config;
pub mod message;
mod pool;

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, TlsParameters};

use super::{OutboundMessage, Provider, SendOutcome};
use crate::config::ProviderConfig;
pub use config::{SmtpConfig, SmtpTls};
use message::Sender;
use pool::{Pool, Protection, SendError};

/// Why an SMTP provider could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("providers.smtp: the table is required for kind = \"smtp\"")]
    Missing,
    #[error("providers.smtp.from_address: {0}")]
    From(String),
    #[error("providers.ca_file: {0}")]
    CaFile(String),
    #[error("providers.smtp: TLS set-up failed: {0}")]
    Tls(String),
}

/// The SMTP adapter.
pub struct SmtpProvider {
    name: String,
    pool: Pool,
    sender: Sender,
    /// One permit per pooled connection, so at most `connections` are ever open.
    in_flight: tokio::sync::Semaphore,
}

impl SmtpProvider {
    /// Builds the pooled transport (no connection is made until the first send).
    /// `link_base` is the tracking base URL the unsubscribe links are under.
    pub fn new(config: &ProviderConfig, link_base: &str) -> Result<SmtpProvider, SmtpError> {
        let smtp = config.smtp.as_ref().ok_or(SmtpError::Missing)?;
        let from_address = crate::domain::normalize_email(&smtp.from_address)
            .map_err(|e| SmtpError::From(e.to_string()))?;
        let from = Mailbox::new(
            smtp.from_name.clone(),
            from_address
                .parse()
                .map_err(|e: lettre::address::AddressError| SmtpError::From(e.to_string()))?,
        );
        let id_domain = from_address
            .rsplit_once('@')
            .map_or("herald", |(_, d)| d)
            .to_string();
        let protection = match smtp.tls {
            SmtpTls::None => Protection::None,
            SmtpTls::Implicit => pool::implicit_tls(&smtp.host, config.ca_file.as_deref())
                .map_err(|e| match &config.ca_file {
                    Some(_) => SmtpError::CaFile(e),
                    None => SmtpError::Tls(e),
                })?,
            SmtpTls::Starttls => {
                let mut params = TlsParameters::builder(smtp.host.clone());
                if let Some(path) = &config.ca_file {
                    let pem = std::fs::read(path).map_err(|e| SmtpError::CaFile(e.to_string()))?;
                    let cert = Certificate::from_pem(&pem)
                        .map_err(|e| SmtpError::CaFile(e.to_string()))?;
                    params = params.add_root_certificate(cert);
                }
                Protection::Starttls(params.build().map_err(|e| SmtpError::Tls(e.to_string()))?)
            }
        };
        let credentials = match (&smtp.username, &smtp.password) {
            (Some(user), Some(password)) => {
                let password = String::from_utf8_lossy(password.expose()).into_owned();
                Some(Credentials::new(user.clone(), password))
            }
            _ => None,
        };
        Ok(SmtpProvider {
            name: config.name.clone(),
            pool: Pool {
                host: smtp.host.clone(),
                port: smtp.port(),
                protection,
                credentials,
                timeout: Duration::from_millis(smtp.timeout_ms),
                idle: parking_lot::Mutex::new(Vec::new()),
            },
            sender: Sender {
                from,
                id_domain,
                link_base: link_base.trim_end_matches('/').to_string(),
                unsubscribe_mailto: smtp.unsubscribe_mailto.clone(),
            },
            in_flight: tokio::sync::Semaphore::new(smtp.connections as usize),
        })
    }

    async fn send_one(&self, m: &OutboundMessage) -> SendOutcome {
        let email = match message::build(&self.sender, m) {
            Ok(e) => e,
            Err(error) => return SendOutcome::Permanent { error },
        };
        let Ok(_permit) = self.in_flight.acquire().await else {
            return SendOutcome::Unavailable {
                error: "the provider is shut down".into(),
            };
        };
        let body = email.formatted();
        match self.pool.send(email.envelope(), &body).await {
            Ok(()) => SendOutcome::Accepted {
                provider_message_id: m.id.to_string(),
            },
            Err(SendError::Smtp(e)) => outcome_of(&e),
            Err(SendError::Connect(error)) => SendOutcome::Unavailable { error },
            Err(SendError::Timeout) => SendOutcome::Transient {
                error: "no answer from the relay in time".into(),
            },
        }
    }
}

/// What a failed SMTP exchange means for the message.
fn outcome_of(e: &lettre::transport::smtp::Error) -> SendOutcome {
    let error = e.to_string();
    if e.is_permanent() {
        SendOutcome::Permanent { error }
    } else if e.is_transient() {
        SendOutcome::Unavailable { error }
    } else {
        SendOutcome::Transient { error }
    }
}

#[async_trait]
impl Provider for SmtpProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send_batch(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        futures::future::join_all(messages.iter().map(|m| self.send_one(m))).await
    }
}
