//! Endpoints and their cursors in the embedded database ([`crate::durable::tables`]).
//! Written directly (a few writes a second at most), off the async runtime by the callers.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use crate::access::TenantId;
use crate::durable::format::{self, FormatError};
use crate::durable::tables::{WEBHOOK_CURSORS, WEBHOOK_ENDPOINTS};

/// Format version of a stored endpoint.
pub const ENDPOINT_VERSION: u8 = 1;
/// Format version of a stored cursor.
pub const CURSOR_VERSION: u8 = 1;

/// A registered endpoint, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    /// Event types it receives; empty for all.
    pub event_types: Vec<String>,
    /// `whsec_` secrets, newest first; every one signs each delivery.
    pub secrets: Vec<String>,
    /// Events per request (a JSON array); 1 sends one event object per request.
    pub batch_size: usize,
    pub created_at: DateTime<Utc>,
    /// When the current run of failed deliveries began.
    pub failing_since: Option<DateTime<Utc>>,
    /// Set after a day of failures: deliveries stopped until it is registered again.
    pub disabled: bool,
    /// The tenant that registered it: it receives that tenant's events only. Endpoints
    /// registered before tenants belong to the default one.
    #[serde(default)]
    pub tenant: TenantId,
}

/// Where an endpoint's deliveries stand: `{key, 0}`: every event of record-log key `key` and
/// before it is delivered; `{key, n}`: the events of `key` from `n` on remain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    pub key: u64,
    pub n: u32,
}

/// Why the endpoint tables could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("webhook store: {0}")]
    Db(String),
    #[error(transparent)]
    Format(#[from] FormatError),
}

fn db_err<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// The endpoint tables.
#[derive(Clone)]
pub struct EndpointStore {
    db: Arc<Database>,
}

impl EndpointStore {
    /// Opens (creating) the tables.
    pub fn open(db: Arc<Database>) -> Result<EndpointStore, StoreError> {
        let w = db.begin_write().map_err(db_err)?;
        w.open_table(WEBHOOK_ENDPOINTS).map_err(db_err)?;
        w.open_table(WEBHOOK_CURSORS).map_err(db_err)?;
        w.commit().map_err(db_err)?;
        Ok(EndpointStore { db })
    }

    /// Every endpoint.
    pub fn load(&self) -> Result<Vec<Endpoint>, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(WEBHOOK_ENDPOINTS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            let body = format::check("webhook endpoint", ENDPOINT_VERSION, v.value())?;
            out.push(serde_json::from_slice(body).map_err(db_err)?);
        }
        Ok(out)
    }

    /// Writes an endpoint, and its cursor when given.
    pub fn save(&self, e: &Endpoint, cursor: Option<Cursor>) -> Result<(), StoreError> {
        let value = format::versioned(ENDPOINT_VERSION, &serde_json::to_vec(e).map_err(db_err)?);
        let w = self.db.begin_write().map_err(db_err)?;
        w.open_table(WEBHOOK_ENDPOINTS)
            .map_err(db_err)?
            .insert(e.id.as_str(), value.as_slice())
            .map_err(db_err)?;
        if let Some(c) = cursor {
            w.open_table(WEBHOOK_CURSORS)
                .map_err(db_err)?
                .insert(e.id.as_str(), encode_cursor(c).as_slice())
                .map_err(db_err)?;
        }
        w.commit().map_err(db_err)
    }

    /// Forgets an endpoint and its cursor.
    pub fn delete(&self, id: &str) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(db_err)?;
        w.open_table(WEBHOOK_ENDPOINTS)
            .map_err(db_err)?
            .remove(id)
            .map_err(db_err)?;
        w.open_table(WEBHOOK_CURSORS)
            .map_err(db_err)?
            .remove(id)
            .map_err(db_err)?;
        w.commit().map_err(db_err)
    }

    /// An endpoint's cursor (the start of the journal when it has none).
    pub fn cursor(&self, id: &str) -> Result<Cursor, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(WEBHOOK_CURSORS).map_err(db_err)?;
        match t.get(id).map_err(db_err)? {
            Some(v) => decode_cursor(v.value()),
            None => Ok(Cursor::default()),
        }
    }

    /// Moves an endpoint's cursor. Not synced on its own: it is made durable by the next
    /// synced commit (the journal commits many a second), and a cursor lost to a crash only
    /// means the events after the older one are delivered again, as at-least-once allows.
    pub fn set_cursor(&self, id: &str, c: Cursor) -> Result<(), StoreError> {
        let mut w = self.db.begin_write().map_err(db_err)?;
        // Only refused for a transaction that made savepoints, which this one does not.
        let _ = w.set_durability(redb::Durability::None);
        w.open_table(WEBHOOK_CURSORS)
            .map_err(db_err)?
            .insert(id, encode_cursor(c).as_slice())
            .map_err(db_err)?;
        w.commit().map_err(db_err)
    }

    /// The record log's newest key (a new endpoint's events start after it).
    pub fn last_round(&self) -> Result<u64, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = match r.open_table(crate::durable::tables::RECORD_LOG) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(db_err(e)),
        };
        let last = t.last().map_err(db_err)?.map_or(0, |(k, _)| k.value());
        Ok(last)
    }
}

fn encode_cursor(c: Cursor) -> Vec<u8> {
    let mut v = vec![CURSOR_VERSION];
    v.extend_from_slice(&c.key.to_le_bytes());
    v.extend_from_slice(&c.n.to_le_bytes());
    v
}

fn decode_cursor(stored: &[u8]) -> Result<Cursor, StoreError> {
    let body = format::check("webhook cursor", CURSOR_VERSION, stored)?;
    if body.len() != 12 {
        return Err(StoreError::Db("webhook cursor truncated".into()));
    }
    let mut key = [0u8; 8];
    key.copy_from_slice(&body[..8]);
    let mut n = [0u8; 4];
    n.copy_from_slice(&body[8..]);
    Ok(Cursor {
        key: u64::from_le_bytes(key),
        n: u32::from_le_bytes(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_cursors_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Arc::new(Database::create(dir.path().join("h.redb")).expect("db"));
        let s = EndpointStore::open(db).expect("open");
        let e = Endpoint {
            id: "whk_1".into(),
            url: "https://example.com/hook".into(),
            event_types: vec!["message.sent".into()],
            secrets: vec![super::super::signature::new_secret()],
            batch_size: 10,
            created_at: Utc::now(),
            failing_since: None,
            disabled: false,
            tenant: TenantId::parse("acme").expect("tenant"),
        };
        s.save(&e, Some(Cursor { key: 7, n: 3 })).expect("save");
        assert_eq!(s.load().expect("load"), vec![e]);
        assert_eq!(s.cursor("whk_1").expect("cursor"), Cursor { key: 7, n: 3 });
        s.delete("whk_1").expect("delete");
        assert!(s.load().expect("load").is_empty());
        assert_eq!(s.cursor("whk_1").expect("cursor"), Cursor::default());
        assert!(decode_cursor(&[9, 0]).is_err());
    }
}
