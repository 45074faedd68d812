//! The cost ledger end to end: totals equal the job reports, the export streams every entry,
//! and `herald ledger verify` catches tampering.

use std::process::Command;
use std::time::Duration;

use herald_testkit::{contacts_csv, sms_job, Gateway};
use redb::ReadableTable;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn ledger_totals_equal_the_reports_and_verify_catches_tampering() {
    let mut g = Gateway::start_with(|c| {
        c.policy.frequency_caps.clear();
        c.providers[0].permanent_failure_rate = 0.05;
    })
    .await;
    g.load_csv(&contacts_csv(400)).await;
    let audience: Vec<Value> = (0..400)
        .map(|i| json!({"contact_id": format!("c{i}")}))
        .collect();
    let (_, a) = g
        .submit(&sms_job(
            "camp-a",
            "Hi {{first_name}}",
            json!(audience[..250]),
        ))
        .await;
    let (_, b) = g
        .submit(&sms_job("camp-b", &"长".repeat(80), json!(audience[250..])))
        .await;
    let a = g.wait_completed(&a, Duration::from_secs(10)).await;
    let b = g.wait_completed(&b, Duration::from_secs(10)).await;
    assert!(
        a["counts"]["failed"].as_u64().unwrap() > 0,
        "some sends failed permanently and cost nothing"
    );

    let summary = g.get_json("/v1/ledger/summary").await;
    let total = summary["totals"]["CNY"]["cost_micros"].as_i64().unwrap();
    let reports =
        a["counts"]["cost_micros"].as_i64().unwrap() + b["counts"]["cost_micros"].as_i64().unwrap();
    assert_eq!(total, reports);
    assert_eq!(
        summary["by_campaign"]["CNY"]["camp-b"]["cost_micros"],
        b["counts"]["cost_micros"]
    );
    assert_eq!(
        summary["by_campaign"]["CNY"]["camp-b"]["parts"],
        b["counts"]["segments"]
    );

    let csv = g
        .req(
            Method::GET,
            &format!("/v1/ledger?job_id={}&format=csv", a["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv.lines().count() as u64,
        1 + a["counts"]["sent"].as_u64().unwrap()
    );
    assert!(csv.starts_with("seq,kind,message_id"));

    // Stop the gateway (closing the database), then verify with the real binary.
    let data_dir = g
        .running
        .as_ref()
        .unwrap()
        .state
        .config
        .config
        .server
        .data_dir
        .clone();
    g.running.take().unwrap().stop().await;
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["ledger", "verify", "--data-dir", &data_dir])
            .output()
            .expect("run herald")
    };
    let ok = verify();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ledger intact"));

    // Change one entry's cost behind herald's back.
    {
        let db =
            redb::Database::create(std::path::Path::new(&data_dir).join("herald.redb")).unwrap();
        let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("ledger_blocks");
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(table).unwrap();
            let (key, block) = {
                let (k, v) = t.first().unwrap().unwrap();
                (k.value(), v.value().to_vec())
            };
            let mut entries = herald::ledger::store::read_block(key, &block).unwrap();
            entries[2].entry.cost_micros = herald::domain::Micros(1);
            t.insert(key, herald::ledger::store::write_block(&entries).as_slice())
                .unwrap();
        }
        w.commit().unwrap();
    }
    let bad = verify();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("entry 3"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// A campaign id is upstream text: in the CSV export it must not run as a formula when
/// finance opens the file in a spreadsheet, while the amounts stay numbers.
#[tokio::test]
async fn the_csv_export_neutralises_formulas_in_text_cells() {
    let g = Gateway::start_with(|c| c.policy.frequency_caps.clear()).await;
    g.load_csv(&contacts_csv(3)).await;
    let campaign = "=HYPERLINK(\"http://evil.example/x\",\"refund\")";
    let (status, job) = g
        .submit(&sms_job(
            campaign,
            "Hi",
            json!([{"contact_id": "c0"}, {"contact_id": "c1"}, {"contact_id": "c2"}]),
        ))
        .await;
    assert_eq!(status, 201, "{job}");
    g.wait_completed(&job, Duration::from_secs(10)).await;

    let csv = g
        .req(Method::GET, "/v1/ledger?format=csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    herald_testkit::assert_csv_cells_inert(
        &csv,
        &[
            "seq",
            "parts",
            "unit_price_micros",
            "cost_micros",
            "references",
        ],
    );
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    for row in &rows {
        assert_eq!(&row[4], format!("'{campaign}"), "{csv}");
        assert_eq!(&row[10], "45000", "{csv}");
    }
}
