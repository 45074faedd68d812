//! A provider's rate limit shared by every instance: GCRA on one key per provider, decided by
//! one Lua script on Redis's own clock (`TIME`), so instances' clocks never meet and racing
//! instances are serialised by Redis.
//!
//! The key holds the theoretical arrival time (TAT, whole µs). A request for `n` parts at
//! server time `now`, with `T = 1/rate` and tolerance `τ` parts, computes
//! `new = max(TAT, now) + n·T` and the earliest moment the block conforms,
//! `at = new − τ·T`. At or before `now` it is granted at once; within the horizon it is
//! granted and *booked*: the caller may use it from `at`, and the next caller queues behind
//! it. Past the horizon nothing changes and the caller is told when to ask again. Booked
//! grants are conformant at their start times (each needs `n ≤ τ`), so the parts used in
//! any interval of length `D` add up to at most `τ + rate·D`, however many instances ask.
//!
//! The key expires once its TAT has passed (an absent key and a past TAT mean the same: a
//! full bucket), so idle providers leave nothing behind.

use std::time::Duration;

use async_trait::async_trait;
use redis::{Cmd, ErrorKind, ServerErrorKind, Value};

use super::conn::{unavailable, Conn, Held};
use super::keys::Keys;
use super::RedisOptions;
use crate::store::{BlockAnswer, BlockRequest, RateBucket, StoreError};

/// KEYS[1]: the provider's bucket. ARGV: rate (parts/s), tolerance (parts), parts wanted,
/// horizon (µs). Answers {1, µs until the parts may be used} or {0, µs until asking again
/// can succeed}. Times are whole µs since the epoch (below 2^53, exact in Lua's doubles);
/// they are written with `%.0f`, as Lua's own number formatting keeps 14 digits only.
const TAKE_LUA: &str = r#"
local rate = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local parts = tonumber(ARGV[3])
local horizon = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = 1000000 / rate
local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if tat < now then tat = now end
local new_tat = tat + parts * interval
local wait = new_tat - tolerance * interval - now
if wait < 0 then wait = 0 end
if wait > horizon then
  return {0, math.ceil(wait - horizon)}
end
new_tat = math.ceil(new_tat)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
  'PX', string.format('%.0f', math.ceil((new_tat - now) / 1000) + 1))
return {1, math.ceil(wait)}
"#;

/// One provider's bucket in Redis. Keeps one multiplexed connection between calls (a limiter
/// asks one block at a time), going back to the pool only after a failure.
pub struct RedisRateBucket {
    conn: Conn,
    key: Vec<u8>,
    script: redis::Script,
    held: parking_lot::Mutex<Option<Held>>,
}

impl RedisRateBucket {
    /// The bucket for `provider` under the options' prefix, with a pool of its own so rate
    /// decisions never queue behind store batches. Connects on first use: a Redis that is
    /// down at start-up only holds sends, as it would later.
    pub fn open(opts: &RedisOptions, provider: &str) -> Result<RedisRateBucket, StoreError> {
        Ok(RedisRateBucket {
            conn: Conn::open(opts)?,
            key: Keys::new(&opts.key_prefix).rate_limit(provider),
            script: redis::Script::new(TAKE_LUA),
            held: parking_lot::Mutex::new(None),
        })
    }

    /// How many times this bucket has waited on Redis (script calls, and taking a
    /// connection after a failure), for tests and benchmarks of the block cache.
    pub fn round_trips(&self) -> u64 {
        self.conn.round_trips()
    }

    fn command(&self, first: &str, script: &str, r: &BlockRequest) -> Cmd {
        let horizon = u64::try_from(r.horizon.as_micros()).unwrap_or(u64::MAX);
        let mut cmd = redis::cmd(first);
        cmd.arg(script)
            .arg(1)
            .arg(&self.key)
            .arg(r.rate)
            .arg(r.tolerance)
            .arg(r.parts)
            .arg(horizon);
        cmd
    }
}

#[async_trait]
impl RateBucket for RedisRateBucket {
    async fn take(&self, r: BlockRequest) -> Result<BlockAnswer, StoreError> {
        if r.rate == 0 || r.parts == 0 || r.parts > r.tolerance {
            return Err(unavailable(format_args!(
                "a rate-limit request must want 1 to {} parts at a rate above 0, not {} at {}",
                r.tolerance, r.parts, r.rate
            )));
        }
        let kept = self.held.lock().clone();
        let mut held = match kept {
            Some(held) => held,
            None => self.conn.hold().await?,
        };
        let by_hash = self.command("EVALSHA", self.script.get_hash(), &r);
        let mut reply = self.conn.query_held(&mut held, &by_hash).await;
        if matches!(&reply, Ok(Err(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript))
        {
            let by_body = self.command("EVAL", TAKE_LUA, &r);
            reply = self.conn.query_held(&mut held, &by_body).await;
        }
        let value = match reply {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => {
                *self.held.lock() = None;
                return Err(unavailable(e));
            }
            Err(e) => {
                *self.held.lock() = None;
                return Err(e);
            }
        };
        *self.held.lock() = Some(held);
        answer(value)
    }
}

/// The script's `{granted, µs}` as a decision.
fn answer(value: Value) -> Result<BlockAnswer, StoreError> {
    let (granted, micros): (i64, i64) = redis::from_redis_value(value).map_err(unavailable)?;
    let wait = Duration::from_micros(u64::try_from(micros).unwrap_or(0));
    match granted {
        1 => Ok(BlockAnswer::Granted { after: wait }),
        0 => Ok(BlockAnswer::Denied { retry_after: wait }),
        _ => Err(unavailable(
            "the rate-limit script answered neither granted nor denied",
        )),
    }
}
