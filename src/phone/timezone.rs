//! Time zones by phone number: the candidate IANA zones a recipient may be in, so that quiet
//! hours and send windows can be checked against the recipient's clock rather than ours.
//!
//! The country-to-zones table is tzdata's `zone.tab` (public domain), embedded so the answer does
//! not depend on the host's tzdata. For countries that span zones, geographic area codes narrow
//! the answer ([`nanp`] for the US and Canada, [`area_codes`] elsewhere); a number that carries
//! no place (most mobiles, toll-free) gets every zone of its country.
//!
//! Everything is built once on first use; a lookup is a couple of hash probes and no allocation.

mod area_codes;
mod nanp;

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono_tz::Tz;

use super::{LineType, PhoneInfo, RegionCode};

/// tzdata's country-to-zone table, one zone per line.
const ZONE_TAB: &str = include_str!("timezone/zone.tab");

/// Regions whose zones replace or add to what `zone.tab` says.
const OVERRIDES: &[([u8; 2], &[Tz])] = &[
    // China's official time is Beijing time nationwide; Xinjiang's local time is only added for
    // Xinjiang landlines (see `area_codes::CN`).
    (*b"CN", &[Tz::Asia__Shanghai]),
    // Regions libphonenumber knows that `zone.tab` folds into others.
    (*b"AC", &[Tz::Atlantic__St_Helena]),
    (*b"TA", &[Tz::Atlantic__St_Helena]),
    (*b"XK", &[Tz::Europe__Belgrade]),
];

/// Area-code tables of the countries that span zones.
const NARROWINGS: &[Narrowing] = &[
    nanp::US,
    nanp::CA,
    area_codes::RU,
    area_codes::AU,
    area_codes::BR,
    area_codes::MX,
    area_codes::ID,
    area_codes::ES,
    area_codes::PT,
    area_codes::NZ,
    area_codes::MY,
    area_codes::CN,
];

/// The candidate time zones of a number: never empty for a region libphonenumber assigns,
/// empty for an unknown region.
///
/// The slice is a set (in tzdata's order, roughly east to west; no zone is preferred). When a
/// country spans zones and the number's area code is known, only that area's zones are given;
/// otherwise all of the country's. Callers checking a send window should require it to hold in
/// every candidate zone.
pub fn zones_for(info: &PhoneInfo) -> &'static [Tz] {
    let Some(country) = COUNTRIES.get(&info.region) else {
        return &[];
    };
    country
        .prefixes
        .as_ref()
        .and_then(|p| p.narrow(info))
        .unwrap_or(&country.zones)
}

/// One country's area codes, as written in the tables.
struct Narrowing {
    region: [u8; 2],
    /// The country calling code, stripped from the E.164 digits before matching.
    calling_code: &'static str,
    /// Whether mobile numbers carry the area code (BR, MX, NANP) or are national (most).
    mobiles_geographic: bool,
    /// Prefixes of the national significant number and the zones they cover.
    prefixes: &'static [(&'static [&'static str], &'static [Tz])],
}

struct Country {
    zones: Vec<Tz>,
    prefixes: Option<Prefixes>,
}

/// A [`Narrowing`] indexed for longest-prefix lookup.
struct Prefixes {
    calling_code: &'static str,
    mobiles_geographic: bool,
    zones: HashMap<&'static str, &'static [Tz]>,
    longest: usize,
}

impl Prefixes {
    fn new(n: &Narrowing) -> Prefixes {
        let mut zones = HashMap::new();
        for &(prefixes, tz) in n.prefixes {
            for &p in prefixes {
                zones.insert(p, tz);
            }
        }
        Prefixes {
            calling_code: n.calling_code,
            mobiles_geographic: n.mobiles_geographic,
            longest: zones.keys().map(|p| p.len()).max().unwrap_or(0),
            zones,
        }
    }

    /// The zones of the longest matching area code, if the number is geographic.
    fn narrow(&self, info: &PhoneInfo) -> Option<&'static [Tz]> {
        let geographic = match info.line_type {
            LineType::FixedLine | LineType::FixedLineOrMobile => true,
            LineType::Mobile => self.mobiles_geographic,
            LineType::TollFree | LineType::Other => false,
        };
        if !geographic {
            return None;
        }
        let mut buf = [0u8; 20];
        let digits = decimal(info.e164, &mut buf);
        let national = digits.strip_prefix(self.calling_code.as_bytes())?;
        let national = std::str::from_utf8(national).ok()?;
        (1..=self.longest.min(national.len()))
            .rev()
            .find_map(|len| self.zones.get(&national[..len]).copied())
    }
}

static COUNTRIES: LazyLock<HashMap<RegionCode, Country>> = LazyLock::new(|| {
    let mut zones = parse_zone_tab(ZONE_TAB).0;
    for &(region, tz) in OVERRIDES {
        zones.insert(RegionCode(region), tz.to_vec());
    }
    let mut countries: HashMap<RegionCode, Country> = zones
        .into_iter()
        .map(|(region, zones)| {
            let country = Country {
                zones,
                prefixes: None,
            };
            (region, country)
        })
        .collect();
    for n in NARROWINGS {
        if let Some(country) = countries.get_mut(&RegionCode(n.region)) {
            country.prefixes = Some(Prefixes::new(n));
        }
    }
    countries
});

/// Zones per country from `zone.tab` text, plus any zone names chrono-tz does not know (which
/// are skipped; a test keeps that list empty).
fn parse_zone_tab(text: &str) -> (HashMap<RegionCode, Vec<Tz>>, Vec<&str>) {
    let mut zones: HashMap<RegionCode, Vec<Tz>> = HashMap::new();
    let mut unknown = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut fields = line.split('\t');
        let (Some(code), Some(_coordinates), Some(name)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        match (RegionCode::parse(code), name.parse::<Tz>()) {
            (Some(region), Ok(tz)) => zones.entry(region).or_default().push(tz),
            _ => unknown.push(line),
        }
    }
    (zones, unknown)
}

