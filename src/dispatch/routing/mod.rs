//! Which provider a message goes to: the route table (`[[routes]]`) picks the providers of a
//! channel and destination country and orders them (priority, weight, least cost), and each
//! provider's [`health::Circuit`] takes it out of its routes while it fails.
//!
//! A push message goes only to a provider of its device token's platform (an FCM provider
//! for an FCM token, an APNs provider for an APNs token), and a WeChat message for a named
//! official account only to that account's provider: [`Router::choose_for`].
//!
//! A message moves to another provider only when the one it was sent to certainly did not
//! take it (`SendOutcome::Unavailable`), under the same message id; a message that may have
//! been accepted is retried where it was sent, or held in doubt, never sent elsewhere.

pub mod health;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use self::health::{Circuit, CircuitState, HealthView};
use super::pricing::{PriceTable, ProviderPrices};
use crate::config::{Config, ProviderKind, RouteStrategy};
use crate::domain::{Address, Channel, PushPlatform};
use crate::phone::RegionCode;

/// One line of the route table, resolved to provider slots.
#[derive(Debug)]
struct Route {
    slots: Vec<usize>,
    strategy: RouteStrategy,
    weights: Vec<u64>,
    total_weight: u64,
    /// The prices of `slots`, in the same order (least cost).
    prices: Vec<ProviderPrices>,
}

impl Route {
    /// The route's providers in the order they are tried for a recipient who draws `draw`.
    fn order(&self, region: RegionCode, draw: u64, out: &mut Vec<usize>) {
        out.clear();
        out.extend_from_slice(&self.slots);
        match self.strategy {
            RouteStrategy::Priority => {}
            RouteStrategy::Weighted => {
                if self.total_weight > 0 {
                    let mut at = draw % self.total_weight;
                    let mut first = 0;
                    for (i, &w) in self.weights.iter().enumerate() {
                        if at < w {
                            first = i;
                            break;
                        }
                        at -= w;
                    }
                    out[..=first].rotate_right(1);
                }
            }
            RouteStrategy::LeastCost => {
                // Stable: equal prices keep the listed order.
                let mut by_price: Vec<(i64, usize)> = self
                    .slots
                    .iter()
                    .zip(&self.prices)
                    .map(|(&s, p)| (p.unit_price(region).0, s))
                    .collect();
                by_price.sort_by_key(|&(price, _)| price);
                out.clear();
                out.extend(by_price.into_iter().map(|(_, s)| s));
            }
        }
    }
}

/// The route table and the providers' health.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
    by_country: HashMap<(Channel, RegionCode), usize>,
    /// The route of every country no line names, per channel.
    fallback: HashMap<Channel, usize>,
    /// By provider slot.
    circuits: Vec<Circuit>,
    names: Vec<String>,
    /// By provider slot: which addresses it can reach.
    serves: Vec<Serves>,
}

/// The addresses a provider can reach, beyond its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Serves {
    Any,
    /// Device tokens of one push platform.
    Push(PushPlatform),
    /// Followers of one WeChat official account (`None`: the provider names none).
    Wechat(Option<String>),
}

impl Serves {
    fn of(p: &crate::config::ProviderConfig) -> Serves {
        match p.kind {
            ProviderKind::Fcm => Serves::Push(PushPlatform::Fcm),
            ProviderKind::Apns => Serves::Push(PushPlatform::Apns),
            ProviderKind::Wechat => {
                Serves::Wechat(p.wechat.as_ref().and_then(|w| w.account.clone()))
            }
            _ => Serves::Any,
        }
    }

    /// Whether a message to `to` may go here. A WeChat message for the default account may
    /// go to any WeChat provider; one for a named account only to that account's.
    fn reaches(&self, to: &Address) -> bool {
        match (self, to) {
            (Serves::Push(served), Address::Push { platform, .. }) => served == platform,
            (
                Serves::Wechat(served),
                Address::Wechat {
                    account: Some(wanted),
                    ..
                },
            ) => served.as_deref() == Some(&**wanted),
            _ => true,
        }
    }
}

impl Router {
    /// Builds the table for `providers` (name and channel, in slot order) from a validated
    /// config. A channel without a `*` line sends the countries its lines do not name to
    /// all its providers in config order.
    pub fn new(config: &Config, providers: &[(String, Channel)]) -> Router {
        let prices = PriceTable::from_config(&config.prices);
        let slot_of = |name: &str| providers.iter().position(|(n, _)| n == name);
        let mut routes = Vec::new();
        let mut by_country = HashMap::new();
        let mut fallback = HashMap::new();
        for r in &config.routes {
            let slots: Vec<usize> = r.providers.iter().filter_map(|n| slot_of(n)).collect();
            if slots.is_empty() {
                continue;
            }
            let weights: Vec<u64> = r.weights.iter().map(|&w| u64::from(w)).collect();
            routes.push(Route {
                prices: r
                    .providers
                    .iter()
                    .map(|n| prices.for_provider(n, r.channel))
                    .collect(),
                total_weight: weights.iter().sum(),
                weights,
                strategy: r.strategy,
                slots,
            });
            let at = routes.len() - 1;
            for c in &r.countries {
                match RegionCode::parse(c) {
                    Some(region) => {
                        by_country.entry((r.channel, region)).or_insert(at);
                    }
                    None => {
                        fallback.entry(r.channel).or_insert(at);
                    }
                }
            }
        }
        for channel in Channel::ALL {
            if fallback.contains_key(&channel) {
                continue;
            }
            let slots: Vec<usize> = providers
                .iter()
                .enumerate()
                .filter(|(_, (_, c))| *c == channel)
                .map(|(i, _)| i)
                .collect();
            if slots.is_empty() {
                continue;
            }
            routes.push(Route {
                prices: slots
                    .iter()
                    .map(|&s| prices.for_provider(&providers[s].0, channel))
                    .collect(),
                slots,
                strategy: RouteStrategy::Priority,
                weights: Vec::new(),
                total_weight: 0,
            });
            fallback.insert(channel, routes.len() - 1);
        }
        Router {
            routes,
            by_country,
            fallback,
            circuits: providers
                .iter()
                .map(|_| Circuit::new(config.health.clone()))
                .collect(),
            names: providers.iter().map(|(n, _)| n.clone()).collect(),
            serves: providers
                .iter()
                .map(|(name, _)| {
                    config
                        .providers
                        .iter()
                        .find(|p| &p.name == name)
                        .map_or(Serves::Any, Serves::of)
                })
                .collect(),
        }
    }

