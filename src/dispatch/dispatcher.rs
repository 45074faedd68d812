//! The dispatcher: the registry of jobs and the worker pool that runs them. Workers pick the
//! highest-priority runnable job (round-robin among equals), lease a chunk of one of its
//! shards, and process it. Chunks are sized so that, under a rate limit, a chunk takes a
//! fraction of a second: pause and cancel take effect quickly, and a small urgent job gets
//! its first send within moments even behind a multi-million one.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use parking_lot::RwLock;
use tokio::sync::{mpsc, Notify};

use super::job::Job;
use super::rate_limit::{ChannelLimits, PartsLimiter};
use super::routing::Router;
use super::simulated_receipts::{self, ReceiptBatch};
use super::{settle, worker};
use crate::access::TenantId;
use crate::clock::Clock;
use crate::config::DispatchConfig;
use crate::domain::{Channel, Currency, Hold, JobId, JobStatus};
use crate::provider::Provider;
use crate::snapshot::ContactBooks;
use crate::store::{StateHealth, StateStore};

/// A provider with its limiter, as jobs use it.
pub struct ProviderSlot {
    pub provider: Arc<dyn Provider>,
    pub channel: Channel,
    pub currency: Currency,
    pub limiter: PartsLimiter,
    /// Whether the provider drops a repeated message id, so a message in flight at a crash
    /// may be sent again (otherwise it is marked in doubt).
    pub idempotent: bool,
}

/// What the dispatcher is built from.
pub struct DispatcherDeps {
    pub store: Arc<dyn StateStore>,
    /// Every tenant's contact book; a job reads its tenant's only.
    pub books: Arc<ContactBooks>,
    pub providers: Vec<ProviderSlot>,
    /// Which provider each message goes to, and the providers' health.
    pub router: Router,
    /// Limits on whole channels, over their providers.
    pub channel_limits: ChannelLimits,
    /// Limits on each tenant's sends, over all its jobs.
    pub tenant_limits: super::TenantLimits,
    pub clock: Arc<dyn Clock>,
    pub config: DispatchConfig,
    /// Jobs hold their sends while the snapshot is older than this.
    pub max_snapshot_age: chrono::Duration,
    /// Whether every billable send gets a ledger charge (written through `send_log`) before
    /// it counts as sent.
    pub charging: bool,
    /// Where chunks handed to providers and their answers are recorded (picked at start-up:
    /// the journal, the cluster's shared marks, or the ledger alone).
    pub send_log: Arc<dyn super::send_log::SendLog>,
    /// Told about provider acceptances (the callbacks index), if anything listens.
    pub observer: Option<Arc<dyn super::SendObserver>>,
    /// Where jobs, `sending` chunks and provider answers are recorded so that a restart
    /// finishes every job without sending twice. None: nothing survives a restart.
    pub journal: Option<super::journal::Journal>,
    /// Whether the state store answers. While it does not, no chunk is leased (jobs read
    /// `blocked: state_unavailable`); a worker whose store call fails reports it here.
    pub state_health: Arc<StateHealth>,
}

/// A status change that is not allowed from the job's current status.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("job not found")]
    NotFound,
    #[error("job is {0:?} and cannot be {1}")]
    NotAllowed(JobStatus, &'static str),
    /// A job stopped at its budget resumes only with a higher one.
    #[error("budget.amount_micros must be above the current budget of {current} micros to resume")]
    BudgetNotRaised { current: i64 },
}

pub(super) struct Inner {
    pub deps: DispatcherDeps,
    jobs: DashMap<JobId, Arc<Job>>,
    /// Finished jobs still being restored from the journal after a restart.
    recovering: dashmap::DashSet<JobId>,
    order: RwLock<Vec<Arc<Job>>>,
    rotation: AtomicUsize,
    /// The hold every job was last told about (see [`Inner::apply_hold`]).
    last_hold: parking_lot::Mutex<Option<Hold>>,
    pub work_ready: Notify,
    pub shutdown: AtomicBool,
    /// Cancelled with `shutdown` set: what waits on something else (a prepared chunk waiting
    /// for the provider to answer the previous one) stops waiting at once.
    pub stopping: tokio_util::sync::CancellationToken,
    pub receipts: mpsc::Sender<ReceiptBatch>,
    /// Bounds the retry tasks in flight; a worker waits for a slot (backpressure).
    pub retry_slots: Arc<tokio::sync::Semaphore>,
    /// Bounds the chunks waiting for their ledger commit.
    pub ledger_slots: Arc<tokio::sync::Semaphore>,
}

