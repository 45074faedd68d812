//! The SMSC gives every part of a long message its own id, and most send a receipt per part.
//! Herald knows a message by the id of its last part, so the receipt of any part is turned
//! into a receipt of part `k` of `n` under that id (the callbacks pipeline then counts the
//! message delivered when every part is, undelivered as soon as one is not).
//!
//! Part ids are kept here from the moment each part is accepted, normalised as the
//! provider's `message_id_format` says, as 128-bit keys. A receipt for a part of a message
//! still being sent cannot be named yet: the SMSC is asked to deliver it again later. The
//! memory is bounded: past `capacity` ids the oldest are forgotten (their receipts then read
//! as unknown ids, like a receipt for a message never sent).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::callbacks::message_id::{self, MessageKey};
use crate::config::MessageIdFormat;
use crate::dispatch::delivery::MAX_PARTS;

/// One long message being sent or sent.
#[derive(Debug)]
pub struct LongMessage {
    total: u8,
    /// Unset while its parts are being sent; then the last part's id, or `None` when the
    /// message failed before its last part (it will be sent again under new ids).
    last: OnceLock<Option<Arc<str>>>,
}

impl LongMessage {
    /// A message of `total` parts about to be sent.
    pub fn new(total: usize) -> Arc<LongMessage> {
        Arc::new(LongMessage {
            total: total.min(usize::from(u8::MAX)) as u8,
            last: OnceLock::new(),
        })
    }

    /// Every part is accepted; `last_id` is the id herald keeps.
    pub fn finish(&self, last_id: &str) {
        let _ = self.last.set(Some(Arc::from(last_id)));
    }

    /// A part failed: receipts of the parts already accepted are dropped.
    pub fn abandon(&self) {
        let _ = self.last.set(None);
    }
}

/// What a receipt's id refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Not a part of a long message: the receipt covers the whole message as it is.
    Whole,
    /// Part `part` of `total` of the message herald knows as `message_id`.
    Part {
        message_id: Arc<str>,
        part: u8,
        total: u8,
    },
    /// A part of a message still being sent: ask for the receipt again later.
    NotYet,
    /// A part of a message that failed and will be sent again: drop the receipt.
    Abandoned,
}

/// Part ids of recent long messages.
pub struct PartIds {
    format: MessageIdFormat,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    parts: HashMap<MessageKey, (Arc<LongMessage>, u8)>,
    order: VecDeque<MessageKey>,
}

impl PartIds {
    pub fn new(format: MessageIdFormat, capacity: usize) -> PartIds {
        PartIds {
            format,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn key(&self, id: &str) -> Option<MessageKey> {
        message_id::key(0, self.format, id)
    }

    /// Part `part` (1-based) of `message` was accepted under `id`.
    pub fn accepted(&self, id: &str, message: &Arc<LongMessage>, part: usize) {
        let Some(key) = self.key(id) else { return };
        let mut inner = self.inner.lock();
        while inner.order.len() >= self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.parts.remove(&old);
            }
        }
        let part = part.min(usize::from(u8::MAX)) as u8;
        if inner.parts.insert(key, (message.clone(), part)).is_none() {
            inner.order.push_back(key);
        }
    }

    /// What a receipt for `id` refers to.
    pub fn resolve(&self, id: &str) -> Resolved {
        let Some(key) = self.key(id) else {
            return Resolved::Whole;
        };
        let Some((message, part)) = self.inner.lock().parts.get(&key).cloned() else {
            return Resolved::Whole;
        };
        match message.last.get() {
            None => Resolved::NotYet,
            Some(None) => Resolved::Abandoned,
            // The pipeline tracks at most MAX_PARTS parts; a longer message's receipts
            // count for the whole message when they name its last part.
            Some(Some(_)) if message.total > MAX_PARTS && part != message.total => {
                Resolved::Abandoned
            }
            Some(Some(last)) if message.total > MAX_PARTS => Resolved::Part {
                message_id: last.clone(),
                part: 1,
                total: 1,
            },
            Some(Some(last)) => Resolved::Part {
                message_id: last.clone(),
                part,
                total: message.total,
            },
        }
    }

    /// Ids kept.
    pub fn len(&self) -> usize {
        self.inner.lock().parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_resolve_to_the_last_id_once_the_message_is_sent() {
        let ids = PartIds::new(MessageIdFormat::Hex, 100);
        let m = LongMessage::new(3);
        ids.accepted("0A", &m, 1);
        assert_eq!(ids.resolve("0x0a"), Resolved::NotYet);
        ids.accepted("0B", &m, 2);
        ids.accepted("0C", &m, 3);
        m.finish("0C");
        let part = |p| Resolved::Part {
            message_id: Arc::from("0C"),
            part: p,
            total: 3,
        };
        assert_eq!(ids.resolve("a"), part(1));
        assert_eq!(ids.resolve("0B"), part(2));
        assert_eq!(ids.resolve("0c"), part(3));
        assert_eq!(ids.resolve("ff"), Resolved::Whole);
        assert_eq!(ids.resolve("not hex"), Resolved::Whole);
    }

    #[test]
    fn a_failed_message_drops_its_receipts() {
        let ids = PartIds::new(MessageIdFormat::Opaque, 100);
        let m = LongMessage::new(2);
        ids.accepted("p1", &m, 1);
        m.abandon();
        m.finish("late");
        assert_eq!(ids.resolve("p1"), Resolved::Abandoned);
    }

    #[test]
    fn memory_is_bounded_oldest_first() {
        let ids = PartIds::new(MessageIdFormat::Decimal, 4);
        let m = LongMessage::new(2);
        for i in 0..10 {
            ids.accepted(&i.to_string(), &m, 1);
        }
        m.finish("9");
        assert_eq!(ids.len(), 4);
        assert_eq!(ids.resolve("5"), Resolved::Whole);
        assert!(matches!(ids.resolve("6"), Resolved::Part { .. }));
    }
}
