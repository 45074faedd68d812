//! The SMPP provider's own metrics: binds, windows, `submit_sm` latency, command statuses,
//! reconnects, `deliver_sm` by kind, throttling. Declared here with the rest (see
//! [`super::DECLARED`]'s conventions); labels are the provider name and bounded codes only.

use std::time::Duration;

use ::metrics::{counter, gauge, histogram};

use super::{counter as declare_counter, gauge as declare_gauge, hist, Declared, PROVIDER};

/// Binds currently bound, per provider (set at scrape time).
pub const BINDS_UP: &str = "herald_smpp_binds_up";
/// Requests written and not yet answered, summed over a provider's binds (set at scrape time).
pub const WINDOW_IN_USE: &str = "herald_smpp_window_in_use";
/// Time from writing a `submit_sm` to reading its response.
pub const SUBMIT_DURATION: &str = "herald_smpp_submit_duration_seconds";
/// Responses to herald's requests, by command and status name.
pub const COMMAND_STATUS: &str = "herald_smpp_command_status_total";
/// Binds lost or refused, each followed by a reconnect.
pub const RECONNECTS: &str = "herald_smpp_reconnects_total";
/// `deliver_sm` received, by kind: receipt, mo, mo_part, ignored.
pub const DELIVER_SM: &str = "herald_smpp_deliver_sm_total";
/// `submit_sm` answered `ESME_RTHROTTLED` or `ESME_RMSGQFUL`.
pub const THROTTLED: &str = "herald_smpp_throttled_total";

const COMMAND: &str = "command";
const STATUS: &str = "status";
const KIND: &str = "kind";

const SUBMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The SMPP metrics.
pub const DECLARED: &[Declared] = &[
    declare_gauge(BINDS_UP, "SMPP binds currently bound, per provider.", &[PROVIDER]),
    declare_gauge(WINDOW_IN_USE, "SMPP requests written and not yet answered, over the provider's binds.", &[PROVIDER]),
    hist(SUBMIT_DURATION, "Time from writing a submit_sm to reading its response.", &[PROVIDER], SUBMIT_BUCKETS),
    declare_counter(COMMAND_STATUS, "Responses to herald's SMPP requests, by command and command_status name (other: a code outside SMPP 3.4's table).", &[PROVIDER, COMMAND, STATUS]),
    declare_counter(RECONNECTS, "SMPP binds lost or refused, each followed by a reconnect after a backoff.", &[PROVIDER]),
    declare_counter(DELIVER_SM, "deliver_sm received, by kind (receipt, mo, mo_part, ignored).", &[PROVIDER, KIND]),
    declare_counter(THROTTLED, "submit_sm answered ESME_RTHROTTLED or ESME_RMSGQFUL.", &[PROVIDER]),
];

/// The kinds of `deliver_sm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverKind {
    Receipt,
    Mo,
    MoPart,
    Ignored,
}

impl DeliverKind {
    fn as_str(self) -> &'static str {
        match self {
            DeliverKind::Receipt => "receipt",
            DeliverKind::Mo => "mo",
            DeliverKind::MoPart => "mo_part",
            DeliverKind::Ignored => "ignored",
        }
    }
}

/// Creates a provider's series at zero.
pub fn register(provider: &str) {
    counter!(RECONNECTS, PROVIDER => provider.to_owned()).increment(0);
    counter!(THROTTLED, PROVIDER => provider.to_owned()).increment(0);
    for kind in [
        DeliverKind::Receipt,
        DeliverKind::Mo,
        DeliverKind::MoPart,
        DeliverKind::Ignored,
    ] {
        counter!(DELIVER_SM, PROVIDER => provider.to_owned(), KIND => kind.as_str()).increment(0);
    }
}

/// A response to one of herald's requests; `status` is its SMPP 3.4 name or `other`.
pub fn response(provider: &str, command: &'static str, status: &'static str) {
    counter!(COMMAND_STATUS, PROVIDER => provider.to_owned(), COMMAND => command, STATUS => status)
        .increment(1);
}

/// A `submit_sm` answered after `took`.
pub fn submit_answered(provider: &str, took: Duration, throttled: bool) {
    histogram!(SUBMIT_DURATION, PROVIDER => provider.to_owned()).record(took.as_secs_f64());
    if throttled {
        counter!(THROTTLED, PROVIDER => provider.to_owned()).increment(1);
    }
}

pub fn reconnect(provider: &str) {
    counter!(RECONNECTS, PROVIDER => provider.to_owned()).increment(1);
}

pub fn deliver_sm(provider: &str, kind: DeliverKind) {
    counter!(DELIVER_SM, PROVIDER => provider.to_owned(), KIND => kind.as_str()).increment(1);
}

/// The state of a provider's binds, at scrape time.
pub fn binds(provider: &str, up: usize, window_in_use: usize) {
    gauge!(BINDS_UP, PROVIDER => provider.to_owned()).set(up as f64);
    gauge!(WINDOW_IN_USE, PROVIDER => provider.to_owned()).set(window_in_use as f64);
}
