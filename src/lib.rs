//! herald: a high-throughput message dispatch gateway.
//! How a job flows, and what each folder under `src/` is for, in full: docs/architecture.md.
//!
//! A job flows through the modules in this order:
//!
//! - [`access`]: tenants, API key scopes, and the stored (hashed) keys every request is checked against.
//! - [`api`]: the HTTP edge. Thin handlers, one error type mapped to statuses, body limits.
//! - [`intake`]: accepting a valid job: idempotency keys, planning, publishing, recording.
//! - [`snapshot`]: the compact, atomically swapped contact snapshot every recipient is checked
//!   against, kept in the data directory across restarts.
//! - [`phone`]: numbering-plan parsing and validation (E.164 as integers), time zones by number.
//! - [`segment`]: audience expressions over snapshot tags and attributes.
//! - [`policy`]: the per-recipient decision pipeline, one rule per file, run in batches.
//! - [`compliance`]: content rules (signature, opt-out, banned terms, part limit) every
//!   template and every rendered message is held to.
//! - [`template`]: template compilation, rendering, and SMS part counting as carriers bill it.
//! - [`dispatch`]: job planning, sharding, workers, rate limits (local or shared in Redis) and
//!   retries; the dispatch journal that makes jobs survive a crash, and the recovery that
//!   resumes them on start.
//! - [`provider`]: provider adapters behind one trait: the in-process `sandbox`, generic HTTP/JSON,
//!   SMPP, and the Alibaba Cloud, Tencent Cloud and Twilio SMS APIs over HTTPS.
//! - [`cluster`]: several instances sharing the work of every job through Redis: published
//!   jobs, shard leases, fenced outcome writes, shared counts and receipts index.
//! - [`store`]: the state-store trait (consent, suppressions, caps, idempotency, callback signatures), its
//!   backends (memory, embedded, Redis), and the cached health of the backend in use.
//! - [`durable`]: the durability layer the journal and the ledger write through: one writer
//!   that groups commits, a write-ahead log synced once per round, applied to the embedded
//!   database in the background; every database table, defined in one place.
//! - [`ledger`]: the hash-chained, append-only cost ledger finance audits.
//! - [`metrics`]: every exported Prometheus metric, declared once, with typed recorders.
//! - [`traces`]: optional OTLP export of spans, and the trace a job's sends and receipts join.
//! - [`callbacks`]: signed delivery receipts and inbound replies (STOP / 退订), matched back to
//!   messages through the provider-id index.
//! - [`links`]: tracked links and opens: template rewriting, signed compact tokens.
//! - [`report`]: job counts, per-recipient outcomes, and job and campaign funnel reports.
//! - [`ui`]: the report pages under `/ui/` for people: sign-in, funnels, charts, finance.
//! - [`config`]: the TOML configuration with embedded defaults and environment overrides.
//! - [`domain`]: pure types shared by everything: ids, channels, reasons, statuses, money.
//! - [`constant_time`]: comparing secrets in constant time.
//! - [`clock`]: injected time, so quiet hours, caps and ETAs are testable.
//! - [`private_files`]: the data directory and every file in it private to herald's user.
//! - [`app`]: wires the pieces together and runs the server.

pub mod access;
pub mod api;
pub mod app;
pub mod callbacks;
pub mod clock;
pub mod cluster;
pub mod compliance;
pub mod config;
pub mod constant_time;
pub mod dispatch;
pub mod domain;
pub mod durable;
pub mod intake;
pub mod ledger;
pub mod links;
pub mod metrics;
pub mod phone;
pub mod policy;
pub mod private_files;
pub mod provider;
pub mod report;
pub mod segment;
pub mod snapshot;
pub mod store;
pub mod template;
pub mod traces;
pub mod ui;
pub mod webhooks;
