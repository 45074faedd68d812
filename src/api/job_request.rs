//! The job submission schema and its validation. Every error names the field at fault.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::error::{ApiError, ErrorCode};
use crate::compliance::{Finding, JobRules};
use crate::dispatch::JobSpec;
use crate::domain::{Channel, Currency, Purpose};
use crate::links::rewrite::unsubscribe_stand_in;
use crate::policy::PhoneMismatchPolicy;
use crate::template::channel::ChannelFields;
use crate::template::{
    email, variants, RolloutMetric, RolloutSpec, Template, VariantSpec, VariantsSpec,
};

/// Longest accepted campaign id.
pub(crate) const MAX_CAMPAIGN_ID: usize = 128;

/// `POST /v1/jobs` body (JSON), or the first line of an NDJSON submission.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    #[schema(min_length = 1, max_length = 128)]
    pub campaign_id: String,
    pub channel: Channel,
    pub purpose: Purpose,
    /// The one template; or give `variants` instead.
    #[serde(default)]
    pub template: Option<TemplateRequest>,
    /// A/B variants, each contact assigned to one by a hash of (job, contact).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 16)]
    pub variants: Option<Vec<VariantRequest>>,
    /// Share of the audience held out as a control group (with `variants`): decided, not sent.
    #[serde(default)]
    #[schema(minimum = 0, exclusive_maximum = 1)]
    pub holdout: Option<f64>,
    /// With `variants`: send a test share first, then the rest with the winner.
    #[serde(default)]
    pub rollout: Option<RolloutRequest>,
    #[serde(default)]
    pub variables: HashMap<String, Scalar>,
    #[serde(default)]
    pub audience: Option<AudienceRequest>,
    #[serde(default)]
    pub send_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub phone_mismatch: PhoneMismatchPolicy,
    /// 0–255, higher first; defaults to 200 for transactional and 100 for marketing.
    #[serde(default)]
    pub priority: Option<u8>,
    /// Rewrite the template's links to tracked links (and add an open pixel to email).
    #[serde(default = "default_true")]
    pub track_links: bool,
    /// Most the job may spend; it stops (`budget_exhausted`) before a send would pass it.
    #[serde(default)]
    pub budget: Option<BudgetRequest>,
    /// WeChat jobs: the official account whose followers are messaged, as a WeChat
    /// provider's `wechat.account` names it (the contacts' `account:openid` pairs); absent,
    /// the default account's openids.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = "^[^:;\\s]+$")]
    pub wechat_account: Option<String>,
}

/// Longest official-account name.
const MAX_WECHAT_ACCOUNT: usize = 64;

/// The job's official account, if it names one validly (only WeChat jobs may).
fn wechat_account(req: &JobRequest) -> Result<Option<String>, ApiError> {
    let Some(account) = &req.wechat_account else {
        return Ok(None);
    };
    if req.channel != Channel::Wechat {
        return Err(ApiError::invalid(
            "wechat_account",
            "only a job on channel \"wechat\" names an official account",
        ));
    }
    let bad = |c: char| c == ':' || c == ';' || c.is_whitespace() || c.is_control();
    if account.is_empty() || account.chars().count() > MAX_WECHAT_ACCOUNT || account.contains(bad) {
        return Err(ApiError::invalid(
            "wechat_account",
            format!("must be 1 to {MAX_WECHAT_ACCOUNT} characters without ':', ';' or spaces"),
        ));
    }
    Ok(Some(account.clone()))
}

/// A spending limit in micros of the provider's currency.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetRequest {
    #[schema(minimum = 1)]
    pub amount_micros: i64,
    /// Required on submission; on resume it may be left out (the job's currency).
    #[serde(default)]
    pub currency: Option<Currency>,
}

impl BudgetRequest {
    /// Checks the amount, and the currency against the `expected` one; answers the amount.
    pub fn check(&self, expected: Currency, currency_required: bool) -> Result<i64, ApiError> {
        if self.amount_micros <= 0 {
            return Err(ApiError::invalid(
                "budget.amount_micros",
                "must be greater than 0",
            ));
        }
        match self.currency {
            Some(c) if c != expected => Err(ApiError::invalid(
                "budget.currency",
                format!("must be {expected}, the currency of the job's provider"),
            )),
            None if currency_required => Err(ApiError::invalid(
                "budget.currency",
                format!("is required (the provider bills in {expected})"),
            )),
            _ => Ok(self.amount_micros),
        }
    }
}

fn default_true() -> bool {
    true
}

