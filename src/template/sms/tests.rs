//! Part counting checked against independent reference vectors, edge cases and properties.

use super::*;
use proptest::prelude::*;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/sms_parts_vectors.csv"
);

fn parts(text: &str) -> (Encoding, u32, u32) {
    let p = count_parts(text);
    (p.encoding, p.units, p.parts)
}

#[test]
fn agrees_with_every_reference_vector() {
    let data = std::fs::read_to_string(VECTORS).unwrap_or_else(|e| {
        panic!("the SMS reference vectors must be present at {VECTORS} ({e}); they are the only independent check of part counting")
    });
    let mut reader = csv::Reader::from_reader(data.as_bytes());
    let mut rows = 0;
    let mut failures = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.unwrap_or_else(|e| panic!("row {}: not CSV: {e}", i + 2));
        let field = |n: usize| {
            record
                .get(n)
                .unwrap_or_else(|| panic!("row {}: no column {n}", i + 2))
        };
        let text = field(0);
        let encoding = match field(1) {
            "gsm7" => Encoding::Gsm7,
            "ucs2" => Encoding::Ucs2,
            other => panic!("row {}: unknown encoding {other:?}", i + 2),
        };
        let units: u32 = field(2).parse().expect("units is an integer");
        let expected_parts: u32 = field(3).parse().expect("parts is an integer");
        let got = count_parts(text);
        assert_eq!(got.encoding.as_str(), field(1));
        if (got.encoding, got.units, got.parts) != (encoding, units, expected_parts) {
            failures.push(format!(
                "row {}: {text:?}: expected {encoding:?}/{units}/{expected_parts}, got {got:?}",
                i + 2
            ));
        }
        rows += 1;
    }
    assert_eq!(rows, 437, "the vector file changed size");
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn empty_text_is_one_part() {
    assert_eq!(parts(""), (Encoding::Gsm7, 0, 1));
}

#[test]
fn gsm7_single_and_concatenated_boundaries() {
    assert_eq!(parts(&"a".repeat(160)), (Encoding::Gsm7, 160, 1));
    assert_eq!(parts(&"a".repeat(161)), (Encoding::Gsm7, 161, 2));
    assert_eq!(parts(&"a".repeat(306)), (Encoding::Gsm7, 306, 2));
    assert_eq!(parts(&"a".repeat(307)), (Encoding::Gsm7, 307, 3));
}

#[test]
fn extension_characters_count_twice() {
    for c in ['^', '{', '}', '\\', '[', '~', ']', '|', '€', '\u{0C}'] {
        assert_eq!(parts(&c.to_string()), (Encoding::Gsm7, 2, 1), "{c:?}");
    }
    assert_eq!(parts(&"€".repeat(80)), (Encoding::Gsm7, 160, 1));
    assert_eq!(parts(&"€".repeat(81)), (Encoding::Gsm7, 162, 2));
}

#[test]
fn escape_pair_moves_whole_to_the_next_part() {
    // 152 + 2 + 152 = 306 septets would be two parts by division, but the euro sign cannot be
    // split after septet 153: parts are 152 | 153 | 1.
    let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
    assert_eq!(parts(&text), (Encoding::Gsm7, 306, 3));
}

#[test]
fn ucs2_boundaries_and_surrogate_pairs() {
    assert_eq!(parts(&"你".repeat(70)), (Encoding::Ucs2, 70, 1));
    assert_eq!(parts(&"你".repeat(71)), (Encoding::Ucs2, 71, 2));
    assert_eq!(parts(&"你".repeat(134)), (Encoding::Ucs2, 134, 2));
    assert_eq!(parts("😀"), (Encoding::Ucs2, 2, 1));
    // 66 + 2 + 66 = 134 units: the emoji cannot straddle parts, so 66 | 67 | 1.
    let text = format!("{}😀{}", "你".repeat(66), "你".repeat(66));
    assert_eq!(parts(&text), (Encoding::Ucs2, 134, 3));
}

