//! The official account's event callbacks in plaintext mode, as pure functions: the URL
//! signature (SHA-1 of the token, `timestamp` and `nonce` sorted and joined) and the XML
//! events herald applies: `subscribe` / `unsubscribe` (consent for the channel) and
//! `TEMPLATESENDJOBFINISH` (the result of a template message, by its `MsgID`).

use sha1::{Digest, Sha1};

/// Largest event body read; WeChat's events are a few hundred bytes.
pub const MAX_EVENT_BYTES: usize = 16 << 10;

/// The signature WeChat puts in the callback URL's `signature` parameter.
pub fn signature(token: &[u8], timestamp: &str, nonce: &str) -> String {
    let token = String::from_utf8_lossy(token);
    let mut parts = [token.as_ref(), timestamp, nonce];
    parts.sort_unstable();
    hex::encode(Sha1::digest(parts.concat().as_bytes()))
}

/// Whether `given` is the signature of (`token`, `timestamp`, `nonce`), compared in
/// constant time.
pub fn verify(token: &[u8], timestamp: &str, nonce: &str, given: &str) -> bool {
    let want = signature(token, timestamp, nonce);
    let given = given.trim().to_ascii_lowercase();
    crate::constant_time::eq(want.as_bytes(), given.as_bytes())
}

/// An event herald acts on; others are acknowledged and ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The follower (`openid`) followed the account: opt in to WeChat messages.
    Subscribe { openid: String },
    /// The follower unfollowed: opt out.
    Unsubscribe { openid: String },
    /// A template message's result: `delivered` is false for a block or a system failure.
    TemplateResult {
        openid: String,
        msgid: String,
        delivered: bool,
        status: String,
    },
    /// Anything else (messages, menu clicks, scans).
    Other,
}

/// Why an event body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("not an XML event: {0}")]
    Xml(String),
    #[error("the event has no {0}")]
    Missing(&'static str),
}

/// The `<Encrypt>` text of an encrypted-mode body.
pub fn encrypted_part(body: &str) -> Result<String, EventError> {
    let doc = roxmltree::Document::parse(body).map_err(|e| EventError::Xml(e.to_string()))?;
    doc.root_element()
        .children()
        .find(|n| n.is_element() && n.has_tag_name("Encrypt"))
        .and_then(|n| n.text())
        .map(|t| t.trim().to_string())
        .ok_or(EventError::Missing("Encrypt"))
}

/// Reads one event body (`<xml>...</xml>`). DTDs are refused by the parser, so no entity is
/// ever expanded.
pub fn parse(body: &str) -> Result<Event, EventError> {
    let doc = roxmltree::Document::parse(body).map_err(|e| EventError::Xml(e.to_string()))?;
    let root = doc.root_element();
    let field = |name: &str| {
        root.children()
            .find(|n| n.is_element() && n.has_tag_name(name))
            .and_then(|n| n.text())
            .map(|t| t.trim().to_string())
    };
    if field("MsgType").as_deref() != Some("event") {
        return Ok(Event::Other);
    }
    let openid = || field("FromUserName").ok_or(EventError::Missing("FromUserName"));
    Ok(match field("Event").as_deref() {
        Some("subscribe") => Event::Subscribe { openid: openid()? },
        Some("unsubscribe") => Event::Unsubscribe { openid: openid()? },
        Some("TEMPLATESENDJOBFINISH") => {
            let status = field("Status").ok_or(EventError::Missing("Status"))?;
            Event::TemplateResult {
                openid: openid()?,
                msgid: field("MsgID").ok_or(EventError::Missing("MsgID"))?,
                delivered: status == "success",
                status,
            }
        }
        _ => Event::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors computed with Python's hashlib over the documented algorithm (sort the three
    /// strings, join, SHA-1, lowercase hex); WeChat's pages give the algorithm, not values.
    #[test]
    fn signature_known_answers() {
        assert_eq!(
            signature(b"herald-token", "1714000000", "349857234"),
            "1a48eca40d4ff0c221e60ec2edb626e99fb9217f"
        );
        assert_eq!(
            signature(b"weixin", "1409304348", "1507829345"),
            "45dfb88302610d070a3eb4a41f03024dc856f86d"
        );
        assert!(verify(
            b"weixin",
            "1409304348",
            "1507829345",
            "45DFB88302610D070A3EB4A41F03024DC856F86D"
        ));
        assert!(!verify(
            b"weixin",
            "1409304349",
            "1507829345",
            "45dfb88302610d070a3eb4a41f03024dc856f86d"
        ));
    }

    #[test]
    fn documented_events_parse() {
        let sub = "<xml><ToUserName><![CDATA[toUser]]></ToUserName>\
            <FromUserName><![CDATA[FromUser]]></FromUserName><CreateTime>123456789</CreateTime>\
            <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>";
        assert_eq!(
            parse(sub),
            Ok(Event::Subscribe {
                openid: "FromUser".into()
            })
        );
        let unsub = sub.replace("[subscribe]", "[unsubscribe]");
        assert_eq!(
            parse(&unsub),
            Ok(Event::Unsubscribe {
                openid: "FromUser".into()
            })
        );
        for (status, delivered) in [
            ("success", true),
            ("failed:user block", false),
            ("failed: system failed", false),
        ] {
            let done = format!(
                "<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>\
                <FromUserName><![CDATA[oia2TjuEGTNoeX76QEjQNrcURxG8]]></FromUserName>\
                <CreateTime>1395658920</CreateTime><MsgType><![CDATA[event]]></MsgType>\
                <Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID>\
                <Status><![CDATA[{status}]]></Status></xml>"
            );
            assert_eq!(
                parse(&done),
                Ok(Event::TemplateResult {
                    openid: "oia2TjuEGTNoeX76QEjQNrcURxG8".into(),
                    msgid: "200163836".into(),
                    delivered,
                    status: status.into(),
                })
            );
        }
        let text = "<xml><MsgType><![CDATA[text]]></MsgType><Content>hi</Content></xml>";
        assert_eq!(parse(text), Ok(Event::Other));
    }

    #[test]
    fn entities_and_garbage_are_refused() {
        let bomb = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\">]>\
            <xml><MsgType>&a;</MsgType></xml>";
        assert!(
            matches!(parse(bomb), Err(EventError::Xml(_))),
            "{:?}",
            parse(bomb)
        );
        assert!(matches!(parse("not xml"), Err(EventError::Xml(_))));
        let no_status = "<xml><FromUserName>o</FromUserName><MsgType>event</MsgType>\
            <Event>TEMPLATESENDJOBFINISH</Event><MsgID>1</MsgID></xml>";
        assert_eq!(parse(no_status), Err(EventError::Missing("Status")));
    }
}
