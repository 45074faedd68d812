//! Job and campaign reports over HTTP: the funnel across two jobs of one campaign (receipts,
//! clicks, an opt-out after the send), rates, cost breakdowns, the series, and CSV.

use std::time::Duration;

use herald_testkit::signed::{receipt, sandbox_id, with_callbacks};
use herald_testkit::{contacts_csv, sms_job, Gateway};
use reqwest::Method;
use serde_json::{json, Value};

async fn run(g: &Gateway, campaign: &str, contacts: &[&str]) -> (String, Vec<String>) {
    let audience: Vec<Value> = contacts.iter().map(|c| json!({"contact_id": c})).collect();
    let (s, body) = g
        .submit(&sms_job(
            campaign,
            "Spring sale https://shop.example/s",
            Value::Array(audience),
        ))
        .await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    g.wait_status(&id, "completed", Duration::from_secs(10))
        .await;
    let ids = g
        .recipients(&id)
        .await
        .iter()
        .map(|l| sandbox_id(l["message_id"].as_str().unwrap_or("")))
        .collect();
    (id, ids)
}

#[tokio::test]
async fn a_campaign_report_adds_up_its_jobs() {
    let g = Gateway::start_with(with_callbacks).await;
    g.load_csv(&contacts_csv(6)).await;
    let (a, a_ids) = run(&g, "spring", &["c0", "c1", "c2", "ghost"]).await;
    let (b, b_ids) = run(&g, "spring", &["c3", "c4", "c2"]).await;
    let (other, _) = run(&g, "autumn", &["c5"]).await;

    let receipts = json!([
        receipt(&a_ids[0], "delivered"),
        receipt(&a_ids[1], "undelivered"),
        receipt(&b_ids[0], "delivered"),
        receipt(&b_ids[2], "delivered"),
        receipt(&b_ids[1], "expired"),
    ]);
    let (s, t) = g
        .post_signed("/v1/callbacks/sandbox/receipts", &receipts.to_string())
        .await;
    assert_eq!((s, t["applied"].as_u64()), (200, Some(5)));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (job, recipient) in [(&a, 0), (&a, 0), (&a, 2), (&b, 2)] {
        let r = http
            .get(g.url(&format!("/c/{}", g.token(job, recipient, 0))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
    }
    // c3 was sent a message, then replied STOP.
    let (_, t) = g
        .post_signed(
            "/v1/callbacks/sandbox/inbound",
            &json!({"from": "+8613123000003", "text": "STOP"}).to_string(),
        )
        .await;
    assert_eq!(t["opted_out"], 1);

    let r = g.report("/v1/campaigns/spring/report").await;
    assert_eq!(r["scope"]["kind"], "campaign");
    assert_eq!(r["scope"]["jobs"], json!([a, b]));
    let f = &r["funnel"];
    assert_eq!(f["audience"], 7);
    assert_eq!(
        f["rejected"],
        json!({"total": 1, "by_reason": {"unknown_contact": 1}})
    );
    assert_eq!(f["sent"], 6);
    assert_eq!(f["delivered"], 3);
    assert_eq!(f["undelivered"], 1);
    assert_eq!(f["expired"], 1);
    assert_eq!(f["awaiting_receipt"], 1);
    assert_eq!(f["clicked"], json!({"total": 4, "unique_contacts": 2}));
    assert_eq!(f["opened"]["unique_contacts"], 2, "a click implies an open");
    assert_eq!(f["opted_out_after_send"], 1);
    let rates = &r["rates"];
    assert_eq!(rates["sent_of_audience"], 0.8571);
    assert_eq!(rates["delivered_of_sent"], 0.5);
    assert_eq!(rates["clicked_of_delivered"], 0.6667);
    assert_eq!(rates["opted_out_of_sent"], 0.1667);
    let cost = &r["cost"];
    assert_eq!(cost["total_micros"], json!({"CNY": 270_000}));
    assert_eq!(
        cost["by_country"],
        json!([{"key": "CN", "currency": "CNY", "messages": 6, "parts": 6, "cost_micros": 270_000}])
    );
    assert_eq!(cost["by_channel"][0]["key"], "sms");
    assert_eq!(cost["by_provider"][0]["key"], "sandbox");
    assert_eq!(r["links"].as_array().unwrap().len(), 2);
    let series = r["series"].as_array().unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0]["minute"], "2026-11-23T04:00:00Z");
    assert_eq!(series[0]["sent"], 6);
    assert_eq!(series[0]["delivered"], 3);
    assert_eq!(series[0]["clicked"], 4);

    // One job alone.
    let ra = g.report(&format!("/v1/jobs/{a}/report")).await;
    assert_eq!(ra["funnel"]["sent"], 3);
    assert_eq!(
        ra["funnel"]["clicked"],
        json!({"total": 3, "unique_contacts": 2})
    );
    assert_eq!(ra["funnel"]["opted_out_after_send"], 0);
    let ro = g.report(&format!("/v1/jobs/{other}/report")).await;
    assert_eq!(ro["funnel"]["audience"], 1);

    // CSV: one figure per row.
    let resp = g
        .req(Method::GET, "/v1/campaigns/spring/report?format=csv")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = resp.text().await.unwrap();
    assert!(csv.starts_with("metric,dimension,value\n"), "{csv}");
    for row in [
        "funnel.sent,,6",
        "funnel.clicked.unique_contacts,,2",
        "rejected,unknown_contact,1",
        "rate.delivered_of_sent,,0.5000",
        "cost.by_country.cost_micros,CN CNY,270000",
        "series.sent,2026-11-23T04:00:00Z,6",
    ] {
        assert!(csv.lines().any(|l| l == row), "missing {row}:\n{csv}");
    }

    for (path, status) in [
        ("/v1/campaigns/nope/report", 404),
        ("/v1/jobs/job_00000000000000000000000000000000/report", 404),
        ("/v1/campaigns/spring/report?format=xml", 400),
    ] {
        let r = g.req(Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
    }
    let r = g
        .http
        .get(g.url("/v1/campaigns/spring/report"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// The campaign id and link targets are upstream text: in the report CSV none of them may
/// run as a formula in a spreadsheet, while the figures stay numbers.
#[tokio::test]
async fn the_report_csv_neutralises_formulas_in_text_cells() {
    let g = Gateway::start().await;
    g.load_csv(&contacts_csv(2)).await;
    let campaign = "=HYPERLINK(\"http://evil.example/x\",\"open\")";
    let (job, _) = run(&g, campaign, &["c0", "c1", "ghost"]).await;
    for path in [
        format!(
            "/v1/campaigns/{}/report?format=csv",
            herald_testkit::path_segment(campaign)
        ),
        format!("/v1/jobs/{job}/report?format=csv"),
    ] {
        let resp = g.req(Method::GET, &path).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let csv = resp.text().await.unwrap();
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
        let formula = |c: &str| c.starts_with(['=', '+', '-', '@', '\t', '\r']);
        for row in &rows {
            assert!(
                !formula(&row[1]),
                "dimension would run as a formula: {row:?}"
            );
            if matches!(&row[0], "scope.kind" | "scope.id" | "scope.job") {
                assert!(!formula(&row[2]), "value would run as a formula: {row:?}");
            } else {
                assert!(
                    row[2].is_empty() || row[2].parse::<f64>().is_ok(),
                    "{row:?}"
                );
            }
        }
        if path.starts_with("/v1/campaigns") {
            assert!(
                csv.lines().any(|l| l
                    == "scope.id,,\"'=HYPERLINK(\"\"http://evil.example/x\"\",\"\"open\"\")\""),
                "{csv}"
            );
        }
        assert!(csv.lines().any(|l| l == "funnel.sent,,2"), "{csv}");
    }
}
