//! The job registry: every background job (garbage collection, lifecycle, key deletion, replica
//! repair and scrub, the boundary drift check, ledger integration, record refreshes) has one
//! shape, [`Job`], and runs under one loop, [`JobRegistry::spawn_all`]: a step every interval,
//! at once again while a step reports more work, at once when woken; under a lease when only
//! one gateway may run it at a time. What each job last did is kept per gateway
//! ([`JobStatus`]) and listed by the admin API (`GET /admin/v1/jobs`, `vallum jobs`). Tested over
//! a real metadata store in `crates/server/tests/service/jobs.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::meta::Leases;

/// A job's lease outlives a crashed holder by at least this much (and by three intervals).
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(60);

/// Characters of a step's error message kept in the job's status.
pub const MAX_ERROR_CHARS: usize = 1024;

/// Why a job step failed (the job retries at its next interval).
pub type JobError = Box<dyn std::error::Error + Send + Sync>;

/// What one step of a job did.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// More work is pending: run the next step at once (the lease is renewed first).
    pub more: bool,
    /// What the job reports about its work so far (shown in its status), if anything.
    pub progress: Option<serde_json::Value>,
}

impl Step {
    /// Nothing more to do until the next interval.
    #[must_use]
    pub fn done() -> Self {
        Self::default()
    }

    /// More work is pending.
    #[must_use]
    pub fn more(more: bool) -> Self {
        Self {
            more,
            progress: None,
        }
    }

    /// The same step, reporting `progress`.
    #[must_use]
    pub fn with_progress(mut self, progress: impl Serialize) -> Self {
        self.progress = serde_json::to_value(progress).ok();
        self
    }
}

/// A background job.
#[async_trait]
pub trait Job: Send + Sync {
    /// The job's name (also its lease's name when it has one): `gc`, `lifecycle`, ….
    fn name(&self) -> &'static str;

    /// Whether one gateway at a time runs it (under the lease named [`Job::name`]); otherwise
    /// every gateway runs its own.
    fn leased(&self) -> bool;

    /// The pause between steps when a step reports no more work.
    fn interval(&self) -> Duration;

    /// Runs a step as soon as this is notified, too (e.g. a write short of replicas).
    fn wake(&self) -> Option<Arc<Notify>> {
        None
    }

    /// Whether a step runs at start, before the first interval (default: yes).
    fn runs_at_start(&self) -> bool {
        true
    }

    /// One bounded step of work.
    async fn step(&self) -> Result<Step, JobError>;
}

/// What a job last did on this gateway.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct JobStatus {
    /// The job's name.
    pub name: String,
    /// Whether one gateway at a time runs it.
    pub leased: bool,
    /// Seconds between steps when idle.
    pub interval_secs: u64,
    /// Whether this gateway held the lease at its last attempt (always true when not leased).
    pub holds_lease: bool,
    /// Steps run on this gateway.
    pub steps: u64,
    /// Steps that failed.
    pub failures: u64,
    /// When the last step started (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_step_ms: Option<i64>,
    /// When the last step succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_ms: Option<i64>,
    /// The last step's error, if it failed (cleared by the next success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// What the job last reported about its work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<serde_json::Value>,
}

/// The jobs a gateway runs, and what each last did.
#[derive(Default)]
pub struct JobRegistry {
    jobs: Vec<Arc<dyn Job>>,
    status: Arc<Mutex<BTreeMap<&'static str, JobStatus>>>,
}

impl std::fmt::Debug for JobRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.jobs.iter().map(|j| j.name()).collect();
        f.debug_struct("JobRegistry").field("jobs", &names).finish()
    }
}

