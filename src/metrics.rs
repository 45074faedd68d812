//! Every metric herald exports, declared in one place: names (Prometheus conventions: the
//! `herald_` prefix, `_total` on counters, base units such as `_seconds`), help texts,
//! histogram buckets, and the small typed functions that record them. Call sites never spell a
//! metric name or a label key, so `grafana/` and the tests can rely on [`DECLARED`].
//!
//! Labels carry only bounded, non-personal values: channel, purpose, provider, currency,
//! outcome, reason, result, status, route; per-job gauges add the job and campaign ids. Never a
//! phone number, an email, a contact id or a message id.
//!
//! Cost on the hot path: workers record once per chunk of recipients (hundreds), never per
//! recipient. Gauges are never incremented or decremented: [`scrape::observe`] sets them from
//! the gateway's own state right before each render, so they cannot drift, and a gauge not set
//! by the latest scrape (a job that finished long ago) is dropped at the next render.
//!
//! The `metrics` facade has one recorder per process; [`install`] installs it once and hands
//! every app built in the process (tests build many) the same [`PrometheusHandle`].

pub mod scrape;
pub mod smpp;

use std::sync::{OnceLock, Weak};
use std::time::Duration;

use ::metrics::{counter, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::domain::{Channel, Currency, Purpose, Reason};
use crate::provider::{DeliveryStatus, OutboundMessage, SendOutcome};

// Counters.
/// Jobs accepted for dispatch (previews are not jobs).
pub const JOBS_SUBMITTED: &str = "herald_jobs_submitted_total";
/// Recipients in accepted jobs, duplicates included.
pub const RECIPIENTS_SUBMITTED: &str = "herald_recipients_submitted_total";
/// Policy decisions; a deferred recipient is decided again when it comes due.
pub const RECIPIENTS_DECIDED: &str = "herald_recipients_decided_total";
/// Chunks the policy could not decide because the state store did not answer.
pub const POLICY_ERRORS: &str = "herald_policy_errors_total";
/// Messages handed to a provider, by the provider's answer; every attempt counts.
pub const PROVIDER_SENDS: &str = "herald_provider_sends_total";
/// Message parts handed to a provider, every attempt: what its rate limit meters.
pub const PROVIDER_PARTS: &str = "herald_provider_parts_total";
/// Messages sent again after a transient failure or throttling.
pub const PROVIDER_RETRIES: &str = "herald_provider_retries_total";
/// Messages moved to another provider of their route after a refusal.
pub const PROVIDER_REROUTED: &str = "herald_provider_rerouted_total";
/// Webhook events sent to endpoints, by whether the endpoint took them.
pub const WEBHOOK_EVENTS: &str = "herald_webhook_events_total";
/// Messages that failed for good.
pub const MESSAGES_FAILED: &str = "herald_messages_failed_total";
/// Delivery receipts received, repeats included (job counts ignore repeats).
pub const RECEIPTS: &str = "herald_receipts_total";
/// Cost of accepted messages, in micros of the provider's currency.
pub const COST_MICROS: &str = "herald_cost_micros_total";
/// HTTP requests answered.
pub const HTTP_REQUESTS: &str = "herald_http_requests_total";

// Histograms.
/// Time the policy pipeline took for one chunk (previews included).
pub const POLICY_BATCH_DURATION: &str = "herald_policy_batch_duration_seconds";
/// Time one provider call took (one call carries a chunk of messages).
pub const PROVIDER_REQUEST_DURATION: &str = "herald_provider_request_duration_seconds";
/// Time a chunk waited for rate-limit tokens.
pub const RATE_LIMIT_WAIT: &str = "herald_rate_limit_wait_seconds";
/// Time to answer an HTTP request (to the response head; streamed bodies go on after).
pub const HTTP_REQUEST_DURATION: &str = "herald_http_request_duration_seconds";

// Gauges, set at scrape time.
/// Always 1; the labels say which build runs.
pub const BUILD_INFO: &str = "herald_build_info";
/// Jobs known to this instance, by status.
pub const JOBS: &str = "herald_jobs";
/// Recipients waiting for quiet hours to end.
pub const DEFERRED_RECIPIENTS: &str = "herald_deferred_recipients";
/// Retry tasks waiting or sending.
pub const RETRY_TASKS: &str = "herald_retry_tasks";
/// Receipt batches queued for the receipt applier.
pub const RECEIPT_QUEUE: &str = "herald_receipt_queue_batches";
/// Messages accepted by a provider whose delivery receipt has not come in yet.
pub const RECEIPTS_PENDING: &str = "herald_receipts_pending";
/// The provider's configured rate limit (0 = unlimited).
pub const PROVIDER_RATE_LIMIT: &str = "herald_provider_rate_limit_parts_per_second";
/// The rate a provider is held to now (below its limit for a while after it throttled).
pub const PROVIDER_RATE_CURRENT: &str = "herald_provider_rate_current_parts_per_second";
/// A provider's circuit: 0 closed, 1 half-open, 2 open.
pub const PROVIDER_CIRCUIT: &str = "herald_provider_circuit_state";
/// Share of a provider's messages that failed in its health window.
pub const PROVIDER_ERROR_RATIO: &str = "herald_provider_error_ratio";
/// Mean time of a provider's calls in its health window.
pub const PROVIDER_LATENCY: &str = "herald_provider_latency_seconds";
/// Age of the contact snapshot.
pub const SNAPSHOT_AGE: &str = "herald_snapshot_age_seconds";
/// Age past which jobs refuse to dispatch.
pub const SNAPSHOT_MAX_AGE: &str = "herald_snapshot_max_age_seconds";
/// Contacts in the snapshot.
pub const SNAPSHOT_CONTACTS: &str = "herald_snapshot_contacts";
/// 1 while the state backend answers its health probe, 0 during an outage.
pub const STATE_BACKEND_UP: &str = "herald_state_backend_up";
/// With shared work: instances alive at the last heartbeat.
pub const CLUSTER_INSTANCES: &str = "herald_cluster_instances";
/// With shared work: shard leases this instance holds on unfinished jobs.
pub const CLUSTER_SHARDS_HELD: &str = "herald_cluster_shards_held";
/// With shared work: outcome changes decided here and not yet written to Redis.
pub const CLUSTER_OUTCOMES_UNWRITTEN: &str = "herald_cluster_outcomes_unwritten";
/// Per job (running, or finished within the last hour): always 1, labels describe the job.
pub const JOB_INFO: &str = "herald_job_info";
/// Per job: 1 for its current status, 0 for the others.
pub const JOB_STATUS: &str = "herald_job_status";
/// Per job: recipients in the audience.
pub const JOB_AUDIENCE: &str = "herald_job_audience_recipients";
/// Per job: recipients by where they stand; the outcomes add up to the audience.
pub const JOB_RECIPIENTS: &str = "herald_job_recipients";
/// Per job: delivery receipts by status, each recipient counted once.
pub const JOB_RECEIPTS: &str = "herald_job_receipts";
/// Per job: fraction of the audience with a final outcome.
pub const JOB_PROGRESS: &str = "herald_job_progress_ratio";
/// Per job: cost so far, in micros of its currency.
pub const JOB_COST_MICROS: &str = "herald_job_cost_micros";
/// Per job: the estimated (or actual) finish time, as a Unix timestamp.
pub const JOB_ETA: &str = "herald_job_eta_timestamp_seconds";

// Label keys.
const CHANNEL: &str = "channel";
const PURPOSE: &str = "purpose";
const PROVIDER: &str = "provider";
const CURRENCY: &str = "currency";
const OUTCOME: &str = "outcome";
const REASON: &str = "reason";
const RESULT: &str = "result";
const CAUSE: &str = "cause";
const STATUS: &str = "status";
const METHOD: &str = "method";
const ROUTE: &str = "route";
const VERSION: &str = "version";
const JOB: &str = "job";
const CAMPAIGN: &str = "campaign";

/// The kind of a declared metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric: what the `# HELP` line says, its labels, and (histograms) buckets.
#[derive(Debug, Clone, Copy)]
pub struct Declared {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
    /// Upper bounds of the buckets, seconds; empty unless a histogram.
    pub buckets: &'static [f64],
}

const PROVIDER_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const POLICY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
const WAIT_BUCKETS: &[f64] = &[
    0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

const fn counter(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> Declared {
    Declared {
        name,
        kind: Kind::Counter,
        help,
        labels,
        buckets: &[],
    }
}

const fn gauge(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> Declared {
    Declared {
        name,
        kind: Kind::Gauge,
        help,
        labels,
        buckets: &[],
    }
}

const fn hist(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    buckets: &'static [f64],
) -> Declared {
    Declared {
        name,
        kind: Kind::Histogram,
        help,
        labels,
        buckets,
    }
}

/// Every metric the gateway exports.
pub const DECLARED: &[Declared] = &[
    counter(JOBS_SUBMITTED, "Jobs accepted for dispatch (previews are not jobs).", &[CHANNEL, PURPOSE]),
    counter(RECIPIENTS_SUBMITTED, "Recipients in accepted jobs, duplicates included.", &[CHANNEL, PURPOSE]),
    counter(RECIPIENTS_DECIDED, "Policy decisions by outcome (accepted, rejected, deferred) and reason; a deferred recipient is decided again when it comes due.", &[CHANNEL, OUTCOME, REASON]),
    counter(POLICY_ERRORS, "Chunks the policy could not decide because the state store did not answer (they are retried).", &[CHANNEL]),
    counter(PROVIDER_SENDS, "Messages handed to a provider, by its answer (accepted, throttled, transient, permanent); every attempt counts.", &[CHANNEL, PROVIDER, RESULT]),
    counter(PROVIDER_PARTS, "Message parts handed to a provider, every attempt counted: what its rate limit meters.", &[CHANNEL, PROVIDER]),
    counter(PROVIDER_RETRIES, "Messages sent again after a transient failure or throttling.", &[CHANNEL, PROVIDER]),
    counter(PROVIDER_REROUTED, "Messages moved to this provider after another of their route refused them (5xx, no connection, open circuit).", &[CHANNEL, PROVIDER]),
    counter(WEBHOOK_EVENTS, "Webhook events sent to endpoints, by result (delivered: answered 2xx; failed: sent again later).", &[RESULT]),
    counter(MESSAGES_FAILED, "Messages that failed for good: refused by the provider, or still failing when the retries ran out.", &[CHANNEL, PROVIDER, CAUSE]),
    counter(RECEIPTS, "Delivery receipts received, by status; repeats included.", &[CHANNEL, PROVIDER, STATUS]),
    counter(COST_MICROS, "Cost of messages accepted by providers, in millionths of the currency.", &[CHANNEL, PROVIDER, CURRENCY]),
    counter(HTTP_REQUESTS, "HTTP requests answered, by route pattern and status code.", &[METHOD, ROUTE, STATUS]),
    hist(POLICY_BATCH_DURATION, "Time the policy pipeline took to decide one chunk of recipients (previews included).", &[CHANNEL], POLICY_BUCKETS),
    hist(PROVIDER_REQUEST_DURATION, "Time one provider call took; a call carries a chunk of messages.", &[CHANNEL, PROVIDER], PROVIDER_BUCKETS),
    hist(RATE_LIMIT_WAIT, "Time a chunk of messages waited for rate-limit tokens.", &[CHANNEL, PROVIDER], WAIT_BUCKETS),
    hist(HTTP_REQUEST_DURATION, "Time to answer an HTTP request, to the response head.", &[METHOD, ROUTE], HTTP_BUCKETS),
    gauge(BUILD_INFO, "Always 1; the version label says which build runs.", &[VERSION]),
    gauge(JOBS, "Jobs known to this instance, by status.", &[STATUS]),
    gauge(DEFERRED_RECIPIENTS, "Recipients waiting for quiet hours to end.", &[]),
    gauge(RETRY_TASKS, "Retry tasks in flight (waiting for their backoff or sending).", &[]),
    gauge(RECEIPT_QUEUE, "Receipt batches queued for the receipt applier.", &[]),
    gauge(RECEIPTS_PENDING, "Messages accepted by a provider whose delivery receipt has not come in yet.", &[CHANNEL, PROVIDER]),
    gauge(PROVIDER_RATE_LIMIT, "The provider's configured rate limit in message parts per second (0 = unlimited).", &[CHANNEL, PROVIDER]),
    gauge(PROVIDER_RATE_CURRENT, "The rate the provider is held to now, in message parts per second: below the configured limit for a while after it throttled (0 = unlimited).", &[CHANNEL, PROVIDER]),
    gauge(PROVIDER_CIRCUIT, "The provider's circuit: 0 closed (in its routes), 1 half-open (being tried again), 2 open (traffic moved to the next provider).", &[CHANNEL, PROVIDER]),
    gauge(PROVIDER_ERROR_RATIO, "Share of the provider's messages that failed in the health window (refusals, 5xx, timeouts; not throttling).", &[CHANNEL, PROVIDER]),
    gauge(PROVIDER_LATENCY, "Mean time of the provider's calls in the health window.", &[CHANNEL, PROVIDER]),
    gauge(SNAPSHOT_AGE, "Age of the contact snapshot (now minus its as_of time).", &[]),
    gauge(SNAPSHOT_MAX_AGE, "Snapshot age past which jobs refuse to dispatch.", &[]),
    gauge(SNAPSHOT_CONTACTS, "Contacts in the contact snapshot.", &[]),
    gauge(STATE_BACKEND_UP, "1 while the state backend answers, 0 while it does not (dispatch holds its jobs and intake answers 503).", &[]),
    gauge(CLUSTER_INSTANCES, "With shared work: herald instances alive at this instance's last heartbeat.", &[]),
    gauge(CLUSTER_SHARDS_HELD, "With shared work: shard leases this instance holds on unfinished jobs.", &[]),
    gauge(CLUSTER_OUTCOMES_UNWRITTEN, "With shared work: recipient outcomes decided here and not yet written to Redis (grows while Redis is away).", &[]),
    gauge(JOB_INFO, "Always 1 for each job that is running or finished within the last hour; labels describe it.", &[JOB, CAMPAIGN, CHANNEL, PURPOSE, PROVIDER]),
    gauge(JOB_STATUS, "1 for the job's current status, 0 for the others.", &[JOB, CAMPAIGN, STATUS]),
    gauge(JOB_AUDIENCE, "Recipients in the job's audience, duplicates included.", &[JOB, CAMPAIGN]),
    gauge(JOB_RECIPIENTS, "The job's recipients by where they stand (sent, failed, rejected, deferred, pending, cancelled); they add up to the audience.", &[JOB, CAMPAIGN, OUTCOME]),
    gauge(JOB_RECEIPTS, "The job's delivery receipts by status, each recipient counted once.", &[JOB, CAMPAIGN, STATUS]),
    gauge(JOB_PROGRESS, "Fraction of the job's audience with a final outcome.", &[JOB, CAMPAIGN]),
    gauge(JOB_COST_MICROS, "The job's cost so far, in millionths of its currency.", &[JOB, CAMPAIGN, CURRENCY]),
    gauge(JOB_ETA, "When the job is estimated to finish (or finished), as a Unix timestamp; absent while no estimate exists.", &[JOB, CAMPAIGN]),
];

/// A gauge not set by the latest scrape is dropped by the next render after this long.
const GAUGE_IDLE: Duration = Duration::from_secs(1);
/// How often histogram samples are folded into buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process-wide recorder on first call; every call answers the same handle.
/// If some other recorder was installed first, the handle renders only the descriptions and
/// a warning is logged: metrics go to that other recorder.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            ::metrics::with_local_recorder(&recorder, describe_all);
            let handle = recorder.handle();
            if let Err(e) = ::metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "another metrics recorder is installed; /metrics will not see herald's metrics");
            }
            handle
        })
        .clone()
}

