//! The official account's encrypted ("safe") mode, as WeChat's message-encryption guide
//! describes it: the body's `<Encrypt>` is Base64 of AES-256-CBC (key: the account's 43
//! character EncodingAESKey with `=` appended, Base64-decoded; IV: the key's first 16
//! bytes; PKCS#7 padding to 32-byte blocks) over 16 random bytes, the message's length (4
//! bytes, big-endian), the message and the AppID. It is signed by `msg_signature`: SHA-1 of
//! the token, `timestamp`, `nonce` and the `Encrypt` text, sorted and joined.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, KeyIvInit};
use base64::Engine;
use sha1::{Digest, Sha1};

type Decryptor = cbc::Decryptor<aes::Aes256>;

/// WeChat pads to multiples of 32 bytes, not the cipher's 16.
const PAD_BLOCK: usize = 32;

/// Why an encrypted body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptError {
    #[error("the EncodingAESKey is not 43 characters of Base64 for 32 bytes")]
    Key,
    #[error("Encrypt is not Base64 of whole AES blocks")]
    Encoding,
    #[error("Encrypt does not decrypt to a message (bad padding or length)")]
    Layout,
    #[error("the message is for another AppID")]
    AppId,
    #[error("the message is not UTF-8")]
    Text,
}

/// An account's key and AppID, to open its encrypted events.
#[derive(Clone)]
pub struct MessageKey {
    key: [u8; 32],
    appid: String,
}

impl std::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageKey(..)")
    }
}

impl MessageKey {
    /// The key of an EncodingAESKey (43 characters) for the account `appid`.
    pub fn new(encoding_aes_key: &str, appid: &str) -> Result<MessageKey, CryptError> {
        if encoding_aes_key.len() != 43 {
            return Err(CryptError::Key);
        }
        // WeChat's keys leave bits after the last byte set, which strict decoders refuse.
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        );
        let bytes = lenient
            .decode(format!("{encoding_aes_key}="))
            .map_err(|_| CryptError::Key)?;
        let key = bytes.try_into().map_err(|_| CryptError::Key)?;
        Ok(MessageKey {
            key,
            appid: appid.to_string(),
        })
    }

    /// The message inside `encrypt` (the body's `<Encrypt>` text), if it is for this
    /// account.
    pub fn open(&self, encrypt: &str) -> Result<String, CryptError> {
        let mut data = base64::engine::general_purpose::STANDARD
            .decode(encrypt.trim())
            .map_err(|_| CryptError::Encoding)?;
        if data.is_empty() || data.len() % 16 != 0 {
            return Err(CryptError::Encoding);
        }
        let iv: [u8; 16] = self.key[..16].try_into().map_err(|_| CryptError::Key)?;
        let plain = Decryptor::new(&self.key.into(), &iv.into())
            .decrypt_padded_mut::<NoPadding>(&mut data)
            .map_err(|_| CryptError::Encoding)?;
        let pad = usize::from(*plain.last().ok_or(CryptError::Layout)?);
        if !(1..=PAD_BLOCK).contains(&pad) || pad > plain.len() {
            return Err(CryptError::Layout);
        }
        let body = &plain[..plain.len() - pad];
        let len_bytes: [u8; 4] = body
            .get(16..20)
            .and_then(|b| b.try_into().ok())
            .ok_or(CryptError::Layout)?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let message = body.get(20..20 + len).ok_or(CryptError::Layout)?;
        let appid = &body[20 + len..];
        if !crate::constant_time::eq(appid, self.appid.as_bytes()) {
            return Err(CryptError::AppId);
        }
        String::from_utf8(message.to_vec()).map_err(|_| CryptError::Text)
    }
}

/// The `msg_signature` of an encrypted body.
pub fn msg_signature(token: &[u8], timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let token = String::from_utf8_lossy(token);
    let mut parts = [token.as_ref(), timestamp, nonce, encrypt];
    parts.sort_unstable();
    hex::encode(Sha1::digest(parts.concat().as_bytes()))
}

/// Whether `given` is the `msg_signature` of the body, compared in constant time.
pub fn verify(token: &[u8], timestamp: &str, nonce: &str, encrypt: &str, given: &str) -> bool {
    let want = msg_signature(token, timestamp, nonce, encrypt);
    crate::constant_time::eq(
        want.as_bytes(),
        given.trim().to_ascii_lowercase().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample of WeChat's own message-encryption SDK (its Python demo): token
    /// `spamtest`, the EncodingAESKey, AppID, timestamp and nonce below, the `Encrypt` of a
    /// text message and its `msg_signature`.
    const TOKEN: &str = "spamtest";
    const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APPID: &str = "wx2c2769f8efd9abc2";
    const TIMESTAMP: &str = "1409735669";
    const NONCE: &str = "1320562132";
    const MSG_SIGNATURE: &str = "5d197aaffba7e9b25a30732f161a50dee96bd5fa";
    const ENCRYPT: &str = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";

    #[test]
    fn the_sdk_samples_signature_and_message_are_known_answers() {
        assert_eq!(
            msg_signature(TOKEN.as_bytes(), TIMESTAMP, NONCE, ENCRYPT),
            MSG_SIGNATURE
        );
        assert!(verify(
            TOKEN.as_bytes(),
            TIMESTAMP,
            NONCE,
            ENCRYPT,
            MSG_SIGNATURE
        ));
        assert!(!verify(
            TOKEN.as_bytes(),
            "1409735670",
            NONCE,
            ENCRYPT,
            MSG_SIGNATURE
        ));
        let key = MessageKey::new(AES_KEY, APPID).expect("key");
        let message = key.open(ENCRYPT).expect("opens");
        assert!(message.starts_with("<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>"));
        assert!(message.contains("<Content><![CDATA[abcdteT]]></Content>"));
        assert!(message.contains("<MsgId>6054768590064713728</MsgId>"));
    }

    #[test]
    fn another_accounts_or_a_damaged_message_is_refused() {
        let other = MessageKey::new(AES_KEY, "wx0000000000000000").expect("key");
        assert_eq!(other.open(ENCRYPT), Err(CryptError::AppId));
        let key = MessageKey::new(AES_KEY, APPID).expect("key");
        assert_eq!(key.open("not base64!"), Err(CryptError::Encoding));
        assert_eq!(key.open("AAAA"), Err(CryptError::Encoding));
        let mut damaged = base64::engine::general_purpose::STANDARD
            .decode(ENCRYPT)
            .expect("base64");
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        let damaged = base64::engine::general_purpose::STANDARD.encode(damaged);
        assert!(key.open(&damaged).is_err());
        assert_eq!(
            MessageKey::new("short", APPID).map(|_| ()),
            Err(CryptError::Key)
        );
    }
}
