//! What the cloud SMS adapters (`aliyun`, `tencent`, `twilio`) share: the client built from
//! a provider's config, the bound on requests in flight, and the split of a dispatcher batch
//! into API requests. Each adapter keeps its own wire format, signature and error table.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::header::HeaderMap;
use tokio::sync::Semaphore;

use super::https_client::{self, ClientError, ClientSettings, Failure};
use super::{OutboundMessage, SendOutcome};
use crate::config::ProviderConfig;

/// Why a cloud adapter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("provider {name}: {reason}")]
    Config { name: String, reason: String },
    #[error("provider {name}: {source}")]
    Client { name: String, source: ClientError },
}

impl CloudError {
    pub(super) fn config(c: &ProviderConfig, reason: impl Into<String>) -> CloudError {
        CloudError::Config {
            name: c.name.clone(),
            reason: reason.into(),
        }
    }
}

/// The client, and the bound on requests in flight across all workers.
pub struct Transport {
    pub client: reqwest::Client,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    batch_size: usize,
}

impl Transport {
    /// Builds the pooled TLS client of a validated cloud provider config.
    pub fn from_config(c: &ProviderConfig) -> Result<Transport, CloudError> {
        Transport::build(c, false)
    }

    /// Like [`Transport::from_config`], speaking HTTP/2 only (APNs).
    pub fn http2_from_config(c: &ProviderConfig) -> Result<Transport, CloudError> {
        Transport::build(c, true)
    }

    fn build(c: &ProviderConfig, http2_only: bool) -> Result<Transport, CloudError> {
        let max_in_flight = c.max_in_flight.max(1);
        let client = https_client::build(&ClientSettings {
            request_timeout: Duration::from_millis(c.request_timeout_ms.max(1)),
            connect_timeout: Duration::from_millis(c.connect_timeout_ms.max(1)),
            max_idle: max_in_flight,
            ca_file: c.ca_file.clone(),
            default_headers: HeaderMap::new(),
            http2_only,
        })
        .map_err(|source| CloudError::Client {
            name: c.name.clone(),
            source,
        })?;
        Ok(Transport {
            client,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            batch_size: c.batch_size.max(1),
        })
    }

    /// Splits `messages` into requests of at most `batch_size`, runs them with at most
    /// `max_in_flight` in flight (across all callers), and answers one outcome per message,
    /// in order.
    pub async fn send_in_requests(
        &self,
        messages: &[OutboundMessage],
        sender: &dyn RequestSender,
    ) -> Vec<SendOutcome> {
        // Futures are lazy: building them all first starts nothing; `buffered` bounds how
        // many run, and the semaphore bounds requests across concurrent callers.
        let requests: Vec<_> = messages
            .chunks(self.batch_size)
            .map(|chunk| self.one_request(chunk, sender))
            .collect();
        let answers: Vec<Vec<SendOutcome>> = futures::stream::iter(requests)
            .buffered(self.max_in_flight)
            .collect()
            .await;
        answers.into_iter().flatten().collect()
    }
}

impl Transport {
    async fn one_request(
        &self,
        chunk: &[OutboundMessage],
        sender: &dyn RequestSender,
    ) -> Vec<SendOutcome> {
        let Ok(_permit) = self.in_flight.acquire().await else {
            return not_answered(chunk.len(), Failure::NotSent("provider closed".into()));
        };
        sender.send_request(chunk).await
    }
}

/// One API request of an adapter: its messages in, one outcome per message out.
#[async_trait]
pub trait RequestSender: Send + Sync {
    async fn send_request(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome>;
}

/// The outcome of every message of a request that got no complete answer.
pub fn not_answered(n: usize, failure: Failure) -> Vec<SendOutcome> {
    let outcome = match failure {
        Failure::NotSent(error) => SendOutcome::Unavailable { error },
        Failure::MaybeSent(error) => SendOutcome::Transient { error },
    };
    vec![outcome; n]
}

/// A provider's error code as an outcome's error: at most 64 characters of the code's own
/// alphabet (letters, digits, `.`, `_`, `-`, `:`), never the message text that comes with it.
pub fn error_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
        .take(64)
        .collect()
}

/// The outcome of a message whose answer had no body the adapter could read: a 429 is
/// throttled for `throttle`, a 5xx unavailable, a 2xx accepted under herald's own id (the
/// provider said yes; sending again could reach the phone twice, and only its receipts are
/// lost), anything else permanent.
pub fn unreadable_answer(m: &OutboundMessage, status: u16, throttle: Duration) -> SendOutcome {
    match status {
        429 => SendOutcome::Throttled {
            retry_after: throttle,
        },
        200..=299 => SendOutcome::Accepted {
            provider_message_id: m.id.to_string(),
        },
        500..=599 => SendOutcome::Unavailable {
            error: format!("http {status}"),
        },
        _ => SendOutcome::Permanent {
            error: format!("http {status}"),
        },
    }
}
