//! Every Redis key herald uses, built here and nowhere else.
//!
//! Layout (`P` is the configured prefix, `v1` the format version):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{P}:v1:supp:phone` | set | suppressed E.164 numbers |
//! | `{P}:v1:supp:contact` | set | suppressed contact ids |
//! | `{P}:v1:supp:addr` | set | suppressed email addresses and push tokens (`email:...`, `push:...`) |
//! | `{P}:v1:consent:<channel>` | hash | contact id → consent code (latest override) |
//! | `{P}:v1:consent-log:<contact id>` | list | that contact's changes as JSON, oldest first |
//! | `{P}:v1:consent-since` | sorted set | every change, scored by its time (µs) |
//! | `{P}:v1:t:<tenant>:supp:…`, `…:consent:…`, `…:consent-log:…`, `…:consent-since` | as above | another tenant's suppressions and consent (the default tenant's are the keys above, as before tenants had their own) |
//! | `{P}:v1:idem:<key>` | string | fingerprint (hex) + job id |
//! | `{P}:v1:api-keys` | hash | API key id → its stored record (never the token) |
//! | `{P}:v1:quota:<tenant>:<YYYYMM>` | hash | the month's recipients counted (`used`) and each job's (`job:<id>`) |
//! | `{P:<contact key>}:v1:cap:<channel>:<purpose>` | sorted set | holder → reservation time |
//! | `{P:rate:<provider>}:v1:gcra` | string | the provider's GCRA theoretical arrival time (µs) |
//! | `{P}:v1:work:active`, `{P}:v1:work:done` | set | ids of shared jobs, running or finished |
//! | `{P}:v1:work:instances` | sorted set | live instance id → heartbeat expiry (ms) |
//! | `{P}:v1:epoch` | string | data-set marker: a Redis that lost its data lacks it |
//! | `{P:job:<id>}:v1:spec` | string | a shared job's request (JSON) |
//! | `{P:job:<id>}:v1:aud:<n>` | string | its audience, LZ4 chunks |
//! | `{P:job:<id>}:v1:ctl` | hash | status, times, recipients to settle, final so far |
//! | `{P:job:<id>}:v1:lease:<k>` | string | instance holding shard k (expires) |
//! | `{P:job:<id>}:v1:codes:<k>` | string | shard k's outcome code per position |
//! | `{P:job:<id>}:v1:shard:<k>` | hash | shard k's counts per code and delivery state, parts, cost, finals |
//! | `{P:job:<id>}:v1:dlv:<k>` | string | shard k's final delivery state per position |
//! | `{P:rcpt:<bucket>}:v1:m:<provider>:<id>` | string | job id and recipient of a sent message (expires) |
//! | `{P:cb:<bucket>}:v1:seen:<signature>` | string | a callback signature already applied (expires with the signature window) |
//!
//! Everything but caps and rate limits carries the hash tag `{P}`: in a cluster it all lives
//! in one slot, so a batch lookup (suppressions and consent for 512 recipients) stays one
//! pipeline to one node, and consent changes are written in one MULTI. Caps are the write-heavy part and
//! are spread by contact: all keys of one contact share `{P:<contact key>}`, so the
//! check-and-reserve script for a contact touches one slot only. Each provider's rate-limit
//! key has a tag of its own, so the busiest keys of a fleet land on different nodes. A
//! shared job's keys carry the job's own tag, so its commit script touches one slot and
//! different jobs spread over the nodes. A callback signature is written and read alone (one
//! `SET NX`), so it needs no slot shared with anything; its tag spreads signatures over 256
//! buckets so a burst of provider callbacks does not land on one node.

use std::borrow::Cow;

use crate::access::TenantId;
use crate::domain::{Channel, Purpose};

/// The key builder for one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
    supp_phone: String,
    supp_contact: String,
    supp_addr: String,
    consent: [String; 4],
    consent_since: String,
    work_active: String,
    work_done: String,
    work_instances: String,
}

/// The keys of one shared job (all with the job's hash tag).
pub(super) struct JobKeys {
    base: String,
}

impl JobKeys {
    pub(super) fn spec(&self) -> String {
        format!("{}spec", self.base)
    }

