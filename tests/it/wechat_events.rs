//! The WeChat account's server URL on a running gateway: WeChat's URL check (GET with
//! `echostr`) and its XML events, authenticated by the query signature over the account
//! token, `timestamp` and `nonce` (computed here from WeChat's documented algorithm), within
//! the signature window.

use herald::config::{ProviderKind, Secret, WechatConfig};
use herald::domain::Channel;
use herald_testkit::Gateway;
use sha1::{Digest, Sha1};

const TOKEN: &str = "account-callback-token";
const ROUTE: &str = "/v1/callbacks/wechat-oa/wechat";

fn sign(timestamp: &str, nonce: &str) -> String {
    let mut parts = [TOKEN, timestamp, nonce];
    parts.sort_unstable();
    hex::encode(Sha1::digest(parts.concat().as_bytes()))
}

pub async fn gateway() -> Gateway {
    Gateway::start_on_system_clock(|c| {
        let mut p = c.providers[0].clone();
        p.name = "wechat-oa".into();
        p.kind = ProviderKind::Wechat;
        p.channel = Channel::Wechat;
        p.idempotent = false;
        p.batch_size = 1;
        p.wechat = Some(WechatConfig {
            base_url: "https://127.0.0.1:9".into(),
            appid: Some(Secret::new("wx-app")),
            secret: Some(Secret::new("wx-secret")),
            callback_token: Some(Secret::new(TOKEN)),
            ..WechatConfig::default()
        });
        c.providers.push(p);
    })
    .await
}

pub fn query(timestamp: i64, nonce: &str, extra: &str) -> String {
    let ts = timestamp.to_string();
    format!(
        "{ROUTE}?signature={}&timestamp={ts}&nonce={nonce}{extra}",
        sign(&ts, nonce)
    )
}

#[tokio::test]
async fn wechat_url_check_echoes_only_a_signed_request() {
    let g = gateway().await;
    let now = chrono::Utc::now().timestamp();
    let ok = g
        .http
        .get(g.url(&query(now, "1507829345", "&echostr=6139214327018311470")))
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.expect("text"), "6139214327018311470");

    let forged = g
        .http
        .get(g.url(&format!(
            "{ROUTE}?signature={}&timestamp={now}&nonce=2&echostr=x",
            sign(&now.to_string(), "1")
        )))
        .send()
        .await
        .expect("send");
    assert_eq!(forged.status(), 401);
    let stale = g
        .http
        .get(g.url(&query(now - 3_600, "1", "&echostr=x")))
        .send()
        .await
        .expect("send");
    assert_eq!(stale.status(), 401);
    // Not a WeChat provider: its route does not exist.
    let sms = g
        .http
        .get(g.url("/v1/callbacks/sandbox/wechat"))
        .send()
        .await
        .expect("send");
    assert_eq!(sms.status(), 404);
}

#[tokio::test]
async fn wechat_events_are_answered_success_and_garbage_is_refused() {
    let g = gateway().await;
    let now = chrono::Utc::now().timestamp();
    let text = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>\
        <CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content></xml>";
    let r = g
        .http
        .post(g.url(&query(now, "n1", "&openid=o1")))
        .body(text)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("text"), "success");

    let r = g
        .http
        .post(g.url(&query(now, "n2", "")))
        .body("<xml><MsgType>event")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["field"], "body", "{body}");

    let r = g
        .http
        .post(g.url(&query(now, "n3", "")))
        .body(vec![b'x'; 64 << 10])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 413);
}

/// The account's EncodingAESKey (43 characters) in the encrypted-mode test.
const AES_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";

