//! Tracked links and opens over HTTP: rewriting before part counting, redirects only to the
//! template's links, clicks before receipts, forged and altered tokens, the email pixel.

use std::time::Duration;

use herald::domain::Channel;
use herald::links::{LinkSigner, TokenClaims, OPEN_LINK};
use herald_testkit::signed::{receipt, sandbox_id, with_callbacks};
use herald_testkit::{sms_job, Gateway};
use reqwest::Method;
use serde_json::{json, Value};

fn contacts_csv(n: usize) -> String {
    let mut s = String::from("contact_id,phone,timezone,sms_consent,email,first_name\n");
    for i in 0..n {
        s.push_str(&format!(
            "c{i},+86131{:08},Asia/Shanghai,opt_in,c{i}@example.com,N{i}\n",
            23_000_000 + i
        ));
    }
    s
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn gateway() -> Gateway {
    let g = Gateway::start_with(|c| {
        with_callbacks(c);
        let mut mail = c.providers[0].clone();
        mail.name = "mail".into();
        mail.channel = Channel::Email;
        c.providers.push(mail);
    })
    .await;
    g.load_csv(&contacts_csv(4)).await;
    g
}

async fn run(g: &Gateway, job: &Value) -> String {
    let (s, body) = g.submit(job).await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    g.wait_status(&id, "completed", Duration::from_secs(10))
        .await;
    id
}

const TEMPLATE: &str = "Deal: https://shop.example/deal?x=1 info http://b.example/i.";

#[tokio::test]
async fn links_are_rewritten_before_parts_are_counted() {
    let g = gateway().await;
    // 150 GSM characters: one part as written, two once the 11-character link becomes a
    // 40-character tracked link.
    let body = format!("{} http://a.io", "A".repeat(138));
    assert_eq!(body.len(), 150);
    let tracked = run(&g, &sms_job("t", &body, json!([{"contact_id": "c0"}]))).await;
    let mut untracked = sms_job("t", &body, json!([{"contact_id": "c1"}]));
    untracked["track_links"] = json!(false);
    let untracked = run(&g, &untracked).await;
    assert_eq!(g.job(&tracked).await["counts"]["segments"], 2);
    assert_eq!(g.job(&untracked).await["counts"]["segments"], 1);
    let preview = g
        .req(Method::POST, "/v1/jobs?dry_run=true")
        .json(&sms_job("t", &body, json!([{"contact_id": "c2"}])))
        .send()
        .await
        .unwrap();
    let preview: Value = preview.json().await.unwrap();
    assert_eq!(preview["segments"], 2, "{preview}");
}

#[tokio::test]
async fn a_click_redirects_to_the_template_link_even_before_the_receipt() {
    let g = gateway().await;
    let id = run(
        &g,
        &sms_job(
            "c",
            TEMPLATE,
            json!([{"contact_id": "c0"}, {"contact_id": "c1"}]),
        ),
    )
    .await;
    let http = no_redirects();
    let token = g.token(&id, 0, 1);
    assert_eq!(token.len(), 22);
    for suffix in ["", "?url=https://evil.example/", "?next=//evil.example"] {
        let r = http
            .get(g.url(&format!("/c/{token}{suffix}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], "http://b.example/i");
    }
    let r = http
        .get(g.url(&format!("/c/{}", g.token(&id, 0, 0))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "https://shop.example/deal?x=1");

    let report = g.report(&format!("/v1/jobs/{id}/report")).await;
    let f = &report["funnel"];
    assert_eq!(f["clicked"], json!({"total": 4, "unique_contacts": 1}));
    assert_eq!(f["delivered"], 0, "no receipt yet");
    assert_eq!(report["links"][1]["clicks"], 3);
    assert_eq!(report["links"][0]["url"], "https://shop.example/deal?x=1");

    // The receipt that follows the click is applied as usual.
    let lines = g.recipients(&id).await;
    let pid = sandbox_id(lines[0]["message_id"].as_str().unwrap());
    let (s, t) = g
        .post_signed(
            "/v1/callbacks/sandbox/receipts",
            &receipt(&pid, "delivered").to_string(),
        )
        .await;
    assert_eq!((s, t["applied"].as_u64()), (200, Some(1)));
    let report = g.report(&format!("/v1/jobs/{id}/report")).await;
    assert_eq!(report["funnel"]["delivered"], 1);
    assert_eq!(report["rates"]["clicked_of_delivered"], 1.0);
    assert_eq!(g.recipients(&id).await[0]["clicked"], true);
}

#[tokio::test]
async fn forged_altered_and_foreign_tokens_are_404_and_record_nothing() {
    let g = gateway().await;
    let id = run(&g, &sms_job("f", TEMPLATE, json!([{"contact_id": "c0"}]))).await;
    let http = no_redirects();
    let valid = g.token(&id, 0, 0);
    let mut altered = valid.clone().into_bytes();
    altered[21] = if altered[21] == b'a' { b'b' } else { b'a' };
    let altered = String::from_utf8(altered).unwrap();
    let state = &g.running.as_ref().unwrap().state;
    let job = state
        .dispatcher
        .get(&herald::domain::JobId::parse(&id).unwrap())
        .unwrap();
    let tag = job.links().unwrap().tag;
    let claims = |recipient, link| TokenClaims {
        job_tag: tag,
        recipient,
        link,
    };
    let other_secret = LinkSigner::new(b"guessed").sign(claims(0, 0));
    // Genuinely signed, but naming a link the template did not hold, or a recipient the job
    // does not have: still no redirect.
    let foreign_link = state.tracking.signer().sign(claims(0, 5));
    let foreign_recipient = state.tracking.signer().sign(claims(7, 0));
    for token in [
        "0000000000000000000000",
        "abc",
        altered.as_str(),
        other_secret.as_str(),
        foreign_link.as_str(),
        foreign_recipient.as_str(),
    ] {
        let r = http
            .get(g.url(&format!("/c/{token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{token}");
        assert!(r.headers().get("location").is_none());
    }
    // A click token is not a pixel, and an SMS job has no pixel.
    let r = http
        .get(g.url(&format!("/o/{valid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let pixel = state.tracking.signer().sign(claims(0, OPEN_LINK));
    let r = http
        .get(g.url(&format!("/o/{pixel}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let f = &g.report(&format!("/v1/jobs/{id}/report")).await["funnel"];
    assert_eq!(f["clicked"]["total"], 0);
    assert_eq!(f["opened"]["total"], 0);
}

#[tokio::test]
async fn the_email_pixel_records_opens() {
    let g = gateway().await;
    let job = json!({
        "campaign_id": "mail",
        "channel": "email",
        "purpose": "transactional",
        "template": {"subject": "Hello", "html": "<p>Hello {{first_name}}</p>"},
        "audience": {"contacts": [{"contact_id": "c0"}, {"contact_id": "c1"}]},
    });
    let id = run(&g, &job).await;
    let token = g.token(&id, 1, OPEN_LINK);
    for _ in 0..2 {
        let r = g
            .http
            .get(g.url(&format!("/o/{token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/gif");
        let bytes = r.bytes().await.unwrap();
        assert_eq!(&bytes[..6], b"GIF89a");
    }
    let f = &g.report(&format!("/v1/jobs/{id}/report")).await["funnel"];
    assert_eq!(f["opened"], json!({"total": 2, "unique_contacts": 1}));
}

#[tokio::test]
async fn clicks_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        Gateway::start_at(dir.path(), |c| {
            with_callbacks(c);
            c.tracking.link_secret = Some(herald::config::Secret::new("restart-test-link-secret"));
        })
    };
    let g = start().await;
    g.load_csv(&contacts_csv(2)).await;
    let id = run(
        &g,
        &sms_job(
            "c",
            TEMPLATE,
            json!([{"contact_id": "c0"}, {"contact_id": "c1"}]),
        ),
    )
    .await;
    let http = no_redirects();
    for (recipient, link) in [(0, 1), (0, 1), (0, 1), (1, 0)] {
        let r = http
            .get(g.url(&format!("/c/{}", g.token(&id, recipient, link))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
    }
    let before = g.report(&format!("/v1/jobs/{id}/report")).await;
    assert_eq!(
        before["funnel"]["clicked"],
        json!({"total": 4, "unique_contacts": 2})
    );
    g.stop().await;

    let g = start().await;
    // A finished job is restored in the background after a start: 503 until then.
    let path = format!("/v1/jobs/{id}/report");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while g.req(Method::GET, &path).send().await.unwrap().status() == 503 {
        assert!(
            std::time::Instant::now() < deadline,
            "the job was never restored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = g.report(&path).await;
    assert_eq!(after["funnel"]["clicked"], before["funnel"]["clicked"]);
    assert_eq!(after["links"], before["links"]);
    assert_eq!(after["series"], before["series"]);
    g.stop().await;
}
