use super::*;
use crate::config::DEFAULT_TOML;

const CN: RegionCode = RegionCode(*b"CN");
const US: RegionCode = RegionCode(*b"US");

/// The default config with three SMS providers `a`, `b`, `c` (and the sandbox first),
/// plus `extra` TOML.
fn config(extra: &str) -> (Config, Vec<(String, Channel)>) {
    let mut text = DEFAULT_TOML.to_string();
    for name in ["a", "b", "c"] {
        text.push_str(&format!(
            "\n[[providers]]\nname = \"{name}\"\nkind = \"sandbox\"\nchannel = \"sms\"\ncurrency = \"CNY\"\n"
        ));
    }
    text.push_str(extra);
    let c: Config = toml::from_str(&text).expect("toml");
    if let Err(errs) = c.validate() {
        panic!("{errs:?}");
    }
    let providers = c
        .providers
        .iter()
        .map(|p| (p.name.clone(), p.channel))
        .collect();
    (c, providers)
}

fn slot(providers: &[(String, Channel)], name: &str) -> usize {
    providers
        .iter()
        .position(|(n, _)| n == name)
        .expect("provider")
}

fn choose(r: &Router, region: RegionCode, draw: u64, avoid: Option<usize>) -> Option<usize> {
    r.choose(Channel::Sms, region, draw, avoid, &mut Vec::new())
}

#[test]
fn without_routes_a_channel_goes_to_its_first_provider_and_fails_over_in_config_order() {
    let (c, p) = config("");
    let r = Router::new(&c, &p);
    let first = r.primary(Channel::Sms).expect("sms route");
    assert_eq!(first, 0, "the sandbox is configured first");
    assert_eq!(choose(&r, CN, 7, None), Some(first));
    assert_eq!(choose(&r, CN, 7, Some(first)), Some(slot(&p, "a")));
    assert_eq!(r.slots_for(Channel::Sms).len(), 4);
    assert_eq!(choose(&r, CN, 1, None).map(|_| ()), Some(()));
    assert!(r.primary(Channel::Email).is_none());
}

#[test]
fn countries_pick_their_own_route_and_others_take_the_star_line() {
    let (c, p) = config(
        r#"
[[routes]]
channel = "sms"
countries = ["US"]
providers = ["c"]

[[routes]]
channel = "sms"
providers = ["a", "b"]
"#,
    );
    let r = Router::new(&c, &p);
    assert_eq!(choose(&r, US, 0, None), Some(slot(&p, "c")));
    assert_eq!(choose(&r, CN, 0, None), Some(slot(&p, "a")));
    assert_eq!(r.primary(Channel::Sms), Some(slot(&p, "a")));
    let mut all = vec![slot(&p, "a"), slot(&p, "b"), slot(&p, "c")];
    all.sort_unstable();
    assert_eq!(r.slots_for(Channel::Sms), all);
}

#[test]
fn an_open_circuit_moves_traffic_to_the_next_provider_and_back_after_probes() {
    let (mut c, p) = config(
        r#"
[[routes]]
channel = "sms"
providers = ["a", "b"]
"#,
    );
    c.health.open_ms = 50;
    c.health.probe_calls = 1;
    let r = Router::new(&c, &p);
    let (a, b) = (slot(&p, "a"), slot(&p, "b"));
    r.record(a, 20, 20, Duration::from_millis(1));
    assert_eq!(r.health(a).map(|h| h.state), Some(CircuitState::Open));
    assert_eq!(choose(&r, CN, 0, None), Some(b));
    std::thread::sleep(Duration::from_millis(60));
    // Half-open: a is tried again, and one good call closes it.
    assert_eq!(choose(&r, CN, 0, None), Some(a));
    r.record(a, 10, 0, Duration::from_millis(1));
    assert_eq!(r.health(a).map(|h| h.state), Some(CircuitState::Closed));
}

#[test]
fn with_every_provider_down_messages_still_go_to_the_first() {
    let (c, p) = config(
        r#"
[[routes]]
channel = "sms"
providers = ["a", "b"]
"#,
    );
    let r = Router::new(&c, &p);
    let (a, b) = (slot(&p, "a"), slot(&p, "b"));
    r.record(a, 20, 20, Duration::from_millis(1));
    r.record(b, 20, 20, Duration::from_millis(1));
    assert_eq!(choose(&r, CN, 0, None), Some(a));
    assert_eq!(choose(&r, CN, 0, Some(a)), Some(a));
}

#[test]
fn weights_share_recipients_in_proportion() {
    let (c, p) = config(
        r#"
[[routes]]
channel = "sms"
providers = ["a", "b", "c"]
strategy = "weighted"
weights = [70, 20, 10]
"#,
    );
    let r = Router::new(&c, &p);
    let mut counts = HashMap::new();
    for i in 0..100_000u64 {
        let draw = xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes());
        *counts.entry(choose(&r, CN, draw, None)).or_insert(0u32) += 1;
    }
    for (name, share) in [("a", 0.70), ("b", 0.20), ("c", 0.10)] {
        let got = f64::from(counts[&Some(slot(&p, name))]) / 100_000.0;
        assert!((got - share).abs() < 0.01, "{name}: {got}");
    }
    // The same recipient always draws the same provider.
    assert_eq!(choose(&r, CN, 12345, None), choose(&r, CN, 12345, None));
}

#[test]
fn least_cost_takes_the_cheapest_for_the_country() {
    let (c, p) = config(
        r#"
[[routes]]
channel = "sms"
providers = ["a", "b"]
strategy = "least_cost"

[[prices]]
provider = "a"
channel = "sms"
country = "CN"
unit_micros = 50000

[[prices]]
provider = "b"
channel = "sms"
country = "CN"
unit_micros = 40000

[[prices]]
provider = "a"
channel = "sms"
country = "*"
unit_micros = 100000

[[prices]]
provider = "b"
channel = "sms"
country = "*"
unit_micros = 300000
"#,
    );
    let r = Router::new(&c, &p);
    assert_eq!(choose(&r, CN, 0, None), Some(slot(&p, "b")));
    assert_eq!(choose(&r, US, 0, None), Some(slot(&p, "a")));
    // Unavailable at the cheapest: the next cheapest.
    assert_eq!(choose(&r, CN, 0, Some(slot(&p, "b"))), Some(slot(&p, "a")));
}

#[test]
fn bad_routes_are_refused_naming_the_field() {
    let text = format!(
        "{DEFAULT_TOML}\n{}",
        r#"
[[providers]]
name = "mail"
kind = "sandbox"
channel = "email"
currency = "USD"

[[routes]]
channel = "sms"
countries = ["CN", "ZZZ"]
providers = ["sandbox", "mail", "nobody"]
strategy = "weighted"
weights = [1]

[[routes]]
channel = "sms"
countries = ["CN"]
providers = []
"#
    );
    let c: Config = toml::from_str(&text).expect("toml");
    let errs = c.validate().expect_err("invalid").join("\n");
    for field in [
        "routes[0].countries[1]",
        "routes[0].providers[1]: \"mail\" sends email, not sms",
        "routes[0].providers[2]: no provider named \"nobody\"",
        "routes[0].weights",
        "routes[1].providers: at least one",
        "routes[1].countries[0]: \"CN\" already has a route",
    ] {
        assert!(errs.contains(field), "{field} missing from:\n{errs}");
    }
}
