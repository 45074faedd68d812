//! The stored form of one group commit's entries: a header with the first entry's sequence
//! number and the hash before it, then one segment per caller's batch: its entries as the
//! caller packed them ([`super::batch`]) and the chain hash of each. Sequence numbers and
//! previous hashes follow from the position, so they are not stored per entry.
//!
//! Layout (little-endian): `u8 format version, u64 first_seq, [32] prev_hash, u32 segments,
//! segment*`, a segment being `u32 count, u8 packing, u32 len, packed, [32]×count hashes`.
//! Packing 2 holds form 2 rows packed by field ([`super::packed_rows`]); packing 3 a form 3
//! batch, a shared header and compact rows, stored as hashed ([`super::charge_rows`]).
//!
//! The hash chain does not depend on the storage form: every entry's hash is recomputed from
//! its decoded fields on verification, so any change to a stored byte that survives decoding
//! still breaks it.

use super::batch::{self, EntryBatch, Packing};
use super::canonical;
use super::charge_rows::{self, HeaderRef};
use super::entry::{BodyForm, LedgerEntry};
use crate::durable::bytes::Reader;
use crate::durable::format;

/// The format version of blocks, their first byte: the one version the ledger stores (its
/// entries' canonical forms are kinds of entry, named by each segment's packing).
pub const BLOCK_VERSION: u8 = 1;

/// Bytes of the block header: version, first sequence number, previous hash, segments.
const HEADER_BYTES: usize = 1 + 8 + 32 + 4;

/// Builds one block from callers' batches.
pub struct SegmentBlockWriter {
    out: Vec<u8>,
    segments: u32,
}

impl SegmentBlockWriter {
    /// A block whose first entry is `first_seq`, chained after `prev_hash`.
    pub fn new(first_seq: u64, prev_hash: &[u8; 32]) -> SegmentBlockWriter {
        SegmentBlockWriter::with_capacity(first_seq, prev_hash, 1 << 16)
    }

    /// [`SegmentBlockWriter::new`], with room for `bytes` of segments (see
    /// [`SegmentBlockWriter::stored_len`]), so that a round's block is never copied to grow.
    pub fn with_capacity(first_seq: u64, prev_hash: &[u8; 32], bytes: usize) -> SegmentBlockWriter {
        let mut out = Vec::with_capacity(HEADER_BYTES + bytes);
        out.push(BLOCK_VERSION);
        out.extend_from_slice(&first_seq.to_le_bytes());
        out.extend_from_slice(prev_hash);
        out.extend_from_slice(&0u32.to_le_bytes());
        SegmentBlockWriter { out, segments: 0 }
    }

    /// The bytes `batch` takes in a block.
    pub fn stored_len(batch: &EntryBatch) -> usize {
        4 + 1 + 4 + batch.packed().1.len() + 32 * batch.len()
    }

    /// Adds a batch with the chain hash of each of its entries.
    pub fn push(&mut self, batch: &EntryBatch, hashes: &[[u8; 32]]) {
        let (packing, packed) = batch.packed();
        let out = &mut self.out;
        out.extend_from_slice(&(hashes.len() as u32).to_le_bytes());
        out.push(packing as u8);
        out.extend_from_slice(&(packed.len() as u32).to_le_bytes());
        out.extend_from_slice(packed);
        for h in hashes {
            out.extend_from_slice(h);
        }
        self.segments += 1;
    }

    /// Whether no segment was added.
    pub fn is_empty(&self) -> bool {
        self.segments == 0
    }

    /// The stored bytes of the block.
    pub fn finish(mut self) -> Vec<u8> {
        let at = HEADER_BYTES - 4;
        self.out[at..at + 4].copy_from_slice(&self.segments.to_le_bytes());
        self.out
    }
}

/// The block of `entries` (forms 2 and 3, consecutive) with their stored hashes: how
/// tools write entries back. Each run of form 2 entries is one segment, and so is each run of
/// form 3 entries that share their header fields.
pub fn segments_block(entries: &[LedgerEntry]) -> Vec<u8> {
    let (first_seq, prev) = entries
        .first()
        .map(|e| (e.seq, hash_bytes(&e.prev_hash)))
        .unwrap_or((1, [0; 32]));
    let mut w = SegmentBlockWriter::new(first_seq, &prev);
    let mut rest = entries;
    while let Some(first) = rest.first() {
        let header = HeaderRef::of(&first.entry.as_ref());
        let same_segment = |e: &LedgerEntry| {
            e.form == first.form
                && (first.form != BodyForm::SharedHeader
                    || HeaderRef::of(&e.entry.as_ref()) == header)
        };
        let n = rest.iter().take_while(|e| same_segment(e)).count();
        let (run, after) = rest.split_at(n);
        let batch = match first.form {
            BodyForm::SharedHeader => {
                EntryBatch::of_shared_header(&run.iter().map(|e| &e.entry).collect::<Vec<_>>())
            }
            _ => EntryBatch::of(run.iter().map(|e| &e.entry)),
        };
        let hashes: Vec<[u8; 32]> = run.iter().map(|e| hash_bytes(&e.hash)).collect();
        w.push(&batch, &hashes);
        rest = after;
    }
    w.finish()
}

