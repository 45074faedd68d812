//! Event webhooks in a fleet: the event streams, the registered endpoints, each endpoint's
//! cursors and the lease that lets one instance deliver an endpoint's events.
//!
//! A job's events live in a stream under the job's hash tag (`{..job..}:v1:ev`), appended by
//! the same scripts that write its outcomes, receipts and end ([`super::work`]); its opens
//! and clicks in another (`..:v1:eng`), which every instance reads into its copy of the job.
//! Both expire with the job's records. A tenant's contact events live in one stream per
//! tenant, capped at [`CONTACT_EVENTS_KEPT`] entries. An entry holds journal records (`r`
//! fields, the journal codec's encoding) or a job's end (`j`: `completed` or `cancelled`),
//! and may name the process that appended it (`i`).

use std::collections::HashMap;

use redis::Value;

use super::conn::{unavailable, Conn};
use super::keys::Keys;
use super::RedisOptions;
use crate::access::TenantId;
use crate::store::StoreError;

/// Contact events kept per tenant (approximately): older ones cannot be replayed.
pub const CONTACT_EVENTS_KEPT: u64 = 1_000_000;

/// KEYS: lease. ARGV: holder, ttl (ms). Takes the lease when free, extends it when the
/// caller holds it; answers 1 when the caller holds it afterwards.
const LEASE_LUA: &str = r#"
local h = redis.call('GET', KEYS[1])
if h == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not h then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// One stream entry: its id (`<ms>-<seq>`) and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: String,
    /// Journal records, encoded.
    pub records: Vec<Vec<u8>>,
    /// A job's end: `completed` or `cancelled`.
    pub job_end: Option<String>,
    /// The process that appended it, when it said.
    pub origin: Option<String>,
}

impl StreamEntry {
    /// When it was appended (Unix ms), from its id.
    pub fn millis(&self) -> i64 {
        self.id
            .split('-')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
}

/// Which stream: a job's events, its opens and clicks, or a tenant's contact events.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventStream {
    Job(String),
    Engaged(String),
    Contacts(TenantId),
}

impl EventStream {
    /// Its name in an endpoint's cursors.
    pub fn cursor_field(&self) -> String {
        match self {
            EventStream::Job(id) => format!("job:{id}"),
            EventStream::Engaged(id) => format!("eng:{id}"),
            EventStream::Contacts(t) => format!("contacts:{t}"),
        }
    }
}

/// Fleet webhooks' access to Redis.
pub struct RedisEvents {
    conn: Conn,
    keys: Keys,
    lease: redis::Script,
}

impl RedisEvents {
    /// Opens a pool of its own (connects lazily).
    pub fn open(opts: &RedisOptions) -> Result<RedisEvents, StoreError> {
        Ok(RedisEvents {
            conn: Conn::open(opts)?,
            keys: Keys::new(&opts.key_prefix),
            lease: redis::Script::new(LEASE_LUA),
        })
    }

    fn key(&self, stream: &EventStream) -> String {
        match stream {
            EventStream::Job(id) => self.keys.job(id).events(),
            EventStream::Engaged(id) => self.keys.job(id).engaged(),
            EventStream::Contacts(t) => self.keys.contact_events(t),
        }
    }

