//! An SMSC sink for load runs: the SMPP 3.4 server side, on loopback, written on the `rusmpp`
//! codec (not on herald's SMPP code, so it checks herald rather than agreeing with it).
//!
//! It accepts `bind_transmitter`, `bind_receiver` and `bind_transceiver` with one
//! system_id and password, answers `submit_sm` after a configurable latency (with ids in hex or
//! decimal, and a configurable share of `ESME_RTHROTTLED` / `ESME_RMSGQFUL`), sends delivery
//! receipts (TLV or text form) and optionally replies back as `deliver_sm`, and answers
//! `enquire_link` and `unbind`. It counts every `submit_sm` per recipient and part so a run can
//! report lost and duplicated messages, and the largest window it saw on each bind
//! ([`tally`]). `herald-loadtest smsc-sink` runs it alone (see [`serve`]); `run` starts it as a
//! child process for an SMPP scenario ([`child`]).

pub mod child;
mod control;
pub mod deliver;
mod session;
pub mod tally;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use clap::Parser;
use parking_lot::Mutex;
use rusmpp::pdus::DeliverSm;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use deliver::{IdFormat, ReceiptForm};
use tally::Tally;

/// How the sink behaves; the flags of `herald-loadtest smsc-sink`, and the `[smsc]` table of
/// an SMPP scenario.
#[derive(Debug, Clone, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkSettings {
    /// SMPP port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Port of the JSON stats endpoint (`GET /stats`) on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub stats_port: u16,
    /// The system_id a bind must present.
    #[arg(long, default_value = "herald")]
    pub system_id: String,
    /// The password a bind must present.
    #[arg(long, default_value = "secret")]
    pub password: String,
    /// Time before a `submit_sm` is answered, in milliseconds.
    #[arg(long, default_value_t = 0.0)]
    pub latency_ms: f64,
    /// A uniform extra of up to this many milliseconds on each answer.
    #[arg(long, default_value_t = 0.0)]
    pub latency_jitter_ms: f64,
    /// How message ids are written.
    #[arg(long, value_enum, default_value_t = IdFormat::Hex)]
    pub message_id: IdFormat,
    /// Share of `submit_sm` answered `ESME_RTHROTTLED`.
    #[arg(long, default_value_t = 0.0)]
    pub throttled_rate: f64,
    /// Share of `submit_sm` answered `ESME_RMSGQFUL`.
    #[arg(long, default_value_t = 0.0)]
    pub queue_full_rate: f64,
    /// Delivery receipts: `tlv` (text plus TLVs), `text` (text only) or `none`.
    #[arg(long, value_enum, default_value_t = ReceiptForm::Tlv)]
    pub receipts: ReceiptForm,
    /// Time from the `submit_sm_resp` to its receipt, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub receipt_delay_ms: u64,
    /// Share of receipts that say delivered (the rest say undeliverable).
    #[arg(long, default_value_t = 0.97)]
    pub delivered_rate: f64,
    /// Share of accepted messages that get a reply from their recipient.
    #[arg(long, default_value_t = 0.0)]
    pub reply_rate: f64,
    /// The text of those replies.
    #[arg(long, default_value = "YES")]
    pub reply_text: String,
    /// A `deliver_sm` the ESME refuses is delivered again after this long, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub redeliver_ms: u64,
    /// Seed of the sink's random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Exit when stdin closes (set when started as a child process).
    #[arg(long, default_value_t = false)]
    #[serde(skip)]
    pub exit_on_stdin_eof: bool,
}

/// The flags alone, to build [`SinkSettings::default`] from clap's defaults.
#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    settings: SinkSettings,
}

impl Default for SinkSettings {
    fn default() -> Self {
        Defaults::parse_from(["smsc-sink"]).settings
    }
}

