//! Monthly quotas in Redis: one hash per (tenant, month) holding the month's total (`used`)
//! and each job's reservation (`job:<id>`). Reserving and giving back are Lua scripts over
//! that one key, so instances racing for the last room are serialised by Redis, and a job is
//! counted once however often its submission is retried. Quota calls come once per job, so
//! the scripts are sent with their body each time.

use redis::Value;

use super::conn::{unavailable, Conn};
use super::keys::Keys;
use crate::access::TenantId;
use crate::domain::JobId;
use crate::store::{QuotaAnswer, QuotaReservation, StoreError};

/// How long a month's hash outlives its last reservation: long enough to read last year's
/// use, short enough that old months leave by themselves.
const KEEP_SECONDS: u64 = 400 * 86_400;

/// KEYS: the month's hash. ARGV: the job's field, its recipients, the limit, the lifetime.
/// Answers {1, used} when counted (now or before), {0, used} when it does not fit.
const RESERVE_LUA: &str = r#"
local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {1, used} end
local n, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
if used + n > limit then return {0, used} end
redis.call('HINCRBY', KEYS[1], 'used', n)
redis.call('HSET', KEYS[1], ARGV[1], n)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {1, used + n}
"#;

/// KEYS: the month's hash. ARGV: the job's field. Answers 1 when a reservation was dropped.
const RELEASE_LUA: &str = r#"
local n = redis.call('HGET', KEYS[1], ARGV[1])
if not n then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'used', -tonumber(n))
return 1
"#;

fn job_field(job: &JobId) -> String {
    format!("job:{job}")
}

/// See [`crate::store::StateStore::reserve_quota`].
pub(super) async fn reserve(
    conn: &Conn,
    keys: &Keys,
    r: &QuotaReservation<'_>,
) -> Result<QuotaAnswer, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(RESERVE_LUA)
        .arg(1)
        .arg(keys.quota(r.tenant, r.month))
        .arg(job_field(r.job))
        .arg(r.recipients)
        .arg(r.limit)
        .arg(KEEP_SECONDS);
    let (answer,): (Vec<Value>,) = conn.query(&pipe).await?;
    let number = |v: Option<&Value>| match v {
        Some(Value::Int(n)) => u64::try_from(*n).map_err(unavailable),
        _ => Err(unavailable("the quota script answered no count")),
    };
    let (counted, used) = (number(answer.first())?, number(answer.get(1))?);
    Ok(match counted {
        1 => QuotaAnswer::Reserved { used },
        _ => QuotaAnswer::Exceeded { used },
    })
}

/// See [`crate::store::StateStore::release_quota`].
pub(super) async fn release(
    conn: &Conn,
    keys: &Keys,
    tenant: &TenantId,
    month: u32,
    job: &JobId,
) -> Result<(), StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(RELEASE_LUA)
        .arg(1)
        .arg(keys.quota(tenant, month))
        .arg(job_field(job))
        .ignore();
    conn.query::<()>(&pipe).await
}

/// See [`crate::store::StateStore::quota_used`].
pub(super) async fn used(
    conn: &Conn,
    keys: &Keys,
    tenant: &TenantId,
    month: u32,
) -> Result<u64, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HGET").arg(keys.quota(tenant, month)).arg("used");
    let (used,): (Option<u64>,) = conn.query(&pipe).await?;
    Ok(used.unwrap_or(0))
}
