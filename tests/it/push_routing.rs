//! Push jobs through the gateway with an FCM and an APNs provider: each recipient's push goes
//! to the provider of its device token's platform, and a contact whose first token is of a
//! platform herald has no provider for is reached on its other token.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path;
use axum::routing::post;
use axum::Json;
use herald::config::{ApnsConfig, FcmConfig, PriceConfig, ProviderConfig, ProviderKind};
use herald::domain::Channel;
use herald_testkit::https::{HttpsServer, TestCa};
use herald_testkit::{jwt, Gateway};
use parking_lot::Mutex;
use serde_json::{json, Value};

const APNS_ONLY: &str = "aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11";
const APNS_OF_BOTH: &str = "bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22";
const FCM_ONLY: &str = "fcm-only:APA91bHk3x0Q2z8r7VwYtT1s9uXcB4nLmP6aQeR2dF5gH8jK";
const FCM_OF_BOTH: &str = "fcm-both:APA91bDEADBEEFDEADBEEFDEADBEEFDEADBEEFDEADBEEF";

/// Device tokens each mock accepted.
#[derive(Default)]
struct Received {
    fcm: Mutex<Vec<String>>,
    apns: Mutex<Vec<String>>,
}

async fn fcm_mock(ca: &TestCa, received: Arc<Received>) -> HttpsServer {
    let router = axum::Router::new()
        .route(
            "/token",
            post(|| async { Json(json!({"access_token": "ya29.r", "expires_in": 3599})) }),
        )
        .route(
            "/v1/projects/routing/messages:send",
            post(move |body: Bytes| {
                let r = received.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let token = v["message"]["token"].as_str().unwrap_or("").to_string();
                    r.fcm.lock().push(token);
                    Json(json!({"name": "projects/routing/messages/1"}))
                }
            }),
        );
    ca.serve(router).await
}

async fn apns_mock(ca: &TestCa, received: Arc<Received>) -> HttpsServer {
    let router = axum::Router::new().route(
        "/3/device/{token}",
        post(move |Path(token): Path<String>| {
            let r = received.clone();
            async move {
                r.apns.lock().push(token);
                ""
            }
        }),
    );
    ca.serve_http2_only(router).await
}

fn push_provider(
    base: &ProviderConfig,
    name: &str,
    kind: ProviderKind,
    ca_file: &str,
) -> ProviderConfig {
    let mut p = base.clone();
    p.name = name.into();
    p.kind = kind;
    p.channel = Channel::Push;
    p.batch_size = 1;
    p.idempotent = false;
    p.ca_file = Some(ca_file.into());
    p
}

/// A gateway with an FCM provider and, when `with_apns`, an APNs provider after it.
async fn gateway(
    ca: &TestCa,
    fcm: &HttpsServer,
    apns: &HttpsServer,
    with_apns: bool,
) -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rsa, _) = jwt::rsa_key_pair();
    let account = dir.path().join("sa.json");
    std::fs::write(
        &account,
        json!({"project_id": "routing", "client_email": "r@routing.iam.gserviceaccount.com",
            "private_key": rsa, "token_uri": fcm.url("/token")})
        .to_string(),
    )
    .expect("service account");
    let (p256, _) = jwt::p256_key_pair();
    let key_file = dir.path().join("AuthKey.p8");
    std::fs::write(&key_file, p256).expect("p8");
    let (fcm_base, apns_base, ca_file) = (fcm.url(""), apns.url(""), ca.ca_file());
    let g = Gateway::start_with(|c| {
        c.policy.frequency_caps.clear();
        let mut f = push_provider(&c.providers[0], "fcm", ProviderKind::Fcm, &ca_file);
        f.fcm = Some(FcmConfig {
            base_url: fcm_base,
            service_account_file: account.display().to_string(),
            ..FcmConfig::default()
        });
        let mut a = push_provider(&c.providers[0], "apns", ProviderKind::Apns, &ca_file);
        a.apns = Some(ApnsConfig {
            base_url: apns_base,
            team_id: "TEAM123456".into(),
            key_id: "KEY1234567".into(),
            key_file: key_file.display().to_string(),
            topic: "com.example.shop".into(),
            ..ApnsConfig::default()
        });
        let mut providers = vec![f];
        if with_apns {
            providers.push(a);
        }
        for p in providers {
            c.prices.push(PriceConfig {
                provider: p.name.clone(),
                channel: Channel::Push,
                country: "*".into(),
                unit_micros: 100,
            });
            c.providers.push(p);
        }
    })
    .await;
    let csv = format!(
        "contact_id,phone,push_token,timezone,push_consent,first_name\n\
         ios,+8613123079337,apns:{APNS_ONLY},Asia/Shanghai,opt_in,Ann\n\
         android,+8613126859660,fcm:{FCM_ONLY},Asia/Shanghai,opt_in,Bob\n\
         both,+8613127826024,apns:{APNS_OF_BOTH};fcm:{FCM_OF_BOTH},Asia/Shanghai,opt_in,Cy\n"
    );
    g.load_csv(&csv).await;
    (g, dir)
}

