//! The applier: closed write-ahead log segments applied to the database in the background,
//! one transaction per segment, read back from disk, and then retired; and, at start-up, the
//! replay of whatever a crash left in the log. Applying is idempotent: every frame carries
//! the keys its values go under.

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread;

use redb::{Database, WriteTransaction};

use super::store::{db_err, DurableError};
use super::tables::{LEDGER_BLOCKS, RECORD_LOG};
use super::wal::{self, Round};

/// Writes rounds' values into a transaction.
pub(super) fn write_round(w: &WriteTransaction, round: &Round) -> Result<(), redb::Error> {
    if let Some((key, bytes)) = &round.block {
        w.open_table(LEDGER_BLOCKS)?
            .insert(*key, bytes.as_slice())?;
    }
    if let Some((key, bytes)) = &round.records {
        w.open_table(RECORD_LOG)?.insert(*key, bytes.as_slice())?;
    }
    Ok(())
}

/// Applies rounds to the database in one durable transaction.
fn apply(db: &Database, rounds: &[Round]) -> Result<(), DurableError> {
    let w = db.begin_write().map_err(db_err)?;
    for round in rounds {
        write_round(&w, round).map_err(db_err)?;
    }
    w.commit().map_err(db_err)
}

/// Applies whatever a crash left in the write-ahead log in `dir`, then retires it. Run
/// before anything reads the database.
pub fn replay(db: &Database, dir: &std::path::Path) -> Result<usize, DurableError> {
    let segments = wal::read_all(dir).map_err(db_err)?;
    let rounds: Vec<Round> = segments
        .iter()
        .flat_map(|(_, r)| r.iter().cloned())
        .collect();
    if !rounds.is_empty() {
        apply(db, &rounds)?;
    }
    for (n, _) in &segments {
        wal::remove_segment(dir, *n).map_err(db_err)?;
    }
    Ok(rounds.len())
}

/// The thread that applies closed segments in the background.
pub(super) struct Applier {
    tx: Option<mpsc::Sender<u64>>,
    done: mpsc::Receiver<()>,
    in_flight: usize,
    thread: Option<thread::JoinHandle<()>>,
}

impl Applier {
    pub(super) fn start(db: Arc<Database>, dir: PathBuf) -> std::io::Result<Applier> {
        let (tx, rx) = mpsc::channel::<u64>();
        let (done_tx, done) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("durable-apply".into())
            .spawn(move || {
                yield_to_sends();
                while let Ok(number) = rx.recv() {
                    apply_segment(&db, &dir, number);
                    let _ = done_tx.send(());
                }
            })?;
        Ok(Applier {
            tx: Some(tx),
            done,
            in_flight: 0,
            thread: Some(thread),
        })
    }

    pub(super) fn hand_over(&mut self, number: u64) {
        if let Some(tx) = &self.tx {
            if tx.send(number).is_ok() {
                self.in_flight += 1;
            }
        }
    }

    /// Waits until every segment handed over is in the database.
    pub(super) fn wait_idle(&mut self) {
        while self.in_flight > 0 {
            if self.done.recv().is_err() {
                break;
            }
            self.in_flight -= 1;
        }
    }

    pub(super) fn stop(&mut self) {
        self.wait_idle();
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Gives the applier thread the lowest CPU priority. Its work is already durable in the log
/// and only has to be done eventually; when a long send keeps the log growing past the
/// backlog, applying then should take the cores the workers leave idle rather than share
/// them. (Readers waiting for the database still get it: nothing else needs those cores
/// when the workers are idle.)
pub(super) fn yield_to_sends() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority reads no memory of ours; on Linux, `who = 0` with
        // PRIO_PROCESS is the calling thread. A failure only leaves the priority as it was.
        let lowered = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
        if lowered != 0 {
            tracing::debug!("could not lower the applier's priority");
        }
    }
}

/// Applies one closed segment, retrying a failing database; the segment file is deleted only
/// once its rounds are durable there (otherwise the next start applies it).
fn apply_segment(db: &Database, dir: &std::path::Path, number: u64) {
    let mut delay = std::time::Duration::from_millis(20);
    for attempt in 1..=6 {
        let applied = wal::read_segment(dir, number)
            .map_err(db_err)
            .and_then(|rounds| apply(db, &rounds));
        match applied {
            Ok(()) => {
                if let Err(e) = wal::remove_segment(dir, number) {
                    tracing::warn!(error = %e, segment = number, "applied log segment not deleted; it is applied again at the next start");
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, attempt, segment = number, "could not apply a write-ahead log segment to the database");
                thread::sleep(delay);
                delay *= 2;
            }
        }
    }
    tracing::error!(
        segment = number,
        "write-ahead log segment kept on disk; it is applied at the next start"
    );
}
