//! The SMPP 3.4 provider adapter: SMS to an SMSC over `binds` transceiver binds (or
//! transmitter and receiver pairs), over TCP or TLS.
//!
//! - `config.rs`: the `[providers.smpp]` table and its validation.
//! - `text.rs`, `parts.rs`: a message as `submit_sm` parts, GSM 03.38 or UCS-2, concatenated
//!   by UDH or SAR TLVs, cut exactly where herald's billing counted the parts.
//! - `status.rs`: `command_status` → [`SendOutcome`], the documented table.
//! - `deliver.rs`: `deliver_sm` → a receipt (TLVs or the appendix B text) or an inbound reply;
//!   `part_ids.rs`: the receipt of one part of a long message → part k of n of that message.
//! - `pdu.rs`: PDUs through the `rusmpp` codec; `session/`: one bind's task (connect, bind,
//!   window, `enquire_link`, reconnect with backoff, `unbind`), the only place with I/O.
//!
//! A message's parts go out one after the other on one bind, so a failure leaves no later
//! part sent; messages of a batch go out concurrently across the binds and their windows.
//! The answer is `Accepted` under the SMSC's id of the last part once every part is accepted,
//! or the first part's failure. Like every adapter it never retries: a transient failure goes
//! back to the dispatcher, which resends the whole message with the same concatenation
//! reference (handsets drop parts they already hold).

pub mod config;
pub mod deliver;
mod in_flight;
pub mod mo_parts;
pub mod part_ids;
pub mod parts;
pub mod pdu;
mod session;
pub mod status;
pub mod submit_log;
pub mod text;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xxhash_rust::xxh3::xxh3_64;

use super::{
    InFlightFate, InFlightMessage, OutboundMessage, Provider, ProviderEvents, SendOutcome,
};
use crate::config::{MessageIdFormat, ProviderConfig};
use config::{BindMode, SmppConfig};
use part_ids::{LongMessage, PartIds};
use pdu::{BindFields, BindRole, SubmitFields};
use session::transport::Tls;
use session::{BindHandle, Request, SessionSettings, Submit, SubmitAnswer};
use submit_log::{PartTag, SubmitLog};

/// Why an SMPP provider could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum SmppError {
    #[error("provider {name}: kind = \"smpp\" needs a [providers.smpp] table")]
    MissingTable { name: String },
    #[error("provider {name}: {source}")]
    Tls {
        name: String,
        source: session::transport::TlsError,
    },
}

/// The adapter's settings, read from a validated provider config.
#[derive(Debug, Clone)]
pub struct SmppSettings {
    pub name: String,
    pub smpp: SmppConfig,
    /// How the SMSC's message ids compare (part receipts are matched with it).
    pub message_id_format: MessageIdFormat,
    /// Seeds the reconnect jitter of the binds (each bind mixes in its index).
    pub jitter_seed: u64,
}

impl SmppSettings {
    /// Reads the settings of a validated `kind = "smpp"` provider config.
    pub fn from_config(c: &ProviderConfig) -> Result<SmppSettings, SmppError> {
        let smpp = c.smpp.clone().ok_or_else(|| SmppError::MissingTable {
            name: c.name.clone(),
        })?;
        // A TLS setup that cannot work (an unreadable ca_file) stops the start here.
        if smpp.tls {
            tls_for(&smpp).map_err(|source| SmppError::Tls {
                name: c.name.clone(),
                source,
            })?;
        }
        Ok(SmppSettings {
            jitter_seed: xxh3_64(c.name.as_bytes()) ^ u64::from(std::process::id()),
            name: c.name.clone(),
            message_id_format: c.message_id_format,
            smpp,
        })
    }

    fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.smpp.response_timeout_ms.max(1))
    }
}

fn tls_for(c: &SmppConfig) -> Result<Tls, session::transport::TlsError> {
    Tls::new(c.host.trim(), c.ca_file.as_deref())
}

/// The SMPP provider: its binds and the tasks that run them.
pub struct SmppProvider {
    settings: SmppSettings,
    submit: SubmitFields,
    binds: Vec<BindHandle>,
    next_bind: AtomicUsize,
    bound_count: watch::Receiver<usize>,
    /// Receiver binds bound (`transmitter_receiver` mode).
    receivers_bound: watch::Receiver<usize>,
    /// Keeps the receiver binds' (unused) request queues open.
    _receivers: Vec<BindHandle>,
    shutdown: CancellationToken,
    tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
    log: Option<Arc<SubmitLog>>,
    events: Option<Arc<dyn ProviderEvents>>,
}

