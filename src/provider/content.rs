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

/// The channel content of an outbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelContent {
    Push(PushContent),
    Wechat(WechatContent),
}

use super::{OutboundMessage, SendOutcome};
use crate::domain::{Address, PushPlatform};

/// The device token and the notification of a push message for a `platform` adapter. A
/// token of the other platform is refused as permanent: one push job goes to the route's
/// provider, which cannot deliver to another platform's devices.
pub fn push_of(
    m: &OutboundMessage,
    platform: PushPlatform,
) -> Result<(&str, &PushContent), SendOutcome> {
    let Address::Push { platform: p, token } = &m.to else {
        return Err(SendOutcome::Permanent {
            error: "not a push address".into(),
        });
    };
    if *p != platform {
        return Err(SendOutcome::Permanent {
            error: format!("a {} token cannot go to {}", p.as_str(), platform.as_str()),
        });
    }
    match m.content.as_deref() {
        Some(ChannelContent::Push(c)) => Ok((token, c)),
        _ => Err(SendOutcome::Permanent {
            error: "no push content on the message".into(),
        }),
    }
}

/// The openid and the template message of a WeChat message.
pub fn wechat_of(m: &OutboundMessage) -> Result<(&str, &WechatContent), SendOutcome> {
    let Address::Wechat { openid, .. } = &m.to else {
        return Err(SendOutcome::Permanent {
            error: "not a WeChat address".into(),
        });
    };
    match m.content.as_deref() {
        Some(ChannelContent::Wechat(c)) => Ok((openid, c)),
        _ => Err(SendOutcome::Permanent {
            error: "no WeChat template on the message".into(),
        }),
    }
}
