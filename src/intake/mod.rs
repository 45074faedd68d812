//! Accepting a job, once its request is valid: the Idempotency-Key's rules (the same key and
//! body answer the job they made, a different body is a conflict, a retry while the first
//! request runs waits), planning, publishing to the other instances, and recording it
//! durably before it is acknowledged. The HTTP handler validates and calls this; previews go
//! through the same planning without reserving or recording anything. A tenant with a
//! monthly quota has the job's recipients counted against it before the job is recorded
//! ([`quota`]).

mod keys_in_flight;
pub mod quota;

use std::collections::HashMap;
use std::sync::Arc;

pub use keys_in_flight::{KeyInFlight, KeysInFlight};

use crate::cluster::Cluster;
use crate::config::{Config, StateBackend};
use crate::dispatch::journal::JournalError;
use crate::dispatch::planner::{self, PlanError, PlanRequest};
use crate::dispatch::preview::{self, Preview};
use crate::dispatch::{Audience, Dispatcher, Job, JobSpec};
use crate::domain::JobId;
use crate::links::{Rewritten, Tracking};
use crate::store::{IdempotencyClaim, StateStore, StoreError};
use crate::template::Template;

/// A valid job request with its audience, ready to plan.
pub struct Submission {
    pub spec: JobSpec,
    pub template: Arc<Template>,
    pub variables: HashMap<String, String>,
    pub audience: Audience,
    /// The spending budget in the provider's currency, if the job has one.
    pub budget_micros: Option<i64>,
    /// The template's links as tracked links, when the job tracks them.
    pub links: Option<Rewritten>,
}

/// The Idempotency-Key of a submission and the fingerprint of the body it came with.
pub struct IdempotencyKey<'a> {
    pub key: &'a str,
    pub fingerprint: [u8; 32],
}

/// What a submission came to.
pub enum Submitted {
    /// A new job, recorded durably.
    Created(Arc<Job>),
    /// The job an earlier request with the same key and body made.
    Existing(Arc<Job>),
}

