//! The Firebase Cloud Messaging adapter (`kind = "fcm"`): HTTP v1 `messages:send`, one
//! device token per request, authorised by an OAuth access token that a service account's
//! signed assertion buys ([`oauth`]); formats and the error table in [`wire`].
//!
//! The access token is cached until five minutes before it expires, and dropped at once when
//! FCM answers 401; the message is then sent once more with a new token.

pub mod oauth;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::access_token::TokenCache;
use super::cloud::{not_answered, CloudError, RequestSender, Transport};
use super::content::PushContent;
use super::https_client::{self, Failure};
use super::{OutboundMessage, Provider, SendOutcome};
use crate::clock::Clock;
use crate::config::{FcmConfig, ProviderConfig};
use crate::domain::{MessageId, PushPlatform};

/// An access token is replaced this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// The FCM provider of one Firebase project.
pub struct FcmProvider {
    name: String,
    send_url: reqwest::Url,
    signer: oauth::Signer,
    tokens: TokenCache,
    throttle: Duration,
    transport: Transport,
    clock: Arc<dyn Clock>,
}

impl FcmProvider {
    /// Builds the adapter from a validated `kind = "fcm"` config: reads the key file, opens
    /// no connection.
    pub fn new(c: &ProviderConfig, clock: Arc<dyn Clock>) -> Result<FcmProvider, CloudError> {
        let config: FcmConfig = c
            .fcm
            .clone()
            .ok_or_else(|| CloudError::config(c, "the fcm table is missing"))?;
        let signer = oauth::ServiceAccount::read(&config.service_account_file)
            .map_err(|e| CloudError::config(c, format!("fcm.service_account_file: {e}")))?;
        let project = config
            .project_id
            .clone()
            .unwrap_or_else(|| signer.account.project_id.clone());
        let send_url = reqwest::Url::parse(&format!(
            "{}/v1/projects/{project}/messages:send",
            config.base_url.trim().trim_end_matches('/')
        ))
        .map_err(|e| CloudError::config(c, format!("fcm.base_url: {e}")))?;
        Ok(FcmProvider {
            name: c.name.clone(),
            send_url,
            signer,
            tokens: TokenCache::new(TOKEN_MARGIN, clock.clone()),
            throttle: Duration::from_millis(config.throttle_retry_ms),
            transport: Transport::from_config(c)?,
            clock,
        })
    }

    /// Sends one notification to one device token.
    pub async fn send_push(
        &self,
        id: MessageId,
        token: &str,
        content: &PushContent,
    ) -> SendOutcome {
        let _ = id; // FCM has no idempotency key; its message name identifies the send.
        let body = wire::body(token, content);
        for _ in 0..2 {
            let access = match self.access_token().await {
                Ok(a) => a,
                Err(error) => return SendOutcome::Unavailable { error },
            };
            let request = self
                .transport
                .client
                .post(self.send_url.clone())
                .bearer_auth(&*access)
                .header("content-type", "application/json")
                .body(body.clone());
            let answer = match https_client::exchange(request).await {
                Ok(a) => a,
                Err(failure) => return not_answered(1, failure).remove(0),
            };
            match wire::map_answer(&answer, self.throttle, self.clock.now()) {
                wire::Answer::Outcome(outcome) => return outcome,
                wire::Answer::Reauthenticate => self.tokens.invalidate(&access),
            }
        }
        SendOutcome::Unavailable {
            error: "http 401 UNAUTHENTICATED with a fresh access token".into(),
        }
    }

    /// The cached access token, or a new one from the token endpoint.
    async fn access_token(&self) -> Result<Arc<str>, String> {
        self.tokens
            .get(|| async {
                let assertion = self.signer.assertion(self.clock.now().timestamp())?;
                let request = self
                    .transport
                    .client
                    .post(self.signer.account.token_uri.as_str())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(oauth::token_form(&assertion));
                let answer = https_client::exchange(request).await.map_err(|f| match f {
                    Failure::NotSent(e) | Failure::MaybeSent(e) => format!("oauth: {e}"),
                })?;
                if answer.status != 200 {
                    return Err(oauth::token_error(answer.status, &answer.body));
                }
                oauth::parse_token(&answer.body).map_err(|e| format!("oauth: {e}"))
            })
            .await
    }
}

#[async_trait]
impl Provider for FcmProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send_batch(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        self.transport.send_in_requests(messages, self).await
    }
}

#[async_trait]
impl RequestSender for FcmProvider {
    async fn send_request(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        let mut outcomes = Vec::with_capacity(messages.len());
        for m in messages {
            outcomes.push(match super::content::push_of(m, PushPlatform::Fcm) {
                Ok((token, content)) => self.send_push(m.id, token, content).await,
                Err(outcome) => outcome,
            });
        }
        outcomes
    }
}
