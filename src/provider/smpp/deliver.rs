//! What a `deliver_sm` from the SMSC says: a delivery receipt (the `receipted_message_id` and
//! `message_state` TLVs, or the text form of SMPP 3.4 appendix B), a mobile-originated reply,
//! or nothing herald acts on. Pure functions over the PDU's fields.
//!
//! The text form: `id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done
//! date:YYMMDDhhmm stat:DDDDDDD err:E text:...`, keys in any case, fields in any order.
//! TLVs win over the text when both are present. Intermediate notifications and the non-final
//! states (`ENROUTE`, `ACCEPTD`, `UNKNOWN`) are acknowledged and ignored.

use super::config::ReceiptIdConversion;
use super::mo_parts::{self, MoPart, Reassembled};
use super::text;
use crate::callbacks::inbound::Inbound;
use crate::callbacks::receipt::Receipt;
use crate::dispatch::{ReceiptStatus, ReceiptUpdate};

/// `esm_class` message type bits (2-5).
const ESM_TYPE_MASK: u8 = 0x3c;
const ESM_TYPE_SMSC_RECEIPT: u8 = 0x04;
const ESM_TYPE_SME_ACK: u8 = 0x08;
const ESM_TYPE_INTERMEDIATE: u8 = 0x20;
const ESM_UDHI: u8 = 0x40;
/// TON of an international number.
const TON_INTERNATIONAL: u8 = 1;

/// The fields of a `deliver_sm` that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliverSm {
    pub esm_class: u8,
    pub data_coding: u8,
    pub source_addr_ton: u8,
    pub source_addr: String,
    pub short_message: Vec<u8>,
    pub message_payload: Option<Vec<u8>>,
    pub receipted_message_id: Option<String>,
    pub message_state: Option<u8>,
    /// The SAR TLVs: reference, total, seq.
    pub sar: Option<(u16, u8, u8)>,
}

/// What a `deliver_sm` means to herald.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    Receipt(Receipt),
    Inbound(Inbound),
    /// One part of a reply in several: held until the reply is whole.
    InboundPart(MoPart),
    /// Acknowledged and dropped, with why (for a debug log).
    Ignored(&'static str),
}

/// Reads a `deliver_sm`.
pub fn classify(pdu: &DeliverSm, conversion: ReceiptIdConversion) -> Delivered {
    let body = pdu.message_payload.as_deref().unwrap_or(&pdu.short_message);
    match pdu.esm_class & ESM_TYPE_MASK {
        ESM_TYPE_SMSC_RECEIPT | ESM_TYPE_SME_ACK => receipt(pdu, body, conversion),
        ESM_TYPE_INTERMEDIATE => Delivered::Ignored("intermediate notification"),
        0 => inbound(pdu, body),
        _ => Delivered::Ignored("unknown esm_class message type"),
    }
}

fn receipt(pdu: &DeliverSm, body: &[u8], conversion: ReceiptIdConversion) -> Delivered {
    let parsed = parse_receipt_text(&String::from_utf8_lossy(body));
    let id = pdu
        .receipted_message_id
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .or(parsed.as_ref().and_then(|r| r.id.as_deref()));
    let Some(id) = id else {
        return Delivered::Ignored("receipt without a message id");
    };
    let state = match (
        pdu.message_state,
        parsed.as_ref().and_then(|r| r.stat.as_deref()),
    ) {
        (Some(code), _) => state_from_code(code),
        (None, Some(stat)) => state_from_stat(stat),
        (None, None) => return Delivered::Ignored("receipt without a state"),
    };
    let status = match state {
        Some(State::Final(s)) => s,
        Some(State::NotFinal) => return Delivered::Ignored("receipt of a non-final state"),
        None => return Delivered::Ignored("receipt of an unknown state"),
    };
    Delivered::Receipt(Receipt {
        message_id: convert_id(id.trim(), conversion),
        update: ReceiptUpdate { status, part: None },
        error_code: parsed.and_then(|r| r.err),
    })
}

