//! Loading a snapshot from a CSV export, streamed record by record.
//!
//! The header decides what each column means: the fixed columns of [`Column`], and every
//! other named column becomes a template attribute (interned once, here). Rows are read into
//! one reused `csv::ByteRecord` and validated as UTF-8 once per row; cells are then borrowed
//! `&str` slices of that buffer, so a row costs no allocation.

use std::io::Read;

use chrono::{DateTime, Utc};
use csv::ByteRecord;

use super::error::{quoted, LoadReport, SnapshotError};
use super::fields::{split_tags, AttrKey, Column, RowFields, CONSENT_SLOTS};
use super::load::load_with;
use super::table::Snapshot;
use crate::phone::RegionCode;

/// Loads a snapshot from CSV. The header must have a `contact_id` column; see the module
/// docs of [`crate::snapshot`] for the columns. Bad rows are rejected and reported, not
/// fatal; unreadable input, a bad header, or a table past the layout's limits is.
pub fn load_csv<R: Read>(
    reader: R,
    as_of: DateTime<Utc>,
    default_region: RegionCode,
) -> Result<(Snapshot, LoadReport), SnapshotError> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(reader);
    let layout = Layout::parse(csv.byte_headers()?)?;
    load_with(as_of, default_region, |loader| {
        let mut attributes = Vec::with_capacity(layout.attributes.len());
        for (col, name) in &layout.attributes {
            let id = loader.builder.attr_id(name).ok_or(SnapshotError::TooLarge(
                "more than 65,536 attribute columns",
            ))?;
            attributes.push((*col, id));
        }
        let mut record = ByteRecord::new();
        while csv.read_byte_record(&mut record)? {
            let line = record.position().map_or(0, |p| p.line());
            if record.len() != layout.width {
                let message = format!(
                    "row has {} fields but the header has {}",
                    record.len(),
                    layout.width
                );
                loader.reject(line, message);
                continue;
            }
            let text = match std::str::from_utf8(record.as_slice()) {
                Ok(text) => text,
                Err(e) => {
                    let message = format!(
                        "{}: not valid UTF-8",
                        layout.column_at(&record, e.valid_up_to())
                    );
                    loader.reject(line, message);
                    continue;
                }
            };
            let cell = |col: Option<usize>| {
                col.and_then(|c| record.range(c))
                    .and_then(|r| text.get(r))
                    .unwrap_or("")
            };
            let row = RowFields {
                contact_id: cell(Some(layout.contact_id)),
                phone: cell(layout.phone),
                email: cell(layout.email),
                push_token: cell(layout.push_token),
                wechat_openid: cell(layout.wechat_openid),
                timezone: cell(layout.timezone),
                consents: layout.consents.map(cell),
                updated_at: cell(layout.updated_at),
            };
            match parse_deleted(cell(layout.deleted)) {
                Ok(false) => {
                    let tags = split_tags(cell(layout.tags));
                    let attrs = attributes
                        .iter()
                        .map(|&(col, id)| (AttrKey::Id(id), cell(Some(col))));
                    loader.push(line, &row, tags, attrs)?;
                }
                Ok(true) => loader.push_tombstone(line, &row)?,
                Err(message) => loader.reject(line, message),
            }
        }
        Ok(())
    })
}

/// A `deleted` cell: empty, `false`/`0` keep the row, `true`/`1` delete the contact.
fn parse_deleted(cell: &str) -> Result<bool, String> {
    match cell.trim() {
        "" | "false" | "0" => Ok(false),
        "true" | "1" => Ok(true),
        other => Err(format!(
            "deleted: expected true, false or empty, got {}",
            quoted(other)
        )),
    }
}

/// What each column of the header means.
#[derive(Debug)]
struct Layout {
    width: usize,
    names: Vec<String>,
    contact_id: usize,
    phone: Option<usize>,
    email: Option<usize>,
    push_token: Option<usize>,
    wechat_openid: Option<usize>,
    timezone: Option<usize>,
    tags: Option<usize>,
    consents: [Option<usize>; CONSENT_SLOTS],
    updated_at: Option<usize>,
    deleted: Option<usize>,
    attributes: Vec<(usize, String)>,
}