/// The exporter's configuration: histograms (not summaries) with the declared buckets, and
/// idle gauges dropped.
pub fn builder() -> PrometheusBuilder {
    let mut b = PrometheusBuilder::new().idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE));
    for d in all().filter(|d| d.kind == Kind::Histogram) {
        b = match b.set_buckets_for_metric(Matcher::Full(d.name.to_string()), d.buckets) {
            Ok(b) => b,
            // Only empty bucket lists are refused, and none is declared (a unit test checks).
            Err(_) => PrometheusBuilder::new(),
        };
    }
    b
}

/// Every declared metric: the gateway's and the SMPP provider's.
pub fn all() -> impl Iterator<Item = &'static Declared> {
    DECLARED.iter().chain(smpp::DECLARED)
}

fn describe_all() {
    for d in all() {
        match d.kind {
            Kind::Counter => ::metrics::describe_counter!(d.name, d.help),
            Kind::Gauge => ::metrics::describe_gauge!(d.name, d.help),
            Kind::Histogram => ::metrics::describe_histogram!(d.name, d.help),
        }
    }
}

/// Folds histogram samples into their buckets every few seconds, so memory stays bounded
/// when nobody scrapes, until `owner` is dropped.
pub fn spawn_upkeep<T: Send + Sync + 'static>(handle: PrometheusHandle, owner: Weak<T>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if owner.strong_count() == 0 {
                return;
            }
            handle.run_upkeep();
        }
    });
}

