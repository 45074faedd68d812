//! Idempotency keys whose request this process is handling right now. A key is claimed in
//! the state store before its job is recorded, so a retry that arrives meanwhile would find a
//! claim with no job behind it: it is told to retry shortly instead. Once no request holds a
//! key, a claim without a job is one whose request failed or died before its job was
//! recorded (see [`super::Intake::submit`]).

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;

/// The keys being handled, one request each.
#[derive(Debug, Default)]
pub struct KeysInFlight(Mutex<HashSet<String>>);

impl KeysInFlight {
    /// Marks `key` as handled by the caller until the answer drops; `None` while another
    /// request of this process holds it.
    pub fn enter(self: &Arc<Self>, key: &str) -> Option<KeyInFlight> {
        if !self.0.lock().insert(key.to_string()) {
            return None;
        }
        Some(KeyInFlight {
            keys: self.clone(),
            key: key.to_string(),
        })
    }
}

/// One request's hold on its key; dropping it (answered, failed or cancelled) lets it go.
#[derive(Debug)]
pub struct KeyInFlight {
    keys: Arc<KeysInFlight>,
    key: String,
}

impl Drop for KeyInFlight {
    fn drop(&mut self) {
        self.keys.0.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_held_by_one_request_until_it_lets_go() {
        let keys = Arc::new(KeysInFlight::default());
        let first = keys.enter("k").expect("free");
        assert!(keys.enter("k").is_none(), "held by the first");
        let other = keys.enter("other").expect("another key is free");
        drop(first);
        assert!(keys.enter("k").is_some(), "free again once let go");
        drop(other);
    }
}
