//! What the push and WeChat adapter tests share: a provider block from the shipped config
//! turned into the kind under test, pointed at a mock with a test CA.

use herald::config::{Config, ProviderConfig, ProviderKind, DEFAULT_TOML};
use herald::domain::Channel;
use herald_testkit::https::TestCa;

/// The first provider of the shipped config as a `kind` provider of `channel`, trusting `ca`.
pub fn provider(ca: &TestCa, kind: ProviderKind, channel: Channel) -> ProviderConfig {
    let mut c: Config = toml::from_str(DEFAULT_TOML).expect("default config");
    let mut p = c.providers.remove(0);
    p.name = kind_name(kind).into();
    p.kind = kind;
    p.channel = channel;
    p.idempotent = false;
    p.batch_size = 1;
    p.max_in_flight = 4;
    p.request_timeout_ms = 5_000;
    p.ca_file = Some(ca.ca_file());
    p
}

fn kind_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Fcm => "fcm",
        ProviderKind::Apns => "apns",
        _ => "wechat",
    }
}
