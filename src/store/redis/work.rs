//! Work sharing in Redis: jobs every instance can load, shard leases with expiry, and each
//! shard's recipient outcome codes with the counters a report needs.
//!
//! A shard's outcomes are one string (a byte per recipient, at its position in the shard)
//! and its counters one hash (recipients per outcome code, parts and cost sent, how many are
//! final). Both change only through one Lua script that first checks the caller still holds
//! the shard's lease, so an instance that lost a lease (stalled, then came back) cannot
//! overwrite what the new holder decided. The same script adds to the job's count of final
//! recipients and marks the job completed when that reaches its audience: whichever instance
//! settles the last recipient finishes the job, exactly once.
//!
//! Every key of one job carries the job's hash tag, so in a cluster each script call and
//! each per-job pipeline touches one slot.

use std::collections::HashMap;

use redis::Cmd;

use super::conn::{unavailable, Conn};
use super::keys::{JobKeys, Keys};
use super::RedisOptions;
use crate::store::{OutcomeUpdate, StoreError};

/// KEYS: lease, codes, shard counters, job control, job events. ARGV: holder, a
/// 256-character table of which codes are final ('1'), now (µs), the number `m` of event
/// records, the `m` records; then per update: position, code, parts, cost. The event records
/// are appended to the job's event stream in the same call, so an outcome is never written
/// without the events that announce it; the job's end is appended there too. Answers -1 when
/// another instance holds the lease, -2 when nobody does, else the job's final count after
/// the call.
const COMMIT_LUA: &str = r#"
local holder = redis.call('GET', KEYS[1])
if not holder then return -2 end
if holder ~= ARGV[1] then return -1 end
local finals = ARGV[2]
local m = tonumber(ARGV[4])
if m > 0 then
  local entry = {}
  for r = 1, m do
    entry[#entry + 1] = 'r'
    entry[#entry + 1] = ARGV[4 + r]
  end
  redis.call('XADD', KEYS[5], '*', unpack(entry))
end
local hist, dfin, dseg, dcost = {}, 0, 0, 0
for j = 5 + m, #ARGV, 4 do
  local pos, code = tonumber(ARGV[j]), tonumber(ARGV[j + 1])
  local old = redis.call('GETRANGE', KEYS[2], pos, pos)
  local oc = 0
  if #old == 1 then oc = string.byte(old) end
  if oc ~= code then
    redis.call('SETRANGE', KEYS[2], pos, string.char(code))
    hist[oc] = (hist[oc] or 0) - 1
    hist[code] = (hist[code] or 0) + 1
    local was = string.sub(finals, oc + 1, oc + 1) == '1'
    local now = string.sub(finals, code + 1, code + 1) == '1'
    if now and not was then dfin = dfin + 1 elseif was and not now then dfin = dfin - 1 end
    if code == 2 then
      dseg = dseg + tonumber(ARGV[j + 2])
      dcost = dcost + tonumber(ARGV[j + 3])
    end
  end
end
for c, n in pairs(hist) do
  if c ~= 0 and n ~= 0 then redis.call('HINCRBY', KEYS[3], 'c' .. c, n) end
end
if dseg ~= 0 then redis.call('HINCRBY', KEYS[3], 'seg', dseg) end
if dcost ~= 0 then redis.call('HINCRBY', KEYS[3], 'cost', dcost) end
if dfin ~= 0 then redis.call('HINCRBY', KEYS[3], 'fin', dfin) end
local fin = redis.call('HINCRBY', KEYS[4], 'fin', dfin)
local need = tonumber(redis.call('HGET', KEYS[4], 'need') or '-1')
local status = redis.call('HGET', KEYS[4], 'status')
if fin >= need and need >= 0 and status ~= 'completed' and status ~= 'cancelled' and status ~= 'failed' then
  redis.call('HSET', KEYS[4], 'status', 'completed', 'finished_at', ARGV[3])
  redis.call('XADD', KEYS[5], '*', 'j', 'completed')
end
return fin
"#;

/// KEYS: leases. ARGV: holder, ttl (ms). Extends the caller's leases; answers 1 or 0 each.
const RENEW_LUA: &str = r#"
local out = {}
for k = 1, #KEYS do
  if redis.call('GET', KEYS[k]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[k], ARGV[2])
    out[k] = 1
  else
    out[k] = 0
  end
end
return out
"#;

/// KEYS: leases. ARGV: holder. Gives up the caller's leases (on shutdown).
const RELEASE_LUA: &str = r#"
for k = 1, #KEYS do
  if redis.call('GET', KEYS[k]) == ARGV[1] then redis.call('DEL', KEYS[k]) end
end
return 1
"#;

/// KEYS: control, job events. ARGV: status, field, value. Sets a status unless the job
/// already ended; a cancellation is appended to the job's events.
const STATUS_LUA: &str = r#"
local s = redis.call('HGET', KEYS[1], 'status')
if s == 'completed' or s == 'cancelled' or s == 'failed' then return s end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
if ARGV[2] ~= '' then redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) end
if ARGV[1] == 'cancelled' then redis.call('XADD', KEYS[2], '*', 'j', 'cancelled') end
return ARGV[1]
"#;

/// KEYS: delivery states, shard counters, outcome codes, job events. ARGV: '1' to write
/// even for messages without a final outcome, the event record of these states, then pairs
/// of position and state code. A state is only written once its
/// message's outcome is: a receipt can reach one instance before the sender wrote that the
/// message went out, and its event must not come before the `sent` one. So when any message
/// has no final outcome yet nothing is written and the answer is `{-1, positions...}`;
/// otherwise the record is appended to the job's events and the first final state of a
/// message counts (a repeat, another instance applying the same receipt, does not): the
/// answer is `{counted}`.
const DELIVERY_LUA: &str = r#"
local waiting = {-1}
for j = 3, #ARGV, 2 do
  local c = redis.call('GETRANGE', KEYS[3], ARGV[j], ARGV[j])
  local code = 0
  if #c == 1 then code = string.byte(c) end
  if code == 0 or code == 1 or code == 5 then waiting[#waiting + 1] = tonumber(ARGV[j]) end
end
if #waiting > 1 and ARGV[1] ~= '1' then return waiting end
if ARGV[2] ~= '' then redis.call('XADD', KEYS[4], '*', 'r', ARGV[2]) end
local n = 0
for j = 3, #ARGV, 2 do
  local pos = tonumber(ARGV[j])
  local old = redis.call('GETRANGE', KEYS[1], pos, pos)
  if #old == 0 or string.byte(old) == 0 then
    redis.call('SETRANGE', KEYS[1], pos, string.char(tonumber(ARGV[j + 1])))
    redis.call('HINCRBY', KEYS[2], 'd' .. ARGV[j + 1], 1)
    n = n + 1
  end
end
return {n}
"#;

/// A job as published for every instance: its stored request and audience chunks.
pub struct PublishedJob {
    pub spec: Vec<u8>,
    pub audience: Vec<Vec<u8>>,
}

/// A shard's counters as the commit script keeps them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShardStats {
    /// Recipients per outcome code.
    pub by_code: HashMap<u8, i64>,
    /// Messages per final delivery state code.
    pub by_delivery: HashMap<u8, i64>,
    pub segments: i64,
    pub cost_micros: i64,
    pub finals: i64,
}

/// What a commit answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitAnswer {
    /// The lease is someone else's now: the changes were not written.
    LeaseLost,
    /// Nobody holds the lease (it ran out): not written; the caller may take it again.
    Unheld,
    /// Written; the job's count of final recipients afterwards.
    Written { finals: i64 },
}

