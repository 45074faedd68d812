//! Tenant names: what every owned object is labelled with.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A tenant: 1 to 63 characters of lower-case ASCII letters, digits, `-` and `_`, starting
/// with a letter or digit (it appears in key prefixes and log lines, so it stays plain).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// The tenant of configured keys and of everything made before tenants existed.
    pub const DEFAULT: &'static str = "default";

    /// The default tenant.
    pub fn default_tenant() -> TenantId {
        TenantId(Arc::from(Self::DEFAULT))
    }

    /// A tenant name, or why it is not one.
    pub fn parse(name: &str) -> Result<TenantId, &'static str> {
        let ok_first = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let ok_rest = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !(1..=63).contains(&name.len()) || !ok_first || !ok_rest {
            return Err(
                "a tenant is 1 to 63 of a-z, 0-9, '-' and '_', starting with a letter or digit",
            );
        }
        Ok(TenantId(Arc::from(name)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the default tenant.
    pub fn is_default(&self) -> bool {
        &*self.0 == Self::DEFAULT
    }
}

impl Default for TenantId {
    fn default() -> TenantId {
        TenantId::default_tenant()
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for TenantId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TenantId, D::Error> {
        let name = String::deserialize(d)?;
        TenantId::parse(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_others_are_refused() {
        for ok in ["default", "acme", "a", "shop-2_eu"] {
            assert_eq!(TenantId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "Acme", "-x", "a b", "a:b", "ü", &"x".repeat(64)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
