//! The server's background jobs, each one [`Job`] of the registry: what used to be an inline
//! spawn in `server::start` is a small type here with its name, lease, interval and step.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use vallum_core::context::RequestContext;
use vallum_core::gc::GcPolicy;
use vallum_core::jobs::{Job, JobError, Step};
use vallum_core::keyadmin::{KeyAdmin, RewrapProgress};
use vallum_core::records::{TypedRecords, kind};
use vallum_core::service::ObjectService;
use vallum_meta::SqliteMetaStore;

use crate::metrics::Metrics;

/// Versions one lifecycle step examines at most.
pub const LIFECYCLE_STEP_VERSIONS: usize = 10_000;
/// How often scheduled key deletions are checked.
pub const KEY_DELETION_INTERVAL: Duration = Duration::from_secs(60);
/// How often stored data is checked against the boundary policies.
pub const BOUNDARY_CHECK_INTERVAL: Duration = Duration::from_secs(300);
/// How often identity records are reloaded (changes made through another gateway).
pub const IAM_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// How often the re-wrap job looks at its queue when nothing wakes it.
pub const KEY_REWRAP_INTERVAL: Duration = Duration::from_secs(60);
/// How often the embedded store's files are checked (write-ahead file present, commit
/// high-water mark recorded).
pub const META_GUARD_INTERVAL: Duration = Duration::from_secs(1);

/// Garbage collection: trashed blobs, abandoned uploads, temporary files, orphans.
pub struct Gc {
    /// The service.
    pub service: Arc<ObjectService>,
    /// What to collect, and after how long.
    pub policy: GcPolicy,
    /// Seconds between passes.
    pub interval: Duration,
}

#[async_trait]
impl Job for Gc {
    fn name(&self) -> &'static str {
        "gc"
    }
    fn leased(&self) -> bool {
        true
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    async fn step(&self) -> Result<Step, JobError> {
        let report = self.service.collect_garbage(&self.policy).await?;
        Ok(Step::done().with_progress(report))
    }
}

/// Lifecycle rules: expirations and aborted uploads, a bounded number of versions per step.
pub struct Lifecycle {
    /// The service.
    pub service: Arc<ObjectService>,
    /// Where progress is published.
    pub metrics: Arc<Metrics>,
    /// Time between passes.
    pub interval: Duration,
}

#[async_trait]
impl Job for Lifecycle {
    fn name(&self) -> &'static str {
        vallum_core::lifecycle::LIFECYCLE_JOB
    }
    fn leased(&self) -> bool {
        true
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    async fn step(&self) -> Result<Step, JobError> {
        let ctx = RequestContext::system(self.name());
        let progress = self
            .service
            .run_lifecycle(&ctx, LIFECYCLE_STEP_VERSIONS)
            .await?;
        self.metrics.set_lifecycle(&progress);
        // More of the pass is left: continue at once (the lease is renewed first).
        Ok(Step::more(progress.bucket.is_some()).with_progress(progress))
    }
}

/// Keys whose scheduled deletion is due are destroyed (and reported in the log).
pub struct KeyDeletion {
    /// Key administration.
    pub keys: KeyAdmin,
}

#[async_trait]
impl Job for KeyDeletion {
    fn name(&self) -> &'static str {
        "key-deletion"
    }
    fn leased(&self) -> bool {
        true
    }
    fn interval(&self) -> Duration {
        KEY_DELETION_INTERVAL
    }
    async fn step(&self) -> Result<Step, JobError> {
        let ctx = RequestContext::system(self.name());
        let reports = self.keys.destroy_due_keys(&ctx).await?;
        for r in &reports {
            tracing::warn!(key_id = %r.key_id, versions = r.unrecoverable.versions, bytes = r.unrecoverable.bytes, "scheduled key deletion: key destroyed, its objects are unrecoverable");
        }
        Ok(Step::done().with_progress(serde_json::json!({ "destroyed": reports })))
    }
}

/// Replica repair, scrubbing and migration; a write short of replicas wakes it at once.
pub struct Repair {
    /// The service.
    pub service: Arc<ObjectService>,
    /// Time between passes.
    pub interval: Duration,
    /// How often each replica is read back and verified, ms.
    pub scrub_every_ms: i64,
    /// Blobs one step examines at most.
    pub step_blobs: usize,
}

