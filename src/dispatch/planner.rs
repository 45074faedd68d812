//! Turns an accepted request into a runnable job: compiles the template (and its A/B
//! variants) once, takes the prices of the providers the channel is routed to, fixes the
//! policy (quiet hours, caps, content rules) and shards the audience.

use std::collections::HashMap;
use std::sync::Arc;

use super::audience::Audience;
use super::dispatcher::Dispatcher;
use super::job::{Job, JobParts, JobSpec};
use super::pricing::PriceTable;
use crate::config::Config;
use crate::domain::{Channel, JobId};
use crate::policy::quiet_hours::QuietHours;
use crate::policy::{frequency_cap, JobPolicy};
use crate::template::rollout::DecideHook;
use crate::template::{Template, Variants};

/// Why a request cannot become a job; each names the request field at fault.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no provider is configured for channel {0}")]
    NoProvider(&'static str),
    #[error("the variants do not match the template: {0}")]
    Variants(String),
    #[error("the content rules cannot be loaded: {}", .0.join("; "))]
    Compliance(Vec<String>),
    #[error("{0}")]
    Fields(String),
    #[error("no WeChat provider sends for the official account {0:?} (its `wechat.account`)")]
    NoWechatAccount(String),
}

impl PlanError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            PlanError::NoProvider(_) => "channel",
            PlanError::Variants(_) => "variants",
            PlanError::Compliance(_) => "template.body",
            PlanError::Fields(_) => "template",
            PlanError::NoWechatAccount(_) => "wechat_account",
        }
    }
}

/// Checks that the job's channel (and, for WeChat, its official account) can be served,
/// before any audience is read.
pub fn check_channel(dispatcher: &Dispatcher, spec: &JobSpec) -> Result<(), PlanError> {
    dispatcher
        .provider_for(spec.channel)
        .ok_or(PlanError::NoProvider(spec.channel.as_str()))?;
    match &spec.wechat_account {
        Some(account) if !dispatcher.router().has_wechat_account(account) => {
            Err(PlanError::NoWechatAccount(account.clone()))
        }
        _ => Ok(()),
    }
}

/// A validated request, ready to plan.
pub struct PlanRequest {
    pub id: JobId,
    pub spec: JobSpec,
    pub template: Arc<Template>,
    pub job_variables: HashMap<String, String>,
    pub audience: Audience,
    /// False for previews.
    pub reserve_caps: bool,
    /// Shards to split into; `None` for this instance's default. A job planned again from
    /// its stored form keeps its shard count, so every instance shards it the same way.
    pub shards: Option<usize>,
}

/// Builds the job.
pub fn plan(
    dispatcher: &Dispatcher,
    config: &Config,
    req: PlanRequest,
) -> Result<Arc<Job>, PlanError> {
    let PlanRequest {
        id,
        spec,
        template,
        job_variables,
        audience,
        reserve_caps,
        shards,
    } = req;
    let (provider_index, slot) = dispatcher
        .provider_for(spec.channel)
        .ok_or(PlanError::NoProvider(spec.channel.as_str()))?;
    let provider_name = slot.provider.name().to_string();
    let table = PriceTable::from_config(&config.prices);
    let routed = dispatcher.router().slots_for(spec.channel);
    let providers = dispatcher
        .providers()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let name = p.provider.name().to_string();
            let prices = match routed.contains(&i) {
                true => table.for_provider(&name, spec.channel),
                false => Default::default(),
            };
            (name, prices)
        })
        .collect();
    let quiet_hours = config
        .policy
        .quiet_hours
        .applies_to(spec.channel)
        .then(|| config.policy.quiet_hours.window())
        .flatten()
        .map(|(start, end)| QuietHours { start, end });
    let variants = match &spec.variants {
        Some(v) => Some(Arc::new(
            Variants::build(
                id.as_str(),
                v.clone(),
                template.body(),
                spec.send_at.unwrap_or(spec.created_at),
            )
            .map_err(PlanError::Variants)?,
        )),
        None => None,
    };
    let content_rules = config
        .compliance
        .compiled()
        .map_err(PlanError::Compliance)?
        .for_job(spec.channel, spec.purpose);
    let policy = JobPolicy {
        tenant: spec.tenant.clone(),
        channel: spec.channel,
        purpose: spec.purpose,
        phone_mismatch: spec.phone_mismatch,
        wechat_account: spec.wechat_account.clone(),
        push_platforms: match spec.channel {
            Channel::Push => dispatcher.router().push_platforms(),
            _ => None,
        },
        fields: Arc::new(
            spec.fields
                .clone()
                .unwrap_or_default()
                .compile(spec.channel, "template")
                .map_err(|e| PlanError::Fields(e.to_string()))?,
        ),
        template,
        variants,
        content_rules: Arc::new(content_rules),
        job_variables,
        default_region: config.snapshot.region(),
        quiet_hours,
        cap_rules: frequency_cap::rules_from_config(&config.policy.frequency_caps),
        cap_holder_seed: frequency_cap::holder_seed(&id),
        reserve_caps,
    };
    if let Some(r) = policy.variants.as_ref().and_then(|v| v.rollout.as_ref()) {
        // The winner is journaled as soon as it is chosen, before anyone is sent with it.
        r.on_decide(DecideHook(Box::new(dispatcher.control_saver(id.clone()))));
    }
    let now = dispatcher.clock().now();
    Ok(Job::new(
        JobParts {
            id,
            spec,
            policy,
            provider: provider_index,
            provider_name,
            currency: slot.currency,
            providers,
            shards: shards
                .filter(|&n| n > 0)
                .unwrap_or_else(|| dispatcher.shards_per_job()),
            clock: dispatcher.clock().clone(),
        },
        audience,
        now,
    ))
}
