//! Connections: a deadpool of multiplexed connections to one Redis or to a Redis Cluster,
//! and the ways the store talks to it (pipelines, commands in flight at once, and one
//! command at a time on a connection a frequent caller keeps). Every call is bounded by one timeout, from taking
//! a connection to the last reply, so a Redis that is down or stalled answers "unavailable"
//! quickly instead of holding dispatch.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_redis::{PoolConfig, Runtime, Timeouts};
use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, Pipeline, RedisResult, Value};

use super::RedisOptions;
use crate::store::StoreError;

/// What a store call needs from Redis.
pub(super) struct Conn {
    pools: Pools,
    timeout: Duration,
    round_trips: AtomicU64,
}

enum Pools {
    Single(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
}

/// A multiplexed connection kept by a caller that calls often, one call at a time (a
/// provider's rate limiter): every `pool.get()` costs a PING round trip of its own, so such
/// a caller keeps the connection and only goes back to the pool after a failure. Clones share
/// the socket, as the pool's other users may.
#[derive(Clone)]
pub(super) enum Held {
    Single(redis::aio::MultiplexedConnection),
    Cluster(deadpool_redis::cluster::ClusterConnection),
}

/// The store's only way of turning a Redis or pool failure into an error: it keeps the
/// cause's text (the trait's error carries text) and always reads as "could not run".
pub(super) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

impl Conn {
    /// Builds the pool; connects lazily, on the first call.
    pub(super) fn open(opts: &RedisOptions) -> Result<Conn, StoreError> {
        let pool_config = PoolConfig {
            max_size: opts.pool_size.max(1),
            timeouts: Timeouts {
                wait: Some(opts.timeout),
                create: Some(opts.timeout),
                recycle: Some(opts.timeout),
            },
            ..PoolConfig::default()
        };
        let pools = if opts.cluster {
            let mut cfg = deadpool_redis::cluster::Config::from_urls(opts.urls.clone());
            cfg.pool = Some(pool_config);
            Pools::Cluster(
                cfg.create_pool(Some(Runtime::Tokio1))
                    .map_err(unavailable)?,
            )
        } else {
            let url = opts
                .urls
                .first()
                .ok_or_else(|| unavailable("no URL configured"))?;
            let connection = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(opts.timeout))
                .set_response_timeout(Some(opts.timeout));
            let manager = deadpool_redis::Manager::new_with_config(url.as_str(), connection)
                .map_err(unavailable)?;
            Pools::Single(
                deadpool_redis::Pool::builder(manager)
                    .config(pool_config)
                    .runtime(Runtime::Tokio1)
                    .build()
                    .map_err(unavailable)?,
            )
        };
        Ok(Conn {
            pools,
            timeout: opts.timeout,
            round_trips: AtomicU64::new(0),
        })
    }

