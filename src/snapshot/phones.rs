//! Phone validation in parallel with reading: at ~1-2 µs a number, numbering-plan checks
//! cost more than parsing the rest of a row, so a load hands them off in batches.
//!
//! The reading thread appends each row's phone cell to a [`PhoneBatch`] and submits full
//! batches to a bounded queue served by scoped worker threads. When the queue is full the
//! reading thread validates the batch itself instead of waiting, so all cores stay busy and
//! the queue (hence memory) stays bounded whatever the file size. Finished batches come back
//! to the reading thread, which alone writes records, and are reused.

use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::Scope;

use parking_lot::Mutex;

use super::record::PhoneOutcome;
use crate::phone::RegionCode;

/// Phones per batch: large enough that queue traffic is noise (about a millisecond of work).
pub(crate) const BATCH: usize = 1024;

/// Phone cells of consecutive rows, and once validated, their outcomes.
#[derive(Debug, Default)]
pub(crate) struct PhoneBatch {
    text: String,
    ends: Vec<u32>,
    records: Vec<u32>,
    outcomes: Vec<PhoneOutcome>,
}

impl PhoneBatch {
    /// Queues the phone cell of record `record`.
    pub(crate) fn push(&mut self, record: u32, phone: &str) {
        self.text.push_str(phone);
        // A batch holds at most BATCH cells of one row each, far below 4 GiB.
        self.ends
            .push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
        self.records.push(record);
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Validates every queued cell.
    pub(crate) fn parse(&mut self, region: RegionCode) {
        self.outcomes.clear();
        let mut start = 0usize;
        for &end in &self.ends {
            let end = end as usize;
            let cell = self.text.get(start..end).unwrap_or("");
            self.outcomes.push(PhoneOutcome::parse(cell, region));
            start = end;
        }
    }

    /// `(record, outcome)` pairs after [`PhoneBatch::parse`].
    pub(crate) fn results(&self) -> impl Iterator<Item = (u32, PhoneOutcome)> + '_ {
        self.records
            .iter()
            .copied()
            .zip(self.outcomes.iter().copied())
    }

    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
        self.records.clear();
        self.outcomes.clear();
    }
}

/// The worker pool of one load, living inside a `std::thread::scope`.
pub(crate) struct PhonePipeline {
    jobs: Option<SyncSender<PhoneBatch>>,
    done: Receiver<PhoneBatch>,
    spare: Vec<PhoneBatch>,
    in_flight: usize,
    region: RegionCode,
}

impl PhonePipeline {
    /// Starts `workers` threads in `scope`. They exit when the pipeline is finished or
    /// dropped.
    pub(crate) fn start<'scope>(
        scope: &'scope Scope<'scope, '_>,
        workers: usize,
        region: RegionCode,
    ) -> PhonePipeline {
        let (job_tx, job_rx) = sync_channel::<PhoneBatch>(workers * 2);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done) = channel::<PhoneBatch>();
        for _ in 0..workers {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || loop {
                let job = job_rx.lock().recv();
                let Ok(mut batch) = job else { break };
                batch.parse(region);
                if done_tx.send(batch).is_err() {
                    break;
                }
            });
        }
        PhonePipeline {
            jobs: Some(job_tx),
            done,
            spare: Vec::new(),
            in_flight: 0,
            region,
        }
    }

    /// An empty batch, reused when one is available.
    pub(crate) fn batch(&mut self) -> PhoneBatch {
        self.spare.pop().unwrap_or_default()
    }

    /// Hands `batch` to a worker, or validates it here if all workers are busy; then
    /// applies every finished batch with `apply`.
    pub(crate) fn submit(&mut self, batch: PhoneBatch, apply: &mut impl FnMut(&PhoneBatch)) {
        let leftover = match &self.jobs {
            Some(tx) => match tx.try_send(batch) {
                Ok(()) => {
                    self.in_flight += 1;
                    None
                }
                Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => Some(b),
            },
            None => Some(batch),
        };
        if let Some(mut batch) = leftover {
            batch.parse(self.region);
            apply(&batch);
            self.recycle(batch);
        }
        while let Ok(batch) = self.done.try_recv() {
            self.in_flight -= 1;
            apply(&batch);
            self.recycle(batch);
        }
    }

    /// Stops the workers after the queued batches and applies them all. Returns `false` if
    /// a worker disappeared with a batch (only possible if it panicked).
    pub(crate) fn finish(mut self, apply: &mut impl FnMut(&PhoneBatch)) -> bool {
        self.jobs = None;
        while self.in_flight > 0 {
            match self.done.recv() {
                Ok(batch) => {
                    self.in_flight -= 1;
                    apply(&batch);
                }
                Err(_) => return false,
            }
        }
        true
    }

    fn recycle(&mut self, mut batch: PhoneBatch) {
        batch.clear();
        self.spare.push(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_batch_comes_back_exactly_once() {
        let cn = RegionCode(*b"CN");
        let mut seen = vec![0u8; 10 * BATCH];
        let mut apply = |b: &PhoneBatch| {
            for (rec, outcome) in b.results() {
                seen[rec as usize] += 1;
                let expect_valid = rec % 2 == 0;
                assert_eq!(matches!(outcome, PhoneOutcome::Valid(_)), expect_valid);
            }
        };
        std::thread::scope(|s| {
            let mut pipeline = PhonePipeline::start(s, 2, cn);
            let mut batch = pipeline.batch();
            for rec in 0..(10 * BATCH) as u32 {
                batch.push(
                    rec,
                    if rec % 2 == 0 {
                        "131 2307 9337"
                    } else {
                        "nope"
                    },
                );
                if batch.len() == BATCH {
                    pipeline.submit(batch, &mut apply);
                    batch = pipeline.batch();
                }
            }
            assert!(pipeline.finish(&mut apply));
        });
        assert!(seen.iter().all(|&n| n == 1));
    }
}
