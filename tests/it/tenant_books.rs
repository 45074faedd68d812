//! Each tenant's own contact book, over HTTP: two tenants with the same contact id reach
//! their own phones, a tenant's job never reaches a contact only in another tenant's book,
//! suppressions and opt-outs stay inside their tenant, and every book survives a restart.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use herald::config::ProviderKind;
use herald_testkit::{sms_job, Gateway};
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{json, Value};

/// Every (message id, destination) the recording provider accepted.
type Sent = Arc<Mutex<Vec<(String, String)>>>;

/// A provider on loopback that accepts every message and records where it went.
async fn recording_provider() -> (String, Sent) {
    let sent: Sent = Arc::default();
    let record = sent.clone();
    let handler = move |body: Bytes| {
        let record = record.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let msgs = match v.get("messages").and_then(Value::as_array) {
                Some(list) => list.clone(),
                None => vec![v.clone()],
            };
            let mut results = Vec::new();
            for m in &msgs {
                let id = m["id"].as_str().unwrap_or_default().to_string();
                let to = m["to"].as_str().unwrap_or_default().to_string();
                record.lock().push((id.clone(), to));
                results.push(
                    json!({"id": id, "provider_message_id": format!("p-{id}"), "status": "accepted"}),
                );
            }
            match v.get("messages") {
                Some(_) => json!({ "results": results }).to_string(),
                None => results.pop().unwrap_or(Value::Null).to_string(),
            }
        }
    };
    let app = axum::Router::new().route("/v1/messages", axum::routing::post(handler));
    let addr = herald_testkit::loopback::serve(app).await;
    (format!("http://{addr}/v1/messages"), sent)
}

/// Sends through the recording provider at `url`, without frequency caps.
fn through(url: &str) -> impl FnOnce(&mut herald::config::Config) {
    let url = url.to_string();
    move |c| {
        c.policy.frequency_caps.clear();
        let p = &mut c.providers[0];
        p.kind = ProviderKind::Http;
        p.url = Some(url);
        p.request_timeout_ms = 2_000;
    }
}

/// A gateway sending through the recording provider at `url`, on `data_dir` when given,
/// with the default tenant's book loaded.
async fn gateway(url: &str, data_dir: Option<&std::path::Path>) -> Gateway {
    let g = match data_dir {
        Some(dir) => Gateway::start_at(dir, through(url)).await,
        None => Gateway::start_with(through(url)).await,
    };
    // Sends hold while the installation's (default tenant's) book is stale.
    g.load_csv(DEFAULT_BOOK).await;
    g
}

/// The default tenant's book: d1, in Beijing like every tenant's c1.
const DEFAULT_BOOK: &str =
    "contact_id,phone,timezone,sms_consent,city\nd1,+8613123000009,Asia/Shanghai,opt_in,Beijing\n";

/// Makes a key of `tenant` with every scope but admin.
async fn tenant_key(g: &Gateway, tenant: &str) -> String {
    let body = json!({"name": "t", "tenant": tenant, "scopes": [
        "jobs:write", "jobs:read", "reports:read", "ledger:read", "snapshot:write",
        "suppressions:write", "webhooks:write"]});
    let (status, key) = call(g, herald_testkit::KEY, Method::POST, "/v1/keys", Some(body)).await;
    assert_eq!(status, 201, "{key}");
    key["key"].as_str().expect("token").to_string()
}

