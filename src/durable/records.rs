//! The record log ([`super::tables::RECORD_LOG`]): per round, one value holding every record
//! handed over with it, in hand-over order: `u8 format version`, then each record as
//! `u32 len, bytes` (little-endian). What a record holds is its writer's business (the
//! dispatch journal's codec, which versions its records too).

use redb::{Database, ReadableDatabase, ReadableTable};

use super::format::{self, RECORD_LOG_VERSION};
use super::store::{db_err, DurableError};
use super::tables::RECORD_LOG;

/// One round's record-log value, built as the writer takes the round's requests.
pub(super) struct RoundRecords(Vec<u8>);

impl RoundRecords {
    /// An empty value with room for `bytes` of records and their lengths.
    pub fn with_capacity(bytes: usize) -> RoundRecords {
        let mut value = Vec::with_capacity(1 + bytes);
        value.push(RECORD_LOG_VERSION);
        RoundRecords(value)
    }

    /// Adds a record.
    pub fn push(&mut self, record: &[u8]) {
        self.0
            .extend_from_slice(&(record.len() as u32).to_le_bytes());
        self.0.extend_from_slice(record);
    }

    /// The stored value, if any record was added.
    pub fn finish(self) -> Option<Vec<u8>> {
        (self.0.len() > 1).then_some(self.0)
    }
}

/// The key the next round's records go under.
pub(super) fn next_key(db: &Database) -> Result<u64, DurableError> {
    let r = db.begin_read().map_err(db_err)?;
    let t = r.open_table(RECORD_LOG).map_err(db_err)?;
    let last = t.last().map_err(db_err)?;
    Ok(last.map(|(k, _)| k.value() + 1).unwrap_or(1))
}

/// Calls `f(key, record)` on the records stored under the record-log keys after `after` (at
/// most `max_keys` of them), in order; answers the last key read (`after` when none). Event
/// webhooks follow the log with it.
pub fn scan_after<E: From<DurableError>>(
    r: &redb::ReadTransaction,
    after: u64,
    max_keys: usize,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let db_err = |e: redb::Error| E::from(db_err(e));
    let t = match r.open_table(RECORD_LOG) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(after),
        Err(e) => return Err(db_err(e.into())),
    };
    let mut last = after;
    let start = after.saturating_add(1);
    for row in t
        .range(start..)
        .map_err(|e| db_err(e.into()))?
        .take(max_keys)
    {
        let (k, v) = row.map_err(|e| db_err(e.into()))?;
        last = k.value();
        for_each_record(v.value(), |record| f(last, record))?;
    }
    Ok(last)
}

/// Calls `f` on each record of one stored round value.
fn for_each_record<E: From<DurableError>>(
    value: &[u8],
    mut f: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut rest = format::check("record log value", RECORD_LOG_VERSION, value)
        .map_err(|e| E::from(e.into()))?;
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
    Ok(())
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
        for_each_record(v.value(), &mut f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableDatabase;

    fn scanned(db: &Database) -> Result<Vec<Vec<u8>>, DurableError> {
        let mut out = Vec::new();
        scan::<DurableError>(&db.begin_read().unwrap(), |r| {
            out.push(r.to_vec());
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn records_read_back_and_an_unknown_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("herald.redb")).unwrap();
        let mut round = RoundRecords::with_capacity(16);
        assert!(RoundRecords::with_capacity(0).finish().is_none());
        round.push(b"one");
        round.push(b"");
        let value = round.finish().unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(RECORD_LOG)
            .unwrap()
            .insert(1, value.as_slice())
            .unwrap();
        w.commit().unwrap();
        assert_eq!(scanned(&db).unwrap(), [&b"one"[..], b""]);

        let mut unknown = value;
        unknown[0] = 7;
        let w = db.begin_write().unwrap();
        w.open_table(RECORD_LOG)
            .unwrap()
            .insert(2, unknown.as_slice())
            .unwrap();
        w.commit().unwrap();
        assert_eq!(
            scanned(&db).unwrap_err().to_string(),
            "record log value: format version 7 is not known to this herald"
        );
    }
}
