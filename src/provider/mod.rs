//! Provider adapters behind one trait. Adapters only translate: retries, rate limits,
//! metrics and accounting are done once by the dispatcher, not by each adapter.
//!
//! - `sandbox`: in process, simulated; `http`: the generic JSON protocol; `smpp`: SMSCs;
//!   `smtp`: email relays.
//! - `aliyun`, `tencent`, `twilio`: cloud SMS APIs, each with its wire format and signature
//!   as pure functions; `cloud` holds what they share (client, request bound, batching).
//! - `fcm`, `apns`: app push; `wechat`: official-account template messages. Each keeps its
//!   bearer token in an `access_token` cache.
//! - `https_client`: the pooled TLS client every HTTP-speaking adapter sends with, and the
//!   one place a transport failure is told apart: not sent, or maybe sent.

pub mod access_token;
pub mod aliyun;
pub mod apns;
pub mod cloud;
pub mod content;
pub mod fcm;
pub mod http;
pub mod https_client;
pub mod sandbox;
pub mod smpp;
pub mod smtp;
pub mod tencent;
pub mod twilio;
pub mod wechat;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::callbacks::inbound::Inbound;
use crate::callbacks::receipt::Receipt;
use crate::clock::Clock;
use crate::config::{ProviderConfig, ProviderKind};
use crate::domain::{Address, Channel, MessageId};

/// One message as handed to a provider. `id` is the provider's idempotency key.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    pub id: MessageId,
    /// Destination on the message's channel.
    pub to: Address,
    pub channel: Channel,
    pub body: String,
    pub parts: u32,
    /// Push and WeChat: what is sent beside the body (title and data, a template's fields),
    /// rendered for the recipient. `None` for SMS and email.
    pub content: Option<Arc<content::ChannelContent>>,
}

impl OutboundMessage {
    /// The destination number of an SMS. Adapters that only send SMS read this: config
    /// validation never routes another channel to them ([`ProviderKind::channels`]), so the
    /// 0 of a non-phone address (which every SMSC refuses) is never sent.
    pub fn phone(&self) -> u64 {
        self.to.phone().unwrap_or(0)
    }
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
    /// Try again later with the same id, at the same provider: the request may have reached
    /// it (a timeout, a connection lost before the answer), so it may have been accepted.
    Transient { error: String },
    /// The provider answered that it did not take the message now (a 5xx answer, a refused
    /// connection, no SMPP bind up, an error `submit_sm_resp`): nothing was accepted, so it
    /// may be sent again under the same id, to this provider or to another one of its route.
    Unavailable { error: String },
    /// Slow down and try again after the given time; not a failure.
    Throttled { retry_after: Duration },
    /// Will never succeed (bad number, content refused).
    Permanent { error: String },
    /// Will never succeed at this address, nor will any later message: the push token is
    /// dead, or the person unfollowed the official account. Settled as failed, and `fate`
    /// is applied to the contact so later jobs do not try again.
    Unreachable { error: String, fate: AddressFate },
}

/// What a provider's refusal means for the address beyond the message refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFate {
    /// This address (one push token) is dead: suppress it, keep the contact's others.
    Suppress,
    /// The person withdrew from the channel (a WeChat unfollow): opt the contact out of it.
    OptOut,
}

/// A receipt the sandbox simulates for an accepted message, applied after `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatedReceipt {
    pub status: DeliveryStatus,
    pub after: Duration,
}

/// A message the journal shows handed to the provider when the previous process stopped,
/// with no answer recorded.
#[derive(Debug, Clone)]
pub struct InFlightMessage {
    pub id: MessageId,
    /// The number of an SMS; 0 on other channels (their addresses are not journaled).
    pub to: u64,
    pub parts: u32,
}