    pub(super) fn audience(&self, chunk: u32) -> String {
        format!("{}aud:{chunk}", self.base)
    }

    pub(super) fn control(&self) -> String {
        format!("{}ctl", self.base)
    }

    pub(super) fn lease(&self, shard: u32) -> String {
        format!("{}lease:{shard}", self.base)
    }

    pub(super) fn codes(&self, shard: u32) -> String {
        format!("{}codes:{shard}", self.base)
    }

    pub(super) fn shard(&self, shard: u32) -> String {
        format!("{}shard:{shard}", self.base)
    }

    pub(super) fn deliveries(&self, shard: u32) -> String {
        format!("{}dlv:{shard}", self.base)
    }

    /// The job's event stream: records announcing its outcomes, receipts, opens and clicks
    /// and its end, written in the same scripts as what they announce.
    pub(super) fn events(&self) -> String {
        format!("{}ev", self.base)
    }

    /// The job's opens and clicks, appended by whichever instance saw them: every instance
    /// reads them into its copy of the job, and webhooks announce them.
    pub(super) fn engaged(&self) -> String {
        format!("{}eng", self.base)
    }
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
            supp_addr: dir("supp:addr"),
            consent: CHANNELS.map(|c| dir(&format!("consent:{}", c.as_str()))),
            consent_since: dir("consent-since"),
            work_active: dir("work:active"),
            work_done: dir("work:done"),
            work_instances: dir("work:instances"),
        }
    }

    /// The data-set marker: created once, checked by every health probe.
    pub(super) fn epoch(&self) -> String {
        format!("{{{}}}:v1:epoch", self.prefix)
    }

    pub(super) fn work_active(&self) -> &str {
        &self.work_active
    }

    pub(super) fn work_done(&self) -> &str {
        &self.work_done
    }

    pub(super) fn work_instances(&self) -> &str {
        &self.work_instances
    }

    /// Where a sent message is found by its provider's id, for receipts reaching any
    /// instance. Spread over 256 hash tags. Binary-safe as far as ids are text.
    pub(super) fn receipt(&self, provider: &str, message_id: &str) -> String {
        let bucket = xxhash_rust::xxh3::xxh3_64(message_id.as_bytes()) % 256;
        format!(
            "{{{}:rcpt:{bucket:02x}}}:v1:m:{provider}:{message_id}",
            self.prefix
        )
    }

    /// The replay marker of a verified callback signature, spread over 256 hash tags.
    pub(super) fn callback_seen(&self, signature: &[u8; 32]) -> String {
        format!(
            "{{{}:cb:{:02x}}}:v1:seen:{}",
            self.prefix,
            signature[0],
            hex::encode(signature)
        )
    }

    /// A shared job's keys. Job ids are generated by herald (no braces).
    pub(super) fn job(&self, id: &str) -> JobKeys {
        JobKeys {
            base: format!("{{{}:job:{id}}}:v1:", self.prefix),
        }
    }

    /// A key of `tenant`'s directory: the default tenant's is the installation's key as it
    /// always was; another's carries a `t:<tenant>` segment under the same hash tag, so a
    /// batch lookup still touches one slot. Tenant names hold no braces.
    fn of<'a>(&'a self, tenant: &TenantId, fixed: &'a str, rest: &str) -> Cow<'a, str> {
        match tenant.is_default() {
            true => Cow::Borrowed(fixed),
            false => Cow::Owned(format!("{{{}}}:v1:t:{tenant}:{rest}", self.prefix)),
        }
    }

    pub(super) fn suppressed_phones(&self, tenant: &TenantId) -> Cow<'_, str> {
        self.of(tenant, &self.supp_phone, "supp:phone")
    }

    pub(super) fn suppressed_contacts(&self, tenant: &TenantId) -> Cow<'_, str> {
        self.of(tenant, &self.supp_contact, "supp:contact")
    }

    pub(super) fn suppressed_addresses(&self, tenant: &TenantId) -> Cow<'_, str> {
        self.of(tenant, &self.supp_addr, "supp:addr")
    }

    pub(super) fn consent(&self, tenant: &TenantId, channel: Channel) -> Cow<'_, str> {
        let rest = format!("consent:{}", channel.as_str());
        self.of(tenant, &self.consent[channel.index()], &rest)
    }

    pub(super) fn consent_since(&self, tenant: &TenantId) -> Cow<'_, str> {
        self.of(tenant, &self.consent_since, "consent-since")
    }

    /// Binary-safe: contact ids are used as given.
    pub(super) fn consent_log(&self, tenant: &TenantId, contact_id: &str) -> Vec<u8> {
        let mut k = match tenant.is_default() {
            true => format!("{{{}}}:v1:consent-log:", self.prefix),
            false => format!("{{{}}}:v1:t:{tenant}:consent-log:", self.prefix),
        }
        .into_bytes();
        k.extend_from_slice(contact_id.as_bytes());
        k
    }

    /// Every webhook endpoint registered in a fleet, by endpoint id.
    pub(super) fn webhooks(&self) -> String {
        format!("{{{}}}:v1:webhooks", self.prefix)
    }

    /// A fleet webhook endpoint's cursors: per event stream, the last entry delivered.
    pub(super) fn webhook_cursors(&self, endpoint: &str) -> String {
        format!("{{{}}}:v1:webhook:{endpoint}:cursors", self.prefix)
    }

    /// Which instance delivers a fleet webhook endpoint's events.
    pub(super) fn webhook_lease(&self, endpoint: &str) -> String {
        format!("{{{}}}:v1:webhook:{endpoint}:lease", self.prefix)
    }

    /// A tenant's contact events (opt-outs and opt-ins), which belong to no job.
    pub(super) fn contact_events(&self, tenant: &TenantId) -> String {
        format!("{{{}}}:v1:events:{tenant}", self.prefix)
    }

    /// Every API key's record, by key id.
    pub(super) fn api_keys(&self) -> String {
        format!("{{{}}}:v1:api-keys", self.prefix)
    }

    /// One tenant's quota reservations in one month (`YYYYMM`).
    pub(super) fn quota(&self, tenant: &crate::access::TenantId, month: u32) -> String {
        format!("{{{}}}:v1:quota:{tenant}:{month}", self.prefix)
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
        let (default, acme) = (TenantId::default_tenant(), TenantId::parse("acme").unwrap());
        for t in [&default, &acme] {
            for key in [
                k.suppressed_phones(t).as_bytes(),
                k.suppressed_contacts(t).as_bytes(),
                k.suppressed_addresses(t).as_bytes(),
                k.consent(t, Channel::Email).as_bytes(),
                k.consent_since(t).as_bytes(),
                &k.consent_log(t, "c{1}"),
                &k.idempotency("{evil}"),
            ] {
                assert_eq!(tag(key), b"herald");
            }
        }
        // The default tenant's keys are the ones written before tenants had their own.
        assert_eq!(k.suppressed_phones(&default), "{herald}:v1:supp:phone");
        assert_eq!(k.consent(&default, Channel::Sms), "{herald}:v1:consent:sms");
        assert_eq!(k.consent_log(&default, "c1"), b"{herald}:v1:consent-log:c1");
        assert_eq!(k.suppressed_phones(&acme), "{herald}:v1:t:acme:supp:phone");
        assert_eq!(k.consent_since(&acme), "{herald}:v1:t:acme:consent-since");
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
    fn a_shared_jobs_keys_share_its_own_slot() {
        let k = Keys::new("herald");
        let j = k.job("j1");
        let keys = [
            j.spec(),
            j.audience(3),
            j.control(),
            j.lease(2),
            j.codes(2),
            j.shard(2),
        ];
        for key in &keys {
            assert_eq!(tag(key.as_bytes()), b"herald:job:j1");
        }
        assert_ne!(tag(k.job("j2").control().as_bytes()), b"herald:job:j1");
        assert_eq!(tag(k.work_active().as_bytes()), b"herald");
    }

    #[test]
    fn callback_signatures_spread_by_their_first_byte() {
        let k = Keys::new("herald");
        let mut sig = [7u8; 32];
        let a = k.callback_seen(&sig);
        assert_eq!(tag(a.as_bytes()), b"herald:cb:07");
        assert!(a.ends_with(&hex::encode(sig)));
        sig[0] = 0xab;
        assert_eq!(tag(k.callback_seen(&sig).as_bytes()), b"herald:cb:ab");
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
