//! Who may read the report pages, and the signed cookie that says a reader signed in.
//!
//! The cookie never holds the API key. It holds `1.<expiry>.<tenant>.<key>.<nonce>.<mac>`:
//! the form version, the Unix second it lapses, the reader's tenant, the key that signed in
//! (`k<id>` for a key made through `/v1/keys`, `c<tag>` for a configured one: an HMAC of the
//! key), a random nonce, and an HMAC-SHA256 over the rest with the `[ui]` secret. A cookie is
//! valid while its MAC checks, it has not lapsed, and its key still exists, is not revoked
//! and may read reports; the pages then show that tenant's jobs only.
//!
//! Signing out removes the cookie and remembers its nonce until it would have lapsed, so a
//! copy of a signed-out cookie is refused too (by the instance that signed it out).
//!
//! Forms are CSRF-safe two ways: the cookies are `SameSite=Strict`, and every POST carries a
//! token the server checks. The sign-in form, sent before anyone is signed in, uses a double
//! submit: a random value in an HttpOnly cookie and the same value in the form. The sign-out
//! form carries an HMAC of the sign-in's nonce, which only this server can compute.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;

use crate::access::{Principal, Scope, Scopes, TenantId};
use crate::app::AppState;
use crate::config::UiConfig;
use crate::constant_time;

/// The cookie holding the signed sign-in.
pub const SIGN_IN_COOKIE: &str = "herald_ui";
/// The cookie holding the sign-in form's double-submit token.
pub const FORM_COOKIE: &str = "herald_form";
/// The form version of the signed cookie.
const FORM_VERSION: &str = "1";

/// Who a key signs in as, if it may read reports: any key with `reports:read` (or `admin`),
/// configured or made through `/v1/keys`. The one place that decides it.
pub async fn reader_of(state: &AppState, key: &str) -> Option<Principal> {
    let principal = state.keys.authenticate(key).await.ok()??;
    principal.allows(Scope::ReportsRead).then_some(principal)
}

/// Signs and checks sign-in cookies and form tokens with the `[ui]` secret.
pub struct Access {
    secret: Vec<u8>,
    lifetime: Duration,
    secure: bool,
    /// Nonces of signed-out cookies, with when they would have lapsed.
    signed_out: Mutex<HashMap<String, DateTime<Utc>>>,
}

/// Signed-out nonces remembered at most; past it the oldest lapse first.
const MAX_SIGNED_OUT: usize = 100_000;

/// A valid sign-in, as read from its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    nonce: String,
    /// When it lapses.
    pub expires: DateTime<Utc>,
    /// The reader: the key's tenant and scopes, as they are now.
    pub principal: Principal,
}

impl Access {
    /// Reads `[ui]`; without a configured secret, a random one for this process.
    pub fn new(config: &UiConfig) -> Access {
        let secret = match &config.secret {
            Some(s) => s.expose().to_vec(),
            None => {
                tracing::warn!(
                    env = %config.secret_env,
                    "no secret for the report pages' sign-in cookies; readers sign in again after a restart"
                );
                rand::random::<[u8; 32]>().to_vec()
            }
        };
        Access {
            secret,
            lifetime: Duration::from_secs(config.sign_in_minutes.saturating_mul(60)),
            secure: config.secure_cookies,
            signed_out: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self, purpose: &str, data: &str) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(data.as_bytes());
        mac
    }

    fn key_tag(&self, key: &str) -> String {
        hex::encode(&self.mac("key", key).finalize().into_bytes()[..8])
    }

    /// A cookie value for `reader` (from [`reader_of`] with `key`), valid from `now` for the
    /// configured lifetime. It names the reader's tenant and its key: a stored key by id, a
    /// configured one by a tag.
    pub fn sign_in(&self, reader: &Principal, key: &str, now: DateTime<Utc>) -> String {
        let expires = now
            .timestamp()
            .saturating_add(self.lifetime.as_secs() as i64);
        let who = match &reader.key_id {
            Some(id) => format!("k{id}"),
            None => format!("c{}", self.key_tag(key)),
        };
        let body = format!(
            "{FORM_VERSION}.{expires}.{}.{who}.{}",
            reader.tenant,
            hex::encode(rand::random::<[u8; 16]>())
        );
        let mac = hex::encode(self.mac("sign-in", &body).finalize().into_bytes());
        format!("{body}.{mac}")
    }

