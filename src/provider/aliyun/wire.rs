//! Alibaba Cloud SMS on the wire (Dysmsapi, version 2017-05-25): the `SendSms` and
//! `SendBatchSms` parameters, and the mapping of an answer to outcomes. Pure functions.
//!
//! One message is `SendSms` with `OutId` = herald's message id; several are one
//! `SendBatchSms`. Both answer `{"Code", "Message", "BizId", "RequestId"}`; a batch has one
//! `BizId` for all its numbers, and receipts name the number beside it, so the provider
//! message id herald keeps is `<BizId>:<number as sent>` (see [`provider_message_id`]).
//!
//! Error codes (the whole table is in docs/providers-cloud.md):
//! - throttled: `isv.BUSINESS_LIMIT_CONTROL` (per-number frequency), for `throttle_retry_ms`;
//! - unavailable (nothing was accepted; another provider may take it): `Throttling*`,
//!   `ServiceUnavailable`, `InternalError`, `isv.SYSTEM_ERROR`, `isv.OUT_OF_SERVICE`,
//!   `isv.AMOUNT_NOT_ENOUGH`, credential and signature errors, any 5xx;
//! - permanent: `isv.MOBILE_NUMBER_ILLEGAL`, `isv.BLACK_KEY_CONTROL_LIMIT`,
//!   `isv.DAY_LIMIT_CONTROL`, template and signature refusals, and any other code.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::sign;
use crate::config::AliyunConfig;
use crate::provider::cloud::unreadable_answer;
use crate::provider::https_client::RawAnswer;
use crate::provider::{OutboundMessage, SendOutcome};

/// The throttle delay of an HTTP 429 without a readable code (the API's own request rate).
pub const API_RATE_RETRY: Duration = Duration::from_secs(1);

/// The API version of the SMS RPC endpoint.
pub const VERSION: &str = "2017-05-25";

/// A number as Alibaba takes it: mainland China without its country code, every other
/// number with its country code and no `+` (`85212345678`).
pub fn phone(e164: u64) -> String {
    let digits = e164.to_string();
    match digits.strip_prefix("86") {
        Some(national) if national.len() == 11 => national.to_string(),
        _ => digits,
    }
}

/// The same form from a number as a receipt writes it (`+86...`, `0086...`, `86...`).
pub fn phone_from_receipt(raw: &str) -> String {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.strip_prefix("00").unwrap_or(&digits).to_string();
    match digits.strip_prefix("86") {
        Some(national) if national.len() == 11 => national.to_string(),
        _ => digits,
    }
}

/// The provider message id of a message accepted under `biz_id`.
pub fn provider_message_id(biz_id: &str, phone: &str) -> String {
    format!("{biz_id}:{phone}")
}

/// The common RPC parameters of one request.
fn common(
    action: &'static str,
    config: &AliyunConfig,
    access_key_id: &str,
    now: DateTime<Utc>,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("AccessKeyId", access_key_id.to_string()),
        ("Action", action.to_string()),
        ("Format", "JSON".to_string()),
        ("RegionId", config.region_id.clone()),
        ("SignatureMethod", "HMAC-SHA1".to_string()),
        ("SignatureNonce", nonce.to_string()),
        ("SignatureVersion", "1.0".to_string()),
        ("Timestamp", now.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        ("Version", VERSION.to_string()),
    ]
}

/// `TemplateParam` of one message: its text in the configured variable.
fn template_param(config: &AliyunConfig, body: &str) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert(
        config.template_param_name.clone(),
        serde_json::Value::String(body.to_string()),
    );
    serde_json::Value::Object(map)
}

