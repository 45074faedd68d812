//! Google's OAuth 2.0 for service accounts: the key file, the RS256-signed assertion
//! (RFC 7523 JWT bearer grant) and the token endpoint's answer. Pure functions; the exchange
//! itself is done by [`super::FcmProvider`].

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::config::Secret;

/// The scope FCM's send API requires.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The grant type of a signed assertion.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google accepts assertions of at most an hour.
const ASSERTION_LIFETIME_SECS: i64 = 3600;

/// The parts of a service account's JSON key file herald uses.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    pub token_uri: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    private_key: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

/// A service account ready to sign: its key parsed once.
pub struct Signer {
    pub account: ServiceAccount,
    key: EncodingKey,
}

impl ServiceAccount {
    /// Reads and checks a key file: its fields, and that its private key is an RSA key.
    pub fn read(path: &str) -> Result<Signer, String> {
        if path.trim().is_empty() {
            return Err("required".into());
        }
        let bytes = std::fs::read(path).map_err(|e| format!("{path:?}: cannot read it: {e}"))?;
        ServiceAccount::parse(&bytes).map_err(|e| format!("{path:?}: {e}"))
    }

    /// Parses a key file's JSON.
    pub fn parse(json: &[u8]) -> Result<Signer, String> {
        let account: ServiceAccount = serde_json::from_slice(json)
            .map_err(|e| format!("not a service account key file: {e}"))?;
        reqwest::Url::parse(&account.token_uri)
            .map_err(|e| format!("token_uri is not a URL: {e}"))?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| format!("private_key is not an RSA key in PEM: {e}"))?;
        Ok(Signer { account, key })
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

impl Signer {
    /// The signed assertion exchanged for an access token at `token_uri`, issued at `now`
    /// (Unix seconds).
    pub fn assertion(&self, now: i64) -> Result<Secret, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.account.private_key_id.clone();
        let claims = Claims {
            iss: &self.account.client_email,
            scope: SCOPE,
            aud: &self.account.token_uri,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(Secret::new)
            .map_err(|e| format!("cannot sign the assertion: {e}"))
    }
}

/// The token request's form body.
pub fn token_form(assertion: &Secret) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", GRANT_TYPE)
        .append_pair("assertion", &String::from_utf8_lossy(assertion.expose()))
        .finish()
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

/// The access token and its lifetime from the token endpoint's 200 answer.
pub fn parse_token(body: &[u8]) -> Result<(String, Duration), String> {
    let t: TokenAnswer =
        serde_json::from_slice(body).map_err(|_| "unreadable token answer".to_string())?;
    if t.access_token.is_empty() {
        return Err("empty access token".into());
    }
    Ok((t.access_token, Duration::from_secs(t.expires_in)))
}

/// A token endpoint's error answer in a few words: OAuth's `error` code, never its text.
pub fn token_error(status: u16, body: &[u8]) -> String {
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(super::super::cloud::error_code));
    match code {
        Some(code) => format!("oauth: http {status} {code}"),
        None => format!("oauth: http {status}"),
    }
}
