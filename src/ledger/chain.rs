//! Verification of the hash chain: every entry's hash must match its fields, link to the
//! previous entry's hash, and sequence numbers must run without gaps from 1.

use super::entry::{LedgerEntry, GENESIS_HASH};

/// How the chain was found broken, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TamperError {
    #[error("entry {seq}: its fields do not match its hash (modified)")]
    Modified { seq: u64 },
    #[error("entry {seq}: does not follow the previous entry's hash (deleted, inserted or reordered before it)")]
    Broken { seq: u64 },
    #[error("entry {found}: expected sequence number {expected} (deleted or reordered)")]
    Sequence { expected: u64, found: u64 },
    #[error("entry stored under key {key} is unreadable: {message}")]
    Unreadable { key: u64, message: String },
}

/// What a successful verification saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub entries: u64,
    /// Hash of the last entry: publish it to detect truncation of the tail later.
    pub head_hash: String,
}

/// Checks entries in stored order, as (key, entry) pairs.
pub fn verify<I>(entries: I) -> Result<VerifyReport, TamperError>
where
    I: IntoIterator<Item = Result<(u64, LedgerEntry), TamperError>>,
{
    let mut prev = GENESIS_HASH.to_string();
    let mut expected_seq = 1;
    for item in entries {
        let (key, e) = item?;
        if e.seq != expected_seq || key != e.seq {
            return Err(TamperError::Sequence {
                expected: expected_seq,
                found: e.seq,
            });
        }
        if e.expected_hash() != e.hash {
            return Err(TamperError::Modified { seq: e.seq });
        }
        if e.prev_hash != prev {
            return Err(TamperError::Broken { seq: e.seq });
        }
        prev = e.hash;
        expected_seq += 1;
    }
    Ok(VerifyReport {
        entries: expected_seq - 1,
        head_hash: prev,
    })
}
