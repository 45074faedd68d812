//! Tracking tokens: compact, signed, verifiable without any lookup.
//!
//! A token is 128 bits written as exactly [`TOKEN_LEN`] (22) base62 characters (`0-9A-Za-z`,
//! so it survives SMS GSM-7, URL auto-linking and copy-paste):
//!
//! | bits | field |
//! | --- | --- |
//! | 127..96 | job tag: 32 bits naming the job, unique among the gateway's jobs |
//! | 95..64 | recipient index within the job (which message) |
//! | 63..56 | link index in the template's link list; 255 = the email open pixel, 254 = its unsubscribe link |
//! | 55..0 | MAC: the first 56 bits of HMAC-SHA256(link secret, `"herald-link-v1"` + the 9 bytes above) |
//!
//! With the host `hrld.io` a tracked link is `https://hrld.io/c/` + 22 = 40 characters. Any
//! change to any character changes the claims or the MAC, so an altered or forged token is
//! refused by [`LinkSigner::verify`] before anything is looked up (a forger's chance per try
//! is 2^-56). The MAC is checked in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Characters in a token.
pub const TOKEN_LEN: usize = 22;
/// The link index that stands for the open pixel.
pub const OPEN_LINK: u8 = 255;
/// The link index that stands for an email's one-click unsubscribe (`/u/{token}`).
pub const UNSUBSCRIBE_LINK: u8 = 254;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const DOMAIN: &[u8] = b"herald-link-v1";
const MAC_BYTES: usize = 7;

/// What a token says: which message of which job, and which of its links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenClaims {
    pub job_tag: u32,
    pub recipient: u32,
    pub link: u8,
}

impl TokenClaims {
    fn payload(&self) -> [u8; 9] {
        let mut p = [0u8; 9];
        p[..4].copy_from_slice(&self.job_tag.to_be_bytes());
        p[4..8].copy_from_slice(&self.recipient.to_be_bytes());
        p[8] = self.link;
        p
    }
}

/// Signs and verifies tokens with the link secret.
#[derive(Clone)]
pub struct LinkSigner {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(***)")
    }
}

impl LinkSigner {
    /// A signer keyed with `secret`.
    pub fn new(secret: &[u8]) -> LinkSigner {
        // HMAC accepts keys of any length; this cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        LinkSigner { mac }
    }

    fn tag(&self, payload: &[u8; 9]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        mac.update(payload);
        mac
    }

    /// The token for `claims`, written into `out`.
    pub fn sign_into(&self, claims: TokenClaims, out: &mut [u8; TOKEN_LEN]) {
        let payload = claims.payload();
        let mac = self.tag(&payload).finalize().into_bytes();
        let mut bytes = [0u8; 16];
        bytes[..9].copy_from_slice(&payload);
        bytes[9..].copy_from_slice(&mac[..MAC_BYTES]);
        let mut n = u128::from_be_bytes(bytes);
        for slot in out.iter_mut().rev() {
            *slot = ALPHABET[(n % 62) as usize];
            n /= 62;
        }
    }

    /// The token for `claims`.
    pub fn sign(&self, claims: TokenClaims) -> String {
        let mut out = [0u8; TOKEN_LEN];
        self.sign_into(claims, &mut out);
        out.iter().map(|&b| b as char).collect()
    }

    /// The claims of a token this secret signed; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<TokenClaims> {
        let bytes = decode(token)?.to_be_bytes();
        let claims = TokenClaims {
            job_tag: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            recipient: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            link: bytes[8],
        };
        self.tag(&claims.payload())
            .verify_truncated_left(&bytes[9..])
            .ok()
            .map(|()| claims)
    }
}

/// Base62 to 128 bits; `None` unless exactly [`TOKEN_LEN`] alphabet characters that fit.
fn decode(token: &str) -> Option<u128> {
    let b = token.as_bytes();
    if b.len() != TOKEN_LEN {
        return None;
    }
    b.iter().try_fold(0u128, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'Z' => c - b'A' + 10,
            b'a'..=b'z' => c - b'a' + 36,
            _ => return None,
        };
        acc.checked_mul(62)?.checked_add(u128::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claims() -> TokenClaims {
        TokenClaims {
            job_tag: 0xDEAD_BEEF,
            recipient: 12_345,
            link: 3,
        }
    }

    #[test]
    fn round_trips_and_is_compact() {
        let s = LinkSigner::new(b"secret");
        let t = s.sign(claims());
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric()), "{t}");
        assert_eq!(s.verify(&t), Some(claims()));
        assert_eq!(format!("https://hrld.io/c/{t}").len(), 40);
    }

    #[test]
    fn another_secret_or_shape_is_refused() {
        let t = LinkSigner::new(b"secret").sign(claims());
        assert_eq!(LinkSigner::new(b"other").verify(&t), None);
        let s = LinkSigner::new(b"secret");
        assert_eq!(s.verify(&t[..21]), None);
        assert_eq!(s.verify(&format!("{t}0")), None);
        assert_eq!(
            s.verify("zzzzzzzzzzzzzzzzzzzzzz"),
            None,
            "overflows 128 bits"
        );
        assert_eq!(s.verify("!!!!!!!!!!!!!!!!!!!!!!"), None);
    }

    proptest! {
        #[test]
        fn any_single_character_change_is_refused(
            tag in any::<u32>(), recipient in any::<u32>(), link in any::<u8>(),
            pos in 0usize..TOKEN_LEN, with in 0usize..62,
        ) {
            let s = LinkSigner::new(b"k");
            let c = TokenClaims { job_tag: tag, recipient, link };
            let t = s.sign(c);
            prop_assert_eq!(s.verify(&t), Some(c));
            let mut altered = t.clone().into_bytes();
            prop_assume!(altered[pos] != ALPHABET[with]);
            altered[pos] = ALPHABET[with];
            let altered = String::from_utf8(altered).expect("ascii");
            prop_assert_eq!(s.verify(&altered), None);
        }
    }
}
