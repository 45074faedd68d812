//! The PDUs the SMSC sink builds: its message ids, the delivery receipts it sends back
//! (`deliver_sm` with `esm_class` 0x04, in the SMPP 3.4 Appendix B text form, with or without
//! the `receipted_message_id` / `message_state` TLVs), mobile-originated replies, and what it
//! reads from a `submit_sm` to count it (the recipient and the part number).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rusmpp::pdus::{DeliverSm, SubmitSm};
use rusmpp::tlvs::{MessageDeliveryRequestTlvValue, TlvValue};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessageState, Npi, Ton};
use serde::Deserialize;

/// How the sink writes the message ids it answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IdFormat {
    /// Upper-case hexadecimal, as many SMSCs answer.
    #[default]
    Hex,
    Decimal,
}

impl IdFormat {
    /// The id of the `n`th accepted part.
    pub fn write(self, n: u64) -> String {
        match self {
            IdFormat::Hex => format!("{n:X}"),
            IdFormat::Decimal => n.to_string(),
        }
    }
}

/// How the sink writes delivery receipts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptForm {
    /// No receipts.
    None,
    /// The text form plus the `receipted_message_id` and `message_state` TLVs.
    #[default]
    Tlv,
    /// The text form only: the ESME must read `id:` and `stat:`.
    Text,
}

/// What one accepted `submit_sm` asked and what the sink decided for its receipt.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub message_id: String,
    /// Who the message went to (digits), the receipt's source.
    pub destination: String,
    /// Who sent it, the receipt's destination.
    pub source: String,
    pub source_ton: u8,
    pub source_npi: u8,
    pub submitted: DateTime<Utc>,
    pub wants_receipt: bool,
}

/// A part's number within its message: from the concatenation header (8- or 16-bit
/// reference) or the `sar_segment_seqnum` TLV; 1 for a message of one part.
pub fn part_number(s: &SubmitSm) -> u8 {
    let udhi = u8::from(s.esm_class) & 0x40 != 0;
    let sm = s.short_message().as_ref();
    if udhi {
        match sm {
            [5, 0, 3, _, _, seq, ..] => return *seq,
            [6, 8, 4, _, _, _, seq, ..] => return *seq,
            _ => {}
        }
    }
    s.tlvs()
        .iter()
        .find_map(|t| match t.value() {
            Some(TlvValue::SarSegmentSeqnum(n)) => Some(*n),
            _ => None,
        })
        .unwrap_or(1)
}

/// The recipient's digits as a number (a leading `+` ignored); `None` if not digits.
pub fn destination_number(s: &SubmitSm) -> Option<u64> {
    let d = s.destination_addr.as_str();
    let d = d.strip_prefix('+').unwrap_or(d);
    if d.is_empty() || d.len() > 15 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    d.parse().ok()
}

fn c_string<const MIN: usize, const MAX: usize>(s: &str) -> COctetString<MIN, MAX> {
    COctetString::from_str(s).unwrap_or_else(|_| COctetString::empty())
}

/// The Appendix B text of a receipt.
pub fn receipt_text(
    id: &str,
    delivered: bool,
    submitted: DateTime<Utc>,
    done: DateTime<Utc>,
) -> String {
    let (stat, err) = if delivered {
        ("DELIVRD", "000")
    } else {
        ("UNDELIV", "001")
    };
    format!(
        "id:{id} sub:001 dlvrd:{} submit date:{} done date:{} stat:{stat} err:{err} text:",
        if delivered { "001" } else { "000" },
        submitted.format("%y%m%d%H%M"),
        done.format("%y%m%d%H%M"),
    )
}

/// The `deliver_sm` of a receipt for `a`.
pub fn receipt(a: &Accepted, delivered: bool, form: ReceiptForm, now: DateTime<Utc>) -> DeliverSm {
    let text = receipt_text(&a.message_id, delivered, a.submitted, now);
    let tlvs = match form {
        ReceiptForm::Tlv => vec![
            MessageDeliveryRequestTlvValue::ReceiptedMessageId(c_string(&a.message_id)),
            MessageDeliveryRequestTlvValue::MessageState(if delivered {
                MessageState::Delivered
            } else {
                MessageState::Undeliverable
            }),
        ],
        ReceiptForm::Text | ReceiptForm::None => Vec::new(),
    };
    DeliverSm::builder()
        .source_addr_ton(Ton::International)
        .source_addr_npi(Npi::Isdn)
        .source_addr(c_string(&a.destination))
        .dest_addr_ton(Ton::from(a.source_ton))
        .dest_addr_npi(Npi::from(a.source_npi))
        .destination_addr(c_string(&a.source))
        .esm_class(EsmClass::from(0x04))
        .short_message(OctetString::from_str(&text).unwrap_or_default())
        .tlvs(tlvs)
        .build()
}

/// A mobile-originated reply from the recipient of `a`, in the GSM default alphabet.
pub fn reply(a: &Accepted, text: &str) -> DeliverSm {
    DeliverSm::builder()
        .source_addr_ton(Ton::International)
        .source_addr_npi(Npi::Isdn)
        .source_addr(c_string(&a.destination))
        .dest_addr_ton(Ton::from(a.source_ton))
        .dest_addr_npi(Npi::from(a.source_npi))
        .destination_addr(c_string(&a.source))
        .esm_class(EsmClass::from(0))
        .data_coding(DataCoding::from(0))
        .short_message(OctetString::from_str(text).unwrap_or_default())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ids_are_written_in_the_configured_base() {
        assert_eq!(IdFormat::Hex.write(0x1A2B), "1A2B");
        assert_eq!(IdFormat::Decimal.write(6699), "6699");
    }

    /// SMPP 3.4 Appendix B: `id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done
    /// date:YYMMDDhhmm stat:DDDDDDD err:E text:...`.
    #[test]
    fn receipt_text_follows_appendix_b() {
        let s = Utc
            .with_ymd_and_hms(2026, 12, 4, 7, 5, 0)
            .single()
            .unwrap_or_default();
        let d = Utc
            .with_ymd_and_hms(2026, 12, 4, 7, 6, 0)
            .single()
            .unwrap_or_default();
        assert_eq!(
            receipt_text("1A2B", true, s, d),
            "id:1A2B sub:001 dlvrd:001 submit date:2612040705 done date:2612040706 stat:DELIVRD err:000 text:"
        );
        assert!(receipt_text("7", false, s, d).contains("stat:UNDELIV err:001"));
    }
}