    /// The sign-in `value` stands for, if it is valid at `now` and its key may still read
    /// reports (a revoked or removed key signs its readers out).
    pub async fn check(
        &self,
        state: &AppState,
        value: &str,
        now: DateTime<Utc>,
    ) -> Option<SignedIn> {
        let (body, mac) = value.rsplit_once('.')?;
        let mac = hex::decode(mac).ok()?;
        self.mac("sign-in", body).verify_slice(&mac).ok()?;
        let mut parts = body.split('.');
        let (version, expires, tenant, who, nonce) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if version != FORM_VERSION || parts.next().is_some() {
            return None;
        }
        let expires = DateTime::from_timestamp(expires.parse().ok()?, 0)?;
        if expires <= now || self.signed_out.lock().contains_key(nonce) {
            return None;
        }
        let principal = match who.split_at_checked(1)? {
            ("k", id) => {
                let key = state.store.api_key(id).await.ok()??;
                if key.revoked_at.is_some() || key.tenant.as_str() != tenant {
                    return None;
                }
                Principal {
                    tenant: key.tenant,
                    scopes: key.scopes,
                    key_id: Some(key.id),
                }
            }
            ("c", tag) => {
                let configured = state
                    .config
                    .config
                    .auth
                    .api_keys
                    .iter()
                    .any(|k| constant_time::eq(self.key_tag(k).as_bytes(), tag.as_bytes()));
                (configured && tenant == TenantId::DEFAULT).then(|| Principal {
                    tenant: TenantId::default_tenant(),
                    scopes: Scopes::ADMIN,
                    key_id: None,
                })?
            }
            _ => return None,
        };
        principal.allows(Scope::ReportsRead).then(|| SignedIn {
            nonce: nonce.to_string(),
            expires,
            principal,
        })
    }

    /// Refuses `signed_in`'s cookie from now on, even if a copy of it is presented.
    pub fn sign_out(&self, signed_in: &SignedIn, now: DateTime<Utc>) {
        let mut out = self.signed_out.lock();
        out.retain(|_, expires| *expires > now);
        if out.len() >= MAX_SIGNED_OUT {
            if let Some(first) = out.iter().min_by_key(|(_, e)| **e).map(|(n, _)| n.clone()) {
                out.remove(&first);
            }
        }
        out.insert(signed_in.nonce.clone(), signed_in.expires);
    }

    /// The token the sign-out form of `signed_in` carries.
    pub fn sign_out_token(&self, signed_in: &SignedIn) -> String {
        hex::encode(
            &self
                .mac("sign-out", &signed_in.nonce)
                .finalize()
                .into_bytes()[..16],
        )
    }

    /// Whether `token` is the sign-out token of `signed_in`.
    pub fn sign_out_token_ok(&self, signed_in: &SignedIn, token: &str) -> bool {
        constant_time::eq(self.sign_out_token(signed_in).as_bytes(), token.as_bytes())
    }

    /// A fresh double-submit token for the sign-in form.
    pub fn form_token() -> String {
        hex::encode(rand::random::<[u8; 16]>())
    }

    /// `Set-Cookie` for a sign-in cookie holding `value`.
    pub fn sign_in_cookie(&self, value: &str) -> String {
        self.cookie(SIGN_IN_COOKIE, value, Some(self.lifetime.as_secs()))
    }

    /// `Set-Cookie` that removes the sign-in cookie.
    pub fn sign_out_cookie(&self) -> String {
        self.cookie(SIGN_IN_COOKIE, "", Some(0))
    }

    /// `Set-Cookie` for the sign-in form's token (gone when the browser closes).
    pub fn form_cookie(&self, token: &str) -> String {
        self.cookie(FORM_COOKIE, token, None)
    }

    fn cookie(&self, name: &str, value: &str, max_age: Option<u64>) -> String {
        let mut c = format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure {
            c.push_str("; Secure");
        }
        c
    }
}

/// The value of cookie `name` in a `Cookie` header, if present.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v.trim())
    })
}

/// Whether a double-submit pair matches: both present, the expected length, equal.
pub fn form_token_ok(cookie: Option<&str>, field: &str) -> bool {
    cookie.is_some_and(|c| c.len() == 32 && constant_time::eq(c.as_bytes(), field.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_value_finds_the_named_cookie_only() {
        let h = "a=1; herald_ui=x.y; herald_uix=2";
        assert_eq!(cookie_value(h, "herald_ui"), Some("x.y"));
        assert_eq!(cookie_value(h, "herald_u"), None);
        assert_eq!(cookie_value("", "herald_ui"), None);
    }

    #[test]
    fn form_tokens_must_match_and_have_their_length() {
        let t = Access::form_token();
        assert!(form_token_ok(Some(&t), &t));
        assert!(!form_token_ok(Some(&t), &Access::form_token()));
        assert!(!form_token_ok(None, &t));
        assert!(!form_token_ok(Some(""), ""));
    }

    #[test]
    fn cookies_are_http_only_strict_and_scoped_to_the_pages() {
        let access = Access::new(&UiConfig {
            secure_cookies: true,
            ..UiConfig::default()
        });
        let c = access.sign_in_cookie("v");
        assert!(c.starts_with("herald_ui=v; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=28800"));
        assert!(c.ends_with("; Secure"));
        assert!(access.sign_out_cookie().contains("Max-Age=0"));
    }
}
