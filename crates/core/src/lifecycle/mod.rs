//! Bucket lifecycle: the background worker that applies the configuration model
//! ([`config`], re-exported here).
//!
//! The worker scans every version of every bucket that has a configuration, in listing order,
//! and acts through the same atomic metadata operations as client requests, each guarded by a
//! condition re-checked inside the transaction (the version is still the latest / still
//! noncurrent / still the only one). A crash therefore leaves every version either untouched
//! or fully deleted, and a rerun is idempotent. The cursor is saved after every batch so a
//! restarted worker resumes where it stopped. Protected (locked) versions are never removed.

use crate::context::RequestContext;
use serde::{Deserialize, Serialize};
use vallum_types::limits::{LIFECYCLE_BATCH_VERSIONS, MAX_LIST_KEYS};

use crate::Result;
use crate::list::versions_after;
use crate::meta::{DeleteCondition, DeleteRequest, MetaError, VersionStart, VersionSummary};
use crate::records::TypedRecords;
use crate::service::ObjectService;
use crate::versioning::Versioning;

pub mod config;

pub use config::{LifecycleConfig, LifecycleFilter, LifecycleRule, due_ms};

/// Name of the worker's lease and of its saved state.
pub const LIFECYCLE_JOB: &str = "lifecycle";

/// What the worker did in its current or last pass; saved with the cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleProgress {
    /// Where the pass stands: the bucket being scanned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// The last key fully processed in that bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_key: Option<String>,
    /// When the current pass started (ms).
    #[serde(default)]
    pub pass_started_ms: i64,
    /// When the last complete pass finished (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass_finished_ms: Option<i64>,
    /// Versions examined in the current pass.
    #[serde(default)]
    pub versions_scanned: u64,
    /// Current versions expired (deleted, or hidden behind a delete marker).
    #[serde(default)]
    pub current_expired: u64,
    /// Noncurrent versions deleted.
    #[serde(default)]
    pub noncurrent_deleted: u64,
    /// Lone delete markers removed.
    #[serde(default)]
    pub delete_markers_removed: u64,
    /// Multipart uploads aborted.
    #[serde(default)]
    pub uploads_aborted: u64,
    /// Versions an action applied to but that a lock protected (left alone).
    #[serde(default)]
    pub skipped_locked: u64,
}

/// Per-key scan state (versions of one key arrive newest first).
struct KeyScan {
    key: String,
    /// Time the previous (newer) version was created: when the current one became noncurrent.
    successor_ms: i64,
    /// Noncurrent versions of this key seen so far.
    noncurrent_seen: u32,
    /// A latest delete marker waiting to learn whether it is the key's only version.
    lone_marker: Option<i64>,
}

impl ObjectService {
    /// Runs one lifecycle step: up to `budget` versions of scanning, resuming from the saved
    /// cursor. Returns the progress; `last_pass_finished_ms` moves when a pass completes.
    pub async fn run_lifecycle(
        &self,
        ctx: &RequestContext,
        budget: usize,
    ) -> Result<LifecycleProgress> {
        let now = self.now_ms();
        let mut progress: LifecycleProgress = self.meta.job_state(LIFECYCLE_JOB).await?;
        if progress.bucket.is_none() {
            progress = LifecycleProgress {
                pass_started_ms: now,
                last_pass_finished_ms: progress.last_pass_finished_ms,
                ..LifecycleProgress::default()
            };
        }
        let buckets: Vec<_> = self
            .meta
            .list_buckets()
            .await?
            .into_iter()
            .filter(|b| {
                b.lifecycle
                    .as_ref()
                    .is_some_and(|l| l.rules.iter().any(|r| r.enabled))
            })
            .collect();
        let mut scanned = 0usize;
        for bucket in buckets {
            if let Some(current) = &progress.bucket
                && bucket.name < *current
            {
                continue;
            }
            if progress.bucket.as_deref() != Some(bucket.name.as_str()) {
                progress.bucket = Some(bucket.name.clone());
                progress.after_key = None;
                self.abort_expired_uploads(&bucket, now, &mut progress)
                    .await?;
            }
            let Some(config) = bucket.lifecycle.clone() else {
                continue;
            };
            let done = self
                .scan_bucket(
                    ctx,
                    &bucket.name,
                    bucket.versioning,
                    &config,
                    now,
                    budget,
                    &mut scanned,
                    &mut progress,
                )
                .await?;
            if !done {
                self.save_progress(&progress).await?;
                return Ok(progress);
            }
            self.save_progress(&progress).await?;
        }
        progress.bucket = None;
        progress.after_key = None;
        progress.last_pass_finished_ms = Some(now);
        self.save_progress(&progress).await?;
        tracing::info!(target: "vallum::audit", event = "lifecycle_pass", scanned = progress.versions_scanned, current_expired = progress.current_expired, noncurrent_deleted = progress.noncurrent_deleted, delete_markers_removed = progress.delete_markers_removed, uploads_aborted = progress.uploads_aborted, skipped_locked = progress.skipped_locked, "lifecycle pass finished");
        Ok(progress)
    }

