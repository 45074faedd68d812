//! The scopes an API key can carry. `admin` includes every other one.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One permission a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    JobsWrite,
    JobsRead,
    ReportsRead,
    LedgerRead,
    SnapshotWrite,
    SuppressionsWrite,
    WebhooksWrite,
    /// Manages API keys; includes every other scope.
    Admin,
}

impl Scope {
    /// Every scope, in documentation order.
    pub const ALL: [Scope; 8] = [
        Scope::JobsWrite,
        Scope::JobsRead,
        Scope::ReportsRead,
        Scope::LedgerRead,
        Scope::SnapshotWrite,
        Scope::SuppressionsWrite,
        Scope::WebhooksWrite,
        Scope::Admin,
    ];

    /// The name keys and the API spec use.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::JobsWrite => "jobs:write",
            Scope::JobsRead => "jobs:read",
            Scope::ReportsRead => "reports:read",
            Scope::LedgerRead => "ledger:read",
            Scope::SnapshotWrite => "snapshot:write",
            Scope::SuppressionsWrite => "suppressions:write",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::Admin => "admin",
        }
    }

    /// The scope of a name, exactly as [`Scope::as_str`] spells it.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes; serialized as a list of their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u16);

impl Scopes {
    /// Every scope (what `admin` grants).
    pub const ADMIN: Scopes = Scopes(1 << (Scope::Admin as u16));

    /// The set of the given scopes.
    pub fn of(scopes: impl IntoIterator<Item = Scope>) -> Scopes {
        Scopes(scopes.into_iter().fold(0, |acc, s| acc | s.bit()))
    }

    /// Whether a route needing `scope` is allowed: the scope itself, or `admin`.
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// Whether every scope of `other` is allowed by this set (a key may only hand out what
    /// it has).
    pub fn covers(self, other: Scopes) -> bool {
        other.iter().all(|s| self.allows(s))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in the set, in documentation order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .into_iter()
            .filter(move |s| self.0 & s.bit() != 0)
    }

    /// Parses a list of names, answering the first unknown one.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Scopes, String> {
        let mut set = Scopes::default();
        for name in names {
            let scope = Scope::parse(name).ok_or_else(|| name.to_string())?;
            set.0 |= scope.bit();
        }
        Ok(set)
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Scope::as_str))
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scopes, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        Scopes::parse(names.iter().map(String::as_str))
            .map_err(|n| serde::de::Error::custom(format!("unknown scope {n:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_allows_everything_and_others_only_themselves() {
        for s in Scope::ALL {
            assert!(Scopes::ADMIN.allows(s));
        }
        let read = Scopes::of([Scope::JobsRead, Scope::ReportsRead]);
        assert!(read.allows(Scope::JobsRead));
        assert!(!read.allows(Scope::JobsWrite));
        assert!(!read.allows(Scope::Admin));
        assert!(Scopes::ADMIN.covers(read));
        assert!(!read.covers(Scopes::of([Scope::LedgerRead])));
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_named() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        let set: Scopes = serde_json::from_str(r#"["ledger:read","jobs:read"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"["jobs:read","ledger:read"]"#
        );
        let err = serde_json::from_str::<Scopes>(r#"["jobs:delete"]"#).unwrap_err();
        assert!(err.to_string().contains("jobs:delete"), "{err}");
    }
}
