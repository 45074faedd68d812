//! The fixed-size part of a contact: 24 bytes holding everything the policy needs on its hot
//! path (phone, consent, time zone, freshness) without touching the string arena.
//!
//! The policy reads one of these per recipient, so it is kept small enough to cost one
//! cache-line fetch (rarely two): the phone as an E.164 integer, its status and line type,
//! two consent bits per channel, an invalid-email flag, an interned time-zone index and
//! `updated_at` in seconds. Strings (id, email, push tokens, openids, tags, attributes) live
//! in the arena at `blob`; see `arena.rs` for that layout.

use chrono::{DateTime, Utc};

use crate::domain::{Channel, Consent};
use crate::phone::{LineType, PhoneInfo, RegionCode};

/// What the snapshot knows about a contact's phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhoneStatus {
    /// The phone cell was empty.
    Missing,
    /// The cell is not a phone number at all.
    Unparsable,
    /// A number, but not a valid one in its numbering plan.
    Invalid,
    /// A valid number (it may still be a landline; see [`LineType`]).
    Valid,
}

/// The outcome of parsing one phone cell, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhoneOutcome {
    Missing,
    Unparsable,
    Invalid,
    Valid(PhoneInfo),
}

impl PhoneOutcome {
    /// Parses and validates a cell against the numbering plan. A panic inside the metadata
    /// library on hostile input is treated as "not a number" rather than killing a load.
    pub(crate) fn parse(text: &str, default_region: RegionCode) -> PhoneOutcome {
        let text = text.trim();
        if text.is_empty() {
            return PhoneOutcome::Missing;
        }
        match std::panic::catch_unwind(|| crate::phone::parse(text, default_region)) {
            Ok(Ok(info)) => PhoneOutcome::Valid(info),
            Ok(Err(crate::phone::PhoneError::Invalid)) => PhoneOutcome::Invalid,
            Ok(Err(crate::phone::PhoneError::NotANumber)) | Err(_) => PhoneOutcome::Unparsable,
        }
    }

    /// The status without the number.
    pub(crate) fn status(&self) -> PhoneStatus {
        match self {
            PhoneOutcome::Missing => PhoneStatus::Missing,
            PhoneOutcome::Unparsable => PhoneStatus::Unparsable,
            PhoneOutcome::Invalid => PhoneStatus::Invalid,
            PhoneOutcome::Valid(_) => PhoneStatus::Valid,
        }
    }
}

// Layout of `Record::flags`.
const PHONE_STATUS_MASK: u16 = 0b11;
const LINE_TYPE_SHIFT: u16 = 2;
const LINE_TYPE_MASK: u16 = 0b111 << LINE_TYPE_SHIFT;
const CONSENT_SHIFT: u16 = 5;
/// Set on a load-time `deleted: true` row: it removes an earlier row and is never live.
const TOMBSTONE: u16 = 1 << 11;
/// WeChat's consent bits, placed after the tombstone flag (it came later).
const WECHAT_CONSENT_SHIFT: u16 = 12;
/// Set when the email cell held something that is not an address (none is stored then).
const EMAIL_INVALID: u16 = 1 << 14;

/// One contact's fixed-size fields.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub(crate) struct Record {
    /// E.164 digits as an integer; 0 unless the phone is valid.
    pub(crate) e164: u64,
    /// Offset of the contact's strings in the arena.
    pub(crate) blob: u32,
    /// `updated_at` as Unix seconds + 1; 0 when unknown.
    pub(crate) updated: u32,
    /// Index into the snapshot's zone table; 0 when unknown.
    pub(crate) zone: u16,
    /// Region of a valid phone.
    pub(crate) region: [u8; 2],
    /// Phone status, line type, consent bits, the tombstone and invalid-email flags.
    pub(crate) flags: u16,
    /// Number of tag ids in the blob.
    pub(crate) ntags: u8,
    /// Number of attributes in the blob.
    pub(crate) nattrs: u8,
}

const _: () = assert!(std::mem::size_of::<Record>() == 24);

impl Record {
    pub(crate) fn phone_status(&self) -> PhoneStatus {
        match self.flags & PHONE_STATUS_MASK {
            1 => PhoneStatus::Unparsable,
            2 => PhoneStatus::Invalid,
            3 => PhoneStatus::Valid,
            _ => PhoneStatus::Missing,
        }
    }

    /// The valid phone, if there is one.
    pub(crate) fn phone_info(&self) -> Option<PhoneInfo> {
        (self.phone_status() == PhoneStatus::Valid).then(|| PhoneInfo {
            e164: self.e164,
            region: RegionCode(self.region),
            line_type: line_type_from_bits((self.flags & LINE_TYPE_MASK) >> LINE_TYPE_SHIFT),
        })
    }

