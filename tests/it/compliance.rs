//! Content rules at submit and per message: each rule refuses a violating template and passes
//! a conforming one, in Chinese and in English; every variant is checked; a dry run lists the
//! findings; and a variable's value that brings in a banned term keeps that message from the
//! provider.

use std::time::Duration;

use herald::config::ComplianceConfig;
use herald_testkit::{contacts_csv, sms_job, Gateway};
use serde_json::{json, Value};

/// A gateway held to the rules of `rules` (TOML of `[[rules]]` entries) instead of the
/// shipped ones, with 20 opted-in contacts.
async fn gateway(rules: &str) -> Gateway {
    let compliance: ComplianceConfig = toml::from_str(rules).expect("rules");
    let g = Gateway::start_with(|c| c.compliance = compliance).await;
    g.load_csv(&contacts_csv(20)).await;
    g
}

fn audience() -> Value {
    json!([{"contact_id": "c0"}, {"contact_id": "c1"}])
}

/// Submits a one-template marketing SMS job; answers the status and body.
async fn submit(g: &Gateway, body: &str) -> (u16, Value) {
    g.submit(&sms_job("compliance", body, audience())).await
}

/// Asserts a 422 `content_rule` refusal naming `rule` at `position`.
fn assert_refused(answer: &(u16, Value), rule: &str, position: Option<u64>) {
    let (status, body) = answer;
    assert_eq!(*status, 422, "{body}");
    let e = &body["error"];
    assert_eq!(e["code"], "content_rule", "{body}");
    assert_eq!(e["rule"], rule, "{body}");
    assert_eq!(e["field"], "template.body", "{body}");
    assert_eq!(e["position"].as_u64(), position, "{body}");
}

const CN_SIGNATURE: &str = r#"
[[rules]]
name = "cn_signature"
kind = "signature"
channels = ["sms"]
open = "【"
close = "】"
"#;

const EN_SIGNATURE: &str = r#"
[[rules]]
name = "en_signature"
kind = "signature"
open = "["
close = "]"
position = "end"
"#;

const OPT_OUT: &str = r#"
[[rules]]
name = "opt_out"
kind = "opt_out"
purposes = ["marketing"]
accepted = ["回T退订", "Reply STOP to opt out"]
"#;

#[tokio::test]
async fn a_signature_is_required_where_the_rule_says() {
    let g = gateway(CN_SIGNATURE).await;
    assert_refused(
        &submit(&g, "  双十一会员日【星河】").await,
        "cn_signature",
        Some(3),
    );
    assert_eq!(submit(&g, "【星河】双十一会员日").await.0, 201);
    g.stop().await;

    let g = gateway(EN_SIGNATURE).await;
    let refused = submit(&g, "[Acme] Members' day").await;
    assert_refused(&refused, "en_signature", Some(19));
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("[name]")),
        "{}",
        refused.1
    );
    assert_eq!(submit(&g, "Members' day [Acme]").await.0, 201);
    g.stop().await;
}

#[tokio::test]
async fn marketing_needs_an_opt_out_instruction_and_transactional_does_not() {
    let g = gateway(OPT_OUT).await;
    assert_refused(&submit(&g, "【星河】会员日全场8折").await, "opt_out", None);
    assert_eq!(submit(&g, "【星河】会员日全场8折，回T退订").await.0, 201);
    assert_refused(&submit(&g, "Acme: 20% off today").await, "opt_out", None);
    assert_eq!(
        submit(&g, "Acme: 20% off today. reply stop to opt out")
            .await
            .0,
        201
    );
    let mut tx = sms_job("compliance", "Your code is 1234", audience());
    tx["purpose"] = json!("transactional");
    assert_eq!(g.submit(&tx).await.0, 201);
    g.stop().await;
}

