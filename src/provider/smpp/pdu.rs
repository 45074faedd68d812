//! SMPP PDUs on the wire, through the `rusmpp` codec: the framing (a PDU that does not decode
//! is reported with its header instead of closing the bind, so it can be answered with a
//! `generic_nack`), the PDUs herald sends, and the fields it reads from the ones it receives.

use bytes::{Buf, BytesMut};
use rusmpp::decode::DecodeWithLength;
use rusmpp::pdus::{
    BindReceiver, BindTransceiver, BindTransmitter, DeliverSm, DeliverSmResp, SubmitSm,
};
use rusmpp::tlvs::{MessageSubmissionRequestTlvValue, TlvValue};
use rusmpp::types::{COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, Npi, PriorityFlag, RegisteredDelivery,
    ReplaceIfPresentFlag, ServiceType, Ton,
};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio_util::codec::{Decoder, Encoder};

use super::deliver;
use super::parts::Part;

/// The header: command_length, command_id, command_status, sequence_number.
const HEADER_LEN: usize = 16;
/// Longest PDU accepted: a `deliver_sm` with a full `message_payload` and TLVs fits.
pub const MAX_PDU_LEN: usize = 64 * 1024;

/// One PDU read from the SMSC.
#[derive(Debug)]
pub enum Frame {
    Command(Box<Command>),
    /// A PDU whose body did not decode; its header, to answer it.
    Malformed {
        command_id: u32,
        sequence_number: u32,
        reason: String,
    },
}

/// A broken stream: nothing after it can be framed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("command_length {0} is out of range")]
    Length(usize),
    #[error("encoding a PDU: {0}")]
    Encode(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Frames PDUs by their `command_length` and decodes them with rusmpp.
#[derive(Debug, Default)]
pub struct Codec {
    inner: rusmpp::tokio_codec::CommandCodec,
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let Some(head) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let word = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let len = word(0) as usize;
        if !(HEADER_LEN..=MAX_PDU_LEN).contains(&len) {
            return Err(CodecError::Length(len));
        }
        let (command_id, sequence_number) = (word(4), word(12));
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(len);
        frame.advance(4);
        Ok(Some(match Command::decode(&mut frame, len - 4) {
            Ok((command, _)) => Frame::Command(Box::new(command)),
            Err(e) => Frame::Malformed {
                command_id,
                sequence_number,
                reason: e.to_string(),
            },
        }))
    }
}

impl Encoder<Command> for Codec {
    type Error = CodecError;

    fn encode(&mut self, item: Command, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.inner
            .encode(item, dst)
            .map_err(|e| CodecError::Encode(e.to_string()))
    }
}

/// A field that does not fit its PDU (caught by config validation; kept as an error, not a
/// panic, because destination numbers come from outside).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

fn c_string<const MIN: usize, const MAX: usize>(
    field: &'static str,
    value: &str,
) -> Result<COctetString<MIN, MAX>, FieldError> {
    COctetString::from_string(value.to_string()).map_err(|e| FieldError {
        field,
        reason: e.to_string(),
    })
}

/// The bind of a transceiver session.
#[derive(Debug, Clone)]
pub struct BindFields {
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub interface_version: u8,
}

/// Which way a bind carries messages: both, or one of a transmitter and receiver pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindRole {
    Transceiver,
    Transmitter,
    Receiver,
}

/// The bind request of `role`, and whether a response PDU is the answer to it.
pub fn bind(b: &BindFields, role: BindRole) -> Result<Pdu, FieldError> {
    let t = bind_transceiver(b)?;
    Ok(match role {
        BindRole::Transceiver => Pdu::BindTransceiver(t),
        BindRole::Transmitter => Pdu::BindTransmitter(BindTransmitter {
            system_id: t.system_id,
            password: t.password,
            system_type: t.system_type,
            interface_version: t.interface_version,
            addr_ton: t.addr_ton,
            addr_npi: t.addr_npi,
            address_range: t.address_range,
        }),
        BindRole::Receiver => Pdu::BindReceiver(BindReceiver {
            system_id: t.system_id,
            password: t.password,
            system_type: t.system_type,
            interface_version: t.interface_version,
            addr_ton: t.addr_ton,
            addr_npi: t.addr_npi,
            address_range: t.address_range,
        }),
    })
}

/// Whether `pdu` is the response to a bind of `role`.
pub fn is_bind_resp(pdu: &Pdu, role: BindRole) -> bool {
    matches!(
        (role, pdu),
        (BindRole::Transceiver, Pdu::BindTransceiverResp(_))
            | (BindRole::Transmitter, Pdu::BindTransmitterResp(_))
            | (BindRole::Receiver, Pdu::BindReceiverResp(_))
    )
}

