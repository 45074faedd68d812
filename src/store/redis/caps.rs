//! Frequency caps in Redis: one sorted set per (contact key, channel, purpose), member =
//! holder, score = reservation time (unix seconds). Check-and-reserve is one Lua script, so
//! instances racing for a contact are serialised by Redis and can never exceed a cap
//! together; the script trims entries older than the longest window and lets the set expire
//! with it. A holder already in the set is granted again without a second entry, so a
//! message retried after a crash does not count twice.
//!
//! One Redis runs a batch as one script call over all its keys. A cluster runs one call per
//! contact (a contact's keys share a hash tag, so each call touches one slot), all in flight
//! at once. The script is sent by hash (EVALSHA); the calls a node answers NOSCRIPT (after a
//! restart or on a new node) are sent again with their body (EVAL).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use redis::{Cmd, ErrorKind, ServerErrorKind, Value};

use super::conn::{unavailable, Conn};
use super::keys::Keys;
use crate::domain::{Channel, Purpose};
use crate::store::{CapRequest, CapRule, StoreError};

/// KEYS: the cap sets. ARGV: now; then per key its rule count and (max, window) pairs; then
/// per request (key index, holder). Answers 1 (reserved) or 0 per request, in order.
const RESERVE_LUA: &str = r#"
local now = tonumber(ARGV[1])
local pos = 2
local rules, longest = {}, {}
for k = 1, #KEYS do
  local n = tonumber(ARGV[pos])
  pos = pos + 1
  local list, l = {}, 0
  for j = 1, n do
    local max, win = tonumber(ARGV[pos]), tonumber(ARGV[pos + 1])
    pos = pos + 2
    list[j] = { max, win }
    if win > l then l = win end
  end
  rules[k], longest[k] = list, l
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now - l)
end
local out = {}
while pos < #ARGV do
  local k, holder = tonumber(ARGV[pos]), ARGV[pos + 1]
  pos = pos + 2
  local key, granted = KEYS[k], 1
  if not redis.call('ZSCORE', key, holder) then
    for _, rule in ipairs(rules[k]) do
      if redis.call('ZCOUNT', key, '(' .. (now - rule[2]), '+inf') >= rule[1] then
        granted = 0
        break
      end
    end
    if granted == 1 then
      redis.call('ZADD', key, now, holder)
      redis.call('EXPIRE', key, longest[k])
    end
  end
  out[#out + 1] = granted
end
return out
"#;

/// The reservation script, hashed once.
pub(super) struct CapScript {
    script: redis::Script,
}

impl CapScript {
    pub(super) fn new() -> CapScript {
        CapScript {
            script: redis::Script::new(RESERVE_LUA),
        }
    }
}

/// A century: longer windows are the same in practice, and Redis refuses expiry times far
/// beyond it.
const MAX_WINDOW_SECONDS: i64 = 100 * 366 * 86_400;

type CapKey = (u64, Channel, Purpose);

/// One script call: the keys it touches and the requests it answers.
#[derive(Default)]
struct Call {
    keys: Vec<CapKey>,
    key_index: HashMap<CapKey, usize>,
    /// (index into the caller's requests, 1-based key index, holder).
    requests: Vec<(usize, usize, u64)>,
}

impl Call {
    fn args(&self, keys: &Keys, rules: &[CapRule], now: i64) -> (Vec<String>, Vec<String>) {
        let names = self
            .keys
            .iter()
            .map(|(contact, channel, purpose)| keys.cap(*contact, *channel, *purpose))
            .collect();
        let mut args = vec![now.to_string()];
        for (_, channel, purpose) in &self.keys {
            let matching: Vec<&CapRule> = rules
                .iter()
                .filter(|r| r.channel == *channel && r.purpose == *purpose)
                .collect();
            args.push(matching.len().to_string());
            for r in matching {
                args.push(r.max.to_string());
                args.push(r.window_seconds.clamp(1, MAX_WINDOW_SECONDS).to_string());
            }
        }
        for (_, key, holder) in &self.requests {
            args.push(key.to_string());
            args.push(holder.to_string());
        }
        (names, args)
    }
}

fn eval(first: &str, script: &str, names: &[String], args: &[String]) -> Cmd {
    let mut cmd = redis::cmd(first);
    cmd.arg(script).arg(names.len()).arg(names).arg(args);
    cmd
}

/// Check-and-reserve for a batch; see the module doc.
pub(super) async fn reserve(
    conn: &Conn,
    keys: &Keys,
    script: &CapScript,
    per_contact: bool,
    rules: &[CapRule],
    requests: &[CapRequest],
    now: DateTime<Utc>,
) -> Result<Vec<bool>, StoreError> {
    let now = now.timestamp();
    let mut granted = vec![true; requests.len()];
    let mut calls: Vec<Call> = Vec::new();
    let mut call_of_contact: HashMap<u64, usize> = HashMap::new();
    for (i, r) in requests.iter().enumerate() {
        if !rules
            .iter()
            .any(|rule| rule.channel == r.channel && rule.purpose == r.purpose)
        {
            continue;
        }
        let call_index = if per_contact {
            *call_of_contact.entry(r.contact_key).or_insert_with(|| {
                calls.push(Call::default());
                calls.len() - 1
            })
        } else {
            if calls.is_empty() {
                calls.push(Call::default());
            }
            0
        };
        let call = &mut calls[call_index];
        let key = (r.contact_key, r.channel, r.purpose);
        let key_index = *call.key_index.entry(key).or_insert_with(|| {
            call.keys.push(key);
            call.keys.len()
        });
        call.requests.push((i, key_index, r.holder));
    }
    if calls.is_empty() {
        return Ok(granted);
    }

    let prepared: Vec<(Vec<String>, Vec<String>)> =
        calls.iter().map(|c| c.args(keys, rules, now)).collect();
    let by_hash: Vec<Cmd> = prepared
        .iter()
        .map(|(names, args)| eval("EVALSHA", script.script.get_hash(), names, args))
        .collect();
    let mut replies = conn.query_each(&by_hash).await?;

    let missing: Vec<usize> = replies
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)))
        .map(|(i, _)| i)
        .collect();
    if !missing.is_empty() {
        let by_body: Vec<Cmd> = missing
            .iter()
            .map(|i| {
                let (names, args) = &prepared[*i];
                eval("EVAL", RESERVE_LUA, names, args)
            })
            .collect();
        for (i, reply) in missing.into_iter().zip(conn.query_each(&by_body).await?) {
            replies[i] = reply;
        }
    }

    for (call, reply) in calls.iter().zip(replies) {
        let answers: Vec<i64> = reply
            .map_err(unavailable)
            .and_then(|v: Value| redis::from_redis_value(v).map_err(unavailable))?;
        if answers.len() != call.requests.len() {
            return Err(unavailable(
                "the cap script answered a different number of requests",
            ));
        }
        for ((i, _, _), answer) in call.requests.iter().zip(answers) {
            granted[*i] = answer == 1;
        }
    }
    Ok(granted)
}