/// What recording delivery states answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveriesAnswer {
    /// Written; how many were a message's first final state.
    Counted(i64),
    /// Nothing written: these positions' messages have no final outcome yet.
    Waiting(Vec<u32>),
}

/// Work sharing's access to Redis.
pub struct RedisWork {
    conn: Conn,
    keys: Keys,
    commit: redis::Script,
    renew: redis::Script,
    release: redis::Script,
    status: redis::Script,
    delivery: redis::Script,
}

impl RedisWork {
    /// Opens a pool of its own (connects lazily).
    pub fn open(opts: &RedisOptions) -> Result<RedisWork, StoreError> {
        Ok(RedisWork {
            conn: Conn::open(opts)?,
            keys: Keys::new(&opts.key_prefix),
            commit: redis::Script::new(COMMIT_LUA),
            renew: redis::Script::new(RENEW_LUA),
            release: redis::Script::new(RELEASE_LUA),
            status: redis::Script::new(STATUS_LUA),
            delivery: redis::Script::new(DELIVERY_LUA),
        })
    }

    fn job(&self, id: &str) -> JobKeys {
        self.keys.job(id)
    }

    /// Writes a job for every instance to find: its request and audience, then its control
    /// record (`need` = recipients to settle), then lists it as active, in that order, so an
    /// instance that sees the id finds everything.
    pub async fn publish(
        &self,
        id: &str,
        job: &PublishedJob,
        need: u64,
        shards: u32,
        status: &str,
    ) -> Result<(), StoreError> {
        let k = self.job(id);
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.set(k.spec(), &job.spec).ignore();
        for (n, chunk) in job.audience.iter().enumerate() {
            pipe.set(k.audience(n as u32), chunk).ignore();
        }
        pipe.hset_multiple(
            k.control(),
            &[
                ("status", status.to_string()),
                ("need", need.to_string()),
                ("shards", shards.to_string()),
                ("chunks", job.audience.len().to_string()),
                ("fin", "0".to_string()),
            ],
        )
        .ignore();
        self.conn.query::<()>(&pipe).await?;
        let mut add = redis::pipe();
        add.sadd(self.keys.work_active(), id).ignore();
        self.conn.query::<()>(&add).await
    }