#[async_trait]
impl Job for Repair {
    fn name(&self) -> &'static str {
        vallum_core::residency::repair::REPAIR_JOB
    }
    fn leased(&self) -> bool {
        true
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    fn wake(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.service.repair_hint())
    }
    async fn step(&self) -> Result<Step, JobError> {
        let progress = self
            .service
            .repair_step(self.step_blobs, self.scrub_every_ms)
            .await?;
        Ok(Step::more(progress.cursor.is_some()).with_progress(progress))
    }
}

/// Every gateway checks stored data against the boundary policies, read-only: at start (a
/// site's profile or the default policy may have changed) and then periodically
/// (certifications lapse). Drift and its end are reported once each.
pub struct BoundaryCheck {
    /// The service.
    pub service: Arc<ObjectService>,
    /// Where the count of buckets outside their boundary is published.
    pub metrics: Arc<Metrics>,
    /// The buckets found outside their boundary at the last check.
    pub outside: Mutex<BTreeSet<String>>,
}

#[async_trait]
impl Job for BoundaryCheck {
    fn name(&self) -> &'static str {
        "boundary-check"
    }
    fn leased(&self) -> bool {
        false
    }
    fn interval(&self) -> Duration {
        BOUNDARY_CHECK_INTERVAL
    }
    async fn step(&self) -> Result<Step, JobError> {
        let report = self.service.compliance().await?;
        let now: BTreeSet<String> = report
            .iter()
            .filter(|b| !b.compliant)
            .map(|b| b.bucket.clone())
            .collect();
        let mut outside = self
            .outside
            .lock()
            .map_err(|_| "boundary check state poisoned")?;
        for b in report
            .iter()
            .filter(|b| !b.compliant && !outside.contains(&b.bucket))
        {
            tracing::warn!(target: "vallum::audit", event = "boundary_drift", bucket = %b.bucket, policy = ?b.policy, site = %b.site, reasons = %b.reasons.join("; "), "stored data is outside the bucket's boundary policy");
        }
        for b in outside.difference(&now) {
            tracing::info!(target: "vallum::audit", event = "boundary_drift_cleared", bucket = %b, "stored data is inside the bucket's boundary policy again");
        }
        self.metrics.set_boundary_noncompliant(now.len());
        let progress = serde_json::json!({ "buckets": report.len(), "outside": &now });
        *outside = now;
        Ok(Step::done().with_progress(progress))
    }
}

/// Every gateway reloads identity records (changed through another gateway).
pub struct IamRefresh {
    /// The identity service.
    pub iam: Arc<vallum_core::iam::Iam>,
}

#[async_trait]
impl Job for IamRefresh {
    fn name(&self) -> &'static str {
        "iam-refresh"
    }
    fn leased(&self) -> bool {
        false
    }
    fn interval(&self) -> Duration {
        IAM_REFRESH_INTERVAL
    }
    fn runs_at_start(&self) -> bool {
        false
    }
    async fn step(&self) -> Result<Step, JobError> {
        self.iam.refresh().await?;
        Ok(Step::done())
    }
}

/// The embedded store's guard: write-ahead file present, commit high-water mark recorded.
pub struct MetaGuard {
    /// The embedded store.
    pub store: SqliteMetaStore,
}

#[async_trait]
impl Job for MetaGuard {
    fn name(&self) -> &'static str {
        "meta-guard"
    }
    fn leased(&self) -> bool {
        false
    }
    fn interval(&self) -> Duration {
        META_GUARD_INTERVAL
    }
    fn runs_at_start(&self) -> bool {
        false
    }
    async fn step(&self) -> Result<Step, JobError> {
        self.store.guard().await?;
        Ok(Step::done())
    }
}

/// Every gateway reloads run-time site records (added, drained, removed elsewhere).
pub struct SiteRefresh {
    /// The service.
    pub service: Arc<ObjectService>,
    /// The gateway's sites.
    pub sites: Arc<crate::sites::SiteManager>,
    /// Time between reloads.
    pub interval: Duration,
}

#[async_trait]
impl Job for SiteRefresh {
    fn name(&self) -> &'static str {
        "site-refresh"
    }
    fn leased(&self) -> bool {
        false
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    fn runs_at_start(&self) -> bool {
        false
    }
    async fn step(&self) -> Result<Step, JobError> {
        if self.sites.refresh(&self.service).await? {
            tracing::info!("site records changed; new sites in force");
            self.service.repair_hint().notify_one();
        }
        Ok(Step::done())
    }
}

/// Integrates the shared log's pending entries into its tree and signs a checkpoint (gateways
/// over PostgreSQL: one at a time).
pub struct LedgerIntegration {
    /// The log.
    pub ledger: Arc<crate::ledger::Ledger>,
    /// Time between checkpoints.
    pub interval: Duration,
}

