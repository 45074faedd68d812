//! Rebuilding frequency-cap reservations from the journal. A Redis that comes back empty has
//! forgotten every reservation; what this instance sent inside the cap windows is in its
//! journal, so on start the reservations are put back (idempotently, per message) before
//! any job is handed to the workers and before intake opens. An empty Redis then costs
//! nobody an extra message.

use chrono::{DateTime, Duration, Utc};

use super::journal::codec::Settlement;
use super::journal::RecoveredJob;
use crate::policy::frequency_cap;
use crate::store::{longest_window, CapRequest, CapRule};

/// The reservations the recovered jobs' sends hold: each message the provider accepted, at
/// the time its answer was recorded, and each message in flight at the stop (it may have
/// been sent), at `now`. Sends older than their longest window are left out.
pub fn reservations(
    jobs: &[RecoveredJob],
    rules: &[CapRule],
    now: DateTime<Utc>,
) -> Vec<(CapRequest, DateTime<Utc>)> {
    let mut out = Vec::new();
    for job in jobs {
        let (channel, purpose) = (job.stored.spec.channel, job.stored.spec.purpose);
        let Some(longest) = longest_window(rules, channel, purpose) else {
            continue;
        };
        let since = now - Duration::seconds(longest);
        let seed = frequency_cap::holder_seed(&job.stored.id);
        let request = |index: u32| {
            let contact = job.audience.contact_id(index);
            frequency_cap::request(&job.stored.spec.tenant, seed, contact, channel, purpose)
        };
        for (at, _, item) in &job.settled {
            let at = DateTime::from_timestamp(*at, 0).unwrap_or(now);
            if item.settlement == Settlement::Sent && at > since {
                out.push((request(item.index), at));
            }
        }
        out.extend(job.in_flight.keys().map(|&index| (request(index), now)));
    }
    out
}

/// The start of the longest window of any rule: sends before it hold no reservation.
pub fn horizon(rules: &[CapRule], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let longest = rules.iter().map(|r| r.window_seconds).max()?;
    Some(now - Duration::seconds(longest))
}