impl Layout {
    fn parse(header: &ByteRecord) -> Result<Layout, SnapshotError> {
        let mut names = Vec::with_capacity(header.len());
        for (i, raw) in header.iter().enumerate() {
            let name = std::str::from_utf8(raw).map_err(|_| SnapshotError::HeaderEncoding(i))?;
            let name = if i == 0 {
                name.trim_start_matches('\u{feff}')
            } else {
                name
            };
            names.push(name.trim().to_owned());
        }
        let mut layout = Layout {
            width: header.len(),
            names: Vec::new(),
            contact_id: usize::MAX,
            phone: None,
            email: None,
            push_token: None,
            wechat_openid: None,
            timezone: None,
            tags: None,
            consents: [None; CONSENT_SLOTS],
            updated_at: None,
            deleted: None,
            attributes: Vec::new(),
        };
        let mut seen = hashbrown::HashSet::new();
        for (i, name) in names.iter().enumerate() {
            // Trailing commas in exports give unnamed columns: nothing to attach them to.
            if name.is_empty() {
                continue;
            }
            if !seen.insert(name.to_ascii_lowercase()) {
                return Err(SnapshotError::DuplicateColumn(name.clone()));
            }
            let slot = match Column::from_name(name) {
                Some(Column::ContactId) => {
                    layout.contact_id = i;
                    continue;
                }
                Some(Column::Phone) => &mut layout.phone,
                Some(Column::Email) => &mut layout.email,
                Some(Column::PushToken) => &mut layout.push_token,
                Some(Column::WechatOpenid) => &mut layout.wechat_openid,
                Some(Column::Timezone) => &mut layout.timezone,
                Some(Column::Tags) => &mut layout.tags,
                Some(Column::UpdatedAt) => &mut layout.updated_at,
                Some(Column::Deleted) => &mut layout.deleted,
                Some(
                    c @ (Column::SmsConsent
                    | Column::EmailConsent
                    | Column::PushConsent
                    | Column::WechatConsent),
                ) => &mut layout.consents[c.consent_slot().unwrap_or(0)],
                None => {
                    layout.attributes.push((i, name.clone()));
                    continue;
                }
            };
            *slot = Some(i);
        }
        if layout.contact_id == usize::MAX {
            return Err(SnapshotError::MissingContactIdColumn);
        }
        layout.names = names;
        Ok(layout)
    }

