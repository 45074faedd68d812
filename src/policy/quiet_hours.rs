//! Quiet hours: marketing messages go out only inside the local allowed window. Outside it
//! the recipient is deferred to the next allowed time, never dropped. The contact's own time
//! zone is used when known; otherwise the zones its phone number could be in. When those are
//! several, the message waits until the window is open in all of them, i.e. for the
//! latest-starting zone, rather than risk a message at night.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The allowed local-time window `[start, end)`; `start > end` spans midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl QuietHours {
    /// `None` when sending now is allowed in every zone, else the time to try again.
    pub fn check(&self, zones: &[Tz], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if zones.iter().all(|z| self.open_at(*z, now)) {
            return None;
        }
        let mut candidates: Vec<DateTime<Utc>> = zones
            .iter()
            .filter_map(|z| self.next_start(*z, now))
            .collect();
        candidates.sort();
        candidates
            .iter()
            .find(|c| zones.iter().all(|z| self.open_at(*z, **c)))
            .or(candidates.last())
            .copied()
    }

    fn open_at(&self, zone: Tz, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&zone).time();
        if self.start <= self.end {
            local >= self.start && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }

    /// The next moment after `now` at which the window opens in `zone`.
    fn next_start(&self, zone: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let today = now.with_timezone(&zone).date_naive();
        (0..3).find_map(|d| {
            let day = today + Duration::days(d);
            let local = day.and_time(self.start);
            // A start inside a DST gap opens at the first instant after the gap.
            let at = zone
                .from_local_datetime(&local)
                .earliest()
                .or_else(|| {
                    zone.from_local_datetime(&(local + Duration::hours(1)))
                        .earliest()
                })?
                .with_timezone(&Utc);
            (at > now).then_some(at)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qh() -> QuietHours {
        QuietHours {
            start: NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(21, 0, 0).unwrap(),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn inside_the_window_sends_now() {
        // 12:00 in Shanghai.
        assert_eq!(
            qh().check(&[chrono_tz::Asia::Shanghai], utc("2026-11-23T04:00:00Z")),
            None
        );
    }

    #[test]
    fn at_night_defers_to_local_morning() {
        // 23:00 in Shanghai -> 08:00 next day Shanghai = 00:00Z.
        let until = qh().check(&[chrono_tz::Asia::Shanghai], utc("2026-11-23T15:00:00Z"));
        assert_eq!(until, Some(utc("2026-11-24T00:00:00Z")));
    }

    #[test]
    fn ambiguous_zones_wait_for_the_latest_start() {
        // 07:30 in New York, 04:30 in Los Angeles: wait until 08:00 in Los Angeles.
        let zones = [
            chrono_tz::America::New_York,
            chrono_tz::America::Los_Angeles,
        ];
        let until = qh().check(&zones, utc("2026-11-23T12:30:00Z"));
        assert_eq!(until, Some(utc("2026-11-23T16:00:00Z")));
    }

    #[test]
    fn window_spanning_midnight() {
        let night = QuietHours {
            start: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(6, 0, 0).unwrap(),
        };
        assert_eq!(
            night.check(&[chrono_tz::UTC], utc("2026-11-23T23:00:00Z")),
            None
        );
        assert_eq!(
            night.check(&[chrono_tz::UTC], utc("2026-11-23T12:00:00Z")),
            Some(utc("2026-11-23T22:00:00Z"))
        );
    }
}
