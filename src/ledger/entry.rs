//! One ledger entry and its hash. The hash covers the previous entry's hash and every field of
//! this one in a fixed order, so changing any field, or the order, breaks the chain.
//!
//! An entry's fields are digested in one of two canonical forms, two kinds of entry rather than
//! two versions: form 2, the binary row of [`super::canonical`], for entries charged one by one
//! (refunds, corrections, in-doubt settles), and form 3 ([`super::charge_rows`]) for a chunk's
//! charges, which share their header fields.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{Channel, Currency, Micros};

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A billable send.
    Charge,
    /// Money given back for an earlier charge (negative cost).
    Refund,
    /// An adjustment of an earlier charge.
    Correction,
}

impl EntryKind {
    /// The kind's code in the binary forms (blocks and canonical rows).
    pub fn code(self) -> u8 {
        match self {
            EntryKind::Charge => 0,
            EntryKind::Refund => 1,
            EntryKind::Correction => 2,
        }
    }

    /// The kind a stored code names.
    pub fn from_code(code: u8) -> Result<EntryKind, String> {
        match code {
            0 => Ok(EntryKind::Charge),
            1 => Ok(EntryKind::Refund),
            2 => Ok(EntryKind::Correction),
            k => Err(format!("unknown entry kind {k}")),
        }
    }
}

/// An entry as the dispatcher hands it over, before it has a place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewEntry {
    pub kind: EntryKind,
    pub message_id: String,
    pub job_id: String,
    pub campaign_id: String,
    pub channel: Channel,
    pub provider: String,
    /// ISO 3166 region of the destination.
    pub country: String,
    pub parts: u32,
    pub unit_price_micros: Micros,
    pub cost_micros: Micros,
    pub currency: Currency,
    pub at: DateTime<Utc>,
    /// For refunds and corrections: the sequence number of the entry they adjust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<u64>,
    /// The provider's id for the message, when it answered with one (entries written before
    /// this field existed have none; absent fields keep their canonical bytes, so they verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
}

/// Which canonical form an entry's body digest was taken over. Not part of the entry's JSON:
/// it follows from the block segment the entry is stored in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyForm {
    /// Form 2: the binary row of [`super::canonical`].
    #[default]
    Binary,
    /// Form 3: a shared header and a compact row ([`super::charge_rows`]), chained over the
    /// raw previous hash and both digests.
    SharedHeader,
}

/// A stored entry: its place in the chain, the previous hash and its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerEntry {
    pub seq: u64,
    #[serde(flatten)]
    pub entry: NewEntry,
    /// Hex SHA-256 of the previous entry (64 zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash` and this entry's fields.
    pub hash: String,
    /// The canonical form `hash` was computed over.
    #[serde(skip)]
    pub form: BodyForm,
}

/// The hash of the entry before the first.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl LedgerEntry {
    /// Places `entry` after the entry with hash `prev_hash`, at `seq`, in the current form.
    pub fn chain(seq: u64, entry: NewEntry, prev_hash: &str) -> LedgerEntry {
        let form = BodyForm::Binary;
        let hash = hash_body(seq, &canonical_body(&entry, form), prev_hash);
        LedgerEntry {
            seq,
            entry,
            prev_hash: prev_hash.to_string(),
            hash,
            form,
        }
    }

    /// Recomputes this entry's hash from its fields.
    pub fn expected_hash(&self) -> String {
        if self.form == BodyForm::SharedHeader {
            let mut prev = [0u8; 32];
            if hex::decode_to_slice(&self.prev_hash, &mut prev).is_err() {
                // No hash can follow a previous hash that is not one.
                return String::new();
            }
            let (header, row) = super::charge_rows::digests_of(&self.entry);
            return hex::encode(super::charge_rows::chain(&prev, self.seq, &header, &row));
        }
        hash_body(
            self.seq,
            &canonical_body(&self.entry, self.form),
            &self.prev_hash,
        )
    }
}

/// The canonical bytes of an entry's fields in `form`.
pub fn canonical_body(entry: &NewEntry, form: BodyForm) -> Vec<u8> {
    match form {
        BodyForm::Binary => super::canonical::to_bytes(&entry.as_ref()),
        // Form 3 digests two parts; this is their bytes one after the other.
        BodyForm::SharedHeader => super::charge_rows::encode_entry(entry).0,
    }
}

/// SHA-256 of an entry's canonical body. Computed by whoever appends (in parallel), so the
/// single chain writer only hashes a fixed 104-byte input per entry.
pub fn body_digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// The chain hash over the previous hash, the sequence number and the body's digest. A change
/// to any field changes the digest (SHA-256 is collision-resistant), hence the chain.
pub fn chain_hash(seq: u64, digest: &[u8; 32], prev_hash: &str) -> String {
    hex::encode(chain_hash_raw(seq, digest, prev_hash.as_bytes()))
}

/// [`chain_hash`] as raw bytes, over the previous hash's hex bytes: the writer keeps hashes
/// raw and only writes their hex form where the chain needs it.
pub fn chain_hash_raw(seq: u64, digest: &[u8; 32], prev_hex: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hex);
    h.update(seq.to_be_bytes());
    h.update(digest);
    h.finalize().into()
}

/// The chain hash of a body (digest and chain in one step).
pub fn hash_body(seq: u64, body: &[u8], prev_hash: &str) -> String {
    chain_hash(seq, &body_digest(body), prev_hash)
}

/// Entries that vary in every field a block stores differently (kinds, several jobs,
/// references, provider ids, sub-second times), for the ledger's tests.
#[cfg(test)]
pub(crate) fn sample_entry(i: u32) -> NewEntry {
    NewEntry {
        kind: if i % 5 == 4 {
            EntryKind::Refund
        } else {
            EntryKind::Charge
        },
        message_id: format!("msg_{i:032x}"),
        job_id: format!("job_{}", i % 2),
        campaign_id: "camp \"q\" 双".into(),
        channel: Channel::Sms,
        provider: "sandbox".into(),
        country: "CN".into(),
        parts: 1 + i % 3,
        unit_price_micros: Micros(45_000),
        cost_micros: Micros(45_000 * (1 + i % 3) as i64),
        currency: Currency::parse("CNY").unwrap(),
        at: DateTime::from_timestamp(1_795_000_000 + i as i64, 123_456_789 * (i % 2)).unwrap(),
        references: (i % 5 == 4).then(|| i as u64 - 1),
        provider_message_id: i.is_multiple_of(2).then(|| format!("p-{i}")),
    }
}
