//! The in-memory state backend: the embedded default for hot state, and the reference the
//! other backends are tested against.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dashmap::DashMap;

use super::tenant_scope;
use super::{
    CapRequest, CapRule, ConsentChange, FactsQuery, IdempotencyClaim, QuotaAnswer,
    QuotaReservation, RecipientFacts, StateStore, StoreError, SuppressionKey,
};
use crate::access::{StoredKey, TenantId};
use crate::domain::{Channel, Consent, JobId, Purpose};

/// State held in concurrent maps; lost on restart (durable backends keep it).
#[derive(Default)]
pub struct MemoryStore {
    suppressed_phones: DashMap<u64, ()>,
    suppressed_contacts: DashMap<String, ()>,
    /// Suppressed email addresses and push tokens, by their entry (`email:...`, `push:...`).
    suppressed_addresses: DashMap<String, ()>,
    /// Consent recorded after the snapshot, per contact and channel (indexed by
    /// [`Channel::index`]); keyed by contact id alone so a lookup borrows the id.
    consent: DashMap<String, [Option<Consent>; 4]>,
    consent_history: parking_lot::Mutex<Vec<ConsentChange>>,
    /// Reservations as (unix seconds, holder) per (contact key, channel, purpose), newest
    /// last.
    caps: DashMap<(u64, Channel, Purpose), Vec<(i64, u64)>>,
    idempotency: DashMap<String, ([u8; 32], JobId)>,
    /// Signatures of callbacks seen, with the Unix time (seconds) after which they expire.
    callback_uses: DashMap<[u8; 32], i64>,
    /// API key records by id.
    api_keys: DashMap<String, StoredKey>,
    /// Quota reservations per (tenant, month `YYYYMM`).
    quotas: DashMap<(TenantId, u32), QuotaMonth>,
}

/// One tenant's reservations in one month.
#[derive(Default)]
struct QuotaMonth {
    used: u64,
    /// Recipients reserved by each job.
    jobs: std::collections::HashMap<JobId, u64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The reservations (time, holder) of one cap key (for write-through backends).
    pub(crate) fn cap_entries(&self, key: (u64, Channel, Purpose)) -> Vec<(i64, u64)> {
        self.caps.get(&key).map(|e| e.clone()).unwrap_or_default()
    }

    /// Whether the request's holder has a reservation for its cap key, in any window.
    pub(crate) fn holds(&self, r: &CapRequest) -> bool {
        self.caps
            .get(&(r.contact_key, r.channel, r.purpose))
            .is_some_and(|e| e.iter().any(|(_, h)| *h == r.holder))
    }

    /// Restores state read back from a durable backend.
    pub(crate) fn restore_cap(&self, key: (u64, Channel, Purpose), entries: Vec<(i64, u64)>) {
        self.caps.insert(key, entries);
    }

    /// Restores a suppression entry.
    pub(crate) fn restore_suppression(&self, key: SuppressionKey) {
        match key {
            SuppressionKey::Phone(p) => self.suppressed_phones.insert(p, ()),
            SuppressionKey::ContactId(c) => self.suppressed_contacts.insert(c, ()),
            SuppressionKey::Address(a) => self.suppressed_addresses.insert(a, ()),
        };
    }

    /// Restores one consent change (history and current value), in recorded order.
    pub(crate) fn restore_consent_change(&self, c: ConsentChange) {
        self.consent.entry(c.contact_id.clone()).or_default()[c.channel.index()] = Some(c.consent);
        self.consent_history.lock().push(c);
    }

    /// Restores an idempotency key.
    pub(crate) fn restore_idempotency(&self, key: String, fingerprint: [u8; 32], job: JobId) {
        self.idempotency.insert(key, (fingerprint, job));
    }

    /// Restores an API key's record.
    pub(crate) fn restore_api_key(&self, key: StoredKey) {
        self.api_keys.insert(key.id.clone(), key);
    }

    /// Reserves quota as [`StateStore::reserve_quota`] does; also answers whether this call
    /// made the reservation (for write-through backends).
    pub(crate) fn reserve_quota_entry(&self, r: &QuotaReservation<'_>) -> (QuotaAnswer, bool) {
        let mut month = self.quotas.entry((r.tenant.clone(), r.month)).or_default();
        if month.jobs.contains_key(r.job) {
            return (QuotaAnswer::Reserved { used: month.used }, false);
        }
        let used = month.used.saturating_add(r.recipients);
        if used > r.limit {
            return (QuotaAnswer::Exceeded { used: month.used }, false);
        }
        month.used = used;
        month.jobs.insert(r.job.clone(), r.recipients);
        (QuotaAnswer::Reserved { used }, true)
    }

