//! What a job is, fixed once it is accepted: the request as accepted, its policy, its
//! audience, the providers its messages may be routed to and their prices, and (set once,
//! right after planning) its tracked links.

use crate::access::TenantId;
use crate::traces::JobTrace;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};

use crate::dispatch::audience::Audience;
use crate::dispatch::pricing::ProviderPrices;
use crate::domain::{Channel, Currency, JobId, Micros, Purpose};
use crate::links::JobLinks;
use crate::phone::RegionCode;
use crate::policy::{JobPolicy, PhoneMismatchPolicy};
use crate::template::channel::ChannelFields;
use crate::template::VariantsSpec;

/// What the upstream system asked for, as accepted.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobSpec {
    pub campaign_id: String,
    pub channel: Channel,
    pub purpose: Purpose,
    /// Higher goes first when jobs share a provider.
    pub priority: u8,
    pub send_at: Option<DateTime<Utc>>,
    pub template_body: String,
    pub phone_mismatch: PhoneMismatchPolicy,
    pub created_at: DateTime<Utc>,
    /// A/B variants: then `template_body` holds their bodies joined
    /// ([`crate::template::variants::join`]). Plans written before variants have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<VariantsSpec>,
    /// The tenant that owns the job; plans written before tenants belong to the default one.
    #[serde(default)]
    pub tenant: TenantId,
    /// Push and WeChat jobs: the template's channel fields as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<ChannelFields>,
    /// WeChat jobs: the official account whose followers are messaged (`None`: the default
    /// account, the openids the snapshot gives without an account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wechat_account: Option<String>,
}

/// The immutable part of a job. A [`super::Job`] reads as its plan (`job.id`, `job.spec`).
pub struct JobPlan {
    pub id: JobId,
    pub spec: JobSpec,
    pub policy: JobPolicy,
    pub audience: Audience,
    /// The slot of the provider its messages go to first (what the job shows as its
    /// provider); the route may send some or all of them elsewhere.
    pub provider: usize,
    pub provider_name: String,
    pub currency: Currency,
    /// Every provider's name and prices, by slot (empty prices for providers its channel is
    /// never routed to).
    providers: Vec<(String, ProviderPrices)>,
    /// Set once, when the job is accepted with tracked links.
    links: OnceLock<Arc<JobLinks>>,
    /// Set once, when the job is submitted while spans are exported.
    trace: OnceLock<JobTrace>,
}

impl JobPlan {
    pub(super) fn new(
        id: JobId,
        spec: JobSpec,
        policy: JobPolicy,
        audience: Audience,
        provider: (usize, String),
        currency: Currency,
        providers: Vec<(String, ProviderPrices)>,
    ) -> JobPlan {
        JobPlan {
            id,
            spec,
            policy,
            audience,
            provider: provider.0,
            provider_name: provider.1,
            currency,
            providers,
            links: OnceLock::new(),
            trace: OnceLock::new(),
        }
    }

    /// The unit price at provider `slot` for a destination region (zero when unpriced).
    pub fn unit_price(&self, slot: usize, region: RegionCode) -> Micros {
        self.providers
            .get(slot)
            .map_or(Micros(0), |(_, p)| p.unit_price(region))
    }

    /// The name of the provider in `slot` ("" for a slot this herald does not have).
    pub fn provider_at(&self, slot: usize) -> &str {
        self.providers.get(slot).map_or("", |(n, _)| n.as_str())
    }

    /// The slot of the provider named `name`, if this herald has it.
    pub fn slot_of(&self, name: &str) -> Option<usize> {
        self.providers.iter().position(|(n, _)| n == name)
    }

    /// Gives the job its tracked links (once; later calls are ignored).
    pub fn set_links(&self, links: JobLinks) {
        let _ = self.links.set(Arc::new(links));
    }

    /// Notes the trace the job's sends and receipts join (the first one set stays).
    pub fn set_trace(&self, trace: JobTrace) {
        let _ = self.trace.set(trace);
    }

    /// The trace of the job's submission; empty when spans are not exported or the job was
    /// restored after a restart.
    pub fn trace(&self) -> JobTrace {
        self.trace.get().cloned().unwrap_or_default()
    }

    /// The job's tracked links, if it has them.
    pub fn links(&self) -> Option<&Arc<JobLinks>> {
        self.links.get()
    }

    /// Recipient `i`'s rendered body with its link tokens filled in.
    pub fn fill_links(&self, i: u32, mut body: String) -> String {
        if let Some(l) = self.links.get() {
            crate::links::rewrite::fill(&mut body, &l.signer, l.tag, i);
        }
        body
    }
}
