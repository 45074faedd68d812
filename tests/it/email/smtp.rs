//! A marketing email through the SMTP provider: its headers and MIME as received, opens and
//! clicks from the received HTML and text in the job report, the one-click unsubscribe from
//! its `List-Unsubscribe` header, and a DSN bounce suppressing the address.

use std::time::Duration;

use herald::config::{PriceConfig, ProviderKind, Secret, SmtpConfig, SmtpTls};
use herald::domain::Channel;
use herald_testkit::signed::{with_callbacks, SECRET};
use herald_testkit::Gateway;
use reqwest::Method;
use serde_json::{json, Value};

use super::{decoded, header, Relay, PASSWORD, USER};

const CSV: &str = "contact_id,phone,email,timezone,email_consent,first_name\n\
                   a,+8613123079337,Li.Wei@Example.COM,Asia/Shanghai,opt_in,Wei\n\
                   b,,b@example.org,Asia/Shanghai,opt_in,Bo\n";

async fn gateway(relay: &Relay) -> Gateway {
    gateway_with(relay, SmtpTls::None, None).await
}

async fn gateway_with(relay: &Relay, tls: SmtpTls, ca_file: Option<String>) -> Gateway {
    let port = relay.port;
    let g = Gateway::start_with(move |c| {
        with_callbacks(c);
        let mut p = c.providers[0].clone();
        p.name = "mail".into();
        p.kind = ProviderKind::Smtp;
        p.channel = Channel::Email;
        p.callback_secrets = vec![Secret::new(SECRET)];
        p.ca_file = ca_file;
        p.smtp = Some(SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls,
            username: Some(USER.into()),
            password_env: Some("HERALD_TEST_SMTP_PASSWORD".into()),
            password: Some(Secret::new(PASSWORD)),
            connections: 4,
            from_address: "news@example.com".into(),
            from_name: Some("Example News".into()),
            unsubscribe_mailto: None,
            timeout_ms: 5_000,
        });
        c.prices.push(PriceConfig {
            provider: "mail".into(),
            channel: Channel::Email,
            country: "*".into(),
            unit_micros: 2_000,
        });
        c.providers.push(p);
    })
    .await;
    g.load_csv(CSV).await;
    g
}

fn email_job(purpose: &str, contacts: &[&str]) -> Value {
    let contacts: Vec<Value> = contacts.iter().map(|c| json!({"contact_id": c})).collect();
    json!({
        "campaign_id": "mail-test",
        "channel": "email",
        "purpose": purpose,
        "template": {
            "subject": "Sale for {{first_name}}",
            "text": "Hi {{first_name}}, see https://shop.example.com/sale today.",
            "html": "<p>Hi {{first_name}}, <a href=\"https://shop.example.com/sale\">the sale</a>.</p>"
        },
        "audience": { "contacts": contacts },
    })
}

async fn run(g: &Gateway, job: &Value) -> (String, Value) {
    let (s, body) = g.submit(job).await;
    assert_eq!(s, 201, "{body}");
    let done = g.wait_completed(&body, Duration::from_secs(20)).await;
    (body["id"].as_str().expect("id").to_string(), done)
}

/// The path (`/x/TOKEN`) of the first link under `base` + `prefix` in `text`.
fn path_after(text: &str, prefix: &str) -> String {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix} in {text}"));
    let token: String = text[at + prefix.len()..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    format!("{prefix}{token}")
}

