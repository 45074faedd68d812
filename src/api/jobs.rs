//! Job routes: submit (JSON or streamed NDJSON), read, list, pause, resume, cancel, and the
//! per-recipient report.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::body::{capped_reader, next_line, read_whole};
use super::error::{parse_json, ApiError, ErrorBody, ErrorCode};
use super::extract::{ApiPath, ApiQuery};
use super::job_request::{
    content_findings, text_variables, validate, BudgetRequest, JobRequest, RecipientRequest,
    ValidJob,
};
use crate::access::{Principal, TenantId};
use crate::app::AppState;
use crate::compliance::Finding;
use crate::dispatch::planner;
use crate::dispatch::preview::Preview;
use crate::dispatch::{AudienceBuilder, Job, TransitionError};
use crate::domain::{Channel, JobId, JobStatus, Purpose};
use crate::intake::{IdempotencyKey, Submission, Submitted};
use crate::links::Rewritten;
use crate::report::job_view::{self, JobView};
use crate::report::recipients;
use crate::segment::Segment;
use crate::template::Template;

/// Longest NDJSON line: the job line may carry a long template, recipients are short.
const MAX_JOB_LINE: usize = 1 << 20;
const MAX_RECIPIENT_LINE: usize = 64 << 10;
/// Longest accepted Idempotency-Key.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Query of `POST /v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubmitQuery {
    /// Run the decision pipeline and the finish-time model; send nothing, reserve nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// A dry run's answer: what the job would do, and every content rule its template breaks.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRun {
    #[serde(flatten)]
    pub preview: Preview,
    pub compliance: ComplianceFindings,
    /// The tenant's monthly quota, when it has one: the job is refused if its recipients
    /// are more than `remaining`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<crate::intake::quota::QuotaView>,
}

/// The content rules a dry run's template breaks (a submission is refused with the first).
#[derive(Debug, Serialize, ToSchema)]
pub struct ComplianceFindings {
    pub findings: Vec<Finding>,
}

/// `POST /v1/jobs`'s 200: the job an Idempotency-Key already made, or a dry run's preview.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Answered<'a> {
    Job(Box<JobView<'a>>),
    DryRun(DryRun),
}