/// `bind_transceiver`.
pub fn bind_transceiver(b: &BindFields) -> Result<BindTransceiver, FieldError> {
    Ok(BindTransceiver {
        system_id: c_string("system_id", &b.system_id)?,
        password: c_string("password", &b.password)?,
        system_type: c_string("system_type", &b.system_type)?,
        interface_version: InterfaceVersion::from(b.interface_version),
        addr_ton: Ton::Unknown,
        addr_npi: Npi::Unknown,
        address_range: COctetString::empty(),
    })
}

/// The parts of every `submit_sm` that are the same for all messages.
#[derive(Debug, Clone)]
pub struct SubmitFields {
    pub service_type: String,
    pub source_ton: u8,
    pub source_npi: u8,
    pub source_addr: String,
    pub registered_delivery: u8,
}

/// `submit_sm` of one part to `to` (E.164 digits, sent as TON 1 / NPI 1).
pub fn submit_sm(f: &SubmitFields, to: u64, part: &Part) -> Result<SubmitSm, FieldError> {
    let short_message =
        OctetString::from_vec(part.short_message.clone()).map_err(|e| FieldError {
            field: "short_message",
            reason: e.to_string(),
        })?;
    let tlvs = match part.sar {
        Some((reference, total, seq)) => vec![
            MessageSubmissionRequestTlvValue::SarMsgRefNum(reference),
            MessageSubmissionRequestTlvValue::SarTotalSegments(total),
            MessageSubmissionRequestTlvValue::SarSegmentSeqnum(seq),
        ],
        None => Vec::new(),
    };
    Ok(SubmitSm::new(
        ServiceType::new(c_string("service_type", &f.service_type)?),
        Ton::from(f.source_ton),
        Npi::from(f.source_npi),
        c_string("source_addr", &f.source_addr)?,
        Ton::International,
        Npi::Isdn,
        c_string("destination_addr", &to.to_string())?,
        EsmClass::from(part.esm_class),
        0,
        PriorityFlag::default(),
        EmptyOrFullCOctetString::empty(),
        EmptyOrFullCOctetString::empty(),
        RegisteredDelivery::from(f.registered_delivery),
        ReplaceIfPresentFlag::default(),
        DataCoding::from(part.data_coding),
        0,
        short_message,
        tlvs,
    ))
}

/// A response PDU to a request of the SMSC.
pub fn response(sequence_number: u32, status: u32, pdu: Pdu) -> Command {
    Command::new(CommandStatus::from(status), sequence_number, pdu)
}

/// `deliver_sm_resp` (its message_id is unused and empty).
pub fn deliver_sm_resp(sequence_number: u32, status: u32) -> Command {
    response(
        sequence_number,
        status,
        Pdu::DeliverSmResp(DeliverSmResp::builder().build()),
    )
}

/// The fields herald reads from a `deliver_sm`.
pub fn deliver_fields(d: &DeliverSm) -> deliver::DeliverSm {
    let mut out = deliver::DeliverSm {
        esm_class: u8::from(d.esm_class),
        data_coding: u8::from(d.data_coding),
        source_addr_ton: u8::from(d.source_addr_ton),
        source_addr: d.source_addr.as_str().to_string(),
        short_message: d.short_message().as_ref().to_vec(),
        ..deliver::DeliverSm::default()
    };
    let mut sar = (None, None, None);
    for tlv in d.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => {
                out.receipted_message_id = Some(id.as_str().to_string())
            }
            Some(TlvValue::MessageState(state)) => out.message_state = Some(u8::from(*state)),
            Some(TlvValue::MessagePayload(p)) => {
                out.message_payload = Some(p.value.as_ref().to_vec())
            }
            Some(TlvValue::SarMsgRefNum(r)) => sar.0 = Some(*r),
            Some(TlvValue::SarTotalSegments(t)) => sar.1 = Some(*t),
            Some(TlvValue::SarSegmentSeqnum(n)) => sar.2 = Some(*n),
            _ => {}
        }
    }
    if let (Some(r), Some(t), Some(n)) = sar {
        out.sar = Some((r, t, n));
    }
    out
}

