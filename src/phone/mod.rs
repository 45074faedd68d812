//! Phone numbers: parsed and validated once with real numbering-plan metadata (a libphonenumber
//! port), then carried as E.164 integers so that every later check is a comparison.
//!
//! INTERFACE STUB: the implementation lands with the phone work; signatures are the contract.

use std::fmt;

/// An ISO 3166-1 alpha-2 region code such as `CN` or `US`, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RegionCode(pub [u8; 2]);

impl RegionCode {
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
pub fn parse(_input: &str, _default_region: RegionCode) -> Result<PhoneInfo, PhoneError> {
    Err(PhoneError::NotANumber)
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