/// Retry tasks allowed in flight at once.
const RETRY_SLOTS: usize = 4096;
/// Chunks that may wait for their ledger commit at once.
const LEDGER_SLOTS: usize = 256;

/// Queue depths, read at scrape time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDepths {
    /// Retry tasks waiting for their backoff or sending.
    pub retry_tasks: usize,
    /// Receipt batches waiting for the receipt applier.
    pub receipt_batches: usize,
}

/// Handle to the dispatcher; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
    /// The worker tasks, joined on drain so nothing holds the state afterwards.
    workers: Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Dispatcher {
    /// Starts the worker pool and the receipt applier on the current tokio runtime.
    pub fn start(deps: DispatcherDeps) -> Dispatcher {
        let (tx, rx) = mpsc::channel(4096);
        let workers = deps.config.workers;
        let inner = Arc::new(Inner {
            deps,
            jobs: DashMap::new(),
            recovering: dashmap::DashSet::new(),
            order: RwLock::new(Vec::new()),
            rotation: AtomicUsize::new(0),
            last_hold: parking_lot::Mutex::new(None),
            work_ready: Notify::new(),
            shutdown: AtomicBool::new(false),
            stopping: tokio_util::sync::CancellationToken::new(),
            receipts: tx,
            retry_slots: Arc::new(tokio::sync::Semaphore::new(RETRY_SLOTS)),
            ledger_slots: Arc::new(tokio::sync::Semaphore::new(LEDGER_SLOTS)),
        });
        let handles = (0..workers)
            .map(|n| tokio::spawn(worker::run(inner.clone(), n as u64)))
            .collect();
        tokio::spawn(simulated_receipts::apply_receipts(rx));
        tokio::spawn(watch_holds(Arc::downgrade(&inner)));
        if inner.deps.journal.is_some() {
            tokio::spawn(flush_deliveries_periodically(Arc::downgrade(&inner)));
        }
        Dispatcher {
            inner,
            workers: Arc::new(parking_lot::Mutex::new(handles)),
        }
    }

    /// Work waiting inside the dispatcher, for metrics.
    pub fn queue_depths(&self) -> QueueDepths {
        let receipts = &self.inner.receipts;
        QueueDepths {
            retry_tasks: RETRY_SLOTS.saturating_sub(self.inner.retry_slots.available_permits()),
            receipt_batches: receipts.max_capacity().saturating_sub(receipts.capacity()),
        }
    }

    /// The provider slots, in config order.
    pub fn providers(&self) -> &[ProviderSlot] {
        &self.inner.deps.providers
    }

    /// The provider messages of `channel` go to first (by the route table).
    pub fn provider_for(&self, channel: Channel) -> Option<(usize, &ProviderSlot)> {
        let slot = self.inner.deps.router.primary(channel)?;
        self.inner.deps.providers.get(slot).map(|p| (slot, p))
    }

    /// The route table and the providers' health.
    pub fn router(&self) -> &Router {
        &self.inner.deps.router
    }

    /// Whether a message of `channel` in flight at a crash, whose provider is not known, may
    /// be sent again: only when the channel is routed to one provider, which drops repeats.
    pub fn resends_after_crash(&self, channel: Channel) -> bool {
        match self.inner.deps.router.slots_for(channel)[..] {
            [only] => self
                .inner
                .deps
                .providers
                .get(only)
                .is_some_and(|p| p.idempotent),
            _ => false,
        }
    }

    /// Every tenant's contact book; a job is checked against its tenant's.
    pub fn books(&self) -> &Arc<ContactBooks> {
        &self.inner.deps.books
    }

    /// The clock jobs are run by.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.deps.clock
    }

    /// The number of shards a new job is split into.
    pub fn shards_per_job(&self) -> usize {
        (self.inner.deps.config.workers * 2).max(1)
    }

    /// Adds a planned job and wakes the workers.
    pub fn submit(&self, job: Arc<Job>) {
        crate::metrics::job_submitted(
            job.spec.channel,
            job.spec.purpose,
            job.audience.len() as u64,
        );
        let duplicates = job.audience.duplicates().len() as u64;
        if duplicates > 0 {
            crate::metrics::decisions(
                job.spec.channel,
                crate::metrics::Decided::Rejected(crate::domain::Reason::Duplicate),
                duplicates,
            );
        }
        if let Some(journal) = &self.inner.deps.journal {
            job.journal_deliveries(journal.delivery_notes());
        }
        self.inner.jobs.insert(job.id.clone(), job.clone());
        {
            let mut order = self.inner.order.write();
            order.push(job.clone());
            // Highest priority first; older first among equals.
            order.sort_by(|a, b| {
                b.spec
                    .priority
                    .cmp(&a.spec.priority)
                    .then(a.spec.created_at.cmp(&b.spec.created_at))
            });
        }
        self.save(&job);
        self.inner.work_ready.notify_waiters();
    }

    /// Records a newly accepted job durably (when the journal is on), then adds it. A job is
    /// acknowledged only after this, so an acknowledged job survives a crash.
    pub async fn accept(&self, job: Arc<Job>) -> Result<(), super::journal::JournalError> {
        if let Some(journal) = &self.inner.deps.journal {
            journal.record_job(job.clone()).await?;
        }
        self.submit(job);
        Ok(())
    }

    /// Sends again, under the same message ids, messages that were in flight when the
    /// previous process stopped (only for providers that drop repeated ids).
    pub fn resend_in_flight(
        &self,
        job: &Arc<Job>,
        provider: usize,
        items: Vec<super::journal::codec::SendingItem>,
    ) {
        if items.is_empty() {
            return;
        }
        tokio::spawn(worker::resend(
            self.inner.clone(),
            job.clone(),
            provider,
            items,
        ));
    }

    /// Lets receipts settle the job's in-doubt messages (charged through the journal).
    pub fn settle_in_doubt_on_receipt(&self, job: &Arc<Job>) {
        job.progress
            .in_doubt
            .set_settler(Arc::new(settle::Settler(Arc::downgrade(&self.inner))));
    }

    /// Settles an in-doubt message as sent under the id its provider gave (after a restart,
    /// when the provider could tell it took the message), charged through the journal.
    pub fn settle_in_doubt_as_sent(&self, job: &Arc<Job>, index: u32, provider_message_id: String) {
        settle::settle_sent(&self.inner, job, index, Some(provider_message_id));
    }

    /// Journals a job's control record in the background when called, for as long as this
    /// dispatcher runs (a variants rollout calls it when it chooses its winner).
    pub fn control_saver(&self, id: JobId) -> impl Fn() + Send + Sync + 'static {
        let inner = Arc::downgrade(&self.inner);
        move || {
            if let Some(inner) = inner.upgrade() {
                if let Some(job) = inner.job(&id) {
                    inner.save(&job);
                }
            }
        }
    }

    /// Makes the job's current status and budget durable (status changes are otherwise
    /// journaled in the background).
    pub async fn persist_status(&self, id: &JobId) -> Result<(), super::journal::JournalError> {
        match (&self.inner.deps.journal, self.get(id)) {
            (Some(journal), Some(job)) => {
                journal.record_control(&job)?.wait().await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Makes every delivery state applied so far durable; a receipt is acknowledged only
    /// after this, so a crash before it makes the provider send the receipt again.
    pub async fn flush_deliveries(&self) -> Result<(), super::journal::JournalError> {
        match &self.inner.deps.journal {
            Some(journal) => {
                journal.flush_deliveries()?.wait().await?;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Tells the observer (the receipts index) about sends restored after a restart.
    pub fn observe_restored(&self, job: &Arc<Job>, accepted: &[super::AcceptedMessage]) {
        if let Some(observer) = &self.inner.deps.observer {
            observer.accepted(job, accepted);
        }
    }

    /// Notes jobs that exist but are still being restored after a restart.
    pub fn mark_recovering(&self, ids: &[JobId]) {
        for id in ids {
            self.inner.recovering.insert(id.clone());
        }
    }

    /// Notes that the restoring of these jobs ended.
    pub fn mark_recovered(&self, ids: &[JobId]) {
        for id in ids {
            self.inner.recovering.remove(id);
        }
    }

    /// Whether a job exists but is still being restored after a restart.
    pub fn is_recovering(&self, id: &JobId) -> bool {
        self.inner.recovering.contains(id)
    }

    /// Wakes idle workers (new work became available, e.g. a shard lease was taken).
    pub fn wake(&self) {
        self.inner.work_ready.notify_waiters();
    }

    /// A job by id.
    pub fn get(&self, id: &JobId) -> Option<Arc<Job>> {
        self.inner.jobs.get(id).map(|j| j.clone())
    }

    /// Every job, newest first.
    pub fn list(&self) -> Vec<Arc<Job>> {
        let mut all: Vec<Arc<Job>> = self.inner.order.read().clone();
        all.sort_by_key(|j| std::cmp::Reverse(j.spec.created_at));
        all
    }

    /// Pauses a job: workers take no new chunk of it from now on.
    pub fn pause(&self, id: &JobId) -> Result<JobStatus, TransitionError> {
        self.transition(id, "paused", |s| match s {
            JobStatus::Queued | JobStatus::Scheduled | JobStatus::Running => {
                Some(JobStatus::Paused)
            }
            _ => None,
        })
    }

    /// Resumes a paused job from its cursors; nobody is sent twice.
    pub fn resume(&self, id: &JobId) -> Result<JobStatus, TransitionError> {
        self.resume_with_budget(id, None)
    }

    /// Resumes a paused or `budget_exhausted` job, first raising its budget to `budget`
    /// micros if given. A job stopped at its budget needs a higher one; recipients held
    /// back by the budget are offered again first, and nobody is sent twice.
    pub fn resume_with_budget(
        &self,
        id: &JobId,
        budget: Option<i64>,
    ) -> Result<JobStatus, TransitionError> {
        let job = self.get(id).ok_or(TransitionError::NotFound)?;
        let status = job.with_state(|st| {
            if !matches!(st.status, JobStatus::Paused | JobStatus::BudgetExhausted) {
                return Err(TransitionError::NotAllowed(st.status, "resumed"));
            }
            match budget {
                Some(b) => job
                    .progress
                    .budget
                    .raise(b)
                    .map_err(|e| TransitionError::BudgetNotRaised { current: e.current })?,
                None if st.status == JobStatus::BudgetExhausted => {
                    return Err(TransitionError::BudgetNotRaised {
                        current: job.progress.budget.limit().unwrap_or(0),
                    })
                }
                None => {}
            }
            st.status = JobStatus::Queued;
            Ok(JobStatus::Queued)
        })?;
        self.save(&job);
        self.inner.work_ready.notify_waiters();
        Ok(status)
    }

    /// Cancels a job: nothing more is sent; recipients not yet sent read as cancelled.
    pub fn cancel(&self, id: &JobId) -> Result<JobStatus, TransitionError> {
        let status = self.transition(id, "cancelled", |s| {
            (!s.is_terminal()).then_some(JobStatus::Cancelled)
        })?;
        if let Some(job) = self.get(id) {
            job.clear_deferred();
        }
        Ok(status)
    }

    fn transition(
        &self,
        id: &JobId,
        verb: &'static str,
        next: impl FnOnce(JobStatus) -> Option<JobStatus>,
    ) -> Result<JobStatus, TransitionError> {
        let job = self.get(id).ok_or(TransitionError::NotFound)?;
        let now = self.inner.deps.clock.now();
        let status = job.with_state(|st| match next(st.status) {
            Some(n) => {
                st.status = n;
                if n.is_terminal() {
                    st.finished_at = Some(now);
                }
                Ok(n)
            }
            None => Err(TransitionError::NotAllowed(st.status, verb)),
        })?;
        self.save(&job);
        self.inner.work_ready.notify_waiters();
        Ok(status)
    }

    /// Stops the workers after their current chunk.
    /// Stops taking new work and waits, up to `timeout`, until no chunk is held, no retry is
    /// pending and every ledger write has committed. Answers whether everything drained.
    pub async fn drain(&self, timeout: std::time::Duration) -> bool {
        self.shutdown();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let busy = self.inner.jobs.iter().any(|j| j.has_leases())
                || self.inner.retry_slots.available_permits() < RETRY_SLOTS
                || self.inner.ledger_slots.available_permits() < LEDGER_SLOTS;
            if !busy {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let handles: Vec<_> = std::mem::take(&mut *self.workers.lock());
        for h in handles {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if tokio::time::timeout(left, h).await.is_err() {
                return false;
            }
        }
        if let Err(e) = self.flush_deliveries().await {
            tracing::warn!(error = %e, "delivery states applied last could not be journaled");
        }
        true
    }

    /// Stops the workers after their current chunk (see [`Dispatcher::drain`] to wait).
    pub fn shutdown(&self) {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        self.inner.stopping.cancel();
        self.inner.work_ready.notify_waiters();
    }

    fn save(&self, job: &Arc<Job>) {
        self.inner.save(job);
    }
}

impl Inner {
    /// Persists the job's record in the background; the store is the source of truth for
    /// other instances and restarts, the in-memory job for this process's reads.
    pub fn save(&self, job: &Arc<Job>) {
        if let Some(journal) = &self.deps.journal {
            // Handed over here, in order; only the wait runs in the background.
            match journal.record_control(job) {
                Ok(pending) => {
                    let id = job.id.clone();
                    tokio::spawn(async move {
                        if let Err(e) = pending.wait().await {
                            tracing::warn!(job = %id, error = %e, "could not journal job status");
                        }
                    });
                }
                Err(e) => tracing::warn!(job = %job.id, error = %e, "could not journal job status"),
            }
        }
    }

    /// A job by id.
    pub fn job(&self, id: &JobId) -> Option<Arc<Job>> {
        self.jobs.get(id).map(|j| j.clone())
    }

    /// Picks the next unit of work: a job and a lease on some of its recipients.
    pub fn next_work(&self) -> Option<(Arc<Job>, super::job::Lease)> {
        let now = self.deps.clock.now();
        let order = self.order.read().clone();
        if order.is_empty() {
            return None;
        }
        let hold = self.hold();
        self.apply_hold(hold, &order, now);
        let rot = self.rotation.fetch_add(1, Ordering::Relaxed);
        let n = order.len();
        // Group by priority: within the first priority that has work, rotate.
        let mut i = 0;
        while i < n {
            let p = order[i].spec.priority;
            let mut j = i;
            while j < n && order[j].spec.priority == p {
                j += 1;
            }
            let group = &order[i..j];
            for k in 0..group.len() {
                let job = &group[(rot + k) % group.len()];
                if let Some(lease) = self.try_lease(job, now, hold) {
                    return Some((job.clone(), lease));
                }
            }
            i = j;
        }
        None
    }

    fn try_lease(
        &self,
        job: &Arc<Job>,
        now: DateTime<Utc>,
        hold: Option<Hold>,
    ) -> Option<super::job::Lease> {
        let hold = self.hold_of(job, hold, now);
        let runnable = job.with_state(|st| {
            if st.status == JobStatus::Scheduled && job.spec.send_at.is_none_or(|t| t <= now) {
                st.status = JobStatus::Queued;
            }
            if !matches!(st.status, JobStatus::Queued | JobStatus::Running) {
                return false;
            }
            st.blocked = hold.map(Hold::as_str);
            hold.is_none()
        });
        if !runnable {
            return None;
        }
        let max = self.chunk_size(job);
        match job.lease(max, now) {
            Some(lease) => {
                let started = job.with_state(|st| {
                    if st.status == JobStatus::Queued {
                        st.status = JobStatus::Running;
                        st.started_at.get_or_insert(now);
                        true
                    } else {
                        false
                    }
                });
                if started {
                    self.save(job);
                }
                Some(lease)
            }
            None => {
                self.maybe_complete(job, now);
                None
            }
        }
    }

    /// Marks a job completed once every recipient has a final outcome and no worker holds it.
    pub fn maybe_complete(&self, job: &Arc<Job>, now: DateTime<Utc>) {
        // A shared job completes in its shared record, once every outcome is written there.
        if job.remaining() > 0 || job.has_leases() || job.share().is_some() {
            return;
        }
        let done = job.with_state(|st| {
            if matches!(st.status, JobStatus::Queued | JobStatus::Running) {
                st.status = JobStatus::Completed;
                st.finished_at = Some(now);
                st.started_at.get_or_insert(now);
                true
            } else {
                false
            }
        });
        if done {
            self.save(job);
        }
    }

    /// Whether `tenant`'s book (the one its jobs read) is young enough to send on. A tenant
    /// without a book has nothing in it to grow old: its jobs found nobody to send to.
    fn snapshot_fresh(&self, tenant: &TenantId, now: DateTime<Utc>) -> bool {
        let as_of = match tenant.is_default() {
            true => self.deps.books.default_store().as_of(),
            false if !self.deps.books.has_book(tenant) => return true,
            false => self.deps.books.store(tenant).as_of(),
        };
        now - as_of <= self.deps.max_snapshot_age
    }

    /// Why no job may send right now, if something holds them all.
    fn hold(&self) -> Option<Hold> {
        if !self.deps.state_health.is_up() {
            Some(Hold::StateUnavailable)
        } else {
            None
        }
    }

    /// Why `job` may not send right now: what holds every job, or its tenant's stale book.
    fn hold_of(&self, job: &Job, hold: Option<Hold>, now: DateTime<Utc>) -> Option<Hold> {
        hold.or_else(|| {
            (!self.snapshot_fresh(&job.spec.tenant, now)).then_some(Hold::SnapshotStale)
        })
    }

    /// Tells every runnable job when the hold changes. `try_lease` keeps `blocked` current
    /// for the jobs it visits, but a job queued behind a busier one is not visited, and must
    /// not keep reading `blocked` after the hold cleared.
    fn apply_hold(&self, hold: Option<Hold>, order: &[Arc<Job>], now: DateTime<Utc>) {
        let mut last = self.last_hold.lock();
        if *last == hold {
            return;
        }
        *last = hold;
        for job in order {
            let held = self.hold_of(job, hold, now);
            job.with_state(|st| {
                if matches!(st.status, JobStatus::Queued | JobStatus::Running) {
                    st.blocked = held.map(Hold::as_str);
                }
            });
        }
    }

    /// Recipients per chunk: the configured batch without a rate limit; under one, about a
    /// fifth of a second of the tightest of the job's first provider's, its channel's and its
    /// tenant's rates, shared across the workers.
    fn chunk_size(&self, job: &Job) -> usize {
        let batch = self.deps.config.batch_size.max(1);
        let provider = self.deps.providers[job.provider].limiter.rate() as usize;
        let channel = self
            .deps
            .channel_limits
            .get(job.spec.channel)
            .map_or(0, |l| l.rate() as usize);
        let tenant = self
            .deps
            .tenant_limits
            .get(&job.spec.tenant)
            .map_or(0, |l| l.rate() as usize);
        let rate = [provider, channel, tenant]
            .into_iter()
            .filter(|r| *r > 0)
            .min()
            .unwrap_or(0);
        if rate == 0 {
            return batch;
        }
        (rate / 5 / self.deps.config.workers.max(1)).clamp(1, batch)
    }

    /// How long an idle worker sleeps before looking again.
    pub fn idle_wait(&self) -> Duration {
        Duration::from_millis(25)
    }
}

/// The dispatcher, for a background task that holds it only while it works; `None` once it
/// is dropped or shutting down, when the task should stop.
fn still_running(inner: &std::sync::Weak<Inner>) -> Option<Arc<Inner>> {
    inner
        .upgrade()
        .filter(|i| !i.shutdown.load(Ordering::SeqCst))
}

/// Keeps jobs' `blocked` current while no worker reaches [`Inner::next_work`] (all of them
/// waiting on a store that is down, say), so a report shows why a job stopped moving.
/// Stops with the dispatcher.
async fn watch_holds(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let Some(inner) = still_running(&inner) else {
            return;
        };
        let order = inner.order.read().clone();
        inner.apply_hold(inner.hold(), &order, inner.deps.clock.now());
    }
}

/// Delivery states noted by receipts nobody waits on (the sandbox's simulated ones) are
/// flushed every 100 ms; stops with the dispatcher. Holds the dispatcher (and so the
/// database) only while flushing, so a stopped gateway closes its database at once.
async fn flush_deliveries_periodically(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let Some(journal) = still_running(&inner).and_then(|i| i.deps.journal.clone()) else {
            return;
        };
        if journal.deliveries_pending() {
            if let Ok(pending) = journal.flush_deliveries() {
                if let Err(e) = pending.wait().await {
                    tracing::warn!(error = %e, "could not journal delivery states");
                }
            }
        }
    }
}