/// The message template: `body` for SMS, push and WeChat; `subject` and `text` (or `body`)
/// and/or `html` for email; `title` and `data` for push; `template_id`, `data` and `url` for
/// WeChat.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateRequest {
    #[serde(default)]
    pub body: Option<String>,
    /// Email: the subject line (one line).
    #[serde(default)]
    pub subject: Option<String>,
    /// Email: the plain-text part (`body` is taken as it too).
    #[serde(default)]
    pub text: Option<String>,
    /// Email: the HTML part.
    #[serde(default)]
    pub html: Option<String>,
    /// Push: the notification's title.
    #[serde(default)]
    pub title: Option<String>,
    /// Push: key-value data for the app; WeChat: each template field's value.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// WeChat: the approved template's id.
    #[serde(default)]
    pub template_id: Option<String>,
    /// WeChat: the page the message opens.
    #[serde(default)]
    pub url: Option<String>,
}

impl TemplateRequest {
    /// The channel fields as written.
    fn fields(&self) -> ChannelFields {
        ChannelFields {
            title: self.title.clone(),
            data: self.data.clone(),
            template_id: self.template_id.clone(),
            url: self.url.clone(),
        }
    }

    /// The body the job stores for `channel`: the SMS-style body as written, or an email's
    /// sections joined ([`email::join`]), with an unsubscribe link for marketing email. Each
    /// part is compiled on its own so an error names it (`template.subject`).
    fn compose(&self, channel: Channel, purpose: Purpose, at: &str) -> Result<String, ApiError> {
        let field = |name: &str| format!("{at}.{name}");
        let check = |name: &str, text: &str| -> Result<(), ApiError> {
            if text.contains(email::SECTION_MARK) || text.contains(variants::JOIN_MARK) {
                return Err(ApiError::invalid(
                    field(name),
                    "must not contain the separators U+001E or U+001F",
                ));
            }
            Template::compile(text)
                .map(|_| ())
                .map_err(|e| ApiError::invalid(field(name), e.to_string()))
        };
        if channel != Channel::Email {
            for (name, v) in [
                ("subject", &self.subject),
                ("text", &self.text),
                ("html", &self.html),
            ] {
                if v.is_some() {
                    return Err(ApiError::invalid(field(name), "is only for email jobs"));
                }
            }
            let body = self.body.as_deref().unwrap_or("");
            if body.trim().is_empty() {
                return Err(ApiError::invalid(field("body"), "must not be empty"));
            }
            return Ok(body.to_string());
        }
        let subject = self.subject.as_deref().unwrap_or("").trim();
        if subject.is_empty() {
            return Err(ApiError::invalid(field("subject"), "is required for email"));
        }
        if subject.contains(['\r', '\n']) {
            return Err(ApiError::invalid(field("subject"), "must be one line"));
        }
        check("subject", subject)?;
        let (text_name, text) = match (&self.text, &self.body) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    field("text"),
                    "give text or body, not both",
                ))
            }
            (Some(t), None) => ("text", Some(t.as_str())),
            (None, Some(b)) => ("body", Some(b.as_str())),
            (None, None) => ("text", None),
        };
        let text = text.filter(|t| !t.trim().is_empty());
        let html = self.html.as_deref().filter(|h| !h.trim().is_empty());
        if text.is_none() && html.is_none() {
            return Err(ApiError::invalid(
                field("text"),
                "an email needs text, html or both",
            ));
        }
        if let Some(t) = text {
            check(text_name, t)?;
        }
        if let Some(h) = html {
            check("html", h)?;
        }
        let unsubscribe = (purpose == Purpose::Marketing).then(unsubscribe_stand_in);
        Ok(email::join(unsubscribe.as_deref(), subject, text, html))
    }
}

/// One A/B variant.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantRequest {
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// Relative share of the (not held out) audience; default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    pub template: TemplateRequest,
}

fn default_weight() -> u32 {
    1
}

/// A rollout: `test_share` of the audience first, and after `decide_after_seconds` the rest
/// with the variant that won on `metric`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    #[schema(exclusive_minimum = 0, exclusive_maximum = 1)]
    pub test_share: f64,
    #[schema(minimum = 1, maximum = 2_592_000)]
    pub decide_after_seconds: u64,
    pub metric: RolloutMetric,
}

/// The longest wait for a rollout's decision: 30 days.
const MAX_DECIDE_AFTER_SECONDS: u64 = 30 * 86_400;

/// Longest variant name.
const MAX_VARIANT_NAME: usize = 64;

/// Exactly one of an inline list or a segment expression.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AudienceRequest {
    #[serde(default)]
    pub contacts: Option<Vec<RecipientRequest>>,
    #[serde(default)]
    pub segment: Option<String>,
}

/// One recipient, inline or as an NDJSON line.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientRequest {
    pub contact_id: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub variables: Option<HashMap<String, Scalar>>,
}

/// A template variable value: a string, number or boolean, used as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Text(s) => s,
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// Converts variables to text.
pub fn text_variables(v: HashMap<String, Scalar>) -> HashMap<String, String> {
    v.into_iter().map(|(k, v)| (k, v.into_text())).collect()
}