impl SinkSettings {
    /// Every problem with the settings, at once.
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for (name, r) in [
            ("throttled_rate", self.throttled_rate),
            ("queue_full_rate", self.queue_full_rate),
            ("delivered_rate", self.delivered_rate),
            ("reply_rate", self.reply_rate),
        ] {
            if !(0.0..=1.0).contains(&r) {
                errs.push(format!("smsc.{name}: must be between 0 and 1"));
            }
        }
        if self.throttled_rate + self.queue_full_rate > 1.0 {
            errs.push("smsc: throttled + queue full rates exceed 1".into());
        }
        let latency_ok = self.latency_ms >= 0.0
            && self.latency_jitter_ms >= 0.0
            && (self.latency_ms + self.latency_jitter_ms).is_finite();
        if !latency_ok {
            errs.push("smsc: latencies must be finite and >= 0".into());
        }
        if self.system_id.is_empty() || self.system_id.len() > 15 {
            errs.push("smsc.system_id: 1 to 15 characters".into());
        }
        if self.password.len() > 8 {
            errs.push("smsc.password: at most 8 characters".into());
        }
        errs
    }

    /// The flags that give a child sink these settings (ports and stdin handling apart).
    pub fn to_args(&self) -> Vec<String> {
        [
            ("--system-id", self.system_id.clone()),
            ("--password", self.password.clone()),
            ("--latency-ms", self.latency_ms.to_string()),
            ("--latency-jitter-ms", self.latency_jitter_ms.to_string()),
            ("--message-id", value_name(&self.message_id)),
            ("--throttled-rate", self.throttled_rate.to_string()),
            ("--queue-full-rate", self.queue_full_rate.to_string()),
            ("--receipts", value_name(&self.receipts)),
            ("--receipt-delay-ms", self.receipt_delay_ms.to_string()),
            ("--delivered-rate", self.delivered_rate.to_string()),
            ("--reply-rate", self.reply_rate.to_string()),
            ("--reply-text", self.reply_text.clone()),
            ("--redeliver-ms", self.redeliver_ms.to_string()),
            ("--seed", self.seed.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect()
    }
}

/// A value's name on the command line.
pub fn value_name(v: &impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// What a `deliver_sm` carries, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    Receipt,
    Reply,
}

/// A `deliver_sm` to send (again, if it is refused).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub kind: DeliveryKind,
    pub pdu: DeliverSm,
}

/// Deliveries no bind of their own can send: those planned on a transmitter bind, and those
/// of a bind that closed. Receiver and transceiver binds take them.
#[derive(Default)]
pub struct Backlog {
    queue: Mutex<VecDeque<(Instant, Delivery)>>,
    notify: Notify,
}

impl Backlog {
    /// Queues `d` to be sent at `due`.
    pub fn push_at(&self, due: Instant, d: Delivery) {
        self.queue.lock().push_back((due, d));
        self.notify.notify_waiters();
    }

    /// Takes up to `n` deliveries.
    pub fn take(&self, n: usize) -> Vec<(Instant, Delivery)> {
        let mut q = self.queue.lock();
        let n = n.min(q.len());
        q.drain(..n).collect()
    }

    /// Resolves when something was queued.
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

/// What every bind of one sink shares.
pub struct Shared {
    pub settings: Arc<SinkSettings>,
    pub tally: Arc<Tally>,
    /// The next message id, as a number.
    pub next_id: AtomicU64,
    pub backlog: Backlog,
}

/// A running sink; stops (every bind closed) when dropped.
pub struct Sink {
    pub addr: SocketAddr,
    pub tally: Arc<Tally>,
    task: JoinHandle<()>,
}

impl Sink {
    /// Listens on 127.0.0.1:`settings.port` and serves binds in the background.
    pub async fn start(settings: SinkSettings) -> anyhow::Result<Sink> {
        let problems = settings.problems();
        if !problems.is_empty() {
            anyhow::bail!(
                "invalid SMSC sink settings:\n  - {}",
                problems.join("\n  - ")
            );
        }
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], settings.port))).await?;
        let addr = listener.local_addr()?;
        let tally = Arc::new(Tally::new());
        let shared = Arc::new(Shared {
            settings: Arc::new(settings),
            tally: tally.clone(),
            next_id: AtomicU64::new(1),
            backlog: Backlog::default(),
        });
        let task = tokio::spawn(accept(listener, shared));
        Ok(Sink { addr, tally, task })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections; each bind is a task of the set, so they all end with this task.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut binds = tokio::task::JoinSet::new();
    let mut index = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                index += 1;
                let shared = shared.clone();
                binds.spawn(async move {
                    if let Err(e) = session::serve(stream, shared, index).await {
                        eprintln!("smsc sink: bind {index} ended: {e}");
                    }
                });
            }
            Some(_) = binds.join_next(), if !binds.is_empty() => {}
        }
    }
}

/// `herald-loadtest smsc-sink`: serves until interrupted (or stdin closes, when asked).
/// Its first stdout line is `{"smpp": "<addr>", "stats": "<addr>"}`.
pub fn serve(settings: SinkSettings) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let stats_port = settings.stats_port;
        let exit_on_eof = settings.exit_on_stdin_eof;
        let sink = Sink::start(settings).await?;
        let stats = control::start(stats_port, sink.tally.clone()).await?;
        println!(
            "{}",
            serde_json::json!({"smpp": sink.addr.to_string(), "stats": stats.to_string()})
        );
        if exit_on_eof {
            tokio::task::spawn_blocking(|| {
                let mut sink = std::io::sink();
                let _ = std::io::copy(&mut std::io::stdin(), &mut sink);
            })
            .await?;
        } else {
            tokio::signal::ctrl_c().await?;
        }
        drop(sink);
        Ok(())
    })
}
