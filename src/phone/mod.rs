//! Phone numbers: parsed and validated once with real numbering-plan metadata (a libphonenumber
//! port), then carried as E.164 integers so that every later check is a comparison.
//!
//! The metadata comes from `rlibphonenumber` (a libphonenumber port that scales across threads);
//! it is kept behind this module so another port could replace it without touching callers.

pub mod timezone;

use std::fmt;

pub use timezone::zones_for;

/// An ISO 3166-1 alpha-2 region code such as `CN` or `US`, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RegionCode(pub [u8; 2]);

impl RegionCode {
    /// No country: the destination of channels whose addresses have none (email, push,
    /// WeChat), so their routes and prices are the `*` ones.
    pub const UNKNOWN: RegionCode = RegionCode(*b"ZZ");

    /// Parses two ASCII letters, case-insensitively.
    pub fn parse(s: &str) -> Option<RegionCode> {
        let b = s.as_bytes();
        (b.len() == 2 && b.iter().all(|c| c.is_ascii_alphabetic()))
            .then(|| RegionCode([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()]))
    }

    /// The code as text (`ZZ` for unknown).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("ZZ")
    }
}

impl fmt::Debug for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of line a number belongs to, as the numbering plan says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineType {
    Mobile,
    /// Plans (US, CA, ...) where mobile and fixed ranges cannot be told apart: sendable.
    FixedLineOrMobile,
    FixedLine,
    TollFree,
    Other,
}

impl LineType {
    /// Whether an SMS can reach this line.
    pub fn is_sms_capable(self) -> bool {
        matches!(self, LineType::Mobile | LineType::FixedLineOrMobile)
    }
}

/// A valid number: E.164 digits as an integer, its region and line type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PhoneInfo {
    pub e164: u64,
    pub region: RegionCode,
    pub line_type: LineType,
}

/// Why a string is not a usable phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("not a phone number")]
    NotANumber,
    #[error("not a valid number in its numbering plan")]
    Invalid,
}

/// Parses `input` (E.164, international or national format) with `default_region` for
/// national numbers, and validates it against the numbering plan.
pub fn parse(input: &str, default_region: RegionCode) -> Result<PhoneInfo, PhoneError> {
    use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, PhoneNumberType, Region};
    let region = Region::from_code(default_region.as_str()).ok();
    let number = PhoneNumber::parse(input, region).map_err(|_| PhoneError::NotANumber)?;
    // A number is valid exactly when its region's plan gives it a type, so one type lookup
    // answers both questions. Calling `is_valid` as well would repeat the search for the number's
    // region, which for calling codes shared by many regions (+1, +7, +44) is most of the cost.
    let line_type = match number.get_type() {
        PhoneNumberType::Unknown => return Err(PhoneError::Invalid),
        PhoneNumberType::Mobile => LineType::Mobile,
        PhoneNumberType::FixedLineOrMobile => LineType::FixedLineOrMobile,
        PhoneNumberType::FixedLine => LineType::FixedLine,
        PhoneNumberType::TollFree => LineType::TollFree,
        _ => LineType::Other,
    };
    let e164_text = number.format_as(PhoneNumberFormat::E164);
    let e164: u64 = e164_text
        .trim_start_matches('+')
        .parse()
        .map_err(|_| PhoneError::Invalid)?;
    let region = number
        .get_region_code()
        .and_then(|r| RegionCode::parse(r.as_region_str().as_str()))
        .unwrap_or(RegionCode(*b"ZZ"));
    Ok(PhoneInfo {
        e164,
        region,
        line_type,
    })
}

/// `+` followed by the digits.
pub fn format_e164(e164: u64) -> String {
    format!("+{e164}")
}

/// A log-safe rendering that keeps the country code and last two digits only.
pub fn mask(e164: u64) -> String {
    let s = e164.to_string();
    let keep_tail = 2.min(s.len());
    let head = &s[..2.min(s.len() - keep_tail)];
    format!("+{head}***{}", &s[s.len() - keep_tail..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_and_international_forms_agree() {
        let cn = RegionCode(*b"CN");
        let a = parse("131 2307 9337", cn).expect("valid");
        let b = parse("+86 131 2307 9337", RegionCode(*b"US")).expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.e164, 8613123079337);
        assert_eq!(a.line_type, LineType::Mobile);
        assert_eq!(a.region.as_str(), "CN");
    }

    #[test]
    fn landline_and_garbage_are_told_apart() {
        let cn = RegionCode(*b"CN");
        assert_eq!(
            parse("010 1252 0004", cn).map(|p| p.line_type),
            Ok(LineType::FixedLine)
        );
        assert_eq!(parse("+86131234365495", cn), Err(PhoneError::Invalid));
        assert_eq!(parse("hello", cn), Err(PhoneError::NotANumber));
    }

    #[test]
    fn mask_hides_the_subscriber_number() {
        let m = mask(8613123079337);
        assert!(!m.contains("3123079"), "{m}");
        assert!(m.ends_with("37"));
    }
}

#[cfg(test)]
pub(crate) mod vectors_test;
