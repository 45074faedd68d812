//! Authenticating a presented token, and making, listing and revoking stored keys.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::key::{digest_hex, token_id};
use super::{Principal, Scopes, StoredKey, TenantId};
use crate::constant_time;
use crate::store::{StateStore, StoreError};

/// The keys herald accepts: those of the configuration (default tenant, `admin`), compared
/// by digest, and those in the state store, looked up by id on every request so a revocation
/// takes effect at once on every instance.
pub struct ApiKeys {
    /// SHA-256 (hex) of each configured key.
    configured: Vec<String>,
    store: Arc<dyn StateStore>,
}

/// Why a key could not be made or revoked.
#[derive(Debug, thiserror::Error)]
pub enum KeyRequestError {
    /// The caller may not act for that tenant (or see that key): answered as not found.
    #[error("no such key")]
    NotFound,
    /// The caller asked for a scope it does not have itself.
    #[error("a key cannot grant the scope {0}, which it does not have")]
    ScopeNotHeld(&'static str),
    /// Only the default tenant's administrators make keys for other tenants.
    #[error("only an administrator of the default tenant makes keys for another tenant")]
    OtherTenant,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiKeys {
    /// The keys of the configuration plus those `store` holds.
    pub fn new(configured: &[String], store: Arc<dyn StateStore>) -> ApiKeys {
        ApiKeys {
            configured: configured.iter().map(|k| digest_hex(k)).collect(),
            store,
        }
    }

    /// Who `token` belongs to, or `None` for a token herald does not accept.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        if token.is_empty() {
            return Ok(None);
        }
        if let Some(id) = token_id(token) {
            if let Some(key) = self.store.api_key(id).await? {
                if key.accepts(token) {
                    return Ok(Some(Principal {
                        tenant: key.tenant,
                        scopes: key.scopes,
                        key_id: Some(key.id),
                    }));
                }
            }
        }
        let digest = digest_hex(token);
        let configured = self.configured.iter().fold(false, |acc, k| {
            acc | constant_time::eq(k.as_bytes(), digest.as_bytes())
        });
        Ok(configured.then(|| Principal {
            tenant: TenantId::default_tenant(),
            scopes: Scopes::ADMIN,
            key_id: None,
        }))
    }

    /// Makes a key for `tenant` (the caller's own when `None`) with `scopes`, which the
    /// caller must hold itself. Answers its record and its token, shown this once.
    pub async fn create(
        &self,
        by: &Principal,
        tenant: Option<TenantId>,
        scopes: Scopes,
        name: String,
        now: DateTime<Utc>,
    ) -> Result<(StoredKey, String), KeyRequestError> {
        let tenant = tenant.unwrap_or_else(|| by.tenant.clone());
        if tenant != by.tenant && !by.tenant.is_default() {
            return Err(KeyRequestError::OtherTenant);
        }
        if let Some(missing) = scopes.iter().find(|s| !by.allows(*s)) {
            return Err(KeyRequestError::ScopeNotHeld(missing.as_str()));
        }
        let (key, token) = StoredKey::generate(tenant, scopes, name, now);
        self.store.save_api_key(&key).await?;
        Ok((key, token))
    }

    /// The keys the caller may see: its tenant's, or every one for the default tenant's
    /// administrators. Newest first.
    pub async fn list(&self, by: &Principal) -> Result<Vec<StoredKey>, StoreError> {
        let mut keys: Vec<StoredKey> = self
            .store
            .api_keys()
            .await?
            .into_iter()
            .filter(|k| by.tenant.is_default() || k.tenant == by.tenant)
            .collect();
        keys.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    /// Revokes a key the caller may see; revoking twice keeps the first time.
    pub async fn revoke(
        &self,
        by: &Principal,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<StoredKey, KeyRequestError> {
        let mut key = self
            .store
            .api_key(id)
            .await?
            .filter(|k| by.tenant.is_default() || k.tenant == by.tenant)
            .ok_or(KeyRequestError::NotFound)?;
        if key.revoked_at.is_none() {
            key.revoked_at = Some(now);
            self.store.save_api_key(&key).await?;
        }
        Ok(key)
    }
}
