//! Provider message ids as index keys: normalised the way the provider's
//! `message_id_format` says (so `0042`, `42`, `0x2A` and `2a` can be the same message), then
//! hashed with the provider into a 128-bit key. The index stores keys, not strings: 16 bytes
//! per message whatever the provider's id length, and a collision is a 2^-128 event.

use xxhash_rust::xxh3::xxh3_128;

use crate::config::MessageIdFormat;

/// The longest provider message id accepted.
pub const MAX_ID_LEN: usize = 256;

/// A normalised (provider, message id) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageKey(pub u128);

/// The key of `raw` as written by provider number `provider`; `None` when the id is empty,
/// too long, or not a number in a numeric format.
pub fn key(provider: u16, format: MessageIdFormat, raw: &str) -> Option<MessageKey> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > MAX_ID_LEN {
        return None;
    }
    let mut buf = [0u8; MAX_ID_LEN + 2];
    buf[..2].copy_from_slice(&provider.to_le_bytes());
    let body: &[u8] = match format {
        MessageIdFormat::Opaque => raw.as_bytes(),
        MessageIdFormat::CaseInsensitive => {
            for (d, s) in buf[2..].iter_mut().zip(raw.bytes()) {
                *d = s.to_ascii_lowercase();
            }
            return Some(hash(&buf[..2 + raw.len()]));
        }
        MessageIdFormat::Decimal => {
            if !raw.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            strip_zeros(raw.as_bytes())
        }
        MessageIdFormat::Hex => {
            let digits = raw
                .strip_prefix("0x")
                .or_else(|| raw.strip_prefix("0X"))
                .unwrap_or(raw);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let digits = strip_zeros(digits.as_bytes());
            for (d, s) in buf[2..].iter_mut().zip(digits) {
                *d = s.to_ascii_lowercase();
            }
            return Some(hash(&buf[..2 + digits.len()]));
        }
    };
    buf[2..2 + body.len()].copy_from_slice(body);
    Some(hash(&buf[..2 + body.len()]))
}

fn hash(bytes: &[u8]) -> MessageKey {
    MessageKey(xxh3_128(bytes))
}

/// Leading zeros off, but one `0` stays for zero itself.
fn strip_zeros(digits: &[u8]) -> &[u8] {
    let first = digits
        .iter()
        .position(|&b| b != b'0')
        .unwrap_or(digits.len().saturating_sub(1));
    &digits[first..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageIdFormat::*;

    #[test]
    fn formats_normalise_as_documented() {
        let k = |f, s| key(1, f, s);
        assert_eq!(k(Opaque, " Ab1 "), k(Opaque, "Ab1"));
        assert_ne!(k(Opaque, "Ab1"), k(Opaque, "ab1"));
        assert_eq!(
            k(CaseInsensitive, "SBX-00FF"),
            k(CaseInsensitive, "sbx-00ff")
        );
        assert_eq!(k(Decimal, "000123"), k(Decimal, "123"));
        assert_eq!(k(Decimal, "000"), k(Decimal, "0"));
        assert_eq!(k(Decimal, "12a"), None);
        assert_eq!(k(Hex, "0x00FF"), k(Hex, "ff"));
        assert_eq!(k(Hex, "0X0"), k(Hex, "0"));
        assert_eq!(k(Hex, "0xZZ"), None);
        assert_eq!(k(Hex, "0x"), None);
        assert_eq!(k(Opaque, ""), None);
        assert_eq!(k(Opaque, &"a".repeat(MAX_ID_LEN + 1)), None);
    }

    #[test]
    fn providers_do_not_share_ids() {
        assert_ne!(key(0, Opaque, "42"), key(1, Opaque, "42"));
    }
}
