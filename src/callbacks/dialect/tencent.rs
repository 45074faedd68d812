//! Tencent Cloud's SMS status callback (短信下发状态通知), pushed as a JSON array:
//!
//! ```json
//! [{"user_receive_time": "2026-11-23 12:00:05", "nationcode": "86",
//!   "mobile": "13123000001", "report_status": "SUCCESS", "errmsg": "DELIVRD",
//!   "description": "用户短信送达成功", "sid": "2019:-2004451384...", "ext": {}}]
//! ```
//!
//! `sid` is the `SerialNo` the send answered (the provider message id); `report_status` is
//! `SUCCESS` (delivered) or `FAIL` (undelivered, `errmsg` kept as the error code).

use serde::Deserialize;

use crate::callbacks::receipt::{Receipt, TextOrNumber, WireError};
use crate::dispatch::{ReceiptStatus, ReceiptUpdate};

#[derive(Deserialize)]
struct Status {
    sid: Option<TextOrNumber>,
    report_status: Option<String>,
    #[serde(default)]
    errmsg: Option<String>,
}

/// Parses a whole callback body; the first problem is reported.
pub fn parse(body: &[u8]) -> Result<Vec<Receipt>, WireError> {
    crate::callbacks::wire::parse_items(body, "receipts", convert)
}

fn convert(s: Status) -> Result<Receipt, (&'static str, String)> {
    let sid = s
        .sid
        .map(TextOrNumber::into_text)
        .filter(|v| !v.trim().is_empty())
        .ok_or(("sid", "is required".to_string()))?;
    let report = s
        .report_status
        .ok_or(("report_status", "is required".to_string()))?;
    let status = match report.trim() {
        r if r.eq_ignore_ascii_case("SUCCESS") => ReceiptStatus::Delivered,
        r if r.eq_ignore_ascii_case("FAIL") => ReceiptStatus::Undelivered,
        other => return Err(("report_status", format!("{other:?} is not SUCCESS or FAIL"))),
    };
    Ok(Receipt {
        message_id: sid.trim().to_string(),
        update: ReceiptUpdate { status, part: None },
        error_code: s.errmsg.filter(|_| status != ReceiptStatus::Delivered),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documented_callback_parses() {
        let body = r#"[{"user_receive_time":"2015-10-17 08:03:04","nationcode":"86","mobile":"13xxxxxxxxx","report_status":"SUCCESS","errmsg":"DELIVRD","description":"用户短信送达成功","sid":"x1"},
                       {"user_receive_time":"2015-10-17 08:03:05","nationcode":"86","mobile":"13xxxxxxxxx","report_status":"FAIL","errmsg":"MK:0005","description":"x","sid":"x2"}]"#;
        let r = parse(body.as_bytes()).expect("callback");
        assert_eq!(r[0].message_id, "x1");
        assert_eq!(r[0].update.status, ReceiptStatus::Delivered);
        assert_eq!(r[1].update.status, ReceiptStatus::Undelivered);
        assert_eq!(r[1].error_code.as_deref(), Some("MK:0005"));
        let e = parse(br#"[{"sid":"x","report_status":"MAYBE"}]"#).expect_err("status");
        assert_eq!(e.field, "receipts[0].report_status");
    }
}
