//! `frequency_capped`: "at most N messages per contact per window", across all jobs and
//! campaigns. Checked last, as one atomic check-and-reserve per batch in the state store, so a
//! cap slot is only taken for a message that will really go, and racing jobs cannot exceed it.

use xxhash_rust::xxh3::xxh3_64;

use crate::config::FrequencyCapConfig;
use crate::domain::{Channel, Purpose};
use crate::store::{CapRequest, CapRule};

/// The cap rules from the configuration.
pub fn rules_from_config(caps: &[FrequencyCapConfig]) -> Vec<CapRule> {
    caps.iter()
        .map(|c| CapRule {
            channel: c.channel,
            purpose: c.purpose,
            max: c.max,
            window_seconds: c.window_seconds.min(i64::MAX as u64) as i64,
        })
        .collect()
}

/// The cap request for one contact. Keys are 64-bit hashes of contact ids: a collision
/// (about one in 10^12 pairs) would make two contacts share a cap, never exceed one.
pub fn request(contact_id: &str, channel: Channel, purpose: Purpose) -> CapRequest {
    CapRequest {
        contact_key: xxh3_64(contact_id.as_bytes()),
        channel,
        purpose,
    }
}

/// Whether any rule applies to (channel, purpose), so the store call can be skipped.
pub fn applies(rules: &[CapRule], channel: Channel, purpose: Purpose) -> bool {
    rules
        .iter()
        .any(|r| r.channel == channel && r.purpose == purpose)
}
