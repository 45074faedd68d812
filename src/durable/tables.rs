//! Every table of the embedded database (redb), in one place: what each holds, its key, and
//! who writes it. Names are stored in the database file, so they stay as first written even
//! where the module that writes the table has moved (the record log began in the ledger).
//!
//! Every value starts with a format version byte, checked by its reader (the constants are in
//! [`super::format`] and beside each layer's codec); keys carry none.

use redb::TableDefinition;

// The durable layer ([`super::writer`]).

/// The record log: per group-commit round, every record handed over with it (the dispatch
/// journal's message records), as one value ([`super::records`]), keyed by a number that grows
/// with every round.
pub const RECORD_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("ledger_records");

// The cost ledger ([`crate::ledger`]).

/// Blocks of entries, keyed by the sequence number of their first entry. A block is the
/// entries of one group commit ([`crate::ledger::block`]), so the chain is written with one
/// tree insert per commit instead of one per send.
pub const LEDGER_BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("ledger_blocks");

// The dispatch journal ([`crate::dispatch::journal`]).

/// A job's plan (the request without its audience), by job id; written once, before the job
/// is acknowledged.
pub const JOURNAL_PLANS: TableDefinition<&str, &[u8]> = TableDefinition::new("journal_jobs");
/// A job's audience in chunks, by (job id, chunk number); written with its plan.
pub const JOURNAL_AUDIENCES: TableDefinition<(&str, u32), &[u8]> =
    TableDefinition::new("journal_audience");
/// A job's control record (status, budget), by job id; written on every status change.
pub const JOURNAL_CONTROLS: TableDefinition<&str, &[u8]> = TableDefinition::new("journal_control");

// The embedded state backend ([`crate::store::EmbeddedStore`]).

/// Suppressed phone numbers (E.164 as integers).
pub const STATE_SUPPRESSED_PHONES: TableDefinition<u64, u8> =
    TableDefinition::new("state_suppressed_phones");
/// Suppressed contact ids.
pub const STATE_SUPPRESSED_CONTACTS: TableDefinition<&str, u8> =
    TableDefinition::new("state_suppressed_contacts");
/// Suppressed email addresses and push tokens, by entry (`email:...`, `push:...`).
pub const STATE_SUPPRESSED_ADDRESSES: TableDefinition<&str, u8> =
    TableDefinition::new("state_suppressed_addresses");
/// Every consent change, by a sequence number.
pub const STATE_CONSENT_HISTORY: TableDefinition<u64, &[u8]> =
    TableDefinition::new("state_consent_history");
/// Frequency-cap reservations as 16-byte (time, holder) entries, by cap key.
pub const STATE_CAPS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state_caps_v2");
/// Callback signatures seen → the version byte, then when they expire (Unix seconds, 8 bytes
/// little-endian); expired ones are deleted by the callbacks' sweep.
pub const STATE_CALLBACK_USES: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("state_callback_uses");
/// Idempotency keys: the request's fingerprint and the job it created.
pub const STATE_IDEMPOTENCY: TableDefinition<&str, &[u8]> =
    TableDefinition::new("state_idempotency");
/// API keys made through `/v1/keys`, by key id: the version byte and the record as JSON
/// ([`crate::access::StoredKey`]); never the token itself.
pub const STATE_API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("state_api_keys");

/// Monthly quota reservations, by `<tenant>/<YYYYMM>/<job id>`: the version byte and the
/// job's recipients (u64, little-endian).
pub const STATE_QUOTAS: TableDefinition<&str, &[u8]> = TableDefinition::new("state_quotas");

// Event webhooks ([`crate::webhooks`]).

/// Registered webhook endpoints, by endpoint id: the version byte and the endpoint as JSON.
pub const WEBHOOK_ENDPOINTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("webhook_endpoints");
/// How far each endpoint's deliveries have gone, by endpoint id: the version byte, then the
/// record-log key (8 bytes) and the events of it already delivered (4 bytes), little-endian.
pub const WEBHOOK_CURSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("webhook_cursors");
