//! Provider adapters behind one trait. Adapters only translate: retries, rate limits,
//! metrics and accounting are done once by the dispatcher, not by each adapter.

pub mod http;
pub mod sandbox;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::config::{ProviderConfig, ProviderKind};
use crate::domain::{Channel, MessageId};

/// One message as handed to a provider. `id` is the provider's idempotency key.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    pub id: MessageId,
    /// Destination, E.164 digits.
    pub to: u64,
    pub channel: Channel,
    pub body: String,
    pub parts: u32,
}

/// A delivery receipt as a provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Delivered,
    Undelivered,
}

/// The provider's answer for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted; receipts will refer to `provider_message_id`.
    Accepted { provider_message_id: String },
    /// Try again later with the same id (5xx, timeouts, connection errors).
    Transient { error: String },
    /// Slow down and try again after the given time; not a failure.
    Throttled { retry_after: Duration },
    /// Will never succeed (bad number, content refused).
    Permanent { error: String },
}

/// A receipt the sandbox simulates for an accepted message, applied after `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatedReceipt {
    pub status: DeliveryStatus,
    pub after: Duration,
}

/// A provider of one channel.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The configured provider name (labels, prices, ledger).
    fn name(&self) -> &str;

    /// Sends a batch; answers one outcome per message, in order.
    async fn send_batch(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome>;

    /// For simulated providers only: the receipt that will come for an accepted message.
    fn simulated_receipt(&self, _message: &OutboundMessage) -> Option<SimulatedReceipt> {
        None
    }
}

/// Builds the adapter a provider's config block names.
pub fn build(
    config: &ProviderConfig,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Provider>, http::HttpProviderError> {
    Ok(match config.kind {
        ProviderKind::Sandbox => Arc::new(sandbox::Sandbox::new(
            sandbox::SandboxSettings::from_config(config),
        )),
        ProviderKind::Http => Arc::new(http::HttpProvider::new(
            http::HttpSettings::from_config(config)?,
            clock,
        )?),
    })
}
