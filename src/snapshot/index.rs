//! The contact-id index: `hashbrown::HashTable<u32>` record indexes, hashed with seeded
//! xxh3 over the id bytes and compared against the id in the arena, so no id is stored twice
//! and no `String` exists per contact (about 8 bytes per contact at 10M).
//!
//! The index is split into [`SHARDS`] tables by a middle bit of the hash so that it can be
//! built on several threads at the end of a load (inserting 10M random keys is bound by
//! memory latency, not CPU). A lookup picks its shard from the same hash: no extra cost.
//! The hash seed is random per snapshot, so crafted ids cannot force collisions.
//!
//! Building also settles repeated ids: rows are inserted in file order, so the later of two
//! rows with one id replaces the earlier, and a tombstone removes it.

use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use super::arena::{as_str, read_str};
use super::error::{quoted, RowError, MAX_REPORTED_ERRORS};
use super::record::Record;

/// Number of independently built tables (a power of two).
const SHARDS: usize = 4;
/// Hash bits that pick the shard: well above the bucket bits and below hashbrown's tag bits.
const SHARD_SHIFT: u32 = 40;

/// Record indexes by contact id.
#[derive(Debug)]
pub(crate) struct IdIndex {
    seed: u64,
    shards: Box<[HashTable<u32>]>,
}

/// What building the index found out about repeated ids.
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    /// Records superseded by a later row, deleted by a tombstone, or tombstones themselves.
    pub(crate) dead: Vec<u32>,
    /// Rows whose id repeated an earlier live row.
    pub(crate) duplicates: usize,
    /// "repeats line N" notes for the first duplicates, in line order.
    pub(crate) notes: Vec<RowError>,
}

#[inline]
fn shard_of(hash: u64) -> usize {
    (hash >> SHARD_SHIFT) as usize & (SHARDS - 1)
}

#[inline]
fn id_of<'a>(records: &[Record], arena: &'a [u8], i: u32) -> &'a [u8] {
    records
        .get(i as usize)
        .map_or(&[][..], |r| read_str(arena, r.blob as usize).0)
}

impl IdIndex {
    /// An index of nothing.
    pub(crate) fn empty() -> IdIndex {
        IdIndex {
            seed: random_seed(),
            shards: (0..SHARDS).map(|_| HashTable::new()).collect(),
        }
    }

    /// Indexes `records` (ids in `arena`; `lines` gives each record's input line for the
    /// notes), on up to [`SHARDS`] threads.
    pub(crate) fn build(records: &[Record], arena: &[u8], lines: &[u32]) -> (IdIndex, Dedup) {
        let seed = random_seed();
        let per_shard = records.len() / SHARDS + records.len() / 100 + 1024;
        let mut shards: Vec<HashTable<u32>> = (0..SHARDS)
            .map(|_| HashTable::with_capacity(per_shard))
            .collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, SHARDS);
        // Threads must split the shards evenly: use the largest power of two that fits.
        let threads = 1 << threads.ilog2();
        let per_thread = SHARDS / threads;
        let parts: Vec<Dedup> = std::thread::scope(|scope| {
            let handles: Vec<_> = shards
                .chunks_mut(per_thread)
                .enumerate()
                .map(|(t, mine)| {
                    let first = t * per_thread;
                    scope.spawn(move || fill(mine, first, seed, records, arena, lines))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let mut dedup = Dedup::default();
        for part in parts {
            dedup.dead.extend(part.dead);
            dedup.duplicates += part.duplicates;
            dedup.notes.extend(part.notes);
        }
        dedup.notes.sort_by_key(|n| n.line);
        dedup.notes.truncate(MAX_REPORTED_ERRORS);
        let index = IdIndex {
            seed,
            shards: shards.into_boxed_slice(),
        };
        (index, dedup)
    }

    /// The hash of an id under this index's seed.
    #[inline]
    pub(crate) fn hash(&self, id: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(id, self.seed)
    }

    /// The record whose id satisfies `eq`, among those with this hash.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.shards
            .get(shard_of(hash))?
            .find(hash, |&i| eq(i))
            .copied()
    }

    /// The first record whose tag bits match this hash, without comparing ids: for batched
    /// lookups that fetch the candidates' records before comparing.
    #[inline]
    pub(crate) fn candidate(&self, hash: u64) -> Option<u32> {
        self.shards
            .get(shard_of(hash))?
            .iter_hash(hash)
            .next()
            .copied()
    }

    /// Heap bytes held by the tables.
    pub(crate) fn allocation_size(&self) -> usize {
        self.shards.iter().map(HashTable::allocation_size).sum()
    }
}

/// A per-snapshot hash seed.
fn random_seed() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64)
}

/// Inserts every record whose id hashes to shards `first..first + mine.len()`, in file order.
fn fill(
    mine: &mut [HashTable<u32>],
    first: usize,
    seed: u64,
    records: &[Record],
    arena: &[u8],
    lines: &[u32],
) -> Dedup {
    let mut dedup = Dedup::default();
    let line_of = |i: u32| lines.get(i as usize).copied().unwrap_or(0);
    for (i, record) in (0u32..).zip(records) {
        let id = read_str(arena, record.blob as usize).0;
        let hash = xxhash_rust::xxh3::xxh3_64_with_seed(id, seed);
        let Some(table) = shard_of(hash)
            .checked_sub(first)
            .and_then(|s| mine.get_mut(s))
        else {
            continue;
        };
        let entry = table.entry(
            hash,
            |&j| id_of(records, arena, j) == id,
            |&j| xxhash_rust::xxh3::xxh3_64_with_seed(id_of(records, arena, j), seed),
        );
        match (entry, record.is_tombstone()) {
            (Entry::Occupied(mut slot), false) => {
                let earlier = std::mem::replace(slot.get_mut(), i);
                dedup.dead.push(earlier);
                dedup.duplicates += 1;
                if dedup.notes.len() < MAX_REPORTED_ERRORS {
                    dedup.notes.push(RowError {
                        line: u64::from(line_of(i)),
                        message: format!(
                            "contact_id: {} repeats line {}; this later row replaces it",
                            quoted(as_str(id)),
                            line_of(earlier)
                        ),
                    });
                }
            }
            (Entry::Occupied(slot), true) => {
                let (earlier, _) = slot.remove();
                dedup.dead.extend([earlier, i]);
            }
            (Entry::Vacant(slot), false) => {
                slot.insert(i);
            }
            (Entry::Vacant(_), true) => dedup.dead.push(i),
        }
    }
    dedup
}
