//! The WeChat official-account adapter (`kind = "wechat"`): template messages
//! (`POST /cgi-bin/message/template/send`) authorised by the account's `access_token`
//! (`GET /cgi-bin/token` with the AppID and AppSecret); formats and codes in [`wire`], the
//! account's event callbacks (follow, unfollow, template send results) in [`events`].
//!
//! The access token is cached for its `expires_in` less five minutes, and dropped when an
//! answer says it is invalid or expired (40001, 42001, 40014); the message is then sent once
//! more with a new token. Each instance of herald keeps its own token: a fetch by one
//! retires the others' after WeChat's five-minute overlap, which the refusal path absorbs.

pub mod crypt;
pub mod events;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::access_token::TokenCache;
use super::cloud::{not_answered, CloudError, RequestSender, Transport};
use super::content::WechatContent;
use super::https_client::{self, Failure};
use super::{OutboundMessage, Provider, SendOutcome};
use crate::clock::Clock;
use crate::config::{ProviderConfig, Secret};
use crate::domain::MessageId;

const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// The WeChat provider of one official account.
pub struct WechatProvider {
    name: String,
    base: String,
    appid: Secret,
    secret: Secret,
    tokens: TokenCache,
    throttle: Duration,
    transport: Transport,
}

impl WechatProvider {
    /// Builds the adapter from a validated `kind = "wechat"` config (no connection yet).
    pub fn new(c: &ProviderConfig, clock: Arc<dyn Clock>) -> Result<WechatProvider, CloudError> {
        let config = c
            .wechat
            .clone()
            .ok_or_else(|| CloudError::config(c, "the wechat table is missing"))?;
        let (Some(appid), Some(secret)) = (config.appid.clone(), config.secret.clone()) else {
            return Err(CloudError::config(
                c,
                "the AppID / AppSecret pair is not set",
            ));
        };
        Ok(WechatProvider {
            name: c.name.clone(),
            base: config.base_url.trim().trim_end_matches('/').to_string(),
            appid,
            secret,
            tokens: TokenCache::new(TOKEN_MARGIN, clock),
            throttle: Duration::from_millis(config.throttle_retry_ms),
            transport: Transport::from_config(c)?,
        })
    }

    /// Sends one template message to one follower.
    pub async fn send_template(
        &self,
        id: MessageId,
        openid: &str,
        content: &WechatContent,
    ) -> SendOutcome {
        let body = wire::send_body(id, openid, content);
        for _ in 0..2 {
            let access = match self.access_token().await {
                Ok(a) => a,
                Err(error) => return SendOutcome::Unavailable { error },
            };
            let request = self
                .transport
                .client
                .post(format!("{}/cgi-bin/message/template/send", self.base))
                .query(&[("access_token", &*access)])
                .header("content-type", "application/json")
                .body(body.clone());
            let answer = match https_client::exchange(request).await {
                Ok(a) => a,
                Err(failure) => return not_answered(1, failure).remove(0),
            };
            match wire::map_answer(answer.status, &answer.body, self.throttle) {
                wire::Answer::Outcome(outcome) => return outcome,
                wire::Answer::NewToken => self.tokens.invalidate(&access),
            }
        }
        SendOutcome::Unavailable {
            error: "access token refused twice".into(),
        }
    }

    async fn access_token(&self) -> Result<Arc<str>, String> {
        self.tokens
            .get(|| async {
                let appid = String::from_utf8_lossy(self.appid.expose()).into_owned();
                let secret = String::from_utf8_lossy(self.secret.expose()).into_owned();
                let request = self
                    .transport
                    .client
                    .get(format!("{}/cgi-bin/token", self.base))
                    .query(&[
                        ("grant_type", "client_credential"),
                        ("appid", appid.as_str()),
                        ("secret", secret.as_str()),
                    ]);
                let answer = https_client::exchange(request).await.map_err(|f| match f {
                    Failure::NotSent(e) | Failure::MaybeSent(e) => format!("token: {e}"),
                })?;
                if answer.status != 200 {
                    return Err(format!("token: http {}", answer.status));
                }
                wire::parse_token(&answer.body)
            })
            .await
    }
}

#[async_trait]
impl Provider for WechatProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send_batch(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        self.transport.send_in_requests(messages, self).await
    }
}

#[async_trait]
impl RequestSender for WechatProvider {
    async fn send_request(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        let mut outcomes = Vec::with_capacity(messages.len());
        for m in messages {
            outcomes.push(match super::content::wechat_of(m) {
                Ok((openid, content)) => self.send_template(m.id, openid, content).await,
                Err(outcome) => outcome,
            });
        }
        outcomes
    }
}
