//! Key lifecycle on behalf of an administrator: create, rotate (and re-wrap every object's data
//! key under the new version), disable/enable, schedule deletion, destroy (crypto-shred) with a
//! report of what became unrecoverable. Every action is logged (`key_lifecycle`).
//!
//! [`KeyAdmin`] is its own service over the ports it needs — the object index (which versions
//! a key wraps, and their re-wrap), the key service, the clock and the recorder — not the
//! object service.

use std::sync::Arc;

use crate::context::RequestContext;
use serde::{Deserialize, Serialize};
use vallum_crypto::keys::{Justification, KeyInfo, KeyState};

use crate::clock::Clock;
use crate::crypt::{KeyService, crypto_error};
use crate::error::{Error, Result};
use crate::journal::{Event, Recorder};
use crate::meta::{KeyedVersion, ObjectIndex};
use crate::service::ObjectService;

/// Versions read per page by the re-wrap job and the usage report.
pub const KEY_SCAN_PAGE: usize = 500;

/// Longest deletion waiting period, days (AWS KMS's maximum).
pub const MAX_DELETION_WAIT_DAYS: u32 = 30;

/// Shortest deletion waiting period, days (AWS KMS's minimum).
pub const MIN_DELETION_WAIT_DAYS: u32 = 7;

/// What is encrypted under a key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUsage {
    /// Object versions whose data key the key wraps.
    pub versions: u64,
    /// Their plaintext bytes.
    pub bytes: u64,
    /// Of those, versions wrapped under an older key version than the current one.
    pub stale_versions: u64,
}

/// Progress of a re-wrap job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewrapProgress {
    /// Versions under the key seen so far.
    pub scanned: u64,
    /// Re-wrapped under the current version.
    pub rewrapped: u64,
    /// Already current.
    pub current: u64,
    /// Changed or deleted while the job ran (left as they were).
    pub skipped: u64,
    /// Failed (the error is in `last_error`).
    pub failed: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// The job finished.
    pub done: bool,
}

/// What destroying a key made unrecoverable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShredReport {
    /// The key.
    pub key_id: String,
    /// The key after destruction.
    pub key: KeyInfo,
    /// Object versions whose data can no longer be decrypted, and their bytes.
    pub unrecoverable: KeyUsage,
    /// Up to [`SHRED_SAMPLE`] of them, `bucket/key@version`.
    pub sample: Vec<String>,
}

impl ShredReport {
    /// The shred report in the common report shape: a record (no policy to pass or fail) of
    /// what became unrecoverable, each sampled version a finding.
    #[must_use]
    pub fn to_report(
        &self,
        generated_ms: i64,
        checkpoint: Option<vallum_ledger::report::CheckpointRef>,
    ) -> vallum_ledger::report::Report {
        use vallum_ledger::report::{Finding, Outcome, Report, ReportKind, Severity};
        let mut r = Report::new(
            ReportKind::CryptoShred,
            format!("Crypto-shred: key `{}`", self.key_id),
            format!("key {}", self.key_id),
        );
        r.generated_ms = generated_ms;
        r.checkpoint = checkpoint;
        r.outcome = Outcome::Recorded;
        r.summary = format!(
            "key {} destroyed: {} object version(s), {} bytes, can no longer be decrypted{}",
            self.key_id,
            self.unrecoverable.versions,
            self.unrecoverable.bytes,
            if u64::try_from(self.sample.len()).unwrap_or(u64::MAX) < self.unrecoverable.versions {
                format!(" ({} named below)", self.sample.len())
            } else {
                String::new()
            }
        );
        for v in &self.sample {
            r.push(Finding {
                severity: Severity::Info,
                subject: v.clone(),
                message: "can no longer be decrypted".into(),
                log_index: None,
                time_ms: None,
            });
        }
        r.details = serde_json::to_value(self).unwrap_or_default();
        r
    }
}

/// Objects named in a shred report.
pub const SHRED_SAMPLE: usize = 100;

fn system(ctx: &RequestContext, reason: &str) -> Justification {
    Justification {
        actor: ctx.actor.clone(),
        reason: reason.into(),
        approvals: None,
    }
}

/// Key administration on behalf of an administrator or a job.
#[derive(Clone)]
pub struct KeyAdmin {
    index: Arc<dyn ObjectIndex>,
    keys: Arc<KeyService>,
    clock: Arc<dyn Clock>,
    recorder: Recorder,
}

impl std::fmt::Debug for KeyAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAdmin").finish_non_exhaustive()
    }
}