/// Writes `n` in decimal into the end of `buf`, returning the digits.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::phone::parse;

    fn zones(input: &str) -> &'static [Tz] {
        let info = parse(input, RegionCode(*b"ZZ")).unwrap_or_else(|e| panic!("{input}: {e}"));
        zones_for(&info)
    }

    fn region(code: &str) -> PhoneInfo {
        PhoneInfo {
            e164: 0,
            region: RegionCode::parse(code).expect("region code"),
            line_type: LineType::Mobile,
        }
    }

    #[test]
    fn china_is_one_zone() {
        assert_eq!(zones("+86 131 2307 9337"), [Tz::Asia__Shanghai]);
        assert_eq!(zones("+86 10 1252 0004"), [Tz::Asia__Shanghai]);
        // Xinjiang landlines also get Xinjiang time.
        assert_eq!(
            zones("+86 991 456 7890"),
            [Tz::Asia__Shanghai, Tz::Asia__Urumqi]
        );
    }

    #[test]
    fn nanp_area_codes_pick_the_zone() {
        assert_eq!(zones("+1 212 736 5000"), [Tz::America__New_York]);
        assert_eq!(zones("+1 415 555 0132"), [Tz::America__Los_Angeles]);
        assert_eq!(zones("+1 312 555 0100"), [Tz::America__Chicago]);
        assert_eq!(zones("+1 416 555 0100"), [Tz::America__Toronto]);
        assert_eq!(zones("+1 604 555 0100"), [Tz::America__Vancouver]);
        // A toll-free number could be anywhere in the country.
        assert_eq!(zones("+1 800 555 0100").len(), 29);
    }

    #[test]
    fn russian_mobiles_get_every_russian_zone() {
        let z = zones("+7 912 345 67 89");
        assert!(z.contains(&Tz::Europe__Moscow), "{z:?}");
        assert!(z.contains(&Tz::Asia__Vladivostok), "{z:?}");
        assert!(z.len() > 10, "{z:?}");
        // Landlines narrow by area code.
        assert_eq!(zones("+7 495 123 45 67"), [Tz::Europe__Moscow]);
        assert_eq!(zones("+7 423 222 33 44"), [Tz::Asia__Vladivostok]);
    }

    #[test]
    fn other_countries_narrow_landlines_only() {
        assert_eq!(zones("+61 2 9876 5432"), [Tz::Australia__Sydney]);
        assert_eq!(
            zones("+61 8 9123 4567"),
            [Tz::Australia__Perth, Tz::Australia__Eucla]
        );
        assert!(zones("+61 412 345 678").len() > 5);
        assert_eq!(zones("+55 11 96123 4567"), [Tz::America__Sao_Paulo]);
        assert_eq!(zones("+62 21 8357 758"), [Tz::Asia__Jakarta]);
        assert_eq!(zones("+34 928 123 456"), [Tz::Atlantic__Canary]);
        assert_eq!(zones("+34 612 345 678").len(), 3);
    }

    #[test]
    fn unknown_regions_have_no_zones() {
        assert!(zones_for(&region("ZZ")).is_empty());
        assert!(zones_for(&region("QQ")).is_empty());
    }

    #[test]
    fn every_libphonenumber_region_has_a_zone() {
        let missing: Vec<String> = rlibphonenumber::PHONE_NUMBER_UTIL
            .get_supported_regions()
            .map(|r| r.as_region_str().to_string())
            .filter(|r| zones_for(&region(r)).is_empty())
            .collect();
        assert!(missing.is_empty(), "regions without zones: {missing:?}");
    }

    #[test]
    fn zone_tab_names_are_all_known() {
        let (zones, unknown) = parse_zone_tab(ZONE_TAB);
        assert!(unknown.is_empty(), "unknown zone.tab lines: {unknown:?}");
        assert!(zones.len() > 240, "{} countries", zones.len());
    }

    #[test]
    fn area_code_zones_belong_to_their_country() {
        let tab = parse_zone_tab(ZONE_TAB).0;
        for n in NARROWINGS {
            let region = RegionCode(n.region);
            let country = tab.get(&region).expect("narrowed country is in zone.tab");
            let mut seen = HashSet::new();
            for &(prefixes, tz) in n.prefixes {
                assert!(!tz.is_empty(), "{region}: {prefixes:?} has no zones");
                for z in tz {
                    assert!(country.contains(z), "{region}: {z} is not in zone.tab");
                }
                for &p in prefixes {
                    assert!(p.bytes().all(|b| b.is_ascii_digit()), "{region}: {p:?}");
                    assert!(seen.insert(p), "{region}: prefix {p} listed twice");
                }
            }
        }
    }

    /// Every NANP table code must be one libphonenumber assigns to that table's country.
    #[test]
    fn nanp_codes_are_in_the_right_country() {
        let mut unknown = Vec::new();
        for n in [nanp::US, nanp::CA] {
            for &(codes, _) in n.prefixes {
                for code in codes {
                    match parse(&format!("+1 {code} 234 5678"), RegionCode(*b"US")) {
                        Ok(info) => assert_eq!(info.region, RegionCode(n.region), "{code}"),
                        Err(_) => unknown.push(*code),
                    }
                }
            }
        }
        assert!(
            unknown.is_empty(),
            "codes libphonenumber rejects: {unknown:?}"
        );
    }

    #[test]
    fn decimal_writes_all_digits() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(8613123079337, &mut buf), b"8613123079337");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
    }
}