/// Creates a provider's series at zero, so rates and dashboards see them before the first
/// send (and `increase()` counts the first one).
pub fn register_provider(channel: Channel, provider: &str, currency: Currency) {
    let ch = channel.as_str();
    for result in [
        "accepted",
        "throttled",
        "transient",
        "permanent",
        "unavailable",
    ] {
        counter!(PROVIDER_SENDS, CHANNEL => ch, PROVIDER => provider.to_owned(), RESULT => result)
            .increment(0);
    }
    for cause in [FailureCause::Permanent, FailureCause::RetriesExhausted] {
        counter!(MESSAGES_FAILED, CHANNEL => ch, PROVIDER => provider.to_owned(), CAUSE => cause.as_str())
            .increment(0);
    }
    for status in [DeliveryStatus::Delivered, DeliveryStatus::Undelivered] {
        counter!(RECEIPTS, CHANNEL => ch, PROVIDER => provider.to_owned(), STATUS => receipt_status(status))
            .increment(0);
    }
    counter!(PROVIDER_PARTS, CHANNEL => ch, PROVIDER => provider.to_owned()).increment(0);
    counter!(PROVIDER_RETRIES, CHANNEL => ch, PROVIDER => provider.to_owned()).increment(0);
    counter!(PROVIDER_REROUTED, CHANNEL => ch, PROVIDER => provider.to_owned()).increment(0);
    counter!(COST_MICROS, CHANNEL => ch, PROVIDER => provider.to_owned(), CURRENCY => currency.as_str().to_owned())
        .increment(0);
    counter!(POLICY_ERRORS, CHANNEL => ch).increment(0);
    decisions(channel, Decided::Accepted, 0);
    decisions(channel, Decided::Deferred, 0);
    for reason in Reason::ALL {
        decisions(channel, Decided::Rejected(reason), 0);
    }
}

