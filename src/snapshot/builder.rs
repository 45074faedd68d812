//! Builds a [`Snapshot`] row by row: validates a row's cells, appends its record and
//! strings, and at the end indexes every contact id once.
//!
//! The id index (`index.rs`) is built after the last row rather than while reading: its size
//! is then known exactly (no rehash of a 10M-entry table), it can be built on several
//! threads, and "the later row wins" for repeated ids falls out of inserting in file order.
//! A rejected row is validated before anything is written, or its partial strings are cut
//! off the arena again, so it leaves no trace.

use chrono::{DateTime, Utc};

use super::arena::{push_str, push_u16};
use super::error::{ErrorLog, LoadReport, RowError, SnapshotError, MAX_REPORTED_ERRORS};
use super::fields::{self, AttrKey, EmailCell, RowFields};
use super::index::IdIndex;
use super::intern::{Interner, ZoneTable};
use super::overlay::Overlay;
use super::record::Record;
use super::table::{next_version, Snapshot};
use crate::phone::RegionCode;

/// Most tags or attributes one contact may carry (the count is stored in a byte).
const MAX_PER_CONTACT: usize = u8::MAX as usize;

/// The growing parts of a snapshot under construction.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    pub(crate) records: Vec<Record>,
    arena: Vec<u8>,
    /// Input line of each record, for "repeats line N" notes; dropped after the build.
    lines: Vec<u32>,
    tags: Interner,
    attrs: Interner,
    zones: ZoneTable,
    pub(crate) log: ErrorLog,
    row_tags: Vec<u16>,
}

impl Builder {
    /// Interns an attribute name up front (the CSV header). `None` past 65,536 names.
    pub(crate) fn attr_id(&mut self, name: &str) -> Option<u16> {
        self.attrs.intern(name)
    }

