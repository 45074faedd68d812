//! Runs the rules over a batch of recipients, in reason order. Pure rules run per recipient;
//! facts from the state store arrive in one call per batch, and frequency caps are reserved in
//! one more call, last, for the survivors only. Timing and counting live here, not in rules.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::phone_mismatch::MismatchOutcome;
use super::quiet_hours::QuietHours;
use super::{
    address_check, consent, frequency_cap, phone_check, phone_mismatch, render, suppression,
};
use super::{PhoneMismatchPolicy, Verdict};
use crate::access::TenantId;
use crate::compliance::JobRules;
use crate::domain::{Address, Channel, Purpose, Reason};
use crate::phone::RegionCode;
use crate::provider::content::ChannelContent;
use crate::snapshot::{ContactView, PhoneField, Snapshot};
use crate::store::{CapRequest, CapRule, FactsQuery, StateStore, StoreError};
use crate::template::channel::CompiledFields;
use crate::template::{count_parts, Encoding, Route, SmsParts, Template, Variants};

/// One recipient as the job names it.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    pub contact_id: &'a str,
    /// The number the upstream system believes is current, if it sent one.
    pub upstream_phone: Option<&'a str>,
    pub variables: Option<&'a HashMap<String, String>>,
}

/// A message that passed every rule, ready for a provider.
#[derive(Debug, Clone)]
pub struct ReadyMessage {
    /// Where it goes, on the job's channel.
    pub to: Address,
    /// The destination country for routes and prices: the phone's for SMS,
    /// [`RegionCode::UNKNOWN`] for channels whose addresses have no country.
    pub region: RegionCode,
    pub body: String,
    pub parts: SmsParts,
    /// Push and WeChat: the title and data, or the template's fields, rendered.
    pub content: Option<Arc<ChannelContent>>,
    /// The upstream number differed and the snapshot's was used.
    pub corrected: bool,
    /// The cap reservation taken for this message, to release on permanent failure.
    pub cap: Option<CapRequest>,
}

/// The pipeline's answer for one recipient.
#[derive(Debug, Clone)]
pub enum Decision {
    Send(ReadyMessage),
    Reject(Reason),
    Defer(DateTime<Utc>),
}

/// Everything the rules need to know about one job, built once when the job is planned.
pub struct JobPolicy {
    /// The job's tenant: its suppressions, consent and cap counters are the ones checked.
    pub tenant: TenantId,
    pub channel: Channel,
    pub purpose: Purpose,
    pub phone_mismatch: PhoneMismatchPolicy,
    /// WeChat jobs: the official account whose openids are used (`None`: the default one).
    pub wechat_account: Option<String>,
    /// Push jobs: the platforms herald has a provider for (`None`: any), so a contact's push
    /// goes to a token it can reach.
    pub push_platforms: Option<Vec<crate::domain::PushPlatform>>,
    pub template: Arc<Template>,
    /// Push and WeChat: the template's channel fields, rendered beside the body.
    pub fields: Arc<CompiledFields>,
    /// A/B variants: each recipient is rendered with its variant's template instead, or
    /// held out.
    pub variants: Option<Arc<Variants>>,
    /// The content rules every rendered message must pass.
    pub content_rules: Arc<JobRules>,
    pub job_variables: HashMap<String, String>,
    pub default_region: RegionCode,
    /// Applied to marketing messages only; `None` also when the job's channel is not one the
    /// quiet hours are configured for.
    pub quiet_hours: Option<QuietHours>,
    pub cap_rules: Vec<CapRule>,
    /// Seeds the cap holder of each message (see [`frequency_cap::holder_seed`]); derived
    /// from the job id so a resumed job finds its own reservations.
    pub cap_holder_seed: u64,
    /// False for previews: decide everything, reserve nothing.
    pub reserve_caps: bool,
}

/// The rule runner (stateless; all state is in the job policy, snapshot and store).
pub struct PolicyRunner;

struct Survivor<'s> {
    index: usize,
    contact: ContactView<'s>,
    to: Address,
    region: RegionCode,
    corrected: bool,
}

