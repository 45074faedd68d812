//! The generic HTTP provider protocol on the wire (docs/api.md, "The generic HTTP provider
//! protocol"): request bodies, and the mapping of a provider's answer to one
//! [`SendOutcome`] per message. Pure functions, no I/O, so every rule is tested directly.
//!
//! The mapping, per request:
//! - `2xx` with `{"results": [...]}`: per message, matched by `id` (by position when a result
//!   has no id). `accepted` is accepted; `rejected` is permanent unless `retryable: true`. A
//!   message the results do not mention is transient: resending it under the same id is safe.
//! - `2xx` with `{"provider_message_id", "status"}`: the outcome of a single message (of every
//!   message if several were sent, accepted ones under their own ids).
//! - `2xx` with an empty or unparsable body: every message accepted under its own id.
//! - `429`: throttled for `Retry-After` (seconds or an HTTP date; 1 s when absent).
//! - `408`, `5xx` and anything else that is neither `2xx` nor `4xx`: transient.
//! - other `4xx`: permanent for every message of the request.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};

use crate::domain::{Address, Channel, MessageId};
use crate::provider::{OutboundMessage, SendOutcome};

/// Throttle delay used when a 429 carries no usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest throttle delay honoured; a provider asking for more is asked again after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The destination as the protocol's `to` string: `+<digits>` for a phone (written without
/// an intermediate string), else the email address, device token or openid.
struct WireTo<'a>(&'a Address);

impl Serialize for WireTo<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Address::Phone(p) => s.collect_str(&format_args!("+{p}")),
            Address::Email(e) => s.serialize_str(e),
            Address::Push { token, .. } => s.serialize_str(token),
            Address::Wechat { openid, .. } => s.serialize_str(openid),
        }
    }
}

/// One message as the provider receives it.
#[derive(Serialize)]
struct WireMessage<'a> {
    id: MessageId,
    to: WireTo<'a>,
    from: &'a str,
    channel: Channel,
    body: &'a str,
    parts: u32,
}

impl<'a> WireMessage<'a> {
    fn new(m: &'a OutboundMessage, from: &'a str) -> WireMessage<'a> {
        WireMessage {
            id: m.id,
            to: WireTo(&m.to),
            from,
            channel: m.channel,
            body: &m.body,
            parts: m.parts,
        }
    }
}

#[derive(Serialize)]
struct WireBatch<'a> {
    messages: Vec<WireMessage<'a>>,
}

/// The JSON body of one single-message request.
pub fn single_body(m: &OutboundMessage, from: &str) -> Vec<u8> {
    serde_json::to_vec(&WireMessage::new(m, from)).unwrap_or_default()
}

/// The JSON body of one batch request.
pub fn batch_body(messages: &[OutboundMessage], from: &str) -> Vec<u8> {
    let batch = WireBatch {
        messages: messages.iter().map(|m| WireMessage::new(m, from)).collect(),
    };
    serde_json::to_vec(&batch).unwrap_or_default()
}

/// A provider's JSON answer, single or batch shaped; every field optional so that a partial
/// answer still maps.
#[derive(Debug, Default, Deserialize)]
struct WireAnswer {
    #[serde(default)]
    provider_message_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    retryable: Option<bool>,
    #[serde(default)]
    results: Option<Vec<WireResult>>,
}

#[derive(Debug, Deserialize)]
struct WireResult {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    provider_message_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    retryable: Option<bool>,
}

/// What came back for one request, as far as the mapping needs it.
#[derive(Debug, Clone)]
pub struct Answer<'a> {
    pub status: u16,
    pub retry_after: Option<&'a str>,
    pub body: &'a [u8],
}

/// One outcome per message of the request, in order.
pub fn map_answer(
    messages: &[OutboundMessage],
    answer: &Answer<'_>,
    now: DateTime<Utc>,
) -> Vec<SendOutcome> {
    let all = |o: SendOutcome| vec![o; messages.len()];
    match answer.status {
        200..=299 => map_success(messages, answer.body),
        429 => all(SendOutcome::Throttled {
            retry_after: parse_retry_after(answer.retry_after, now),
        }),
        408 => all(SendOutcome::Transient {
            error: "http 408".into(),
        }),
        400..=499 => {
            let code = serde_json::from_slice::<WireAnswer>(answer.body)
                .ok()
                .and_then(|a| a.error_code);
            all(SendOutcome::Permanent {
                error: match code {
                    Some(c) => format!("http {}: {c}", answer.status),
                    None => format!("http {}", answer.status),
                },
            })
        }
        // A complete error answer: the provider did not take the request.
        s => all(SendOutcome::Unavailable {
            error: format!("http {s}"),
        }),
    }
}

/// The outcome of a message sent in a request that never got an answer.
pub fn transport_failure(messages: &[OutboundMessage], error: &str) -> Vec<SendOutcome> {
    vec![
        SendOutcome::Transient {
            error: error.to_string()
        };
        messages.len()
    ]
}