/// The validated, job-level parts of a request.
pub struct ValidJob {
    pub spec: JobSpec,
    /// The template the job is planned with (with variants: their bodies joined).
    pub template: Arc<Template>,
    /// Each body as written, for the content rules: the variant's name with variants.
    pub bodies: Vec<(Option<String>, Template)>,
    pub variables: HashMap<String, String>,
    pub track_links: bool,
    /// The budget as requested; checked against the provider's currency once it is known.
    pub budget: Option<BudgetRequest>,
}

/// Validates everything but the audience.
pub fn validate(req: &JobRequest, now: DateTime<Utc>) -> Result<ValidJob, ApiError> {
    let campaign_id = req.campaign_id.trim();
    if campaign_id.is_empty() {
        return Err(ApiError::invalid("campaign_id", "must not be empty"));
    }
    if campaign_id.len() > MAX_CAMPAIGN_ID {
        return Err(ApiError::invalid(
            "campaign_id",
            format!("must be at most {MAX_CAMPAIGN_ID} characters"),
        ));
    }
    let (template_body, bodies, variants) = templates(req)?;
    // Every body compiled on its own; together they may still be too long for one job.
    let template = Template::compile(&template_body).map_err(|e| match variants {
        Some(_) => ApiError::invalid("variants", format!("together: {}", e.message())),
        None => ApiError::invalid("template.body", e.to_string()),
    })?;
    let written = channel_fields(req)?;
    let wechat_account = wechat_account(req)?;
    if let Some(at) = req.send_at {
        if at < now - chrono::Duration::days(1) {
            return Err(ApiError::invalid(
                "send_at",
                "is more than a day in the past",
            ));
        }
    }
    let priority = req.priority.unwrap_or(match req.purpose {
        Purpose::Transactional => 200,
        Purpose::Marketing => 100,
    });
    Ok(ValidJob {
        spec: JobSpec {
            campaign_id: campaign_id.to_string(),
            channel: req.channel,
            purpose: req.purpose,
            priority,
            send_at: req.send_at,
            template_body,
            phone_mismatch: req.phone_mismatch,
            created_at: now,
            variants,
            // Set by the caller from the request's key.
            tenant: Default::default(),
            fields: written,
            wechat_account,
        },
        template: Arc::new(template),
        bodies,
        variables: text_variables(req.variables.clone()),
        track_links: req.track_links,
        budget: req.budget.clone(),
    })
}

/// Checks every body (every variant) against `rules`: a submission is refused (422
/// `content_rule`) with the first finding, naming the field, rule, variant and position; a dry
/// run answers them all.
///
/// `as_sent` gives a body with its links tracked (`None` when tracking leaves it as it is),
/// so that parts are counted on the length messages will have.
pub fn content_findings(
    rules: &JobRules,
    valid: &ValidJob,
    as_sent: impl Fn(&Template) -> Result<Option<Template>, ApiError>,
    dry_run: bool,
) -> Result<Vec<Finding>, ApiError> {
    let mut findings = Vec::new();
    for (i, (variant, template)) in valid.bodies.iter().enumerate() {
        let tracked = match rules.is_empty() {
            true => None,
            false => as_sent(template)?,
        };
        let sent = tracked.as_ref().unwrap_or(template);
        for f in rules.check_template(template, sent, variant.as_deref()) {
            if !dry_run {
                return Err(refusal(&f, variant.as_ref().map(|_| i)));
            }
            findings.push(f);
        }
    }
    Ok(findings)
}

fn refusal(f: &Finding, variant_index: Option<usize>) -> ApiError {
    let field = f.field(variant_index);
    let mut details = serde_json::Map::new();
    details.insert("rule".into(), f.rule.clone().into());
    if let Some(v) = &f.variant {
        details.insert("variant".into(), v.clone().into());
    }
    if let Some(p) = f.position {
        details.insert("position".into(), p.into());
    }
    let mut e = ApiError::new(ErrorCode::ContentRule, format!("{field}: {}", f.describe()));
    e.field = Some(field);
    e.with_details(details)
}