/// What a provider that cannot drop repeats knows, after a restart, of a message in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InFlightFate {
    /// It cannot tell: the message stays in doubt until a receipt settles it.
    Unknown,
    /// It certainly did not take the message: send it again.
    NotSent,
    /// It took the message under this id: settle it as sent.
    Sent { provider_message_id: String },
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

    /// Closes what the provider holds open (SMPP unbinds), after the last send. Sends after
    /// it fail as transient.
    async fn shutdown(&self) {}

    /// Sets the provider's own gauges (SMPP binds and windows) just before a scrape.
    fn observe_metrics(&self) {}

    /// For providers that cannot drop repeats: what became of messages in flight at a crash,
    /// one answer per message, in order. Called once at start-up, before any send; it may
    /// read local files but must not wait on the network (it holds up the recovery).
    fn in_flight_fates(&self, messages: &[InFlightMessage]) -> Vec<InFlightFate> {
        vec![InFlightFate::Unknown; messages.len()]
    }
}

/// Where a provider hands what arrives on its own connection rather than through the HTTP
/// callback endpoints: SMPP delivery receipts and mobile-originated replies (`deliver_sm`).
/// They are the same receipts and replies the callbacks pipeline applies, named by provider.
///
/// Each call is awaited before the provider acknowledges the event to its sender; an error
/// makes the sender deliver it again later (SMPP answers `ESME_RX_T_APPN`), so an
/// implementation returns one only when nothing was applied and it is worth retrying.
#[async_trait]
pub trait ProviderEvents: Send + Sync + 'static {
    async fn receipt(&self, provider: &str, receipt: Receipt) -> Result<(), EventError>;
    async fn inbound(&self, provider: &str, message: Inbound) -> Result<(), EventError>;
}

/// An event that could not be applied now (the state store is down, say).
#[derive(Debug, thiserror::Error)]
#[error("event not applied: {0}")]
pub struct EventError(#[from] pub Box<dyn std::error::Error + Send + Sync>);

/// Why a provider could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Http(#[from] http::HttpProviderError),
    #[error(transparent)]
    Smpp(#[from] smpp::SmppError),
    #[error(transparent)]
    Cloud(#[from] cloud::CloudError),
    #[error(transparent)]
    Smtp(#[from] smtp::SmtpError),
}

/// Builds the adapter a provider's config block names, without an events sink: receipts and
/// replies that arrive on a provider's own connection are acknowledged and dropped; email
/// unsubscribe links are under the default tracking base URL.
pub fn build(
    config: &ProviderConfig,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Provider>, BuildError> {
    let base = crate::config::TrackingConfig::default().base_url;
    build_with_events(config, clock, None, &base)
}

/// Builds the adapter a provider's config block names; `events` receives what arrives on its
/// own connection (SMPP `deliver_sm`). Adapters with a connection start it here (a tokio
/// runtime is required). `link_base` is the tracking base URL email unsubscribe links use.
pub fn build_with_events(
    config: &ProviderConfig,
    clock: Arc<dyn Clock>,
    events: Option<Arc<dyn ProviderEvents>>,
    link_base: &str,
) -> Result<Arc<dyn Provider>, BuildError> {
    Ok(match config.kind {
        ProviderKind::Sandbox => Arc::new(sandbox::Sandbox::new(
            sandbox::SandboxSettings::from_config(config),
        )),
        ProviderKind::Http => Arc::new(http::HttpProvider::new(
            http::HttpSettings::from_config(config)?,
            clock,
        )?),
        ProviderKind::Smpp => Arc::new(smpp::SmppProvider::start(
            smpp::SmppSettings::from_config(config)?,
            events,
        )),
        ProviderKind::Aliyun => Arc::new(aliyun::AliyunProvider::new(config, clock)?),
        ProviderKind::Tencent => Arc::new(tencent::TencentProvider::new(config, clock)?),
        ProviderKind::Twilio => Arc::new(twilio::TwilioProvider::new(config, clock)?),
        ProviderKind::Fcm => Arc::new(fcm::FcmProvider::new(config, clock)?),
        ProviderKind::Apns => Arc::new(apns::ApnsProvider::new(config, clock)?),
        ProviderKind::Wechat => Arc::new(wechat::WechatProvider::new(config, clock)?),
        ProviderKind::Smtp => Arc::new(smtp::SmtpProvider::new(config, link_base)?),
    })
}