/// `POST /v1/jobs` (and `?dry_run=true` for a preview): validation, then [`Intake`].
#[utoipa::path(
    post,
    path = "/v1/jobs",
    operation_id = "submit_job",
    tag = "jobs",
    params(
        SubmitQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 characters; a repeat with the same body answers the same job"),
    ),
    request_body(
        description = "The job as JSON, or as NDJSON: the job (without `audience`), then one recipient a line",
        content((JobRequest = "application/json"), (String = "application/x-ndjson"))
    ),
    responses(
        (status = 201, description = "Accepted", body = JobView, links(
            ("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/id")))),
            ("GetJobReport" = (operation_id = "get_job_report", parameters(("id" = "$response.body#/id")))),
            ("GetJobRecipients" = (operation_id = "get_job_recipients", parameters(("id" = "$response.body#/id")))),
            ("ChangeJobStatus" = (operation_id = "change_job_status", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 200, description = "The job this Idempotency-Key already made, or with `dry_run=true` the preview", body = Answered),
        (status = 409, description = "`idempotency_conflict`, `idempotency_in_progress`, or `snapshot_stale`", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json or application/x-ndjson (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "Not possible (`unprocessable`, e.g. no provider for the channel) or a content rule broken (`content_rule`)", body = ErrorBody),
        (status = 429, description = "The audience does not fit in the tenant's monthly quota (`quota_exceeded`; `asked` and `quota` say by how much and when it resets)", body = ErrorBody),
        (status = 503, description = "The state backend does not answer (`state_unavailable`), or the job is being restored or could not be recorded (`unavailable`); repeat the request", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn submit(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiQuery(query): ApiQuery<SubmitQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Before the body is read: a job is accepted only with the state backend answering
    // (its caps, consent and idempotency key live there), a preview needs it too.
    super::health::require_state(&state)?;
    let key = match query.dry_run {
        true => None,
        false => idempotency_key(&headers)?,
    };
    let (mut submission, fingerprint, findings) =
        read_submission(&state, &by, &headers, body, query.dry_run).await?;
    submission.spec.tenant = by.tenant.clone();
    if query.dry_run {
        let preview = state.intake.preview(submission).await?;
        let answer = Answered::DryRun(DryRun {
            preview,
            compliance: ComplianceFindings { findings },
            quota: state.intake.quota(&by.tenant).await?,
        });
        return Ok(Json(answer).into_response());
    }
    // Each tenant has its own key space. The default tenant's keys are stored as sent (as
    // before tenants existed); another tenant's carry its name and a separator that no
    // header value can contain.
    let key = key.map(|k| match by.tenant.is_default() {
        true => k,
        false => format!("{}\u{1f}{k}", by.tenant),
    });
    let key = key
        .as_deref()
        .map(|key| IdempotencyKey { key, fingerprint });
    Ok(match state.intake.submit(submission, key).await? {
        Submitted::Created(job) => (
            StatusCode::CREATED,
            Json(job_view::view(&job, state.clock.now())),
        )
            .into_response(),
        Submitted::Existing(job) => Json(Answered::Job(Box::new(job_view::view(
            &job,
            state.clock.now(),
        ))))
        .into_response(),
    })
}

/// Reads and validates a submission (JSON, or NDJSON: the job, then one recipient a line);
/// answers it with the fingerprint of the body an Idempotency-Key is checked against.
async fn read_submission(
    state: &AppState,
    by: &Principal,
    headers: &HeaderMap,
    body: Body,
    dry_run: bool,
) -> Result<(Submission, [u8; 32], Vec<Finding>), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let (mut valid, audience, fingerprint, findings) =
        if content_type.starts_with("application/x-ndjson") {
            read_ndjson(state, &by.tenant, body, dry_run).await?
        } else if content_type.starts_with("application/json") {
            read_json(state, by, body, dry_run).await?
        } else {
            return Err(ApiError::unsupported_media(
                "application/json or application/x-ndjson",
            ));
        };
    let links = prepare_links(state, &mut valid)?;
    let submission = Submission {
        budget_micros: valid.budget.as_ref().map(|b| b.amount_micros),
        spec: valid.spec,
        template: valid.template,
        variables: valid.variables,
        audience: audience.finish(),
        links,
    };
    Ok((submission, fingerprint, findings))
}

/// Rewrites the template's links to tracked links (before parts are counted), unless the
/// job switched tracking off or the template has nothing to track. A marketing email is
/// always given its links, for its per-recipient unsubscribe token.
fn prepare_links(state: &AppState, valid: &mut ValidJob) -> Result<Option<Rewritten>, ApiError> {
    let unsubscribe =
        valid.spec.channel == Channel::Email && valid.spec.purpose == Purpose::Marketing;
    if !valid.track_links {
        return Ok(unsubscribe.then(|| Rewritten {
            body: valid.spec.template_body.clone(),
            links: Vec::new(),
        }));
    }
    let rewritten = state
        .tracking
        .prepare(&valid.spec.template_body, valid.spec.channel)
        .map_err(|e| ApiError::invalid("template.body", e.to_string()))?;
    if rewritten.body == valid.spec.template_body {
        return Ok(unsubscribe.then_some(rewritten));
    }
    let template = Template::compile(&rewritten.body)
        .map_err(|e| ApiError::invalid("template.body", format!("with its links tracked: {e}")))?;
    valid.template = Arc::new(template);
    Ok(Some(rewritten))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| ApiError::invalid("Idempotency-Key", "must be printable ASCII"))?
        .trim();
    if s.is_empty() || s.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY} characters"),
        ));
    }
    Ok(Some(s.to_string()))
}

/// Checks every body against the content rules that apply to the job.
fn check_content(
    state: &AppState,
    valid: &ValidJob,
    dry_run: bool,
) -> Result<Vec<Finding>, ApiError> {
    let rules = state
        .config
        .config
        .compliance
        .compiled()
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.join("; ")))?
        .for_job(valid.spec.channel, valid.spec.purpose);
    let as_sent = |t: &Template| -> Result<Option<Template>, ApiError> {
        if !valid.track_links {
            return Ok(None);
        }
        let rewritten = state
            .tracking
            .prepare(t.body(), valid.spec.channel)
            .map_err(|e| ApiError::invalid("template.body", e.to_string()))?;
        if rewritten.body == t.body() {
            return Ok(None);
        }
        Template::compile(&rewritten.body)
            .map(Some)
            .map_err(|e| ApiError::invalid("template.body", format!("with its links tracked: {e}")))
    };
    content_findings(&rules, valid, as_sent, dry_run)
}

