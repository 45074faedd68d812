//! `herald-loadtest sendsms`: offers N messages to a gateway's HTTP send interface in the
//! Kannel `sendsms` form (`GET ?username=&password=&to=&text=&from=`), over several keep-alive
//! connections on loopback, to the same synthetic numbers the herald runs use. An answer other
//! than 2xx is offered again after a short pause (a bounded number of times). Prints one JSON
//! line: messages accepted, refused for good, offers made again, and seconds taken.

use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;
use serde_json::json;

/// How the messages are offered.
#[derive(Debug, Clone, clap::Args)]
pub struct SendSmsSettings {
    /// The send interface, e.g. http://127.0.0.1:13013/cgi-bin/sendsms (loopback only).
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value = "herald")]
    pub username: String,
    #[arg(long, default_value = "secret")]
    pub password: String,
    #[arg(long, default_value = "HERALD")]
    pub from: String,
    /// Messages offered, one per synthetic recipient.
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Offers of one message before it counts as refused.
    #[arg(long, default_value_t = 50)]
    pub attempts: u32,
}

/// Offers every message; prints the figures.
pub async fn run(s: SendSmsSettings) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(&s.url)?;
    if !url
        .host_str()
        .is_some_and(|h| h == "127.0.0.1" || h == "localhost")
    {
        bail!("sendsms: {} is not on loopback", s.url);
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(s.connections)
        .timeout(Duration::from_secs(10))
        .build()?;
    let t = Instant::now();
    let outcomes: Vec<(bool, u32)> = futures::stream::iter(0..s.messages)
        .map(|i| {
            let (http, url, s) = (&http, &url, &s);
            async move {
                let to = crate::synth::phone(i).to_string();
                let text = format!("Hi N{}, 20% off in town tonight only", i % 1000);
                for attempt in 0..s.attempts {
                    let r = http
                        .get(url.clone())
                        .query(&[
                            ("username", s.username.as_str()),
                            ("password", s.password.as_str()),
                            ("from", s.from.as_str()),
                            ("to", to.as_str()),
                            ("text", text.as_str()),
                        ])
                        .send()
                        .await;
                    if matches!(&r, Ok(r) if r.status().is_success()) {
                        return (true, attempt);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (false, s.attempts)
            }
        })
        .buffer_unordered(s.connections.max(1))
        .collect()
        .await;
    let accepted = outcomes.iter().filter(|(ok, _)| *ok).count();
    let again: u64 = outcomes.iter().map(|(_, a)| u64::from(*a)).sum();
    println!(
        "{}",
        json!({"accepted": accepted, "refused": s.messages - accepted, "offered_again": again,
               "seconds": t.elapsed().as_secs_f64()})
    );
    Ok(())
}