    /// The name of the column holding byte `offset` of the record, for messages.
    fn column_at(&self, record: &ByteRecord, offset: usize) -> &str {
        (0..record.len())
            .find(|&i| record.range(i).is_some_and(|r| r.contains(&offset)))
            .and_then(|i| self.names.get(i))
            .map_or("row", |n| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Consent};
    use crate::phone::LineType;
    use crate::segment::SegmentSubject;
    use crate::snapshot::{PhoneField, PhoneStatus};

    const CN: RegionCode = RegionCode(*b"CN");

    fn as_of() -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_132_800, 0).expect("valid time")
    }

    fn load(csv: &str) -> (Snapshot, LoadReport) {
        load_csv(csv.as_bytes(), as_of(), CN).expect("loads")
    }

    #[test]
    fn demo_file_loads_with_every_kind_of_phone() {
        let (snap, report) = load(crate::config::DEMO_SNAPSHOT_CSV);
        assert_eq!(report.contacts, 10);
        assert_eq!(report.rejected_rows, 0, "{:?}", report.errors);
        assert_eq!(snap.len(), 10);
        assert_eq!(snap.as_of(), as_of());
        assert_eq!(snap.version(), report.version);

        let c001 = snap.lookup("c001").expect("present");
        assert_eq!(c001.contact_id(), "c001");
        match c001.phone() {
            PhoneField::Valid(info) => {
                assert_eq!(info.e164, 8613123079337);
                assert_eq!(info.line_type, LineType::Mobile);
                assert_eq!(info.region, CN);
            }
            other => panic!("c001 phone {other:?}"),
        }
        assert_eq!(c001.email(), Some("li.wei@example.com"));
        assert_eq!(c001.timezone(), Some(chrono_tz::Asia::Shanghai));
        assert_eq!(c001.tags().collect::<Vec<_>>(), ["vip", "shanghai"]);
        assert!(c001.has_tag("vip") && !c001.has_tag("beijing"));
        assert_eq!(c001.attribute("first_name"), Some("Wei"));
        assert_eq!(
            c001.attributes().collect::<Vec<_>>(),
            [
                ("first_name", "Wei"),
                ("city", "Shanghai"),
                ("tier", "gold")
            ]
        );
        assert_eq!(c001.consent(Channel::Sms), Consent::OptIn);
        assert_eq!(c001.consent(Channel::Email), Consent::OptIn);
        assert_eq!(c001.consent(Channel::Push), Consent::Unknown);
        assert_eq!(c001.consent(Channel::Wechat), Consent::Unknown);
        assert_eq!(
            c001.updated_at(),
            Some(as_of() + chrono::Duration::hours(8))
        );
        assert!(SegmentSubject::has_tag(&c001, "shanghai"));
        assert_eq!(SegmentSubject::attribute(&c001, "tier"), Some("gold"));

        // "131 2685 9660" is national: the default region makes it E.164.
        let c002 = snap.lookup("c002").expect("present");
        assert!(matches!(c002.phone(), PhoneField::Valid(p) if p.e164 == 8613126859660));
        assert_eq!(c002.email(), None);
        assert_eq!(snap.lookup("c003").and_then(|c| c.timezone()), None);
        let c004 = snap.lookup("c004").expect("present");
        assert_eq!(c004.consent(Channel::Sms), Consent::OptOut);
        let c006 = snap.lookup("c006").expect("present");
        assert!(matches!(c006.phone(), PhoneField::Valid(p) if p.line_type == LineType::FixedLine));
        let c007 = snap.lookup("c007").expect("kept despite its phone");
        assert_eq!(c007.phone(), PhoneField::Invalid);
        assert_eq!(c007.phone_status(), PhoneStatus::Invalid);
        let c008 = snap.lookup("c008").expect("present");
        assert_eq!(c008.phone(), PhoneField::Missing);
        let c010 = snap.lookup(" c010 ").expect("ids are trimmed");
        assert_eq!(c010.attribute("first_name"), None, "empty cell = absent");
        assert_eq!(c010.attribute("city"), Some("Shanghai"));
        assert!(snap.lookup("c011").is_none());
        assert_eq!(snap.iter().count(), 10);
    }

    #[test]
    fn national_number_is_normalised_with_the_default_region() {
        let (snap, _) = load("contact_id,phone\nx,131 2307 9337\ny,not a phone\n");
        assert!(matches!(
            snap.lookup("x").map(|c| c.phone()),
            Some(PhoneField::Valid(p)) if p.e164 == 8613123079337
        ));
        let y = snap.lookup("y").expect("kept");
        assert_eq!(y.phone(), PhoneField::Invalid);
        assert_eq!(y.phone_status(), PhoneStatus::Unparsable);
    }

    #[test]
    fn quoted_fields_keep_commas_quotes_and_newlines() {
        let csv = "contact_id,phone,tags,greeting,note\n\
                   \"q1\",\"+86 131 2307 9337\",\"vip; shanghai\",\"Hello, \"\"friend\"\"\",\"two\nlines\"\n\
                   q2,,,,\n\
                   q3,,,x,bad";
        let mut bytes = csv.as_bytes().to_vec();
        bytes.extend_from_slice(b"\xff\n");
        let (snap, report) = load_csv(&bytes[..], as_of(), CN).expect("loads");
        let q1 = snap.lookup("q1").expect("present");
        assert_eq!(q1.attribute("greeting"), Some("Hello, \"friend\""));
        assert_eq!(q1.attribute("note"), Some("two\nlines"));
        assert_eq!(q1.tags().collect::<Vec<_>>(), ["vip", "shanghai"]);
        let q2 = snap.lookup("q2").expect("present");
        assert_eq!(q2.attributes().count(), 0);
        assert_eq!(q2.tags().count(), 0);
        // q1 spans lines 2-3, so q3 starts on line 5.
        assert_eq!(report.rejected_rows, 1);
        assert_eq!(report.errors[0].line, 5);
        assert!(
            report.errors[0].message.starts_with("note:"),
            "{:?}",
            report.errors
        );
    }

    #[test]
    fn bad_rows_are_reported_by_line_and_column() {
        let csv = "contact_id,timezone,sms_consent,updated_at,city\n\
                   a,Asia/Shanghai,opt_in,,Shanghai\n\
                   b,Mars/Olympus,opt_in,,X\n\
                   c,,yes,,X\n\
                   d,,,last tuesday,X\n\
                   ,,,,X\n\
                   e,too,few\n\
                   f,Europe/London,opt_out,2026-11-20T08:00:00Z,London\n";
        let (snap, report) = load(csv);
        assert_eq!(report.contacts, 2);
        assert_eq!(report.rejected_rows, 5);
        let got: Vec<(u64, &str)> = report
            .errors
            .iter()
            .map(|e| (e.line, e.message.split(':').next().unwrap_or("")))
            .collect();
        assert_eq!(
            got,
            [
                (3, "timezone"),
                (4, "sms_consent"),
                (5, "updated_at"),
                (6, "contact_id"),
                (7, "row has 3 fields but the header has 5")
            ]
        );
        assert!(snap.lookup("b").is_none());
        assert_eq!(
            snap.lookup("f").and_then(|c| c.timezone()),
            Some(chrono_tz::Europe::London)
        );
    }

    #[test]
    fn header_problems_fail_the_whole_file() {
        let err = load_csv(&b"id,phone\n1,2\n"[..], as_of(), CN).expect_err("no contact_id");
        assert!(matches!(err, SnapshotError::MissingContactIdColumn));
        let err = load_csv(&b""[..], as_of(), CN).expect_err("empty file");
        assert!(matches!(err, SnapshotError::MissingContactIdColumn));
        let err = load_csv(&b"contact_id,city,City\n"[..], as_of(), CN).expect_err("twice");
        assert!(matches!(err, SnapshotError::DuplicateColumn(c) if c == "City"));
    }

    #[test]
    fn bom_and_header_spacing_are_tolerated() {
        let (snap, report) = load("\u{feff}Contact_ID , Phone ,city,\nc1,13123079337,Beijing,\n");
        assert_eq!(report.contacts, 1);
        let c1 = snap.lookup("c1").expect("present");
        assert!(matches!(c1.phone(), PhoneField::Valid(_)));
        assert_eq!(c1.attributes().collect::<Vec<_>>(), [("city", "Beijing")]);
    }

    #[test]
    fn later_duplicate_wins_and_is_noted() {
        let csv = "contact_id,city,deleted\nd1,Old,\nd2,Keep,\nd1,New,\nd3,Gone,\nd3,,true\n";
        let (snap, report) = load(csv);
        assert_eq!(report.contacts, 2);
        assert_eq!(report.duplicate_rows, 1);
        assert_eq!(report.rejected_rows, 0);
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.errors[0].line, 4);
        assert!(
            report.errors[0].message.contains("repeats line 2"),
            "{:?}",
            report.errors
        );
        assert_eq!(
            snap.lookup("d1")
                .and_then(|c| c.attribute("city").map(str::to_owned)),
            Some("New".into())
        );
        assert!(snap.lookup("d3").is_none());
        let ids: Vec<String> = snap.iter().map(|c| c.contact_id().to_owned()).collect();
        assert_eq!(ids, ["d2", "d1"]);
        assert_eq!(snap.len(), 2);
    }
}
