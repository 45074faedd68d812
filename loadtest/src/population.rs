//! A synthetic population for a scenario: contacts in several countries with realistic
//! numbers (mobile ranges libphonenumber accepts, plus landlines, toll-free, invalid and
//! missing numbers), consent, time zones and attributes; and the job's audience with
//! duplicates and unknown contacts.
//!
//! Every number is checked with `herald::phone::parse`, the parser herald itself uses, so
//! the expected outcome of each recipient (sendable, or rejected and why) comes from the
//! numbering plan and not from what the generator meant. The expectations are compared
//! with herald's counts at the end of a run.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use herald::phone::{self, RegionCode};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::scenario::AudienceMix;

pub use crate::countries::SUPPORTED;
use crate::countries::{Pattern, COUNTRIES};

/// What the generator meant a number to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    Mobile,
    Landline,
    Invalid,
    Missing,
}

/// What a recipient should come to, by herald's reason names (`sent` for sendable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expect {
    Send,
    Reject(&'static str),
}

/// One synthetic contact.
struct Contact {
    country: u8,
    phone: String,
    consent: &'static str,
    name: u8,
    city: u8,
    tier: u8,
    /// Also listed a second time in the job.
    duplicated: bool,
    /// Followed in the job by a recipient the snapshot does not know.
    unknown_after: bool,
}

/// The expected outcome of a run, from the numbering plan and the generated consent.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// Lines in the job (contacts, duplicates and unknowns).
    pub audience: u64,
    pub eligible: u64,
    pub rejected: BTreeMap<&'static str, u64>,
    /// Sendable recipients per country.
    pub eligible_by_country: BTreeMap<&'static str, u64>,
    /// Numbers meant as one kind that the numbering plan classed as another.
    pub reclassified: u64,
}

/// The whole synthetic population.
pub struct Population {
    contacts: Vec<Contact>,
    pub expected: Expected,
}

/// A number from one of `patterns`, picked at random.
fn number(rng: &mut SmallRng, patterns: &[Pattern]) -> String {
    let p = patterns[rng.gen_range(0..patterns.len())];
    digits(rng, &p)
}

fn digits(rng: &mut SmallRng, p: &Pattern) -> String {
    let (prefix, first, rest) = *p;
    let mut s = String::with_capacity(prefix.len() + 1 + rest);
    s.push_str(prefix);
    let first = first.as_bytes();
    s.push(first[rng.gen_range(0..first.len())] as char);
    for _ in 0..rest {
        s.push((b'0' + rng.gen_range(0..10u8)) as char);
    }
    s
}

/// The expected outcome of a number and consent, as herald's policy checks them (phone
/// first, then consent; marketing needs an opt-in).
fn expect(phone: &str, consent: &str) -> Expect {
    if phone.is_empty() {
        return Expect::Reject("missing_phone");
    }
    match phone::parse(phone, RegionCode(*b"CN")) {
        Err(_) => Expect::Reject("invalid_phone"),
        Ok(info) if !info.line_type.is_sms_capable() => Expect::Reject("not_mobile"),
        Ok(_) => match consent {
            "opt_out" => Expect::Reject("opted_out"),
            "opt_in" => Expect::Send,
            _ => Expect::Reject("no_consent"),
        },
    }
}

impl Population {
    /// Generates `n` contacts with the scenario's mix; deterministic for a seed. Numbers are
    /// checked on every core.
    pub fn generate(n: usize, mix: &AudienceMix, seed: u64) -> Population {
        let mut rng = SmallRng::seed_from_u64(seed);
        let countries: Vec<(usize, f64)> = COUNTRIES
            .iter()
            .enumerate()
            .filter_map(|(i, c)| mix.countries.get(c.code).map(|w| (i, w.max(0.0))))
            .collect();
        let total: f64 = countries
            .iter()
            .map(|(_, w)| w)
            .sum::<f64>()
            .max(f64::MIN_POSITIVE);
        let mut intents = Vec::with_capacity(n);
        let mut contacts = Vec::with_capacity(n);
        for _ in 0..n {
            let mut roll = rng.gen::<f64>() * total;
            let mut ci = countries.first().map_or(0, |c| c.0);
            for &(i, w) in &countries {
                ci = i;
                if roll < w {
                    break;
                }
                roll -= w;
            }
            let c = &COUNTRIES[ci];
            let r: f64 = rng.gen();
            let (intent, phone) = if r < mix.missing_phone_rate {
                (Intent::Missing, String::new())
            } else if r < mix.missing_phone_rate + mix.invalid_rate {
                (Intent::Invalid, number(&mut rng, c.invalid))
            } else if r < mix.missing_phone_rate + mix.invalid_rate + mix.landline_rate {
                (Intent::Landline, number(&mut rng, c.landline))
            } else {
                (Intent::Mobile, number(&mut rng, c.mobile))
            };
            let r: f64 = rng.gen();
            let consent = if r < mix.opt_out_rate {
                "opt_out"
            } else if r < mix.opt_out_rate + mix.no_consent_rate {
                ""
            } else {
                "opt_in"
            };
            intents.push(intent);
            contacts.push(Contact {
                country: ci as u8,
                phone,
                consent,
                name: rng.gen_range(0..c.names.len()) as u8,
                city: rng.gen_range(0..c.cities.len()) as u8,
                tier: rng.gen_range(0..3),
                duplicated: rng.gen::<f64>() < mix.duplicate_rate,
                unknown_after: rng.gen::<f64>() < mix.unknown_rate,
            });
        }
        let expects = check_all(&contacts);
        let mut expected = Expected::default();
        for ((c, intent), e) in contacts.iter().zip(&intents).zip(&expects) {
            expected.audience += 1 + c.duplicated as u64 + c.unknown_after as u64;
            *expected.rejected.entry("duplicate").or_default() += c.duplicated as u64;
            *expected.rejected.entry("unknown_contact").or_default() += c.unknown_after as u64;
            match e {
                Expect::Send => {
                    expected.eligible += 1;
                    *expected
                        .eligible_by_country
                        .entry(COUNTRIES[c.country as usize].code)
                        .or_default() += 1;
                }
                Expect::Reject(reason) => *expected.rejected.entry(reason).or_default() += 1,
            }
            let meant = match intent {
                Intent::Mobile => !matches!(
                    e,
                    Expect::Reject("invalid_phone" | "not_mobile" | "missing_phone")
                ),
                Intent::Landline => *e == Expect::Reject("not_mobile"),
                Intent::Invalid => *e == Expect::Reject("invalid_phone"),
                Intent::Missing => *e == Expect::Reject("missing_phone"),
            };
            expected.reclassified += (!meant) as u64;
        }
        expected.rejected.retain(|_, v| *v > 0);
        Population { contacts, expected }
    }

