//! Limits on each tenant's sends over all its jobs, channels and providers, so one tenant's
//! promotion leaves room on shared providers for the others. A message takes its parts from
//! its tenant's limiter as well as from its channel's and its provider's.

use std::sync::Arc;

use dashmap::DashMap;

use super::PartsLimiter;
use crate::access::TenantId;
use crate::config::{limits_of, StateConfig, TenantConfig};

/// Every tenant's limiter, made the first time the tenant sends (tenants come and go with
/// their keys, without a restart).
#[derive(Default)]
pub struct TenantLimits {
    state: StateConfig,
    tenants: Vec<TenantConfig>,
    /// `None`: the tenant has no rate.
    limiters: DashMap<TenantId, Option<Arc<PartsLimiter>>>,
}

impl TenantLimits {
    /// The configured `[[tenants]]` rates under the state backend (shared in Redis like the
    /// providers' when instances share state).
    pub fn for_state(state: &StateConfig, tenants: &[TenantConfig]) -> TenantLimits {
        TenantLimits {
            state: state.clone(),
            tenants: tenants.to_vec(),
            limiters: DashMap::new(),
        }
    }

    /// The limiter of `tenant`, if it has a rate.
    pub fn get(&self, tenant: &TenantId) -> Option<Arc<PartsLimiter>> {
        if let Some(known) = self.limiters.get(tenant) {
            return known.clone();
        }
        let made = limits_of(&self.tenants, tenant)
            .filter(|t| t.parts_per_second > 0)
            .map(|t| Arc::new(self.limiter(tenant, t)));
        self.limiters.entry(tenant.clone()).or_insert(made).clone()
    }

    fn limiter(&self, tenant: &TenantId, t: &TenantConfig) -> PartsLimiter {
        let name = format!("tenant:{tenant}");
        PartsLimiter::for_state(&self.state, &name, t.parts_per_second, t.burst_parts)
            .unwrap_or_else(|e| {
                // The Redis options were checked at start; should they fail here the tenant
                // is still held to its rate, by this instance alone.
                tracing::warn!(tenant = %tenant, error = %e, "tenant rate limit held locally");
                PartsLimiter::new(t.parts_per_second, t.burst_parts)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, rate: u32) -> TenantConfig {
        TenantConfig {
            id: id.into(),
            parts_per_second: rate,
            burst_parts: 1,
            monthly_recipients: 0,
        }
    }

    #[test]
    fn each_tenant_has_a_limiter_of_its_own_under_the_any_entry() {
        let limits =
            TenantLimits::for_state(&StateConfig::default(), &[entry("*", 10), entry("b", 0)]);
        let a = TenantId::parse("a").expect("name");
        let c = TenantId::parse("c").expect("name");
        let (la, lc) = (limits.get(&a).expect("a"), limits.get(&c).expect("c"));
        assert_eq!(la.rate(), 10);
        assert!(
            !Arc::ptr_eq(&la, &lc),
            "tenants under \"*\" are limited apart"
        );
        assert!(Arc::ptr_eq(&la, &limits.get(&a).expect("a again")));
        assert!(limits.get(&TenantId::parse("b").expect("name")).is_none());
        assert!(limits.get(&TenantId::default_tenant()).is_none());
    }
}
