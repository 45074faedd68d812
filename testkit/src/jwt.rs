//! JWTs read and verified the way a provider would: split, base64url-decoded and the
//! signature checked with ring against a public key the test made. Nothing here uses
//! herald's signing code, so a mistake there cannot hide itself.
//!
//! Key pairs are made at test time: P-256 with rcgen, RSA with the `openssl` command (ring
//! cannot generate RSA keys).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};
use serde_json::Value;

/// A verified token's header and claims.
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: Value,
    pub claims: Value,
}

/// Which signature a token must carry.
#[derive(Debug, Clone)]
pub enum PublicKey {
    /// ES256: the uncompressed P-256 point.
    Es256(Vec<u8>),
    /// RS256: the PKCS#1 `RSAPublicKey` DER.
    Rs256(Vec<u8>),
}

/// Verifies `token` with `key`; the header's `alg` must match the key.
pub fn verify(token: &str, key: &PublicKey) -> Result<Verified, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, s] = parts.as_slice() else {
        return Err(format!("{} parts, not 3", parts.len()));
    };
    let decode = |p: &str| {
        URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|e| format!("base64url: {e}"))
    };
    let header: Value =
        serde_json::from_slice(&decode(h)?).map_err(|e| format!("header json: {e}"))?;
    let claims: Value =
        serde_json::from_slice(&decode(c)?).map_err(|e| format!("claims json: {e}"))?;
    let signature = decode(s)?;
    let signed = format!("{h}.{c}");
    let (alg, result) = match key {
        PublicKey::Es256(point) => (
            "ES256",
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(signed.as_bytes(), &signature),
        ),
        PublicKey::Rs256(der) => (
            "RS256",
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
                .verify(signed.as_bytes(), &signature),
        ),
    };
    if header["alg"] != alg {
        return Err(format!("alg {} is not {alg}", header["alg"]));
    }
    result.map_err(|_| "bad signature".to_string())?;
    Ok(Verified { header, claims })
}

/// A P-256 key pair: its PKCS#8 PEM (an APNs `.p8` file) and its public key.
pub fn p256_key_pair() -> (String, PublicKey) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    (
        key.serialize_pem(),
        PublicKey::Es256(key.public_key_raw().to_vec()),
    )
}

/// A 2048-bit RSA key pair made by `openssl`: its PKCS#8 PEM (a service account's
/// `private_key`) and its public key.
pub fn rsa_key_pair() -> (String, PublicKey) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("key.pem");
    let public = dir.path().join("public.der");
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is installed");
        assert!(status.success(), "openssl {args:?}");
    };
    let key_path = key.to_str().expect("path");
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key_path,
    ]);
    run(&[
        "rsa",
        "-in",
        key_path,
        "-RSAPublicKey_out",
        "-outform",
        "DER",
        "-out",
        public.to_str().expect("path"),
    ]);
    let pem = std::fs::read_to_string(&key).expect("key pem");
    let der = std::fs::read(&public).expect("public der");
    (pem, PublicKey::Rs256(der))
}