fn inbound(pdu: &DeliverSm, body: &[u8]) -> Delivered {
    let sender = pdu.source_addr.trim();
    if sender.is_empty() {
        return Delivered::Ignored("reply without a sender");
    }
    let from = if pdu.source_addr_ton == TON_INTERNATIONAL && !sender.starts_with('+') {
        format!("+{sender}")
    } else {
        sender.to_string()
    };
    // A part of a concatenated reply: by its UDH (whose first octet is its length, skipped
    // whatever it holds) or by the SAR TLVs.
    let (concat, body) = if pdu.esm_class & ESM_UDHI != 0 {
        match mo_parts::concat_from_udh(body) {
            Some((c, text)) => (Some(c), text),
            None => match body.first() {
                Some(&len) => (None, body.get(usize::from(len) + 1..).unwrap_or(&[])),
                None => (None, body),
            },
        }
    } else {
        (pdu.sar, body)
    };
    if let Some((reference, total, seq)) = concat.filter(|c| c.1 > 1) {
        return Delivered::InboundPart(MoPart {
            from,
            reference,
            total,
            seq,
            data_coding: pdu.data_coding,
            body: body.to_vec(),
        });
    }
    whole_reply(from, pdu.data_coding, body)
}

/// A reply whose parts were joined.
pub fn reassembled(r: Reassembled) -> Delivered {
    whole_reply(r.from, r.data_coding, &r.body)
}

fn whole_reply(from: String, data_coding: u8, body: &[u8]) -> Delivered {
    let Some(text) = text::decode(data_coding, body) else {
        return Delivered::Ignored("reply in a binary or unknown data coding");
    };
    Delivered::Inbound(Inbound { from, text })
}

enum State {
    Final(ReceiptStatus),
    NotFinal,
}

/// The receipt a `message_state` (of a `query_sm_resp`, say) amounts to, when it is final.
pub fn final_status(message_state: u8) -> Option<ReceiptStatus> {
    match state_from_code(message_state) {
        Some(State::Final(s)) => Some(s),
        _ => None,
    }
}

/// `message_state` TLV values (SMPP 3.4 section 5.2.28).
fn state_from_code(code: u8) -> Option<State> {
    Some(match code {
        2 => State::Final(ReceiptStatus::Delivered),
        3 => State::Final(ReceiptStatus::Expired),
        4 | 5 => State::Final(ReceiptStatus::Undelivered),
        8 => State::Final(ReceiptStatus::Rejected),
        0 | 1 | 6 | 7 => State::NotFinal,
        _ => return None,
    })
}

/// `stat:` values of the text form (appendix B).
fn state_from_stat(stat: &str) -> Option<State> {
    let is = |s: &str| stat.eq_ignore_ascii_case(s);
    Some(if is("DELIVRD") {
        State::Final(ReceiptStatus::Delivered)
    } else if is("EXPIRED") {
        State::Final(ReceiptStatus::Expired)
    } else if is("UNDELIV") || is("DELETED") {
        State::Final(ReceiptStatus::Undelivered)
    } else if is("REJECTD") {
        State::Final(ReceiptStatus::Rejected)
    } else if is("ENROUTE") || is("ACCEPTD") || is("UNKNOWN") {
        State::NotFinal
    } else {
        return None;
    })
}

/// The fields of a text-form receipt that herald uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextReceipt {
    pub id: Option<String>,
    pub stat: Option<String>,
    pub err: Option<String>,
    pub sub: Option<String>,
    pub dlvrd: Option<String>,
}

/// Parses the text form; `None` when it has neither an `id:` nor a `stat:`.
pub fn parse_receipt_text(body: &str) -> Option<TextReceipt> {
    let mut r = TextReceipt::default();
    let mut tokens = body.split_whitespace().peekable();
    while let Some(token) = tokens.next() {
        let Some((key, value)) = token.split_once(':') else {
            // `submit date:` and `done date:`: a key in two words.
            let date_follows = tokens
                .peek()
                .and_then(|t| t.get(..5))
                .is_some_and(|p| p.eq_ignore_ascii_case("date:"));
            if date_follows {
                tokens.next();
            }
            continue;
        };
        let value = Some(value.to_string()).filter(|v| !v.is_empty());
        match key.to_ascii_lowercase().as_str() {
            "id" => r.id = value,
            "stat" => r.stat = value,
            "err" => r.err = value,
            "sub" => r.sub = value,
            "dlvrd" => r.dlvrd = value,
            // The rest is the message's first characters: nothing after it is a field.
            "text" => break,
            _ => {}
        }
    }
    (r.id.is_some() || r.stat.is_some()).then_some(r)
}

