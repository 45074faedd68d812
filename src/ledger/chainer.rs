//! The ledger's part of every group commit: on the durable writer's thread, in commit order,
//! the round's batches are linked into the hash chain and laid out as one block
//! ([`super::block`]). Callers encoded and digested their entries already
//! ([`super::batch`]), so this only links digests and copies bytes.

use redb::Database;

use super::batch::EntryBatch;
use super::block::SegmentBlockWriter;
use super::charge_rows;
use super::entry::chain_hash_raw;
use super::store::read_head;
use crate::durable::tables::LEDGER_BLOCKS;
use crate::durable::{db_err, Chain, DurableError, Linked};

/// Where the chain stands, kept by the writer between rounds.
pub struct Chainer {
    seq: u64,
    /// The last entry's hash, in hex.
    hash: String,
    /// One request's entry hashes, for its block segment; kept across rounds for its room.
    hashes: Vec<[u8; 32]>,
}

impl Chain for Chainer {
    type Batch = EntryBatch;

    fn open(db: &Database) -> Result<Chainer, DurableError> {
        let w = db.begin_write().map_err(db_err)?;
        w.open_table(LEDGER_BLOCKS).map_err(db_err)?;
        w.commit().map_err(db_err)?;
        let (seq, hash) = read_head(db).map_err(db_err)?;
        Ok(Chainer {
            seq,
            hash,
            hashes: Vec::new(),
        })
    }

    fn reload(&mut self, db: &Database) -> Result<(), DurableError> {
        (self.seq, self.hash) = read_head(db).map_err(db_err)?;
        Ok(())
    }

    fn link<'a>(
        &mut self,
        batches: impl Iterator<Item = Option<&'a EntryBatch>> + Clone,
    ) -> Linked {
        let first_seq = self.seq + 1;
        let mut seq = self.seq;
        // The chain input takes the previous hash in hex; the block header takes it raw.
        let mut prev = [0u8; 32];
        let mut head_hex = [0u8; 64];
        let _ = hex::decode_to_slice(&self.hash, &mut prev);
        head_hex.copy_from_slice(self.hash.as_bytes().get(..64).unwrap_or(&[b'0'; 64]));
        let block_bytes = batches
            .clone()
            .flatten()
            .filter(|b| !b.is_empty())
            .map(SegmentBlockWriter::stored_len)
            .sum();
        let mut block = SegmentBlockWriter::with_capacity(first_seq, &prev, block_bytes);
        let mut all_seqs = Vec::with_capacity(batches.size_hint().0);
        // Form 3 chains over the raw previous hash; its hex is brought up to date only when a
        // form 2 entry or the round's end needs it.
        let mut hex_behind = false;
        for entries in batches {
            let Some(entries) = entries else {
                all_seqs.push(Vec::new());
                continue;
            };
            let mut seqs = Vec::with_capacity(entries.len());
            let hashes = &mut self.hashes;
            hashes.clear();
            match entries.header_digest() {
                Some(header) => {
                    for digest in entries.digests() {
                        seq += 1;
                        prev = charge_rows::chain(&prev, seq, header, digest);
                        hashes.push(prev);
                        seqs.push(seq);
                    }
                    hex_behind |= !seqs.is_empty();
                }
                None => {
                    if hex_behind {
                        let _ = hex::encode_to_slice(prev, &mut head_hex);
                        hex_behind = false;
                    }
                    for digest in entries.digests() {
                        seq += 1;
                        prev = chain_hash_raw(seq, digest, &head_hex);
                        hashes.push(prev);
                        let _ = hex::encode_to_slice(prev, &mut head_hex);
                        seqs.push(seq);
                    }
                }
            }
            if !hashes.is_empty() {
                block.push(entries, hashes);
            }
            all_seqs.push(seqs);
        }
        if hex_behind {
            let _ = hex::encode_to_slice(prev, &mut head_hex);
        }
        self.seq = seq;
        self.hash = String::from_utf8_lossy(&head_hex).into_owned();
        let block = (!block.is_empty()).then(|| (first_seq, block.finish()));
        Linked {
            seqs: all_seqs,
            block,
        }
    }
}
