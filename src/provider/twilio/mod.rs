//! The Twilio adapter (`kind = "twilio"`): Programmable Messaging over HTTPS with basic
//! authentication (Account SID and Auth Token), one message per request; formats in [`wire`].
//! Status callbacks come back through `/v1/callbacks/{provider}/receipts`, verified by their
//! `X-Twilio-Signature` (`crate::callbacks::dialect::twilio`).

pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, CONTENT_TYPE};

use super::cloud::{not_answered, CloudError, RequestSender, Transport};
use super::https_client;
use super::{OutboundMessage, Provider, SendOutcome};
use crate::clock::Clock;
use crate::config::{ProviderConfig, Secret, TwilioConfig};

/// The Twilio provider.
pub struct TwilioProvider {
    name: String,
    config: TwilioConfig,
    messages_url: reqwest::Url,
    account_sid: String,
    auth_token: Secret,
    throttle: Duration,
    transport: Transport,
    clock: Arc<dyn Clock>,
}

impl TwilioProvider {
    /// Builds the adapter from a validated `kind = "twilio"` config (no connection yet).
    pub fn new(c: &ProviderConfig, clock: Arc<dyn Clock>) -> Result<TwilioProvider, CloudError> {
        let config = c
            .twilio
            .clone()
            .ok_or_else(|| CloudError::config(c, "the twilio table is missing"))?;
        let (Some(sid), Some(token)) = (&config.account_sid, &config.auth_token) else {
            return Err(CloudError::config(
                c,
                "the Account SID / Auth Token are not set",
            ));
        };
        let account_sid = String::from_utf8_lossy(sid.expose()).into_owned();
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            config.base_url.trim().trim_end_matches('/'),
            account_sid
        );
        let messages_url = reqwest::Url::parse(&url)
            .map_err(|e| CloudError::config(c, format!("twilio.base_url: {e}")))?;
        Ok(TwilioProvider {
            name: c.name.clone(),
            messages_url,
            account_sid,
            auth_token: token.clone(),
            throttle: Duration::from_millis(config.throttle_retry_ms),
            transport: Transport::from_config(c)?,
            config,
            clock,
        })
    }

    async fn send_one(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        let mut outcomes = Vec::with_capacity(messages.len());
        for m in messages {
            let request = self
                .transport
                .client
                .post(self.messages_url.clone())
                .basic_auth(
                    &self.account_sid,
                    Some(String::from_utf8_lossy(self.auth_token.expose())),
                )
                .header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                )
                .body(wire::body(m, &self.config));
            outcomes.push(match https_client::exchange(request).await {
                Ok(answer) => wire::map_answer(m, &answer, self.throttle, self.clock.now()),
                Err(failure) => not_answered(1, failure).remove(0),
            });
        }
        outcomes
    }
}

#[async_trait]
impl Provider for TwilioProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send_batch(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        self.transport.send_in_requests(messages, self).await
    }
}

#[async_trait]
impl RequestSender for TwilioProvider {
    async fn send_request(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        self.send_one(messages).await
    }
}