/// The running jobs: stop them with [`RunningJobs::stop`].
#[derive(Debug)]
pub struct RunningJobs {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningJobs {
    /// Stops every job after its current step (leases are released) and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A cloneable view of the registry's statuses (for the admin API).
#[derive(Debug, Clone, Default)]
pub struct JobStatuses(Arc<Mutex<BTreeMap<&'static str, JobStatus>>>);

impl JobStatuses {
    /// Every registered job's status, by name.
    #[must_use]
    pub fn list(&self) -> Vec<JobStatus> {
        self.0
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl JobRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `job`; a second job of the same name replaces nothing and is refused.
    ///
    /// # Panics
    /// When a job of the same name is registered already (a wiring mistake).
    pub fn register(&mut self, job: Arc<dyn Job>) {
        let name = job.name();
        assert!(
            self.jobs.iter().all(|j| j.name() != name),
            "job {name} registered twice"
        );
        if let Ok(mut s) = self.status.lock() {
            s.insert(
                name,
                JobStatus {
                    name: name.to_owned(),
                    leased: job.leased(),
                    interval_secs: job.interval().as_secs(),
                    ..JobStatus::default()
                },
            );
        }
        self.jobs.push(job);
    }

    /// The statuses, readable while the jobs run.
    #[must_use]
    pub fn statuses(&self) -> JobStatuses {
        JobStatuses(Arc::clone(&self.status))
    }

    /// Starts every job: leases are taken in `leases` as `holder`, times read from `clock`.
    #[must_use]
    pub fn spawn_all(
        &self,
        leases: Arc<dyn Leases>,
        clock: Arc<dyn Clock>,
        holder: &str,
    ) -> RunningJobs {
        let (stop, stopped) = watch::channel(false);
        let tasks = self
            .jobs
            .iter()
            .map(|job| {
                let runner = Runner {
                    job: Arc::clone(job),
                    leases: Arc::clone(&leases),
                    clock: Arc::clone(&clock),
                    holder: holder.to_owned(),
                    status: Arc::clone(&self.status),
                };
                tokio::spawn(runner.run(stopped.clone()))
            })
            .collect();
        RunningJobs { stop, tasks }
    }
}

struct Runner {
    job: Arc<dyn Job>,
    leases: Arc<dyn Leases>,
    clock: Arc<dyn Clock>,
    holder: String,
    status: Arc<Mutex<BTreeMap<&'static str, JobStatus>>>,
}

impl Runner {
    fn lease_ttl_ms(&self) -> i64 {
        let ttl = self.job.interval().saturating_mul(3).max(MIN_LEASE_TTL);
        i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
    }

    fn update(&self, f: impl FnOnce(&mut JobStatus)) {
        if let Ok(mut s) = self.status.lock()
            && let Some(st) = s.get_mut(self.job.name())
        {
            f(st);
        }
    }

    /// Runs one step if this gateway may; returns whether more work is pending.
    async fn attempt(&self) -> bool {
        let name = self.job.name();
        if self.job.leased() {
            let now = self.clock.now_ms();
            match self
                .leases
                .acquire_lease(name, &self.holder, now, self.lease_ttl_ms())
                .await
            {
                Ok(true) => self.update(|s| s.holds_lease = true),
                Ok(false) => {
                    tracing::debug!(job = name, "another gateway holds the job lease");
                    self.update(|s| s.holds_lease = false);
                    return false;
                }
                Err(err) => {
                    tracing::warn!(job = name, %err, "could not take the job lease; will retry");
                    self.update(|s| s.holds_lease = false);
                    return false;
                }
            }
        } else {
            self.update(|s| s.holds_lease = true);
        }
        let started = self.clock.now_ms();
        let result = self.job.step().await;
        let finished = self.clock.now_ms();
        match result {
            Ok(step) => {
                self.update(|s| {
                    s.steps += 1;
                    s.last_step_ms = Some(started);
                    s.last_success_ms = Some(finished);
                    s.last_error = None;
                    if step.progress.is_some() {
                        s.progress.clone_from(&step.progress);
                    }
                });
                step.more
            }
            Err(err) => {
                let text: String = err.to_string().chars().take(MAX_ERROR_CHARS).collect();
                // A job that keeps failing the same way is reported once, not every interval.
                let repeated = self
                    .status
                    .lock()
                    .ok()
                    .and_then(|s| s.get(name).and_then(|st| st.last_error.clone()))
                    .is_some_and(|last| last == text);
                if repeated {
                    tracing::debug!(job = name, error = %text, "job step failed again");
                } else {
                    tracing::warn!(job = name, error = %text, "job step failed; will retry");
                }
                self.update(|s| {
                    s.steps += 1;
                    s.failures += 1;
                    s.last_step_ms = Some(started);
                    s.last_error = Some(text);
                });
                false
            }
        }
    }

    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let wake = self.job.wake();
        let mut first = true;
        loop {
            let pause = if first && self.job.runs_at_start() {
                Duration::ZERO
            } else {
                self.job.interval()
            };
            first = false;
            let woken = async {
                match &wake {
                    Some(w) => w.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = woken => {}
                _ = stopped.changed() => break,
            }
            // Steps follow each other at once while there is more to do.
            while self.attempt().await {
                if *stopped.borrow() {
                    break;
                }
            }
            if *stopped.borrow() {
                break;
            }
        }
        if self.job.leased() {
            let _ = self
                .leases
                .release_lease(self.job.name(), &self.holder)
                .await;
        }
    }
}
