//! `frequency_capped`: "at most N messages per contact per window", across all jobs and
//! campaigns. Checked last, as one atomic check-and-reserve per batch in the state store, so a
//! cap slot is only taken for a message that will really go, and racing jobs cannot exceed it.

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::access::TenantId;
use crate::config::FrequencyCapConfig;
use crate::domain::{Channel, JobId, Purpose};
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

/// The seed of a job's cap holders. Derived from the job id alone, so a job resumed after a
/// restart asks with the same holders and its earlier reservations are found again.
pub fn holder_seed(job: &JobId) -> u64 {
    xxh3_64(job.as_str().as_bytes())
}

/// The cap request for one contact. Keys are 64-bit hashes of contact ids: a collision
/// (about one in 10^12 pairs) would make two contacts share a cap, never exceed one. The
/// holder names the message (job seed, contact, channel), so re-deciding the same message
/// reuses its reservation instead of taking another. Keys are each tenant's own: the
/// default tenant's hash the contact id alone (as before tenants had their own contacts),
/// another's hash the tenant, a separator no tenant name holds, and the id, so two tenants'
/// equal contact ids never share a counter.
pub fn request(
    tenant: &TenantId,
    holder_seed: u64,
    contact_id: &str,
    channel: Channel,
    purpose: Purpose,
) -> CapRequest {
    let mut holder = Xxh3::with_seed(holder_seed);
    holder.update(contact_id.as_bytes());
    // A separator no contact id contains keeps ("ab", sms) apart from ("a", "bsms").
    holder.update(&[0xff]);
    holder.update(channel.as_str().as_bytes());
    CapRequest {
        contact_key: contact_key(tenant, contact_id),
        channel,
        purpose,
        holder: holder.digest(),
    }
}

/// The cap key of `tenant`'s contact.
fn contact_key(tenant: &TenantId, contact_id: &str) -> u64 {
    if tenant.is_default() {
        return xxh3_64(contact_id.as_bytes());
    }
    let mut key = Xxh3::new();
    key.update(tenant.as_str().as_bytes());
    key.update(&[0x1f]);
    key.update(contact_id.as_bytes());
    key.digest()
}

/// Whether any rule applies to (channel, purpose), so the store call can be skipped.
pub fn applies(rules: &[CapRule], channel: Channel, purpose: Purpose) -> bool {
    rules
        .iter()
        .any(|r| r.channel == channel && r.purpose == purpose)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_tenant_keeps_its_cap_keys_and_others_have_their_own() {
        let seed = holder_seed(&JobId::generate());
        let (default, acme) = (TenantId::default_tenant(), TenantId::parse("acme").unwrap());
        let globex = TenantId::parse("globex").unwrap();
        let key = |t: &TenantId| request(t, seed, "c1", Channel::Sms, Purpose::Marketing);
        // Reservations taken before tenants had their own contacts are still found.
        assert_eq!(key(&default).contact_key, xxh3_64(b"c1"));
        assert_ne!(key(&acme).contact_key, key(&default).contact_key);
        assert_ne!(key(&acme).contact_key, key(&globex).contact_key);
        assert_eq!(
            key(&acme).holder,
            key(&default).holder,
            "the message names the holder"
        );
    }

    #[test]
    fn holders_are_stable_per_job_contact_and_channel() {
        let job = JobId::generate();
        let seed = holder_seed(&job);
        let a = request(
            &TenantId::default_tenant(),
            seed,
            "c1",
            Channel::Sms,
            Purpose::Marketing,
        );
        assert_eq!(
            a,
            request(
                &TenantId::default_tenant(),
                holder_seed(&JobId::parse(job.as_str()).expect("id")),
                "c1",
                Channel::Sms,
                Purpose::Marketing
            ),
            "the same job id gives the same holder after a restart"
        );
        assert_ne!(
            a.holder,
            request(
                &TenantId::default_tenant(),
                seed,
                "c2",
                Channel::Sms,
                Purpose::Marketing
            )
            .holder
        );
        assert_ne!(
            a.holder,
            request(
                &TenantId::default_tenant(),
                seed,
                "c1",
                Channel::Email,
                Purpose::Marketing
            )
            .holder
        );
        assert_ne!(
            a.holder,
            request(
                &TenantId::default_tenant(),
                holder_seed(&JobId::generate()),
                "c1",
                Channel::Sms,
                Purpose::Marketing
            )
            .holder
        );
    }
}
