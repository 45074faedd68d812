//! Money as integer micros of a currency: never floating point.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount in millionths of the currency's major unit (1 CNY = 1,000,000 micros).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct Micros(pub i64);

impl Micros {
    /// `units × unit price`, saturating rather than wrapping on absurd inputs.
    pub fn times(self, units: u32) -> Micros {
        Micros(self.0.saturating_mul(units as i64))
    }
}

/// An ISO 4217 currency code, stored inline (three ASCII uppercase letters).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a three-letter code; case-insensitive, stored uppercase.
    pub fn parse(s: &str) -> Option<Currency> {
        let b = s.as_bytes();
        if b.len() != 3 || !b.iter().all(|c| c.is_ascii_alphabetic()) {
            return None;
        }
        Some(Currency([
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
            b[2].to_ascii_uppercase(),
        ]))
    }

    /// The code's three bytes, as binary forms store it.
    pub fn code(&self) -> [u8; 3] {
        self.0
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Invariant: only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).ok_or_else(|| {
            serde::de::Error::custom("currency must be a three-letter ISO 4217 code")
        })
    }
}

/// In the OpenAPI document: three letters (read in any case, written in upper case).
impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[A-Za-z]{3}$"))
            .description(Some("An ISO 4217 currency code"))
            .into()
    }
}

impl utoipa::ToSchema for Currency {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_round_trips_uppercase() {
        assert_eq!(
            Currency::parse("cny").map(|c| c.to_string()),
            Some("CNY".into())
        );
        assert!(Currency::parse("CN").is_none());
        assert!(Currency::parse("C1Y").is_none());
    }

    #[test]
    fn cost_multiplies_exactly() {
        assert_eq!(Micros(45_000).times(3), Micros(135_000));
    }
}
