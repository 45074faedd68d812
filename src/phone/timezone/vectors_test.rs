//! Agreement with libphonenumber's time zones on the shared reference vectors: 2,287 valid
//! numbers from 34 regions with the zones the Python port (`phonenumbers`,
//! `timezone.time_zones_for_number`) gives, sorted and joined by `&`. Every disagreement is
//! printed; above 0.5% the lookup (or the number typing it depends on) is wrong.

use super::zones_for;
use crate::phone::{parse, RegionCode};

/// The vectors live beside the repository (CI clones `shared/` next to it).
const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/timezone_vectors.csv"
);

/// Largest share of rows allowed to disagree.
const MAX_DISAGREEMENT: f64 = 0.005;

#[derive(Debug, serde::Deserialize)]
struct Row {
    e164: String,
    region: String,
    time_zones: String,
}

/// Compares one row; `None` when we agree, else a description of the difference.
fn disagreement(row: &Row) -> Option<String> {
    let Some(region) = RegionCode::parse(&row.region) else {
        return Some(format!("bad region {:?}", row.region));
    };
    let info = match parse(&row.e164, region) {
        Ok(info) => info,
        Err(e) => return Some(format!("{} in {}: not parsed ({e})", row.e164, row.region)),
    };
    let mut ours: Vec<&str> = zones_for(&info).iter().map(|z| z.name()).collect();
    ours.sort_unstable();
    let ours = if ours.is_empty() {
        "Etc/Unknown".to_owned()
    } else {
        ours.join("&")
    };
    (ours != row.time_zones).then(|| {
        format!(
            "{} in {} ({:?}): reference {}, ours {ours}",
            row.e164, row.region, info.line_type, row.time_zones
        )
    })
}

#[test]
fn agrees_with_libphonenumber_timezone_vectors() {
    let (total, disagreements) =
        crate::phone::vectors_test::compare(VECTORS, "time zone", disagreement);
    let share = disagreements.len() as f64 / total as f64;
    println!(
        "time zone vectors: {} of {total} rows disagree ({:.2}%)",
        disagreements.len(),
        share * 100.0
    );
    assert!(
        share <= MAX_DISAGREEMENT,
        "{} of {total} rows disagree ({:.2}%, more than {:.1}%; run with --nocapture)",
        disagreements.len(),
        share * 100.0,
        MAX_DISAGREEMENT * 100.0
    );
}