/// The parameters of a request for `messages` (one: `SendSms`; several: `SendBatchSms`),
/// without the signature.
pub fn params(
    messages: &[OutboundMessage],
    config: &AliyunConfig,
    access_key_id: &str,
    now: DateTime<Utc>,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    match messages {
        [m] => {
            let mut p = common("SendSms", config, access_key_id, now, nonce);
            p.push(("PhoneNumbers", phone(m.phone())));
            p.push(("SignName", config.sign_name.clone()));
            p.push(("TemplateCode", config.template_code.clone()));
            p.push(("TemplateParam", template_param(config, &m.body).to_string()));
            p.push(("OutId", m.id.to_string()));
            p
        }
        _ => {
            let mut p = common("SendBatchSms", config, access_key_id, now, nonce);
            let phones: Vec<String> = messages.iter().map(|m| phone(m.phone())).collect();
            let signs: Vec<&str> = messages.iter().map(|_| config.sign_name.as_str()).collect();
            let params: Vec<serde_json::Value> = messages
                .iter()
                .map(|m| template_param(config, &m.body))
                .collect();
            p.push(("PhoneNumberJson", to_json(&phones)));
            p.push(("SignNameJson", to_json(&signs)));
            p.push(("TemplateCode", config.template_code.clone()));
            p.push(("TemplateParamJson", to_json(&params)));
            p
        }
    }
}

