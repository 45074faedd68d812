//! The Alibaba Cloud SMS adapter (`kind = "aliyun"`): RPC-style `SendSms` / `SendBatchSms`
//! over HTTPS, signed with the AccessKey pair ([`sign`]); request and answer formats in
//! [`wire`]. Receipts come back through `/v1/callbacks/{provider}/receipts` in Alibaba's
//! report format (`crate::callbacks::dialect::aliyun`).

pub mod sign;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, CONTENT_TYPE};

use super::cloud::{not_answered, CloudError, RequestSender, Transport};
use super::https_client;
use super::{OutboundMessage, Provider, SendOutcome};
use crate::clock::Clock;
use crate::config::{AliyunConfig, ProviderConfig, Secret};

/// The Alibaba Cloud SMS provider.
pub struct AliyunProvider {
    name: String,
    config: AliyunConfig,
    endpoint: reqwest::Url,
    access_key_id: String,
    access_key_secret: Secret,
    throttle: Duration,
    transport: Transport,
    clock: Arc<dyn Clock>,
}

impl AliyunProvider {
    /// Builds the adapter from a validated `kind = "aliyun"` config (no connection yet).
    pub fn new(c: &ProviderConfig, clock: Arc<dyn Clock>) -> Result<AliyunProvider, CloudError> {
        let config = c
            .aliyun
            .clone()
            .ok_or_else(|| CloudError::config(c, "the aliyun table is missing"))?;
        let endpoint = reqwest::Url::parse(config.endpoint.trim())
            .map_err(|e| CloudError::config(c, format!("aliyun.endpoint: {e}")))?;
        let (Some(id), Some(secret)) = (&config.access_key_id, &config.access_key_secret) else {
            return Err(CloudError::config(c, "the AccessKey pair is not set"));
        };
        Ok(AliyunProvider {
            name: c.name.clone(),
            endpoint,
            access_key_id: String::from_utf8_lossy(id.expose()).into_owned(),
            access_key_secret: secret.clone(),
            throttle: Duration::from_millis(config.throttle_retry_ms),
            transport: Transport::from_config(c)?,
            config,
            clock,
        })
    }

    async fn send_signed(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        let nonce = uuid::Uuid::now_v7().to_string();
        let params = wire::params(
            messages,
            &self.config,
            &self.access_key_id,
            self.clock.now(),
            &nonce,
        );
        let body = wire::signed_body(params, self.access_key_secret.expose());
        let request = self
            .transport
            .client
            .post(self.endpoint.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(body);
        match https_client::exchange(request).await {
            Ok(answer) => wire::map_answer(messages, &answer, self.throttle),
            Err(failure) => not_answered(messages.len(), failure),
        }
    }
}

#[async_trait]
impl Provider for AliyunProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send_batch(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        self.transport.send_in_requests(messages, self).await
    }
}

#[async_trait]
impl RequestSender for AliyunProvider {
    async fn send_request(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        self.send_signed(messages).await
    }
}
