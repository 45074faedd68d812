//! A/B variants over HTTP: shares follow the weights, assignment never moves across a
//! restart, each variant's funnel equals the per-recipient report, and a planted winner
//! (clicks through the tracked-link route) is the best with a significant difference.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_testkit::{contacts_csv, Gateway};
use reqwest::Method;
use serde_json::{json, Value};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A marketing SMS job with variants `a` and `b` over contacts `c0..c{n-1}`. `b` is two
/// SMS parts, `a` one, so the parts each variant was billed for show which body went out.
fn job(n: usize, weights: (u32, u32), holdout: f64) -> Value {
    let contacts: Vec<Value> = (0..n)
        .map(|i| json!({"contact_id": format!("c{i}")}))
        .collect();
    json!({
        "campaign_id": "ab",
        "channel": "sms",
        "purpose": "marketing",
        "variants": [
            {"name": "a", "weight": weights.0, "template": {"body": "Deal A https://a.example/x"}},
            {"name": "b", "weight": weights.1, "template": {"body": format!("Deal B https://b.example/y {}", "b".repeat(150))}},
        ],
        "holdout": holdout,
        "audience": {"contacts": contacts},
    })
}

/// Per-recipient variant names, in line order.
fn variants_of(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["variant"].as_str().unwrap_or("").to_string())
        .collect()
}

/// From the per-recipient report: (variant, figure) → count, for the figures the variants
/// report gives.
fn tally(lines: &[Value]) -> BTreeMap<(String, &'static str), u64> {
    let mut t = BTreeMap::new();
    for l in lines {
        let v = l["variant"].as_str().unwrap_or("").to_string();
        let mut add = |what| *t.entry((v.clone(), what)).or_insert(0) += 1;
        add("assigned");
        if l["outcome"] == "sent" {
            add("sent");
            if l["clicked"] == true {
                add("clicked");
            }
            if l["delivery"] == "delivered" {
                add("delivered");
            }
        }
        if l["reason"] == "holdout" {
            add("held_out");
        }
    }
    t
}

fn assert_report_matches_recipients(report: &Value, lines: &[Value]) {
    let t = tally(lines);
    let count = |v: &str, what: &'static str| t.get(&(v.to_string(), what)).copied().unwrap_or(0);
    let section = &report["variants"];
    let mut cost = 0;
    for line in section["variants"].as_array().expect("variants") {
        let name = line["name"].as_str().expect("name");
        for what in ["assigned", "sent", "clicked", "delivered"] {
            assert_eq!(line[what], count(name, what), "{name} {what}: {section:#}");
        }
        cost += line["cost_micros"].as_i64().expect("cost");
    }
    assert_eq!(section["holdout"]["assigned"], count("holdout", "assigned"));
    assert_eq!(section["holdout"]["held_out"], count("holdout", "held_out"));
    assert_eq!(count("holdout", "sent"), 0, "nobody held out is sent");
    let total = report["cost"]["total_micros"]
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(Value::as_i64)
        .unwrap_or(0);
    assert_eq!(cost, total, "the variants' cost adds up to the job's");
    // Each variant was billed for its own body's parts.
    for line in section["variants"].as_array().expect("variants") {
        let per_message = if line["name"] == "a" { 1 } else { 2 };
        assert_eq!(
            line["parts"],
            line["sent"].as_u64().unwrap_or(0) * per_message,
            "{line}"
        );
    }
}

