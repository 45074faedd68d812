//! `/metrics` of a real gateway after a small job: the counters equal what the job reports,
//! labels carry no contact data, and Prometheus's own `promtool` accepts the output.
//!
//! The metrics recorder is process-wide, so this binary runs exactly one gateway that sends.

use std::process::{Command, Stdio};

use herald_testkit::observed::{observed_run, parse, select, sum, types, CONTACTS};

#[tokio::test]
async fn metrics_after_a_small_job_match_the_job_and_pass_promtool() {
    let (job, text) = observed_run();
    let id = job["id"].as_str().expect("id");
    let c = &job["counts"];
    let sent = c["sent"].as_f64().expect("sent");
    assert_eq!(sent, 3.0, "{c:#}");

    let samples = parse(text);
    let sms = ("channel", "sms");
    let sandbox = ("provider", "sandbox");

    // Decisions, by outcome and reason.
    let decided = |outcome: &str, reason: &str| {
        sum(
            &samples,
            "herald_recipients_decided_total",
            &[sms, ("outcome", outcome), ("reason", reason)],
        )
    };
    assert_eq!(decided("accepted", "none"), sent, "{text}");
    assert_eq!(decided("rejected", "duplicate"), 1.0);
    assert_eq!(decided("rejected", "unknown_contact"), 1.0);
    assert_eq!(decided("rejected", "opted_out"), 1.0);
    assert_eq!(decided("rejected", "no_consent"), 0.0);
    assert_eq!(
        select(
            &samples,
            "herald_recipients_decided_total",
            &[("reason", "no_consent")]
        )
        .count(),
        1,
        "series of every reason exist from the start"
    );
    assert_eq!(
        sum(
            &samples,
            "herald_jobs_submitted_total",
            &[sms, ("purpose", "marketing")]
        ),
        1.0
    );
    assert_eq!(
        sum(&samples, "herald_recipients_submitted_total", &[sms]),
        6.0
    );

    // Sends, parts, cost, receipts.
    let sends = |result: &str| {
        sum(
            &samples,
            "herald_provider_sends_total",
            &[sms, sandbox, ("result", result)],
        )
    };
    assert_eq!(sends("accepted"), sent);
    assert_eq!(
        sends("permanent") + sends("transient") + sends("throttled"),
        0.0
    );
    assert_eq!(
        sum(&samples, "herald_provider_parts_total", &[sms, sandbox]),
        c["segments"].as_f64().expect("segments")
    );
    assert_eq!(
        sum(
            &samples,
            "herald_cost_micros_total",
            &[sms, sandbox, ("currency", "CNY")]
        ),
        c["cost_micros"].as_f64().expect("cost")
    );
    assert_eq!(
        sum(
            &samples,
            "herald_receipts_total",
            &[sms, sandbox, ("status", "delivered")]
        ),
        sent
    );
    assert_eq!(sum(&samples, "herald_messages_failed_total", &[]), 0.0);
    assert_eq!(sum(&samples, "herald_provider_retries_total", &[]), 0.0);
    assert!(
        sum(
            &samples,
            "herald_provider_request_duration_seconds_count",
            &[sms, sandbox]
        ) >= 1.0
    );
    let kinds = types(text);
    for h in [
        "herald_provider_request_duration_seconds",
        "herald_rate_limit_wait_seconds",
        "herald_policy_batch_duration_seconds",
        "herald_http_request_duration_seconds",
    ] {
        assert_eq!(kinds.get(h).map(String::as_str), Some("histogram"), "{h}");
    }

    // Gauges observed at scrape time.
    assert_eq!(
        sum(&samples, "herald_jobs", &[("status", "completed")]),
        1.0
    );
    assert_eq!(sum(&samples, "herald_jobs", &[("status", "running")]), 0.0);
    assert_eq!(
        sum(&samples, "herald_snapshot_contacts", &[]),
        CONTACTS.len() as f64
    );
    assert_eq!(
        sum(
            &samples,
            "herald_provider_rate_limit_parts_per_second",
            &[sms, sandbox]
        ),
        0.0
    );
    assert_eq!(sum(&samples, "herald_receipts_pending", &[]), 0.0);
    let this_job = ("job", id);
    let outcome = |o: &str| {
        sum(
            &samples,
            "herald_job_recipients",
            &[this_job, ("outcome", o)],
        )
    };
    assert_eq!(outcome("sent"), sent);
    assert_eq!(outcome("rejected"), 3.0);
    assert_eq!(outcome("pending") + outcome("deferred"), 0.0);
    assert_eq!(sum(&samples, "herald_job_progress_ratio", &[this_job]), 1.0);
    assert_eq!(
        sum(
            &samples,
            "herald_job_status",
            &[this_job, ("status", "completed")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &samples,
            "herald_job_info",
            &[this_job, ("campaign", "metrics-promo"), sandbox]
        ),
        1.0
    );

    // HTTP requests by route pattern, never by raw path.
    assert_eq!(
        sum(
            &samples,
            "herald_http_requests_total",
            &[("method", "POST"), ("route", "/v1/jobs"), ("status", "201")]
        ),
        1.0
    );
    assert!(
        sum(
            &samples,
            "herald_http_requests_total",
            &[("route", "/v1/jobs/{id}"), ("status", "200")]
        ) >= 1.0
    );

    // No contact data anywhere in the output.
    for (contact, phone) in CONTACTS {
        assert!(!text.contains(contact), "{contact} leaked into /metrics");
        assert!(!text.contains(&phone[3..]), "{phone} leaked into /metrics");
    }
    assert!(!text.contains("obs-ghost"));
    assert!(!text.contains("msg_"));

    promtool_check(text);
}

/// Runs `promtool check metrics` over the output; fails when promtool is missing.
fn promtool_check(text: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("metrics.txt");
    std::fs::write(&path, text).expect("write metrics");
    let input = std::fs::File::open(&path).expect("open metrics");
    let out = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::from(input))
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed, so /metrics cannot be checked. Install it with \
             `apt-get install prometheus` (Debian/Ubuntu; .ci/run does this), or put \
             Prometheus's promtool on PATH."
        ),
        Err(e) => panic!("could not run promtool: {e}"),
    };
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- output checked ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
