//! The record log ([`super::tables::RECORD_LOG`]): per round, one value holding every record
//! handed over with it, in hand-over order, each as `u32 len, bytes` (little-endian). What a
//! record holds is its writer's business (the dispatch journal's codec).

use redb::{Database, ReadableDatabase, ReadableTable};

use super::store::{db_err, DurableError};
use super::tables::RECORD_LOG;

/// One round's record-log value, built as the writer takes the round's requests.
pub(super) struct RoundRecords(Vec<u8>);

impl RoundRecords {
    /// An empty value with room for `bytes` of records and their lengths.
    pub fn with_capacity(bytes: usize) -> RoundRecords {
        RoundRecords(Vec::with_capacity(bytes))
    }

    /// Adds a record.
    pub fn push(&mut self, record: &[u8]) {
        self.0
            .extend_from_slice(&(record.len() as u32).to_le_bytes());
        self.0.extend_from_slice(record);
    }

    /// The stored value, if any record was added.
    pub fn finish(self) -> Option<Vec<u8>> {
        (!self.0.is_empty()).then_some(self.0)
    }
}

/// The key the next round's records go under.
pub(super) fn next_key(db: &Database) -> Result<u64, DurableError> {
    let r = db.begin_read().map_err(db_err)?;
    let t = r.open_table(RECORD_LOG).map_err(db_err)?;
    let last = t.last().map_err(db_err)?;
    Ok(last.map(|(k, _)| k.value() + 1).unwrap_or(1))
}

/// Calls `f` on every record of the record log, in the order they were handed over.
pub fn scan<E: From<DurableError>>(
    r: &redb::ReadTransaction,
    mut f: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let db_err = |e: redb::Error| E::from(db_err(e));
    let t = match r.open_table(RECORD_LOG) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(db_err(e.into())),
    };
    for row in t.iter().map_err(|e| db_err(e.into()))? {
        let (_, v) = row.map_err(|e| db_err(e.into()))?;
        let mut rest = v.value();
        while !rest.is_empty() {
            let record = (rest.len() >= 4)
                .then(|| u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize)
                .and_then(|n| rest.get(4..4 + n));
            let Some(record) = record else {
                return Err(E::from(DurableError::Db(
                    "record log value truncated".into(),
                )));
            };
            f(record)?;
            rest = &rest[4 + record.len()..];
        }
    }
    Ok(())
}
