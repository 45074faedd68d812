//! A provider's limit held by every instance together. Parts come from the provider's shared
//! GCRA bucket ([`RateBucket`]; in Redis, one script call) in blocks, and are handed out here,
//! so a message almost never waits on Redis: at most about 20 calls a second per instance and
//! provider, whatever the rate.
//!
//! # Why the fleet stays within the limit
//!
//! The bucket bounds what it grants: with tolerance `τ`, the blocks it grants (counted at the
//! moment each becomes usable) add up to at most `τ + rate·D` parts in any interval of length
//! `D`. What this cache adds is delay: a part is handed out some time after its block was
//! granted, and parts granted before a window but handed out inside it could push the window
//! over. So every block **expires [`HOLD`] after its start** (its booked start is counted
//! from the local instant the request left, which precedes the bucket's decision, so the
//! expiry is never late and no clock is compared with another), and unused parts are
//! dropped. A part handed out in `[t, t + W]` was then
//! granted in `[t − HOLD, t + W]`, and any window sees at most `τ + rate·(W + HOLD)`.
//!
//! That extra `rate·HOLD` is paid out of the configured burst `B`: the bucket is asked with
//! `τ = B − ⌈rate·HOLD⌉`, never less than one block. Any window of any length then sees at
//! most `B + rate·W` parts across the whole fleet — the limit one process alone keeps. Only
//! a burst below two blocks (100 ms of the rate) hits the floor; the excess is then at most
//! `rate·HOLD`, 0.5 % of any 10-second window.
//!
//! A message takes all its parts from one block, when it is handed out, so no part is used
//! outside its block's life. Two exceptions, both bounded: a reply slower than
//! `HOLD − MIN_USE` still leaves [`MIN_USE`] to use its block (a slow Redis costs that much
//! accuracy, never progress); and a message larger than `τ` cannot fit one block, so it is
//! taken in pieces and its first parts are kept while it waits for the rest.
//!
//! # Block sizes
//!
//! A block is at most [`BLOCK_TIME`] (50 ms) of the rate and at most `τ`, and at least the
//! message asking. Within that it follows demand: the next block is what the last one would
//! have handed out over a whole [`HOLD`] at the pace it was used. An instance with little to
//! send asks for little, so it does not strand parts the busy instances could have used;
//! one that emptied its block at once asks for a full one. A block is a whole number of the
//! asking message's parts (a job's messages are mostly alike), and what is left of a block
//! too small for the next message is set aside for smaller ones until it expires, so mixed
//! sizes strand little.
//!
//! # When the bucket cannot be reached
//!
//! Nothing is handed out but what the bucket granted before it went away, each part within
//! its block's life: callers wait, asking `keep_waiting` at least every [`POLL`], while one of them asks the
//! bucket again with backoff from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`]. The limiter goes on by
//! itself once the bucket answers; it never falls back to no limit.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

use crate::store::{BlockAnswer, BlockRequest, RateBucket};

/// The largest block, as time at the rate: short enough that one block is a small share of
/// any window, long enough that asking costs ~20 calls a second.
pub(super) const BLOCK_TIME: Duration = Duration::from_millis(50);
/// How long a block's parts stay usable after its start (for a block granted at once, after
/// the request for it was sent). Equal to [`BLOCK_TIME`], so an instance sending at the full
/// rate just uses a whole block.
pub(super) const HOLD: Duration = Duration::from_millis(50);
/// The least time a granted block is usable however slow the reply was.
pub(super) const MIN_USE: Duration = Duration::from_millis(10);
/// How far ahead the bucket may book a block. Instances asking at once queue in the bucket
/// instead of asking again and again; a few blocks each is all they need.
pub(super) const HORIZON: Duration = Duration::from_millis(500);
/// The longest a caller waits without asking `keep_waiting`.
pub(super) const POLL: Duration = Duration::from_millis(100);
/// The first wait after the bucket could not be reached; doubled per failure.
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between attempts while the bucket cannot be reached.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// One provider's share of a fleet-wide limit.
pub(super) struct SharedLimiter {
    bucket: Arc<dyn RateBucket>,
    provider: String,
    rate: u32,
    /// The bucket's tolerance: the configured burst less what blocks can hold.
    tolerance: u32,
    max_block: u32,
    /// Held while deciding and while asking the bucket, so an instance asks once at a time.
    cache: Mutex<Cache>,
}