/// What the policy decided for a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    Accepted,
    Rejected(Reason),
    Deferred,
}

impl Decided {
    fn outcome(self) -> &'static str {
        match self {
            Decided::Accepted => "accepted",
            Decided::Rejected(_) => "rejected",
            Decided::Deferred => "deferred",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Decided::Accepted => "none",
            Decided::Rejected(r) => r.as_str(),
            Decided::Deferred => "quiet_hours",
        }
    }
}

/// Counts `n` recipients decided the same way.
pub fn decisions(channel: Channel, decided: Decided, n: u64) {
    counter!(RECIPIENTS_DECIDED, CHANNEL => channel.as_str(), OUTCOME => decided.outcome(), REASON => decided.reason())
        .increment(n);
}

/// Decisions of one chunk, tallied in place and recorded once.
#[derive(Debug, Default)]
pub struct DecisionTally {
    accepted: u64,
    deferred: u64,
    rejected: [u64; Reason::ALL.len()],
}

impl DecisionTally {
    pub fn accepted(&mut self) {
        self.accepted += 1;
    }

    pub fn deferred(&mut self) {
        self.deferred += 1;
    }

    pub fn rejected(&mut self, reason: Reason) {
        self.rejected[reason.index()] += 1;
    }

    /// Records the non-zero counts.
    pub fn record(&self, channel: Channel) {
        if self.accepted > 0 {
            decisions(channel, Decided::Accepted, self.accepted);
        }
        if self.deferred > 0 {
            decisions(channel, Decided::Deferred, self.deferred);
        }
        for reason in Reason::ALL {
            let n = self.rejected[reason.index()];
            if n > 0 {
                decisions(channel, Decided::Rejected(reason), n);
            }
        }
    }
}