    /// Appends journal records to a stream, naming the process that appends them when
    /// given; answers the entry's id.
    pub async fn append(
        &self,
        stream: &EventStream,
        origin: Option<&str>,
        records: &[Vec<u8>],
    ) -> Result<String, StoreError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.key(stream));
        if matches!(stream, EventStream::Contacts(_)) {
            cmd.arg("MAXLEN").arg("~").arg(CONTACT_EVENTS_KEPT);
        }
        cmd.arg("*");
        if let Some(origin) = origin {
            cmd.arg("i").arg(origin);
        }
        for r in records {
            cmd.arg("r").arg(r.as_slice());
        }
        let mut answers = self.conn.query_each(std::slice::from_ref(&cmd)).await?;
        match answers.pop() {
            Some(Ok(v)) => redis::from_redis_value(v).map_err(unavailable),
            Some(Err(e)) => Err(unavailable(e)),
            None => Err(unavailable("no answer to XADD")),
        }
    }

    /// Up to `count` entries after entry `after` ("" for the start; `<ms>` for the first
    /// entry at or after that time).
    pub async fn read(
        &self,
        stream: &EventStream,
        after: &str,
        count: usize,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        let start = match after {
            "" => "-".to_string(),
            a if a.contains('-') => format!("({a}"),
            a => a.to_string(),
        };
        self.range(stream, &start, "+", count).await
    }

    /// Up to `count` entries appended from `from_ms` to `to_ms` (inclusive), after entry
    /// `after` when given.
    pub async fn range_between(
        &self,
        stream: &EventStream,
        from_ms: i64,
        to_ms: i64,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        let start = match after {
            Some(a) => format!("({a}"),
            None => from_ms.max(0).to_string(),
        };
        self.range(stream, &start, &to_ms.max(0).to_string(), count)
            .await
    }

    async fn range(
        &self,
        stream: &EventStream,
        start: &str,
        end: &str,
        count: usize,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("XRANGE")
            .arg(self.key(stream))
            .arg(start)
            .arg(end)
            .arg("COUNT")
            .arg(count.max(1));
        let (v,): (Value,) = self.conn.query(&pipe).await?;
        parse_entries(v)
    }

    /// Every endpoint's stored form, by id.
    pub async fn endpoints(&self) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.hgetall(self.keys.webhooks());
        let (all,): (HashMap<String, Vec<u8>>,) = self.conn.query(&pipe).await?;
        Ok(all)
    }

    /// One endpoint's stored form.
    pub async fn endpoint(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.hget(self.keys.webhooks(), id);
        let (one,): (Option<Vec<u8>>,) = self.conn.query(&pipe).await?;
        Ok(one)
    }

    /// Writes an endpoint's stored form.
    pub async fn save_endpoint(&self, id: &str, stored: &[u8]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.hset(self.keys.webhooks(), id, stored).ignore();
        self.conn.query(&pipe).await
    }

    /// Forgets an endpoint and its cursors; answers whether it existed.
    pub async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        let mut pipe = redis::pipe();
        pipe.hdel(self.keys.webhooks(), id);
        pipe.del(self.keys.webhook_cursors(id)).ignore();
        let (n,): (i64,) = self.conn.query(&pipe).await?;
        Ok(n > 0)
    }

    /// An endpoint's cursors: per stream (see [`EventStream::cursor_field`]), where its
    /// deliveries stand.
    pub async fn cursors(&self, id: &str) -> Result<HashMap<String, String>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.hgetall(self.keys.webhook_cursors(id));
        let (all,): (HashMap<String, String>,) = self.conn.query(&pipe).await?;
        Ok(all)
    }

    /// Moves one of an endpoint's cursors.
    pub async fn set_cursor(
        &self,
        id: &str,
        stream: &EventStream,
        cursor: &str,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.hset(self.keys.webhook_cursors(id), stream.cursor_field(), cursor)
            .ignore();
        self.conn.query(&pipe).await
    }

    /// Takes or extends the lease on delivering endpoint `id`'s events for `ttl_ms`;
    /// answers whether `me` holds it.
    pub async fn hold_lease(&self, id: &str, me: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let keys = [self.keys.webhook_lease(id)];
        let args = [me.to_string(), ttl_ms.to_string()];
        let held: i64 = self
            .conn
            .run_script(LEASE_LUA, &self.lease, &keys, &args)
            .await?;
        Ok(held == 1)
    }

    /// Gives the lease up (on a graceful stop), if `me` holds it.
    pub async fn release_lease(&self, id: &str, me: &str) -> Result<(), StoreError> {
        let key = self.keys.webhook_lease(id);
        let mut pipe = redis::pipe();
        pipe.get(&key);
        let (holder,): (Option<String>,) = self.conn.query(&pipe).await?;
        if holder.as_deref() == Some(me) {
            let mut pipe = redis::pipe();
            pipe.del(&key).ignore();
            self.conn.query::<()>(&pipe).await?;
        }
        Ok(())
    }
}

/// Reads an XRANGE answer.
fn parse_entries(v: Value) -> Result<Vec<StreamEntry>, StoreError> {
    let Value::Array(items) = v else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(mut pair) = item else {
            return Err(unavailable("a stream entry is not a pair"));
        };
        if pair.len() != 2 {
            return Err(unavailable("a stream entry is not a pair"));
        }
        let fields = pair.pop().unwrap_or(Value::Nil);
        let id: String =
            redis::from_redis_value(pair.pop().unwrap_or(Value::Nil)).map_err(unavailable)?;
        let fields: Vec<Vec<u8>> = redis::from_redis_value(fields).map_err(unavailable)?;
        let mut entry = StreamEntry {
            id,
            records: Vec::new(),
            job_end: None,
            origin: None,
        };
        for kv in fields.chunks_exact(2) {
            match kv[0].as_slice() {
                b"r" => entry.records.push(kv[1].clone()),
                b"j" => entry.job_end = Some(String::from_utf8_lossy(&kv[1]).into_owned()),
                b"i" => entry.origin = Some(String::from_utf8_lossy(&kv[1]).into_owned()),
                _ => {}
            }
        }
        out.push(entry);
    }
    Ok(out)
}
