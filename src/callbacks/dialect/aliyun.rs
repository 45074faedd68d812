//! Alibaba Cloud's SMS delivery report (`SmsReport`), pushed as a JSON array:
//!
//! ```json
//! [{"phone_number": "13123000001", "send_time": "2026-11-23 12:00:01",
//!   "report_time": "2026-11-23 12:00:05", "success": true, "err_code": "DELIVERED",
//!   "err_msg": "用户接收成功", "sms_size": "1", "biz_id": "932702304080415357^0",
//!   "out_id": "msg_..."}]
//! ```
//!
//! The message is found by `<biz_id>:<phone_number>` (the provider message id the adapter
//! registered, [`crate::provider::aliyun::wire::provider_message_id`]); `success` says
//! delivered or not, `err_code` is kept.

use serde::Deserialize;

use crate::callbacks::receipt::{Receipt, TextOrNumber, WireError};
use crate::dispatch::{ReceiptStatus, ReceiptUpdate};
use crate::provider::aliyun::wire::{phone_from_receipt, provider_message_id};

#[derive(Deserialize)]
struct Report {
    phone_number: Option<TextOrNumber>,
    biz_id: Option<String>,
    success: Option<bool>,
    #[serde(default)]
    err_code: Option<String>,
}

/// Parses a whole report body; the first problem is reported.
pub fn parse(body: &[u8]) -> Result<Vec<Receipt>, WireError> {
    crate::callbacks::wire::parse_items(body, "receipts", convert)
}

fn convert(r: Report) -> Result<Receipt, (&'static str, String)> {
    let biz_id = r
        .biz_id
        .filter(|b| !b.trim().is_empty())
        .ok_or(("biz_id", "is required".to_string()))?;
    let phone = r
        .phone_number
        .map(TextOrNumber::into_text)
        .map(|p| phone_from_receipt(&p))
        .filter(|p| !p.is_empty())
        .ok_or(("phone_number", "is required".to_string()))?;
    let success = r.success.ok_or(("success", "is required".to_string()))?;
    Ok(Receipt {
        message_id: provider_message_id(biz_id.trim(), &phone),
        update: ReceiptUpdate {
            status: if success {
                ReceiptStatus::Delivered
            } else {
                ReceiptStatus::Undelivered
            },
            part: None,
        },
        error_code: r.err_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documented_report_parses() {
        let body = r#"[{"phone_number":"13900000000","send_time":"2017-01-01 11:12:13","report_time":"2017-02-02 22:23:24","success":true,"err_code":"DELIVERED","err_msg":"用户接收成功","sms_size":"1","biz_id":"12345","out_id":"67890"},
                       {"phone_number":"+8613900000001","success":false,"err_code":"MK:0001","biz_id":"12345"}]"#;
        let r = parse(body.as_bytes()).expect("report");
        assert_eq!(r[0].message_id, "12345:13900000000");
        assert_eq!(r[0].update.status, ReceiptStatus::Delivered);
        assert_eq!(r[1].message_id, "12345:13900000001");
        assert_eq!(r[1].update.status, ReceiptStatus::Undelivered);
        assert_eq!(r[1].error_code.as_deref(), Some("MK:0001"));
        let e = parse(br#"[{"phone_number":"1","success":true}]"#).expect_err("no biz_id");
        assert_eq!(e.field, "receipts[0].biz_id");
    }
}