/// A job accepted for dispatch, with its audience size.
pub fn job_submitted(channel: Channel, purpose: Purpose, recipients: u64) {
    let (ch, p) = (channel.as_str(), purpose.as_str());
    counter!(JOBS_SUBMITTED, CHANNEL => ch, PURPOSE => p).increment(1);
    counter!(RECIPIENTS_SUBMITTED, CHANNEL => ch, PURPOSE => p).increment(recipients);
}

/// One policy run over a chunk.
pub fn policy_batch(channel: Channel, took: Duration) {
    histogram!(POLICY_BATCH_DURATION, CHANNEL => channel.as_str()).record(took.as_secs_f64());
}

/// A chunk the policy could not decide (the store did not answer).
pub fn policy_error(channel: Channel) {
    counter!(POLICY_ERRORS, CHANNEL => channel.as_str()).increment(1);
}

/// One provider call: its duration, and each message's answer and parts.
pub fn provider_call(
    channel: Channel,
    provider: &str,
    took: Duration,
    messages: &[OutboundMessage],
    outcomes: &[SendOutcome],
) {
    let ch = channel.as_str();
    histogram!(PROVIDER_REQUEST_DURATION, CHANNEL => ch, PROVIDER => provider.to_owned())
        .record(took.as_secs_f64());
    // accepted, throttled, transient, permanent, unavailable
    let mut by_result = [0u64; 5];
    for o in outcomes {
        by_result[match o {
            SendOutcome::Accepted { .. } => 0,
            SendOutcome::Throttled { .. } => 1,
            SendOutcome::Transient { .. } => 2,
            SendOutcome::Permanent { .. } | SendOutcome::Unreachable { .. } => 3,
            SendOutcome::Unavailable { .. } => 4,
        }] += 1;
    }
    for (result, n) in [
        "accepted",
        "throttled",
        "transient",
        "permanent",
        "unavailable",
    ]
    .into_iter()
    .zip(by_result)
    {
        if n > 0 {
            counter!(PROVIDER_SENDS, CHANNEL => ch, PROVIDER => provider.to_owned(), RESULT => result)
                .increment(n);
        }
    }
    if by_result[3] > 0 {
        failed(channel, provider, FailureCause::Permanent, by_result[3]);
    }
    let parts: u64 = messages.iter().map(|m| u64::from(m.parts)).sum();
    counter!(PROVIDER_PARTS, CHANNEL => ch, PROVIDER => provider.to_owned()).increment(parts);
}

