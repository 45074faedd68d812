//! Inbound replies over HTTP: every opt-out keyword (full-width too) opts the sender out at
//! once, a running job skips them from then on, START opts back in, the consent history
//! shows every change, and a replayed request applies nothing twice, after a restart too.

use std::time::Duration;

use herald_testkit::signed::with_callbacks;
use herald_testkit::{sms_job, Gateway};
use reqwest::Method;
use serde_json::{json, Value};

const PATH: &str = "/v1/callbacks/sandbox/inbound";

fn phone(i: usize) -> String {
    format!("+86131{:08}", 23_000_000 + i)
}

fn contacts_csv(n: usize) -> String {
    let mut s = String::from("contact_id,phone,timezone,sms_consent,first_name\n");
    for i in 0..n {
        let tz = if i >= 50 {
            "America/New_York"
        } else {
            "Asia/Shanghai"
        };
        s.push_str(&format!("c{i},{},{tz},opt_in,N{i}\n", phone(i)));
    }
    s
}

async fn gateway() -> Gateway {
    let g = Gateway::start_with(with_callbacks).await;
    g.load_csv(&contacts_csv(52)).await;
    g
}

fn reply(i: usize, text: &str) -> String {
    json!({"from": phone(i), "text": text}).to_string()
}

async fn history(g: &Gateway, id: &str) -> Vec<Value> {
    let r = g
        .req(Method::GET, &format!("/v1/contacts/{id}/consent-history"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["changes"].as_array().unwrap().clone()
}

const KEYWORDS: [&str; 14] = [
    "STOP",
    "UNSUBSCRIBE",
    "STOPALL",
    "CANCEL",
    "END",
    "QUIT",
    "退订",
    "TD",
    "T",
    "ＳＴＯＰ",
    "ｔｄ",
    "stop",
    "Stop. Thank you",
    "退订。谢谢",
];

#[tokio::test]
async fn every_opt_out_keyword_opts_the_sender_out() {
    let g = gateway().await;
    for (i, k) in KEYWORDS.iter().enumerate() {
        let (s, t) = g.post_signed(PATH, &reply(i, k)).await;
        assert_eq!(s, 200, "{k}: {t}");
        assert_eq!(t["opted_out"], 1, "{k}: {t}");
        let h = history(&g, &format!("c{i}")).await;
        assert_eq!(h.len(), 1, "{k}");
        assert_eq!(h[0]["consent"], "opt_out");
        assert_eq!(h[0]["source"], "inbound:sandbox");
        assert_eq!(h[0]["channel"], "sms");
        assert_eq!(h[0]["at"], "2026-11-23T04:00:00Z");
    }
    // Replies that are not keyword replies change nothing.
    let n = KEYWORDS.len();
    let nd = format!(
        "{}\n{}\n",
        reply(n, "End of the day works for me"),
        reply(n + 1, "Thanks!")
    );
    let (_, t) = g.post_signed(PATH, &nd).await;
    assert_eq!(
        (t["received"].as_u64(), t["ignored"].as_u64()),
        (Some(2), Some(2))
    );

    // A job (transactional, so only an opt-out stops it) now skips every one of them.
    let audience: Vec<Value> = (0..n + 2)
        .map(|i| json!({"contact_id": format!("c{i}")}))
        .collect();
    let mut job = sms_job("after", "Your code is 1234", Value::Array(audience));
    job["purpose"] = json!("transactional");
    let (s, body) = g.submit(&job).await;
    assert_eq!(s, 201, "{body}");
    let done = g.wait_completed(&body, Duration::from_secs(5)).await;
    assert_eq!(done["counts"]["rejected"]["opted_out"], n as u64);
    assert_eq!(done["counts"]["sent"], 2);

    // START opts back in; the history keeps both changes, oldest first.
    let (_, t) = g.post_signed(PATH, &reply(0, "ｓｔａｒｔ")).await;
    assert_eq!(t["opted_in"], 1);
    let h = history(&g, "c0").await;
    let consents: Vec<&str> = h.iter().map(|c| c["consent"].as_str().unwrap()).collect();
    assert_eq!(consents, ["opt_out", "opt_in"]);
}

#[tokio::test]
async fn a_running_job_skips_a_contact_who_replied_stop() {
    let g = gateway().await;
    // Noon in Shanghai is night in New York: c50 and c51 wait for their morning (13:00Z).
    let (s, body) = g
        .submit(&sms_job(
            "night",
            "Hi {{first_name}}",
            json!([{"contact_id": "c0"}, {"contact_id": "c50"}, {"contact_id": "c51"}]),
        ))
        .await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let j = g
        .wait_until(&id, Duration::from_secs(5), |j| {
            j["counts"]["sent"] == 1 && j["counts"]["deferred"] == 2
        })
        .await;
    assert_eq!(j["status"], "running");
    let (_, t) = g.post_signed(PATH, &reply(50, "ＳＴＯＰ")).await;
    assert_eq!(t["opted_out"], 1);
    g.clock.set("2026-11-23T13:00:01Z".parse().unwrap());
    let done = g
        .wait_status(&id, "completed", Duration::from_secs(5))
        .await;
    assert_eq!(done["counts"]["sent"], 2);
    assert_eq!(done["counts"]["rejected"]["opted_out"], 1);
    let lines = g.recipients(&id).await;
    assert_eq!(lines[1]["contact_id"], "c50");
    assert_eq!(lines[1]["reason"], "opted_out");
    assert_eq!(lines[2]["outcome"], "sent");
}

#[tokio::test]
async fn a_replayed_reply_is_not_applied_twice() {
    let g = gateway().await;
    let now = g.unix_now();
    let stop = reply(3, "STOP");
    let (_, t) = g
        .post_signed_at(PATH, &stop, herald_testkit::signed::SECRET, now - 10)
        .await;
    assert_eq!(t["opted_out"], 1);
    let (_, t) = g.post_signed(PATH, &reply(3, "START")).await;
    assert_eq!(t["opted_in"], 1);
    // Someone replays the captured STOP inside the window: acknowledged, not applied.
    let (s, t) = g
        .post_signed_at(PATH, &stop, herald_testkit::signed::SECRET, now - 10)
        .await;
    assert_eq!(s, 200);
    assert_eq!(t["replayed"], true);
    assert_eq!(t["opted_out"], 0);
    let h = history(&g, "c3").await;
    assert_eq!(h.len(), 2);
    assert_eq!(h[1]["consent"], "opt_in");
    // Outside the window it is refused outright.
    let (s, _) = g
        .post_signed_at(PATH, &stop, herald_testkit::signed::SECRET, now - 400)
        .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn a_reply_replayed_after_a_restart_is_not_applied_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let g = Gateway::start_at(&data, with_callbacks).await;
    g.load_csv(&contacts_csv(52)).await;
    let now = g.unix_now();
    let start = reply(7, "START");
    let (_, t) = g
        .post_signed_at(PATH, &start, herald_testkit::signed::SECRET, now - 1)
        .await;
    assert_eq!(t["opted_in"], 1, "{t}");
    let (_, t) = g
        .post_signed_at(PATH, &reply(7, "STOP"), herald_testkit::signed::SECRET, now)
        .await;
    assert_eq!(t["opted_out"], 1, "{t}");
    g.stop().await;

    // Restarted on the same data, the captured START is replayed inside its window.
    let g = Gateway::start_at(&data, with_callbacks).await;
    let (s, t) = g
        .post_signed_at(PATH, &start, herald_testkit::signed::SECRET, now - 1)
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["replayed"], true, "{t}");
    assert_eq!(t["opted_in"], 0, "{t}");
    let h = history(&g, "c7").await;
    let consents: Vec<&str> = h.iter().map(|c| c["consent"].as_str().unwrap()).collect();
    assert_eq!(
        consents,
        ["opt_in", "opt_out"],
        "the contact stays opted out"
    );
    // And a marketing job does not reach them.
    let (s, body) = g
        .submit(&sms_job(
            "after-replay",
            "Hi",
            json!([{"contact_id": "c7"}]),
        ))
        .await;
    assert_eq!(s, 201, "{body}");
    let done = g.wait_completed(&body, Duration::from_secs(5)).await;
    assert_eq!(done["counts"]["rejected"]["opted_out"], 1, "{done:#}");
    g.stop().await;
}

#[tokio::test]
async fn unknown_senders_unsigned_requests_and_the_history_route() {
    let g = gateway().await;
    // A number no contact has: suppressed, so it is never messaged.
    let (_, t) = g
        .post_signed(
            PATH,
            &json!({"from": "+8613912345678", "text": "STOP"}).to_string(),
        )
        .await;
    assert_eq!(t["suppressed_unknown_sender"], 1);
    let r = g
        .http
        .post(g.url(PATH))
        .body(reply(1, "STOP"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        history(&g, "c1").await.is_empty(),
        "the unsigned STOP did nothing"
    );
    let r = g
        .http
        .get(g.url("/v1/contacts/c1/consent-history"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the history needs an API key");
    let r = g
        .req(Method::GET, "/v1/contacts/nobody/consent-history")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (s, e) = g.post_signed(PATH, r#"{"text": "STOP"}"#).await;
    assert_eq!(s, 400);
    assert_eq!(e["error"]["field"], "messages[0].from");
}
