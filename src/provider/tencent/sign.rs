//! Tencent Cloud API signature v3 (TC3-HMAC-SHA256) for a JSON `POST /`:
//!
//! - canonical request: `POST\n/\n\ncontent-type:<ct>\nhost:<host>\n\ncontent-type;host\n`
//!   followed by the lowercase hex SHA-256 of the payload;
//! - string to sign: `TC3-HMAC-SHA256\n<timestamp>\n<date>/<service>/tc3_request\n` followed
//!   by the hex SHA-256 of the canonical request (`date` is the timestamp's UTC date);
//! - key: `HMAC("TC3" + SecretKey, date)`, then `service`, then `tc3_request`;
//! - `Authorization: TC3-HMAC-SHA256 Credential=<SecretId>/<scope>, SignedHeaders=content-type;host, Signature=<hex>`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The algorithm name, first word of the `Authorization` header.
pub const ALGORITHM: &str = "TC3-HMAC-SHA256";
const SIGNED_HEADERS: &str = "content-type;host";

/// One request to sign.
#[derive(Debug, Clone, Copy)]
pub struct Tc3Request<'a> {
    pub secret_id: &'a str,
    pub secret_key: &'a [u8],
    /// The product (`sms`), first label of its host name.
    pub service: &'a str,
    /// The `Host` header as sent (with the port when it is not the scheme's default).
    pub host: &'a str,
    pub content_type: &'a str,
    pub timestamp: i64,
    pub payload: &'a [u8],
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The UTC date of a Unix timestamp, `YYYY-MM-DD`.
pub fn date_of(timestamp: i64) -> String {
    chrono::DateTime::from_timestamp(timestamp, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// The canonical request.
pub fn canonical_request(r: &Tc3Request<'_>) -> String {
    format!(
        "POST\n/\n\ncontent-type:{}\nhost:{}\n\n{SIGNED_HEADERS}\n{}",
        r.content_type.trim().to_ascii_lowercase(),
        r.host.trim().to_ascii_lowercase(),
        sha256_hex(r.payload)
    )
}

/// The credential scope, `<date>/<service>/tc3_request`.
pub fn credential_scope(r: &Tc3Request<'_>) -> String {
    format!("{}/{}/tc3_request", date_of(r.timestamp), r.service)
}

/// The string to sign.
pub fn string_to_sign(r: &Tc3Request<'_>) -> String {
    format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        r.timestamp,
        credential_scope(r),
        sha256_hex(canonical_request(r).as_bytes())
    )
}

/// The hex signature.
pub fn signature(r: &Tc3Request<'_>) -> String {
    let mut key = b"TC3".to_vec();
    key.extend_from_slice(r.secret_key);
    let date = hmac(&key, date_of(r.timestamp).as_bytes());
    let service = hmac(&date, r.service.as_bytes());
    let signing = hmac(&service, b"tc3_request");
    hex::encode(hmac(&signing, string_to_sign(r).as_bytes()))
}

/// The `Authorization` header value.
pub fn authorization(r: &Tc3Request<'_>) -> String {
    format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={SIGNED_HEADERS}, Signature={}",
        r.secret_id,
        credential_scope(r),
        signature(r)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of Tencent Cloud's "Signature v3" page (API 3.0, e.g.
    /// https://www.tencentcloud.com/document/product/267/37447, the same in every product's
    /// API docs): CVM DescribeInstances at 1551113065 with the documented example key.
    #[test]
    fn tencents_published_example_signs_as_documented() {
        let payload = r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let r = Tc3Request {
            secret_id: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
            secret_key: b"Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
            service: "cvm",
            host: "cvm.tencentcloudapi.com",
            content_type: "application/json; charset=utf-8",
            timestamp: 1551113065,
            payload: payload.as_bytes(),
        };
        assert_eq!(
            sha256_hex(r.payload),
            "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            string_to_sign(&r),
            "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n\
             5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(
            signature(&r),
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
        assert_eq!(
            authorization(&r),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, \
             SignedHeaders=content-type;host, \
             Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }
}