/// Decodes a stored block into its entries, in stored order.
pub fn decode(stored: &[u8]) -> Result<Vec<LedgerEntry>, String> {
    let block = format::check("ledger block", BLOCK_VERSION, stored).map_err(|e| e.to_string())?;
    let mut r = Reader(block);
    let mut seq = r.u64()?;
    let mut prev: [u8; 32] = r.array()?;
    let segments = r.u32()?;
    let mut out = Vec::new();
    for _ in 0..segments {
        let count = r.u32()? as usize;
        let packing = Packing::from_code(r.u8()?).ok_or("unknown packing")?;
        let len = r.u32()? as usize;
        let packed = r.take(len)?;
        let (entries, form) = match packing {
            Packing::SharedHeader => (charge_rows::decode(packed, count)?, BodyForm::SharedHeader),
            Packing::Fields => {
                let rows = batch::unpack(packing, packed)?;
                let rows = batch::split_rows(&rows)?;
                if rows.len() != count {
                    return Err(format!("segment holds {} rows, says {count}", rows.len()));
                }
                let entries = rows.into_iter().map(canonical::decode);
                (entries.collect::<Result<Vec<_>, _>>()?, BodyForm::Binary)
            }
        };
        for entry in entries {
            let hash: [u8; 32] = r.array()?;
            out.push(LedgerEntry {
                seq,
                entry,
                prev_hash: hex::encode(prev),
                hash: hex::encode(hash),
                form,
            });
            seq += 1;
            prev = hash;
        }
    }
    if !r.0.is_empty() {
        return Err("trailing bytes after the last segment".into());
    }
    Ok(out)
}

fn hash_bytes(hex_hash: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    // The chain only ever holds hashes it computed itself, so this cannot fail.
    let _ = hex::decode_to_slice(hex_hash, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::entry::{chain_hash, sample_entry, NewEntry, GENESIS_HASH};

    #[test]
    fn segment_blocks_round_trip_and_chain_across_batches() {
        let first: Vec<NewEntry> = (0..7).map(sample_entry).collect();
        let second: Vec<NewEntry> = (7..20).map(sample_entry).collect();
        let genesis = [0u8; 32];
        let mut w = SegmentBlockWriter::new(1, &genesis);
        let mut prev = GENESIS_HASH.to_string();
        let mut seq = 0;
        let mut expected = Vec::new();
        for entries in [&first, &second] {
            let batch = EntryBatch::of(entries);
            let mut hashes = Vec::new();
            for (e, digest) in entries.iter().zip(batch.digests()) {
                seq += 1;
                let hash = chain_hash(seq, digest, &prev);
                hashes.push(hash_bytes(&hash));
                expected.push(LedgerEntry {
                    seq,
                    entry: e.clone(),
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                    form: BodyForm::Binary,
                });
                prev = hash;
            }
            w.push(&batch, &hashes);
        }
        let stored = w.finish();
        let decoded = decode(&stored).unwrap();
        assert_eq!(decoded, expected);
        assert!(decoded.iter().all(|e| e.expected_hash() == e.hash));
        assert!(decode(&stored[..stored.len() - 1]).is_err());
        // The one-segment form written for tools reads back the same.
        let again = segments_block(&decoded);
        assert_eq!(decode(&again).unwrap(), expected);
    }

    #[test]
    fn a_block_of_an_unknown_format_version_is_refused() {
        let entries: Vec<NewEntry> = (0..3).map(sample_entry).collect();
        let mut w = SegmentBlockWriter::new(1, &[0u8; 32]);
        w.push(&EntryBatch::of(&entries), &[[0u8; 32]; 3]);
        let mut stored = w.finish();
        assert_eq!(stored[0], BLOCK_VERSION);
        stored[0] = 7;
        assert_eq!(
            decode(&stored).unwrap_err(),
            "ledger block: format version 7 is not known to this herald"
        );
        // No packing of code 0 or 1 (raw or LZ4 rows) is read.
        stored[0] = BLOCK_VERSION;
        let packing_at = HEADER_BYTES + 4;
        assert_eq!(stored[packing_at], Packing::Fields as u8);
        for code in [0, 1, 4] {
            stored[packing_at] = code;
            assert_eq!(decode(&stored).unwrap_err(), "unknown packing");
        }
    }
}
