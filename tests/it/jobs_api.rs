//! Black-box tests of the jobs API against a real gateway over HTTP.

use std::time::Duration;

use herald_testkit::{sms_job, Gateway};
use reqwest::Method;
use serde_json::{json, Value};

const HEADER: &str = "contact_id,phone,email,timezone,tags,sms_consent,email_consent,push_consent,updated_at,first_name,city\n";

fn snapshot_csv() -> String {
    let rows = [
        "ok1,+8613123079337,,Asia/Shanghai,vip,opt_in,,,,Wei,Shanghai",
        "ok2,131 2685 9660,,Asia/Shanghai,,opt_in,,,,Fang,Shanghai",
        "nophone,,,Asia/Shanghai,,opt_in,,,,Na,Chengdu",
        "badphone,+86131234365495,,Asia/Shanghai,,opt_in,,,,Yan,Wuhan",
        "landline,010 1252 0004,,Asia/Shanghai,,opt_in,,,,Hui,Beijing",
        "suppr,+8613123442056,,Asia/Shanghai,,opt_in,,,,Jun,Beijing",
        "optout,+8613123067884,,Asia/Shanghai,,opt_out,,,,Min,Shenzhen",
        "noconsent,+8613127826024,,Asia/Shanghai,,,,,,Lei,Hangzhou",
        "novar,+8613123452448,,Asia/Shanghai,,opt_in,,,,,Shanghai",
        "capped,+8613123450506,,Asia/Shanghai,,opt_in,,,,Tao,Shanghai",
        "moved,+8613128922942,,Asia/Shanghai,,opt_in,,,,Ping,Shanghai",
        "ny,+8613123412261,,America/New_York,,opt_in,,,,Ann,New York",
        "tx_only,+8613126264366,,Asia/Shanghai,,,,,,Bo,Shanghai",
    ];
    let mut s = HEADER.to_string();
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s
}

fn one_cap_per_day(c: &mut herald::config::Config) {
    c.policy.frequency_caps.truncate(1);
    c.policy.frequency_caps[0].max = 1;
}

async fn gateway() -> Gateway {
    let g = Gateway::start_with(one_cap_per_day).await;
    g.load_csv(&snapshot_csv()).await;
    g
}

