//! The SMPP provider's metrics on `/metrics`, after a job through a throttling simulator
//! that sends receipts.

use std::time::Duration;

use herald::config::SmppConfig;
use herald_testkit::sms_job;

use crate::smsc::Smsc;
use crate::{audience, smpp_config, smpp_gateway, WAIT};

/// The value of the series `name{labels}` (labels as rendered, in order), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn binds_windows_latency_statuses_and_deliveries_are_on_metrics() {
    let mut smsc = Smsc::start(&["--receipts", "tlv", "--throttle-first", "1"]).await;
    let config = SmppConfig {
        binds: 2,
        throttle_retry_ms: 50,
        ..smpp_config(smsc.port)
    };
    let g = smpp_gateway(config, 3).await;
    smsc.wait_count("bind", 2, WAIT).await;
    let (status, answer) = g
        .submit(&sms_job("smpp-metrics", "Hello", audience(0, 3)))
        .await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["id"].as_str().expect("job id").to_string();
    g.wait_until(&id, WAIT, |j| j["counts"]["delivered"] == 3)
        .await;

    let text = reqwest::get(g.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let p = r#"provider="sandbox""#;
    let value =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    assert_eq!(value(&format!("herald_smpp_binds_up{{{p}}}")), 2.0);
    assert_eq!(value(&format!("herald_smpp_window_in_use{{{p}}}")), 0.0);
    assert!(value(&format!("herald_smpp_submit_duration_seconds_count{{{p}}}")) >= 4.0);
    assert!(
        value(&format!(
            r#"herald_smpp_command_status_total{{{p},command="submit_sm",status="ESME_ROK"}}"#
        )) >= 3.0
    );
    assert!(
        value(&format!(
            r#"herald_smpp_command_status_total{{{p},command="submit_sm",status="ESME_RTHROTTLED"}}"#
        )) >= 1.0
    );
    assert!(value(&format!("herald_smpp_throttled_total{{{p}}}")) >= 1.0);
    assert!(
        value(&format!(
            r#"herald_smpp_deliver_sm_total{{{p},kind="receipt"}}"#
        )) >= 3.0
    );
    value(&format!("herald_smpp_reconnects_total{{{p}}}"));
    assert!(text.contains("# HELP herald_smpp_submit_duration_seconds "));
    tokio::time::sleep(Duration::from_millis(10)).await;
    g.stop().await;
}