/// Checks that the job can be dispatched before its audience is read.
fn precheck(state: &AppState, valid: &ValidJob, tenant: &TenantId) -> Result<(), ApiError> {
    // Each instance would choose a rollout's winner from its own counts.
    let rollout = valid
        .spec
        .variants
        .as_ref()
        .is_some_and(|v| v.rollout.is_some());
    if rollout && state.cluster.is_some() {
        return Err(ApiError::unprocessable(
            "rollout",
            "is not available while instances share work (state.cluster)",
        ));
    }
    planner::check_channel(&state.dispatcher, &valid.spec)
        .map_err(|e| ApiError::unprocessable(e.field(), e.to_string()))?;
    if let Some(budget) = &valid.budget {
        let currency = state
            .dispatcher
            .provider_for(valid.spec.channel)
            .map(|(_, slot)| slot.currency)
            .ok_or_else(|| ApiError::unprocessable("channel", "no provider for this channel"))?;
        budget.check(currency, true)?;
    }
    let now = state.clock.now();
    let scheduled_later = valid.spec.send_at.is_some_and(|t| t > now);
    // Judged on the book the job reads: the submitting tenant's. A tenant without a book
    // has nothing in it to grow old (every recipient is an unknown contact).
    let stale = state.books.has_book(tenant)
        && state.snapshot_stale_at(state.books.store(tenant).as_of(), now);
    if !scheduled_later && stale {
        return Err(ApiError::new(
            ErrorCode::SnapshotStale,
            "the contact snapshot is older than snapshot.max_age_seconds; load a fresh snapshot (PUT /v1/snapshot) before sending",
        ));
    }
    Ok(())
}

async fn read_json(
    state: &AppState,
    by: &Principal,
    body: Body,
    dry_run: bool,
) -> Result<(ValidJob, AudienceBuilder, [u8; 32], Vec<Finding>), ApiError> {
    let limit = state.config.config.server.max_json_body_bytes;
    let bytes: Bytes = read_whole(body, limit).await?;
    let fingerprint: [u8; 32] = Sha256::digest(&bytes).into();
    let mut req: JobRequest = parse_json(&bytes, "")?;
    let valid = validate(&req, state.clock.now())?;
    let findings = check_content(state, &valid, dry_run)?;
    precheck(state, &valid, &by.tenant)?;
    let audience = req.audience.take().ok_or_else(|| {
        ApiError::invalid(
            "audience",
            "is required (or submit application/x-ndjson with one recipient per line)",
        )
    })?;
    let mut builder = AudienceBuilder::new();
    match (audience.contacts, audience.segment) {
        (Some(contacts), None) => {
            for (i, r) in contacts.into_iter().enumerate() {
                push_recipient(&mut builder, r).map_err(|(f, m)| {
                    ApiError::invalid(format!("audience.contacts[{i}].{f}"), m)
                })?;
            }
        }
        (None, Some(expr)) => {
            let segment = Segment::parse(&expr)
                .map_err(|e| ApiError::invalid("audience.segment", e.to_string()))?;
            // A segment selects from the caller's tenant's own contact book.
            let snapshot = state.books.store(&by.tenant).current();
            for c in snapshot.iter() {
                if segment.matches(&c) {
                    builder
                        .push(c.contact_id(), None, None)
                        .map_err(|e| ApiError::invalid("audience.segment", e.to_string()))?;
                }
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "audience",
                "give exactly one of contacts or segment",
            ))
        }
    }
    if builder.is_empty() {
        return Err(ApiError::invalid("audience", "selects no recipients"));
    }
    Ok((valid, builder, fingerprint, findings))
}

fn push_recipient(
    builder: &mut AudienceBuilder,
    r: RecipientRequest,
) -> Result<(), (&'static str, String)> {
    let vars = r.variables.map(text_variables);
    builder
        .push(&r.contact_id, r.phone.as_deref(), vars)
        .map_err(|e| {
            let field = if matches!(e, crate::dispatch::AudienceError::PhoneTooLong) {
                "phone"
            } else {
                "contact_id"
            };
            (field, e.to_string())
        })
}

