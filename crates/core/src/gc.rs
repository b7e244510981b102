//! Garbage collection: trashed blobs after their grace period, abandoned multipart uploads,
//! temporary data of interrupted writes, and orphan blobs (written, but whose record never
//! committed because the process died in between).

use std::time::Duration;

use crate::error::Result;
use crate::service::ObjectService;

/// How old things must be before the collector removes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    /// Trashed blobs are deleted this long after they were trashed (readers that opened the
    /// object before it was replaced keep working meanwhile).
    pub trash_grace: Duration,
    /// Multipart uploads older than this are aborted.
    pub multipart_expiry: Duration,
    /// Temporary data and unreferenced blobs older than this are removed.
    pub orphan_age: Duration,
}

/// What one collection pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Trashed blobs deleted.
    pub trash_deleted: u64,
    /// Uploads aborted.
    pub uploads_aborted: u64,
    /// Temporary files removed.
    pub temp_removed: u64,
    /// Orphan blobs removed.
    pub orphans_removed: u64,
}

const GC_BATCH: usize = 1000;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl ObjectService {
    /// Runs one full collection pass. Safe to run concurrently with traffic; idempotent.
    pub async fn collect_garbage(&self, policy: &GcPolicy) -> Result<GcReport> {
        let mut report = GcReport::default();
        let now = self.now_ms();
        loop {
            let stale = self
                .meta
                .stale_uploads(now.saturating_sub(ms(policy.multipart_expiry)), GC_BATCH)
                .await?;
            for upload in &stale {
                match self.meta.abort_upload(upload.upload_id, now).await {
                    Ok(()) => report.uploads_aborted += 1,
                    // Completed, aborted, or collected by another gateway meanwhile.
                    Err(crate::meta::MetaError::NoSuchUpload) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            if stale.len() < GC_BATCH {
                break;
            }
        }
        loop {
            let trash = self
                .meta
                .trash_before(now.saturating_sub(ms(policy.trash_grace)), GC_BATCH)
                .await?;
            for blob in &trash {
                self.blobs.delete(*blob).await?;
            }
            self.meta.forget_trash(&trash).await?;
            report.trash_deleted += trash.len() as u64;
            if trash.len() < GC_BATCH {
                break;
            }
        }
        report.temp_removed = self.blobs.sweep_temp(policy.orphan_age).await?;
        for blob in self.blobs.list_older_than(policy.orphan_age).await? {
            if !self.meta.blob_in_use(blob).await? {
                self.blobs.delete(blob).await?;
                report.orphans_removed += 1;
            }
        }
        if report != GcReport::default() {
            tracing::info!(?report, "garbage collection pass");
        }
        Ok(report)
    }
}
