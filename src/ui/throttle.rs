//! Failed sign-ins, slowed and limited per client address: each failure is answered after a
//! short pause, and an address with [`MAX_FAILURES`] failures in a [`WINDOW`] is refused
//! (429) until its window ends. A right key is never delayed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Failures an address may have in one window.
pub const MAX_FAILURES: u32 = 5;
/// How long failures are remembered.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The pause before a failure is answered.
pub const FAILURE_PAUSE: Duration = Duration::from_millis(250);
/// Addresses remembered at most; past it, expired windows are dropped, then all.
const MAX_ADDRESSES: usize = 10_000;

/// Failure counts per address.
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Throttle {
    /// How long `addr` must wait before trying again, if it has used up its failures.
    pub fn refused_for(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock();
        let &(count, since) = failures.get(&addr)?;
        let ends = since + WINDOW;
        (count >= MAX_FAILURES && ends > now).then(|| ends - now)
    }

    /// Counts a failure of `addr`.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&addr) {
            failures.retain(|_, (_, since)| *since + WINDOW > now);
            if failures.len() >= MAX_ADDRESSES {
                failures.clear();
            }
        }
        let entry = failures.entry(addr).or_insert((0, now));
        if entry.1 + WINDOW <= now {
            *entry = (0, now);
        }
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_window_ends() {
        let t = Throttle::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert_eq!(t.refused_for(a, start), None);
            t.failed(a, start);
        }
        assert_eq!(t.refused_for(a, start), Some(WINDOW));
        assert_eq!(
            t.refused_for(b, start),
            None,
            "other addresses are not held"
        );
        let later = start + WINDOW;
        assert_eq!(t.refused_for(a, later), None);
        t.failed(a, later);
        assert_eq!(t.refused_for(a, later), None, "a new window counts afresh");
    }
}