/// `⌈rate · d⌉` parts.
fn parts_in(rate: u32, d: Duration) -> u32 {
    let micros = u128::from(rate) * d.as_micros();
    u32::try_from(micros.div_ceil(1_000_000)).unwrap_or(u32::MAX)
}

/// The largest block and the bucket's tolerance for a rate and burst (see the module doc).
pub(super) fn sizes(rate: u32, burst: u32) -> (u32, u32) {
    let burst = burst.max(1);
    let max_block = parts_in(rate, BLOCK_TIME).clamp(1, burst);
    let tolerance = burst.saturating_sub(parts_in(rate, HOLD)).max(max_block);
    (max_block, tolerance)
}

impl SharedLimiter {
    pub(super) fn new(
        bucket: Arc<dyn RateBucket>,
        provider: &str,
        rate: NonZeroU32,
        burst: u32,
    ) -> SharedLimiter {
        let (max_block, tolerance) = sizes(rate.get(), burst);
        SharedLimiter {
            bucket,
            provider: provider.to_string(),
            rate: rate.get(),
            tolerance,
            max_block,
            cache: Mutex::new(Cache {
                block: None,
                remnant: None,
                target: max_block,
                retry_at: None,
                failures: 0,
            }),
        }
    }

    /// See [`super::PartsLimiter::acquire`].
    pub(super) async fn acquire(
        &self,
        parts: u32,
        keep_waiting: &(dyn Fn() -> bool + Sync),
    ) -> bool {
        let whole = parts <= self.tolerance;
        let mut need = parts;
        loop {
            if need == 0 {
                return true;
            }
            let wake = {
                let Some(mut cache) = self.lock(keep_waiting).await else {
                    return false;
                };
                match cache.step(need, whole, Instant::now(), self.max_block) {
                    Step::Took(parts) => {
                        need -= parts;
                        continue;
                    }
                    Step::Ask => {
                        self.ask(&mut cache, need.min(self.tolerance)).await;
                        continue;
                    }
                    Step::Wait(at) => at,
                }
            };
            if !keep_waiting() {
                return false;
            }
            tokio::time::sleep_until(wake.min(Instant::now() + POLL)).await;
        }
    }

    /// The cache, asking `keep_waiting` while another caller holds it (it may be waiting on
    /// an unreachable bucket for up to the store's timeout).
    async fn lock(
        &self,
        keep_waiting: &(dyn Fn() -> bool + Sync),
    ) -> Option<MutexGuard<'_, Cache>> {
        loop {
            match tokio::time::timeout(POLL, self.cache.lock()).await {
                Ok(cache) => return Some(cache),
                Err(_) if !keep_waiting() => return None,
                Err(_) => {}
            }
        }
    }

    /// Asks the bucket for the next block, for a message of `need` parts (at most the
    /// tolerance); records the block, or when to ask again.
    async fn ask(&self, cache: &mut Cache, need: u32) {
        let parts = block_for(cache.target, need, self.tolerance);
        let request = BlockRequest {
            rate: self.rate,
            tolerance: self.tolerance,
            parts,
            horizon: HORIZON,
        };
        let sent = Instant::now();
        let answer = self.bucket.take(request).await;
        let received = Instant::now();
        match answer {
            Ok(answer) => {
                if cache.failures > 0 {
                    tracing::info!(
                        provider = %self.provider,
                        failed_attempts = cache.failures,
                        "the shared rate limit answers again; sends resume"
                    );
                }
                cache.failures = 0;
                cache.retry_at = None;
                match answer {
                    BlockAnswer::Granted { after } => {
                        let from = received + after;
                        cache.block = Some(Block {
                            size: parts,
                            left: parts,
                            from,
                            until: (sent + after + HOLD).max(from + MIN_USE),
                        });
                    }
                    BlockAnswer::Denied { retry_after } => {
                        cache.retry_at = Some(received + retry_after.max(Duration::from_millis(1)));
                    }
                }
            }
            Err(e) => {
                cache.failures = cache.failures.saturating_add(1);
                if cache.failures == 1 {
                    tracing::warn!(
                        provider = %self.provider,
                        error = %e,
                        "the shared rate limit cannot be reached; sends to this provider wait for it"
                    );
                }
                cache.retry_at = Some(received + backoff(cache.failures));
            }
        }
    }
}