impl SmppProvider {
    /// Starts one task per bind (two per pair); they connect in the background. A TLS setup
    /// that fails here (checked by [`SmppSettings::from_config`]) leaves the binds refusing.
    pub fn start(settings: SmppSettings, events: Option<Arc<dyn ProviderEvents>>) -> SmppProvider {
        let c = &settings.smpp;
        let (count_tx, count_rx) = watch::channel(0usize);
        let (rx_count_tx, rx_count_rx) = watch::channel(0usize);
        let tls = match c.tls.then(|| tls_for(c)) {
            None => None,
            Some(Ok(t)) => Some(Arc::new(t)),
            Some(Err(e)) => {
                tracing::error!(provider = %settings.name, error = %e, "TLS cannot be set up; the binds stay down");
                None
            }
        };
        let tls_broken = c.tls && tls.is_none();
        let roles: &[BindRole] = match c.bind_mode {
            BindMode::Transceiver => &[BindRole::Transceiver],
            BindMode::TransmitterReceiver => &[BindRole::Transmitter, BindRole::Receiver],
        };
        let shutdown = CancellationToken::new();
        let part_ids = Arc::new(PartIds::new(settings.message_id_format, c.part_receipt_ids));
        let password = c
            .password
            .as_ref()
            .map(|p| String::from_utf8_lossy(p.expose()).into_owned())
            .unwrap_or_default();
        let log = c.state_dir.as_deref().and_then(|dir| {
            SubmitLog::open(dir, &settings.name)
                .map_err(|e| tracing::error!(provider = %settings.name, error = %e, "the SMPP submit log cannot be opened: messages in flight at a crash will stay in doubt"))
                .ok()
                .map(Arc::new)
        });
        let mo_parts = Arc::new(mo_parts::MoReassembly::new(
            Duration::from_secs(c.mo_reassembly_timeout_seconds.max(1)),
            c.mo_reassembly_max,
        ));
        crate::metrics::smpp::register(&settings.name);
        let mut binds = Vec::with_capacity(c.binds);
        let mut receivers = Vec::new();
        let mut tasks = Vec::with_capacity(c.binds);
        for (index, &role) in (0..c.binds.max(1)).flat_map(|i| roles.iter().map(move |r| (i, r))) {
            if tls_broken {
                break;
            }
            let window_used = Arc::new(AtomicUsize::new(0));
            let session = Arc::new(SessionSettings {
                provider: settings.name.clone(),
                index,
                host: c.host.trim().to_string(),
                port: c.port,
                tls: tls.clone(),
                role,
                bind: BindFields {
                    system_id: c.system_id.clone(),
                    password: password.clone(),
                    system_type: c.system_type.clone(),
                    interface_version: c.interface_version,
                },
                window: c.window.max(1),
                response_timeout: settings.response_timeout(),
                enquire_link: Duration::from_secs(c.enquire_link_seconds.max(1)),
                connect_timeout: Duration::from_millis(c.connect_timeout_ms.max(1)),
                reconnect_min: Duration::from_millis(c.reconnect_min_ms.max(1)),
                reconnect_max: Duration::from_millis(c.reconnect_max_ms.max(c.reconnect_min_ms)),
                jitter_seed: settings.jitter_seed.wrapping_add(index as u64),
                receipt_ids: c.receipt_id_conversion,
                part_ids: part_ids.clone(),
                events: events.clone(),
                log: log.clone(),
                mo_parts: mo_parts.clone(),
                window_used: window_used.clone(),
            });
            let (tx, rx) = mpsc::channel(c.window.max(1));
            let bound = Arc::new(AtomicBool::new(false));
            let counted = match role {
                BindRole::Receiver => rx_count_tx.clone(),
                _ => count_tx.clone(),
            };
            tasks.push(tokio::spawn(session::run(
                session,
                rx,
                bound.clone(),
                counted,
                shutdown.clone(),
            )));
            let handle = BindHandle {
                submits: tx,
                bound,
                window_used,
            };
            match role {
                BindRole::Receiver => receivers.push(handle),
                _ => binds.push(handle),
            }
        }
        SmppProvider {
            submit: SubmitFields {
                service_type: c.service_type.clone(),
                source_ton: c.source_ton(),
                source_npi: c.source_npi(),
                source_addr: c.source_addr.clone(),
                registered_delivery: c.registered_delivery,
            },
            settings,
            binds,
            next_bind: AtomicUsize::new(0),
            bound_count: count_rx,
            receivers_bound: rx_count_rx,
            _receivers: receivers,
            shutdown,
            tasks: parking_lot::Mutex::new(tasks),
            log,
            events,
        }
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &SmppSettings {
        &self.settings
    }

    /// Binds currently bound that can send (transceivers, or transmitters of pairs).
    pub fn bound_binds(&self) -> usize {
        *self.bound_count.borrow()
    }

    /// Receiver binds of pairs currently bound.
    pub fn bound_receivers(&self) -> usize {
        *self.receivers_bound.borrow()
    }

    /// Waits until at least one bind is bound, or `limit` passes; whether one is.
    pub async fn wait_bound(&self, limit: Duration) -> bool {
        let mut rx = self.bound_count.clone();
        let bound = tokio::time::timeout(limit, rx.wait_for(|n| *n > 0))
            .await
            .is_ok_and(|r| r.is_ok());
        bound
    }

    /// A bound bind, round robin; `None` when none is bound.
    fn pick_bind(&self) -> Option<&BindHandle> {
        let n = self.binds.len();
        let start = self.next_bind.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.binds[(start + i) % n])
            .find(|b| b.bound.load(Ordering::Acquire))
    }

