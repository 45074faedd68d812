//! The boundary between dispatch's rate limiter and a provider's rate-limit bucket shared by
//! every instance (GCRA; in Redis, one Lua script per call). The limiter asks for a block of
//! parts; the bucket answers with when they may be used, or when to ask again. Only the Redis
//! backend has one: a single process limits itself without asking anyone.

use std::time::Duration;

use async_trait::async_trait;

use super::StoreError;

/// One request for a block of parts from a provider's shared bucket. The limits travel with
/// every request, so instances never need to agree on them beforehand and a changed config
/// takes effect on the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRequest {
    /// The provider's rate in parts per second; at least 1.
    pub rate: u32,
    /// The most parts the bucket grants at once after an idle spell (the GCRA tolerance);
    /// at least `parts`, or the request can never be granted.
    pub tolerance: u32,
    /// Parts wanted, all or nothing.
    pub parts: u32,
    /// How far ahead of the bucket's clock a grant may be booked. Past it the bucket refuses,
    /// so a crowd of instances cannot book the provider's capacity far into the future.
    pub horizon: Duration,
}

/// The bucket's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockAnswer {
    /// The parts are the caller's from `after` past the moment the bucket decided (zero:
    /// at once). The bucket counts them at that moment, so they must not be used before it.
    Granted {
        /// Wait before the first part is used.
        after: Duration,
    },
    /// Granting now would book beyond the horizon; nothing was taken.
    Denied {
        /// When asking again can succeed.
        retry_after: Duration,
    },
}

/// A provider's rate limit shared by every herald instance.
#[async_trait]
pub trait RateBucket: Send + Sync {
    /// Takes `request.parts` from the bucket, or says when to ask again. An error means no
    /// decision was made: the caller must not send on it.
    async fn take(&self, request: BlockRequest) -> Result<BlockAnswer, StoreError>;
}