/// Encrypts `xml` for AppID `appid` as WeChat's message-encryption guide lays it out:
/// AES-256-CBC over 16 random bytes, the length (big-endian), the message and the AppID,
/// padded PKCS#7-style to 32-byte blocks, IV the key's first 16 bytes, then Base64.
fn encrypt(xml: &str, appid: &str) -> String {
    use aes::cipher::{block_padding::NoPadding, BlockEncryptMut, KeyIvInit};
    use base64::Engine;
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let key = lenient.decode(format!("{AES_KEY}=")).expect("key");
    let mut plain = b"0123456789abcdef".to_vec();
    plain.extend_from_slice(&(xml.len() as u32).to_be_bytes());
    plain.extend_from_slice(xml.as_bytes());
    plain.extend_from_slice(appid.as_bytes());
    let pad = 32 - plain.len() % 32;
    plain.extend(std::iter::repeat_n(pad as u8, pad));
    let len = plain.len();
    let cipher = cbc::Encryptor::<aes::Aes256>::new_from_slices(&key, &key[..16]).expect("cipher");
    cipher
        .encrypt_padded_mut::<NoPadding>(&mut plain, len)
        .expect("whole blocks");
    base64::engine::general_purpose::STANDARD.encode(plain)
}

/// `msg_signature`: SHA-1 of the token, timestamp, nonce and `Encrypt`, sorted and joined.
fn msg_signature(timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let mut parts = [TOKEN, timestamp, nonce, encrypt];
    parts.sort_unstable();
    hex::encode(Sha1::digest(parts.concat().as_bytes()))
}

#[tokio::test]
async fn encrypted_mode_events_are_opened_with_the_accounts_key_and_applied() {
    let g = Gateway::start_on_system_clock(|c| {
        let mut p = c.providers[0].clone();
        p.name = "wechat-oa".into();
        p.kind = ProviderKind::Wechat;
        p.channel = Channel::Wechat;
        p.idempotent = false;
        p.wechat = Some(WechatConfig {
            base_url: "https://127.0.0.1:9".into(),
            appid: Some(Secret::new("wx-app")),
            secret: Some(Secret::new("wx-secret")),
            callback_token: Some(Secret::new(TOKEN)),
            encoding_aes_key: Some(Secret::new(AES_KEY)),
            ..WechatConfig::default()
        });
        c.providers.push(p);
    })
    .await;
    g.load_csv(
        "contact_id,phone,wechat_openid,timezone,wechat_consent\n\
         fan,+8613123079337,oFan,Asia/Shanghai,opt_in\n",
    )
    .await;
    let unsubscribe = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oFan]]></FromUserName>\
        <CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[unsubscribe]]></Event></xml>";
    let post = |encrypt: String, signature: Option<String>, nonce: &'static str| {
        let now = chrono::Utc::now().timestamp().to_string();
        let msg_signature = signature.unwrap_or_else(|| msg_signature(&now, nonce, &encrypt));
        let url = g.url(&format!(
            "{ROUTE}?signature={}&timestamp={now}&nonce={nonce}&openid=oFan&encrypt_type=aes&msg_signature={msg_signature}",
            sign(&now, nonce)
        ));
        let body = format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
        g.http.post(url).body(body).send()
    };

    // A forged msg_signature, and a message for another account, change nothing.
    let r = post(encrypt(unsubscribe, "wx-app"), Some("0".repeat(40)), "n1")
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = post(encrypt(unsubscribe, "wx-other"), None, "n2")
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let history: serde_json::Value = g.get_json("/v1/contacts/fan/consent-history").await;
    assert_eq!(
        history["changes"].as_array().map(Vec::len),
        Some(0),
        "{history}"
    );

    // The account's own encrypted unsubscribe opts the follower out of WeChat.
    let r = post(encrypt(unsubscribe, "wx-app"), None, "n3")
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("text"), "success");
    let history: serde_json::Value = g.get_json("/v1/contacts/fan/consent-history").await;
    let changes = history["changes"].as_array().cloned().unwrap_or_default();
    assert_eq!(changes.len(), 1, "{history}");
    assert_eq!(changes[0]["channel"], "wechat");
    assert_eq!(changes[0]["consent"], "opt_out");
    g.stop().await;
}

#[tokio::test]
async fn an_encrypted_event_to_an_account_without_a_key_is_refused() {
    let g = gateway().await;
    let now = chrono::Utc::now().timestamp();
    let r = g
        .http
        .post(g.url(&query(now, "n1", "&encrypt_type=aes&msg_signature=00")))
        .body("<xml><Encrypt><![CDATA[AAAA]]></Encrypt></xml>")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "callbacks_not_configured", "{body}");
}
