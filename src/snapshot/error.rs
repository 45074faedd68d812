//! What can go wrong while loading or patching the snapshot, and the reports handed back to
//! the uploader.
//!
//! Two levels on purpose: a [`SnapshotError`] means the whole file (or the swap) failed and
//! nothing changed; a [`RowError`] rejects one row and the load goes on. Row errors are kept
//! for the first [`MAX_REPORTED_ERRORS`] rows only, so a broken 10M-row export cannot turn
//! the report itself into a memory problem; the counts stay exact.

use serde::Serialize;

/// How many row errors a report lists; later ones are only counted.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// A failure of a whole load, patch or swap. Nothing is installed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The upload could not be read (connection dropped, disk error).
    #[error("reading the contact data failed: {0}")]
    Io(#[from] std::io::Error),
    /// The CSV reader gave up on the file.
    #[error("the CSV data could not be read: {0}")]
    Csv(#[from] csv::Error),
    /// The CSV header has no `contact_id` column, so no row could be keyed.
    #[error("the CSV header has no contact_id column")]
    MissingContactIdColumn,
    /// The CSV header names the same column twice, so its values would be ambiguous.
    #[error("the CSV header names column {0:?} more than once")]
    DuplicateColumn(String),
    /// The CSV header is not UTF-8.
    #[error("the CSV header is not valid UTF-8 (column {0})")]
    HeaderEncoding(usize),
    /// The data exceeds what the compact layout can address (4 GiB of strings, 2^32 rows).
    #[error("the snapshot is too large: {0}")]
    TooLarge(&'static str),
    /// [`super::SnapshotStore::replace`] was offered a snapshot that is not newer than the
    /// installed one (two loads raced and the older one finished last).
    #[error("snapshot version {offered} is not newer than the installed version {current}")]
    Stale {
        /// The version already installed.
        current: u64,
        /// The version that was offered.
        offered: u64,
    },
    /// The upload loaded but failed an [`super::UploadGuard`] check, so it was not installed.
    #[error("{}", .0.refusal)]
    Refused(Box<Refused>),
}

/// An upload refused by [`super::UploadGuard`], with what its load found.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The check that failed.
    pub refusal: super::Refusal,
    /// What the upload loaded as (its row errors tell the uploader what to fix).
    pub report: LoadReport,
}

/// One rejected (or noteworthy) input row. `message` starts with the column it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RowError {
    /// 1-based line of the input where the row starts (the CSV header is line 1).
    pub line: u64,
    /// What is wrong, naming the column first, e.g. `timezone: "Mars/Olympus" is not ...`.
    pub message: String,
}

/// The outcome of a full load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LoadReport {
    /// The snapshot's version (process-wide increasing; see [`super::Snapshot::version`]).
    pub version: u64,
    /// Live contacts in the snapshot (after duplicates and deletions).
    pub contacts: usize,
    /// Rows that were rejected and are not in the snapshot.
    pub rejected_rows: usize,
    /// Rows whose contact_id repeated an earlier row; the later row won. Each one is also
    /// listed in `errors` (within the first [`MAX_REPORTED_ERRORS`]).
    pub duplicate_rows: usize,
    /// The first [`MAX_REPORTED_ERRORS`] row errors and duplicate notes, by line.
    pub errors: Vec<RowError>,
}

/// The outcome of an incremental patch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PatchReport {
    /// The snapshot version the patch was applied to.
    pub version: u64,
    /// Contacts inserted or replaced.
    pub upserted: usize,
    /// Delete lines applied (deleting an unknown contact is not an error).
    pub deleted: usize,
    /// Lines rejected; they changed nothing.
    pub rejected_rows: usize,
    /// The first [`MAX_REPORTED_ERRORS`] rejected lines.
    pub errors: Vec<RowError>,
}

/// Collects row errors up to the cap while counting all of them.
#[derive(Debug, Default)]
pub(crate) struct ErrorLog {
    pub(crate) errors: Vec<RowError>,
    pub(crate) rejected: usize,
}

impl ErrorLog {
    /// Counts a rejected row and keeps its message if the list still has room.
    pub(crate) fn reject(&mut self, line: u64, message: String) {
        self.rejected += 1;
        self.note(line, message);
    }

    /// Keeps a message without counting a rejection.
    pub(crate) fn note(&mut self, line: u64, message: String) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(RowError { line, message });
        }
    }
}

/// Quotes a cell for an error message, cut short so one huge cell cannot bloat the report.
pub(crate) fn quoted(value: &str) -> String {
    const MAX: usize = 40;
    if value.len() <= MAX {
        return format!("{value:?}");
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}...", &value[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_log_caps_messages_but_counts_everything() {
        let mut log = ErrorLog::default();
        for line in 0..250 {
            log.reject(line, format!("phone: bad {line}"));
        }
        assert_eq!(log.rejected, 250);
        assert_eq!(log.errors.len(), MAX_REPORTED_ERRORS);
        assert_eq!(log.errors[99].line, 99);
    }

    #[test]
    fn quoted_cuts_long_cells_on_char_boundaries() {
        let long = "退".repeat(30);
        let q = quoted(&long);
        assert!(q.ends_with("..."));
        assert!(q.len() < long.len());
        assert_eq!(quoted("ok"), "\"ok\"");
    }
}
