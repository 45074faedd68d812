//! One ledger entry and its hash. The hash covers the previous entry's hash and every field of
//! this one in a fixed order, so changing any field, or the order, breaks the chain.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{Channel, Currency, Micros};

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A billable send.
    Charge,
    /// Money given back for an earlier charge (negative cost).
    Refund,
    /// An adjustment of an earlier charge.
    Correction,
}

/// An entry as the dispatcher hands it over, before it has a place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// A stored entry: its place in the chain, the previous hash and its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub seq: u64,
    #[serde(flatten)]
    pub entry: NewEntry,
    /// Hex SHA-256 of the previous entry (64 zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash` and this entry's fields.
    pub hash: String,
}

/// The hash of the entry before the first.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl LedgerEntry {
    /// Places `entry` after the entry with hash `prev_hash`, at `seq`.
    pub fn chain(seq: u64, entry: NewEntry, prev_hash: &str) -> LedgerEntry {
        let hash = compute_hash(seq, &entry, prev_hash);
        LedgerEntry {
            seq,
            entry,
            prev_hash: prev_hash.to_string(),
            hash,
        }
    }

    /// Recomputes this entry's hash from its fields.
    pub fn expected_hash(&self) -> String {
        compute_hash(self.seq, &self.entry, &self.prev_hash)
    }
}

fn compute_hash(seq: u64, entry: &NewEntry, prev_hash: &str) -> String {
    hash_body(seq, &canonical_body(entry), prev_hash)
}

/// The canonical bytes of an entry's fields: serde_json writes struct fields in declaration
/// order, so the same entry always gives the same bytes.
pub fn canonical_body(entry: &NewEntry) -> Vec<u8> {
    serde_json::to_vec(entry).unwrap_or_default()
}

/// SHA-256 of an entry's canonical body. Computed by whoever appends (in parallel), so the
/// single chain writer only hashes a fixed 104-byte input per entry.
pub fn body_digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// The chain hash over the previous hash, the sequence number and the body's digest. A change
/// to any field changes the digest (SHA-256 is collision-resistant), hence the chain.
pub fn chain_hash(seq: u64, digest: &[u8; 32], prev_hash: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(digest);
    hex::encode(h.finalize())
}

/// The chain hash of a body (digest and chain in one step).
pub fn hash_body(seq: u64, body: &[u8], prev_hash: &str) -> String {
    chain_hash(seq, &body_digest(body), prev_hash)
}

/// The stored JSON of an entry, built from its canonical body without re-encoding it:
/// `{"seq":…,"prev_hash":"…","hash":"…",<body fields>}`.
pub fn stored_bytes(seq: u64, body: &[u8], prev_hash: &str, hash: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 160);
    out.extend_from_slice(
        format!("{{\"seq\":{seq},\"prev_hash\":\"{prev_hash}\",\"hash\":\"{hash}\"").as_bytes(),
    );
    // `body` is a JSON object: splice its fields after ours.
    match body.get(1..) {
        Some(rest) if rest.len() > 1 => {
            out.push(b',');
            out.extend_from_slice(rest);
        }
        _ => out.push(b'}'),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spliced_storage_reads_back_as_the_chained_entry() {
        let e = NewEntry {
            kind: EntryKind::Charge,
            message_id: "msg_1".into(),
            job_id: "job_1".into(),
            campaign_id: "c\"q".into(),
            channel: Channel::Sms,
            provider: "sandbox".into(),
            country: "CN".into(),
            parts: 2,
            unit_price_micros: Micros(45_000),
            cost_micros: Micros(90_000),
            currency: Currency::parse("CNY").unwrap(),
            at: "2026-11-23T04:00:00Z".parse().unwrap(),
            references: None,
            provider_message_id: None,
        };
        let chained = LedgerEntry::chain(7, e.clone(), GENESIS_HASH);
        let body = canonical_body(&e);
        let stored = stored_bytes(7, &body, GENESIS_HASH, &hash_body(7, &body, GENESIS_HASH));
        let back: LedgerEntry = serde_json::from_slice(&stored).unwrap();
        assert_eq!(back, chained);
        assert_eq!(back.expected_hash(), back.hash);
    }
}
