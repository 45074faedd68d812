//! APNs token-based authentication: the `.p8` signing key and the ES256 provider token
//! (header `alg` and `kid`, claims `iss` = Team ID and `iat`). Pure functions; the adapter
//! caches the token for `token_refresh_minutes`.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// A `.p8` key, parsed once.
pub struct SigningKey {
    key: EncodingKey,
}

impl SigningKey {
    /// Reads and parses a `.p8` file (PKCS#8 PEM of a P-256 key).
    pub fn read(path: &str) -> Result<SigningKey, String> {
        if path.trim().is_empty() {
            return Err("required".into());
        }
        let pem = std::fs::read(path).map_err(|e| format!("{path:?}: cannot read it: {e}"))?;
        SigningKey::parse(&pem).map_err(|e| format!("{path:?}: {e}"))
    }

    /// Parses the PEM text of a `.p8` key.
    pub fn parse(pem: &[u8]) -> Result<SigningKey, String> {
        EncodingKey::from_ec_pem(pem)
            .map(|key| SigningKey { key })
            .map_err(|e| format!("not a P-256 key in PKCS#8 PEM: {e}"))
    }

    /// The provider token issued at `now` (Unix seconds).
    pub fn provider_token(&self, team_id: &str, key_id: &str, now: i64) -> Result<String, String> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            iat: i64,
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key_id.to_string());
        // Apple's example header is exactly {"alg", "kid"}.
        header.typ = None;
        jsonwebtoken::encode(
            &header,
            &Claims {
                iss: team_id,
                iat: now,
            },
            &self.key,
        )
        .map_err(|e| format!("cannot sign the provider token: {e}"))
    }
}
