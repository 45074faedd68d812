//! The block cache on tokio's paused clock, against an in-process bucket that does the same
//! arithmetic as the Redis script, so time and failures are exact and tests are instant.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::*;
use crate::store::StoreError;

/// GCRA as `store/redis/rate.rs` does it, on the paused clock.
struct FakeBucket {
    base: Instant,
    state: parking_lot::Mutex<FakeState>,
    down: AtomicBool,
}

#[derive(Default)]
struct FakeState {
    tat: Duration,
    calls: u32,
    granted: u64,
    requests: Vec<BlockRequest>,
}

impl FakeBucket {
    fn new() -> Arc<FakeBucket> {
        Arc::new(FakeBucket {
            base: Instant::now(),
            state: parking_lot::Mutex::new(FakeState::default()),
            down: AtomicBool::new(false),
        })
    }

    fn calls(&self) -> u32 {
        self.state.lock().calls
    }

    fn granted(&self) -> u64 {
        self.state.lock().granted
    }
}

#[async_trait]
impl RateBucket for FakeBucket {
    async fn take(&self, r: BlockRequest) -> Result<BlockAnswer, StoreError> {
        let mut s = self.state.lock();
        s.calls += 1;
        s.requests.push(r);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("bucket down".into()));
        }
        assert!(r.parts >= 1 && r.parts <= r.tolerance, "{r:?}");
        let now = Instant::now() - self.base;
        let interval = Duration::from_secs(1) / r.rate;
        let new_tat = s.tat.max(now) + interval * r.parts;
        let wait = new_tat
            .saturating_sub(interval * r.tolerance)
            .saturating_sub(now);
        if wait > r.horizon {
            return Ok(BlockAnswer::Denied {
                retry_after: wait - r.horizon,
            });
        }
        s.tat = new_tat;
        s.granted += u64::from(r.parts);
        Ok(BlockAnswer::Granted { after: wait })
    }
}

fn limiter(bucket: &Arc<FakeBucket>, rate: u32, burst: u32) -> Arc<SharedLimiter> {
    let rate = NonZeroU32::new(rate).expect("rate");
    Arc::new(SharedLimiter::new(bucket.clone(), "p", rate, burst))
}

/// The most parts handed out in any window of length `w` (windows that start at a grant).
fn busiest(grants: &[(Duration, u32)], w: Duration) -> u64 {
    let mut sorted = grants.to_vec();
    sorted.sort();
    let (mut best, mut sum, mut end) = (0u64, 0u64, 0);
    for start in 0..sorted.len() {
        while end < sorted.len() && sorted[end].0 <= sorted[start].0 + w {
            sum += u64::from(sorted[end].1);
            end += 1;
        }
        best = best.max(sum);
        sum -= u64::from(sorted[start].1);
    }
    best
}

#[test]
fn blocks_are_50_ms_of_the_rate_and_the_burst_pays_for_holding_them() {
    // (rate, burst) → (largest block, tolerance asked of the bucket).
    assert_eq!(sizes(2_000, 200), (100, 100));
    assert_eq!(sizes(200, 50), (10, 40));
    assert_eq!(sizes(10_000, 100_000), (500, 99_500));
    // A burst below two blocks: the floor of one block.
    assert_eq!(sizes(2_000, 120), (100, 100));
    assert_eq!(sizes(2_000, 10), (10, 10));
    assert_eq!(sizes(1, 1), (1, 1));
    assert_eq!(sizes(3, 0), (1, 1));
    assert_eq!(sizes(u32::MAX, u32::MAX).0, parts_in(u32::MAX, BLOCK_TIME));
}

#[test]
fn backoff_doubles_to_a_second() {
    let ms = |f| backoff(f).as_millis();
    assert_eq!(
        [ms(1), ms(2), ms(3), ms(4), ms(5), ms(6), ms(100)],
        [50, 100, 200, 400, 800, 1_000, 1_000]
    );
}

#[tokio::test(start_paused = true)]
async fn a_busy_instance_asks_once_per_block() {
    let bucket = FakeBucket::new();
    let l = limiter(&bucket, 2_000, 200);
    let started = Instant::now();
    for _ in 0..1_000 {
        assert!(l.acquire(1, &|| true).await);
    }
    // 1,000 parts in blocks of 100; the first at once, then one every 50 ms.
    assert_eq!(bucket.calls(), 10);
    assert_eq!(started.elapsed(), Duration::from_millis(450));
}

