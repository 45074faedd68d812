//! Entries as a caller hands them to the ledger: already in their canonical binary form and
//! digested, so the work that grows with the number of sends (encoding, hashing, packing)
//! runs on the callers' threads in parallel, and the single chain writer only links digests
//! and copies bytes.

use std::sync::Arc;

use super::canonical::{self, EntryRef};
use super::charge_rows::{self, HeaderRef, RowRef};
use super::entry::{body_digest, NewEntry};
use super::packed_rows::{self, RowPacker};

/// How a batch's rows are stored: one packing per canonical form, so the code also names the
/// form of the batch's entries. Codes 0 and 1 are not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// Form 2 rows, each row's fields written against the row before ([`super::packed_rows`]).
    Fields = 2,
    /// Form 3: the batch's shared fields once, then compact rows ([`super::charge_rows`]),
    /// stored as they were hashed.
    SharedHeader = 3,
}

impl Packing {
    /// The packing a stored code names.
    pub fn from_code(code: u8) -> Option<Packing> {
        match code {
            2 => Some(Packing::Fields),
            3 => Some(Packing::SharedHeader),
            _ => None,
        }
    }
}

/// Builds one batch, entry by entry.
#[derive(Default)]
pub struct EntryBatchBuilder {
    /// The canonical row being digested, reused from entry to entry.
    row: Vec<u8>,
    packer: RowPacker,
    digests: Vec<[u8; 32]>,
}

impl EntryBatchBuilder {
    /// An empty batch with room for about `n` entries.
    pub fn with_capacity(n: usize) -> EntryBatchBuilder {
        EntryBatchBuilder {
            row: Vec::with_capacity(256),
            packer: RowPacker::with_capacity(n),
            digests: Vec::with_capacity(n),
        }
    }

    /// Adds an entry: the digest of its canonical row, and the row packed for storage.
    pub fn push(&mut self, e: &EntryRef<'_>) {
        self.row.clear();
        canonical::encode(e, &mut self.row);
        self.digests.push(body_digest(&self.row));
        self.packer.push(e);
    }

    /// The batch, ready for the ledger.
    pub fn finish(self) -> EntryBatch {
        EntryBatch(Arc::new(Sealed {
            packing: Packing::Fields,
            packed: self.packer.finish(),
            digests: self.digests,
            header: None,
        }))
    }
}

/// Builds one batch of form 3 entries that share kind, job, campaign, channel, provider,
/// currency and time (a chunk's charges): each entry is encoded once, into the bytes that are
/// both stored and digested.
pub struct SharedHeaderBatchBuilder {
    packed: Vec<u8>,
    header: [u8; 32],
    digests: Vec<[u8; 32]>,
}

impl SharedHeaderBatchBuilder {
    /// An empty batch of entries with the shared fields `header`, with room for `n` entries.
    pub fn new(header: &HeaderRef<'_>, n: usize) -> SharedHeaderBatchBuilder {
        let mut packed = Vec::with_capacity(64 + 40 * n);
        charge_rows::encode_header(header, &mut packed);
        SharedHeaderBatchBuilder {
            header: charge_rows::digest(&packed),
            packed,
            digests: Vec::with_capacity(n),
        }
    }

    /// Adds an entry: its row, stored and digested.
    pub fn push(&mut self, row: &RowRef<'_>) {
        let at = self.packed.len();
        charge_rows::encode_row(row, &mut self.packed);
        self.digests.push(charge_rows::digest(&self.packed[at..]));
    }

    /// The batch, ready for the ledger.
    pub fn finish(self) -> EntryBatch {
        EntryBatch(Arc::new(Sealed {
            packing: Packing::SharedHeader,
            packed: self.packed,
            digests: self.digests,
            header: Some(self.header),
        }))
    }
}

struct Sealed {
    packing: Packing,
    packed: Vec<u8>,
    digests: Vec<[u8; 32]>,
    /// Form 3: the digest of the shared header (the entries' digests are their rows').
    header: Option<[u8; 32]>,
}

/// Entries ready for the ledger; cheap to clone, so a caller keeps it to try a failed commit
/// again.
#[derive(Clone)]
pub struct EntryBatch(Arc<Sealed>);

impl EntryBatch {
    /// A batch of no entries.
    pub fn empty() -> EntryBatch {
        EntryBatch(Arc::new(Sealed {
            packing: Packing::Fields,
            packed: Vec::new(),
            digests: Vec::new(),
            header: None,
        }))
    }

    /// The batch of `entries`, in order.
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a NewEntry>) -> EntryBatch {
        let mut b = EntryBatchBuilder::default();
        for e in entries {
            b.push(&e.as_ref());
        }
        b.finish()
    }

    /// The form 3 batch of `entries`, which share the header fields of the first.
    pub fn of_shared_header(entries: &[&NewEntry]) -> EntryBatch {
        let Some(first) = entries.first() else {
            return EntryBatch::empty();
        };
        let mut b = SharedHeaderBatchBuilder::new(&HeaderRef::of(&first.as_ref()), entries.len());
        for e in entries {
            b.push(&RowRef::of(&e.as_ref()));
        }
        b.finish()
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.0.digests.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.digests.is_empty()
    }

    /// The digests of the entries' canonical rows, in order.
    pub fn digests(&self) -> &[[u8; 32]] {
        &self.0.digests
    }

    /// For form 3 entries, the digest of their shared header; `None` for form 2.
    pub fn header_digest(&self) -> Option<&[u8; 32]> {
        self.0.header.as_ref()
    }

    /// How the rows are packed, and the packed bytes.
    pub fn packed(&self) -> (Packing, &[u8]) {
        (self.0.packing, &self.0.packed)
    }
}

/// Splits unpacked rows into the rows themselves.
pub fn split_rows(mut rows: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    while !rows.is_empty() {
        if rows.len() < 4 {
            return Err("row length truncated".into());
        }
        let n = u32::from_le_bytes([rows[0], rows[1], rows[2], rows[3]]) as usize;
        let rest = &rows[4..];
        if rest.len() < n {
            return Err("row truncated".into());
        }
        out.push(&rest[..n]);
        rows = &rest[n..];
    }
    Ok(out)
}

/// The canonical form 2 rows of a packed batch, each after its `u32` length.
pub fn unpack(packing: Packing, packed: &[u8]) -> Result<Vec<u8>, String> {
    match packing {
        Packing::Fields => packed_rows::unpack(packed),
        Packing::SharedHeader => Err("form 3 batches hold no canonical form 2 rows".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::entry::{canonical_body, sample_entry, BodyForm};

    #[test]
    fn a_batch_holds_each_row_and_its_digest() {
        let entries: Vec<NewEntry> = (0..30).map(sample_entry).collect();
        let batch = EntryBatch::of(&entries);
        assert_eq!(batch.len(), 30);
        let (packing, packed) = batch.packed();
        let rows = unpack(packing, packed).unwrap();
        let rows = split_rows(&rows).unwrap();
        assert_eq!(rows.len(), 30);
        for ((row, e), digest) in rows.iter().zip(&entries).zip(batch.digests()) {
            assert_eq!(*row, canonical_body(e, BodyForm::Binary).as_slice());
            assert_eq!(body_digest(row), *digest);
            assert_eq!(&canonical::decode(row).unwrap(), e);
        }
        assert!(EntryBatch::empty().is_empty());
    }
}
