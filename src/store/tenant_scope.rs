//! How the embedded and in-memory backends keep one tenant's suppressions and consent apart
//! from another's in the same tables: the default tenant's entries are stored exactly as
//! they were before tenants had their own (no migration), and another tenant's carry its
//! name and a separator as a key prefix. The separator (U+001F) is not allowed in a tenant
//! name, so no tenant's prefix is another's. A phone number, an integer key for the default
//! tenant, is stored for another tenant as a prefixed `phone:<e164>` entry among the
//! addresses. (The Redis backend puts the tenant in a key segment instead: `redis/keys.rs`.)

use std::borrow::Cow;

use super::{ConsentChange, SuppressionKey};
use crate::access::TenantId;

/// Between a tenant's name and its key.
const SEP: char = '\u{1f}';

/// `key` as stored for `tenant`.
pub(crate) fn key<'a>(tenant: &TenantId, key: &'a str) -> Cow<'a, str> {
    match tenant.is_default() {
        true => Cow::Borrowed(key),
        false => Cow::Owned(format!("{tenant}{SEP}{key}")),
    }
}

/// The entry a phone number's suppression is stored under for a tenant other than the
/// default one (whose numbers stay integer keys).
pub(crate) fn phone_entry(tenant: &TenantId, e164: u64) -> Option<String> {
    (!tenant.is_default()).then(|| format!("{tenant}{SEP}phone:{e164}"))
}

/// A suppression entry as stored for `tenant`.
pub(crate) fn suppression(tenant: &TenantId, k: &SuppressionKey) -> SuppressionKey {
    match (k, phone_entry(tenant, 0)) {
        (_, None) => k.clone(),
        (SuppressionKey::Phone(p), Some(_)) => {
            SuppressionKey::Address(phone_entry(tenant, *p).unwrap_or_default())
        }
        (SuppressionKey::ContactId(c), Some(_)) => {
            SuppressionKey::ContactId(key(tenant, c).into_owned())
        }
        (SuppressionKey::Address(a), Some(_)) => {
            SuppressionKey::Address(key(tenant, a).into_owned())
        }
    }
}

/// A consent change as stored for `tenant` (its contact id prefixed).
pub(crate) fn change_in(tenant: &TenantId, c: &ConsentChange) -> ConsentChange {
    ConsentChange {
        contact_id: key(tenant, &c.contact_id).into_owned(),
        ..c.clone()
    }
}

/// The stored change as `tenant` sees it, if it is `tenant`'s.
pub(crate) fn change_out(tenant: &TenantId, c: &ConsentChange) -> Option<ConsentChange> {
    let id = owned_by(tenant, &c.contact_id)?;
    Some(ConsentChange {
        contact_id: id.to_string(),
        ..c.clone()
    })
}

/// The key inside a stored one, if `tenant` stored it.
fn owned_by<'a>(tenant: &TenantId, stored: &'a str) -> Option<&'a str> {
    match stored.split_once(SEP) {
        Some((name, rest)) if !tenant.is_default() => (name == tenant.as_str()).then_some(rest),
        // A default-tenant key holding the separator is still the default tenant's unless
        // what precedes it names a tenant.
        Some((name, _)) => TenantId::parse(name).is_err().then_some(stored),
        None => tenant.is_default().then_some(stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_tenant_keeps_its_keys_and_others_are_apart() {
        let (default, acme) = (TenantId::default_tenant(), TenantId::parse("acme").unwrap());
        assert_eq!(key(&default, "c1"), "c1");
        assert_eq!(
            suppression(&default, &SuppressionKey::Phone(86131)),
            SuppressionKey::Phone(86131)
        );
        assert_eq!(
            suppression(&acme, &SuppressionKey::Phone(86131)),
            SuppressionKey::Address("acme\u{1f}phone:86131".into())
        );
        let stored = key(&acme, "c1");
        assert_eq!(owned_by(&acme, &stored), Some("c1"));
        assert_eq!(owned_by(&default, &stored), None);
        assert_eq!(owned_by(&acme, "c1"), None);
        assert_eq!(owned_by(&TenantId::parse("acm").unwrap(), &stored), None);
    }
}