    /// Ids of the jobs that are not finished.
    pub async fn active_jobs(&self) -> Result<Vec<String>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.smembers(self.keys.work_active());
        let (ids,): (Vec<String>,) = self.conn.query(&pipe).await?;
        Ok(ids)
    }

    /// Ids of every job, finished or not.
    pub async fn all_jobs(&self) -> Result<Vec<String>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.smembers(self.keys.work_active());
        pipe.smembers(self.keys.work_done());
        let (mut a, b): (Vec<String>, Vec<String>) = self.conn.query(&pipe).await?;
        a.extend(b);
        a.sort();
        a.dedup();
        Ok(a)
    }

    /// Moves a finished job off the active list, and lets its records (request, audience,
    /// outcomes, counts) expire after `retention_seconds`: reports read them until then.
    pub async fn retire(&self, id: &str, retention_seconds: u64) -> Result<(), StoreError> {
        let k = self.job(id);
        let mut pipe = redis::pipe();
        pipe.hget(k.control(), "shards");
        pipe.hget(k.control(), "chunks");
        let (shards, chunks): (Option<u32>, Option<u32>) = self.conn.query(&pipe).await?;
        let ttl = retention_seconds.clamp(1, i64::MAX as u64) as i64;
        let mut pipe = redis::pipe();
        pipe.expire(k.spec(), ttl).ignore();
        pipe.expire(k.control(), ttl).ignore();
        for n in 0..chunks.unwrap_or(0) {
            pipe.expire(k.audience(n), ttl).ignore();
        }
        for s in 0..shards.unwrap_or(0) {
            pipe.expire(k.codes(s), ttl).ignore();
            pipe.expire(k.shard(s), ttl).ignore();
            pipe.expire(k.deliveries(s), ttl).ignore();
        }
        pipe.expire(k.events(), ttl).ignore();
        pipe.expire(k.engaged(), ttl).ignore();
        self.conn.query::<()>(&pipe).await?;
        let mut pipe = redis::pipe();
        pipe.sadd(self.keys.work_done(), id).ignore();
        pipe.srem(self.keys.work_active(), id).ignore();
        self.conn.query::<()>(&pipe).await
    }

    /// Forgets a job whose records are gone (expired after its retention).
    pub async fn forget(&self, id: &str) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.srem(self.keys.work_done(), id).ignore();
        pipe.srem(self.keys.work_active(), id).ignore();
        self.conn.query::<()>(&pipe).await
    }

    /// A published job's request and audience, if it exists.
    pub async fn load(&self, id: &str) -> Result<Option<PublishedJob>, StoreError> {
        let k = self.job(id);
        let mut pipe = redis::pipe();
        pipe.get(k.spec());
        pipe.hget(k.control(), "chunks");
        let (spec, chunks): (Option<Vec<u8>>, Option<u32>) = self.conn.query(&pipe).await?;
        let (Some(spec), Some(chunks)) = (spec, chunks) else {
            return Ok(None);
        };
        let mut audience = Vec::with_capacity(chunks as usize);
        // A few chunks per round trip: each is up to a few hundred kilobytes.
        for start in (0..chunks).step_by(8) {
            let mut pipe = redis::pipe();
            for n in start..(start + 8).min(chunks) {
                pipe.get(k.audience(n));
            }
            let part: Vec<Option<Vec<u8>>> = self.conn.query(&pipe).await?;
            for c in part {
                audience.push(c.ok_or_else(|| unavailable("a job's audience chunk is missing"))?);
            }
        }
        Ok(Some(PublishedJob { spec, audience }))
    }

    /// The job's control record (status, times, counts of final recipients).
    pub async fn control(&self, id: &str) -> Result<HashMap<String, String>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.hgetall(self.job(id).control());
        let (c,): (HashMap<String, String>,) = self.conn.query(&pipe).await?;
        Ok(c)
    }

    /// Sets the job's status unless it already ended, and `field` (a time) if not set yet.
    /// Answers the status the job has afterwards.
    pub async fn set_status(
        &self,
        id: &str,
        status: &str,
        field: Option<(&str, i64)>,
    ) -> Result<String, StoreError> {
        let (f, v) = field.map_or((String::new(), String::new()), |(f, v)| {
            (f.to_string(), v.to_string())
        });
        let k = self.job(id);
        let keys = vec![k.control(), k.events()];
        self.conn
            .run_script(STATUS_LUA, &self.status, &keys, &[status.to_string(), f, v])
            .await
    }

    /// Says this instance is alive for `ttl_ms`; answers how many instances are.
    pub async fn heartbeat(&self, me: &str, now_ms: i64, ttl_ms: u64) -> Result<usize, StoreError> {
        let key = self.keys.work_instances();
        let mut pipe = redis::pipe();
        pipe.zrembyscore(key, "-inf", now_ms).ignore();
        pipe.zadd(key, me, now_ms + ttl_ms as i64).ignore();
        pipe.zcard(key);
        let (n,): (usize,) = self.conn.query(&pipe).await?;
        Ok(n)
    }

    /// Tries to take shard `shard`'s lease for `ttl_ms`.
    pub async fn acquire(
        &self,
        id: &str,
        shard: u32,
        me: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.job(id).lease(shard))
            .arg(me)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms);
        let (v,): (Option<String>,) = self.conn.query(&pipe).await?;
        Ok(v.is_some())
    }

    /// Extends the caller's leases on `shards`; answers which are still its own.
    pub async fn renew(
        &self,
        id: &str,
        shards: &[u32],
        me: &str,
        ttl_ms: u64,
    ) -> Result<Vec<bool>, StoreError> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let k = self.job(id);
        let keys: Vec<String> = shards.iter().map(|&s| k.lease(s)).collect();
        let args = [me.to_string(), ttl_ms.to_string()];
        let out: Vec<i64> = self
            .conn
            .run_script(RENEW_LUA, &self.renew, &keys, &args)
            .await?;
        Ok(out.into_iter().map(|v| v == 1).collect())
    }

    /// Gives up the caller's leases on `shards`, so others take them at once.
    pub async fn release(&self, id: &str, shards: &[u32], me: &str) -> Result<(), StoreError> {
        if shards.is_empty() {
            return Ok(());
        }
        let k = self.job(id);
        let keys: Vec<String> = shards.iter().map(|&s| k.lease(s)).collect();
        let _: i64 = self
            .conn
            .run_script(RELEASE_LUA, &self.release, &keys, &[me.to_string()])
            .await?;
        Ok(())
    }

    /// Shard `shard`'s outcome codes, by position (missing positions are undecided).
    pub async fn codes(&self, id: &str, shard: u32) -> Result<Vec<u8>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.get(self.job(id).codes(shard));
        let (v,): (Option<Vec<u8>>,) = self.conn.query(&pipe).await?;
        Ok(v.unwrap_or_default())
    }

    /// Writes outcome changes of shard `shard`, if the caller still holds its lease.
    // The script's inputs, one each; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &self,
        id: &str,
        shard: u32,
        me: &str,
        finals: &str,
        now_micros: i64,
        updates: &[OutcomeUpdate],
        events: &[Vec<u8>],
    ) -> Result<CommitAnswer, StoreError> {
        let k = self.job(id);
        let keys = vec![
            k.lease(shard),
            k.codes(shard),
            k.shard(shard),
            k.control(),
            k.events(),
        ];
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(4 + events.len() + updates.len() * 4);
        args.extend([
            me.as_bytes().to_vec(),
            finals.as_bytes().to_vec(),
            now_micros.to_string().into_bytes(),
            events.len().to_string().into_bytes(),
        ]);
        args.extend(events.iter().cloned());
        for u in updates {
            args.extend([
                u.pos.to_string().into_bytes(),
                u.code.to_string().into_bytes(),
                u.segments.to_string().into_bytes(),
                u.cost_micros.to_string().into_bytes(),
            ]);
        }
        let v: i64 = self
            .conn
            .run_script(COMMIT_LUA, &self.commit, &keys, &args)
            .await?;
        Ok(match v {
            -2 => CommitAnswer::Unheld,
            v if v < 0 => CommitAnswer::LeaseLost,
            v => CommitAnswer::Written { finals: v },
        })
    }

    /// Records final delivery states of shard `shard`'s messages with `event`, their event
    /// record (empty for none), once every one of those messages has a final outcome (at
    /// once with `force`).
    pub async fn record_deliveries(
        &self,
        id: &str,
        shard: u32,
        states: &[(u32, u8)],
        event: &[u8],
        force: bool,
    ) -> Result<DeliveriesAnswer, StoreError> {
        let k = self.job(id);
        let keys = vec![
            k.deliveries(shard),
            k.shard(shard),
            k.codes(shard),
            k.events(),
        ];
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(2 + states.len() * 2);
        args.push(if force { b"1".to_vec() } else { b"0".to_vec() });
        args.push(event.to_vec());
        for &(pos, code) in states {
            args.extend([pos.to_string().into_bytes(), code.to_string().into_bytes()]);
        }
        let answer: Vec<i64> = self
            .conn
            .run_script(DELIVERY_LUA, &self.delivery, &keys, &args)
            .await?;
        Ok(match answer.split_first() {
            Some((-1, waiting)) => {
                DeliveriesAnswer::Waiting(waiting.iter().map(|&p| p as u32).collect())
            }
            Some((&n, _)) => DeliveriesAnswer::Counted(n),
            None => DeliveriesAnswer::Counted(0),
        })
    }

    /// Indexes sent messages by provider and provider message id (value: job id and
    /// recipient index), for `ttl_seconds`, so any instance can place any receipt.
    pub async fn index_messages(
        &self,
        entries: &[(String, String, String)],
        ttl_seconds: u64,
    ) -> Result<(), StoreError> {
        let cmds: Vec<Cmd> = entries
            .iter()
            .map(|(provider, message_id, value)| {
                let mut c = redis::cmd("SET");
                c.arg(self.keys.receipt(provider, message_id))
                    .arg(value)
                    .arg("EX")
                    .arg(ttl_seconds.max(1));
                c
            })
            .collect();
        for r in self.conn.query_each(&cmds).await? {
            r.map_err(unavailable)?;
        }
        Ok(())
    }

    /// Looks provider message ids up in the index; answers the stored value of each, if any.
    pub async fn resolve_messages(
        &self,
        provider: &str,
        message_ids: &[&str],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let cmds: Vec<Cmd> = message_ids
            .iter()
            .map(|m| {
                let mut c = redis::cmd("GET");
                c.arg(self.keys.receipt(provider, m));
                c
            })
            .collect();
        self.conn
            .query_each(&cmds)
            .await?
            .into_iter()
            .map(|r| {
                let v = r.map_err(unavailable)?;
                redis::from_redis_value::<Option<String>>(v).map_err(unavailable)
            })
            .collect()
    }

    /// Every shard's counters, in one round trip.
    pub async fn shard_stats(&self, id: &str, shards: u32) -> Result<Vec<ShardStats>, StoreError> {
        let k = self.job(id);
        let mut pipe = redis::pipe();
        for s in 0..shards {
            pipe.hgetall(k.shard(s));
        }
        let raw: Vec<HashMap<String, i64>> = self.conn.query(&pipe).await?;
        Ok(raw
            .into_iter()
            .map(|h| {
                let mut st = ShardStats::default();
                for (f, v) in h {
                    match f.as_str() {
                        "seg" => st.segments = v,
                        "cost" => st.cost_micros = v,
                        "fin" => st.finals = v,
                        c => {
                            if let Some(code) = c.strip_prefix('c').and_then(|n| n.parse().ok()) {
                                st.by_code.insert(code, v);
                            } else if let Some(code) =
                                c.strip_prefix('d').and_then(|n| n.parse().ok())
                            {
                                st.by_delivery.insert(code, v);
                            }
                        }
                    }
                }
                st
            })
            .collect())
    }
}