impl PolicyRunner {
    /// Decides a batch. Errors only when the store cannot answer; then nothing was reserved,
    /// or (a networked store that timed out after reserving) what was reserved belongs to
    /// this batch's holders and is found again, not taken twice, when the batch is retried.
    pub async fn decide_batch(
        policy: &JobPolicy,
        snapshot: &Snapshot,
        store: &dyn StateStore,
        inputs: &[PolicyInput<'_>],
        now: DateTime<Utc>,
    ) -> Result<Vec<Decision>, StoreError> {
        let started = std::time::Instant::now();
        let mut decisions: Vec<Option<Decision>> = vec![None; inputs.len()];
        let mut survivors: Vec<Survivor<'_>> = Vec::with_capacity(inputs.len());

        // unknown_contact; then the channel's address: missing_phone, invalid_phone,
        // not_mobile, phone_mismatch for SMS, missing_email, invalid_email,
        // missing_push_token, missing_openid for the others.
        // Batched lookups overlap their cache misses (a random lookup is memory-bound).
        let ids: Vec<&str> = inputs.iter().map(|i| i.contact_id).collect();
        let mut contacts = Vec::with_capacity(inputs.len());
        snapshot.lookup_many(&ids, &mut contacts);
        for ((index, input), contact) in inputs.iter().enumerate().zip(contacts) {
            let Some(contact) = contact else {
                decisions[index] = Some(Decision::Reject(Reason::UnknownContact));
                continue;
            };
            let checked = match policy.channel {
                Channel::Sms => sms_address(policy, input, &contact),
                channel => address_check::check(
                    &contact,
                    channel,
                    policy.wechat_account.as_deref(),
                    policy.push_platforms.as_deref(),
                )
                .map(|to| (to, RegionCode::UNKNOWN, false)),
            };
            match checked {
                Ok((to, region, corrected)) => survivors.push(Survivor {
                    index,
                    contact,
                    to,
                    region,
                    corrected,
                }),
                Err(v) => decisions[index] = Some(to_decision(v)),
            }
        }

        // suppressed, opted_out, no_consent: one store round trip for the batch.
        let entries: Vec<Option<String>> =
            survivors.iter().map(|s| s.to.suppression_entry()).collect();
        let queries: Vec<FactsQuery<'_>> = survivors
            .iter()
            .zip(&entries)
            .map(|(s, entry)| FactsQuery {
                contact_id: s.contact.contact_id(),
                phone: s.to.phone().unwrap_or(0),
                address: entry.as_deref(),
            })
            .collect();
        let facts = if queries.is_empty() {
            Vec::new()
        } else {
            store
                .recipient_facts(&policy.tenant, policy.channel, &queries)
                .await?
        };

        let mut ready: Vec<(usize, ReadyMessage, &str)> = Vec::with_capacity(survivors.len());
        for (s, facts) in survivors.iter().zip(facts.iter()) {
            let input = &inputs[s.index];
            let mut verdict = suppression::check(facts);
            if verdict == Verdict::Allow {
                verdict = consent::check(
                    s.contact.consent(policy.channel),
                    facts.consent_override,
                    policy.purpose,
                );
            }
            // holdout: after the eligibility rules, so the control group is like the rest; a
            // rollout's remainder is deferred until its winner is chosen.
            let mut template = &policy.template;
            if let (Verdict::Allow, Some(v)) = (verdict, &policy.variants) {
                match v.route(s.contact.contact_id(), now) {
                    Route::Holdout => verdict = Verdict::Reject(Reason::Holdout),
                    Route::Wait(until) => verdict = Verdict::Defer(until),
                    Route::Send(k) => {
                        if let Some(t) = v.templates.get(k) {
                            template = t;
                        }
                    }
                }
            }
            let mut body = String::new();
            if verdict == Verdict::Allow {
                verdict = render::render(
                    template,
                    input.variables,
                    &s.contact,
                    &policy.job_variables,
                    &mut body,
                );
            }
            let mut content = None;
            if verdict == Verdict::Allow {
                match render::render_fields(
                    &policy.fields,
                    &body,
                    input.variables,
                    &s.contact,
                    &policy.job_variables,
                ) {
                    Ok(c) => content = c.map(Arc::new),
                    Err(v) => verdict = v,
                }
            }
            // content_rule: what a variable's value brought into the message. An email, push
            // or WeChat message is one billable unit whatever its length.
            let parts = billed_units(policy.channel, &body);
            if verdict == Verdict::Allow && !policy.content_rules.check_message(&body, parts) {
                verdict = Verdict::Reject(Reason::ContentRule);
            }
            if verdict == Verdict::Allow && policy.purpose == Purpose::Marketing {
                if let Some(qh) = &policy.quiet_hours {
                    if let Some(until) = quiet_check(qh, &s.contact, now) {
                        verdict = Verdict::Defer(until);
                    }
                }
            }
            if verdict != Verdict::Allow {
                decisions[s.index] = Some(to_decision(verdict));
                continue;
            }
            ready.push((
                s.index,
                ReadyMessage {
                    to: s.to.clone(),
                    region: s.region,
                    body,
                    parts,
                    content,
                    corrected: s.corrected,
                    cap: None,
                },
                s.contact.contact_id(),
            ));
        }

        // frequency_capped, last: reserve only for messages that will really go.
        if policy.reserve_caps
            && frequency_cap::applies(&policy.cap_rules, policy.channel, policy.purpose)
            && !ready.is_empty()
        {
            let requests: Vec<CapRequest> = ready
                .iter()
                .map(|(_, _, id)| {
                    frequency_cap::request(
                        &policy.tenant,
                        policy.cap_holder_seed,
                        id,
                        policy.channel,
                        policy.purpose,
                    )
                })
                .collect();
            let granted = store
                .reserve_caps(&policy.cap_rules, &requests, now)
                .await?;
            for ((index, mut msg, _), (ok, req)) in
                ready.into_iter().zip(granted.into_iter().zip(requests))
            {
                decisions[index] = Some(if ok {
                    msg.cap = Some(req);
                    Decision::Send(msg)
                } else {
                    Decision::Reject(Reason::FrequencyCapped)
                });
            }
        } else {
            for (index, msg, _) in ready {
                decisions[index] = Some(Decision::Send(msg));
            }
        }

        crate::metrics::policy_batch(policy.channel, started.elapsed());
        Ok(decisions
            .into_iter()
            .map(|d| d.unwrap_or(Decision::Reject(Reason::UnknownContact)))
            .collect())
    }
}

/// The SMS address rules: the snapshot's phone checked, then compared with the upstream's.
fn sms_address(
    policy: &JobPolicy,
    input: &PolicyInput<'_>,
    contact: &ContactView<'_>,
) -> Result<(Address, RegionCode, bool), Verdict> {
    let phone = phone_check::check(contact.phone())?;
    let corrected = match phone_mismatch::check(
        input.upstream_phone,
        phone.e164,
        policy.default_region,
        policy.phone_mismatch,
    ) {
        MismatchOutcome::Same => false,
        MismatchOutcome::Corrected => true,
        MismatchOutcome::Rejected(v) => return Err(v),
    };
    Ok((Address::Phone(phone.e164), phone.region, corrected))
}

/// Quiet hours in the contact's time zone; without one, in every zone of its phone number's
/// region (when it has a valid phone); a contact with neither is never deferred.
fn quiet_check(
    qh: &QuietHours,
    contact: &ContactView<'_>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match (contact.timezone(), contact.phone()) {
        (Some(tz), _) => qh.check(&[tz], now),
        (None, PhoneField::Valid(phone)) => {
            qh.check(crate::phone::timezone::zones_for(&phone), now)
        }
        (None, _) => None,
    }
}

/// What a message is billed as: SMS parts as carriers count them; one unit (one email, one
/// notification) on the other channels, whatever its length.
fn billed_units(channel: Channel, body: &str) -> SmsParts {
    match channel {
        Channel::Sms => count_parts(body),
        Channel::Email | Channel::Push | Channel::Wechat => SmsParts {
            encoding: Encoding::Ucs2,
            units: u32::try_from(body.len()).unwrap_or(u32::MAX),
            parts: 1,
        },
    }
}

fn to_decision(v: Verdict) -> Decision {
    match v {
        Verdict::Reject(r) => Decision::Reject(r),
        Verdict::Defer(t) => Decision::Defer(t),
        // Callers only convert non-allow verdicts; an allow here would be a logic error,
        // and the safe answer is to not send.
        Verdict::Allow => Decision::Reject(Reason::UnknownContact),
    }
}
