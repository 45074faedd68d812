//! A gateway that has run one small job with rejections, and its `/metrics` output parsed.
//! Shared by the metrics and dashboard tests. The metrics recorder is process-wide, so a test
//! binary that asserts exact values must run only one gateway that sends.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::gateway::{sms_job, Gateway};

const HEADER: &str = "contact_id,phone,email,timezone,tags,sms_consent,email_consent,push_consent,updated_at,first_name,city\n";

/// Contacts of the small job's snapshot: (contact id, phone).
pub const CONTACTS: [(&str, &str); 4] = [
    ("obs-ok-1", "+8613123079337"),
    ("obs-ok-2", "+8613126859660"),
    ("obs-ok-3", "+8613123442056"),
    ("obs-optout", "+8613123067884"),
];

/// The snapshot the small job runs against.
pub fn snapshot_csv() -> String {
    let mut s = HEADER.to_string();
    for (id, phone) in CONTACTS {
        let consent = if id == "obs-optout" {
            "opt_out"
        } else {
            "opt_in"
        };
        s.push_str(&format!(
            "{id},{phone},,Asia/Shanghai,,{consent},,,,Wei,Shanghai\n"
        ));
    }
    s
}

/// The small job's view once complete and the `/metrics` text scraped right after, made once
/// per test binary: the recorder is process-wide, so a second gateway that sends would add to
/// the counts. It runs on a thread and runtime of its own, so that no test's runtime ending
/// stops it.
pub fn observed_run() -> &'static (Value, String) {
    static RUN: std::sync::OnceLock<(Value, String)> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the observed gateway");
            rt.block_on(async {
                let g = Gateway::start().await;
                let job = run_small_job(&g).await;
                let text = scrape(&g).await;
                g.stop().await;
                (job, text)
            })
        })
        .join()
        .expect("the observed gateway ran its job")
    })
}

/// Runs the small job to completion with every receipt in: 3 sent, 1 duplicate, 1 unknown
/// contact, 1 opted out. Answers the job as the API shows it.
pub async fn run_small_job(g: &Gateway) -> Value {
    g.load_csv(&snapshot_csv()).await;
    let job = sms_job(
        "metrics-promo",
        "Hi {{first_name}}, sale in {{city}}",
        json!([
            {"contact_id": "obs-ok-1"}, {"contact_id": "obs-ok-2"}, {"contact_id": "obs-ok-3"},
            {"contact_id": "obs-ok-1"}, {"contact_id": "obs-ghost"}, {"contact_id": "obs-optout"}
        ]),
    );
    let (status, body) = g.submit(&job).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("job id").to_string();
    g.wait_status(&id, "completed", Duration::from_secs(10))
        .await;
    g.wait_until(&id, Duration::from_secs(10), |j| {
        j["counts"]["delivered"] == j["counts"]["sent"]
    })
    .await
}

/// `GET /metrics` without an API key; panics unless it answers 200 in the text format.
pub async fn scrape(g: &Gateway) -> String {
    let r = g
        .http
        .get(g.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("text/plain"), "content-type {ct}");
    r.text().await.expect("body")
}

/// One sample line of the text format.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the sample lines (comments skipped). Panics on a malformed line.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_line(l).unwrap_or_else(|| panic!("malformed sample line: {l}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let mut key = String::new();
        let end;
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    end = i + 1;
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    let (_, quote) = chars.next()?;
                    if quote != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
        rest = &after[end..];
    }
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Sum of the samples named `name` whose labels include every pair of `matching`.
pub fn sum(samples: &[Sample], name: &str, matching: &[(&str, &str)]) -> f64 {
    select(samples, name, matching).map(|s| s.value).sum()
}

/// The samples named `name` whose labels include every pair of `matching`.
pub fn select<'a>(
    samples: &'a [Sample],
    name: &'a str,
    matching: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a Sample> + 'a {
    samples.iter().filter(move |s| {
        s.name == name
            && matching
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

/// Metric family names and types from the `# TYPE` lines.
pub fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}
