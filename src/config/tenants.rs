//! Limits per tenant: how fast a tenant's messages go out and how many recipients its jobs
//! may address in a month, so one customer's promotion cannot take a shared installation's
//! whole provider capacity or run past what it pays for.

use serde::Deserialize;

use super::Config;
use crate::access::TenantId;

/// The entry that applies to every tenant without one of its own (the default tenant
/// excepted: it is the installation's, limited only by an entry naming it).
pub const ANY_TENANT: &str = "*";

/// One `[[tenants]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// A tenant's name, or `"*"` for every other tenant but `default`, each counted apart.
    pub id: String,
    /// Message parts per second over all the tenant's jobs and channels; 0 is unlimited.
    #[serde(default)]
    pub parts_per_second: u32,
    #[serde(default = "one")]
    pub burst_parts: u32,
    /// Recipients the tenant's jobs may address per calendar month (UTC), counted when a job
    /// is accepted; 0 is unlimited.
    #[serde(default)]
    pub monthly_recipients: u64,
}

fn one() -> u32 {
    1
}

impl Config {
    /// The limits of `tenant` (see [`limits_of`]).
    pub fn tenant_limits(&self, tenant: &TenantId) -> Option<&TenantConfig> {
        limits_of(&self.tenants, tenant)
    }
}

/// The entry of `tenant` among `tenants`: its own, else (for tenants other than `default`)
/// the `"*"` entry.
pub fn limits_of<'a>(tenants: &'a [TenantConfig], tenant: &TenantId) -> Option<&'a TenantConfig> {
    tenants
        .iter()
        .find(|t| t.id == tenant.as_str())
        .or_else(|| match tenant.is_default() {
            true => None,
            false => tenants.iter().find(|t| t.id == ANY_TENANT),
        })
}

/// The checks of `[[tenants]]`.
pub(super) fn validate(c: &Config, errs: &mut Vec<String>) {
    for (i, t) in c.tenants.iter().enumerate() {
        let at = format!("tenants[{i}]");
        if t.id != ANY_TENANT {
            if let Err(why) = TenantId::parse(&t.id) {
                errs.push(format!("{at}.id: {why}, or \"*\""));
            }
        }
        if c.tenants[..i].iter().any(|o| o.id == t.id) {
            errs.push(format!("{at}.id: {:?} has an entry already", t.id));
        }
        if t.parts_per_second > 0 && t.burst_parts == 0 {
            errs.push(format!("{at}.burst_parts: at least 1 with a rate"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped configuration with `tenants` added.
    fn config(tenants: &str) -> Result<Config, Vec<String>> {
        let toml = format!("{}\n{tenants}", crate::config::DEFAULT_TOML);
        let c: Config = toml::from_str(&toml).map_err(|e| vec![e.to_string()])?;
        c.validate().map(|()| c)
    }

    #[test]
    fn a_tenant_gets_its_own_entry_else_the_any_entry_and_default_only_its_own() {
        let c = config(
            r#"
            [[tenants]]
            id = "*"
            monthly_recipients = 10
            [[tenants]]
            id = "acme"
            parts_per_second = 50
            burst_parts = 5
            "#,
        )
        .expect("valid");
        let acme = TenantId::parse("acme").expect("name");
        let other = TenantId::parse("globex").expect("name");
        assert_eq!(c.tenant_limits(&acme).map(|t| t.parts_per_second), Some(50));
        assert_eq!(
            c.tenant_limits(&acme).map(|t| t.monthly_recipients),
            Some(0)
        );
        assert_eq!(
            c.tenant_limits(&other).map(|t| t.monthly_recipients),
            Some(10)
        );
        assert_eq!(c.tenant_limits(&TenantId::default_tenant()), None);
    }

    #[test]
    fn bad_entries_are_named() {
        let errs = config(
            r#"
            [[tenants]]
            id = "Acme!"
            [[tenants]]
            id = "b"
            parts_per_second = 5
            burst_parts = 0
            [[tenants]]
            id = "b"
            "#,
        )
        .expect_err("invalid");
        let all = errs.join("\n");
        assert!(all.contains("tenants[0].id"), "{all}");
        assert!(all.contains("tenants[1].burst_parts"), "{all}");
        assert!(
            all.contains("tenants[2].id: \"b\" has an entry already"),
            "{all}"
        );
    }
}
