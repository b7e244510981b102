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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
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
        let top = self.topology();
        loop {
            let trash = self
                .meta
                .trash_before(now.saturating_sub(ms(policy.trash_grace)), GC_BATCH)
                .await?;
            // A copy on a site that is down stays in the trash until the site is back.
            let mut gone = Vec::with_capacity(trash.len());
            for t in &trash {
                if top.delete_all(t.blob, &t.sites).await.is_empty() {
                    gone.push(t.blob);
                }
            }
            self.meta.forget_trash(&gone).await?;
            report.trash_deleted += gone.len() as u64;
            if trash.len() < GC_BATCH || gone.is_empty() {
                break;
            }
        }
        // Every site: temporary data of interrupted writes, blobs no record references, and
        // stray copies on a site their record does not list (a repair or migration that died
        // between copying and recording). A site that fails is left for the next pass.
        for (i, site) in top.sites().iter().enumerate() {
            let swept = async {
                report.temp_removed += site.store().sweep_temp(policy.orphan_age).await?;
                for blob in site.store().list_older_than(policy.orphan_age).await? {
                    let stray = match self.meta.blob_sites(blob).await? {
                        None => true,
                        Some(sites) => !top.holders(&sites).contains(&i),
                    };
                    if stray {
                        site.store().delete(blob).await?;
                        report.orphans_removed += 1;
                    }
                }
                Ok::<_, crate::error::Error>(())
            };
            if let Err(err) = swept.await {
                tracing::warn!(site = %site.id, %err, "orphan sweep of a site failed; will retry");
            }
        }
        if report != GcReport::default() {
            tracing::info!(?report, "garbage collection pass");
        }
        Ok(report)
    }
}