#[tokio::test]
async fn a_marketing_email_arrives_as_mime_and_its_opens_clicks_and_unsubscribe_come_back() {
    let relay = Relay::start();
    let g = gateway(&relay).await;
    let (id, done) = run(&g, &email_job("marketing", &["a"])).await;
    assert_eq!(done["counts"]["sent"], 1, "{done:#}");
    let got = relay.wait_for(1).await;
    let m = &got[0];
    assert_eq!(m["authenticated"], true, "the relay required AUTH");
    assert_eq!(m["mail_from"], "news@example.com");
    assert_eq!(m["rcpt_tos"], json!(["Li.Wei@example.com"]));
    let raw = m["data"].as_str().expect("data");

    assert_eq!(
        header(raw, "From").as_deref(),
        Some("\"Example News\" <news@example.com>")
    );
    assert_eq!(header(raw, "To").as_deref(), Some("Li.Wei@example.com"));
    assert_eq!(header(raw, "Subject").as_deref(), Some("Sale for Wei"));
    let message_id = g.recipients(&id).await[0]["message_id"]
        .as_str()
        .expect("message id")
        .to_string();
    assert_eq!(header(raw, "X-Herald-Message-Id"), Some(message_id.clone()));
    assert_eq!(
        header(raw, "Message-ID"),
        Some(format!("<{message_id}@example.com>"))
    );
    assert!(header(raw, "Content-Type").is_some_and(|c| c.starts_with("multipart/alternative")));
    let body = decoded(raw);
    assert!(body.contains("Content-Type: text/plain"), "{body}");
    assert!(body.contains("Content-Type: text/html"), "{body}");
    assert_eq!(
        header(raw, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let unsubscribe = header(raw, "List-Unsubscribe").expect("List-Unsubscribe");
    assert!(
        unsubscribe.starts_with("<https://hrld.io/u/"),
        "{unsubscribe}"
    );

    // The tracked link of the text part and the pixel of the HTML part, as a client follows
    // them: the report shows the click and the open.
    let click = path_after(&body, "/c/");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = no_redirects.get(g.url(&click)).send().await.expect("click");
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("https://shop.example.com/sale")
    );
    let open = path_after(&body, "/o/");
    let r = g.req(Method::GET, &open).send().await.expect("open");
    assert_eq!(r.status(), 200);
    let f = &g.report(&format!("/v1/jobs/{id}/report")).await["funnel"];
    assert_eq!(f["clicked"]["total"], 1, "{f:#}");
    assert_eq!(f["opened"]["total"], 1, "{f:#}");

    // The one-click unsubscribe as a mailbox provider posts it (RFC 8058); the page a person
    // sees on GET unsubscribes nobody by itself.
    let path = path_after(&unsubscribe, "/u/");
    let page = g.req(Method::GET, &path).send().await.expect("page");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("text").contains("method=\"post\""));
    let r = g
        .req(Method::POST, &path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("unsubscribe");
    assert_eq!(r.status(), 200);
    let (second, _) = run(&g, &email_job("marketing", &["a", "b"])).await;
    let lines = g.recipients(&second).await;
    let reason = |c: &str| {
        lines
            .iter()
            .find(|l| l["contact_id"] == c)
            .map(|l| l["reason"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(reason("a"), "opted_out", "{lines:?}");
    assert_eq!(reason("b"), Value::Null, "{lines:?}");
    // A token altered by one character names nobody.
    let forged = path.replace("/u/", "/u/x");
    let r = g.req(Method::POST, &forged).send().await.expect("forged");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_hard_bounce_makes_the_message_undelivered_and_suppresses_the_address() {
    let relay = Relay::start();
    let g = gateway(&relay).await;
    let (id, done) = run(&g, &email_job("transactional", &["a"])).await;
    assert_eq!(done["counts"]["sent"], 1, "{done:#}");
    let got = relay.wait_for(1).await;
    let raw = got[0]["data"].as_str().expect("data");
    assert!(
        header(raw, "List-Unsubscribe").is_none(),
        "transactional email"
    );
    let message_id = header(raw, "X-Herald-Message-Id").expect("id header");
    let dsn = format!(
        "From: MAILER-DAEMON@mx.example.net\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.example.net\r\n\r\n\
         Final-Recipient: rfc822; Li.Wei@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
         --B\r\nContent-Type: text/rfc822-headers\r\n\r\nX-Herald-Message-Id: {message_id}\r\n\r\n--B--\r\n"
    );
    let (status, answer) = g.post_signed("/v1/callbacks/mail/bounces", &dsn).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["applied"], 1, "{answer}");
    assert_eq!(answer["suppressed"], 1, "{answer}");
    g.wait_until(&id, Duration::from_secs(10), |j| {
        j["counts"]["undelivered"] == 1
    })
    .await;
    let (second, _) = run(&g, &email_job("transactional", &["a"])).await;
    assert_eq!(g.recipients(&second).await[0]["reason"], "suppressed");
    // The bounced message was the default tenant's: another tenant with the same address
    // in its own book still sends to it.
    let key: Value = g
        .req(Method::POST, "/v1/keys")
        .json(&json!({"name": "t", "tenant": "acme", "scopes": ["jobs:write", "jobs:read", "snapshot:write"]}))
        .send()
        .await
        .expect("key")
        .json()
        .await
        .expect("json");
    let acme = key["key"].as_str().expect("token").to_string();
    let upload = g
        .http
        .put(g.url("/v1/snapshot"))
        .bearer_auth(&acme)
        .header("content-type", "text/csv")
        .body(CSV)
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), 200);
    let submitted: Value = g
        .http
        .post(g.url("/v1/jobs"))
        .bearer_auth(&acme)
        .json(&email_job("transactional", &["a"]))
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("json");
    let acme_job = submitted["id"].as_str().expect("id");
    let started = std::time::Instant::now();
    loop {
        let job: Value = g
            .http
            .get(g.url(&format!("/v1/jobs/{acme_job}")))
            .bearer_auth(&acme)
            .send()
            .await
            .expect("job")
            .json()
            .await
            .expect("json");
        if job["status"] == "completed" {
            assert_eq!(job["counts"]["sent"], 1, "{job:#}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{job:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Unsigned, it changes nothing.
    let r = g
        .req(Method::POST, "/v1/callbacks/mail/bounces")
        .body(dsn)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn email_template_errors_name_the_part() {
    let relay = Relay::start();
    let g = gateway(&relay).await;
    let mut no_subject = email_job("marketing", &["a"]);
    no_subject["template"]["subject"] = json!(" ");
    let mut bad_html = email_job("marketing", &["a"]);
    bad_html["template"]["html"] = json!("<p>Hi {{first_name</p>");
    let mut html_on_sms = email_job("marketing", &["a"]);
    html_on_sms["channel"] = json!("sms");
    html_on_sms["template"] = json!({"body": "Hi", "html": "<p>Hi</p>"});
    let mut two_lines = email_job("marketing", &["a"]);
    two_lines["template"]["subject"] = json!("Sale\r\nBcc: x@example.com");
    for (job, field) in [
        (no_subject, "template.subject"),
        (bad_html, "template.html"),
        (html_on_sms, "template.html"),
        (two_lines, "template.subject"),
    ] {
        let (status, e) = g.submit(&job).await;
        assert_eq!(status, 400, "{e}");
        assert_eq!(e["error"]["field"], field, "{e}");
    }
}

#[tokio::test]
async fn starttls_to_a_relay_whose_certificate_chains_to_the_ca_file() {
    let ca = herald_testkit::https::TestCa::new();
    let (cert, key) = ca.server_files();
    let relay = Relay::start_tls(&cert, &key);
    let g = gateway_with(&relay, SmtpTls::Starttls, Some(ca.ca_file())).await;
    let (_, done) = run(&g, &email_job("transactional", &["a"])).await;
    assert_eq!(done["counts"]["sent"], 1, "{done:#}");
    let got = relay.wait_for(1).await;
    assert_eq!(got[0]["tls"], true, "sent over STARTTLS");
    assert_eq!(got[0]["authenticated"], true, "AUTH over TLS");
}

#[tokio::test]
async fn implicit_tls_to_a_relay_whose_certificate_chains_to_the_ca_file() {
    let ca = herald_testkit::https::TestCa::new();
    let (cert, key) = ca.server_files();
    let relay = Relay::start_implicit_tls(&cert, &key);
    let g = gateway_with(&relay, SmtpTls::Implicit, Some(ca.ca_file())).await;
    let (_, done) = run(&g, &email_job("transactional", &["a", "b"])).await;
    // The relay's port speaks only TLS: a message got through only over a handshake that
    // checked the relay's certificate against the CA file.
    assert_eq!(done["counts"]["sent"], 2, "{done:#}");
    let got = relay.wait_for(2).await;
    assert_eq!(got[0]["authenticated"], true, "AUTH over implicit TLS");
}