#[async_trait]
impl Job for LedgerIntegration {
    fn name(&self) -> &'static str {
        "ledger"
    }
    fn leased(&self) -> bool {
        true
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    async fn step(&self) -> Result<Step, JobError> {
        Ok(Step::more(self.ledger.integrate_shared().await?))
    }
}

/// The record of a key's re-wrap in the metadata store (any gateway reads it).
fn rewrap_record(key_id: &str) -> String {
    format!("rewrap:{key_id}")
}

/// Re-wraps every data key under a key's current version, after a rotation or on request:
/// requested keys queue up on the gateway that received the request and are re-wrapped one at
/// a time, with progress per key (kept here and recorded in the metadata store).
pub struct KeyRewrap {
    keys: KeyAdmin,
    records: Arc<dyn vallum_core::meta::Records>,
    queue: Mutex<std::collections::VecDeque<String>>,
    progress: Mutex<std::collections::BTreeMap<String, RewrapProgress>>,
    wake: Arc<tokio::sync::Notify>,
}

impl KeyRewrap {
    /// The job: re-wraps through `keys`, keeps each key's progress in `records`.
    #[must_use]
    pub fn new(keys: KeyAdmin, records: Arc<dyn vallum_core::meta::Records>) -> Arc<Self> {
        Arc::new(Self {
            keys,
            records,
            queue: Mutex::default(),
            progress: Mutex::default(),
            wake: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Queues a re-wrap of `key_id` (not again while one is queued or running) and wakes
    /// the job.
    pub fn request(&self, key_id: &str) {
        if let Ok(mut progress) = self.progress.lock() {
            if progress.get(key_id).is_some_and(|p| !p.done) {
                return;
            }
            progress.insert(key_id.to_owned(), RewrapProgress::default());
        }
        if let Ok(mut queue) = self.queue.lock() {
            queue.push_back(key_id.to_owned());
        }
        self.wake.notify_one();
    }

    /// The re-wrap of `key_id`: this gateway's, else the last one any gateway recorded.
    pub async fn progress(&self, key_id: &str) -> Option<RewrapProgress> {
        if let Some(p) = self
            .progress
            .lock()
            .ok()
            .and_then(|p| p.get(key_id).cloned())
        {
            return Some(p);
        }
        self.records
            .load_as(kind::JOB, &rewrap_record(key_id))
            .await
            .ok()?
            .map(|v| v.value)
    }

    /// Every re-wrap this gateway ran or runs, by key.
    #[must_use]
    pub fn all(&self) -> Vec<(String, RewrapProgress)> {
        self.progress
            .lock()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    fn set(&self, key_id: &str, p: &RewrapProgress) {
        if let Ok(mut progress) = self.progress.lock() {
            progress.insert(key_id.to_owned(), p.clone());
        }
    }
}

#[async_trait]
impl Job for KeyRewrap {
    fn name(&self) -> &'static str {
        "key-rewrap"
    }
    fn leased(&self) -> bool {
        false
    }
    fn interval(&self) -> Duration {
        KEY_REWRAP_INTERVAL
    }
    fn wake(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(Arc::clone(&self.wake))
    }
    fn runs_at_start(&self) -> bool {
        false
    }
    async fn step(&self) -> Result<Step, JobError> {
        let next = self.queue.lock().ok().and_then(|mut q| q.pop_front());
        let Some(key_id) = next else {
            return Ok(Step::done());
        };
        let ctx = RequestContext::system("key-rotation");
        let result = self
            .keys
            .rewrap_key(&ctx, &key_id, |p| self.set(&key_id, p))
            .await;
        let done = match result {
            Ok(p) => p,
            Err(e) => {
                // One key's failure is its re-wrap's outcome, not the job's.
                tracing::warn!(key_id = %key_id, error = %e, "re-wrap failed");
                let mut p = self
                    .progress
                    .lock()
                    .ok()
                    .and_then(|p| p.get(&key_id).cloned())
                    .unwrap_or_default();
                p.last_error = Some(e.to_string());
                p.done = true;
                p
            }
        };
        self.set(&key_id, &done);
        self.records
            .save_job_state(&rewrap_record(&key_id), &done)
            .await?;
        let more = self.queue.lock().is_ok_and(|q| !q.is_empty());
        Ok(Step::more(more).with_progress(serde_json::json!({ "key_id": key_id, "rewrap": done })))
    }
}