/// The outcome of a message whose request never left herald (no connection could be made).
pub fn not_sent(messages: &[OutboundMessage], error: &str) -> Vec<SendOutcome> {
    vec![
        SendOutcome::Unavailable {
            error: error.to_string()
        };
        messages.len()
    ]
}

fn accepted_as_own(m: &OutboundMessage) -> SendOutcome {
    SendOutcome::Accepted {
        provider_message_id: m.id.to_string(),
    }
}

fn map_success(messages: &[OutboundMessage], body: &[u8]) -> Vec<SendOutcome> {
    let trimmed = body.trim_ascii();
    let parsed = if trimmed.is_empty() {
        None
    } else {
        serde_json::from_slice::<WireAnswer>(trimmed).ok()
    };
    let Some(answer) = parsed else {
        return messages.iter().map(accepted_as_own).collect();
    };
    if let Some(results) = answer.results {
        return map_results(messages, results);
    }
    if let [m] = messages {
        return vec![outcome_of(
            m,
            answer.status.as_deref(),
            answer.provider_message_id,
            answer.error_code.as_deref(),
            answer.retryable,
        )];
    }
    // A single-shaped answer to a batch speaks for the whole batch; its provider id cannot
    // belong to every message, so accepted messages keep their own ids.
    messages
        .iter()
        .map(|m| {
            outcome_of(
                m,
                answer.status.as_deref(),
                None,
                answer.error_code.as_deref(),
                answer.retryable,
            )
        })
        .collect()
}

fn map_results(messages: &[OutboundMessage], results: Vec<WireResult>) -> Vec<SendOutcome> {
    let mut out: Vec<Option<SendOutcome>> = vec![None; messages.len()];
    // Ids are matched through a sorted index: batches can hold thousands of messages.
    let mut by_id: Vec<(String, usize)> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.to_string(), i))
        .collect();
    by_id.sort_unstable();
    for (pos, r) in results.into_iter().enumerate() {
        let index = match r.id.as_deref() {
            Some(id) => by_id
                .binary_search_by(|(k, _)| k.as_str().cmp(id))
                .ok()
                .map(|k| by_id[k].1),
            None => (pos < messages.len()).then_some(pos),
        };
        let Some(i) = index else { continue };
        if out[i].is_some() {
            continue;
        }
        out[i] = Some(outcome_of(
            &messages[i],
            r.status.as_deref(),
            r.provider_message_id,
            r.error_code.as_deref(),
            r.retryable,
        ));
    }
    out.into_iter()
        .map(|o| {
            o.unwrap_or_else(|| SendOutcome::Transient {
                error: "no result for this message".into(),
            })
        })
        .collect()
}

fn outcome_of(
    m: &OutboundMessage,
    status: Option<&str>,
    provider_message_id: Option<String>,
    error_code: Option<&str>,
    retryable: Option<bool>,
) -> SendOutcome {
    match status {
        Some(s) if s.eq_ignore_ascii_case("rejected") => {
            let error = format!("rejected: {}", error_code.unwrap_or("unspecified"));
            if retryable == Some(true) {
                SendOutcome::Transient { error }
            } else {
                SendOutcome::Permanent { error }
            }
        }
        // `accepted`, or no status at all on a 2xx: the provider took the message.
        _ => SendOutcome::Accepted {
            provider_message_id: provider_message_id
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| m.id.to_string()),
        },
    }
}

