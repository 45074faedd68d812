//! Agreement with Google's libphonenumber on the shared reference vectors.
//!
//! `parse` sits on a libphonenumber port; this test checks that the port (and our wrapping of it)
//! reaches the same verdicts as the reference implementation on what decides whether we send:
//! validity, the E.164 form, and whether the line can receive SMS. Ports with different metadata
//! versions may disagree on a handful of numbers, so the bar is 99.5% agreement, not 100%.

use super::{format_e164, parse, RegionCode};

/// The vectors live beside the repository (CI clones `shared/` next to it).
const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/phone_vectors.csv"
);

/// Reads the reference vectors at `path` (`what` names them in messages) and answers how many
/// rows there were and, printed too, what `disagreement` found wrong with each row it
/// rejects. Shared by every reference-vector test.
pub(crate) fn compare<R: serde::de::DeserializeOwned>(
    path: &str,
    what: &str,
    disagreement: impl Fn(&R) -> Option<String>,
) -> (usize, Vec<String>) {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| {
        panic!(
            "{what} reference vectors not found at {path}: {e}. They live in the shared data \
             directory beside the repository; clone it next to herald to run this test."
        )
    });
    let mut total = 0usize;
    let mut disagreements = Vec::new();
    for (line, record) in reader.deserialize::<R>().enumerate() {
        let row = record.unwrap_or_else(|e| panic!("{path}: bad row {}: {e}", line + 2));
        total += 1;
        if let Some(d) = disagreement(&row) {
            println!("disagree: {d}");
            disagreements.push(d);
        }
    }
    assert!(total > 0, "{path} has no rows");
    (total, disagreements)
}

/// Minimum share of rows on which we must agree with the reference.
const MIN_AGREEMENT: f64 = 0.995;

#[derive(Debug, serde::Deserialize)]
struct Row {
    input: String,
    default_region: String,
    valid: bool,
    e164: String,
    #[serde(rename = "type")]
    line_type: String,
}

impl Row {
    /// The reference's SMS verdict: only these two types are sendable.
    fn sms_capable(&self) -> bool {
        matches!(self.line_type.as_str(), "mobile" | "fixed_line_or_mobile")
    }
}

/// Compares one row; `None` when we agree, else a description of the difference.
fn disagreement(row: &Row) -> Option<String> {
    let Some(region) = RegionCode::parse(&row.default_region) else {
        return Some(format!("bad default_region {:?}", row.default_region));
    };
    let ours = parse(&row.input, region);
    let expected = if row.valid {
        format!("valid {} sms={}", row.e164, row.sms_capable())
    } else {
        "invalid".to_owned()
    };
    let got = match ours {
        Ok(info) => format!(
            "valid {} sms={}",
            format_e164(info.e164),
            info.line_type.is_sms_capable()
        ),
        Err(_) => "invalid".to_owned(),
    };
    (got != expected).then(|| {
        format!(
            "{:?} in {}: reference {expected} ({}), ours {got} ({:?})",
            row.input, row.default_region, row.line_type, ours
        )
    })
}

#[test]
fn agrees_with_libphonenumber_reference_vectors() {
    let (total, disagreements) = compare(VECTORS, "phone", disagreement);
    let agreement = 1.0 - disagreements.len() as f64 / total as f64;
    println!(
        "phone vectors: {} of {total} rows agree ({:.2}%)",
        total - disagreements.len(),
        agreement * 100.0
    );
    assert!(
        agreement >= MIN_AGREEMENT,
        "agreement {:.2}% is below {:.1}% ({} disagreements of {total}; run with --nocapture)",
        agreement * 100.0,
        MIN_AGREEMENT * 100.0,
        disagreements.len()
    );
}
