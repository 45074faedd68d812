//! The load driver shared by the CSV and NDJSON readers: it owns the builder and the phone
//! workers for the duration of one load.
//!
//! A format reader only turns its bytes into [`RowFields`] and calls [`Loader::push`]; this
//! file decides what runs where. The reading thread does everything except numbering-plan
//! validation, which goes to [`PhonePipeline`] workers in batches; memory beyond the table
//! is one phone batch per worker plus the format reader's buffers.

use chrono::{DateTime, Utc};

use super::builder::Builder;
use super::error::{LoadReport, SnapshotError};
use super::fields::{AttrKey, RowFields};
use super::phones::{PhoneBatch, PhonePipeline, BATCH};
use super::table::Snapshot;
use crate::phone::RegionCode;

/// One load in progress (see [`load_with`]).
pub(crate) struct Loader {
    pub(crate) builder: Builder,
    pipeline: PhonePipeline,
    batch: PhoneBatch,
}

impl Loader {
    /// Adds a row; `line` is where it starts in the input (1-based).
    pub(crate) fn push<'a>(
        &mut self,
        line: u64,
        row: &RowFields<'a>,
        tags: impl Iterator<Item = &'a str>,
        attrs: impl Iterator<Item = (AttrKey<'a>, &'a str)>,
    ) -> Result<(), SnapshotError> {
        let Some(record) = self.builder.push(line, row, tags, attrs)? else {
            return Ok(());
        };
        let phone = row.phone.trim();
        if !phone.is_empty() {
            self.batch.push(record, phone);
            if self.batch.len() >= BATCH {
                self.flush();
            }
        }
        Ok(())
    }

    /// Adds a `deleted: true` row.
    pub(crate) fn push_tombstone(
        &mut self,
        line: u64,
        row: &RowFields<'_>,
    ) -> Result<(), SnapshotError> {
        self.builder.push_tombstone(line, row)
    }

    /// Rejects a row the format reader could not split into cells.
    pub(crate) fn reject(&mut self, line: u64, message: String) {
        self.builder.log.reject(line, message);
    }

    fn flush(&mut self) {
        let full = std::mem::replace(&mut self.batch, self.pipeline.batch());
        let records = &mut self.builder.records;
        self.pipeline
            .submit(full, &mut |done: &PhoneBatch| apply(records, done));
    }
}

fn apply(records: &mut [super::record::Record], batch: &PhoneBatch) {
    for (i, outcome) in batch.results() {
        if let Some(record) = records.get_mut(i as usize) {
            record.set_phone(outcome);
        }
    }
}

/// Threads for phone validation besides the reading thread (which helps when they lag).
fn phone_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

/// Runs `feed` (which pushes every row of one file) with phone workers alongside, then
/// builds the snapshot. On a whole-file error nothing is returned but the error.
pub(crate) fn load_with<F>(
    as_of: DateTime<Utc>,
    default_region: RegionCode,
    feed: F,
) -> Result<(Snapshot, LoadReport), SnapshotError>
where
    F: FnOnce(&mut Loader) -> Result<(), SnapshotError>,
{
    let builder = std::thread::scope(|scope| {
        let mut pipeline = PhonePipeline::start(scope, phone_workers(), default_region);
        let batch = pipeline.batch();
        let mut loader = Loader {
            builder: Builder::default(),
            pipeline,
            batch,
        };
        let fed = feed(&mut loader);
        let Loader {
            mut builder,
            mut pipeline,
            batch,
        } = loader;
        let records = &mut builder.records;
        let mut apply_done = |done: &PhoneBatch| apply(records, done);
        pipeline.submit(batch, &mut apply_done);
        let complete = pipeline.finish(&mut apply_done);
        fed?;
        if !complete {
            return Err(SnapshotError::Io(std::io::Error::other(
                "a phone validation worker stopped unexpectedly",
            )));
        }
        Ok(builder)
    })?;
    Ok(builder.finish(as_of, default_region))
}