async fn call(
    g: &Gateway,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = g.http.request(method, g.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("send");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Replaces `token`'s tenant's book with `csv`.
async fn upload(g: &Gateway, token: &str, csv: &str) -> Value {
    let r = g
        .http
        .put(g.url("/v1/snapshot"))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200, "upload refused");
    r.json().await.expect("json")
}

/// Submits a job of `contacts` as `token`, waits until it completes; answers its id and
/// its recipients' report lines.
async fn run(g: &Gateway, token: &str, contacts: &[&str]) -> (String, Vec<Value>) {
    let audience: Vec<Value> = contacts.iter().map(|c| json!({"contact_id": c})).collect();
    let job = sms_job("books", "Hi", Value::Array(audience));
    let (status, created) = call(g, token, Method::POST, "/v1/jobs", Some(job)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let started = std::time::Instant::now();
    loop {
        let (_, job) = call(g, token, Method::GET, &format!("/v1/jobs/{id}"), None).await;
        if job["status"] == "completed" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = g
        .http
        .get(g.url(&format!("/v1/jobs/{id}/recipients")))
        .bearer_auth(token)
        .send()
        .await
        .expect("send");
    let lines = r
        .text()
        .await
        .expect("text")
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson"))
        .collect();
    (id, lines)
}

/// Where the provider was asked to send the message of each `sent` line.
fn destinations(sent: &Sent, lines: &[Value]) -> Vec<String> {
    let sent = sent.lock();
    lines
        .iter()
        .filter_map(|l| l["message_id"].as_str())
        .filter_map(|id| sent.iter().find(|(m, _)| m == id).map(|(_, to)| to.clone()))
        .collect()
}

const ACME_C1: &str = "+8613123000001";
const GLOBEX_C1: &str = "+8613123000002";

fn book(phone: &str) -> String {
    format!("contact_id,phone,timezone,sms_consent,city\nc1,{phone},Asia/Shanghai,opt_in,Beijing\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_with_the_same_contact_id_each_reach_their_own_phone() {
    let (url, sent) = recording_provider().await;
    let g = gateway(&url, None).await;
    let (acme, globex) = (tenant_key(&g, "acme").await, tenant_key(&g, "globex").await);
    upload(&g, &acme, &book(ACME_C1)).await;
    upload(&g, &globex, &book(GLOBEX_C1)).await;

    let (_, acme_lines) = run(&g, &acme, &["c1"]).await;
    let (_, globex_lines) = run(&g, &globex, &["c1"]).await;
    assert_eq!(acme_lines[0]["outcome"], "sent", "{acme_lines:?}");
    assert_eq!(globex_lines[0]["outcome"], "sent", "{globex_lines:?}");
    assert_eq!(destinations(&sent, &acme_lines), [ACME_C1]);
    assert_eq!(destinations(&sent, &globex_lines), [GLOBEX_C1]);

    // Each tenant reads its own book's status.
    let (_, status) = call(&g, &acme, Method::GET, "/v1/snapshot", None).await;
    assert_eq!(status["contacts"], 1, "{status}");
    let (_, status) = call(&g, herald_testkit::KEY, Method::GET, "/v1/snapshot", None).await;
    assert_eq!(
        status["contacts"], 1,
        "the default book is untouched: {status}"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_job_never_reaches_a_contact_only_in_another_book() {
    let (url, sent) = recording_provider().await;
    let g = gateway(&url, None).await;
    let acme = tenant_key(&g, "acme").await;
    // The installation's (default tenant's) book has d1; acme has none yet.
    let (_, lines) = run(&g, &acme, &["d1"]).await;
    assert_eq!(lines[0]["outcome"], "rejected", "{lines:?}");
    assert_eq!(lines[0]["reason"], "unknown_contact", "{lines:?}");

    // With a book of its own, still only its own contacts.
    upload(&g, &acme, &book(ACME_C1)).await;
    let (_, lines) = run(&g, &acme, &["d1", "c1"]).await;
    assert_eq!(lines[0]["reason"], "unknown_contact", "{lines:?}");
    assert_eq!(lines[1]["outcome"], "sent", "{lines:?}");
    // A segment selects from the tenant's book only (d1 is in Beijing too).
    let job = json!({
        "campaign_id": "seg", "channel": "sms", "purpose": "marketing",
        "template": {"body": "Hi"}, "audience": {"segment": "city = \"Beijing\""},
    });
    let (status, preview) = call(&g, &acme, Method::POST, "/v1/jobs?dry_run=true", Some(job)).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["eligible"], 1, "{preview}");
    let to: Vec<String> = sent.lock().iter().map(|(_, to)| to.clone()).collect();
    assert_eq!(to, [ACME_C1], "only acme's own contact was sent to");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_book_survives_a_restart() {
    let (url, sent) = recording_provider().await;
    let dir = tempfile::tempdir().expect("dir");
    let g = gateway(&url, Some(dir.path())).await;
    let acme = tenant_key(&g, "acme").await;
    g.load_csv(&book(GLOBEX_C1)).await;
    upload(&g, &acme, &book(ACME_C1)).await;
    let patch = g
        .http
        .patch(g.url("/v1/contacts"))
        .bearer_auth(&acme)
        .header("content-type", "application/x-ndjson")
        .body(r#"{"contact_id":"c2","phone":"+8613123000003","timezone":"Asia/Shanghai","sms_consent":"opt_in"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(patch.status(), 200);
    g.stop().await;

    // Started again on the same directory, loading nothing.
    let g = Gateway::start_at(dir.path(), through(&url)).await;
    let (_, status) = call(&g, &acme, Method::GET, "/v1/snapshot", None).await;
    assert_eq!(status["contacts"], 2, "{status}");
    let (_, lines) = run(&g, &acme, &["c1", "c2"]).await;
    let mut to = destinations(&sent, &lines);
    to.sort();
    assert_eq!(to, [ACME_C1, "+8613123000003"]);
    let (_, lines) = run(&g, herald_testkit::KEY, &["c1"]).await;
    assert_eq!(
        destinations(&sent, &lines),
        [GLOBEX_C1],
        "the default book too"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suppression_in_one_tenant_does_not_affect_the_other() {
    let (url, sent) = recording_provider().await;
    let g = gateway(&url, None).await;
    let (acme, globex) = (tenant_key(&g, "acme").await, tenant_key(&g, "globex").await);
    upload(&g, &acme, &book(ACME_C1)).await;
    upload(&g, &globex, &book(GLOBEX_C1)).await;
    let r = g
        .http
        .put(g.url("/v1/suppressions"))
        .bearer_auth(&acme)
        .header("content-type", "application/x-ndjson")
        .body("{\"contact_id\":\"c1\"}\n")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);

    let (_, lines) = run(&g, &acme, &["c1"]).await;
    assert_eq!(lines[0]["reason"], "suppressed", "{lines:?}");
    let (_, lines) = run(&g, &globex, &["c1"]).await;
    assert_eq!(lines[0]["outcome"], "sent", "{lines:?}");
    assert_eq!(destinations(&sent, &lines), [GLOBEX_C1]);
    // Nor can globex lift acme's entry.
    let (status, _) = call(&g, &globex, Method::DELETE, "/v1/suppressions/c1", None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&g, &acme, Method::DELETE, "/v1/suppressions/c1", None).await;
    assert_eq!(status, 204);
    g.stop().await;
}

const INBOUND: &str = "/v1/callbacks/sandbox/inbound";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_applies_in_every_tenant_whose_book_holds_the_number_and_only_there() {
    let (url, sent) = recording_provider().await;
    let g = Gateway::start_with(|c| {
        herald_testkit::signed::with_callbacks(c);
        through(&url)(c)
    })
    .await;
    g.load_csv(DEFAULT_BOOK).await;
    let (acme, globex) = (tenant_key(&g, "acme").await, tenant_key(&g, "globex").await);
    // The same person is acme's c1 and globex's g7; the default book does not have them.
    upload(&g, &acme, &book(ACME_C1)).await;
    let globex_book =
        format!("contact_id,phone,timezone,sms_consent\ng7,{ACME_C1},Asia/Shanghai,opt_in\n");
    upload(&g, &globex, &globex_book).await;

    let stop = json!({"from": ACME_C1, "text": "STOP"}).to_string();
    let (status, tally) = g.post_signed(INBOUND, &stop).await;
    assert_eq!(status, 200, "{tally}");
    assert_eq!(tally["opted_out"], 1, "{tally}");
    for (token, id) in [(&acme, "c1"), (&globex, "g7")] {
        let path = format!("/v1/contacts/{id}/consent-history");
        let (status, history) = call(&g, token, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{history}");
        assert_eq!(history["changes"][0]["consent"], "opt_out", "{history}");
        let (_, lines) = run(&g, token, &[id]).await;
        assert_eq!(lines[0]["reason"], "opted_out", "{lines:?}");
    }
    // The installation's contact with another number is untouched.
    let (_, lines) = run(&g, herald_testkit::KEY, &["d1"]).await;
    assert_eq!(lines[0]["outcome"], "sent", "{lines:?}");

    // A STOP from a number no book holds yet is kept: the number is suppressed for every
    // tenant with a book, so it holds once a book adds it.
    let stranger = "+8613123000077";
    let stop = json!({"from": stranger, "text": "STOP"}).to_string();
    let (_, tally) = g.post_signed(INBOUND, &stop).await;
    assert_eq!(tally["suppressed_unknown_sender"], 1, "{tally}");
    let patch = g
        .http
        .patch(g.url("/v1/contacts"))
        .bearer_auth(&acme)
        .header("content-type", "application/x-ndjson")
        .body(format!(
            r#"{{"contact_id":"c5","phone":"{stranger}","timezone":"Asia/Shanghai","sms_consent":"opt_in"}}"#
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(patch.status(), 200);
    let (_, lines) = run(&g, &acme, &["c5"]).await;
    assert_eq!(lines[0]["reason"], "suppressed", "{lines:?}");
    assert!(
        sent.lock()
            .iter()
            .all(|(_, to)| to != ACME_C1 && to != stranger),
        "nothing went to a number that stopped"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wechat_unfollow_opts_out_the_follower_in_every_tenant_whose_book_holds_it() {
    let g = crate::wechat_events::gateway().await;
    g.load_csv(DEFAULT_BOOK).await;
    let (acme, globex) = (tenant_key(&g, "acme").await, tenant_key(&g, "globex").await);
    let with_openid = |id: &str, openid: &str| {
        format!("contact_id,wechat_openid,wechat_consent\n{id},{openid},opt_in\n")
    };
    upload(&g, &acme, &with_openid("c1", "o-shared")).await;
    let globex_book =
        "contact_id,wechat_openid,wechat_consent\ng1,o-shared,opt_in\ng2,o-other,opt_in\n";
    upload(&g, &globex, globex_book).await;
    let unfollow = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o-shared]]></FromUserName>\
        <CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[unsubscribe]]></Event></xml>";
    let now = chrono::Utc::now().timestamp();
    let path = crate::wechat_events::query(now, "t1", "&openid=o-shared");
    let r = g
        .http
        .post(g.url(&path))
        .body(unfollow)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    for (token, id) in [(&acme, "c1"), (&globex, "g1")] {
        let path = format!("/v1/contacts/{id}/consent-history");
        let (status, history) = call(&g, token, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{history}");
        assert_eq!(
            history["changes"][0]["consent"], "opt_out",
            "{id}: {history}"
        );
        assert_eq!(history["changes"][0]["channel"], "wechat", "{history}");
    }
    let path = "/v1/contacts/g2/consent-history";
    let (_, history) = call(&g, &globex, Method::GET, path, None).await;
    assert_eq!(
        history["changes"],
        json!([]),
        "another follower is untouched: {history}"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenants_jobs_wait_only_for_its_own_book_to_be_fresh() {
    let (url, sent) = recording_provider().await;
    let g = gateway(&url, None).await;
    let acme = tenant_key(&g, "acme").await;
    let t0 = herald::clock::Clock::now(&*g.clock);
    let max_age = chrono::Duration::seconds(86_400);

    // A day and a minute on, the installation's book is stale; acme loads a fresh one, and
    // its job goes out.
    g.clock.set(t0 + max_age + chrono::Duration::seconds(60));
    upload(&g, &acme, &book(ACME_C1)).await;
    let (_, lines) = run(&g, &acme, &["c1"]).await;
    assert_eq!(destinations(&sent, &lines), vec![ACME_C1.to_string()]);

    // The installation's own job is refused: its book is the stale one.
    let job = |contact: &str| sms_job("books", "Hi", json!([{ "contact_id": contact }]));
    let (status, body) = call(
        &g,
        herald_testkit::KEY,
        Method::POST,
        "/v1/jobs",
        Some(job("d1")),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "snapshot_stale");

    // Another day on, acme's book is stale too.
    g.clock
        .set(t0 + max_age * 2 + chrono::Duration::seconds(120));
    let (status, body) = call(&g, &acme, Method::POST, "/v1/jobs", Some(job("c1"))).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "snapshot_stale");
    g.stop().await;
}
