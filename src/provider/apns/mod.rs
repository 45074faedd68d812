//! The Apple Push Notification service adapter (`kind = "apns"`): token-based connections
//! over HTTP/2 only, `POST /3/device/{token}` with `apns-topic`, `apns-push-type`,
//! `apns-priority` and `apns-id` (herald's message id); the ES256 provider token in
//! [`token`], payload and error table in [`wire`].
//!
//! The provider token is signed once and reused for `token_refresh_minutes` (Apple wants it
//! neither older than an hour nor renewed more often than every 20 minutes); a 403
//! `ExpiredProviderToken` drops it, and the message is sent once more with a new one.

pub mod token;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::access_token::TokenCache;
use super::cloud::{not_answered, CloudError, RequestSender, Transport};
use super::content::PushContent;
use super::https_client;
use super::{OutboundMessage, Provider, SendOutcome};
use crate::clock::Clock;
use crate::config::{ApnsConfig, ProviderConfig};
use crate::domain::{MessageId, PushPlatform};

/// The APNs provider of one app (topic).
pub struct ApnsProvider {
    name: String,
    base: String,
    config: ApnsConfig,
    key: token::SigningKey,
    tokens: TokenCache,
    transport: Transport,
    clock: Arc<dyn Clock>,
}

impl ApnsProvider {
    /// Builds the adapter from a validated `kind = "apns"` config: reads the `.p8` key,
    /// opens no connection.
    pub fn new(c: &ProviderConfig, clock: Arc<dyn Clock>) -> Result<ApnsProvider, CloudError> {
        let config = c
            .apns
            .clone()
            .ok_or_else(|| CloudError::config(c, "the apns table is missing"))?;
        let key = token::SigningKey::read(&config.key_file)
            .map_err(|e| CloudError::config(c, format!("apns.key_file: {e}")))?;
        Ok(ApnsProvider {
            name: c.name.clone(),
            base: config.base_url.trim().trim_end_matches('/').to_string(),
            key,
            tokens: TokenCache::new(Duration::ZERO, clock.clone()),
            transport: Transport::http2_from_config(c)?,
            config,
            clock,
        })
    }

    /// Sends one notification to one device token.
    pub async fn send_push(
        &self,
        id: MessageId,
        device: &str,
        content: &PushContent,
    ) -> SendOutcome {
        if !wire::token_shape_ok(device) {
            return SendOutcome::Unreachable {
                error: "not an APNs device token".into(),
                fate: super::AddressFate::Suppress,
            };
        }
        let apns_id = wire::apns_id(id);
        let url = format!("{}{}", self.base, wire::path(device));
        let payload = wire::payload(content);
        let throttle = Duration::from_millis(self.config.throttle_retry_ms);
        for _ in 0..2 {
            let bearer = match self.provider_token().await {
                Ok(t) => t,
                Err(error) => return SendOutcome::Unavailable { error },
            };
            let request = self
                .transport
                .client
                .post(&url)
                .header("authorization", format!("bearer {bearer}"))
                .header("apns-topic", &self.config.topic)
                .header("apns-push-type", &self.config.push_type)
                .header("apns-priority", self.config.priority.to_string())
                .header("apns-id", &apns_id)
                .header("content-type", "application/json")
                .body(payload.clone());
            let answer = match https_client::exchange(request).await {
                Ok(a) => a,
                Err(failure) => return not_answered(1, failure).remove(0),
            };
            match wire::map_answer(&answer, &apns_id, throttle) {
                wire::Answer::Outcome(outcome) => return outcome,
                wire::Answer::NewToken => self.tokens.invalidate(&bearer),
            }
        }
        SendOutcome::Unavailable {
            error: "http 403 ExpiredProviderToken with a new token".into(),
        }
    }

    async fn provider_token(&self) -> Result<Arc<str>, String> {
        self.tokens
            .get(|| async {
                let t = self.key.provider_token(
                    &self.config.team_id,
                    &self.config.key_id,
                    self.clock.now().timestamp(),
                )?;
                Ok((
                    t,
                    Duration::from_secs(self.config.token_refresh_minutes * 60),
                ))
            })
            .await
    }
}

#[async_trait]
impl Provider for ApnsProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send_batch(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        self.transport.send_in_requests(messages, self).await
    }
}

#[async_trait]
impl RequestSender for ApnsProvider {
    async fn send_request(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        let mut outcomes = Vec::with_capacity(messages.len());
        for m in messages {
            outcomes.push(match super::content::push_of(m, PushPlatform::Apns) {
                Ok((token, content)) => self.send_push(m.id, token, content).await,
                Err(outcome) => outcome,
            });
        }
        outcomes
    }
}