#[test]
fn one_foreign_character_makes_the_whole_message_ucs2() {
    assert_eq!(
        parts(&format!("{}`", "a".repeat(100))),
        (Encoding::Ucs2, 101, 2)
    );
    assert_eq!(parts("ç"), (Encoding::Ucs2, 1, 1));
    assert_eq!(parts("Ç"), (Encoding::Gsm7, 1, 1));
    assert_eq!(parts("Hi {name} €5"), (Encoding::Gsm7, 15, 1));
    assert_eq!(parts("\t"), (Encoding::Ucs2, 1, 1));
}

/// Characters from every class the counter distinguishes.
fn sms_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        1 => prop::sample::select(vec![' ', '\n', '\r', '@', '$', '_', '!', '0']),
        2 => prop::sample::select(vec!['^', '{', '}', '\\', '[', '~', ']', '|', '€', '\u{0C}']),
        1 => prop::sample::select(vec!['é', 'Δ', 'ß', 'Ñ', '¿', '£', 'Ω']),
        1 => prop::sample::select(vec!['你', '好', '—', '’', 'ç', '`']),
        1 => prop::sample::select(vec!['😀', '🎉', '𝔸']),
    ]
}

fn sms_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(sms_char(), 0..max).prop_map(|v| v.into_iter().collect())
}

/// Units of one character in `encoding`.
fn width(encoding: Encoding, c: char) -> u32 {
    match encoding {
        Encoding::Gsm7 => gsm7_septets(c).map_or(0, u32::from),
        Encoding::Ucs2 => c.len_utf16() as u32,
    }
}

/// A deliberately naive reference: actually cut the text into parts, character by character.
fn split_into_parts(text: &str) -> (Encoding, Vec<String>) {
    let encoding = if text.chars().all(|c| gsm7_septets(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    };
    let total: u32 = text.chars().map(|c| width(encoding, c)).sum();
    if total <= encoding.single_part_units() {
        return (encoding, vec![text.to_string()]);
    }
    let mut out = vec![String::new()];
    let mut fill = 0;
    for c in text.chars() {
        if fill + width(encoding, c) > encoding.multi_part_units() {
            out.push(String::new());
            fill = 0;
        }
        fill += width(encoding, c);
        out.last_mut().expect("never empty").push(c);
    }
    (encoding, out)
}

proptest! {
    #[test]
    fn parts_never_split_an_escape_or_surrogate_pair(text in sms_text(500)) {
        let (encoding, cut) = split_into_parts(&text);
        let got = count_parts(&text);
        prop_assert_eq!(got.encoding, encoding);
        prop_assert_eq!(got.parts as usize, cut.len());
        prop_assert_eq!(cut.concat(), text);
        let total: u32 = cut.iter().flat_map(|p| p.chars()).map(|c| width(encoding, c)).sum();
        prop_assert_eq!(got.units, total);
        if cut.len() > 1 {
            for part in &cut {
                let units: u32 = part.chars().map(|c| width(encoding, c)).sum();
                prop_assert!(units <= encoding.multi_part_units());
            }
        }
    }

    #[test]
    fn appending_text_never_lowers_the_part_count(a in sms_text(300), b in sms_text(300)) {
        let whole = format!("{a}{b}");
        prop_assert!(count_parts(&whole).parts >= count_parts(&a).parts);
        prop_assert!(count_parts(&whole).units >= count_parts(&a).units
            || count_parts(&whole).encoding != count_parts(&a).encoding);
    }

    #[test]
    fn gsm_text_of_n_septets_has_the_expected_parts(n in 0u32..2_000, ext in any::<bool>()) {
        let (text, septets) = if ext {
            ("€".repeat(n as usize), 2 * n)
        } else {
            ("a".repeat(n as usize), n)
        };
        let expected = if septets <= 160 {
            1
        } else if ext {
            n.div_ceil(76) // 76 pairs fill 152 of a part's 153 septets
        } else {
            n.div_ceil(153)
        };
        prop_assert_eq!(parts(&text), (Encoding::Gsm7, septets, expected));
    }
}
