//! `[[routes]]`, `[health]` and `[[channel_limits]]`: which providers a message may go to,
//! when a provider is taken out of its routes, and how fast a whole channel may send.
//!
//! Without any `[[routes]]`, each channel is routed to all of its providers in config order,
//! the first preferred and the others taking over while it is unhealthy.

use serde::Deserialize;

use super::model::Config;
use crate::domain::Channel;
use crate::phone::RegionCode;

/// How a route orders its providers for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteStrategy {
    /// The first healthy provider in the listed order.
    #[default]
    Priority,
    /// Spread by `weights`, per recipient (the same recipient always draws the same way);
    /// the others of the list follow in order when the drawn one is unhealthy.
    Weighted,
    /// The cheapest healthy provider for the destination country, from `[[prices]]`.
    LeastCost,
}

/// One line of the route table: the providers of a channel for some destination countries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub channel: Channel,
    /// Region codes (`CN`, `US`), or `*` for every country no other route of the channel
    /// names.
    #[serde(default = "every_country")]
    pub countries: Vec<String>,
    /// Provider names, all of this channel and currency.
    pub providers: Vec<String>,
    #[serde(default)]
    pub strategy: RouteStrategy,
    /// `strategy = "weighted"`: one weight per provider, in the same order.
    #[serde(default)]
    pub weights: Vec<u32>,
}

fn every_country() -> Vec<String> {
    vec!["*".into()]
}

/// `[health]`: when a provider's circuit opens (no traffic is routed to it), how long it
/// stays open and how it is tried again. Counted per provider over a sliding window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Length of the sliding window of calls the error share and latency are taken over.
    pub window_ms: u64,
    /// Calls needed in the window before it may open the circuit (one failure of two is
    /// not a trend).
    pub min_calls: u32,
    /// Share of failed calls (refusals, 5xx, timeouts; not throttling) that opens it.
    pub max_error_share: f64,
    /// Mean call latency over the window that opens it; 0 turns the latency rule off.
    pub max_mean_latency_ms: u64,
    /// How long an open circuit keeps traffic away before probes are let through.
    pub open_ms: u64,
    /// Calls let through while half-open; all succeeding closes the circuit, one failing
    /// opens it again.
    pub probe_calls: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            window_ms: 10_000,
            min_calls: 10,
            max_error_share: 0.5,
            max_mean_latency_ms: 0,
            open_ms: 5_000,
            probe_calls: 3,
        }
    }
}

/// A limit on a whole channel, over all its providers, in message parts per second.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelLimitConfig {
    pub channel: Channel,
    pub parts_per_second: u32,
    #[serde(default = "one")]
    pub burst_parts: u32,
}

fn one() -> u32 {
    1
}

/// The checks of routes, health and channel limits.
pub(super) fn validate(c: &Config, errs: &mut Vec<String>) {
    for (i, r) in c.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        if r.providers.is_empty() {
            errs.push(format!("{at}.providers: at least one provider is required"));
        }
        let mut currency = None;
        for (j, name) in r.providers.iter().enumerate() {
            match c.providers.iter().find(|p| &p.name == name) {
                None => errs.push(format!("{at}.providers[{j}]: no provider named {name:?}")),
                Some(p) if p.channel != r.channel => errs.push(format!(
                    "{at}.providers[{j}]: {name:?} sends {}, not {}",
                    p.channel.as_str(),
                    r.channel.as_str()
                )),
                Some(p) => match currency {
                    None => currency = Some(p.currency),
                    Some(cur) if cur != p.currency => errs.push(format!(
                        "{at}.providers[{j}]: {name:?} bills in {}, the route's first provider in {}; a route has one currency",
                        p.currency, cur
                    )),
                    Some(_) => {}
                },
            }
            if r.providers[..j].contains(name) {
                errs.push(format!("{at}.providers[{j}]: {name:?} is listed twice"));
            }
        }
        if r.countries.is_empty() {
            errs.push(format!("{at}.countries: list region codes or \"*\""));
        }
        for (j, country) in r.countries.iter().enumerate() {
            if country != "*" && RegionCode::parse(country).is_none() {
                errs.push(format!(
                    "{at}.countries[{j}]: {country:?} is not a region code or \"*\""
                ));
            }
            let taken = c.routes[..i]
                .iter()
                .any(|o| o.channel == r.channel && o.countries.contains(country));
            if taken {
                errs.push(format!(
                    "{at}.countries[{j}]: {country:?} already has a route for {}",
                    r.channel.as_str()
                ));
            }
        }
        match r.strategy {
            RouteStrategy::Weighted => {
                if r.weights.len() != r.providers.len() {
                    errs.push(format!(
                        "{at}.weights: one weight per provider ({} expected)",
                        r.providers.len()
                    ));
                } else if r.weights.iter().all(|&w| w == 0) {
                    errs.push(format!("{at}.weights: at least one must be above 0"));
                }
            }
            _ if !r.weights.is_empty() => {
                errs.push(format!("{at}.weights: only for strategy = \"weighted\""))
            }
            _ => {}
        }
    }
    let h = &c.health;
    if h.window_ms == 0 || h.open_ms == 0 {
        errs.push("health.window_ms, health.open_ms: must be > 0".into());
    }
    if !(h.max_error_share > 0.0 && h.max_error_share <= 1.0) {
        errs.push("health.max_error_share: must be above 0 and at most 1".into());
    }
    if h.min_calls == 0 || h.probe_calls == 0 {
        errs.push("health.min_calls, health.probe_calls: must be at least 1".into());
    }
    for (i, l) in c.channel_limits.iter().enumerate() {
        if l.parts_per_second == 0 {
            errs.push(format!(
                "channel_limits[{i}].parts_per_second: must be at least 1"
            ));
        }
        if l.burst_parts == 0 {
            errs.push(format!(
                "channel_limits[{i}].burst_parts: must be at least 1"
            ));
        }
        if c.channel_limits[..i].iter().any(|o| o.channel == l.channel) {
            errs.push(format!(
                "channel_limits[{i}].channel: {} has a limit already",
                l.channel.as_str()
            ));
        }
    }
}
