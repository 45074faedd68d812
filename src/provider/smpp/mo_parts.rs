//! Reassembly of mobile-originated replies sent in several parts (a 3GPP TS 23.040 user data
//! header with an 8- or 16-bit reference, or the SAR TLVs), so that keywords are matched on
//! the whole reply: a long UCS-2 reply ending in "退订" still opts out.
//!
//! Parts are joined as octets before the text is decoded (a UCS-2 character may straddle two
//! parts). Parts of one reply may come on any bind, so one reassembly serves the provider.
//! Memory is bounded: at most `max_replies` replies wait for parts, the oldest dropped past
//! it; a reply still missing parts after `timeout` is dropped (logged), never applied in
//! part. Each part is acknowledged as it is held, so parts held at a crash are lost.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Information element ids of the concatenation headers.
const IEI_CONCAT_8BIT: u8 = 0x00;
const IEI_CONCAT_16BIT: u8 = 0x08;

/// One part of a reply, its header already read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoPart {
    pub from: String,
    pub reference: u16,
    pub total: u8,
    /// 1-based.
    pub seq: u8,
    pub data_coding: u8,
    /// The part's text octets, without its header.
    pub body: Vec<u8>,
}

/// A whole reply: its `data_coding` and its octets in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled {
    pub from: String,
    pub data_coding: u8,
    pub body: Vec<u8>,
}

/// A part's place in its reply: (reference, total, seq).
pub type Concat = (u16, u8, u8);

/// The concatenation of a user data header, and the text after the header. `None` when the
/// header is malformed or carries no concatenation element.
pub fn concat_from_udh(short_message: &[u8]) -> Option<(Concat, &[u8])> {
    let udhl = usize::from(*short_message.first()?);
    let header = short_message.get(1..1 + udhl)?;
    let text = short_message.get(1 + udhl..)?;
    let mut at = 0;
    while at + 2 <= header.len() {
        let (iei, len) = (header[at], usize::from(header[at + 1]));
        let data = header.get(at + 2..at + 2 + len)?;
        match (iei, data) {
            (IEI_CONCAT_8BIT, &[r, total, seq]) => return Some(((u16::from(r), total, seq), text)),
            (IEI_CONCAT_16BIT, &[hi, lo, total, seq]) => {
                return Some(((u16::from_be_bytes([hi, lo]), total, seq), text))
            }
            _ => at += 2 + len,
        }
    }
    None
}

type Key = (String, u16, u8);

struct Waiting {
    first_at: Instant,
    data_coding: u8,
    parts: Vec<Option<Vec<u8>>>,
}

/// Replies waiting for their parts.
pub struct MoReassembly {
    timeout: Duration,
    max_replies: usize,
    waiting: Mutex<HashMap<Key, Waiting>>,
}

