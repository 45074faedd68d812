//! The job submission schema and its validation. Every error names the field at fault.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::error::ApiError;
use crate::dispatch::JobSpec;
use crate::domain::{Channel, Currency, Purpose};
use crate::policy::PhoneMismatchPolicy;
use crate::template::Template;

/// Longest accepted campaign id.
const MAX_CAMPAIGN_ID: usize = 128;

/// `POST /v1/jobs` body (JSON), or the first line of an NDJSON submission.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub campaign_id: String,
    pub channel: Channel,
    pub purpose: Purpose,
    pub template: TemplateRequest,
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
}

/// A spending limit in micros of the provider's currency.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetRequest {
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

/// The message template.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateRequest {
    pub body: String,
}

/// Exactly one of an inline list or a segment expression.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceRequest {
    #[serde(default)]
    pub contacts: Option<Vec<RecipientRequest>>,
    #[serde(default)]
    pub segment: Option<String>,
}

/// One recipient, inline or as an NDJSON line.
#[derive(Debug, Deserialize)]
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
    pub template: Arc<Template>,
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
    if req.template.body.trim().is_empty() {
        return Err(ApiError::invalid("template.body", "must not be empty"));
    }
    let template = Template::compile(&req.template.body)
        .map_err(|e| ApiError::invalid("template.body", e.to_string()))?;
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
            template_body: req.template.body.clone(),
            phone_mismatch: req.phone_mismatch,
            created_at: now,
        },
        template: Arc::new(template),
        variables: text_variables(req.variables.clone()),
        track_links: req.track_links,
        budget: req.budget.clone(),
    })
}