    /// Adds one row. `Ok(Some(record))` when kept (its phone still to be validated),
    /// `Ok(None)` when rejected (logged), `Err` when the snapshot cannot grow any more.
    pub(crate) fn push<'a>(
        &mut self,
        line: u64,
        row: &RowFields<'a>,
        tags: impl Iterator<Item = &'a str>,
        attrs: impl Iterator<Item = (AttrKey<'a>, &'a str)>,
    ) -> Result<Option<u32>, SnapshotError> {
        let checked = fields::contact_id(row).and_then(|id| {
            let zone = self
                .zones
                .intern(row.timezone)
                .map_err(|_| fields::bad_timezone(row.timezone))?;
            let addresses = (fields::push_tokens(row)?, fields::wechat_openids(row)?);
            Ok((
                id,
                zone,
                fields::consents(row)?,
                fields::updated_at(row)?,
                addresses,
            ))
        });
        let (id, zone, consents, updated, (push, wechat)) = match checked {
            Ok(ok) => ok,
            Err(message) => {
                self.log.reject(line, message);
                return Ok(None);
            }
        };
        let (index, blob) = self.next_slot()?;
        let email = fields::email(row);
        push_str(&mut self.arena, id.as_bytes());
        match &email {
            EmailCell::Valid(e) => push_str(&mut self.arena, e.as_bytes()),
            EmailCell::Missing | EmailCell::Invalid => push_str(&mut self.arena, b""),
        }
        push_str(&mut self.arena, push.as_bytes());
        push_str(&mut self.arena, wechat.as_bytes());
        let counts = self
            .push_tags(tags)
            .and_then(|ntags| Ok((ntags, self.push_attrs(attrs)?)));
        let (ntags, nattrs) = match counts {
            Ok(counts) => counts,
            Err(message) => {
                self.arena.truncate(blob as usize);
                self.log.reject(line, message);
                return Ok(None);
            }
        };
        let mut record = Record {
            blob,
            updated,
            zone,
            ntags,
            nattrs,
            ..Record::default()
        };
        record.set_consents(consents);
        if email == EmailCell::Invalid {
            record.set_email_invalid();
        }
        self.records.push(record);
        self.lines.push(u32::try_from(line).unwrap_or(u32::MAX));
        Ok(Some(index))
    }

    /// Adds a `deleted: true` row: it removes any earlier row with the same id.
    pub(crate) fn push_tombstone(
        &mut self,
        line: u64,
        row: &RowFields<'_>,
    ) -> Result<(), SnapshotError> {
        let id = match fields::contact_id(row) {
            Ok(id) => id,
            Err(message) => {
                self.log.reject(line, message);
                return Ok(());
            }
        };
        let (_, blob) = self.next_slot()?;
        push_str(&mut self.arena, id.as_bytes());
        for _address in 0..3 {
            push_str(&mut self.arena, b"");
        }
        let mut record = Record {
            blob,
            ..Record::default()
        };
        record.set_tombstone();
        self.records.push(record);
        self.lines.push(u32::try_from(line).unwrap_or(u32::MAX));
        Ok(())
    }

    /// The next record index and arena offset, if both still fit in `u32`.
    fn next_slot(&self) -> Result<(u32, u32), SnapshotError> {
        let index = u32::try_from(self.records.len())
            .ok()
            .filter(|&i| i < u32::MAX)
            .ok_or(SnapshotError::TooLarge("more than 4 billion rows"))?;
        let blob = u32::try_from(self.arena.len())
            .map_err(|_| SnapshotError::TooLarge("more than 4 GiB of contact strings"))?;
        Ok((index, blob))
    }

    fn push_tags<'a>(&mut self, tags: impl Iterator<Item = &'a str>) -> Result<u8, String> {
        self.row_tags.clear();
        for tag in tags {
            let id = self
                .tags
                .intern(tag)
                .ok_or("tags: the snapshot already has 65,536 distinct tag names")?;
            if !self.row_tags.contains(&id) {
                self.row_tags.push(id);
            }
        }
        if self.row_tags.len() > MAX_PER_CONTACT {
            return Err(format!(
                "tags: more than {MAX_PER_CONTACT} tags on one contact"
            ));
        }
        for &id in &self.row_tags {
            push_u16(&mut self.arena, id);
        }
        Ok(self.row_tags.len() as u8)
    }

    fn push_attrs<'a>(
        &mut self,
        attrs: impl Iterator<Item = (AttrKey<'a>, &'a str)>,
    ) -> Result<u8, String> {
        let mut count = 0usize;
        for (key, value) in attrs {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let id = match key {
                AttrKey::Id(id) => id,
                AttrKey::Name(name) => self.attrs.intern(name.trim()).ok_or_else(|| {
                    format!("{name}: the snapshot already has 65,536 distinct attribute names")
                })?,
            };
            count += 1;
            if count > MAX_PER_CONTACT {
                return Err(format!(
                    "{}: more than {MAX_PER_CONTACT} attributes on one contact",
                    self.attrs.name(id)
                ));
            }
            push_u16(&mut self.arena, id);
            push_str(&mut self.arena, value.as_bytes());
        }
        Ok(count as u8)
    }

    /// Indexes the ids (the later of two rows with one id wins) and freezes the snapshot.
    pub(crate) fn finish(
        mut self,
        as_of: DateTime<Utc>,
        default_region: RegionCode,
    ) -> (Snapshot, LoadReport) {
        let (index, dedup) = IdIndex::build(&self.records, &self.arena, &self.lines);
        drop(std::mem::take(&mut self.lines));
        let mut dead = Vec::new();
        if !dedup.dead.is_empty() {
            dead = vec![0u64; self.records.len().div_ceil(64)];
            for &i in &dedup.dead {
                if let Some(word) = dead.get_mut(i as usize / 64) {
                    *word |= 1 << (i % 64);
                }
            }
        }
        let live = self.records.len() - dedup.dead.len();
        let version = next_version();
        let report = LoadReport {
            version,
            contacts: live,
            rejected_rows: self.log.rejected,
            duplicate_rows: dedup.duplicates,
            errors: merge_by_line(std::mem::take(&mut self.log.errors), dedup.notes),
        };
        self.records.shrink_to_fit();
        self.arena.shrink_to_fit();
        let snapshot = Snapshot {
            version,
            as_of,
            default_region,
            records: self.records,
            arena: self.arena,
            index,
            dead,
            live,
            tags: self.tags,
            attrs: self.attrs,
            zones: self.zones,
            overlay: Overlay::default(),
            phone_index: Default::default(),
        };
        (snapshot, report)
    }
}

/// Merges two line-ordered lists and keeps the first [`MAX_REPORTED_ERRORS`].
fn merge_by_line(a: Vec<RowError>, b: Vec<RowError>) -> Vec<RowError> {
    let mut all = a;
    all.extend(b);
    all.sort_by_key(|e| e.line);
    all.truncate(MAX_REPORTED_ERRORS);
    all
}