/// A status as its number.
pub fn status_code(status: CommandStatus) -> u32 {
    u32::from(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::smpp::parts::ESM_CLASS_UDHI;

    fn encode(c: Command) -> Vec<u8> {
        let mut buf = BytesMut::new();
        Codec::default().encode(c, &mut buf).expect("encodes");
        buf.to_vec()
    }

    fn decode_all(bytes: &[u8]) -> Vec<Frame> {
        let mut src = BytesMut::from(bytes);
        let mut codec = Codec::default();
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut src).expect("frames") {
            out.push(f);
        }
        out
    }

    /// SMPP 3.4 section 4.1.5: bind_transceiver, field by field.
    #[test]
    fn bind_transceiver_matches_the_spec_layout() {
        let bind = bind_transceiver(&BindFields {
            system_id: "herald".into(),
            password: "secret".into(),
            system_type: "".into(),
            interface_version: 0x34,
        })
        .expect("fits");
        let got = encode(Command::new(CommandStatus::EsmeRok, 1, bind));
        let mut body = Vec::new();
        body.extend_from_slice(b"herald\0secret\0\0");
        body.extend_from_slice(&[0x34, 0, 0, 0]);
        let mut want = Vec::new();
        want.extend_from_slice(&((16 + body.len()) as u32).to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 0x09, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&body);
        assert_eq!(got, want);
    }

    /// Section 4.4.1: submit_sm, with a UDH part.
    #[test]
    fn submit_sm_matches_the_spec_layout() {
        let fields = SubmitFields {
            service_type: "".into(),
            source_ton: 5,
            source_npi: 0,
            source_addr: "HERALD".into(),
            registered_delivery: 1,
        };
        let part = Part {
            esm_class: ESM_CLASS_UDHI,
            data_coding: 8,
            short_message: vec![5, 0, 3, 7, 2, 1, 0x90, 0x00],
            sar: None,
        };
        let pdu = submit_sm(&fields, 8613123079337, &part).expect("fits");
        let got = encode(Command::new(CommandStatus::EsmeRok, 0x1234, pdu));
        let mut body = Vec::new();
        body.push(0); // service_type ""
        body.extend_from_slice(&[5, 0]);
        body.extend_from_slice(b"HERALD\0");
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(b"8613123079337\0");
        body.extend_from_slice(&[0x40, 0, 0, 0, 0, 1, 0, 8, 0, 8]);
        body.extend_from_slice(&[5, 0, 3, 7, 2, 1, 0x90, 0x00]);
        assert_eq!(&got[4..8], &[0, 0, 0, 4]);
        assert_eq!(&got[12..16], &[0, 0, 0x12, 0x34]);
        assert_eq!(&got[16..], &body[..]);
        let sar = Part {
            esm_class: 0,
            sar: Some((0x0102, 3, 2)),
            ..part
        };
        let got = encode(Command::new(
            CommandStatus::EsmeRok,
            1,
            submit_sm(&fields, 1, &sar).expect("fits"),
        ));
        // TLVs 0x020C (ref, 2 octets), 0x020E (total), 0x020F (seq).
        assert!(got
            .ends_with(&[0x02, 0x0c, 0, 2, 0x01, 0x02, 0x02, 0x0e, 0, 1, 3, 0x02, 0x0f, 0, 1, 2]));
    }

    /// Section 4.6.1 with the receipt TLVs of 5.3.2.12 and 5.3.2.35.
    #[test]
    fn a_receipt_deliver_sm_decodes_to_its_fields() {
        let mut body = Vec::new();
        body.push(0);
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(b"8613123079337\0");
        body.extend_from_slice(&[5, 0]);
        body.extend_from_slice(b"HERALD\0");
        body.extend_from_slice(&[0x04, 0, 0, 0, 0, 0, 0, 0, 0]);
        let text = b"id:1A2B sub:001 dlvrd:001 submit date:2611230400 done date:2611230401 stat:DELIVRD err:000 text:";
        body.push(text.len() as u8);
        body.extend_from_slice(text);
        body.extend_from_slice(&[0x00, 0x1e, 0, 5]);
        body.extend_from_slice(b"1A2B\0");
        body.extend_from_slice(&[0x04, 0x27, 0, 1, 2]);
        let mut pdu = ((16 + body.len()) as u32).to_be_bytes().to_vec();
        pdu.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9]);
        pdu.extend_from_slice(&body);
        let frames = decode_all(&pdu);
        let [Frame::Command(c)] = &frames[..] else {
            panic!("one command: {frames:?}")
        };
        assert_eq!(c.sequence_number, 9);
        let Some(Pdu::DeliverSm(d)) = c.pdu() else {
            panic!("deliver_sm")
        };
        let f = deliver_fields(d);
        assert_eq!(f.esm_class, 4);
        assert_eq!(f.source_addr, "8613123079337");
        assert_eq!(f.receipted_message_id.as_deref(), Some("1A2B"));
        assert_eq!(f.message_state, Some(2));
        assert_eq!(f.short_message, text.to_vec());
    }

    #[test]
    fn a_pdu_that_does_not_decode_keeps_its_header_and_the_stream() {
        // submit_sm_resp with a message_id missing its NUL, then an enquire_link.
        let mut bad = vec![0, 0, 0, 19, 0x80, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 7];
        bad.extend_from_slice(b"abc");
        bad.extend_from_slice(&[0, 0, 0, 16, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 8]);
        let frames = decode_all(&bad);
        assert!(matches!(
            frames[0],
            Frame::Malformed {
                command_id: 0x8000_0004,
                sequence_number: 7,
                ..
            }
        ));
        assert!(matches!(&frames[1], Frame::Command(c) if c.sequence_number == 8));
        // A length below the header cannot be framed at all.
        let mut src = BytesMut::from(&[0u8, 0, 0, 4, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1][..]);
        assert!(Codec::default().decode(&mut src).is_err());
    }
}
