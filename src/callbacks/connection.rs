//! Receipts and replies that arrive on a provider's own connection (SMPP `deliver_sm`) enter
//! the same pipeline as the signed HTTP callbacks: matched to messages through the provider-id
//! index, applied forward-only, and acknowledged to the provider only once the delivery states
//! they settled are journaled (a crash before that makes the SMSC deliver them again, and
//! applying them again changes nothing). Replies opt the sender out (or in) at once.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use super::inbound::Inbound;
use super::receipt::Receipt;
use super::Callbacks;
use crate::dispatch::Dispatcher;
use crate::provider::{EventError, ProviderEvents};

/// The callbacks pipeline as a provider's events sink.
pub struct ConnectionEvents {
    callbacks: Arc<Callbacks>,
    /// Set once the dispatcher runs (providers are built before it): receipts are journaled
    /// through it before they are acknowledged.
    dispatcher: OnceLock<Dispatcher>,
}

impl ConnectionEvents {
    /// A sink over `callbacks`; [`ConnectionEvents::attach`] the dispatcher once it runs.
    pub fn new(callbacks: Arc<Callbacks>) -> Arc<ConnectionEvents> {
        Arc::new(ConnectionEvents {
            callbacks,
            dispatcher: OnceLock::new(),
        })
    }

    /// The dispatcher whose journal makes applied receipts durable (once).
    pub fn attach(&self, dispatcher: Dispatcher) {
        let _ = self.dispatcher.set(dispatcher);
    }
}

fn not_applied(e: impl std::error::Error + Send + Sync + 'static) -> EventError {
    EventError(Box::new(e))
}

#[async_trait]
impl ProviderEvents for ConnectionEvents {
    async fn receipt(&self, provider: &str, receipt: Receipt) -> Result<(), EventError> {
        let Some(p) = self.callbacks.provider(provider) else {
            return Ok(());
        };
        self.callbacks
            .apply_receipts(p, std::slice::from_ref(&receipt));
        if let Some(dispatcher) = self.dispatcher.get() {
            dispatcher.flush_deliveries().await.map_err(not_applied)?;
        }
        Ok(())
    }

    async fn inbound(&self, provider: &str, message: Inbound) -> Result<(), EventError> {
        let Some(p) = self.callbacks.provider(provider) else {
            return Ok(());
        };
        self.callbacks
            .apply_inbound(p, vec![message])
            .await
            .map_err(not_applied)?;
        Ok(())
    }
}
