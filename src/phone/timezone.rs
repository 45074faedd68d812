//! Time zones by phone number: the candidate IANA zones a recipient may be in, so that quiet
//! hours and send windows can be checked against the recipient's clock rather than ours.
//!
//! The answers are libphonenumber's own (`PhoneNumberToTimeZonesMapper`), for every country:
//! its phone-prefix → zones map is embedded as `timezone/map_data.txt`, a copy of upstream
//! `resources/timezones/map_data.txt` (Apache-2.0, licence header kept) taken at commit
//! f7e3e88 (July 2026) by `scripts/update-timezone-map.sh`, which checks its shape. Each line
//! is a prefix of the full international number (country code + national number) and the
//! zones it may be in; the longest matching prefix wins. As in libphonenumber, only a
//! geographic number (a fixed line, or a mobile in a country whose mobiles are tied to a
//! place) is looked up by its own digits; any other number (most mobiles, toll-free) gets
//! the zones of its country calling code.
//!
//! The map is parsed once, on first use, into one sorted table of `(prefix length, prefix)`
//! keys; a lookup is one binary search per prefix length the map uses (at most nine), with no
//! allocation. It runs per recipient in the policy (for contacts without a time zone).

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono_tz::Tz;

use super::{LineType, PhoneInfo};

/// libphonenumber's prefix → zones map (see the module docs for its source).
const MAP_DATA: &str = include_str!("timezone/map_data.txt");

/// Calling codes whose mobile numbers carry a place (libphonenumber's
/// `GEO_MOBILE_COUNTRIES`): Mexico, Argentina, Brazil, Indonesia and China.
const GEO_MOBILE_CALLING_CODES: [u64; 5] = [52, 54, 55, 62, 86];

/// Longest E.164 number, in digits.
const MAX_DIGITS: usize = 15;

/// The candidate time zones of a number: empty when libphonenumber knows none (its
/// `Etc/Unknown`).
///
/// The slice is a set (in the map's order, by name; no zone is preferred). Callers checking a
/// send window should require it to hold in every candidate zone.
pub fn zones_for(info: &PhoneInfo) -> &'static [Tz] {
    let table = &*TABLE;
    if is_geographic(info) {
        return table.longest_prefix(info.e164);
    }
    match calling_code(info.e164) {
        Some(code) => table.longest_prefix(code),
        None => &[],
    }
}

/// Whether the number's digits say where it is (libphonenumber's
/// `isNumberTypeGeographical`).
fn is_geographic(info: &PhoneInfo) -> bool {
    match info.line_type {
        LineType::FixedLine | LineType::FixedLineOrMobile => true,
        LineType::Mobile => {
            calling_code(info.e164).is_some_and(|c| GEO_MOBILE_CALLING_CODES.contains(&c))
        }
        LineType::TollFree | LineType::Other => false,
    }
}

/// The country calling code at the start of `e164`. Calling codes are prefix-free, so the
/// shortest known one is the only one.
fn calling_code(e164: u64) -> Option<u64> {
    let digits = digit_count(e164);
    (1..=3.min(digits))
        .map(|len| e164 / POW10[digits - len])
        .find(|&code| CALLING_CODES.get(code as usize).copied().unwrap_or(false))
}

/// Every calling code the numbering-plan metadata knows, indexed by code.
static CALLING_CODES: LazyLock<[bool; 1000]> = LazyLock::new(|| {
    let mut known = [false; 1000];
    for code in rlibphonenumber::PHONE_NUMBER_UTIL.get_supported_calling_codes() {
        if let Some(slot) = usize::try_from(code).ok().and_then(|c| known.get_mut(c)) {
            *slot = true;
        }
    }
    known
});

static TABLE: LazyLock<Table> = LazyLock::new(|| Table::parse(MAP_DATA));

const POW10: [u64; 20] = {
    let mut p = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};