    /// Drops a job's reservation; answers whether it had one.
    pub(crate) fn release_quota_entry(&self, tenant: &TenantId, month: u32, job: &JobId) -> bool {
        let Some(mut m) = self.quotas.get_mut(&(tenant.clone(), month)) else {
            return false;
        };
        match m.jobs.remove(job) {
            Some(n) => {
                m.used = m.used.saturating_sub(n);
                true
            }
            None => false,
        }
    }

    /// Restores a job's reservation read back from a durable backend.
    pub(crate) fn restore_quota(&self, tenant: TenantId, month: u32, job: JobId, recipients: u64) {
        let mut m = self.quotas.entry((tenant, month)).or_default();
        if m.jobs.insert(job, recipients).is_none() {
            m.used = m.used.saturating_add(recipients);
        }
    }

    /// Restores a callback signature and its expiry (Unix seconds).
    pub(crate) fn restore_callback_use(&self, signature: [u8; 32], expires: i64) {
        self.callback_uses.insert(signature, expires);
    }

    /// Drops the callback signatures expired by `now`, answering them (for write-through
    /// backends, which delete them on disk too).
    pub(crate) fn take_expired_callback_uses(&self, now: DateTime<Utc>) -> Vec<[u8; 32]> {
        let now = now.timestamp();
        let mut expired = Vec::new();
        self.callback_uses.retain(|signature, expires| {
            let keep = *expires >= now;
            if !keep {
                expired.push(*signature);
            }
            keep
        });
        expired
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn first_callback_use(
        &self,
        signature: [u8; 32],
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        use dashmap::mapref::entry::Entry;
        // The entry lock makes check-and-record atomic per signature.
        Ok(match self.callback_uses.entry(signature) {
            Entry::Occupied(mut seen) => {
                if *seen.get() >= now.timestamp() {
                    false
                } else {
                    seen.insert(expires.timestamp());
                    true
                }
            }
            Entry::Vacant(v) => {
                v.insert(expires.timestamp());
                true
            }
        })
    }

    async fn forget_callback_use(&self, signature: [u8; 32]) -> Result<(), StoreError> {
        self.callback_uses.remove(&signature);
        Ok(())
    }

    async fn prune_callback_uses(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        Ok(self.take_expired_callback_uses(now).len())
    }

    async fn recipient_facts(
        &self,
        tenant: &TenantId,
        channel: Channel,
        queries: &[FactsQuery<'_>],
    ) -> Result<Vec<RecipientFacts>, StoreError> {
        let any_suppressed = !self.suppressed_phones.is_empty()
            || !self.suppressed_contacts.is_empty()
            || !self.suppressed_addresses.is_empty();
        let any_consent = !self.consent.is_empty();
        if !any_suppressed && !any_consent {
            return Ok(vec![RecipientFacts::default(); queries.len()]);
        }
        Ok(queries
            .iter()
            .map(|q| {
                let contact = tenant_scope::key(tenant, q.contact_id);
                let phone_suppressed = || match tenant_scope::phone_entry(tenant, q.phone) {
                    None => self.suppressed_phones.contains_key(&q.phone),
                    Some(entry) => q.phone != 0 && self.suppressed_addresses.contains_key(&entry),
                };
                RecipientFacts {
                    suppressed: any_suppressed
                        && (phone_suppressed()
                            || self.suppressed_contacts.contains_key(&*contact)
                            || q.address.is_some_and(|a| {
                                self.suppressed_addresses
                                    .contains_key(&*tenant_scope::key(tenant, a))
                            })),
                    consent_override: if any_consent {
                        self.consent.get(&*contact).and_then(|c| c[channel.index()])
                    } else {
                        None
                    },
                }
            })
            .collect())
    }

    async fn add_suppressions(
        &self,
        tenant: &TenantId,
        keys: &[SuppressionKey],
    ) -> Result<usize, StoreError> {
        let mut added = 0;
        for k in keys {
            let new = match &tenant_scope::suppression(tenant, k) {
                SuppressionKey::Phone(p) => self.suppressed_phones.insert(*p, ()).is_none(),
                SuppressionKey::ContactId(c) => {
                    self.suppressed_contacts.insert(c.clone(), ()).is_none()
                }
                SuppressionKey::Address(a) => {
                    self.suppressed_addresses.insert(a.clone(), ()).is_none()
                }
            };
            added += usize::from(new);
        }
        Ok(added)
    }

    async fn remove_suppression(
        &self,
        tenant: &TenantId,
        key: &SuppressionKey,
    ) -> Result<bool, StoreError> {
        Ok(match &tenant_scope::suppression(tenant, key) {
            SuppressionKey::Phone(p) => self.suppressed_phones.remove(p).is_some(),
            SuppressionKey::ContactId(c) => self.suppressed_contacts.remove(c).is_some(),
            SuppressionKey::Address(a) => self.suppressed_addresses.remove(a).is_some(),
        })
    }

    async fn record_consent(
        &self,
        tenant: &TenantId,
        changes: &[ConsentChange],
    ) -> Result<(), StoreError> {
        let mut history = self.consent_history.lock();
        for c in changes {
            let c = tenant_scope::change_in(tenant, c);
            self.consent.entry(c.contact_id.clone()).or_default()[c.channel.index()] =
                Some(c.consent);
            history.push(c);
        }
        Ok(())
    }

    async fn consent_history(
        &self,
        tenant: &TenantId,
        contact_id: &str,
    ) -> Result<Vec<ConsentChange>, StoreError> {
        let stored = tenant_scope::key(tenant, contact_id);
        Ok(self
            .consent_history
            .lock()
            .iter()
            .filter(|c| c.contact_id == *stored)
            .filter_map(|c| tenant_scope::change_out(tenant, c))
            .collect())
    }

    async fn consent_changes_since(
        &self,
        tenant: &TenantId,
        since: DateTime<Utc>,
    ) -> Result<Vec<ConsentChange>, StoreError> {
        Ok(self
            .consent_history
            .lock()
            .iter()
            .filter(|c| c.at >= since)
            .filter_map(|c| tenant_scope::change_out(tenant, c))
            .collect())
    }

    async fn reserve_caps(
        &self,
        rules: &[CapRule],
        requests: &[CapRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let now = now.timestamp();
        Ok(requests
            .iter()
            .map(|r| {
                let applicable = rules
                    .iter()
                    .filter(|rule| rule.channel == r.channel && rule.purpose == r.purpose);
                let longest = applicable.clone().map(|rule| rule.window_seconds).max();
                let Some(longest) = longest else {
                    return true;
                };
                // The entry lock makes check-and-reserve atomic per contact.
                let mut entry = self
                    .caps
                    .entry((r.contact_key, r.channel, r.purpose))
                    .or_default();
                entry.retain(|(t, _)| *t > now - longest);
                if entry.iter().any(|(_, holder)| *holder == r.holder) {
                    return true;
                }
                let ok = applicable.clone().all(|rule| {
                    let used = entry
                        .iter()
                        .filter(|(t, _)| *t > now - rule.window_seconds)
                        .count();
                    used < rule.max as usize
                });
                if ok {
                    entry.push((now, r.holder));
                }
                ok
            })
            .collect())
    }

    async fn restore_caps(
        &self,
        rules: &[CapRule],
        reservations: &[(CapRequest, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = now.timestamp();
        for (r, at) in reservations {
            let Some(longest) = super::longest_window(rules, r.channel, r.purpose) else {
                continue;
            };
            let at = at.timestamp();
            if at <= now - longest {
                continue;
            }
            let mut entry = self
                .caps
                .entry((r.contact_key, r.channel, r.purpose))
                .or_default();
            if !entry.iter().any(|(_, holder)| *holder == r.holder) {
                let pos = entry.partition_point(|(t, _)| *t <= at);
                entry.insert(pos, (at, r.holder));
            }
        }
        Ok(())
    }

    async fn release_caps(
        &self,
        requests: &[CapRequest],
        _reserved_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for r in requests {
            if let Some(mut entry) = self.caps.get_mut(&(r.contact_key, r.channel, r.purpose)) {
                if let Some(pos) = entry.iter().rposition(|(_, h)| *h == r.holder) {
                    entry.remove(pos);
                }
            }
        }
        Ok(())
    }

    async fn save_api_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        self.api_keys.insert(key.id.clone(), key.clone());
        Ok(())
    }

    async fn api_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        Ok(self.api_keys.get(id).map(|k| k.clone()))
    }

    async fn api_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        Ok(self.api_keys.iter().map(|k| k.clone()).collect())
    }

    async fn reserve_quota(&self, r: &QuotaReservation<'_>) -> Result<QuotaAnswer, StoreError> {
        Ok(self.reserve_quota_entry(r).0)
    }

    async fn release_quota(
        &self,
        tenant: &TenantId,
        month: u32,
        job: &JobId,
    ) -> Result<(), StoreError> {
        self.release_quota_entry(tenant, month, job);
        Ok(())
    }

    async fn quota_used(&self, tenant: &TenantId, month: u32) -> Result<u64, StoreError> {
        Ok(self
            .quotas
            .get(&(tenant.clone(), month))
            .map_or(0, |m| m.used))
    }

    async fn claim_idempotency_key(
        &self,
        key: &str,
        fingerprint: [u8; 32],
        job: &JobId,
    ) -> Result<IdempotencyClaim, StoreError> {
        use dashmap::mapref::entry::Entry;
        Ok(match self.idempotency.entry(key.to_string()) {
            Entry::Vacant(v) => {
                v.insert((fingerprint, job.clone()));
                IdempotencyClaim::New
            }
            Entry::Occupied(o) => {
                let (fp, existing) = o.get();
                if *fp == fingerprint {
                    IdempotencyClaim::Existing(existing.clone())
                } else {
                    IdempotencyClaim::Conflict(existing.clone())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn rules() -> Vec<CapRule> {
        vec![
            CapRule {
                channel: Channel::Sms,
                purpose: Purpose::Marketing,
                max: 2,
                window_seconds: 86_400,
            },
            CapRule {
                channel: Channel::Sms,
                purpose: Purpose::Marketing,
                max: 3,
                window_seconds: 7 * 86_400,
            },
        ]
    }

    fn req(key: u64, holder: u64) -> CapRequest {
        CapRequest {
            contact_key: key,
            channel: Channel::Sms,
            purpose: Purpose::Marketing,
            holder,
        }
    }

    #[tokio::test]
    async fn caps_hold_per_window_and_release_gives_back() {
        let s = MemoryStore::new();
        let t0 = Utc::now();
        let r = s
            .reserve_caps(&rules(), &[req(1, 1), req(1, 2), req(1, 3)], t0)
            .await
            .unwrap();
        assert_eq!(r, vec![true, true, false]);
        // A day later the 24h rule has room, but the weekly rule allows one more only.
        let t1 = t0 + Duration::seconds(86_401);
        let r = s
            .reserve_caps(&rules(), &[req(1, 4), req(1, 5)], t1)
            .await
            .unwrap();
        assert_eq!(r, vec![true, false]);
        s.release_caps(&[req(1, 4)], t1).await.unwrap();
        let r = s.reserve_caps(&rules(), &[req(1, 6)], t1).await.unwrap();
        assert_eq!(r, vec![true]);
        // Transactional sends are not capped by marketing rules.
        let tx = CapRequest {
            purpose: Purpose::Transactional,
            ..req(1, 7)
        };
        assert_eq!(
            s.reserve_caps(&rules(), &[tx], t1).await.unwrap(),
            vec![true]
        );
    }

    #[tokio::test]
    async fn consent_history_keeps_every_change_in_order() {
        let s = MemoryStore::new();
        let t0 = Utc::now();
        let change = |id: &str, consent, secs| ConsentChange {
            contact_id: id.into(),
            channel: Channel::Sms,
            consent,
            source: "inbound:sandbox".into(),
            at: t0 + Duration::seconds(secs),
        };
        s.record_consent(
            &TenantId::default_tenant(),
            &[
                change("a", Consent::OptOut, 0),
                change("b", Consent::OptOut, 1),
            ],
        )
        .await
        .unwrap();
        s.record_consent(
            &TenantId::default_tenant(),
            &[change("a", Consent::OptIn, 2)],
        )
        .await
        .unwrap();
        let h = s
            .consent_history(&TenantId::default_tenant(), "a")
            .await
            .unwrap();
        assert_eq!(
            h.iter().map(|c| c.consent).collect::<Vec<_>>(),
            [Consent::OptOut, Consent::OptIn]
        );
        assert_eq!(
            s.consent_history(&TenantId::default_tenant(), "zz")
                .await
                .unwrap(),
            vec![]
        );
        let since = s
            .consent_changes_since(&TenantId::default_tenant(), t0 + Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(since.len(), 2);
        let facts = s
            .recipient_facts(
                &TenantId::default_tenant(),
                Channel::Sms,
                &[FactsQuery {
                    contact_id: "a",
                    phone: 1,
                    address: None,
                }],
            )
            .await
            .unwrap();
        assert_eq!(facts[0].consent_override, Some(Consent::OptIn));
    }
}