/// The template body a job stores, each body as written, and the variants' spec: from
/// `template`, or from `variants` (and `holdout`).
fn templates(req: &JobRequest) -> Result<Bodies, ApiError> {
    let compile = |field: &str, body: &str| {
        if body.trim().is_empty() {
            return Err(ApiError::invalid(field, "must not be empty"));
        }
        Template::compile(body).map_err(|e| ApiError::invalid(field, e.to_string()))
    };
    match (&req.template, &req.variants) {
        (Some(t), None) => {
            if req.holdout.is_some() {
                return Err(ApiError::invalid(
                    "holdout",
                    "needs variants (one variant is enough)",
                ));
            }
            if req.rollout.is_some() {
                return Err(ApiError::invalid("rollout", "needs at least two variants"));
            }
            let body = t.compose(req.channel, req.purpose, "template")?;
            let template = compile("template.body", &body)?;
            Ok((body, vec![(None, template)], None))
        }
        (None, Some(list)) => {
            if list.is_empty() || list.len() > variants::MAX_VARIANTS {
                return Err(ApiError::invalid(
                    "variants",
                    format!("give 1 to {} variants", variants::MAX_VARIANTS),
                ));
            }
            let holdout = req.holdout.unwrap_or(0.0);
            if !(0.0..1.0).contains(&holdout) {
                return Err(ApiError::invalid(
                    "holdout",
                    "must be a share from 0 to below 1",
                ));
            }
            if list.iter().all(|v| v.weight == 0) {
                return Err(ApiError::invalid(
                    "variants",
                    "at least one weight must be above 0",
                ));
            }
            let mut bodies = Vec::with_capacity(list.len());
            let mut composed: Vec<String> = Vec::with_capacity(list.len());
            let mut specs: Vec<VariantSpec> = Vec::with_capacity(list.len());
            for (i, v) in list.iter().enumerate() {
                let name = v.name.trim();
                if name.is_empty() || name.len() > MAX_VARIANT_NAME {
                    return Err(ApiError::invalid(
                        format!("variants[{i}].name"),
                        format!("must be 1 to {MAX_VARIANT_NAME} characters"),
                    ));
                }
                if specs.iter().any(|s| s.name == name) {
                    return Err(ApiError::invalid(
                        format!("variants[{i}].name"),
                        format!("{name:?} names another variant too"),
                    ));
                }
                let at = format!("variants[{i}].template");
                let body = v.template.compose(req.channel, req.purpose, &at)?;
                if body.contains(variants::JOIN_MARK) {
                    return Err(ApiError::invalid(
                        format!("{at}.body"),
                        "must not contain the record separator U+001E",
                    ));
                }
                bodies.push((
                    Some(name.to_string()),
                    compile(&format!("{at}.body"), &body)?,
                ));
                composed.push(body);
                specs.push(VariantSpec {
                    name: name.to_string(),
                    weight: v.weight,
                });
            }
            let joined: Vec<&str> = composed.iter().map(String::as_str).collect();
            let rollout = match &req.rollout {
                None => None,
                Some(r) => Some(rollout(r, specs.len())?),
            };
            let spec = VariantsSpec {
                variants: specs,
                holdout,
                rollout,
            };
            Ok((variants::join(&joined), bodies, Some(spec)))
        }
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "variants",
            "give either template or variants, not both",
        )),
        (None, None) => Err(ApiError::invalid(
            "template",
            "is required (or give variants)",
        )),
    }
}

/// The channel fields of the template as they are stored with the job, once they compile.
/// With variants they are not taken yet: a push or WeChat job gives one template.
fn channel_fields(req: &JobRequest) -> Result<Option<ChannelFields>, ApiError> {
    let refused = |e: crate::template::channel::FieldError| ApiError::invalid(e.field, e.message);
    if let Some(list) = &req.variants {
        for (i, v) in list.iter().enumerate() {
            let prefix = format!("variants[{i}].template");
            if v.template.fields() != ChannelFields::default() {
                return Err(ApiError::invalid(
                    prefix,
                    "push and wechat fields are not taken with variants; give one template",
                ));
            }
            // Still checked, so a push job without a title is refused by name.
            ChannelFields::default()
                .compile(req.channel, &prefix)
                .map_err(refused)?;
        }
        return Ok(None);
    }
    let Some(t) = &req.template else {
        return Ok(None);
    };
    let written = t.fields();
    written.compile(req.channel, "template").map_err(refused)?;
    Ok((written != ChannelFields::default()).then_some(written))
}

/// What [`templates`] answers.
type Bodies = (
    String,
    Vec<(Option<String>, Template)>,
    Option<VariantsSpec>,
);

/// Checks a rollout against a job of `variants` variants.
fn rollout(r: &RolloutRequest, variants: usize) -> Result<RolloutSpec, ApiError> {
    if variants < 2 {
        return Err(ApiError::invalid("rollout", "needs at least two variants"));
    }
    if !(r.test_share > 0.0 && r.test_share < 1.0) {
        return Err(ApiError::invalid(
            "rollout.test_share",
            "must be a share above 0 and below 1",
        ));
    }
    if r.decide_after_seconds == 0 || r.decide_after_seconds > MAX_DECIDE_AFTER_SECONDS {
        return Err(ApiError::invalid(
            "rollout.decide_after_seconds",
            format!("must be 1 to {MAX_DECIDE_AFTER_SECONDS}"),
        ));
    }
    Ok(RolloutSpec {
        test_share: r.test_share,
        decide_after_seconds: r.decide_after_seconds,
        metric: r.metric,
    })
}