/// Runs a push job to the three contacts; answers each contact's outcome and reason.
async fn run(g: &Gateway) -> Vec<(String, String, String)> {
    let job = json!({"campaign_id": "routing", "channel": "push", "purpose": "marketing",
        "template": {"body": "Hi {{first_name}}", "title": "Sale"}, "track_links": false,
        "audience": {"contacts": [{"contact_id": "ios"}, {"contact_id": "android"}, {"contact_id": "both"}]}});
    let (status, body) = g.submit(&job).await;
    assert_eq!(status, 201, "{body}");
    g.wait_completed(&body, Duration::from_secs(20)).await;
    let id = body["id"].as_str().expect("id");
    let mut lines: Vec<(String, String, String)> = g
        .recipients(id)
        .await
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or("").to_string();
            (s("contact_id"), s("outcome"), s("reason"))
        })
        .collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_push_goes_to_the_provider_of_its_tokens_platform() {
    let ca = TestCa::new();
    let received = Arc::new(Received::default());
    let fcm = fcm_mock(&ca, received.clone()).await;
    let apns = apns_mock(&ca, received.clone()).await;

    let (g, _dir) = gateway(&ca, &fcm, &apns, true).await;
    let lines = run(&g).await;
    for (who, outcome, reason) in &lines {
        assert_eq!(outcome, "sent", "{who}: {reason}");
    }
    // The FCM provider is listed first; APNs tokens still go to APNs, and a contact with both
    // is reached on its first token.
    assert_eq!(*received.fcm.lock(), vec![FCM_ONLY.to_string()]);
    let mut apns_tokens = received.apns.lock().clone();
    apns_tokens.sort();
    assert_eq!(
        apns_tokens,
        vec![APNS_ONLY.to_string(), APNS_OF_BOTH.to_string()]
    );
    g.stop().await;

    // Without an APNs provider: the contact with both tokens is reached on its FCM token, and
    // the one with an APNs token alone has no token herald can reach.
    received.fcm.lock().clear();
    received.apns.lock().clear();
    let (g, _dir) = gateway(&ca, &fcm, &apns, false).await;
    let lines = run(&g).await;
    let outcome_of = |who: &str| {
        lines
            .iter()
            .find(|l| l.0 == who)
            .map(|l| (l.1.clone(), l.2.clone()))
            .unwrap_or_default()
    };
    assert_eq!(outcome_of("both").0, "sent");
    assert_eq!(outcome_of("android").0, "sent");
    assert_eq!(
        outcome_of("ios"),
        ("rejected".to_string(), "missing_push_token".to_string())
    );
    let mut fcm_tokens = received.fcm.lock().clone();
    fcm_tokens.sort();
    assert_eq!(
        fcm_tokens,
        vec![FCM_OF_BOTH.to_string(), FCM_ONLY.to_string()]
    );
    assert!(received.apns.lock().is_empty());
    g.stop().await;
}