impl KeyAdmin {
    /// Key administration over `service`'s object index, key service, clock and recorder
    /// (one log).
    #[must_use]
    pub fn of(service: &ObjectService) -> Self {
        Self {
            index: service.meta().clone(),
            keys: Arc::clone(service.keys()),
            clock: Arc::clone(service.clock()),
            recorder: service.recorder().clone(),
        }
    }

    fn keys(&self) -> &Arc<KeyService> {
        &self.keys
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    async fn lifecycle_event(
        &self,
        ctx: &RequestContext,
        key_id: &str,
        action: String,
    ) -> Result<()> {
        let event = Event::KeyLifecycle {
            key_id: key_id.to_owned(),
            action,
        };
        self.recorder.record_or_fail(ctx, vec![event]).await
    }

    /// Every key the provider holds.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.keys().provider().list().await.map_err(crypto_error)
    }

    /// One key.
    pub async fn describe_key(&self, key_id: &str) -> Result<KeyInfo> {
        self.keys()
            .provider()
            .describe(key_id)
            .await
            .map_err(admin_error)
    }

    /// Creates a key-encryption key.
    pub async fn create_key(&self, ctx: &RequestContext, key_id: &str) -> Result<KeyInfo> {
        vallum_crypto::check_key_id(key_id).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let info = self
            .keys()
            .provider()
            .create_key(key_id, self.now_ms())
            .await
            .map_err(admin_error)?;
        self.lifecycle_event(ctx, key_id, "created".into()).await?;
        Ok(info)
    }

    fn scan<'a>(&'a self, key_id: &'a str) -> KeyedScan<'a> {
        KeyedScan {
            index: self.index.as_ref(),
            key_id,
            after: None,
            done: false,
        }
    }

    /// What is encrypted under `key_id`.
    pub async fn key_usage(&self, key_id: &str) -> Result<KeyUsage> {
        let current = self.describe_key(key_id).await?.current_version;
        let mut usage = KeyUsage::default();
        let mut scan = self.scan(key_id);
        while let Some(page) = scan.next_page().await? {
            for v in &page {
                usage.versions += 1;
                usage.bytes += v.size_bytes;
                if current != 0 && v.encryption.wrapped.key_version != current {
                    usage.stale_versions += 1;
                }
            }
        }
        Ok(usage)
    }

    /// Adds a key version; new data keys are wrapped under it. Run [`Self::rewrap_key`] to
    /// move existing objects onto it.
    pub async fn rotate_key(&self, ctx: &RequestContext, key_id: &str) -> Result<KeyInfo> {
        let keys = self.keys();
        let info = keys
            .provider()
            .rotate(key_id, self.now_ms())
            .await
            .map_err(admin_error)?;
        keys.forget_cached(key_id);
        self.lifecycle_event(
            ctx,
            key_id,
            format!("rotated to version {}", info.current_version),
        )
        .await?;
        Ok(info)
    }

    /// Re-wraps every object data key under `key_id` that an older version wraps, reporting
    /// progress after each page. Safe to rerun (current ones are skipped) and to run while
    /// clients write (a version changed meanwhile is left alone).
    pub async fn rewrap_key(
        &self,
        ctx: &RequestContext,
        key_id: &str,
        progress: impl Fn(&RewrapProgress),
    ) -> Result<RewrapProgress> {
        let keys = self.keys().clone();
        let current = self.describe_key(key_id).await?.current_version;
        let why = system(ctx, "key-rotation");
        let mut p = RewrapProgress::default();
        let mut scan = self.scan(key_id);
        while let Some(page) = scan.next_page().await? {
            for v in &page {
                p.scanned += 1;
                if current == 0 || v.encryption.wrapped.key_version == current {
                    p.current += 1;
                    continue;
                }
                let outcome = match keys.rewrap(&v.bucket, &v.key, &v.encryption, &why).await {
                    Ok(new) => self
                        .index
                        .rewrap_version(v, &new)
                        .await
                        .map_err(Error::from),
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(true) => p.rewrapped += 1,
                    Ok(false) => p.skipped += 1,
                    Err(e) => {
                        p.failed += 1;
                        p.last_error = Some(e.to_string());
                    }
                }
            }
            progress(&p);
        }
        p.done = true;
        progress(&p);
        self.lifecycle_event(
            ctx,
            key_id,
            format!(
                "re-wrapped {} object versions under version {current} ({} already current, {} skipped, {} failed)",
                p.rewrapped, p.current, p.skipped, p.failed
            ),
        )
        .await?;
        Ok(p)
    }

