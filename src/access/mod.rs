//! Who may call what: tenants, the scopes an API key carries, and the keys themselves.
//!
//! Every `/v1` request is made by a [`Principal`]: the tenant its key belongs to and the
//! scopes that key was given. Routes name the one scope they need ([`Scope`]); objects a
//! tenant owns (jobs, their reports and ledger entries, webhooks, idempotency keys) are
//! invisible to every other tenant, which sees them as not found. Keys configured at start
//! (`auth.api_keys`, `HERALD_API_KEYS`) are administrators of the default tenant, so a
//! single-tenant installation behaves as if tenants did not exist. Keys made through
//! `/v1/keys` are stored hashed ([`key`]) in the state store, so every instance of a fleet
//! sees a new or revoked key at once, without a restart.

pub mod key;
mod keys;
mod scope;
mod tenant;

pub use key::{KeyError, StoredKey, KEY_FORMAT_VERSION};
pub use keys::{ApiKeys, KeyRequestError};
pub use scope::{Scope, Scopes};
pub use tenant::TenantId;

/// The caller of a request, as its API key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    pub scopes: Scopes,
    /// The stored key's id; `None` for a key from the configuration.
    pub key_id: Option<String>,
}

impl Principal {
    /// Whether the caller may use a route that needs `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.allows(scope)
    }

    /// Whether the caller may see an object owned by `tenant`.
    pub fn owns(&self, tenant: &str) -> bool {
        self.tenant.as_str() == tenant
    }
}