    /// How many times a call has waited on Redis so far (a cluster fan-out, in flight at
    /// once, counts once).
    pub(super) fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Runs `call` within the store's timeout.
    async fn within<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(unavailable(format_args!(
                    "no answer within {} ms",
                    self.timeout.as_millis()
                )))
            })
    }

    /// One pipeline, one round trip. In a cluster every key in it must share a hash slot
    /// (the directory keys do: they all carry the prefix's hash tag).
    pub(super) async fn query<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, StoreError> {
        self.within(async {
            match &self.pools {
                Pools::Single(p) => {
                    let mut c = p.get().await.map_err(unavailable)?;
                    pipe.query_async(&mut c).await.map_err(unavailable)
                }
                Pools::Cluster(p) => {
                    let mut c = p.get().await.map_err(unavailable)?;
                    pipe.query_async(&mut c).await.map_err(unavailable)
                }
            }
        })
        .await
    }

    /// Commands that may each touch a different slot, answered one result per command so a
    /// caller can tell one command's server error (NOSCRIPT) from the others' answers. One
    /// Redis: a single pipeline, one round trip. A cluster: every command in flight at once
    /// on the multiplexed connections (one per node), so the wait is one round trip per node
    /// in parallel, never one per command in turn.
    pub(super) async fn query_each(
        &self,
        cmds: &[Cmd],
    ) -> Result<Vec<RedisResult<Value>>, StoreError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        self.within(async {
            match &self.pools {
                Pools::Single(p) => {
                    let mut c = p.get().await.map_err(unavailable)?;
                    let mut pipe = redis::pipe();
                    for cmd in cmds {
                        pipe.add_command(cmd.clone());
                    }
                    pipe.ignore_errors();
                    let values: Vec<Value> = pipe.query_async(&mut c).await.map_err(unavailable)?;
                    Ok(values.into_iter().map(server_result).collect())
                }
                Pools::Cluster(p) => {
                    let c = p.get().await.map_err(unavailable)?;
                    let base: deadpool_redis::cluster::ClusterConnection = (*c).clone();
                    let calls = cmds.iter().map(|cmd| {
                        let mut conn = base.clone();
                        async move { conn.req_packed_command(cmd).await.and_then(server_result) }
                    });
                    Ok(futures::future::join_all(calls).await)
                }
            }
        })
        .await
    }

    /// A connection to keep (see [`Held`]); a healthy one from the pool, or a new one.
    pub(super) async fn hold(&self) -> Result<Held, StoreError> {
        self.within(async {
            Ok(match &self.pools {
                Pools::Single(p) => Held::Single((*p.get().await.map_err(unavailable)?).clone()),
                Pools::Cluster(p) => Held::Cluster((*p.get().await.map_err(unavailable)?).clone()),
            })
        })
        .await
    }

    /// One command on a held connection, within the store's timeout. The outer error is the
    /// timeout; the inner result keeps server errors (NOSCRIPT) apart from broken connections
    /// only as far as the caller needs: after any error but NOSCRIPT it should let the
    /// connection go.
    pub(super) async fn query_held(
        &self,
        held: &mut Held,
        cmd: &Cmd,
    ) -> Result<RedisResult<Value>, StoreError> {
        self.within(async {
            Ok(match held {
                Held::Single(c) => c.req_packed_command(cmd).await,
                Held::Cluster(c) => c.req_packed_command(cmd).await,
            }
            .and_then(server_result))
        })
        .await
    }
}

/// A pipeline reply with `ignore_errors`: server errors arrive as values.
fn server_result(v: Value) -> RedisResult<Value> {
    match v {
        Value::ServerError(e) => Err(e.into()),
        v => Ok(v),
    }
}

impl Conn {
    /// Runs a script by hash, and with its body when the server does not know it yet (after
    /// a restart or failover, or on a node of a cluster that never ran it).
    pub(super) async fn run_script<T: redis::FromRedisValue, A: redis::ToRedisArgs>(
        &self,
        body: &str,
        script: &redis::Script,
        keys: &[String],
        args: &[A],
    ) -> Result<T, StoreError> {
        let by_hash = eval("EVALSHA", script.get_hash(), keys, args);
        let first = self.query_each(std::slice::from_ref(&by_hash)).await?;
        let value = match first.into_iter().next() {
            Some(Ok(v)) => v,
            Some(Err(e))
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                let with_body = eval("EVAL", body, keys, args);
                let again = self.query_each(std::slice::from_ref(&with_body)).await?;
                match again.into_iter().next() {
                    Some(Ok(v)) => v,
                    Some(Err(e)) => return Err(unavailable(e)),
                    None => redis::Value::Nil,
                }
            }
            Some(Err(e)) => return Err(unavailable(e)),
            None => redis::Value::Nil,
        };
        redis::from_redis_value(value).map_err(unavailable)
    }
}

/// `EVALSHA hash` or `EVAL body`, with the keys and arguments.
fn eval<A: redis::ToRedisArgs>(
    first: &str,
    script: &str,
    keys: &[String],
    args: &[A],
) -> redis::Cmd {
    let mut cmd = redis::cmd(first);
    cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
    cmd
}