async fn read_ndjson(
    state: &AppState,
    tenant: &TenantId,
    body: Body,
    dry_run: bool,
) -> Result<(ValidJob, AudienceBuilder, [u8; 32], Vec<Finding>), ApiError> {
    let limit = state.config.config.server.max_upload_bytes;
    let (mut reader, cap) = capped_reader(body, limit)?;
    let mut hasher = Sha256::new();
    let mut line = Vec::with_capacity(256);
    let io_err = |e: std::io::Error, cap: &super::body::CapFlag, line_no: u64| {
        cap.refusal(limit)
            .unwrap_or_else(|| ApiError::bad_request(format!("line {line_no}: {e}")))
    };
    if !next_line(&mut reader, &mut line, MAX_JOB_LINE)
        .await
        .map_err(|e| io_err(e, &cap, 1))?
    {
        return Err(ApiError::bad_request(
            "empty body: the first line must be the job object",
        ));
    }
    hasher.update(&line);
    hasher.update(b"\n");
    let req: JobRequest = parse_json(&line, "")?;
    if req.audience.is_some() {
        return Err(ApiError::invalid("audience", "must not be in the job line of an NDJSON submission; send one recipient per further line"));
    }
    let valid = validate(&req, state.clock.now())?;
    let findings = check_content(state, &valid, dry_run)?;
    precheck(state, &valid, tenant)?;
    let mut builder = AudienceBuilder::new();
    let mut line_no: u64 = 1;
    loop {
        line_no += 1;
        if !next_line(&mut reader, &mut line, MAX_RECIPIENT_LINE)
            .await
            .map_err(|e| io_err(e, &cap, line_no))?
        {
            break;
        }
        hasher.update(&line);
        hasher.update(b"\n");
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let r: RecipientRequest = parse_json(&line, &format!("line {line_no}: "))?;
        push_recipient(&mut builder, r)
            .map_err(|(f, m)| ApiError::invalid(format!("line {line_no}: {f}"), m))?;
    }
    if builder.is_empty() {
        return Err(ApiError::invalid(
            "audience",
            "no recipient lines after the job line",
        ));
    }
    Ok((valid, builder, hasher.finalize().into(), findings))
}

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    JobId::parse(raw).ok_or_else(|| ApiError::not_found("job"))
}

/// The job `raw` names, if the caller's tenant owns it: another tenant's job is not found.
pub fn find(state: &AppState, by: &Principal, raw: &str) -> Result<Arc<Job>, ApiError> {
    let id = job_id(raw)?;
    let job = state
        .dispatcher
        .get(&id)
        .ok_or_else(|| missing_job(state, &id))?;
    if by.owns(job.spec.tenant.as_str()) {
        Ok(job)
    } else {
        Err(ApiError::not_found("job"))
    }
}

/// Not found, or not restored yet after a restart (then worth asking again shortly).
pub fn missing_job(state: &AppState, id: &JobId) -> ApiError {
    if state.dispatcher.is_recovering(id) {
        ApiError::unavailable("the job is being restored after a restart; ask again shortly")
    } else {
        ApiError::not_found("job")
    }
}

/// `GET /v1/jobs/{id}`.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    operation_id = "get_job",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id (`job_...`)")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job (`not_found`)", body = ErrorBody),
        (status = 503, description = "The job is being restored after a restart (`unavailable`); ask again shortly", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let job = find(&state, &by, &id)?;
    Ok(Json(job_view::view(&job, state.clock.now())).into_response())
}

/// Query of `GET /v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[serde(default)]
    pub status: Option<JobStatus>,
    #[serde(default)]
    pub campaign_id: Option<String>,
    /// 1 to 1000; 100 by default.
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// `GET /v1/jobs`'s answer, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList<'a> {
    pub jobs: Vec<JobView<'a>>,
}

/// `GET /v1/jobs`: newest first.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    operation_id = "list_jobs",
    tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "The jobs, newest first", body = JobList),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let now = state.clock.now();
    let jobs = state.dispatcher.list();
    let views: Vec<_> = jobs
        .iter()
        .filter(|j| by.owns(j.spec.tenant.as_str()))
        .filter(|j| q.status.is_none_or(|s| j.status() == s))
        .filter(|j| {
            q.campaign_id
                .as_deref()
                .is_none_or(|c| j.spec.campaign_id == c)
        })
        .take(limit)
        .map(|j| job_view::view(j, now))
        .collect();
    Ok(Json(JobList { jobs: views }).into_response())
}