/// How long a chunk waited for rate-limit tokens.
pub fn rate_limit_wait(channel: Channel, provider: &str, waited: Duration) {
    histogram!(RATE_LIMIT_WAIT, CHANNEL => channel.as_str(), PROVIDER => provider.to_owned())
        .record(waited.as_secs_f64());
}

/// `n` messages about to be sent again.
/// Webhook events sent in one request, and whether the endpoint took them.
pub fn webhook_events(n: u64, delivered: bool) {
    let result = if delivered { "delivered" } else { "failed" };
    counter!(WEBHOOK_EVENTS, RESULT => result).increment(n);
}

/// Messages moved to `provider` after another provider of their route refused them.
pub fn rerouted(channel: Channel, provider: &str, n: u64) {
    counter!(PROVIDER_REROUTED, CHANNEL => channel.as_str(), PROVIDER => provider.to_owned())
        .increment(n);
}

pub fn retries(channel: Channel, provider: &str, n: u64) {
    counter!(PROVIDER_RETRIES, CHANNEL => channel.as_str(), PROVIDER => provider.to_owned())
        .increment(n);
}

/// Why a message failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCause {
    /// The provider refused it.
    Permanent,
    /// Still failing transiently when the retries ran out.
    RetriesExhausted,
}

impl FailureCause {
    fn as_str(self) -> &'static str {
        match self {
            FailureCause::Permanent => "permanent",
            FailureCause::RetriesExhausted => "retries_exhausted",
        }
    }
}

