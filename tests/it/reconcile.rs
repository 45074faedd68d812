//! Reconciliation of a provider invoice against the ledger, over real HTTP.

use std::time::Duration;

use herald_testkit::{sms_job, Gateway};
use reqwest::Method;
use serde_json::{json, Value};

fn contacts_csv(n: usize) -> String {
    let mut s = String::from("contact_id,phone,timezone,sms_consent,first_name\n");
    for i in 0..n {
        s.push_str(&format!(
            "c{i},+86131{:08},Asia/Shanghai,opt_in,N{i}\n",
            23_000_000 + i
        ));
    }
    s
}

/// Micros as a decimal in major units, the way an invoice writes them.
fn decimal(micros: i64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

async fn ledger_entries(g: &Gateway) -> Vec<Value> {
    g.ledger_entries("").await
}

async fn reconcile(g: &Gateway, query: &str, invoice: &str) -> reqwest::Response {
    g.req(Method::POST, &format!("/v1/ledger/reconcile{query}"))
        .header("content-type", "text/csv")
        .body(invoice.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_invoice_is_diffed_against_the_ledger() {
    let g = Gateway::start_with(|c| c.policy.frequency_caps.clear()).await;
    g.load_csv(&contacts_csv(5)).await;
    let audience: Vec<Value> = (0..5)
        .map(|i| json!({"contact_id": format!("c{i}")}))
        .collect();
    let (status, job) = g.submit(&sms_job("camp", "Hi", json!(audience))).await;
    assert_eq!(status, 201);
    g.wait_completed(&job, Duration::from_secs(10)).await;
    let entries = ledger_entries(&g).await;
    assert_eq!(entries.len(), 5);
    let id = |i: usize| entries[i]["message_id"].as_str().unwrap().to_string();
    let cost = |i: usize| entries[i]["cost_micros"].as_i64().unwrap();
    let parts = |i: usize| entries[i]["parts"].as_u64().unwrap();
    let provider = entries[0]["provider"].as_str().unwrap().to_string();

    let invoice = format!(
        "message_id,parts,charge,currency\n\
         {},{},{},CNY\n\
         {},{},{},CNY\n\
         msg_not_ours,1,0.045,CNY\n\
         msg_bad,1,forty-five,CNY\n",
        id(0),
        parts(0),
        decimal(cost(0)),
        id(1),
        parts(1),
        decimal(cost(1) + 1_000),
    );
    let r = reconcile(&g, &format!("?provider={provider}"), &invoice).await;
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["matched_by"], "message_id");
    assert_eq!(report["matched"]["count"], 2);
    assert_eq!(
        report["matched"]["totals"]["CNY"]["ledger_cost_micros"],
        cost(0) + cost(1)
    );
    assert_eq!(report["amount_differences"]["count"], 1);
    let diff = &report["amount_differences"]["items"][0];
    assert_eq!(diff["id"], id(1));
    assert_eq!(diff["line"], 3);
    assert_eq!(diff["ledger_cost_micros"], cost(1));
    assert_eq!(diff["invoice_charge_micros"], cost(1) + 1_000);
    assert_eq!(diff["difference_micros"], 1_000);
    assert_eq!(report["missing_in_ledger"]["count"], 1);
    assert_eq!(
        report["missing_in_ledger"]["items"][0]["id"],
        "msg_not_ours"
    );
    assert_eq!(report["missing_in_invoice"]["count"], 3);
    let missing: Vec<String> = report["missing_in_invoice"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(missing, vec![id(2), id(3), id(4)]);
    assert_eq!(report["parts_differences"]["count"], 0);
    assert_eq!(report["errors"]["count"], 1);
    assert_eq!(report["errors"]["items"][0]["line"], 5);
    let ledger_total: i64 = (0..5).map(cost).sum();
    let totals = &report["totals"]["CNY"];
    assert_eq!(totals["ledger_entries"], 5);
    assert_eq!(totals["ledger_cost_micros"], ledger_total);
    let invoice_total = cost(0) + cost(1) + 1_000 + 45_000;
    assert_eq!(totals["invoice_charge_micros"], invoice_total);
    assert_eq!(totals["difference_micros"], invoice_total - ledger_total);

    // The same differences as CSV.
    let r = reconcile(&g, "?format=csv", &invoice).await;
    assert_eq!(r.status(), 200);
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("kind,line,id,"));
    let kinds: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "missing_in_invoice").count(),
        3
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "amount_difference").count(),
        1
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "missing_in_ledger").count(),
        1
    );
    assert_eq!(kinds.iter().filter(|k| **k == "error").count(), 1);

    // An invoice keyed by the provider's ids, with integer micros.
    let pid = entries[0]["provider_message_id"].as_str().unwrap();
    let invoice = format!(
        "provider_message_id,parts,charge_micros\n{pid},9,{}\n",
        cost(0)
    );
    let report: Value = reconcile(&g, "", &invoice).await.json().await.unwrap();
    assert_eq!(report["matched_by"], "provider_message_id");
    assert_eq!(report["matched"]["count"], 1);
    assert_eq!(report["amount_differences"]["count"], 0);
    assert_eq!(report["parts_differences"]["count"], 1);
    assert_eq!(report["missing_in_invoice"]["count"], 4);

    // A window that excludes every entry leaves the invoice lines unmatched.
    let invoice = format!("message_id,charge\n{},0.045\n", id(0));
    let report: Value = reconcile(&g, "?provider=nobody", &invoice)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["missing_in_ledger"]["count"], 1);
    assert_eq!(report["missing_in_invoice"]["count"], 0);

    // A header without an id column, and a body that is not CSV.
    let r = reconcile(&g, "", "id,charge\nx,1\n").await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "header");
    let r = g
        .req(Method::POST, "/v1/ledger/reconcile")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}

