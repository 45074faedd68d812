//! Loading a snapshot from NDJSON (one contact object per line), streamed line by line.
//!
//! Lines are read into one reused buffer with a length cap, so a file without newlines
//! cannot make the loader buffer it whole; an over-long line is skipped and reported. The
//! same reader serves incremental patches (see `store.rs`).

use std::io::{BufRead, Read};

use chrono::{DateTime, Utc};

use super::error::{LoadReport, SnapshotError};
use super::fields::AttrKey;
use super::json_row::JsonRow;
use super::load::load_with;
use super::table::Snapshot;
use crate::phone::RegionCode;

/// Longest line accepted; a contact object is normally well under a kilobyte.
pub(crate) const MAX_LINE: usize = 1 << 20;

/// Loads a snapshot from NDJSON: one object per line with the CSV column names as keys,
/// `tags` as an array of strings, other keys (string, number or boolean values) as
/// attributes, and `"deleted": true` to drop a contact listed earlier. Blank lines are
/// skipped; bad lines are rejected and reported.
pub fn load_ndjson<R: BufRead>(
    reader: R,
    as_of: DateTime<Utc>,
    default_region: RegionCode,
) -> Result<(Snapshot, LoadReport), SnapshotError> {
    let mut lines = LineReader::new(reader);
    load_with(as_of, default_region, |loader| {
        let mut row = JsonRow::default();
        while let Some(line) = lines.next_line()? {
            let (number, bytes) = match line {
                Line::Text(number, bytes) => (number, bytes),
                Line::TooLong(number) => {
                    loader.reject(number, format!("row: longer than {MAX_LINE} bytes"));
                    continue;
                }
            };
            if bytes.trim_ascii().is_empty() {
                continue;
            }
            if let Err(message) = row.parse(bytes) {
                loader.reject(number, message);
                continue;
            }
            let fields = row.fields();
            if row.is_deleted() {
                loader.push_tombstone(number, &fields)?;
            } else {
                let attrs = row.attributes().map(|(k, v)| (AttrKey::Name(k), v));
                loader.push(number, &fields, row.tags(), attrs)?;
            }
        }
        Ok(())
    })
}

/// One line of input.
pub(crate) enum Line<'b> {
    /// Its 1-based number and bytes (without the newline).
    Text(u64, &'b [u8]),
    /// A line past [`MAX_LINE`]; it was skipped.
    TooLong(u64),
}

/// Reads lines into a reused buffer, never holding more than [`MAX_LINE`] bytes.
pub(crate) struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    number: u64,
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(reader: R) -> Self {
        LineReader {
            reader,
            buf: Vec::new(),
            number: 0,
        }
    }

    /// The next line, or `None` at the end of input.
    pub(crate) fn next_line(&mut self) -> std::io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let limit = MAX_LINE as u64 + 1;
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.number += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE {
            // Discard the rest of the line in bounded steps.
            loop {
                self.buf.clear();
                let n = (&mut self.reader)
                    .take(limit)
                    .read_until(b'\n', &mut self.buf)?;
                if n == 0 || self.buf.last() == Some(&b'\n') {
                    break;
                }
            }
            return Ok(Some(Line::TooLong(self.number)));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(Line::Text(self.number, &self.buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Consent};
    use crate::snapshot::PhoneField;

    const CN: RegionCode = RegionCode(*b"CN");

    fn load(ndjson: &str) -> (Snapshot, LoadReport) {
        load_ndjson(ndjson.as_bytes(), DateTime::UNIX_EPOCH, CN).expect("loads")
    }

    #[test]
    fn objects_load_with_tags_attributes_and_consent() {
        let input = r#"{"contact_id":"n1","phone":"131 2307 9337","email":"a@example.com","timezone":"Asia/Shanghai","tags":["vip","shanghai"],"sms_consent":"opt_in","push_consent":"opt_out","updated_at":"2026-11-20T08:00:00Z","first_name":"Wei","age":42,"member":true,"nickname":null}

{"contact_id":"n2","phone":"+86131234365495","tags":null,"city":"Wuhan, \"Hubei\""}
"#;
        let (snap, report) = load(input);
        assert_eq!(report.contacts, 2);
        assert_eq!(report.rejected_rows, 0, "{:?}", report.errors);
        let n1 = snap.lookup("n1").expect("present");
        assert!(matches!(n1.phone(), PhoneField::Valid(p) if p.e164 == 8613123079337));
        assert_eq!(n1.email(), Some("a@example.com"));
        assert_eq!(n1.timezone(), Some(chrono_tz::Asia::Shanghai));
        assert_eq!(n1.tags().collect::<Vec<_>>(), ["vip", "shanghai"]);
        assert_eq!(
            n1.attributes().collect::<Vec<_>>(),
            [("first_name", "Wei"), ("age", "42"), ("member", "true")]
        );
        assert_eq!(n1.consent(Channel::Sms), Consent::OptIn);
        assert_eq!(n1.consent(Channel::Email), Consent::Unknown);
        assert_eq!(n1.consent(Channel::Push), Consent::OptOut);
        assert!(n1.updated_at().is_some());
        let n2 = snap.lookup("n2").expect("kept despite its phone");
        assert_eq!(n2.phone(), PhoneField::Invalid);
        assert_eq!(n2.attribute("city"), Some("Wuhan, \"Hubei\""));
        assert_eq!(n2.tags().count(), 0);
    }

    #[test]
    fn bad_lines_are_reported_by_line_and_key() {
        let input = [
            r#"{"contact_id":"ok1"}"#,
            r#"{"contact_id":"b1","timezone":"Asia/Nowhere"}"#,
            r#"{"contact_id":"b2","email_consent":"sure"}"#,
            "",
            r#"{"phone":"13123079337"}"#,
            r#"{"contact_id":"b4","tags":"vip","city":{"name":"x"}}"#,
            r#"{"contact_id":"b5""#,
            r#"{"contact_id":"ok2","deleted":false}"#,
            r#"{"contact_id":"ok1","deleted":true}"#,
        ]
        .join("\n");
        let (snap, report) = load(&input);
        assert_eq!(report.contacts, 1);
        assert_eq!(report.rejected_rows, 5);
        let got: Vec<(u64, &str)> = report
            .errors
            .iter()
            .map(|e| (e.line, e.message.split(':').next().unwrap_or("")))
            .collect();
        assert_eq!(
            got,
            [
                (2, "timezone"),
                (3, "email_consent"),
                (5, "contact_id"),
                (6, "city"),
                (7, "row")
            ]
        );
        assert!(snap.lookup("ok1").is_none(), "deleted later in the file");
        assert!(snap.lookup("ok2").is_some());
        assert_eq!(snap.iter().count(), 1);
    }

    #[test]
    fn lines_are_numbered_and_overlong_ones_skipped() {
        let mut input = b"one\r\ntwo\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend(b"\nlast");
        let mut lines = LineReader::new(&input[..]);
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().expect("in memory") {
            seen.push(match line {
                Line::Text(n, b) => format!("{n}:{}", String::from_utf8_lossy(b)),
                Line::TooLong(n) => format!("{n}:too long"),
            });
        }
        assert_eq!(seen, ["1:one", "2:two", "3:too long", "4:last"]);
    }
}