fn digit_count(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// The map, ready for longest-prefix lookups.
struct Table {
    /// `(prefix length << 56 | prefix, zone set)`, sorted by key.
    prefixes: Vec<(u64, u32)>,
    /// Prefix lengths present, longest first.
    lengths: Vec<usize>,
    /// Distinct zone sets, as the map spells them.
    sets: Vec<Vec<Tz>>,
    /// Zone names chrono-tz does not know (skipped; a test keeps this empty).
    unknown: Vec<&'static str>,
    /// Lines that are neither comments nor `prefix|zones` (skipped; a test keeps this empty).
    malformed: Vec<&'static str>,
}

fn key(len: usize, prefix: u64) -> u64 {
    (len as u64) << 56 | prefix
}

impl Table {
    fn parse(text: &'static str) -> Table {
        let mut table = Table {
            prefixes: Vec::new(),
            lengths: Vec::new(),
            sets: Vec::new(),
            unknown: Vec::new(),
            malformed: Vec::new(),
        };
        let mut set_ids: HashMap<&str, u32> = HashMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed = line.split_once('|').and_then(|(prefix, zones)| {
                if prefix.is_empty()
                    || prefix.len() > MAX_DIGITS
                    || !prefix.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                Some((prefix.len(), prefix.parse::<u64>().ok()?, zones))
            });
            let Some((len, prefix, zones)) = parsed else {
                table.malformed.push(line);
                continue;
            };
            let id = *set_ids.entry(zones).or_insert_with(|| {
                let mut set = Vec::new();
                for name in zones.split('&') {
                    match name.parse::<Tz>() {
                        Ok(tz) => set.push(tz),
                        Err(_) => table.unknown.push(name),
                    }
                }
                table.sets.push(set);
                (table.sets.len() - 1) as u32
            });
            table.prefixes.push((key(len, prefix), id));
            if !table.lengths.contains(&len) {
                table.lengths.push(len);
            }
        }
        table.prefixes.sort_unstable();
        // A repeated prefix keeps its first line.
        table.prefixes.dedup_by_key(|(k, _)| *k);
        table.lengths.sort_unstable_by(|a, b| b.cmp(a));
        table
    }

    /// The zones of the longest prefix of `digits` in the map; empty when none matches.
    fn longest_prefix(&self, digits: u64) -> &[Tz] {
        let n = digit_count(digits);
        self.lengths
            .iter()
            .filter(|&&len| len <= n)
            .find_map(|&len| {
                let k = key(len, digits / POW10[n - len]);
                self.prefixes
                    .binary_search_by_key(&k, |(k, _)| *k)
                    .ok()
                    .map(|i| self.prefixes[i].1)
            })
            .and_then(|id| self.sets.get(id as usize))
            .map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::{parse, RegionCode};

    fn zones(input: &str) -> &'static [Tz] {
        let info = parse(input, RegionCode(*b"ZZ")).unwrap_or_else(|e| panic!("{input}: {e}"));
        zones_for(&info)
    }

    #[test]
    fn every_zone_name_in_the_map_is_known_to_chrono_tz() {
        assert!(TABLE.malformed.is_empty(), "{:?}", TABLE.malformed);
        assert!(
            TABLE.unknown.is_empty(),
            "unknown zones: {:?}",
            TABLE.unknown
        );
        assert!(TABLE.prefixes.len() > 3_000, "{}", TABLE.prefixes.len());
        assert!(TABLE.sets.iter().all(|s| !s.is_empty()));
    }

    #[test]
    fn china_is_beijing_time_everywhere() {
        assert_eq!(zones("+86 131 2307 9337"), [Tz::Asia__Shanghai]);
        assert_eq!(zones("+86 10 1252 0004"), [Tz::Asia__Shanghai]);
        // libphonenumber gives Xinjiang landlines official (Beijing) time too.
        assert_eq!(zones("+86 991 456 7890"), [Tz::Asia__Shanghai]);
    }

    #[test]
    fn nanp_area_codes_pick_the_zone_and_toll_free_gets_them_all() {
        assert_eq!(zones("+1 212 736 5000"), [Tz::America__New_York]);
        assert_eq!(zones("+1 415 555 0132"), [Tz::America__Los_Angeles]);
        assert_eq!(zones("+1 312 555 0100"), [Tz::America__Chicago]);
        assert_eq!(zones("+1 416 555 0100"), [Tz::America__Toronto]);
        assert_eq!(zones("+1 604 555 0100"), [Tz::America__Vancouver]);
        let anywhere = zones("+1 800 555 0100");
        assert!(anywhere.len() > 30, "{anywhere:?}");
        assert!(anywhere.contains(&Tz::Pacific__Honolulu));
    }

    #[test]
    fn mobiles_without_a_place_get_their_countrys_zones() {
        let ru = zones("+7 912 345 67 89");
        assert!(ru.contains(&Tz::Europe__Moscow), "{ru:?}");
        assert!(ru.contains(&Tz::Asia__Vladivostok), "{ru:?}");
        assert_eq!(zones("+7 495 123 45 67"), [Tz::Europe__Moscow]);
        let au = zones("+61 412 345 678");
        assert!(au.contains(&Tz::Australia__Perth) && au.contains(&Tz::Australia__Sydney));
        assert_eq!(zones("+61 2 9876 5432"), [Tz::Australia__Sydney]);
    }

    #[test]
    fn countries_beyond_the_big_ones_have_zones_too() {
        assert_eq!(
            zones("+44 7400 123456"),
            [
                Tz::Europe__Guernsey,
                Tz::Europe__Isle_of_Man,
                Tz::Europe__Jersey,
                Tz::Europe__London
            ]
        );
        assert_eq!(zones("+49 30 1234567"), [Tz::Europe__Berlin]);
        assert_eq!(zones("+254 712 345678"), [Tz::Africa__Nairobi]);
        assert_eq!(zones("+63 917 123 4567"), [Tz::Asia__Manila]);
    }

    #[test]
    fn every_calling_code_of_a_region_has_zones() {
        let util = &rlibphonenumber::PHONE_NUMBER_UTIL;
        let non_geographic: Vec<i32> = util.get_supported_global_network_calling_codes().collect();
        let missing: Vec<u64> = util
            .get_supported_calling_codes()
            .filter(|c| !non_geographic.contains(c))
            .filter_map(|c| u64::try_from(c).ok())
            .filter(|&c| TABLE.longest_prefix(c).is_empty())
            .collect();
        assert!(
            missing.is_empty(),
            "calling codes without zones: {missing:?}"
        );
    }

    #[test]
    fn calling_codes_and_digit_counts() {
        assert_eq!(calling_code(8613123079337), Some(86));
        assert_eq!(calling_code(12127365000), Some(1));
        assert_eq!(calling_code(2547123456789), Some(254));
        assert_eq!(calling_code(79123456789), Some(7));
        assert_eq!(digit_count(0), 1);
        assert_eq!(digit_count(9), 1);
        assert_eq!(digit_count(10), 2);
        assert_eq!(digit_count(u64::MAX), 20);
    }

    #[test]
    fn longest_prefix_wins_and_unknown_prefixes_have_no_zones() {
        let t = Table::parse(
            "# c\n\n1|America/New_York&America/Chicago\n12|America/Denver\n123|Europe/Paris\n",
        );
        assert_eq!(t.longest_prefix(1234), [Tz::Europe__Paris]);
        assert_eq!(t.longest_prefix(1299), [Tz::America__Denver]);
        assert_eq!(
            t.longest_prefix(19),
            [Tz::America__New_York, Tz::America__Chicago]
        );
        assert_eq!(
            t.longest_prefix(1),
            [Tz::America__New_York, Tz::America__Chicago]
        );
        assert!(t.longest_prefix(999).is_empty());
        assert_eq!(t.sets.len(), 3);
        let bad = Table::parse("1x|Europe/Paris\n2|Mars/Olympus\nnope\n");
        assert_eq!(bad.malformed, ["1x|Europe/Paris", "nope"]);
        assert_eq!(bad.unknown, ["Mars/Olympus"]);
    }
}

#[cfg(test)]
mod vectors_test;