    /// The saved lifecycle progress, for the admin API.
    pub async fn lifecycle_progress(&self) -> Result<LifecycleProgress> {
        Ok(self.meta.job_state(LIFECYCLE_JOB).await?)
    }

    async fn save_progress(&self, progress: &LifecycleProgress) -> Result<()> {
        Ok(self.meta.save_job_state(LIFECYCLE_JOB, progress).await?)
    }

    async fn abort_expired_uploads(
        &self,
        bucket: &crate::meta::BucketRecord,
        now: i64,
        progress: &mut LifecycleProgress,
    ) -> Result<()> {
        let Some(config) = &bucket.lifecycle else {
            return Ok(());
        };
        let rules: Vec<_> = config
            .rules
            .iter()
            .filter(|r| r.enabled && r.abort_incomplete_days.is_some())
            .collect();
        if rules.is_empty() {
            return Ok(());
        }
        let mut key_marker = String::new();
        let mut id_marker = None;
        loop {
            let page = self
                .meta
                .list_uploads(&bucket.name, "", &key_marker, id_marker, MAX_LIST_KEYS)
                .await?;
            let Some(last) = page.last() else { break };
            key_marker.clone_from(&last.key);
            id_marker = Some(last.upload_id);
            for upload in &page {
                let due = rules.iter().any(|r| {
                    upload.key.starts_with(&r.filter.prefix)
                        && r.abort_incomplete_days
                            .is_some_and(|d| due_ms(upload.initiated_ms, d) <= now)
                });
                if due {
                    match self.meta.abort_upload(upload.upload_id, now).await {
                        Ok(()) | Err(MetaError::NoSuchUpload) => {
                            progress.uploads_aborted += 1;
                            tracing::info!(target: "vallum::audit", event = "lifecycle_abort_upload", bucket = %bucket.name, key = %upload.key, upload_id = %upload.upload_id, "lifecycle aborted an incomplete multipart upload");
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
            }
        }
        Ok(())
    }

    /// Scans one bucket from the cursor; returns false when the budget ran out first.
    #[allow(clippy::too_many_arguments)]
    async fn scan_bucket(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        versioning: Versioning,
        config: &LifecycleConfig,
        now: i64,
        budget: usize,
        scanned: &mut usize,
        progress: &mut LifecycleProgress,
    ) -> Result<bool> {
        let rules: Vec<&LifecycleRule> = config.rules.iter().filter(|r| r.enabled).collect();
        // Resume at a key boundary (`after_key` is the last key fully processed): a key cut
        // by the budget is rescanned from its newest version next time, which is harmless
        // because every action is conditional and idempotent.
        let resumed_from = progress.after_key.clone();
        let mut position: Option<(String, i64)> = None;
        let mut scan: Option<KeyScan> = None;
        let batch = LIFECYCLE_BATCH_VERSIONS.min(budget.max(1));
        loop {
            let page = match (&position, &resumed_from) {
                (Some((k, seq)), _) => {
                    versions_after(&*self.meta, bucket, Some((k.as_str(), *seq)), batch).await?
                }
                (None, Some(k)) => {
                    self.meta
                        .list_versions(bucket, "", VersionStart::AfterKey(k), batch)
                        .await?
                }
                (None, None) => versions_after(&*self.meta, bucket, None, batch).await?,
            };
            let exhausted = page.len() < batch;
            for v in &page {
                if scan.as_ref().is_none_or(|s| s.key != v.key) {
                    if let Some(done) = scan.take() {
                        self.finish_key(ctx, bucket, done, now, progress).await?;
                    }
                    scan = Some(KeyScan {
                        key: v.key.clone(),
                        successor_ms: v.last_modified_ms,
                        noncurrent_seen: 0,
                        lone_marker: None,
                    });
                }
                let Some(state) = scan.as_mut() else { continue };
                progress.versions_scanned += 1;
                *scanned += 1;
                self.apply_rules(ctx, bucket, versioning, &rules, v, state, now, progress)
                    .await?;
            }
            if let Some(last) = page.last() {
                position = Some((last.key.clone(), last.seq));
            }
            if exhausted {
                if let Some(done) = scan.take() {
                    self.finish_key(ctx, bucket, done, now, progress).await?;
                }
                progress.after_key = None;
                return Ok(true);
            }
            // Stop for the budget only once a key was finished, so a key with more versions
            // than the budget still gets through.
            if *scanned >= budget && progress.after_key != resumed_from {
                return Ok(false);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_rules(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        versioning: Versioning,
        rules: &[&LifecycleRule],
        v: &VersionSummary,
        state: &mut KeyScan,
        now: i64,
        progress: &mut LifecycleProgress,
    ) -> Result<()> {
        let applies = |r: &&&LifecycleRule| r.filter.matches(&v.key, v.size_bytes, &v.tags);
        if v.latest {
            if v.delete_marker {
                if rules
                    .iter()
                    .filter(|r| r.filter.prefix.is_empty() || v.key.starts_with(&r.filter.prefix))
                    .any(|r| {
                        r.expired_object_delete_marker
                            || (r.expiration_days.is_some() && r.filter.tags.is_empty())
                    })
                {
                    state.lone_marker = Some(v.seq);
                }
            } else {
                let due = rules.iter().filter(applies).any(|r| {
                    r.expiration_days
                        .is_some_and(|d| due_ms(v.last_modified_ms, d) <= now)
                        || r.expiration_date_ms.is_some_and(|d| d <= now)
                });
                if due {
                    let req = DeleteRequest {
                        version_id: None,
                        bypass_governance: false,
                        condition: DeleteCondition::LatestSeq(v.seq),
                    };
                    match self.meta.delete_object(bucket, &v.key, &req, now).await {
                        Ok(result) => {
                            progress.current_expired += 1;
                            tracing::info!(target: "vallum::audit", event = "lifecycle_expire_current", bucket, key = %v.key, version_id = %v.version_id, versioning = versioning.as_str(), "lifecycle expired the current version");
                            self.log(ctx, self.deleted_event(bucket, &v.key, &result, false))
                                .await?;
                        }
                        Err(MetaError::PreconditionFailed) => {}
                        Err(MetaError::Locked(_)) => progress.skipped_locked += 1,
                        Err(err) => return Err(err.into()),
                    }
                }
            }
        } else {
            state.noncurrent_seen += 1;
            let became_noncurrent = state.successor_ms;
            let due = rules.iter().filter(applies).any(|r| {
                r.noncurrent_days.is_some_and(|d| {
                    due_ms(became_noncurrent, d) <= now
                        && r.newer_noncurrent_versions
                            .is_none_or(|keep| state.noncurrent_seen > keep)
                })
            });
            if due {
                if v.lock.is_free(now) {
                    let req = DeleteRequest {
                        version_id: Some(&v.version_id),
                        bypass_governance: false,
                        condition: DeleteCondition::NotLatest,
                    };
                    match self.meta.delete_object(bucket, &v.key, &req, now).await {
                        Ok(result) => {
                            progress.noncurrent_deleted += 1;
                            tracing::info!(target: "vallum::audit", event = "lifecycle_delete_noncurrent", bucket, key = %v.key, version_id = %v.version_id, "lifecycle deleted a noncurrent version");
                            self.log(ctx, self.deleted_event(bucket, &v.key, &result, false))
                                .await?;
                        }
                        Err(MetaError::PreconditionFailed) => {}
                        Err(MetaError::Locked(_)) => progress.skipped_locked += 1,
                        Err(err) => return Err(err.into()),
                    }
                } else {
                    progress.skipped_locked += 1;
                }
            }
        }
        state.successor_ms = v.last_modified_ms;
        // Only a marker with no older version is "expired"; any older version cancels it.
        if !v.latest {
            state.lone_marker = None;
        }
        Ok(())
    }

    async fn finish_key(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        state: KeyScan,
        now: i64,
        progress: &mut LifecycleProgress,
    ) -> Result<()> {
        if let Some(seq) = state.lone_marker {
            let req = DeleteRequest {
                version_id: None,
                bypass_governance: false,
                condition: DeleteCondition::SoleMarker(seq),
            };
            match self.meta.delete_object(bucket, &state.key, &req, now).await {
                Ok(result) => {
                    progress.delete_markers_removed += 1;
                    tracing::info!(target: "vallum::audit", event = "lifecycle_remove_delete_marker", bucket, key = %state.key, "lifecycle removed an expired delete marker");
                    self.log(ctx, self.deleted_event(bucket, &state.key, &result, false))
                        .await?;
                }
                Err(MetaError::PreconditionFailed) => {}
                Err(err) => return Err(err.into()),
            }
        }
        progress.after_key = Some(state.key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::config::DAY_MS;
    use super::*;
    use crate::versioning::Tags;

    #[test]
    fn due_rounds_up_to_midnight() {
        // 2014-01-15 10:30 UTC + 3 days -> 2014-01-19 00:00 UTC (S3's documented example).
        let created = 1_389_781_800_000;
        assert_eq!(due_ms(created, 3), 1_390_089_600_000);
        assert_eq!(due_ms(2 * DAY_MS, 1), 3 * DAY_MS);
    }

    #[test]
    fn validation() {
        let rule = LifecycleRule {
            enabled: true,
            expiration_days: Some(1),
            ..LifecycleRule::default()
        };
        assert!(
            LifecycleConfig {
                rules: vec![rule.clone()]
            }
            .validate()
            .is_ok()
        );
        assert!(LifecycleConfig { rules: vec![] }.validate().is_err());
        let none = LifecycleRule {
            enabled: true,
            ..LifecycleRule::default()
        };
        assert!(LifecycleConfig { rules: vec![none] }.validate().is_err());
        let both = LifecycleRule {
            expiration_date_ms: Some(0),
            ..rule.clone()
        };
        assert!(LifecycleConfig { rules: vec![both] }.validate().is_err());
        let odd_date = LifecycleRule {
            expiration_days: None,
            expiration_date_ms: Some(5),
            ..rule.clone()
        };
        assert!(
            LifecycleConfig {
                rules: vec![odd_date]
            }
            .validate()
            .is_err()
        );
        let dup = LifecycleRule {
            id: Some("a".into()),
            ..rule
        };
        assert!(
            LifecycleConfig {
                rules: vec![dup.clone(), dup]
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn filter_matching() {
        let f = LifecycleFilter {
            prefix: "logs/".into(),
            tags: [("class".to_owned(), "tmp".to_owned())].into(),
            size_greater_than: Some(10),
            size_less_than: None,
        };
        let tags: Tags = [
            ("class".to_owned(), "tmp".to_owned()),
            ("x".to_owned(), "y".to_owned()),
        ]
        .into();
        assert!(f.matches("logs/a", 11, &tags));
        assert!(!f.matches("logs/a", 10, &tags));
        assert!(!f.matches("data/a", 11, &tags));
        assert!(!f.matches("logs/a", 11, &Tags::new()));
    }
}
