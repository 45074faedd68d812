//! Every Redis key herald uses, built here and nowhere else.
//!
//! Layout (`P` is the configured prefix, `v1` the format version):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{P}:v1:supp:phone` | set | suppressed E.164 numbers |
//! | `{P}:v1:supp:contact` | set | suppressed contact ids |
//! | `{P}:v1:consent:<channel>` | hash | contact id → consent code (latest override) |
//! | `{P}:v1:consent-log:<contact id>` | list | that contact's changes as JSON, oldest first |
//! | `{P}:v1:consent-since` | sorted set | every change, scored by its time (µs) |
//! | `{P}:v1:idem:<key>` | string | fingerprint (hex) + job id |
//! | `{P}:v1:jobs` | hash | job id → record JSON |
//! | `{P:<contact key>}:v1:cap:<channel>:<purpose>` | sorted set | holder → reservation time |
//! | `{P:rate:<provider>}:v1:gcra` | string | the provider's GCRA theoretical arrival time (µs) |
//!
//! Everything but caps and rate limits carries the hash tag `{P}`: in a cluster it all lives
//! in one slot, so a batch lookup (suppressions and consent for 512 recipients) stays one
//! pipeline to one node, and consent changes are written in one MULTI. Caps are the write-heavy part and
//! are spread by contact: all keys of one contact share `{P:<contact key>}`, so the
//! check-and-reserve script for a contact touches one slot only. Each provider's rate-limit
//! key has a tag of its own, so the busiest keys of a fleet land on different nodes.

use crate::domain::{Channel, Purpose};

/// The key builder for one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
    supp_phone: String,
    supp_contact: String,
    consent: [String; 4],
    consent_since: String,
    jobs: String,
}

const CHANNELS: [Channel; 4] = [Channel::Sms, Channel::Email, Channel::Push, Channel::Wechat];

impl Keys {
    /// Keys under `prefix` (validated by the config: no braces, spaces or glob characters).
    pub(super) fn new(prefix: &str) -> Keys {
        let dir = |rest: &str| format!("{{{prefix}}}:v1:{rest}");
        Keys {
            prefix: prefix.to_string(),
            supp_phone: dir("supp:phone"),
            supp_contact: dir("supp:contact"),
            consent: CHANNELS.map(|c| dir(&format!("consent:{}", c.as_str()))),
            consent_since: dir("consent-since"),
            jobs: dir("jobs"),
        }
    }

    pub(super) fn suppressed_phones(&self) -> &str {
        &self.supp_phone
    }

    pub(super) fn suppressed_contacts(&self) -> &str {
        &self.supp_contact
    }

    pub(super) fn consent(&self, channel: Channel) -> &str {
        &self.consent[channel.index()]
    }

    pub(super) fn consent_since(&self) -> &str {
        &self.consent_since
    }

    pub(super) fn jobs(&self) -> &str {
        &self.jobs
    }

    /// Binary-safe: contact ids are used as given.
    pub(super) fn consent_log(&self, contact_id: &str) -> Vec<u8> {
        let mut k = format!("{{{}}}:v1:consent-log:", self.prefix).into_bytes();
        k.extend_from_slice(contact_id.as_bytes());
        k
    }

    /// Binary-safe: idempotency keys are used as the client sent them.
    pub(super) fn idempotency(&self, key: &str) -> Vec<u8> {
        let mut k = format!("{{{}}}:v1:idem:", self.prefix).into_bytes();
        k.extend_from_slice(key.as_bytes());
        k
    }

    /// A provider's shared rate-limit bucket. Binary-safe: provider names are used as
    /// configured (a `}` in one ends the hash tag early, which still names one slot).
    pub(super) fn rate_limit(&self, provider: &str) -> Vec<u8> {
        let mut k = format!("{{{}:rate:", self.prefix).into_bytes();
        k.extend_from_slice(provider.as_bytes());
        k.extend_from_slice(b"}:v1:gcra");
        k
    }

    /// One contact's reservations for one kind of send.
    pub(super) fn cap(&self, contact_key: u64, channel: Channel, purpose: Purpose) -> String {
        format!(
            "{{{}:{contact_key:016x}}}:v1:cap:{}:{}",
            self.prefix,
            channel.as_str(),
            purpose.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash tag Redis Cluster uses to pick the slot: the text inside the first `{...}`.
    fn tag(key: &[u8]) -> &[u8] {
        let open = key.iter().position(|b| *b == b'{').expect("tagged");
        let close = key[open..].iter().position(|b| *b == b'}').expect("closed") + open;
        &key[open + 1..close]
    }

    #[test]
    fn directory_keys_share_one_slot_and_caps_one_per_contact() {
        let k = Keys::new("herald");
        for key in [
            k.suppressed_phones().as_bytes(),
            k.suppressed_contacts().as_bytes(),
            k.consent(Channel::Email).as_bytes(),
            k.consent_since().as_bytes(),
            k.jobs().as_bytes(),
            &k.consent_log("c{1}"),
            &k.idempotency("{evil}"),
        ] {
            assert_eq!(tag(key), b"herald");
        }
        let a = k.cap(0xabc, Channel::Sms, Purpose::Marketing);
        let b = k.cap(0xabc, Channel::Email, Purpose::Transactional);
        assert_eq!(a, "{herald:0000000000000abc}:v1:cap:sms:marketing");
        assert_eq!(tag(a.as_bytes()), tag(b.as_bytes()));
        assert_ne!(
            tag(a.as_bytes()),
            tag(k.cap(0xabd, Channel::Sms, Purpose::Marketing).as_bytes())
        );
    }

    #[test]
    fn each_provider_bucket_has_a_slot_of_its_own() {
        let k = Keys::new("herald");
        let sms = k.rate_limit("sms-main");
        assert_eq!(sms, b"{herald:rate:sms-main}:v1:gcra");
        assert_eq!(tag(&sms), b"herald:rate:sms-main");
        assert_ne!(tag(&sms), tag(&k.rate_limit("sms-backup")));
        // Cap tags are 16 hex digits after the prefix; "rate:" can never be one.
        assert_ne!(
            tag(&sms),
            tag(k.cap(0, Channel::Sms, Purpose::Marketing).as_bytes())
        );
    }
}