#[tokio::test]
async fn shares_follow_the_weights_on_100k_recipients() {
    let g = Gateway::start().await;
    // Scheduled for later, so nothing is sent: the assignment is what is looked at.
    let mut head = job(0, (1, 3), 0.1);
    head.as_object_mut().map(|o| o.remove("audience"));
    head["send_at"] = json!("2026-11-30T00:00:00Z");
    let n = 100_000;
    let mut body = format!("{head}\n");
    for i in 0..n {
        body.push_str(&format!("{{\"contact_id\":\"c{i}\"}}\n"));
    }
    let r = g
        .req(Method::POST, "/v1/jobs")
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let lines = g.recipients(&id).await;
    assert_eq!(lines.len(), n);
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for v in variants_of(&lines) {
        *counts.entry(v).or_default() += 1;
    }
    let share = |v: &str| f64::from(counts.get(v).copied().unwrap_or(0)) / n as f64;
    assert!((share("holdout") - 0.1).abs() < 0.01, "{counts:?}");
    assert!((share("a") - 0.9 * 0.25).abs() < 0.01, "{counts:?}");
    assert!((share("b") - 0.9 * 0.75).abs() < 0.01, "{counts:?}");
    g.stop().await;
}

#[tokio::test]
async fn nobody_moves_across_a_restart_and_the_report_equals_the_recipients() {
    let data = tempfile::tempdir().expect("tempdir");
    let n = 300;
    let g = Gateway::start_at(data.path(), |_| {}).await;
    g.load_csv(&contacts_csv(n)).await;
    let mut body = job(n, (1, 1), 0.2);
    body["send_at"] = json!("2026-11-23T04:10:00Z");
    let (status, submitted) = g.submit(&body).await;
    assert_eq!(status, 201, "{submitted}");
    let id = submitted["id"].as_str().expect("id").to_string();
    assert_eq!(
        submitted["variants"]["variants"][1]["name"], "b",
        "{submitted}"
    );
    let before = variants_of(&g.recipients(&id).await);
    g.stop().await;

    let g = Gateway::start_at(data.path(), |_| {}).await;
    wait_restored(&g, &id).await;
    assert_eq!(variants_of(&g.recipients(&id).await), before);
    g.clock.set("2026-11-23T04:11:00Z".parse().expect("time"));
    let done = g
        .wait_status(&id, "completed", Duration::from_secs(20))
        .await;
    let lines = g.recipients(&id).await;
    assert_eq!(
        variants_of(&lines),
        before,
        "the send kept every assignment"
    );
    assert!(
        done["counts"]["rejected"]["holdout"].as_u64().unwrap_or(0) > 30,
        "{done}"
    );
    let report = g.report(&format!("/v1/jobs/{id}/report")).await;
    assert_report_matches_recipients(&report, &lines);
    g.stop().await;
}

#[tokio::test]
async fn a_planted_winner_is_the_best_with_a_significant_difference() {
    let g = Gateway::start().await;
    let n = 400;
    g.load_csv(&contacts_csv(n)).await;
    let (status, submitted) = g.submit(&job(n, (1, 1), 0.0)).await;
    assert_eq!(status, 201, "{submitted}");
    let id = submitted["id"].as_str().expect("id").to_string();
    g.wait_status(&id, "completed", Duration::from_secs(20))
        .await;
    let lines = g.recipients(&id).await;

    // Every third `b` recipient clicks (its link is the joined template's second), one `a`.
    let http = no_redirects();
    let (mut b_seen, mut a_clicked) = (0, false);
    for (i, l) in lines.iter().enumerate() {
        let link = match l["variant"].as_str() {
            Some("b") => {
                b_seen += 1;
                if b_seen % 3 != 0 {
                    continue;
                }
                1
            }
            Some("a") if !a_clicked => {
                a_clicked = true;
                0
            }
            _ => continue,
        };
        let token = g.token(&id, i as u32, link);
        let r = http
            .get(g.url(&format!("/c/{token}")))
            .send()
            .await
            .expect("click");
        assert_eq!(r.status(), 302);
        let expected = if link == 1 {
            "https://b.example/y"
        } else {
            "https://a.example/x"
        };
        assert_eq!(r.headers()["location"], expected);
    }

    let report = g.report(&format!("/v1/jobs/{id}/report")).await;
    let section = &report["variants"];
    assert_eq!(section["best_by_click_rate"], "b", "{section:#}");
    let a = &section["variants"][0];
    let b = &section["variants"][1];
    assert!(
        b.get("click_rate_vs_best").is_none(),
        "the best is not compared with itself"
    );
    let vs = &a["click_rate_vs_best"];
    let (ra, rb) = (
        a["click_rate"].as_f64().unwrap_or(0.0),
        b["click_rate"].as_f64().unwrap_or(0.0),
    );
    assert!(rb > 0.3 && ra < 0.01, "{section:#}");
    assert!(
        (vs["difference"].as_f64().unwrap_or(0.0) - (ra - rb)).abs() < 1e-3,
        "{vs}"
    );
    assert!(vs["ci95_high"].as_f64().unwrap_or(1.0) < 0.0, "{vs}");
    assert!(vs["p_value"].as_f64().unwrap_or(1.0) < 1e-6, "{vs}");
    assert_report_matches_recipients(&report, &g.recipients(&id).await);

    // The CSV carries the same figures.
    let csv = g
        .req(Method::GET, &format!("/v1/jobs/{id}/report?format=csv"))
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("text");
    assert!(
        csv.contains(&format!("variant.clicked,b,{}", b["clicked"])),
        "{csv}"
    );
    g.stop().await;
}

