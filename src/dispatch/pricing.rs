//! Unit prices per (provider, channel, destination country) from the configuration, with a
//! `*` fallback per provider and channel. Money stays in integer micros.

use std::collections::HashMap;

use crate::config::PriceConfig;
use crate::domain::{Channel, Micros};
use crate::phone::RegionCode;

/// The price table.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    exact: HashMap<(String, Channel, RegionCode), Micros>,
    fallback: HashMap<(String, Channel), Micros>,
}

impl PriceTable {
    /// Builds the table from validated config lines.
    pub fn from_config(prices: &[PriceConfig]) -> PriceTable {
        let mut t = PriceTable::default();
        for p in prices {
            let price = Micros(p.unit_micros);
            match RegionCode::parse(&p.country) {
                Some(region) => {
                    t.exact
                        .insert((p.provider.clone(), p.channel, region), price);
                }
                None => {
                    t.fallback.insert((p.provider.clone(), p.channel), price);
                }
            }
        }
        t
    }

    /// The unit price for one billable unit, if the table has one.
    pub fn unit_price(
        &self,
        provider: &str,
        channel: Channel,
        region: RegionCode,
    ) -> Option<Micros> {
        self.exact
            .get(&(provider.to_string(), channel, region))
            .or_else(|| self.fallback.get(&(provider.to_string(), channel)))
            .copied()
    }

    /// All prices of one provider and channel, by region, for a per-job lookup cache.
    pub fn for_provider(&self, provider: &str, channel: Channel) -> ProviderPrices {
        let mut exact: Vec<(RegionCode, Micros)> = self
            .exact
            .iter()
            .filter(|((p, c, _), _)| p == provider && *c == channel)
            .map(|((_, _, r), m)| (*r, *m))
            .collect();
        exact.sort_unstable_by_key(|(r, _)| r.0);
        ProviderPrices {
            exact,
            fallback: self.fallback.get(&(provider.to_string(), channel)).copied(),
        }
    }
}

/// One provider's prices, looked up twice per message (reservation, charge): a sorted list
/// searched by the region's two bytes, without hashing or allocation.
#[derive(Debug, Clone, Default)]
pub struct ProviderPrices {
    exact: Vec<(RegionCode, Micros)>,
    fallback: Option<Micros>,
}

impl ProviderPrices {
    /// Unit price for a destination region; zero when the table has no line for it.
    pub fn unit_price(&self, region: RegionCode) -> Micros {
        match self.exact.binary_search_by_key(&region.0, |(r, _)| r.0) {
            Ok(at) => self.exact[at].1,
            Err(_) => self.fallback.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_country_wins_over_fallback() {
        let t = PriceTable::from_config(&[
            PriceConfig {
                provider: "p".into(),
                channel: Channel::Sms,
                country: "CN".into(),
                unit_micros: 45_000,
            },
            PriceConfig {
                provider: "p".into(),
                channel: Channel::Sms,
                country: "*".into(),
                unit_micros: 300_000,
            },
        ]);
        let p = t.for_provider("p", Channel::Sms);
        assert_eq!(p.unit_price(RegionCode(*b"CN")), Micros(45_000));
        assert_eq!(p.unit_price(RegionCode(*b"US")), Micros(300_000));
        assert_eq!(
            t.for_provider("q", Channel::Sms)
                .unit_price(RegionCode(*b"CN")),
            Micros(0)
        );
        assert_eq!(t.unit_price("q", Channel::Sms, RegionCode(*b"CN")), None);
    }

    #[test]
    fn every_listed_country_is_found_among_many() {
        let countries = ["AU", "BR", "CN", "DE", "FR", "GB", "IN", "JP", "US", "ZA"];
        // Listed out of order, each at its own price.
        let lines: Vec<PriceConfig> = countries
            .iter()
            .rev()
            .enumerate()
            .map(|(i, c)| PriceConfig {
                provider: "p".into(),
                channel: Channel::Sms,
                country: (*c).into(),
                unit_micros: 1_000 + i as i64,
            })
            .collect();
        let t = PriceTable::from_config(&lines);
        let p = t.for_provider("p", Channel::Sms);
        for (i, c) in countries.iter().rev().enumerate() {
            let region = RegionCode::parse(c).expect("region");
            assert_eq!(p.unit_price(region), Micros(1_000 + i as i64), "{c}");
        }
        // No fallback line: an unlisted country costs nothing rather than someone else's price.
        assert_eq!(p.unit_price(RegionCode(*b"MX")), Micros(0));
    }
}