/// Optional body of `POST /v1/jobs/{id}/resume`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// A raised budget; required to resume a `budget_exhausted` job.
    #[serde(default)]
    pub budget: Option<BudgetRequest>,
}

/// `POST /v1/jobs/{id}/pause`, `/resume` (optionally with `{"budget": {...}}`), `/cancel`.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/{action}",
    operation_id = "change_job_status",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The job id"),
        ("action" = String, Path, description = "`pause`, `resume` or `cancel`", pattern = "^(pause|resume|cancel)$"),
    ),
    request_body(description = "With `resume` only, optionally: a raised budget", content((ResumeRequest = "application/json"))),
    responses(
        (status = 200, description = "The job after the change", body = JobView),
        (status = 404, description = "No such job or action (`not_found`)", body = ErrorBody),
        (status = 409, description = "The job's status does not allow it (`invalid_transition`), or a budget-stopped job resumed without a higher budget (`budget_not_raised`)", body = ErrorBody),
        (status = 503, description = "The state backend does not answer (`state_unavailable`), or the job is being restored or could not be recorded (`unavailable`); repeat the request", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn transition(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiPath((id, action)): ApiPath<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_whole(body, state.config.config.server.max_json_body_bytes).await?;
    let id = find(&state, &by, &id)?.id.clone();
    let result = match action.as_str() {
        "pause" => state.dispatcher.pause(&id),
        "resume" => {
            let budget = if body.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                let req: ResumeRequest = parse_json(&body, "")?;
                let job = state
                    .dispatcher
                    .get(&id)
                    .ok_or_else(|| ApiError::not_found("job"))?;
                req.budget
                    .map(|b| b.check(job.currency, false))
                    .transpose()?
            };
            state.dispatcher.resume_with_budget(&id, budget)
        }
        "cancel" => state.dispatcher.cancel(&id),
        _ => return Err(ApiError::not_found("action")),
    };
    match result {
        Ok(_) => {
            // Answered once durable, so a pause or cancel holds across a crash right after.
            let persisted = match (&state.cluster, state.dispatcher.get(&id)) {
                (Some(cluster), Some(job)) => cluster
                    .status_changed(&job)
                    .await
                    .map_err(|e| e.to_string()),
                _ => state
                    .dispatcher
                    .persist_status(&id)
                    .await
                    .map_err(|e| e.to_string()),
            };
            if let Err(e) = persisted {
                tracing::error!(job = %id, error = %e, "status change applied but not journaled");
                return Err(ApiError::unavailable(
                    "the status change is in effect but could not be recorded durably; repeat it",
                ));
            }
            get(State(state), Extension(by), ApiPath(id.to_string())).await
        }
        Err(TransitionError::NotFound) => Err(missing_job(&state, &id)),
        Err(e @ TransitionError::NotAllowed(..)) => {
            Err(ApiError::new(ErrorCode::InvalidTransition, e.to_string()))
        }
        Err(e @ TransitionError::BudgetNotRaised { .. }) => {
            let mut err = ApiError::new(ErrorCode::BudgetNotRaised, e.to_string());
            err.field = Some("budget.amount_micros".into());
            Err(err)
        }
    }
}

/// `GET /v1/jobs/{id}/recipients`: one NDJSON line per recipient, streamed.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/recipients",
    operation_id = "get_job_recipients",
    tag = "reports",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "One `RecipientLine` a line, in submission order", content_type = "application/x-ndjson", body = String),
        (status = 404, description = "No such job (`not_found`)", body = ErrorBody),
        (status = 503, description = "The job is being restored after a restart (`unavailable`); ask again shortly", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn recipients(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let job = find(&state, &by, &id)?;
    let total = job.audience.len() as u32;
    const CHUNK: u32 = 4096;
    let stream = futures::stream::unfold(0u32, move |from| {
        let job = job.clone();
        async move {
            if from >= total {
                return None;
            }
            let to = (from + CHUNK).min(total);
            let mut buf = Vec::with_capacity((to - from) as usize * 96);
            for i in from..to {
                if serde_json::to_writer(&mut buf, &recipients::line(&job, i)).is_ok() {
                    buf.push(b'\n');
                }
            }
            Some((Ok::<_, std::io::Error>(Bytes::from(buf)), to))
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}