    async fn send_one(&self, m: &OutboundMessage) -> SendOutcome {
        let c = &self.settings.smpp;
        let encoded = parts::encode(&m.body, c.data_coding);
        if encoded.parts.len() != m.parts as usize {
            // Herald priced `m.parts`; sending a different number would bill wrong.
            return SendOutcome::Permanent {
                error: format!(
                    "encoded into {} parts where {} were counted",
                    encoded.parts.len(),
                    m.parts
                ),
            };
        }
        let parts = match parts::concatenate(encoded, c.long_messages, parts::reference(m.id)) {
            Ok(p) => p,
            Err(e) => {
                return SendOutcome::Permanent {
                    error: e.to_string(),
                }
            }
        };
        let mut pdus = Vec::with_capacity(parts.len());
        for part in &parts {
            match pdu::submit_sm(&self.submit, m.phone(), part) {
                Ok(p) => pdus.push(p),
                Err(e) => {
                    return SendOutcome::Permanent {
                        error: e.to_string(),
                    }
                }
            }
        }
        if self.bound_binds() == 0
            && !self
                .wait_bound(Duration::from_millis(c.connect_timeout_ms.max(1)))
                .await
        {
            return unavailable("no bind to the SMSC is up");
        }
        let Some(bind) = self.pick_bind() else {
            return unavailable("no bind to the SMSC is up");
        };
        let total = pdus.len();
        let long = (total > 1).then(|| LongMessage::new(total));
        let mut last_id = String::new();
        for (i, pdu) in pdus.into_iter().enumerate() {
            let (reply, answer) = oneshot::channel();
            let submit = Submit {
                pdu,
                queued_at: tokio::time::Instant::now(),
                reply,
                long: long.as_ref().map(|m| (m.clone(), i + 1)),
                tag: PartTag {
                    message: m.id,
                    part: (i + 1) as u8,
                    total: total as u8,
                },
            };
            if bind.submits.send(Request::Submit(submit)).await.is_err() {
                return unavailable("provider shut down");
            }
            let outcome = match answer.await {
                Ok(SubmitAnswer::Answered { status, message_id }) => status::outcome(
                    status,
                    &message_id,
                    Duration::from_millis(c.throttle_retry_ms.max(1)),
                ),
                Ok(SubmitAnswer::TimedOut) => transient(&format!(
                    "no submit_sm_resp within {} ms",
                    c.response_timeout_ms
                )),
                Ok(SubmitAnswer::Lost) => transient("connection lost before the submit_sm_resp"),
                Ok(SubmitAnswer::NotSent(why)) => unavailable(why),
                Err(_) => transient("bind task ended"),
            };
            match outcome {
                SendOutcome::Accepted {
                    provider_message_id,
                } => {
                    last_id = provider_message_id;
                }
                failed => {
                    if let Some(long) = &long {
                        long.abandon();
                    }
                    if i > 0 {
                        tracing::info!(provider = %self.settings.name, accepted = i, parts = total, "a long message failed after some of its parts were accepted");
                    }
                    return failed;
                }
            }
        }
        if let Some(long) = &long {
            long.finish(&last_id);
        }
        SendOutcome::Accepted {
            provider_message_id: last_id,
        }
    }
}

fn transient(error: &str) -> SendOutcome {
    SendOutcome::Transient {
        error: error.to_string(),
    }
}

/// Nothing reached the SMSC: the message may go elsewhere.
fn unavailable(error: &str) -> SendOutcome {
    SendOutcome::Unavailable {
        error: error.to_string(),
    }
}

impl Drop for SmppProvider {
    fn drop(&mut self) {
        // The bind tasks unbind on their own once cancelled (while the runtime runs).
        self.shutdown.cancel();
    }
}

#[async_trait]
impl Provider for SmppProvider {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn send_batch(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        futures::future::join_all(messages.iter().map(|m| self.send_one(m))).await
    }

    fn observe_metrics(&self) {
        let in_use = self
            .binds
            .iter()
            .map(|b| b.window_used.load(Ordering::Relaxed))
            .sum();
        let up = self.bound_binds() + self.bound_receivers();
        crate::metrics::smpp::binds(&self.settings.name, up, in_use);
    }

    fn in_flight_fates(&self, messages: &[InFlightMessage]) -> Vec<InFlightFate> {
        let Some(log) = &self.log else {
            return vec![InFlightFate::Unknown; messages.len()];
        };
        let (fates, accepted) = in_flight::fates(&self.settings.name, log, messages);
        tracing::info!(
            provider = %self.settings.name,
            in_flight = messages.len(),
            not_sent = fates.iter().filter(|f| **f == InFlightFate::NotSent).count(),
            accepted = accepted.len(),
            "messages in flight at the last stop read from the submit log"
        );
        if let (true, false, Some(events)) = (
            self.settings.smpp.query_in_doubt,
            accepted.is_empty(),
            &self.events,
        ) {
            tokio::spawn(in_flight::query_states(
                self.settings.name.clone(),
                self.binds.clone(),
                self.bound_count.clone(),
                self.submit.clone(),
                accepted,
                events.clone(),
            ));
        }
        fates
    }

    async fn shutdown(&self) {
        self.shutdown.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            let _ = t.await;
        }
    }
}
