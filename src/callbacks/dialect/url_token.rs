//! Authentication by a secret token in the callback URL (`?token=<secret>`), for providers
//! whose receipt push carries no signature of its own (Alibaba Cloud, Tencent Cloud). The
//! token is one of the provider's `callback_secret_envs` (two during a rotation); it travels
//! inside the TLS connection, and every configured token is always compared in constant time.
//! It proves the sender knows the URL, not that the body is untouched: the callback URL must
//! be HTTPS and kept as secret as a password.

use crate::callbacks::signature::SignatureError;
use crate::config::Secret;

/// The query parameter carrying the token.
pub const PARAM: &str = "token";

/// The tokens a provider's callback URL may carry.
#[derive(Clone)]
pub struct UrlToken {
    tokens: Vec<Secret>,
}

impl std::fmt::Debug for UrlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlToken")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl UrlToken {
    pub fn new(tokens: &[Secret]) -> UrlToken {
        UrlToken {
            tokens: tokens.to_vec(),
        }
    }

    pub fn is_configured(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks the `token` parameter of a raw query string.
    pub fn verify(&self, query: Option<&str>) -> Result<(), SignatureError> {
        if self.tokens.is_empty() {
            return Err(SignatureError::NotConfigured);
        }
        let given = query
            .into_iter()
            .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
            .find(|(k, _)| k == PARAM)
            .map(|(_, v)| v.into_owned())
            .ok_or(SignatureError::Missing)?;
        let mut ok = false;
        for t in &self.tokens {
            ok |= crate::constant_time::eq(t.expose(), given.as_bytes());
        }
        if ok {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_token_passes_and_nothing_else_does() {
        let t = UrlToken::new(&[Secret::new("old-token"), Secret::new("new token")]);
        assert_eq!(t.verify(Some("token=old-token")), Ok(()));
        assert_eq!(t.verify(Some("a=1&token=new%20token")), Ok(()));
        assert_eq!(
            t.verify(Some("token=old-tokeN")),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            t.verify(Some("tok=old-token")),
            Err(SignatureError::Missing)
        );
        assert_eq!(t.verify(None), Err(SignatureError::Missing));
        assert_eq!(
            UrlToken::new(&[]).verify(Some("token=x")),
            Err(SignatureError::NotConfigured)
        );
    }
}