/// `n` messages failed for good.
pub fn failed(channel: Channel, provider: &str, cause: FailureCause, n: u64) {
    counter!(MESSAGES_FAILED, CHANNEL => channel.as_str(), PROVIDER => provider.to_owned(), CAUSE => cause.as_str())
        .increment(n);
}

/// Cost of one chunk's accepted messages.
pub fn cost(channel: Channel, provider: &str, currency: Currency, micros: i64) {
    if micros <= 0 {
        return;
    }
    counter!(COST_MICROS, CHANNEL => channel.as_str(), PROVIDER => provider.to_owned(), CURRENCY => currency.as_str().to_owned())
        .increment(micros as u64);
}

fn receipt_status(s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Undelivered => "undelivered",
    }
}

/// A batch of delivery receipts received.
pub fn receipts<'a>(
    channel: Channel,
    provider: &str,
    statuses: impl IntoIterator<Item = &'a DeliveryStatus>,
) {
    let (mut delivered, mut undelivered) = (0u64, 0u64);
    for s in statuses {
        match s {
            DeliveryStatus::Delivered => delivered += 1,
            DeliveryStatus::Undelivered => undelivered += 1,
        }
    }
    for (status, n) in [
        (DeliveryStatus::Delivered, delivered),
        (DeliveryStatus::Undelivered, undelivered),
    ] {
        if n > 0 {
            counter!(RECEIPTS, CHANNEL => channel.as_str(), PROVIDER => provider.to_owned(), STATUS => receipt_status(status))
                .increment(n);
        }
    }
}

/// One HTTP request. `route` is the route pattern (`/v1/jobs/{id}`), never the raw path.
pub fn http_request(method: &str, route: &str, status: u16, took: Duration) {
    counter!(HTTP_REQUESTS, METHOD => method.to_owned(), ROUTE => route.to_owned(), STATUS => status.to_string())
        .increment(1);
    histogram!(HTTP_REQUEST_DURATION, METHOD => method.to_owned(), ROUTE => route.to_owned())
        .record(took.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce()) -> String {
        let recorder = builder().build_recorder();
        ::metrics::with_local_recorder(&recorder, describe_all);
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, f);
        handle.render()
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for d in DECLARED {
            assert!(seen.insert(d.name), "{} declared twice", d.name);
            assert!(d.name.starts_with("herald_"), "{}", d.name);
            assert!(
                d.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                d.name
            );
            assert_eq!(
                d.kind == Kind::Counter,
                d.name.ends_with("_total"),
                "{}",
                d.name
            );
            if d.kind == Kind::Histogram {
                assert!(d.name.ends_with("_seconds"), "{}", d.name);
                assert!(!d.buckets.is_empty(), "{}", d.name);
                assert!(d.buckets.windows(2).all(|w| w[0] < w[1]), "{}", d.name);
            } else {
                assert!(d.buckets.is_empty(), "{}", d.name);
            }
            for l in d.labels {
                assert!(![
                    "phone",
                    "contact",
                    "contact_id",
                    "message",
                    "message_id",
                    "email"
                ]
                .contains(l));
            }
        }
    }

    #[test]
    fn a_chunk_tally_records_counts_by_outcome_and_reason() {
        let text = render(|| {
            let mut t = DecisionTally::default();
            t.accepted();
            t.accepted();
            t.deferred();
            t.rejected(Reason::OptedOut);
            t.record(Channel::Sms);
        });
        assert!(text.contains(
            "herald_recipients_decided_total{channel=\"sms\",outcome=\"accepted\",reason=\"none\"} 2"
        ), "{text}");
        assert!(text.contains(
            "herald_recipients_decided_total{channel=\"sms\",outcome=\"rejected\",reason=\"opted_out\"} 1"
        ), "{text}");
        assert!(
            text.contains("# HELP herald_recipients_decided_total"),
            "{text}"
        );
    }

    #[test]
    fn latencies_are_histograms_not_summaries() {
        let text = render(|| {
            provider_call(Channel::Sms, "sbx", Duration::from_millis(3), &[], &[]);
        });
        assert!(
            text.contains("# TYPE herald_provider_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(text.contains(
            "herald_provider_request_duration_seconds_bucket{channel=\"sms\",provider=\"sbx\",le=\"0.005\"} 1"
        ), "{text}");
    }
}