/// Invoice ids are outside text echoed back: in the CSV answer none of them may run as a
/// formula in a spreadsheet, while a negative difference stays a number.
#[tokio::test]
async fn the_csv_answer_neutralises_formulas_and_keeps_numbers() {
    let g = Gateway::start_with(|c| c.policy.frequency_caps.clear()).await;
    g.load_csv(&contacts_csv(1)).await;
    let (status, job) = g
        .submit(&sms_job("camp", "Hi", json!([{"contact_id": "c0"}])))
        .await;
    assert_eq!(status, 201);
    g.wait_completed(&job, Duration::from_secs(10)).await;
    let entries = ledger_entries(&g).await;
    let id = entries[0]["message_id"].as_str().unwrap();
    let cost = entries[0]["cost_micros"].as_i64().unwrap();

    let hostile = ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "=cmd|' /C calc'!A0"];
    let mut invoice = format!("message_id,charge_micros\n{id},{}\n", cost - 5_000);
    for h in hostile {
        invoice.push_str(&format!("\"{h}\",1\n"));
    }
    let r = reconcile(&g, "?format=csv", &invoice).await;
    assert_eq!(r.status(), 200);
    let csv = r.text().await.unwrap();
    herald_testkit::assert_csv_cells_inert(
        &csv,
        &[
            "line",
            "ledger_cost_micros",
            "invoice_charge_micros",
            "difference_micros",
            "ledger_parts",
            "invoice_parts",
        ],
    );
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let ids: Vec<&str> = rows
        .iter()
        .filter(|r| &r[0] == "missing_in_ledger")
        .map(|r| &r[2])
        .collect();
    let expected: Vec<String> = hostile.iter().map(|h| format!("'{h}")).collect();
    assert_eq!(ids, expected, "{csv}");
    let diff = rows
        .iter()
        .find(|r| &r[0] == "amount_difference")
        .expect("the lower charge is a difference");
    assert_eq!(&diff[5], "-5000", "{csv}");
}