#[tokio::test]
async fn banned_terms_are_refused_where_they_stand() {
    // The shipped rule and list: the Advertising Law's absolute terms in marketing SMS.
    let g = Gateway::start().await;
    g.load_csv(&contacts_csv(4)).await;
    let refused = submit(&g, "【星河】全网最佳口红，仅此一天").await;
    assert_refused(&refused, "ad_law_absolute_terms", Some(7));
    assert!(refused.1["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("最佳")));
    assert_eq!(submit(&g, "【星河】最近上新的口红，仅此一天").await.0, 201);
    g.stop().await;

    // An English list, named by an absolute path.
    let dir = tempfile::tempdir().expect("tempdir");
    let list = dir.path().join("banned-en.txt");
    std::fs::write(&list, "# claims\nguaranteed\nrisk-free\n").expect("list");
    let rules = format!(
        "[[rules]]\nname = \"en_claims\"\nkind = \"banned_words\"\nlist = {:?}\n",
        list.display().to_string()
    );
    let g = gateway(&rules).await;
    assert_refused(
        &submit(&g, "Acme: results GUARANTEED").await,
        "en_claims",
        Some(15),
    );
    assert_eq!(submit(&g, "Acme: great results").await.0, 201);
    g.stop().await;
}

#[tokio::test]
async fn a_template_longer_than_the_part_limit_is_refused_at_its_first_extra_character() {
    let g = gateway("[[rules]]\nname = \"one_part\"\nkind = \"max_parts\"\nmax = 1\n").await;
    // Chinese is UCS-2: 70 characters fit in one part.
    assert_refused(&submit(&g, &"好".repeat(71)).await, "one_part", Some(71));
    assert_eq!(submit(&g, &"好".repeat(70)).await.0, 201);
    // English is GSM-7: 160 characters.
    assert_refused(&submit(&g, &"a".repeat(161)).await, "one_part", Some(161));
    assert_eq!(submit(&g, &"a".repeat(160)).await.0, 201);
    // Links count at their tracked length (40 characters): a long link fits...
    let long_link = format!(
        "{} https://shop.example/{}",
        "A".repeat(100),
        "x".repeat(150)
    );
    assert_eq!(submit(&g, &long_link).await.0, 201);
    // ...and a short one may not; then no position is given (the text differs from the
    // template as written).
    let short_link = format!("{} http://a.io", "A".repeat(138));
    assert_eq!(short_link.len(), 150);
    let refused = submit(&g, &short_link).await;
    assert_refused(&refused, "one_part", None);
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at least 2 SMS parts")),
        "{}",
        refused.1
    );
    g.stop().await;
}

fn variant_job(bodies: &[(&str, &str)]) -> Value {
    let variants: Vec<Value> = bodies
        .iter()
        .map(|(name, body)| json!({"name": name, "template": {"body": body}}))
        .collect();
    json!({
        "campaign_id": "compliance",
        "channel": "sms",
        "purpose": "marketing",
        "variants": variants,
        "audience": {"contacts": audience()},
    })
}

#[tokio::test]
async fn every_variant_is_checked_and_a_dry_run_lists_the_findings() {
    let g = gateway(&format!("{CN_SIGNATURE}{OPT_OUT}")).await;
    let job = variant_job(&[
        ("a", "【星河】会员日全场8折，回T退订"),
        ("b", "会员日全场8折【星河】"),
    ]);
    let (status, body) = g.submit(&job).await;
    assert_eq!(status, 422, "{body}");
    let e = &body["error"];
    assert_eq!(e["code"], "content_rule");
    assert_eq!(e["field"], "variants[1].template.body");
    assert_eq!(e["variant"], "b");
    assert_eq!(e["rule"], "cn_signature");
    assert_eq!(e["position"], 1);

    let r = g
        .req(reqwest::Method::POST, "/v1/jobs?dry_run=true")
        .json(&job)
        .send()
        .await
        .expect("preview");
    assert_eq!(r.status(), 200);
    let preview: Value = r.json().await.expect("json");
    let findings = preview["compliance"]["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let named: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| {
            (
                f["variant"].as_str().unwrap_or(""),
                f["rule"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        named,
        [("b", "cn_signature"), ("b", "opt_out")],
        "{preview}"
    );
    // Nothing was accepted by the dry run, and a conforming set of variants is.
    let ok = variant_job(&[
        ("a", "【星河】会员日全场8折，回T退订"),
        ("b", "【星河】会员日全场9折，回T退订"),
    ]);
    assert_eq!(g.submit(&ok).await.0, 201);
    g.stop().await;
}

#[tokio::test]
async fn a_value_that_brings_in_a_banned_term_keeps_that_message_from_the_provider() {
    let g = Gateway::start().await;
    g.load_csv(&contacts_csv(4)).await;
    let job = sms_job(
        "compliance",
        "【星河】{{title}}，新品到店，回T退订",
        json!([
            {"contact_id": "c0", "variables": {"title": "尊敬的会员"}},
            {"contact_id": "c1", "variables": {"title": "全网最佳会员"}},
        ]),
    );
    let (status, submitted) = g.submit(&job).await;
    assert_eq!(status, 201, "{submitted}");
    let done = g.wait_completed(&submitted, Duration::from_secs(10)).await;
    assert_eq!(done["counts"]["sent"], 1, "{done}");
    assert_eq!(done["counts"]["rejected"]["content_rule"], 1, "{done}");
    let id = submitted["id"].as_str().expect("id");
    let lines = g.recipients(id).await;
    assert_eq!(lines[0]["outcome"], "sent");
    assert_eq!(lines[1]["outcome"], "rejected");
    assert_eq!(lines[1]["reason"], "content_rule");
    let (charged, _) = g.ledger_charges(id).await;
    assert_eq!(charged.len(), 1, "only the conforming message was charged");
    g.stop().await;
}