/// `Retry-After` as delay-seconds or an HTTP date, bounded by [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: Option<&str>, now: DateTime<Utc>) -> Duration {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return DEFAULT_RETRY_AFTER;
    };
    let delay = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64()))
        } else {
            DEFAULT_RETRY_AFTER
        }
    } else if let Ok(at) = DateTime::parse_from_rfc2822(v) {
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    } else {
        DEFAULT_RETRY_AFTER
    };
    delay.min(MAX_RETRY_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Address, JobId};

    fn msgs(n: usize) -> Vec<OutboundMessage> {
        let job = JobId::generate();
        (0..n)
            .map(|i| OutboundMessage {
                id: MessageId::derive(&job, &format!("c{i}"), Channel::Sms),
                to: Address::Phone(447_700_900_000 + i as u64),
                channel: Channel::Sms,
                body: "Hi \"you\"".into(),
                parts: 1,
                content: None,
            })
            .collect()
    }

    fn now() -> DateTime<Utc> {
        "2026-11-23T04:00:00Z".parse().expect("time")
    }

    fn answer(status: u16, body: &str) -> Answer<'_> {
        Answer {
            status,
            retry_after: None,
            body: body.as_bytes(),
        }
    }

    #[test]
    fn bodies_follow_the_protocol() {
        let m = msgs(2);
        let v: serde_json::Value =
            serde_json::from_slice(&single_body(&m[0], "HERALD")).expect("json");
        assert_eq!(v["id"], m[0].id.to_string());
        assert_eq!(v["to"], "+447700900000");
        assert_eq!(v["from"], "HERALD");
        assert_eq!(v["channel"], "sms");
        assert_eq!(v["body"], "Hi \"you\"");
        assert_eq!(v["parts"], 1);
        let b: serde_json::Value = serde_json::from_slice(&batch_body(&m, "X")).expect("json");
        assert_eq!(b["messages"].as_array().map(Vec::len), Some(2));
        assert_eq!(b["messages"][1]["to"], "+447700900001");
    }

    #[test]
    fn results_match_by_id_in_any_order() {
        let m = msgs(3);
        let body = serde_json::json!({"results": [
            {"id": m[2].id.to_string(), "provider_message_id": "p2", "status": "accepted"},
            {"id": m[0].id.to_string(), "status": "rejected", "error_code": "blocked", "retryable": false},
            {"id": "msg_unknown", "status": "accepted"},
        ]})
        .to_string();
        let out = map_answer(&m, &answer(200, &body), now());
        assert!(matches!(&out[0], SendOutcome::Permanent { error } if error.contains("blocked")));
        assert!(
            matches!(&out[1], SendOutcome::Transient { .. }),
            "missing result"
        );
        assert_eq!(
            out[2],
            SendOutcome::Accepted {
                provider_message_id: "p2".into()
            }
        );
    }

    #[test]
    fn a_single_shaped_answer_to_a_batch_speaks_for_all() {
        let m = msgs(2);
        let out = map_answer(
            &m,
            &answer(200, r#"{"status":"rejected","error_code":"blocked"}"#),
            now(),
        );
        assert!(out
            .iter()
            .all(|o| matches!(o, SendOutcome::Permanent { error } if error.contains("blocked"))));
        let out = map_answer(
            &m,
            &answer(200, r#"{"provider_message_id":"p","status":"accepted"}"#),
            now(),
        );
        assert_eq!(out[1], accepted_as_own(&m[1]));
    }

    #[test]
    fn retryable_rejections_are_transient() {
        let m = msgs(1);
        let body = format!(
            r#"{{"results":[{{"id":"{}","status":"rejected","error_code":"busy","retryable":true}}]}}"#,
            m[0].id
        );
        let out = map_answer(&m, &answer(202, &body), now());
        assert!(matches!(&out[0], SendOutcome::Transient { .. }));
    }

    #[test]
    fn empty_or_garbled_success_accepts_under_own_ids() {
        let m = msgs(2);
        for body in ["", "  \n", "<html>ok</html>", "{\"results\": 7}"] {
            let out = map_answer(&m, &answer(200, body), now());
            for (o, msg) in out.iter().zip(&m) {
                assert_eq!(
                    o,
                    &SendOutcome::Accepted {
                        provider_message_id: msg.id.to_string()
                    },
                    "{body:?}"
                );
            }
        }
    }

    #[test]
    fn statuses_map_to_outcome_kinds() {
        let m = msgs(2);
        let kind = |status: u16| match &map_answer(&m, &answer(status, ""), now())[1] {
            SendOutcome::Accepted { .. } => "accepted",
            SendOutcome::Transient { .. } => "transient",
            SendOutcome::Unavailable { .. } => "unavailable",
            SendOutcome::Throttled { .. } => "throttled",
            SendOutcome::Permanent { .. } | SendOutcome::Unreachable { .. } => "permanent",
        };
        assert_eq!(kind(202), "accepted");
        assert_eq!(kind(429), "throttled");
        assert_eq!(kind(500), "unavailable");
        assert_eq!(kind(503), "unavailable");
        assert_eq!(kind(408), "transient");
        assert_eq!(kind(302), "unavailable");
        assert_eq!(kind(400), "permanent");
        assert_eq!(kind(401), "permanent");
        assert_eq!(kind(422), "permanent");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let t = now();
        assert_eq!(parse_retry_after(Some("7"), t), Duration::from_secs(7));
        assert_eq!(
            parse_retry_after(Some("0.25"), t),
            Duration::from_millis(250)
        );
        assert_eq!(parse_retry_after(None, t), DEFAULT_RETRY_AFTER);
        assert_eq!(parse_retry_after(Some("soon"), t), DEFAULT_RETRY_AFTER);
        assert_eq!(parse_retry_after(Some("-3"), t), DEFAULT_RETRY_AFTER);
        assert_eq!(parse_retry_after(Some("99999"), t), MAX_RETRY_AFTER);
        assert_eq!(
            parse_retry_after(Some("Mon, 23 Nov 2026 04:00:30 GMT"), t),
            Duration::from_secs(30)
        );
        assert_eq!(
            parse_retry_after(Some("Mon, 23 Nov 2026 03:00:00 GMT"), t),
            Duration::ZERO
        );
    }
}