/// Adds each reservation's holder to its cap set at its time unless it is there (`ZADD NX`),
/// then trims each set to its longest window and lets it expire with it: one pipeline on one
/// Redis, one command at a time in flight together on a cluster. No cap is checked: these
/// sends happened.
pub(super) async fn restore(
    conn: &Conn,
    keys: &Keys,
    rules: &[CapRule],
    reservations: &[(CapRequest, DateTime<Utc>)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let now = now.timestamp();
    let mut longest_of: HashMap<CapKey, i64> = HashMap::new();
    let mut cmds: Vec<Cmd> = Vec::new();
    for (r, at) in reservations {
        let Some(longest) = crate::store::longest_window(rules, r.channel, r.purpose) else {
            continue;
        };
        let longest = longest.clamp(1, MAX_WINDOW_SECONDS);
        let at = at.timestamp();
        if at <= now - longest {
            continue;
        }
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(keys.cap(r.contact_key, r.channel, r.purpose))
            .arg("NX")
            .arg(at)
            .arg(r.holder.to_string());
        cmds.push(cmd);
        longest_of.insert((r.contact_key, r.channel, r.purpose), longest);
    }
    for ((contact, channel, purpose), longest) in longest_of {
        let key = keys.cap(contact, channel, purpose);
        let mut trim = redis::cmd("ZREMRANGEBYSCORE");
        trim.arg(&key).arg("-inf").arg(now - longest);
        let mut expire = redis::cmd("EXPIRE");
        expire.arg(&key).arg(longest);
        cmds.push(trim);
        cmds.push(expire);
    }
    for chunk in cmds.chunks(10_000) {
        for reply in conn.query_each(chunk).await? {
            reply.map_err(unavailable)?;
        }
    }
    Ok(())
}

/// Removes each request's holder from its cap set: one pipeline on one Redis, one command
/// per request in flight at once on a cluster.
pub(super) async fn release(
    conn: &Conn,
    keys: &Keys,
    requests: &[CapRequest],
) -> Result<(), StoreError> {
    let cmds: Vec<Cmd> = requests
        .iter()
        .map(|r| {
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(keys.cap(r.contact_key, r.channel, r.purpose))
                .arg(r.holder.to_string());
            cmd
        })
        .collect();
    for reply in conn.query_each(&cmds).await? {
        reply.map_err(unavailable)?;
    }
    Ok(())
}