/// The receipt's id in the form `submit_sm_resp` answered it; unchanged when it is not a
/// number in the expected base (the index then reports it unknown, with the id in the log).
pub fn convert_id(id: &str, conversion: ReceiptIdConversion) -> String {
    let converted = match conversion {
        ReceiptIdConversion::None => None,
        ReceiptIdConversion::DecimalToHex => id.parse::<u128>().ok().map(|n| format!("{n:X}")),
        ReceiptIdConversion::HexToDecimal => {
            let digits = id
                .strip_prefix("0x")
                .or_else(|| id.strip_prefix("0X"))
                .unwrap_or(id);
            u128::from_str_radix(digits, 16).ok().map(|n| n.to_string())
        }
    };
    converted.unwrap_or_else(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_RECEIPT: &str = "id:0123456789 sub:001 dlvrd:001 submit date:0610191018 \
                                done date:0610191018 stat:DELIVRD err:000 text:Hello stat:x";

    fn dlr(body: &str) -> DeliverSm {
        DeliverSm {
            esm_class: ESM_TYPE_SMSC_RECEIPT,
            source_addr: "8613123079337".into(),
            short_message: body.as_bytes().to_vec(),
            ..DeliverSm::default()
        }
    }

    fn receipt_of(d: Delivered) -> Receipt {
        match d {
            Delivered::Receipt(r) => r,
            other => panic!("not a receipt: {other:?}"),
        }
    }

    #[test]
    fn the_appendix_b_text_form_parses() {
        let r = parse_receipt_text(SPEC_RECEIPT).expect("parses");
        assert_eq!(r.id.as_deref(), Some("0123456789"));
        assert_eq!(r.stat.as_deref(), Some("DELIVRD"));
        assert_eq!(r.err.as_deref(), Some("000"));
        assert_eq!(r.sub.as_deref(), Some("001"));
        assert_eq!(r.dlvrd.as_deref(), Some("001"));
        // Any case, any order, extra fields.
        let r = parse_receipt_text("STAT:undeliv ID:ab12 Err:34 foo:bar").expect("parses");
        assert_eq!(
            (r.id.as_deref(), r.stat.as_deref()),
            (Some("ab12"), Some("undeliv"))
        );
        assert_eq!(parse_receipt_text("hello there"), None);
        assert_eq!(parse_receipt_text(""), None);
    }

    #[test]
    fn text_receipts_map_their_state() {
        let r = receipt_of(classify(&dlr(SPEC_RECEIPT), ReceiptIdConversion::None));
        assert_eq!(r.message_id, "0123456789");
        assert_eq!(r.update.status, ReceiptStatus::Delivered);
        assert_eq!(r.error_code.as_deref(), Some("000"));
        for (stat, want) in [
            ("UNDELIV", ReceiptStatus::Undelivered),
            ("DELETED", ReceiptStatus::Undelivered),
            ("EXPIRED", ReceiptStatus::Expired),
            ("REJECTD", ReceiptStatus::Rejected),
        ] {
            let r = receipt_of(classify(
                &dlr(&format!("id:7 stat:{stat}")),
                ReceiptIdConversion::None,
            ));
            assert_eq!(r.update.status, want, "{stat}");
        }
        for stat in ["ENROUTE", "ACCEPTD", "UNKNOWN", "WHATEVER"] {
            assert!(matches!(
                classify(
                    &dlr(&format!("id:7 stat:{stat}")),
                    ReceiptIdConversion::None
                ),
                Delivered::Ignored(_)
            ));
        }
        assert!(matches!(
            classify(&dlr("stat:DELIVRD"), ReceiptIdConversion::None),
            Delivered::Ignored(_)
        ));
    }

    #[test]
    fn tlvs_win_over_the_text() {
        let mut pdu = dlr("id:999 stat:UNDELIV");
        pdu.receipted_message_id = Some("1A2B".into());
        pdu.message_state = Some(2);
        let r = receipt_of(classify(&pdu, ReceiptIdConversion::None));
        assert_eq!(r.message_id, "1A2B");
        assert_eq!(r.update.status, ReceiptStatus::Delivered);
        // TLVs alone, empty text.
        pdu.short_message.clear();
        pdu.message_state = Some(5);
        let r = receipt_of(classify(&pdu, ReceiptIdConversion::None));
        assert_eq!(r.update.status, ReceiptStatus::Undelivered);
        pdu.message_state = Some(6);
        assert!(matches!(
            classify(&pdu, ReceiptIdConversion::None),
            Delivered::Ignored(_)
        ));
    }

    proptest::proptest! {
        /// Whatever an SMSC sends, reading it never panics.
        #[test]
        fn any_deliver_sm_reads_without_panicking(
            esm_class: u8,
            data_coding: u8,
            ton: u8,
            body: Vec<u8>,
            text in "\\PC{0,80}",
            state: Option<u8>,
        ) {
            let _ = parse_receipt_text(&text);
            let _ = parse_receipt_text(&format!("submit {text} done 退订a"));
            let pdu = DeliverSm {
                esm_class,
                data_coding,
                source_addr_ton: ton,
                source_addr: text.clone(),
                short_message: body,
                message_payload: None,
                receipted_message_id: Some(text),
                message_state: state,
                sar: state.map(|s| (u16::from(s), s % 4, s % 3)),
            };
            let _ = classify(&pdu, ReceiptIdConversion::HexToDecimal);
            let _ = classify(&pdu, ReceiptIdConversion::DecimalToHex);
        }
    }

    #[test]
    fn ids_convert_between_bases() {
        assert_eq!(
            convert_id("6699", ReceiptIdConversion::DecimalToHex),
            "1A2B"
        );
        assert_eq!(
            convert_id("1a2b", ReceiptIdConversion::HexToDecimal),
            "6699"
        );
        assert_eq!(
            convert_id("0x1A2B", ReceiptIdConversion::HexToDecimal),
            "6699"
        );
        assert_eq!(convert_id("abc", ReceiptIdConversion::DecimalToHex), "abc");
        assert_eq!(convert_id("abc", ReceiptIdConversion::None), "abc");
        let r = receipt_of(classify(
            &dlr("id:6699 stat:DELIVRD"),
            ReceiptIdConversion::DecimalToHex,
        ));
        assert_eq!(r.message_id, "1A2B");
    }

    #[test]
    fn mobile_originated_replies_are_inbound() {
        let mo = DeliverSm {
            source_addr_ton: 1,
            source_addr: "8613123079337".into(),
            data_coding: text::DCS_UCS2,
            short_message: text::encode_ucs2("退订"),
            ..DeliverSm::default()
        };
        assert_eq!(
            classify(&mo, ReceiptIdConversion::None),
            Delivered::Inbound(Inbound {
                from: "+8613123079337".into(),
                text: "退订".into()
            })
        );
        let gsm = DeliverSm {
            source_addr: "13123079337".into(),
            short_message: b"STOP".to_vec(),
            ..DeliverSm::default()
        };
        let Delivered::Inbound(m) = classify(&gsm, ReceiptIdConversion::None) else {
            panic!("inbound")
        };
        assert_eq!((m.from.as_str(), m.text.as_str()), ("13123079337", "STOP"));
        // One part of a concatenated reply is held for reassembly, its UDH taken off; so is
        // one marked by SAR TLVs. A header without concatenation is skipped as not text.
        let mut part = gsm.clone();
        part.esm_class = ESM_UDHI;
        part.short_message = [&[5, 0, 3, 9, 2, 1][..], b"TD"].concat();
        let Delivered::InboundPart(p) = classify(&part, ReceiptIdConversion::None) else {
            panic!("a part")
        };
        assert_eq!(
            (p.from.as_str(), p.reference, p.total, p.seq, &p.body[..]),
            ("13123079337", 9, 2, 1, &b"TD"[..])
        );
        let mut sar = gsm.clone();
        sar.sar = Some((300, 2, 2));
        assert!(matches!(
            classify(&sar, ReceiptIdConversion::None),
            Delivered::InboundPart(MoPart {
                reference: 300,
                seq: 2,
                ..
            })
        ));
        part.short_message = [&[4, 0x24, 2, 1, 0][..], b"TD"].concat();
        let Delivered::Inbound(m) = classify(&part, ReceiptIdConversion::None) else {
            panic!("inbound")
        };
        assert_eq!(m.text, "TD");
        // message_payload instead of short_message.
        let mut payload = gsm;
        payload.short_message.clear();
        payload.message_payload = Some(b"STOP".to_vec());
        assert!(matches!(
            classify(&payload, ReceiptIdConversion::None),
            Delivered::Inbound(Inbound { ref text, .. }) if text == "STOP"
        ));
        let binary = DeliverSm {
            source_addr: "1".into(),
            data_coding: 4,
            short_message: vec![1, 2],
            ..DeliverSm::default()
        };
        assert!(matches!(
            classify(&binary, ReceiptIdConversion::None),
            Delivered::Ignored(_)
        ));
    }
}