    /// Whether a provider of the WeChat channel's routes sends for official account
    /// `account`.
    pub fn has_wechat_account(&self, account: &str) -> bool {
        self.slots_for(Channel::Wechat)
            .into_iter()
            .any(|s| self.serves[s] == Serves::Wechat(Some(account.to_string())))
    }

    /// The push platforms the routes of the push channel reach, or `None` when one of its
    /// providers takes any token (a generic HTTP provider, the sandbox).
    pub fn push_platforms(&self) -> Option<Vec<PushPlatform>> {
        let mut platforms = Vec::new();
        for slot in self.slots_for(Channel::Push) {
            match self.serves[slot] {
                Serves::Push(p) if !platforms.contains(&p) => platforms.push(p),
                Serves::Push(_) => {}
                _ => return None,
            }
        }
        Some(platforms)
    }

    fn route(&self, channel: Channel, region: RegionCode) -> Option<&Route> {
        self.by_country
            .get(&(channel, region))
            .or_else(|| self.fallback.get(&channel))
            .map(|&i| &self.routes[i])
    }

    /// Every provider slot a message of `channel` may go to, in slot order (a job keeps
    /// their prices).
    pub fn slots_for(&self, channel: Channel) -> Vec<usize> {
        let mut slots: Vec<usize> = self
            .by_country
            .iter()
            .filter(|((c, _), _)| *c == channel)
            .map(|(_, &r)| r)
            .chain(self.fallback.get(&channel).copied())
            .flat_map(|r| self.routes[r].slots.iter().copied())
            .collect();
        slots.sort_unstable();
        slots.dedup();
        slots
    }

    /// The provider a message of `channel` to a country without a route line of its own
    /// goes to first: what a job of that channel shows as its provider.
    pub fn primary(&self, channel: Channel) -> Option<usize> {
        self.fallback
            .get(&channel)
            .and_then(|&r| self.routes[r].slots.first().copied())
    }

    /// The provider for one message: the first of its route's order whose circuit lets
    /// traffic through, preferring any other than `avoid` (the provider that just refused
    /// it). With every circuit open it goes to the first anyway, to be retried with backoff.
    pub fn choose(
        &self,
        channel: Channel,
        region: RegionCode,
        draw: u64,
        avoid: Option<usize>,
        order: &mut Vec<usize>,
    ) -> Option<usize> {
        self.choose_for(channel, region, None, draw, avoid, order)
    }

    /// [`Router::choose`] among the providers that reach `to` (a push token's platform, a
    /// WeChat account's followers; any provider of the route when `to` is `None`); `None`
    /// when none of the route does.
    pub fn choose_for(
        &self,
        channel: Channel,
        region: RegionCode,
        to: Option<&Address>,
        draw: u64,
        avoid: Option<usize>,
        order: &mut Vec<usize>,
    ) -> Option<usize> {
        let route = self.route(channel, region)?;
        let serves = |s: usize| to.is_none_or(|to| self.serves[s].reaches(to));
        // The common case: one provider, or the first healthy and not to be avoided.
        if let (RouteStrategy::Priority, Some(&first)) = (route.strategy, route.slots.first()) {
            if Some(first) != avoid && self.circuits[first].is_closed() && serves(first) {
                return Some(first);
            }
        }
        route.order(region, draw, order);
        order.retain(|s| serves(*s));
        let now = Instant::now();
        let healthy = |s: &usize| self.circuits[*s].admits(now);
        order
            .iter()
            .copied()
            .find(|s| Some(*s) != avoid && healthy(s))
            .or_else(|| order.iter().copied().find(healthy))
            .or_else(|| order.first().copied())
    }

    /// Records a provider call: `calls` messages answered, `failures` of them failed so that
    /// they may move on, in `latency`.
    pub fn record(&self, slot: usize, calls: u64, failures: u64, latency: Duration) {
        if let Some(c) = self.circuits.get(slot) {
            let before = c.state(Instant::now());
            let after = c.record(Instant::now(), calls, failures, latency);
            if before != after {
                let name = self.names.get(slot).map_or("", String::as_str);
                match after {
                    CircuitState::Open => {
                        tracing::warn!(provider = name, "provider circuit opened; its traffic moves to the next provider of its routes")
                    }
                    CircuitState::Closed => {
                        tracing::info!(
                            provider = name,
                            "provider circuit closed; traffic comes back"
                        )
                    }
                    CircuitState::HalfOpen => {}
                }
            }
        }
    }

    /// A provider's health, for `/metrics`.
    pub fn health(&self, slot: usize) -> Option<HealthView> {
        self.circuits.get(slot).map(|c| c.view(Instant::now()))
    }
}

#[cfg(test)]
mod tests;