/// The block to ask for: the target, at least `need`, rounded to whole messages of `need`
/// parts, within the tolerance (`need ≤ tolerance`).
pub(super) fn block_for(target: u32, need: u32, tolerance: u32) -> u32 {
    let need = need.clamp(1, tolerance.max(1));
    let messages = target.max(need).div_ceil(need).min(tolerance / need);
    messages.max(1) * need
}

/// The wait after `failures` failed attempts in a row.
pub(super) fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

/// A block of parts granted by the bucket.
struct Block {
    size: u32,
    left: u32,
    /// Not before: the bucket counts the block from here.
    from: Instant,
    /// Not at or after: [`HOLD`] past the request.
    until: Instant,
}

/// What an instance holds for a provider.
struct Cache {
    block: Option<Block>,
    /// The rest of the previous block, too small for the message that found it: kept for
    /// smaller messages until it expires.
    remnant: Option<Block>,
    /// The size of the next block, from the pace the last one was used at.
    target: u32,
    /// Not before: the bucket refused or could not be reached.
    retry_at: Option<Instant>,
    /// Failed attempts in a row.
    failures: u32,
}

/// What a caller does next.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Took this many parts: all it needs, or for a message larger than the tolerance, a
    /// piece of it.
    Took(u32),
    /// Nothing to take before this instant.
    Wait(Instant),
    /// Ask the bucket for a block.
    Ask,
}

impl Cache {
    /// Takes `need` parts from one block (`whole`), or as many as there are (a message too
    /// large for any block), or says what to do instead.
    fn step(&mut self, need: u32, whole: bool, now: Instant, max_block: u32) -> Step {
        if let Some(r) = &mut self.remnant {
            if now >= r.until {
                self.remnant = None;
            } else if whole && r.left >= need {
                r.left -= need;
                return Step::Took(need);
            }
        }
        if let Some(b) = &mut self.block {
            if now < b.until && b.left > 0 {
                if now < b.from {
                    return Step::Wait(b.from);
                }
                if b.left >= need || !whole {
                    let parts = need.min(b.left);
                    b.left -= parts;
                    return Step::Took(parts);
                }
            }
            self.retire(now, max_block);
        }
        match self.retry_at {
            Some(at) if now < at => Step::Wait(at),
            _ => Step::Ask,
        }
    }

    /// Retires the block (spent, expired, or too small for the message asking; the rest of
    /// a live one becomes the remnant) and sizes the next one: what it would have handed out
    /// over a whole [`HOLD`] at the pace it went (an empty block found late, after a lull,
    /// counts the lull, so a trickle asks for a trickle).
    fn retire(&mut self, now: Instant, max_block: u32) {
        let Some(b) = self.block.take() else {
            return;
        };
        let used = f64::from(b.size - b.left);
        let span = now
            .min(b.until)
            .saturating_duration_since(b.from)
            .max(Duration::from_millis(1));
        let pace = (used * HOLD.as_secs_f64() / span.as_secs_f64()).ceil();
        self.target = if pace >= f64::from(max_block) {
            max_block
        } else {
            (pace as u32).max(1)
        };
        if b.left > 0 && now < b.until {
            self.remnant = Some(b);
        }
    }
}

#[cfg(test)]
mod tests;