    /// Disables, enables, or schedules deletion of a key (`wait_days` from now, 7–30 days),
    /// or cancels a scheduled deletion (`Enabled`).
    pub async fn set_key_state(
        &self,
        ctx: &RequestContext,
        key_id: &str,
        state: KeyState,
    ) -> Result<KeyInfo> {
        if state == KeyState::Destroyed {
            return Err(Error::InvalidArgument(
                "destroy a key with destroy_key".into(),
            ));
        }
        let keys = self.keys();
        let info = keys
            .provider()
            .set_state(key_id, state)
            .await
            .map_err(admin_error)?;
        keys.forget_cached(key_id);
        let action = match state {
            KeyState::Enabled => "enabled".to_owned(),
            KeyState::Disabled => "disabled".to_owned(),
            KeyState::PendingDeletion { delete_at_ms } => {
                format!("deletion scheduled at {delete_at_ms} ms")
            }
            KeyState::Destroyed => unreachable!("refused above"),
        };
        self.lifecycle_event(ctx, key_id, action).await?;
        Ok(info)
    }

    /// Schedules deletion `wait_days` from now.
    pub async fn schedule_key_deletion(
        &self,
        ctx: &RequestContext,
        key_id: &str,
        wait_days: u32,
    ) -> Result<KeyInfo> {
        if !(MIN_DELETION_WAIT_DAYS..=MAX_DELETION_WAIT_DAYS).contains(&wait_days) {
            return Err(Error::InvalidArgument(format!(
                "the waiting period is {MIN_DELETION_WAIT_DAYS} to {MAX_DELETION_WAIT_DAYS} days"
            )));
        }
        let at = self.now_ms() + i64::from(wait_days) * 86_400_000;
        self.set_key_state(ctx, key_id, KeyState::PendingDeletion { delete_at_ms: at })
            .await
    }

    /// Destroys the key material (crypto-shredding) and reports every object version that
    /// became unrecoverable. The report is also logged.
    pub async fn destroy_key(&self, ctx: &RequestContext, key_id: &str) -> Result<ShredReport> {
        let keys = self.keys().clone();
        let mut unrecoverable = KeyUsage::default();
        let mut sample = Vec::new();
        let mut scan = self.scan(key_id);
        while let Some(page) = scan.next_page().await? {
            for v in &page {
                unrecoverable.versions += 1;
                unrecoverable.bytes += v.size_bytes;
                if sample.len() < SHRED_SAMPLE {
                    sample.push(format!("{}/{}@{}", v.bucket, v.key, v.version_id));
                }
            }
        }
        let key = keys.provider().destroy(key_id).await.map_err(admin_error)?;
        keys.forget_cached(key_id);
        self.lifecycle_event(
            ctx,
            key_id,
            format!(
                "destroyed: {} object versions ({} bytes) unrecoverable",
                unrecoverable.versions, unrecoverable.bytes
            ),
        )
        .await?;
        Ok(ShredReport {
            key_id: key_id.to_owned(),
            key,
            unrecoverable,
            sample,
        })
    }

    /// Destroys every key whose scheduled deletion time has passed; returns their reports.
    pub async fn destroy_due_keys(&self, ctx: &RequestContext) -> Result<Vec<ShredReport>> {
        let now = self.now_ms();
        let mut out = Vec::new();
        for k in self.list_keys().await? {
            if let KeyState::PendingDeletion { delete_at_ms } = k.state
                && delete_at_ms <= now
            {
                out.push(self.destroy_key(ctx, &k.key_id).await?);
            }
        }
        Ok(out)
    }
}

/// Pages of the versions under one key.
struct KeyedScan<'a> {
    index: &'a dyn ObjectIndex,
    key_id: &'a str,
    after: Option<KeyedVersion>,
    done: bool,
}

impl KeyedScan<'_> {
    async fn next_page(&mut self) -> Result<Option<Vec<KeyedVersion>>> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .index
            .keyed_versions(self.key_id, self.after.as_ref(), KEY_SCAN_PAGE)
            .await?;
        self.done = page.len() < KEY_SCAN_PAGE;
        self.after = page.last().cloned();
        Ok((!page.is_empty()).then_some(page))
    }
}

/// Errors of administrative key operations: unknown keys and refused operations are the
/// caller's to fix, not the data path's "key unavailable".
fn admin_error(e: vallum_crypto::CryptoError) -> Error {
    use vallum_crypto::CryptoError as C;
    match e {
        C::NoSuchKey(k) => Error::NoSuchKmsKey(k),
        C::KeyExists(k) => Error::InvalidArgument(format!("key {k} already exists")),
        C::Unsupported(m) | C::Format(m) => Error::InvalidRequest(m),
        C::KeyUnavailable { key_id, state } => {
            Error::InvalidRequest(format!("key {key_id} is {state}"))
        }
        other => crypto_error(other),
    }
}
