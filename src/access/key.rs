//! An API key made through `/v1/keys`: the token handed out once, and the record kept of it.
//!
//! A token reads `hk_<id>_<secret>`: the id (16 hex digits) finds the record in one lookup,
//! and the record keeps only the SHA-256 of the whole token. A token carries 256 random bits,
//! so a plain fast hash is enough: nothing short of the token itself matches its digest, and
//! a stolen copy of the store hands out no usable key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Scopes, TenantId};
use crate::durable::format::{self, FormatError};

/// Format version of a stored key.
pub const KEY_FORMAT_VERSION: u8 = 1;

/// The record of a key, as stored: never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    pub id: String,
    pub tenant: TenantId,
    pub scopes: Scopes,
    /// A label for people ("finance auditor").
    pub name: String,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    /// Set when revoked; the key then authenticates nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Why a stored key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("stored API key: {0}")]
    Json(#[from] serde_json::Error),
}

impl StoredKey {
    /// A new key for `tenant` with `scopes`: its record and the token, which is shown once.
    pub fn generate(
        tenant: TenantId,
        scopes: Scopes,
        name: String,
        now: DateTime<Utc>,
    ) -> (StoredKey, String) {
        let mut rng = rand::thread_rng();
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut id);
        rng.fill_bytes(&mut secret);
        let id = hex::encode(id);
        let token = format!("hk_{id}_{}", URL_SAFE_NO_PAD.encode(secret));
        let key = StoredKey {
            sha256: digest_hex(&token),
            id,
            tenant,
            scopes,
            name,
            created_at: now,
            revoked_at: None,
        };
        (key, token)
    }

    /// Whether `token` is this key's and the key is not revoked (compared in constant time).
    pub fn accepts(&self, token: &str) -> bool {
        self.revoked_at.is_none()
            && crate::constant_time::eq(digest_hex(token).as_bytes(), self.sha256.as_bytes())
    }

    /// The stored form: the version byte, then JSON.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain strings, a list of names and times cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        format::versioned(KEY_FORMAT_VERSION, &json)
    }

    /// Reads a stored form.
    pub fn decode(stored: &[u8]) -> Result<StoredKey, KeyError> {
        let json = format::check("API key", KEY_FORMAT_VERSION, stored)?;
        Ok(serde_json::from_slice(json)?)
    }
}

/// The id part of a token shaped like one of ours, to look its record up.
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("hk_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some(id)
}

/// SHA-256 of a token, hex (configured keys are compared through it too).
pub fn digest_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Scope;

    #[test]
    fn a_generated_token_is_accepted_by_its_record_only_until_revoked() {
        let now = Utc::now();
        let (mut key, token) = StoredKey::generate(
            TenantId::parse("acme").unwrap(),
            Scopes::of([Scope::JobsRead]),
            "ops".into(),
            now,
        );
        assert_eq!(token_id(&token), Some(key.id.as_str()));
        assert!(!key
            .encode()
            .windows(token.len())
            .any(|w| w == token.as_bytes()));
        assert!(key.accepts(&token));
        assert!(!key.accepts(&format!("{token}x")));
        let (_, other) = StoredKey::generate(TenantId::default(), Scopes::ADMIN, "x".into(), now);
        assert!(!key.accepts(&other));
        key.revoked_at = Some(now);
        assert!(!key.accepts(&token));
    }

    #[test]
    fn the_stored_form_round_trips_and_refuses_an_unknown_version() {
        let (key, _) = StoredKey::generate(
            TenantId::default(),
            Scopes::of([Scope::LedgerRead]),
            "finance".into(),
            Utc::now(),
        );
        let stored = key.encode();
        assert_eq!(stored[0], KEY_FORMAT_VERSION);
        assert_eq!(StoredKey::decode(&stored).unwrap(), key);
        let mut future = stored.clone();
        future[0] = KEY_FORMAT_VERSION + 1;
        assert!(StoredKey::decode(&future).is_err());
    }

    #[test]
    fn only_tokens_of_our_shape_have_an_id() {
        assert_eq!(
            token_id("hk_0123456789abcdef_s3cret"),
            Some("0123456789abcdef")
        );
        for t in [
            "dev-key-change-me",
            "hk_short_x",
            "hk_0123456789abcdef_",
            "hk_0123456789abcdeg_x",
        ] {
            assert_eq!(token_id(t), None, "{t}");
        }
    }
}