/// Why a submission was not accepted; nothing of it was recorded.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("a request with this Idempotency-Key is still being handled; retry shortly")]
    KeyInProgress,
    #[error("Idempotency-Key was already used with a different body (job {0})")]
    KeyConflict(JobId),
    #[error(
        "the job this Idempotency-Key names is being restored after a restart; ask again shortly"
    )]
    KeyJobRecovering(JobId),
    #[error("the job this Idempotency-Key names ({0}) is not known here")]
    KeyJobUnknown(JobId),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("the job could not be shared with the other instances; try again")]
    Publish(#[source] StoreError),
    #[error("the job could not be recorded durably; try again")]
    Record(#[source] JournalError),
    #[error("{0}")]
    QuotaExceeded(quota::QuotaExceeded),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Accepts jobs.
pub struct Intake {
    dispatcher: Dispatcher,
    store: Arc<dyn StateStore>,
    config: Config,
    tracking: Arc<Tracking>,
    cluster: Option<Arc<Cluster>>,
    keys: Arc<KeysInFlight>,
}

impl Intake {
    /// Intake over the running dispatcher and state store (and the cluster, when instances
    /// share jobs).
    pub fn new(
        dispatcher: Dispatcher,
        store: Arc<dyn StateStore>,
        config: Config,
        tracking: Arc<Tracking>,
        cluster: Option<Arc<Cluster>>,
    ) -> Intake {
        Intake {
            dispatcher,
            store,
            config,
            tracking,
            cluster,
            keys: Arc::default(),
        }
    }

    /// Plans and records a job; answers once it is durable (and shared, with several
    /// instances). With a key: the same key and body answer the job they made.
    pub async fn submit(
        &self,
        submission: Submission,
        key: Option<IdempotencyKey<'_>>,
    ) -> Result<Submitted, IntakeError> {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "job.submit",
            job_id = tracing::field::Empty,
            campaign_id = %submission.spec.campaign_id,
            tenant = %submission.spec.tenant,
        );
        let submitted = self.submit_traced(submission, key).instrument(span).await;
        // Logged in the request's span, so the line carries its request id and tenant.
        if let Ok(Submitted::Created(job)) = &submitted {
            tracing::info!(job = %job.id, campaign = %job.spec.campaign_id, audience = job.audience.len(), "job accepted");
        }
        submitted
    }

    async fn submit_traced(
        &self,
        submission: Submission,
        key: Option<IdempotencyKey<'_>>,
    ) -> Result<Submitted, IntakeError> {
        // Held until this request is answered: a retry meanwhile is told to wait.
        let _in_flight = match &key {
            Some(k) => Some(self.keys.enter(k.key).ok_or(IntakeError::KeyInProgress)?),
            None => None,
        };
        let mut id = JobId::generate();
        if let Some(k) = &key {
            match self.claim(k, &id).await? {
                Claimed::New => {}
                Claimed::Existing(job) => return Ok(Submitted::Existing(job)),
                Claimed::Orphan(existing) => id = existing,
            }
        }
        let mut submission = submission;
        let (budget_micros, links) = (submission.budget_micros, submission.links.take());
        tracing::Span::current().record("job_id", id.as_str());
        let job = self.plan(id, submission, true)?;
        job.set_trace(crate::traces::JobTrace::current());
        if let Some(links) = &links {
            self.tracking.attach(&job, links, job.spec.channel);
        }
        if let Some(amount) = budget_micros {
            job.progress.budget.set_limit(amount);
        }
        let counted = quota::reserve(
            &*self.store,
            &self.config,
            quota::Reserve {
                tenant: &job.spec.tenant,
                job: &job.id,
                recipients: (job.audience.len() - job.audience.duplicates().len()) as u64,
                at: job.spec.created_at,
            },
        )
        .await?
        .map_err(IntakeError::QuotaExceeded)?;
        let recorded = self.record(&job).await;
        if let (Err(_), Some(month)) = (&recorded, counted) {
            // Not accepted after all: the recipients no longer count. Should this fail too,
            // the retry with the same Idempotency-Key finds the reservation and keeps it.
            if let Err(e) = self
                .store
                .release_quota(&job.spec.tenant, month, &job.id)
                .await
            {
                tracing::warn!(job = %job.id, error = %e, "a refused job's quota could not be given back");
            }
        }
        recorded?;
        Ok(Submitted::Created(job))
    }

    /// Publishes the job to the other instances (when there are any), then records it:
    /// acknowledged only once the job and its audience are durable.
    async fn record(&self, job: &Arc<Job>) -> Result<(), IntakeError> {
        if let Some(cluster) = &self.cluster {
            cluster.publish(job).await.map_err(IntakeError::Publish)?;
        }
        self.dispatcher
            .accept(job.clone())
            .await
            .map_err(IntakeError::Record)
    }

    /// The tenant's quota this month, if it has one.
    pub async fn quota(
        &self,
        tenant: &crate::access::TenantId,
    ) -> Result<Option<quota::QuotaView>, StoreError> {
        let now = self.dispatcher.clock().now();
        quota::current(&*self.store, &self.config, tenant, now).await
    }

    /// Runs the whole decision pipeline over a submission without sending, reserving or
    /// recording anything.
    pub async fn preview(&self, submission: Submission) -> Result<Preview, IntakeError> {
        let job = self.plan(JobId::generate(), submission, false)?;
        Ok(preview::preview(&self.dispatcher, &*self.store, &job).await?)
    }

    fn plan(&self, id: JobId, s: Submission, reserve_caps: bool) -> Result<Arc<Job>, IntakeError> {
        let request = PlanRequest {
            id,
            spec: s.spec,
            template: s.template,
            job_variables: s.variables,
            audience: s.audience,
            reserve_caps,
            shards: None,
        };
        Ok(planner::plan(&self.dispatcher, &self.config, request)?)
    }

    /// Claims the key for `id`, or finds what claimed it before.
    async fn claim(&self, k: &IdempotencyKey<'_>, id: &JobId) -> Result<Claimed, IntakeError> {
        match self
            .store
            .claim_idempotency_key(k.key, k.fingerprint, id)
            .await?
        {
            IdempotencyClaim::New => Ok(Claimed::New),
            IdempotencyClaim::Conflict(existing) => Err(IntakeError::KeyConflict(existing)),
            IdempotencyClaim::Existing(existing) => match self.dispatcher.get(&existing) {
                Some(job) => Ok(Claimed::Existing(job)),
                None if self.claims_are_local() && !self.dispatcher.is_recovering(&existing) => {
                    // The claim outlived its request: its job was never recorded (a 503, or
                    // the process stopped in between). This is that request again, so it
                    // goes on under the claimed id and the key keeps naming one job.
                    tracing::info!(job = %existing, "an idempotency claim without its job is taken up by a retry");
                    Ok(Claimed::Orphan(existing))
                }
                None if self.dispatcher.is_recovering(&existing) => {
                    Err(IntakeError::KeyJobRecovering(existing))
                }
                None => Err(IntakeError::KeyJobUnknown(existing)),
            },
        }
    }

    /// Whether idempotency claims are this process's own (embedded or in-memory state). With
    /// Redis state another instance may hold the job a claim names, or be recording it.
    fn claims_are_local(&self) -> bool {
        matches!(
            self.config.state.backend,
            StateBackend::Embedded | StateBackend::Memory
        )
    }
}

/// What claiming a key found.
enum Claimed {
    New,
    Existing(Arc<Job>),
    /// A claim whose job was never recorded: the submission goes on under its id.
    Orphan(JobId),
}