    pub(crate) fn set_phone(&mut self, outcome: PhoneOutcome) {
        let (status, e164, region, line) = match outcome {
            PhoneOutcome::Missing => (0, 0, [0; 2], 0),
            PhoneOutcome::Unparsable => (1, 0, [0; 2], 0),
            PhoneOutcome::Invalid => (2, 0, [0; 2], 0),
            PhoneOutcome::Valid(info) => {
                (3, info.e164, info.region.0, line_type_bits(info.line_type))
            }
        };
        self.e164 = e164;
        self.region = region;
        self.flags = (self.flags & !(PHONE_STATUS_MASK | LINE_TYPE_MASK))
            | status
            | (line << LINE_TYPE_SHIFT);
    }

    pub(crate) fn consent(&self, channel: Channel) -> Consent {
        Consent::from_bits(((self.flags >> consent_shift(channel)) & 0b11) as u8)
    }

    pub(crate) fn set_consents(&mut self, consents: [Consent; 4]) {
        for (channel, consent) in Channel::ALL.into_iter().zip(consents) {
            let shift = consent_shift(channel);
            self.flags = (self.flags & !(0b11 << shift)) | (u16::from(consent.to_bits()) << shift);
        }
    }

    /// Whether the email cell was present but not an address.
    pub(crate) fn email_invalid(&self) -> bool {
        self.flags & EMAIL_INVALID != 0
    }

    pub(crate) fn set_email_invalid(&mut self) {
        self.flags |= EMAIL_INVALID;
    }

    pub(crate) fn is_tombstone(&self) -> bool {
        self.flags & TOMBSTONE != 0
    }

    pub(crate) fn set_tombstone(&mut self) {
        self.flags |= TOMBSTONE;
    }

    pub(crate) fn updated_at(&self) -> Option<DateTime<Utc>> {
        decode_time(self.updated)
    }
}

/// Where a channel's consent bits are.
fn consent_shift(channel: Channel) -> u16 {
    match channel {
        Channel::Sms => CONSENT_SHIFT,
        Channel::Email => CONSENT_SHIFT + 2,
        Channel::Push => CONSENT_SHIFT + 4,
        Channel::Wechat => WECHAT_CONSENT_SHIFT,
    }
}

fn line_type_bits(line: LineType) -> u16 {
    match line {
        LineType::Mobile => 0,
        LineType::FixedLineOrMobile => 1,
        LineType::FixedLine => 2,
        LineType::TollFree => 3,
        LineType::Other => 4,
    }
}

fn line_type_from_bits(bits: u16) -> LineType {
    match bits {
        0 => LineType::Mobile,
        1 => LineType::FixedLineOrMobile,
        2 => LineType::FixedLine,
        3 => LineType::TollFree,
        _ => LineType::Other,
    }
}

/// Encodes a time as Unix seconds + 1 (0 = unknown). Times before 1970 or after 2106 do not
/// fit and yield `None`; sub-second precision is dropped.
pub(crate) fn encode_time(t: DateTime<Utc>) -> Option<u32> {
    u32::try_from(t.timestamp())
        .ok()
        .and_then(|s| s.checked_add(1))
}

pub(crate) fn decode_time(code: u32) -> Option<DateTime<Utc>> {
    code.checked_sub(1)
        .and_then(|s| DateTime::from_timestamp(i64::from(s), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_and_consent_bits_do_not_overlap() {
        let mut r = Record::default();
        r.set_consents([
            Consent::OptIn,
            Consent::OptOut,
            Consent::Unknown,
            Consent::OptOut,
        ]);
        r.set_email_invalid();
        let info = PhoneInfo {
            e164: 447700900123,
            region: RegionCode(*b"GB"),
            line_type: LineType::TollFree,
        };
        r.set_phone(PhoneOutcome::Valid(info));
        r.set_tombstone();
        assert_eq!(r.phone_info(), Some(info));
        assert_eq!(r.consent(Channel::Sms), Consent::OptIn);
        assert_eq!(r.consent(Channel::Email), Consent::OptOut);
        assert_eq!(r.consent(Channel::Push), Consent::Unknown);
        assert_eq!(r.consent(Channel::Wechat), Consent::OptOut);
        assert!(r.is_tombstone());
        assert!(r.email_invalid());
        r.set_phone(PhoneOutcome::Invalid);
        assert_eq!(r.phone_status(), PhoneStatus::Invalid);
        assert_eq!(r.phone_info(), None);
        assert_eq!(r.consent(Channel::Email), Consent::OptOut);
        assert_eq!(r.consent(Channel::Wechat), Consent::OptOut);
        assert!(r.email_invalid());
    }

    #[test]
    fn times_round_trip_and_out_of_range_is_refused() {
        let t = DateTime::from_timestamp(1_795_000_000, 0).expect("in range");
        assert_eq!(decode_time(encode_time(t).expect("fits")), Some(t));
        assert_eq!(
            decode_time(encode_time(DateTime::UNIX_EPOCH).expect("fits")),
            Some(DateTime::UNIX_EPOCH)
        );
        assert_eq!(decode_time(0), None);
        let before = DateTime::from_timestamp(-5, 0).expect("in range");
        assert_eq!(encode_time(before), None);
    }
}