fn by_contact(lines: &[Value], id: &str) -> Value {
    lines
        .iter()
        .find(|l| l["contact_id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn every_rejection_reason_is_reported_in_order() {
    let g = gateway().await;
    let r = g
        .req(Method::PUT, "/v1/suppressions")
        .body("{\"phone\":\"+86 131 2344 2056\"}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Use the one daily cap slot of `capped` first.
    let (s, first) = g
        .submit(&sms_job(
            "warmup",
            "Hi {{first_name}}",
            json!([{"contact_id": "capped"}]),
        ))
        .await;
    assert_eq!(s, 201, "{first}");
    g.wait_completed(&first, Duration::from_secs(5)).await;

    let mut job = sms_job(
        "reasons",
        "Hi {{first_name}}, sale in {{city}}",
        json!([
            {"contact_id": "ok1"}, {"contact_id": "ok1"}, {"contact_id": "ghost"},
            {"contact_id": "nophone"}, {"contact_id": "badphone"}, {"contact_id": "landline"},
            {"contact_id": "moved", "phone": "+8613123593745"}, {"contact_id": "suppr"},
            {"contact_id": "optout"}, {"contact_id": "noconsent"}, {"contact_id": "novar"},
            {"contact_id": "capped"}, {"contact_id": "ok2", "phone": "13126859660"}
        ]),
    );
    job["phone_mismatch"] = json!("reject");
    let (s, body) = g.submit(&job).await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().unwrap();
    let done = g.wait_status(id, "completed", Duration::from_secs(5)).await;
    let c = &done["counts"];
    assert_eq!(c["audience"], 13);
    assert_eq!(c["sent"], 2, "{c:#}");
    assert_eq!(c["accepted"], 2);
    for reason in [
        "duplicate",
        "unknown_contact",
        "missing_phone",
        "invalid_phone",
        "not_mobile",
        "phone_mismatch",
        "suppressed",
        "opted_out",
        "no_consent",
        "missing_variable",
        "frequency_capped",
    ] {
        assert_eq!(c["rejected"][reason], 1, "{reason}: {c:#}");
    }
    let lines = g.recipients(id).await;
    assert_eq!(lines.len(), 13);
    assert_eq!(
        lines[1]["reason"], "duplicate",
        "the second ok1 is the duplicate"
    );
    assert_eq!(by_contact(&lines, "moved")["reason"], "phone_mismatch");
    assert_eq!(by_contact(&lines, "ok2")["outcome"], "sent");
    assert!(by_contact(&lines, "ok2")["message_id"]
        .as_str()
        .unwrap()
        .starts_with("msg_"));
    assert_eq!(done["progress"], 1.0);
}

#[tokio::test]
async fn a_changed_phone_is_corrected_to_the_snapshot() {
    let g = gateway().await;
    let job = sms_job(
        "fix",
        "Hello",
        json!([{"contact_id": "moved", "phone": "+8613123593745"}, {"contact_id": "ok1", "phone": "+8613123079337"}]),
    );
    let (s, body) = g.submit(&job).await;
    assert_eq!(s, 201, "{body}");
    let done = g.wait_completed(&body, Duration::from_secs(5)).await;
    assert_eq!(done["counts"]["sent"], 2);
    assert_eq!(done["counts"]["phone_corrected"], 1);
}

#[tokio::test]
async fn transactional_needs_no_opt_in_but_respects_opt_out() {
    let g = gateway().await;
    let mut job = sms_job(
        "otp",
        "Your code is {{code}}",
        json!([{"contact_id": "tx_only"}, {"contact_id": "optout"}]),
    );
    job["purpose"] = json!("transactional");
    job["variables"] = json!({"code": 123456});
    let (_, body) = g.submit(&job).await;
    let done = g.wait_completed(&body, Duration::from_secs(5)).await;
    assert_eq!(done["counts"]["sent"], 1);
    assert_eq!(done["counts"]["rejected"]["opted_out"], 1);
}

#[tokio::test]
async fn gsm7_and_ucs2_parts_and_cost_are_counted_as_billed() {
    let g = gateway().await;
    // 161 GSM-7 characters: two parts. A 71-character Chinese text: UCS-2, two parts.
    let gsm = "a".repeat(161);
    let ucs2 = "优".repeat(71);
    let (_, a) = g
        .submit(&sms_job("gsm", &gsm, json!([{"contact_id": "ok1"}])))
        .await;
    let (_, b) = g
        .submit(&sms_job("ucs", &ucs2, json!([{"contact_id": "ok2"}])))
        .await;
    let (_, c) = g
        .submit(&sms_job(
            "one",
            &"€".repeat(80),
            json!([{"contact_id": "moved"}]),
        ))
        .await;
    let a = g.wait_completed(&a, Duration::from_secs(5)).await;
    let b = g.wait_completed(&b, Duration::from_secs(5)).await;
    let c = g.wait_completed(&c, Duration::from_secs(5)).await;
    assert_eq!(a["counts"]["segments"], 2);
    assert_eq!(b["counts"]["segments"], 2);
    // 80 euro signs are 160 septets (extension characters count two): one part.
    assert_eq!(c["counts"]["segments"], 1);
    // CN price is 45,000 micros (0.045 CNY) per part.
    assert_eq!(a["counts"]["cost_micros"], 90_000);
    assert_eq!(a["counts"]["currency"], "CNY");
}

#[tokio::test]
async fn idempotent_resubmission_returns_the_same_job_and_conflicts_on_a_new_body() {
    let g = gateway().await;
    let job = sms_job("idem", "Hi", json!([{"contact_id": "ok1"}]));
    let send = |body: &Value| {
        g.req(Method::POST, "/v1/jobs")
            .header("Idempotency-Key", "promo-42")
            .json(body)
            .send()
    };
    let r1 = send(&job).await.unwrap();
    assert_eq!(r1.status(), 201);
    let j1: Value = r1.json().await.unwrap();
    let r2 = send(&job).await.unwrap();
    assert_eq!(r2.status(), 200);
    let j2: Value = r2.json().await.unwrap();
    assert_eq!(j1["id"], j2["id"]);
    let other = sms_job("idem", "Hi there", json!([{"contact_id": "ok1"}]));
    let r3 = send(&other).await.unwrap();
    assert_eq!(r3.status(), 409);
    let e: Value = r3.json().await.unwrap();
    assert_eq!(e["error"]["code"], "idempotency_conflict");
    let done = g.wait_completed(&j1, Duration::from_secs(5)).await;
    assert_eq!(
        done["counts"]["sent"], 1,
        "the resubmission sent nothing more"
    );
    let list = g.get_json("/v1/jobs").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn quiet_hours_defer_until_the_contacts_morning() {
    let g = gateway().await;
    // 12:00 in Shanghai is 23:00 in New York: deferred to 08:00 New York (13:00Z).
    let (_, body) = g
        .submit(&sms_job(
            "night",
            "Hi",
            json!([{"contact_id": "ny"}, {"contact_id": "ok1"}]),
        ))
        .await;
    let id = body["id"].as_str().unwrap().to_string();
    let j = g
        .wait_until(&id, Duration::from_secs(5), |j| {
            j["counts"]["sent"] == 1 && j["counts"]["deferred"] == 1
        })
        .await;
    assert_eq!(j["status"], "running");
    assert_eq!(
        by_contact(&g.recipients(&id).await, "ny")["outcome"],
        "deferred"
    );
    g.clock.set("2026-11-23T12:59:00Z".parse().unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        g.job(&id).await["counts"]["deferred"],
        1,
        "still night in New York"
    );
    g.clock.set("2026-11-23T13:00:01Z".parse().unwrap());
    let done = g
        .wait_status(&id, "completed", Duration::from_secs(5))
        .await;
    assert_eq!(done["counts"]["sent"], 2);
    assert_eq!(done["counts"]["deferred"], 0);
}

#[tokio::test]
async fn quiet_hours_without_a_contact_zone_follow_libphonenumbers_zones() {
    let g = Gateway::start().await;
    // 19:30 in Jakarta, 21:30 in Jayapura. An Indonesian mobile's prefix places it in
    // Jakarta, so it is sent now rather than held until Jayapura's morning.
    g.clock.set("2026-11-23T12:30:00Z".parse().unwrap());
    g.load_csv(
        "contact_id,phone,sms_consent,first_name\n\
         jkt,+62812389628,opt_in,Ayu\n",
    )
    .await;
    let (s, body) = g
        .submit(&sms_job("evening", "Hi", json!([{"contact_id": "jkt"}])))
        .await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let j = g
        .wait_until(&id, Duration::from_secs(5), |j| {
            j["counts"]["sent"].as_u64().unwrap_or(0)
                + j["counts"]["deferred"].as_u64().unwrap_or(0)
                == 1
        })
        .await;
    assert_eq!(j["counts"]["sent"], 1, "{j:#}");
}

#[tokio::test]
async fn bad_input_is_a_4xx_naming_the_field() {
    let g = gateway().await;
    let cases = [
        (
            json!({"campaign_id": "x", "channel": "fax", "purpose": "marketing", "template": {"body": "a"}, "audience": {"contacts": []}}),
            400,
            "channel",
        ),
        (
            sms_job("x", "Hi {{name", json!([{"contact_id": "ok1"}])),
            400,
            "template.body",
        ),
        (
            sms_job("", "Hi", json!([{"contact_id": "ok1"}])),
            400,
            "campaign_id",
        ),
        (
            sms_job("x", "Hi", json!([{"contact_id": ""}])),
            400,
            "audience.contacts[0].contact_id",
        ),
        (
            sms_job("x", "Hi", json!([{"contact_id": "a", "colour": "red"}])),
            400,
            "audience.contacts[0]",
        ),
        (
            json!({"campaign_id": "x", "channel": "email", "purpose": "marketing", "template": {"subject": "s", "body": "a"}, "audience": {"contacts": [{"contact_id": "ok1"}]}}),
            422,
            "channel",
        ),
        (
            json!({"campaign_id": "x", "channel": "sms", "purpose": "marketing", "template": {"body": "a"}}),
            400,
            "audience",
        ),
        (
            json!({"campaign_id": "x", "channel": "sms", "purpose": "marketing", "template": {"body": "a"}, "audience": {"segment": "city = "}}),
            400,
            "audience.segment",
        ),
    ];
    for (body, status, field) in cases {
        let (s, e) = g.submit(&body).await;
        assert_eq!(s, status, "{body} -> {e}");
        assert!(
            e["error"]["field"]
                .as_str()
                .unwrap_or("")
                .starts_with(field),
            "{field} not named in {e}"
        );
    }
    let r = g
        .req(Method::POST, "/v1/jobs")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = g
        .req(Method::GET, "/v1/jobs/job_00000000000000000000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn every_v1_route_needs_a_key_but_health_does_not() {
    let g = gateway().await;
    let r = g.http.get(g.url("/v1/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = g
        .http
        .get(g.url("/v1/jobs"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = g.http.get(g.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_segment_selects_its_audience_from_the_snapshot() {
    let g = gateway().await;
    let job = json!({
        "campaign_id": "seg", "channel": "sms", "purpose": "marketing",
        "template": {"body": "Hi {{first_name}}"},
        "audience": {"segment": "city = \"Shanghai\" and not tag:vip"}
    });
    let (s, body) = g.submit(&job).await;
    assert_eq!(s, 201, "{body}");
    let done = g.wait_completed(&body, Duration::from_secs(5)).await;
    // Shanghai contacts without the vip tag: ok2, novar, capped, moved, tx_only.
    assert_eq!(done["counts"]["audience"], 5, "{done:#}");
}

/// A body with bytes after its JSON value is not the body the client meant to send: it is a
/// 400 that names the offset of the first extra byte, on every JSON body herald reads.
#[tokio::test]
async fn trailing_bytes_after_a_json_body_are_refused_with_their_offset() {
    let g = gateway().await;
    let job = sms_job("trail", "Hi", json!([{"contact_id": "ok1"}])).to_string();
    let post = |body: String, content_type: &'static str| {
        g.req(Method::POST, "/v1/jobs")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    for extra in ["x", "}", " {}", "\n1"] {
        let r = post(format!("{job}{extra}"), "application/json")
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{extra:?}");
        let e: Value = r.json().await.unwrap();
        let at = job.len() + extra.len() - extra.trim_start().len();
        let message = e["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(&format!("byte {at}")),
            "{extra:?}: {message}"
        );
    }
    // The job line of an NDJSON submission, and a suppressions line.
    let r = post(
        format!("{}x\n{{\"contact_id\": \"ok1\"}}\n", json!({"campaign_id": "n", "channel": "sms", "purpose": "marketing", "template": {"body": "Hi"}})),
        "application/x-ndjson",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = g
        .req(Method::PUT, "/v1/suppressions")
        .header("content-type", "application/x-ndjson")
        .body("{\"contact_id\": \"ok2\"}}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("byte 21"),
        "{e}"
    );
    // Trailing whitespace is fine.
    let r = post(format!("{job} \r\n\t\n"), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}