#[tokio::test]
async fn malformed_variants_are_refused_naming_the_field() {
    let g = Gateway::start().await;
    g.load_csv(&contacts_csv(2)).await;
    let cases = [
        (json!([]), None, "variants"),
        (
            json!([{"name": "a", "template": {"body": "x"}}, {"name": "a", "template": {"body": "y"}}]),
            None,
            "variants[1].name",
        ),
        (
            json!([{"name": "a", "weight": 0, "template": {"body": "x"}}]),
            None,
            "variants",
        ),
        (
            json!([{"name": "a", "template": {"body": "Hi {{name"}}]),
            None,
            "variants[0].template.body",
        ),
        (
            json!([{"name": "a", "template": {"body": "x"}}]),
            Some(1.0),
            "holdout",
        ),
        (
            json!([
                {"name": "a", "template": {"body": "a".repeat(6000)}},
                {"name": "b", "template": {"body": "b".repeat(6000)}},
            ]),
            None,
            "variants",
        ),
    ];
    for (variants, holdout, field) in cases {
        let mut body = json!({
            "campaign_id": "ab", "channel": "sms", "purpose": "marketing",
            "variants": variants, "audience": {"contacts": [{"contact_id": "c0"}]},
        });
        if let Some(h) = holdout {
            body["holdout"] = json!(h);
        }
        let (status, answer) = g.submit(&body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    // A template and variants together, or a holdout without variants.
    let mut both = job(1, (1, 1), 0.0);
    both["template"] = json!({"body": "x"});
    assert_eq!(g.submit(&both).await.1["error"]["field"], "variants");
    let lone = json!({
        "campaign_id": "ab", "channel": "sms", "purpose": "marketing", "holdout": 0.1,
        "template": {"body": "x"}, "audience": {"contacts": [{"contact_id": "c0"}]},
    });
    assert_eq!(g.submit(&lone).await.1["error"]["field"], "holdout");
    g.stop().await;
}

#[tokio::test]
async fn a_rollout_sends_the_test_share_then_the_rest_with_the_planted_winner() {
    let data = tempfile::tempdir().expect("tempdir");
    let g = Gateway::start_at(data.path(), |_| {}).await;
    let n = 400;
    g.load_csv(&contacts_csv(n)).await;
    let mut body = job(n, (1, 1), 0.0);
    body["rollout"] =
        json!({"test_share": 0.3, "decide_after_seconds": 600, "metric": "click_rate"});
    let (status, submitted) = g.submit(&body).await;
    assert_eq!(status, 201, "{submitted}");
    let id = submitted["id"].as_str().expect("id").to_string();
    // The test share is sent; the rest waits for the winner.
    let tested = g
        .wait_until(&id, Duration::from_secs(20), |j| {
            let c = &j["counts"];
            c["sent"].as_u64().unwrap_or(0) + c["deferred"].as_u64().unwrap_or(0) == n as u64
                && c["deferred"].as_u64().unwrap_or(0) > 0
        })
        .await;
    let sent_in_test = tested["counts"]["sent"].as_u64().unwrap_or(0);
    assert!((80..=160).contains(&sent_in_test), "{tested}");
    let report = g.report(&format!("/v1/jobs/{id}/report")).await;
    let rollout = &report["variants"]["rollout"];
    assert_eq!(
        rollout["waiting"], tested["counts"]["deferred"],
        "{rollout}"
    );
    assert!(rollout.get("winner").is_none(), "{rollout}");

    // Plant the winner: every second `b` test recipient clicks, no `a` one.
    let lines = g.recipients(&id).await;
    let http = no_redirects();
    let mut b_seen = 0;
    for (i, l) in lines.iter().enumerate() {
        if l["outcome"] != "sent" || l["variant"] != "b" {
            continue;
        }
        b_seen += 1;
        if b_seen % 2 == 0 {
            let token = g.token(&id, i as u32, 1);
            let r = http
                .get(g.url(&format!("/c/{token}")))
                .send()
                .await
                .expect("click");
            assert_eq!(r.status(), 302);
        }
    }
    let waiting: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l["outcome"] == "deferred")
        .map(|(i, _)| i)
        .collect();
    assert!(waiting.iter().all(|&i| lines[i].get("variant").is_none()));

    // At the decision time the rest goes, every one with `b`.
    g.clock.set("2026-11-23T04:10:01Z".parse().expect("time"));
    g.wait_status(&id, "completed", Duration::from_secs(20))
        .await;
    let after = g.recipients(&id).await;
    for &i in &waiting {
        assert_eq!(after[i]["outcome"], "sent", "{}", after[i]);
        assert_eq!(after[i]["variant"], "b", "{}", after[i]);
    }
    for (i, l) in lines.iter().enumerate() {
        if l["outcome"] == "sent" {
            assert_eq!(
                after[i]["variant"], l["variant"],
                "a test recipient kept its variant"
            );
        }
    }
    let report = g.report(&format!("/v1/jobs/{id}/report")).await;
    let rollout = &report["variants"]["rollout"];
    assert_eq!(rollout["winner"], "b", "{rollout:#}");
    assert_eq!(rollout["waiting"], 0);
    let why = rollout["why"].as_str().unwrap_or("");
    assert!(
        why.starts_with("b had the highest click rate in the test"),
        "{why}"
    );
    let a_test = &rollout["test"][0];
    assert_eq!(a_test["hits"], 0, "{rollout:#}");
    assert!(
        a_test["vs_winner"]["p_value"].as_f64().unwrap_or(1.0) < 0.001,
        "{rollout:#}"
    );
    assert_report_matches_recipients(&report, &after);
    g.stop().await;

    // The winner was journaled: after a restart everyone still has the variant they were
    // sent, and the report still says who won and why.
    let g = Gateway::start_at(data.path(), |_| {}).await;
    wait_restored(&g, &id).await;
    assert_eq!(variants_of(&g.recipients(&id).await), variants_of(&after));
    let again = g.report(&format!("/v1/jobs/{id}/report")).await;
    assert_eq!(again["variants"]["rollout"]["winner"], "b");
    assert_eq!(again["variants"]["rollout"]["why"], rollout["why"]);
    g.stop().await;
}

/// Waits until a restarted gateway has restored job `id` (503 until then).
async fn wait_restored(g: &Gateway, id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = g
            .req(Method::GET, &format!("/v1/jobs/{id}"))
            .send()
            .await
            .expect("get");
        match r.status().as_u16() {
            200 => return,
            503 if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("the job answered {other} after a restart"),
        }
    }
}