fn to_json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The form body of a signed POST request for `params`.
pub fn signed_body(mut params: Vec<(&'static str, String)>, access_key_secret: &[u8]) -> String {
    let signature = sign::signature(access_key_secret, &sign::string_to_sign("POST", &params));
    params.push(("Signature", signature));
    sign::canonical_query(&params)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    biz_id: Option<String>,
}

/// What an error code means for the messages of its request. The error names the code only:
/// the provider's message text may quote the number, which logs must not carry.
pub fn outcome_of_code(code: &str, throttle: Duration) -> SendOutcome {
    let error = crate::provider::cloud::error_code(code);
    match code {
        "isv.BUSINESS_LIMIT_CONTROL" => SendOutcome::Throttled {
            retry_after: throttle,
        },
        c if c.starts_with("Throttling")
            || c.starts_with("ServiceUnavailable")
            || c.starts_with("InternalError")
            || c.starts_with("InvalidAccessKeyId")
            || c.starts_with("SignatureDoesNotMatch")
            || c.starts_with("SignatureNonceUsed")
            || c.starts_with("InvalidTimeStamp")
            || matches!(
                c,
                "isv.SYSTEM_ERROR"
                    | "isv.OUT_OF_SERVICE"
                    | "isv.AMOUNT_NOT_ENOUGH"
                    | "isv.ACCOUNT_ABNORMAL"
                    | "isv.ACCOUNT_NOT_EXISTS"
                    | "isp.RAM_PERMISSION_DENY"
                    | "Forbidden.RAM"
            ) =>
        {
            SendOutcome::Unavailable { error }
        }
        _ => SendOutcome::Permanent { error },
    }
}

/// One outcome per message of the request from its complete answer.
pub fn map_answer(
    messages: &[OutboundMessage],
    answer: &RawAnswer,
    throttle: Duration,
) -> Vec<SendOutcome> {
    let all = |o: SendOutcome| vec![o; messages.len()];
    let parsed = serde_json::from_slice::<Answer>(&answer.body).ok();
    match parsed {
        Some(Answer {
            code: Some(code),
            biz_id,
            ..
        }) if code == "OK" => match biz_id.filter(|b| !b.trim().is_empty()) {
            Some(biz) => messages
                .iter()
                .map(|m| SendOutcome::Accepted {
                    provider_message_id: provider_message_id(biz.trim(), &phone(m.phone())),
                })
                .collect(),
            // Accepted without an id: receipts cannot be matched, but it was sent.
            None => messages
                .iter()
                .map(|m| SendOutcome::Accepted {
                    provider_message_id: m.id.to_string(),
                })
                .collect(),
        },
        Some(Answer {
            code: Some(code), ..
        }) => all(outcome_of_code(&code, throttle)),
        _ => messages
            .iter()
            .map(|m| unreadable_answer(m, answer.status, API_RATE_RETRY))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Address, Channel, JobId, MessageId};

    fn message(to: u64) -> OutboundMessage {
        OutboundMessage {
            id: MessageId::derive(&JobId::generate(), &to.to_string(), Channel::Sms),
            to: Address::Phone(to),
            channel: Channel::Sms,
            body: "Hello 你好".into(),
            parts: 1,
            content: None,
        }
    }

    fn answer(status: u16, body: &str) -> RawAnswer {
        RawAnswer {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    const T: Duration = Duration::from_secs(60);

    #[test]
    fn numbers_are_written_as_alibaba_takes_them() {
        assert_eq!(phone(8613123000001), "13123000001");
        assert_eq!(phone(85212345678), "85212345678");
        assert_eq!(phone_from_receipt("+86 131 2300 0001"), "13123000001");
        assert_eq!(phone_from_receipt("008613123000001"), "13123000001");
        assert_eq!(phone_from_receipt("13123000001"), "13123000001");
    }

    #[test]
    fn a_single_message_is_send_sms_with_its_id_as_out_id() {
        let m = message(8613123000001);
        let config = AliyunConfig {
            sign_name: "Herald".into(),
            template_code: "SMS_1".into(),
            ..AliyunConfig::default()
        };
        let now: DateTime<Utc> = "2026-11-23T04:00:00Z".parse().expect("time");
        let p = params(std::slice::from_ref(&m), &config, "id", now, "n-1");
        let get = |k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("Action").as_deref(), Some("SendSms"));
        assert_eq!(get("OutId"), Some(m.id.to_string()));
        assert_eq!(get("Timestamp").as_deref(), Some("2026-11-23T04:00:00Z"));
        assert_eq!(
            get("TemplateParam").as_deref(),
            Some(r#"{"content":"Hello 你好"}"#)
        );
        let body = signed_body(p, b"secret");
        assert!(body.contains("&Signature="), "{body}");
        assert!(body.contains("PhoneNumbers=13123000001"), "{body}");
    }

    #[test]
    fn codes_map_as_the_table_says() {
        let m = [message(8613123000001), message(8613123000002)];
        let ok = map_answer(
            &m,
            &answer(
                200,
                r#"{"Code":"OK","Message":"OK","BizId":"900619746936^0"}"#,
            ),
            T,
        );
        assert_eq!(
            ok[1],
            SendOutcome::Accepted {
                provider_message_id: "900619746936^0:13123000002".into()
            }
        );
        let limited = map_answer(
            &m[..1],
            &answer(
                200,
                r#"{"Code":"isv.BUSINESS_LIMIT_CONTROL","Message":"触发分钟级流控"}"#,
            ),
            T,
        );
        assert_eq!(limited, vec![SendOutcome::Throttled { retry_after: T }]);
        let illegal = map_answer(
            &m[..1],
            &answer(
                200,
                r#"{"Code":"isv.MOBILE_NUMBER_ILLEGAL","Message":"非法手机号"}"#,
            ),
            T,
        );
        assert!(
            matches!(&illegal[0], SendOutcome::Permanent { error } if error.starts_with("isv.MOBILE_NUMBER_ILLEGAL")),
            "{illegal:?}"
        );
        for code in [
            "Throttling.User",
            "ServiceUnavailable",
            "isv.AMOUNT_NOT_ENOUGH",
        ] {
            let body = format!(r#"{{"Code":"{code}","Message":"x"}}"#);
            let o = map_answer(&m[..1], &answer(400, &body), T);
            assert!(
                matches!(o[0], SendOutcome::Unavailable { .. }),
                "{code}: {o:?}"
            );
        }
        assert!(matches!(
            map_answer(&m[..1], &answer(503, "<html>"), T)[0],
            SendOutcome::Unavailable { .. }
        ));
        assert_eq!(
            map_answer(&m[..1], &answer(429, "<html>"), T),
            vec![SendOutcome::Throttled {
                retry_after: API_RATE_RETRY
            }]
        );
    }
}
