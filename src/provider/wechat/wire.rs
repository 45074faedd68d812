//! WeChat official-account API formats as pure functions: `GET /cgi-bin/token`'s answer, the
//! `message/template/send` body and the meaning of its `errcode` (from WeChat's global return
//! codes and the template message page).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::domain::MessageId;
use crate::provider::content::WechatContent;
use crate::provider::{AddressFate, SendOutcome};

/// `errcode`s that mean the access token is no longer good: invalid credential (40001),
/// expired (42001), invalid (40014).
pub const TOKEN_ERRORS: [i64; 3] = [40001, 42001, 40014];
/// The user has not followed (or unfollowed) the account.
pub const UNFOLLOWED: i64 = 43004;
/// The account's API quota is used up.
pub const QUOTA: i64 = 45009;
/// System busy.
pub const BUSY: i64 = -1;

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: u64,
    #[serde(default)]
    errcode: i64,
}

/// The token and its lifetime from `GET /cgi-bin/token`, or the `errcode` it answered.
pub fn parse_token(body: &[u8]) -> Result<(String, Duration), String> {
    let t: TokenAnswer =
        serde_json::from_slice(body).map_err(|_| "unreadable token answer".to_string())?;
    if t.errcode != 0 || t.access_token.is_empty() {
        return Err(format!("token: errcode {}", t.errcode));
    }
    Ok((t.access_token, Duration::from_secs(t.expires_in)))
}

/// The template message for `openid`. `client_msg_id` is herald's message id: WeChat drops
/// a repeat of it.
pub fn send_body(id: MessageId, openid: &str, content: &WechatContent) -> Vec<u8> {
    let data: Map<String, Value> = content
        .data
        .iter()
        .map(|(k, v)| (k.clone(), json!({ "value": v })))
        .collect();
    let mut body = json!({
        "touser": openid,
        "template_id": content.template_id,
        "data": data,
        "client_msg_id": id.to_string(),
    });
    if let Some(url) = &content.url {
        body["url"] = json!(url);
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// What an answer asks of the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Outcome(SendOutcome),
    /// The access token was refused: fetch a new one and send again.
    NewToken,
}

#[derive(Deserialize)]
struct SendAnswer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    msgid: Option<Value>,
}

/// The meaning of a `message/template/send` answer (HTTP 200 with an `errcode`).
pub fn map_answer(status: u16, body: &[u8], throttle: Duration) -> Answer {
    if !(200..300).contains(&status) {
        return Answer::Outcome(if status >= 500 {
            SendOutcome::Unavailable {
                error: format!("http {status}"),
            }
        } else {
            SendOutcome::Permanent {
                error: format!("http {status}"),
            }
        });
    }
    let Ok(a) = serde_json::from_slice::<SendAnswer>(body) else {
        // WeChat said 200 but nothing readable: it may have sent; do not send twice.
        return Answer::Outcome(SendOutcome::Transient {
            error: "unreadable answer".into(),
        });
    };
    let error = format!("errcode {}", a.errcode);
    Answer::Outcome(match a.errcode {
        0 => SendOutcome::Accepted {
            provider_message_id: match a.msgid {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s,
                _ => String::new(),
            },
        },
        c if TOKEN_ERRORS.contains(&c) => return Answer::NewToken,
        UNFOLLOWED => SendOutcome::Unreachable {
            error,
            fate: AddressFate::OptOut,
        },
        QUOTA => SendOutcome::Throttled {
            retry_after: throttle,
        },
        BUSY => SendOutcome::Unavailable { error },
        _ => SendOutcome::Permanent { error },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(600);

    fn outcome(body: Value) -> Answer {
        map_answer(200, &serde_json::to_vec(&body).expect("json"), T)
    }

    #[test]
    fn the_body_wraps_each_field_in_a_value() {
        let content = WechatContent {
            template_id: "tpl-1".into(),
            url: Some("https://example.com/o/1".into()),
            data: [("first".to_string(), "Hello".to_string())].into(),
        };
        let id = MessageId::from_u128(7);
        let v: Value = serde_json::from_slice(&send_body(id, "oOPENID", &content)).expect("json");
        assert_eq!(
            v,
            json!({"touser": "oOPENID", "template_id": "tpl-1", "url": "https://example.com/o/1",
                "data": {"first": {"value": "Hello"}}, "client_msg_id": id.to_string()})
        );
    }

    #[test]
    fn documented_codes_map_to_outcomes() {
        assert_eq!(
            outcome(json!({"errcode": 0, "errmsg": "ok", "msgid": 200228332})),
            Answer::Outcome(SendOutcome::Accepted {
                provider_message_id: "200228332".into()
            })
        );
        for c in TOKEN_ERRORS {
            assert_eq!(
                outcome(json!({"errcode": c, "errmsg": "x"})),
                Answer::NewToken
            );
        }
        assert!(matches!(
            outcome(json!({"errcode": 43004, "errmsg": "require subscribe"})),
            Answer::Outcome(SendOutcome::Unreachable {
                fate: AddressFate::OptOut,
                ..
            })
        ));
        assert_eq!(
            outcome(json!({"errcode": 45009, "errmsg": "api freq out of limit"})),
            Answer::Outcome(SendOutcome::Throttled { retry_after: T })
        );
        assert!(matches!(
            outcome(json!({"errcode": -1, "errmsg": "system error"})),
            Answer::Outcome(SendOutcome::Unavailable { .. })
        ));
        assert!(matches!(
            outcome(json!({"errcode": 40037, "errmsg": "invalid template_id"})),
            Answer::Outcome(SendOutcome::Permanent { .. })
        ));
    }

    #[test]
    fn token_answers() {
        let ok = parse_token(br#"{"access_token":"ACCESS","expires_in":7200}"#).expect("token");
        assert_eq!(ok, ("ACCESS".to_string(), Duration::from_secs(7200)));
        let err = parse_token(br#"{"errcode":40013,"errmsg":"invalid appid"}"#);
        assert_eq!(err, Err("token: errcode 40013".to_string()));
    }
}
