//! The Grafana dashboards use only metric names the gateway really exports. Every dashboard
//! under `grafana/dashboards` is parsed; every metric named in a target's `expr` (and in
//! `label_values(...)` variable queries) must appear in `/metrics` of a running gateway after
//! a small job. A histogram counts as exported with its `_bucket`, `_sum` and `_count` series.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

fn dashboards() -> Vec<(PathBuf, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("grafana/dashboards") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read dashboard");
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
        out.push((path, json));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every `expr` of every target, however deeply panels nest (rows hold panels).
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(targets)) = m.get("targets") {
                for t in targets {
                    if let Some(Value::String(e)) = t.get("expr") {
                        out.push(e.clone());
                    }
                }
            }
            for (k, child) in m {
                if k != "targets" {
                    exprs(child, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|c| exprs(c, out)),
        _ => {}
    }
}

/// The metric selectors of `label_values(<selector>, <label>)` variable queries.
fn variable_selectors(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let vars = dashboard["templating"]["list"].as_array().cloned();
    for var in vars.unwrap_or_default() {
        let query = match &var["query"] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        };
        if let Some(args) = query
            .trim()
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
        {
            // With one argument it is a label name, not a metric.
            if let Some((selector, _label)) = args.rsplit_once(',') {
                out.push(selector.trim().to_string());
            }
        }
    }
    out
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "nan",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Var,
    Open,
    Close,
    Other,
}

/// Metric names in a PromQL expression: identifiers that are not functions, keywords,
/// grouping labels, Grafana variables, or inside label matchers, ranges and strings.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let skip_until = |i: &mut usize, open: char, close: char| {
        let mut depth = 0;
        while *i < chars.len() {
            let c = chars[*i];
            if c == '"' || c == '\'' || c == '`' {
                *i += 1;
                while *i < chars.len() && chars[*i] != c {
                    if chars[*i] == '\\' {
                        *i += 1;
                    }
                    *i += 1;
                }
            } else if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    *i += 1;
                    return;
                }
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            toks.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            toks.push(Tok::Other);
        } else if c == '$' {
            i += 1;
            if i < chars.len() && chars[i] == '{' {
                skip_until(&mut i, '{', '}');
            } else {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            toks.push(Tok::Var);
        } else if c == '{' {
            skip_until(&mut i, '{', '}');
        } else if c == '[' {
            skip_until(&mut i, '[', ']');
        } else if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            toks.push(Tok::Other);
        } else if c == '(' {
            toks.push(Tok::Open);
            i += 1;
        } else if c == ')' {
            toks.push(Tok::Close);
            i += 1;
        } else {
            if !c.is_whitespace() {
                toks.push(Tok::Other);
            }
            i += 1;
        }
    }
    let mut names = BTreeSet::new();
    let mut k = 0;
    while k < toks.len() {
        if let Tok::Ident(name) = &toks[k] {
            let next_is_open = toks.get(k + 1) == Some(&Tok::Open);
            // `sum by (le) (...)`: an aggregation, not a metric.
            let next_is_grouping =
                matches!(toks.get(k + 1), Some(Tok::Ident(n)) if n == "by" || n == "without");
            if GROUPING.contains(&name.as_str()) && next_is_open {
                // Skip the label list: `by (le, provider)`.
                while k < toks.len() && toks[k] != Tok::Close {
                    k += 1;
                }
            } else if !next_is_open && !next_is_grouping && !KEYWORDS.contains(&name.as_str()) {
                names.insert(name.clone());
            }
        }
        k += 1;
    }
    names
}

/// A name the exposition declares, or a histogram's `_bucket`/`_sum`/`_count` series.
fn exported(name: &str, types: &BTreeMap<String, String>) -> bool {
    if types.contains_key(name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(|base| types.get(base))
            .is_some_and(|t| t == "histogram" || t == "summary")
    })
}

#[test]
fn metric_names_are_extracted_from_promql() {
    let e = r#"histogram_quantile(0.95, sum by (le, provider) (rate(herald_a_seconds_bucket{provider=~"$p", x="by(y)"}[$__rate_interval])))"#;
    assert_eq!(
        metric_names(e),
        BTreeSet::from(["herald_a_seconds_bucket".to_string()])
    );
    let e = r#"sum(rate(x_total[5m] offset 1h)) by (job) / on (job) group_left (campaign) max(y_info == 1) * 1e6 - time()"#;
    assert_eq!(
        metric_names(e),
        BTreeSet::from(["x_total".to_string(), "y_info".to_string()])
    );
    let e = r#"clamp_min(max(eta{job=~"${job}"}) - time(), 0) > bool 3"#;
    assert_eq!(metric_names(e), BTreeSet::from(["eta".to_string()]));
}

#[test]
fn every_dashboard_is_well_formed() {
    let all = dashboards();
    let names: Vec<String> = all
        .iter()
        .filter_map(|(p, _)| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .collect();
    for wanted in ["promotion.json", "gateway-health.json"] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} missing");
    }
    let mut uids = BTreeSet::new();
    for (path, d) in &all {
        let uid = d["uid"].as_str().unwrap_or_default();
        assert!(!uid.is_empty(), "{} has no uid", path.display());
        assert!(uids.insert(uid.to_string()), "uid {uid} used twice");
        assert!(
            d["title"].as_str().is_some(),
            "{} has no title",
            path.display()
        );
        let mut found = Vec::new();
        exprs(d, &mut found);
        assert!(!found.is_empty(), "{} has no queries", path.display());
    }
}

#[tokio::test]
async fn dashboards_use_only_metrics_the_gateway_exports() {
    let (_, text) = herald_testkit::observed::observed_run();
    let types = herald_testkit::observed::types(text);
    assert!(types.len() > 10, "too few metrics exported:\n{text}");

    let mut missing = Vec::new();
    let mut used = BTreeSet::new();
    for (path, d) in dashboards() {
        let mut found = Vec::new();
        exprs(&d, &mut found);
        found.extend(variable_selectors(&d));
        for expr in found {
            for name in metric_names(&expr) {
                if !exported(&name, &types) {
                    missing.push(format!("{}: {name} (in `{expr}`)", path.display()));
                }
                used.insert(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "dashboards use metrics the gateway does not export:\n{}\n\nexported: {:?}",
        missing.join("\n"),
        types.keys().collect::<Vec<_>>()
    );
    assert!(used.len() > 10, "suspiciously few metrics used: {used:?}");
}
