//! Job budgets over real HTTP: a job stops before its spend would pass its budget, and a
//! resume with a raised budget finishes it without sending anyone twice.

use std::collections::HashSet;
use std::time::Duration;

use herald_testkit::{sms_job, Gateway};
use reqwest::Method;
use serde_json::{json, Value};

/// The sandbox's price of one SMS part to China, in micros.
const UNIT: i64 = 45_000;

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

fn budget_job(n: usize, budget: Value) -> Value {
    let audience: Vec<Value> = (0..n)
        .map(|i| json!({"contact_id": format!("c{i}")}))
        .collect();
    let mut job = sms_job("camp-budget", "Hi {{first_name}}", json!(audience));
    job["budget"] = budget;
    job
}

async fn resume(g: &Gateway, id: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = g.req(Method::POST, &format!("/v1/jobs/{id}/resume"));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_budget_stops_the_job_and_a_raised_one_finishes_it() {
    let g = Gateway::start_with(|c| c.policy.frequency_caps.clear()).await;
    let n = 10;
    g.load_csv(&contacts_csv(n)).await;

    // Four messages fit, the fifth would pass the budget.
    let budget = 4 * UNIT + UNIT / 2;
    let (status, job) = g
        .submit(&budget_job(
            n,
            json!({"amount_micros": budget, "currency": "CNY"}),
        ))
        .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let stopped = g
        .wait_until(&id, Duration::from_secs(10), |j| {
            j["status"] == "budget_exhausted"
                && j["counts"]["sent"].as_u64().unwrap()
                    + j["counts"]["over_budget"].as_u64().unwrap()
                    == n as u64
        })
        .await;
    let sent = stopped["counts"]["sent"].as_u64().unwrap();
    let cost = stopped["counts"]["cost_micros"].as_i64().unwrap();
    assert_eq!(sent, 4);
    assert!(cost <= budget);
    assert!(cost + UNIT > budget, "the next message would have fit");
    assert_eq!(stopped["counts"]["over_budget"], (n as u64 - sent));
    assert_eq!(stopped["budget"]["amount_micros"], budget);
    assert_eq!(stopped["budget"]["committed_micros"], cost);
    // It stays stopped.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let still = g.job(&id).await;
    assert_eq!(still["status"], "budget_exhausted");
    assert_eq!(still["counts"]["sent"], sent);
    assert_eq!(g.ledger_charges(&id).await.1, cost);

    // Resuming needs a higher budget, in the job's currency.
    let (status, err) = resume(&g, &id, None).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["field"], "budget.amount_micros");
    let (status, err) = resume(&g, &id, Some(json!({"budget": {"amount_micros": budget}}))).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["field"], "budget.amount_micros");
    let (status, err) = resume(
        &g,
        &id,
        Some(json!({"budget": {"amount_micros": budget * 10, "currency": "USD"}})),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["field"], "budget.currency");

    let raised = n as i64 * UNIT;
    let (status, resumed) = resume(
        &g,
        &id,
        Some(json!({"budget": {"amount_micros": raised, "currency": "CNY"}})),
    )
    .await;
    assert_eq!(status, 200, "{resumed}");
    let done = g
        .wait_status(&id, "completed", Duration::from_secs(10))
        .await;
    assert_eq!(done["counts"]["sent"], n as u64);
    assert_eq!(done["counts"]["over_budget"], 0);
    let cost = done["counts"]["cost_micros"].as_i64().unwrap();
    assert_eq!(cost, raised);
    assert_eq!(done["budget"]["committed_micros"], cost);

    // Everyone was sent exactly once, and the ledger agrees with the job to the micro.
    let recipients = g.recipients(&id).await;
    assert_eq!(recipients.len(), n);
    assert!(
        recipients.iter().all(|r| r["outcome"] == "sent"),
        "{recipients:?}"
    );
    let (ids, total) = g.ledger_charges(&id).await;
    assert_eq!(total, cost);
    assert_eq!(ids.len(), n);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), n);
}

#[tokio::test]
async fn a_bad_budget_is_refused_naming_the_field() {
    let g = Gateway::start().await;
    g.load_csv(&contacts_csv(2)).await;
    for (budget, field) in [
        (
            json!({"amount_micros": 0, "currency": "CNY"}),
            "budget.amount_micros",
        ),
        (
            json!({"amount_micros": 100, "currency": "USD"}),
            "budget.currency",
        ),
        (json!({"amount_micros": 100}), "budget.currency"),
        (
            json!({"amount_micros": 100, "currency": "CN"}),
            "budget.currency",
        ),
        (
            json!({"amount_micros": "lots", "currency": "CNY"}),
            "budget.amount_micros",
        ),
    ] {
        let (status, body) = g.submit(&budget_job(2, budget.clone())).await;
        assert_eq!(status, 400, "{budget}: {body}");
        assert_eq!(body["error"]["field"], field, "{budget}: {body}");
    }
    // A job without a budget is accepted as before.
    let (status, job) = g.submit(&budget_job(2, Value::Null)).await;
    assert_eq!(status, 201, "{job}");
}
