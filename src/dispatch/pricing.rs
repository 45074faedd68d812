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
        ProviderPrices {
            exact: self
                .exact
                .iter()
                .filter(|((p, c, _), _)| p == provider && *c == channel)
                .map(|((_, _, r), m)| (*r, *m))
                .collect(),
            fallback: self.fallback.get(&(provider.to_string(), channel)).copied(),
        }
    }
}

/// One provider's prices, looked up without allocation on the hot path.
#[derive(Debug, Clone, Default)]
pub struct ProviderPrices {
    exact: HashMap<RegionCode, Micros>,
    fallback: Option<Micros>,
}

impl ProviderPrices {
    /// Unit price for a destination region; zero when the table has no line for it.
    pub fn unit_price(&self, region: RegionCode) -> Micros {
        self.exact
            .get(&region)
            .copied()
            .or(self.fallback)
            .unwrap_or_default()
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
        assert_eq!(t.unit_price("q", Channel::Sms, RegionCode(*b"CN")), None);
    }
}