impl MoReassembly {
    pub fn new(timeout: Duration, max_replies: usize) -> MoReassembly {
        MoReassembly {
            timeout,
            max_replies: max_replies.max(1),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Holds a part; answers the whole reply when this part completes it. A part that does
    /// not fit its header (seq 0 or past total) is dropped.
    pub fn add(&self, part: MoPart, now: Instant) -> Option<Reassembled> {
        if part.seq == 0 || part.seq > part.total {
            return None;
        }
        if part.total == 1 {
            return Some(Reassembled {
                from: part.from,
                data_coding: part.data_coding,
                body: part.body,
            });
        }
        let mut waiting = self.waiting.lock();
        self.expire(&mut waiting, now);
        let key = (part.from.clone(), part.reference, part.total);
        if !waiting.contains_key(&key) && waiting.len() >= self.max_replies {
            if let Some(oldest) = waiting
                .iter()
                .min_by_key(|(_, w)| w.first_at)
                .map(|(k, _)| k.clone())
            {
                waiting.remove(&oldest);
                tracing::warn!("a multipart reply was dropped: too many replies wait for parts");
            }
        }
        let entry = waiting.entry(key.clone()).or_insert_with(|| Waiting {
            first_at: now,
            data_coding: part.data_coding,
            parts: vec![None; usize::from(part.total)],
        });
        entry.parts[usize::from(part.seq - 1)] = Some(part.body);
        if entry.parts.iter().any(Option::is_none) {
            return None;
        }
        let done = waiting.remove(&key)?;
        Some(Reassembled {
            from: part.from,
            data_coding: done.data_coding,
            body: done.parts.into_iter().flatten().flatten().collect(),
        })
    }

    /// Replies waiting for parts now.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().len()
    }

    fn expire(&self, waiting: &mut HashMap<Key, Waiting>, now: Instant) {
        let before = waiting.len();
        waiting.retain(|_, w| now.duration_since(w.first_at) < self.timeout);
        if waiting.len() < before {
            tracing::warn!(
                dropped = before - waiting.len(),
                "multipart replies dropped: parts missing past the timeout"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(from: &str, reference: u16, total: u8, seq: u8, body: &[u8]) -> MoPart {
        MoPart {
            from: from.into(),
            reference,
            total,
            seq,
            data_coding: 8,
            body: body.to_vec(),
        }
    }

    #[test]
    fn headers_of_both_reference_sizes_are_read() {
        // TS 23.040 9.2.3.24.1 and .8: 05 00 03 ref total seq; 06 08 04 refhi reflo total seq.
        let eight = [0x05, 0x00, 0x03, 0x2a, 0x02, 0x01, 0x00, 0x41];
        assert_eq!(
            concat_from_udh(&eight),
            Some(((0x2a, 2, 1), &[0x00, 0x41][..]))
        );
        let sixteen = [0x06, 0x08, 0x04, 0x12, 0x34, 0x03, 0x03, 0x61];
        assert_eq!(
            concat_from_udh(&sixteen),
            Some(((0x1234, 3, 3), &[0x61][..]))
        );
        // Another element first (a port address), then the concatenation.
        let mixed = [
            0x0b, 0x05, 0x04, 0x0b, 0x84, 0x23, 0xf0, 0x00, 0x03, 0x07, 0x02, 0x02, 0x62,
        ];
        assert_eq!(concat_from_udh(&mixed), Some(((7, 2, 2), &[0x62][..])));
        assert_eq!(concat_from_udh(&[0x05, 0x00, 0x03]), None);
        assert_eq!(concat_from_udh(&[0x03, 0x24, 0x01, 0x01, 0x41]), None);
    }

    #[test]
    fn parts_in_any_order_make_one_reply_once() {
        let r = MoReassembly::new(Duration::from_secs(60), 10);
        let t = Instant::now();
        assert_eq!(r.add(part("+86131", 7, 3, 3, b"c"), t), None);
        assert_eq!(r.add(part("+86131", 7, 3, 1, b"a"), t), None);
        // Another sender's part with the same reference does not mix in.
        assert_eq!(r.add(part("+86132", 7, 3, 2, b"X"), t), None);
        let whole = r.add(part("+86131", 7, 3, 2, b"b"), t).expect("complete");
        assert_eq!(whole.body, b"abc");
        assert_eq!(whole.from, "+86131");
        assert_eq!(r.waiting(), 1);
        assert_eq!(r.add(part("+86131", 7, 3, 9, b"?"), t), None);
    }

    #[test]
    fn missing_parts_time_out_and_memory_is_bounded() {
        let r = MoReassembly::new(Duration::from_secs(60), 2);
        let t = Instant::now();
        r.add(part("a", 1, 2, 1, b"a1"), t);
        r.add(part("b", 1, 2, 1, b"b1"), t + Duration::from_secs(1));
        // A third waiting reply pushes out the oldest.
        r.add(part("c", 1, 2, 1, b"c1"), t + Duration::from_secs(2));
        assert_eq!(r.waiting(), 2);
        assert_eq!(
            r.add(part("a", 1, 2, 2, b"a2"), t + Duration::from_secs(3)),
            None
        );
        // Past the timeout the rest are dropped: a late part starts afresh.
        let late = t + Duration::from_secs(120);
        assert_eq!(r.add(part("b", 1, 2, 2, b"b2"), late), None);
        assert_eq!(r.waiting(), 1);
    }
}
