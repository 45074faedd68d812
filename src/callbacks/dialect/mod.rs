//! Receipt dialects: how each kind of provider authenticates and writes the delivery receipts
//! it POSTs to `/v1/callbacks/{provider}/receipts`, and how it wants them answered.
//!
//! - `herald` (kinds `sandbox`, `http`): herald's own HMAC signature and JSON format
//!   ([`super::signature`], [`super::receipt`]); handled by the API as before.
//! - `aliyun`: Alibaba Cloud's SMS report (a JSON array), authenticated by a secret token in
//!   the callback URL's query ([`url_token`]), answered `{"code":0,"msg":"..."}`.
//! - `tencent`: Tencent Cloud's status callback (a JSON array), authenticated the same way,
//!   answered `{"result":0,"errmsg":"OK"}`.
//! - `twilio`: Twilio's form-encoded `StatusCallback`, verified by `X-Twilio-Signature`;
//!   statuses that are not final are accepted and ignored.
//! - `wechat`: the official account's signed XML events, on their own route
//!   (`/v1/callbacks/{provider}/wechat`); the receipts route refuses them.
//!
//! Every dialect parses into the same [`Receipt`]s, so receipts apply the same way whatever
//! their provider. The whole body is verified before it is parsed, and parsed before anything
//! is applied.

pub mod aliyun;
pub mod tencent;
pub mod twilio;
pub mod url_token;
pub mod wechat;

use serde_json::{json, Value};

use super::receipt::{Receipt, WireError};
use super::signature::SignatureError;
use super::ReceiptTally;
use crate::config::{ProviderConfig, ProviderKind};

/// One receipts request as the dialects see it.
pub struct CallbackRequest<'a> {
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// A header's value by (lowercase) name.
    pub header: &'a (dyn Fn(&str) -> Option<&'a str> + Sync),
    pub body: &'a [u8],
}

/// Why a receipts request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialectError {
    /// Not authentic (401).
    #[error(transparent)]
    Auth(#[from] SignatureError),
    /// Authentic but malformed (400).
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// How a provider's receipts are authenticated, read and answered.
#[derive(Debug)]
pub enum ReceiptDialect {
    /// herald's signature and format (see [`super::signature`]).
    Herald,
    Aliyun(url_token::UrlToken),
    Tencent(url_token::UrlToken),
    Twilio(twilio::TwilioSignature),
    Wechat(wechat::EventToken),
}

impl ReceiptDialect {
    /// The dialect of a provider's kind, with its secrets (read from the environment);
    /// `tolerance_seconds` is the signature window.
    pub fn from_config(p: &ProviderConfig, tolerance_seconds: u64) -> ReceiptDialect {
        match p.kind {
            // Push services send no receipts of their own.
            ProviderKind::Sandbox
            | ProviderKind::Http
            | ProviderKind::Smpp
            | ProviderKind::Fcm
            | ProviderKind::Apns
            | ProviderKind::Smtp => ReceiptDialect::Herald,
            ProviderKind::Wechat => ReceiptDialect::Wechat(wechat::EventToken::new(
                p.wechat.as_ref().and_then(|w| w.callback_token.as_ref()),
                p.wechat.as_ref().and_then(message_key),
                tolerance_seconds,
            )),
            ProviderKind::Aliyun => {
                ReceiptDialect::Aliyun(url_token::UrlToken::new(&p.callback_secrets))
            }
            ProviderKind::Tencent => {
                ReceiptDialect::Tencent(url_token::UrlToken::new(&p.callback_secrets))
            }
            ProviderKind::Twilio => {
                let t = p.twilio.as_ref();
                ReceiptDialect::Twilio(twilio::TwilioSignature::new(
                    t.and_then(|t| t.auth_token.as_ref()),
                    t.and_then(|t| t.status_callback_url.clone()),
                ))
            }
        }
    }

    /// Whether this is herald's own dialect (verified by [`super::signature`]).
    pub fn is_herald(&self) -> bool {
        matches!(self, ReceiptDialect::Herald)
    }

    /// Whether a provider-specific dialect has what it needs to authenticate.
    pub fn is_configured(&self) -> bool {
        match self {
            ReceiptDialect::Herald => false,
            ReceiptDialect::Aliyun(t) | ReceiptDialect::Tencent(t) => t.is_configured(),
            ReceiptDialect::Twilio(s) => s.is_configured(),
            ReceiptDialect::Wechat(t) => t.is_configured(),
        }
    }

    /// Authenticates a provider-specific request, then parses its receipts.
    pub fn receipts(&self, request: &CallbackRequest<'_>) -> Result<Vec<Receipt>, DialectError> {
        match self {
            ReceiptDialect::Herald | ReceiptDialect::Wechat(_) => {
                Err(SignatureError::NotConfigured.into())
            }
            ReceiptDialect::Aliyun(token) => {
                token.verify(request.query)?;
                Ok(aliyun::parse(request.body)?)
            }
            ReceiptDialect::Tencent(token) => {
                token.verify(request.query)?;
                Ok(tencent::parse(request.body)?)
            }
            ReceiptDialect::Twilio(signature) => {
                let params = twilio::form_params(request.body);
                signature.verify((request.header)(twilio::SIGNATURE_HEADER), &params)?;
                Ok(twilio::parse(&params)?)
            }
        }
    }

    /// The body the provider expects in answer to receipts it may stop sending.
    pub fn answer(&self, tally: &ReceiptTally) -> Value {
        match self {
            ReceiptDialect::Aliyun(_) => json!({"code": 0, "msg": "接收成功"}),
            ReceiptDialect::Tencent(_) => json!({"result": 0, "errmsg": "OK"}),
            ReceiptDialect::Herald | ReceiptDialect::Twilio(_) | ReceiptDialect::Wechat(_) => {
                serde_json::to_value(tally).unwrap_or(Value::Null)
            }
        }
    }
}

/// A WeChat account's message key, when its EncodingAESKey is set (checked at config load).
fn message_key(
    w: &crate::config::WechatConfig,
) -> Option<crate::provider::wechat::crypt::MessageKey> {
    let key = String::from_utf8_lossy(w.encoding_aes_key.as_ref()?.expose()).into_owned();
    let appid = w
        .appid
        .as_ref()
        .map(|a| String::from_utf8_lossy(a.expose()).into_owned());
    crate::provider::wechat::crypt::MessageKey::new(&key, appid.as_deref().unwrap_or("")).ok()
}