    /// Contacts in the snapshot.
    pub fn len(&self) -> usize {
        self.contacts.len()
    }

    /// The snapshot as CSV.
    pub fn snapshot_csv(&self) -> Vec<u8> {
        let mut s = Vec::with_capacity(self.contacts.len() * 80);
        s.extend_from_slice(b"contact_id,phone,timezone,sms_consent,first_name,city,tier\n");
        for (i, c) in self.contacts.iter().enumerate() {
            let country = &COUNTRIES[c.country as usize];
            let _ = writeln!(
                s,
                "c{i},{},{},{},{},{},t{}",
                c.phone,
                country.timezone,
                c.consent,
                country.names[c.name as usize],
                country.cities[c.city as usize],
                c.tier
            );
        }
        s
    }

    /// The job as NDJSON: the job line, then one recipient per line, in ~1 MiB chunks.
    /// `progress` is told how many recipient lines each chunk carries.
    pub fn ndjson_job(
        self: &Arc<Self>,
        head: &Value,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let head = format!("{head}\n");
        let pop = self.clone();
        futures::stream::unfold((0usize, Some(head)), move |(next, head)| {
            let pop = pop.clone();
            let chunk = if let Some(h) = head {
                Some((Ok(Bytes::from(h)), (next, None)))
            } else if next >= pop.contacts.len() {
                None
            } else {
                let mut buf = Vec::with_capacity(1 << 20);
                let mut i = next;
                let mut lines = 0;
                while i < pop.contacts.len() && buf.len() < (1 << 20) - 256 {
                    let c = &pop.contacts[i];
                    let _ = writeln!(buf, "{{\"contact_id\":\"c{i}\"}}");
                    lines += 1;
                    if c.duplicated {
                        let _ = writeln!(buf, "{{\"contact_id\":\"c{i}\"}}");
                        lines += 1;
                    }
                    if c.unknown_after {
                        let _ = writeln!(buf, "{{\"contact_id\":\"unknown-{i}\"}}");
                        lines += 1;
                    }
                    i += 1;
                }
                progress(lines);
                Some((Ok(Bytes::from(buf)), (i, None)))
            };
            async move { chunk }
        })
    }
}

/// The expected outcome of every contact, computed on all cores.
fn check_all(contacts: &[Contact]) -> Vec<Expect> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = contacts.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = contacts
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|c| expect(&c.phone, c.consent))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each country's patterns produce what they mean in the numbering plan.
    #[test]
    fn patterns_mean_what_they_say() {
        let mut rng = SmallRng::seed_from_u64(3);
        for c in &COUNTRIES {
            for (kind, patterns) in [
                ("mobile", c.mobile),
                ("landline", c.landline),
                ("invalid", c.invalid),
            ] {
                for p in patterns {
                    let mut bad = Vec::new();
                    for _ in 0..300 {
                        let number = digits(&mut rng, p);
                        let got = match phone::parse(&number, RegionCode(*b"CN")) {
                            Err(_) => "invalid",
                            Ok(i) if i.line_type.is_sms_capable() => "mobile",
                            Ok(_) => "landline",
                        };
                        if got != kind {
                            bad.push(format!("{number}={got}"));
                        }
                    }
                    assert!(
                        bad.len() <= 3,
                        "{} {kind} {p:?}: {} of 300 wrong, e.g. {:?}",
                        c.code,
                        bad.len(),
                        &bad[..bad.len().min(5)]
                    );
                }
            }
        }
    }

    #[test]
    fn expectations_add_up() {
        let pop = Population::generate(20_000, &AudienceMix::default(), 9);
        let e = &pop.expected;
        let rejected: u64 = e.rejected.values().sum();
        assert_eq!(e.eligible + rejected, e.audience);
        assert!(e.eligible > 17_000, "{e:?}");
        assert!(e.reclassified < 100, "{e:?}");
        assert_eq!(e.eligible_by_country.len(), 6);
    }
}
