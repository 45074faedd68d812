//! `duplicate`: the same contact twice in one job gets one message. Applied as the audience
//! is taken in, so later stages never see the repeat.

use hashbrown::HashSet;
use xxhash_rust::xxh3::xxh3_128;

/// Remembers the contact ids seen so far in one job's audience.
#[derive(Default)]
pub struct DedupFilter {
    /// 128-bit hashes: a false "duplicate" would need a collision among 2^128 values.
    seen: HashSet<u128>,
}

impl DedupFilter {
    /// An empty filter.
    pub fn new() -> DedupFilter {
        DedupFilter::default()
    }

    /// True the first time a contact id is offered, false for every repeat.
    pub fn first_time(&mut self, contact_id: &str) -> bool {
        self.seen.insert(xxh3_128(contact_id.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_caught() {
        let mut d = DedupFilter::new();
        assert!(d.first_time("c1"));
        assert!(d.first_time("c2"));
        assert!(!d.first_time("c1"));
    }
}
