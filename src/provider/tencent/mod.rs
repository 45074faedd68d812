//! The Tencent Cloud SMS adapter (`kind = "tencent"`): `SendSms` (API 2021-01-11) over HTTPS,
//! signed with TC3-HMAC-SHA256 ([`sign`]); formats in [`wire`]. Receipts come back through
//! `/v1/callbacks/{provider}/receipts` in Tencent's status report format
//! (`crate::callbacks::dialect::tencent`).

pub mod sign;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::cloud::{not_answered, CloudError, RequestSender, Transport};
use super::https_client;
use super::{OutboundMessage, Provider, SendOutcome};
use crate::clock::Clock;
use crate::config::{ProviderConfig, Secret, TencentConfig};

/// The Tencent Cloud SMS provider.
pub struct TencentProvider {
    name: String,
    config: TencentConfig,
    endpoint: reqwest::Url,
    /// The `Host` header as reqwest sends it (with a non-default port).
    host: String,
    secret_id: String,
    secret_key: Secret,
    throttle: Duration,
    transport: Transport,
    clock: Arc<dyn Clock>,
}

impl TencentProvider {
    /// Builds the adapter from a validated `kind = "tencent"` config (no connection yet).
    pub fn new(c: &ProviderConfig, clock: Arc<dyn Clock>) -> Result<TencentProvider, CloudError> {
        let config = c
            .tencent
            .clone()
            .ok_or_else(|| CloudError::config(c, "the tencent table is missing"))?;
        let endpoint = reqwest::Url::parse(config.endpoint.trim())
            .map_err(|e| CloudError::config(c, format!("tencent.endpoint: {e}")))?;
        let host = match (endpoint.host_str(), endpoint.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(CloudError::config(c, "tencent.endpoint has no host")),
        };
        let (Some(id), Some(key)) = (&config.secret_id, &config.secret_key) else {
            return Err(CloudError::config(
                c,
                "the SecretId / SecretKey pair is not set",
            ));
        };
        Ok(TencentProvider {
            name: c.name.clone(),
            endpoint,
            host,
            secret_id: String::from_utf8_lossy(id.expose()).into_owned(),
            secret_key: key.clone(),
            throttle: Duration::from_millis(config.throttle_retry_ms),
            transport: Transport::from_config(c)?,
            config,
            clock,
        })
    }

    /// Sends messages of one text as one request.
    async fn send_signed(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        let body = wire::body(messages, &self.config);
        let timestamp = self.clock.now().timestamp();
        let authorization = sign::authorization(&sign::Tc3Request {
            secret_id: &self.secret_id,
            secret_key: self.secret_key.expose(),
            service: wire::SERVICE,
            host: &self.host,
            content_type: wire::CONTENT_TYPE,
            timestamp,
            payload: &body,
        });
        let request = self
            .transport
            .client
            .post(self.endpoint.clone())
            .header("authorization", authorization)
            .header("content-type", wire::CONTENT_TYPE)
            .header("x-tc-action", wire::ACTION)
            .header("x-tc-version", wire::VERSION)
            .header("x-tc-timestamp", timestamp.to_string())
            .header("x-tc-region", self.config.region.as_str())
            .body(body);
        match https_client::exchange(request).await {
            Ok(answer) => wire::map_answer(messages, &answer, self.throttle),
            Err(failure) => not_answered(messages.len(), failure),
        }
    }

    /// A request carries one text for all its numbers: a chunk of several texts is sent as
    /// one request per text, one after the other (the chunk holds one of the provider's
    /// `max_in_flight` slots). Outcomes stay in the chunk's order.
    async fn send_chunk(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        if messages.windows(2).all(|w| w[0].body == w[1].body) {
            return self.send_signed(messages).await;
        }
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            match groups.iter_mut().find(|g| messages[g[0]].body == m.body) {
                Some(g) => g.push(i),
                None => groups.push(vec![i]),
            }
        }
        let mut outcomes: Vec<Option<SendOutcome>> = vec![None; messages.len()];
        for group in groups {
            let same: Vec<OutboundMessage> = group.iter().map(|&i| messages[i].clone()).collect();
            for (i, o) in group.into_iter().zip(self.send_signed(&same).await) {
                outcomes[i] = Some(o);
            }
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(SendOutcome::Transient {
                    error: "no answer".into(),
                })
            })
            .collect()
    }
}

#[async_trait]
impl Provider for TencentProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send_batch(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        self.transport.send_in_requests(messages, self).await
    }
}

#[async_trait]
impl RequestSender for TencentProvider {
    async fn send_request(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        self.send_chunk(messages).await
    }
}