#[tokio::test(start_paused = true)]
async fn three_instances_together_keep_rate_and_burst() {
    let bucket = FakeBucket::new();
    let grants = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for instance in 0..3 {
        let l = limiter(&bucket, 2_000, 200);
        for worker in 0..4u32 {
            let (l, grants) = (l.clone(), grants.clone());
            tasks.push(tokio::spawn(async move {
                let parts = 1 + (instance + worker) % 3;
                while started.elapsed() < Duration::from_secs(12) {
                    assert!(l.acquire(parts, &|| true).await);
                    grants.lock().push((started.elapsed(), parts));
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let grants = grants.lock();
    let total: u64 = grants.iter().map(|g| u64::from(g.1)).sum();
    assert!(busiest(&grants, Duration::from_secs(1)) <= 2_000 + 200);
    assert!(busiest(&grants, Duration::from_secs(10)) <= 20_000 + 200);
    // Twelve seconds at 2,000/s, plus the burst, less at most one block an instance left over.
    assert!(total >= 24_000 * 99 / 100, "{total}");
    assert!(bucket.granted() - total <= 3 * 100, "{}", bucket.granted());
}

#[tokio::test(start_paused = true)]
async fn a_trickle_asks_for_a_trickle() {
    let bucket = FakeBucket::new();
    let l = limiter(&bucket, 2_000, 200);
    for _ in 0..20 {
        assert!(l.acquire(1, &|| true).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The first block is a full one; once its pace is known, blocks hold one part.
    let requests = bucket.state.lock().requests.clone();
    assert_eq!(requests[0].parts, 100);
    assert!(requests[1..].iter().all(|r| r.parts == 1), "{requests:?}");
    assert_eq!(bucket.granted(), 100 + 19);
}

#[tokio::test(start_paused = true)]
async fn unused_parts_expire_after_the_hold() {
    let bucket = FakeBucket::new();
    let l = limiter(&bucket, 2_000, 200);
    assert!(l.acquire(1, &|| true).await);
    tokio::time::sleep(HOLD - Duration::from_millis(1)).await;
    assert!(l.acquire(1, &|| true).await);
    assert_eq!(bucket.calls(), 1, "still inside the hold");
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(l.acquire(1, &|| true).await);
    assert_eq!(bucket.calls(), 2, "98 parts were dropped");
}

#[test]
fn blocks_are_whole_messages_within_the_tolerance() {
    assert_eq!(block_for(100, 1, 100), 100);
    assert_eq!(block_for(100, 3, 100), 99);
    assert_eq!(block_for(10, 3, 40), 12);
    assert_eq!(block_for(1, 7, 40), 7);
    assert_eq!(block_for(40, 7, 40), 35);
    assert_eq!(block_for(5, 40, 40), 40);
}

#[tokio::test(start_paused = true)]
async fn a_message_takes_one_block_and_leftovers_serve_smaller_ones() {
    let bucket = FakeBucket::new();
    // Blocks of 10 (200/s), tolerance 40.
    let l = limiter(&bucket, 200, 50);
    for _ in 0..9 {
        assert!(l.acquire(1, &|| true).await);
    }
    // One part left: too few for a 5-part message, which takes a block of its own (10).
    assert!(l.acquire(5, &|| true).await);
    assert_eq!(bucket.calls(), 2);
    // The part left over goes to a 1-part message; the new block has 5 left for another.
    assert!(l.acquire(1, &|| true).await);
    assert!(l.acquire(5, &|| true).await);
    assert_eq!(bucket.calls(), 2);
    assert!(l.acquire(1, &|| true).await);
    assert_eq!(bucket.calls(), 3);
    assert_eq!(bucket.granted(), 30);
}

#[tokio::test(start_paused = true)]
async fn a_leftover_expires_with_its_block() {
    let bucket = FakeBucket::new();
    let l = limiter(&bucket, 200, 50);
    for _ in 0..9 {
        assert!(l.acquire(1, &|| true).await);
    }
    assert!(l.acquire(5, &|| true).await);
    assert!(l.acquire(5, &|| true).await);
    tokio::time::sleep(HOLD).await;
    // The first block's last part expired with it: the next message asks the bucket.
    assert!(l.acquire(1, &|| true).await);
    assert_eq!(bucket.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_message_larger_than_the_tolerance_goes_in_pieces() {
    let bucket = FakeBucket::new();
    // Tolerance 40: a 100-part message takes 40 + 40 + 20, at the rate.
    let l = limiter(&bucket, 200, 50);
    let started = Instant::now();
    assert!(l.acquire(100, &|| true).await);
    let sizes: Vec<u32> = bucket
        .state
        .lock()
        .requests
        .iter()
        .map(|r| r.parts)
        .collect();
    assert_eq!(sizes, [40, 40, 20]);
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_bucket_holds_sends_until_it_answers() {
    let bucket = FakeBucket::new();
    let l = limiter(&bucket, 2_000, 200);
    bucket.down.store(true, Ordering::SeqCst);

    // A caller told to stop gives up within one poll.
    let started = Instant::now();
    assert!(
        !l.acquire(1, &|| started.elapsed() < Duration::from_millis(250))
            .await
    );
    assert!(started.elapsed() <= Duration::from_millis(250) + POLL);

    let waiting = tokio::spawn({
        let l = l.clone();
        async move { l.acquire(1, &|| true).await }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!waiting.is_finished(), "nothing is sent without a decision");
    let calls_down = bucket.calls();
    // Backoff: 50, 100, 200, 400, 800 ms, then once a second.
    assert!((7..=12).contains(&calls_down), "{calls_down}");

    bucket.down.store(false, Ordering::SeqCst);
    let back = Instant::now();
    assert!(waiting.await.expect("task"));
    assert!(back.elapsed() <= MAX_BACKOFF, "{:?}", back.elapsed());
    // And it carries on at the rate, a block per call.
    for _ in 0..200 {
        assert!(l.acquire(1, &|| true).await);
    }
    assert!(bucket.calls() - calls_down <= 4);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_waits_until_the_bucket_has_room_ahead() {
    let bucket = FakeBucket::new();
    let l = limiter(&bucket, 2_000, 200);
    // Book the bucket 600 ms ahead from elsewhere: beyond the horizon.
    {
        let mut s = bucket.state.lock();
        s.tat = Duration::from_millis(650);
    }
    let started = Instant::now();
    assert!(l.acquire(1, &|| true).await);
    // Refused once (told to come back at 150 ms, when the block fits the horizon), then
    // booked: 100 parts after a TAT of 650 ms with a tolerance of 100 start at 650 ms.
    assert_eq!(bucket.calls(), 2);
    assert_eq!(started.elapsed(), Duration::from_millis(650));
}
