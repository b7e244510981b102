//! Replica repair, scrubbing and migration: one job that walks every blob and brings its
//! copies to where the placement engine says they belong. It completes replicas a write
//! acknowledged at its quorum, replaces copies lost with a site or found damaged by the
//! scrubber (CRC32C of the stored bytes), moves data off draining sites and off sites a
//! tightened policy or a changed profile no longer permits, and only then deletes the old
//! copies. Copies go only to sites the engine chose, so data never lands on a forbidden site,
//! not even for a moment.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use vallum_types::BlobId;

use crate::blob::BlobError;
use crate::error::Result;
use crate::meta::{BlobPlacement, BucketRecord};
use crate::records::TypedRecords;
use crate::residency::sites::{CrcTap, Topology};
use crate::service::ObjectService;

/// The job's name (its lease and saved state).
pub const REPAIR_JOB: &str = "replica-repair";

/// Counts of one repair pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairCounts {
    /// Blobs examined.
    pub scanned: u64,
    /// Copies made on the sites a blob belongs on.
    pub copied: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// Copies deleted from sites a blob no longer belongs on (migrated away).
    pub removed: u64,
    /// Copies found missing or damaged by the scrubber (and dropped).
    pub damaged: u64,
    /// Copies verified by the scrubber.
    pub verified: u64,
    /// Blobs still short of copies because a site they belong on is down or failed.
    pub pending: u64,
    /// Blobs whose policy has no compliant placement now (left where they are, reported).
    pub unplaceable: u64,
    /// Blobs with no readable copy left.
    pub lost: u64,
}

/// The job's progress, saved between steps (and shown by the admin API).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairProgress {
    /// Where the pass under way is (the last blob examined); `None` between passes.
    pub cursor: Option<String>,
    /// Whether the pass under way also verifies every copy's checksum.
    pub scrubbing: bool,
    /// When the pass under way started, ms since the epoch.
    pub pass_started_ms: i64,
    /// Counts of the pass under way.
    pub current: RepairCounts,
    /// Counts of the last finished pass.
    pub last: Option<RepairCounts>,
    /// When the last pass finished.
    pub last_finished_ms: Option<i64>,
    /// When the last scrubbing pass finished.
    pub last_scrub_ms: Option<i64>,
    /// Passes finished.
    pub passes: u64,
}

impl ObjectService {
    /// The repair job's saved progress.
    pub async fn repair_progress(&self) -> Result<RepairProgress> {
        Ok(self.meta.job_state(REPAIR_JOB).await?)
    }

    /// Wakes when a write left fewer replicas than its placement wants.
    #[must_use]
    pub fn repair_hint(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.repair_hint)
    }

    /// Examines up to `budget` blobs from where the pass under way stopped (a new pass starts
    /// when none is under way; it scrubs when the last scrub is older than `scrub_every_ms`).
    /// Returns the progress; `cursor` is `None` once the pass is finished.
    pub async fn repair_step(&self, budget: usize, scrub_every_ms: i64) -> Result<RepairProgress> {
        let now = self.now_ms();
        let mut progress = self.repair_progress().await?;
        if progress.cursor.is_none() {
            progress.scrubbing = progress
                .last_scrub_ms
                .is_none_or(|t| now.saturating_sub(t) >= scrub_every_ms);
            progress.pass_started_ms = now;
            progress.current = RepairCounts::default();
        }
        let after = progress
            .cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .and_then(|c| c.parse::<BlobId>().ok());
        let page = self.meta.blob_placements(after, budget).await?;
        let top = self.topology();
        let mut buckets: HashMap<String, Option<BucketRecord>> = HashMap::new();
        for p in &page {
            progress.current.scanned += 1;
            if !buckets.contains_key(&p.bucket) {
                let b = self.meta.get_bucket(&p.bucket).await?;
                buckets.insert(p.bucket.clone(), b);
            }
            let Some(Some(bucket)) = buckets.get(&p.bucket) else {
                continue;
            };
            self.repair_blob(&top, bucket, p, progress.scrubbing, &mut progress.current)
                .await;
        }
        progress.cursor = page.last().map(|p| p.blob.to_string());
        if page.len() < budget {
            progress.cursor = None;
            progress.passes += 1;
            progress.last = Some(progress.current);
            progress.last_finished_ms = Some(self.now_ms());
            if progress.scrubbing {
                progress.last_scrub_ms = Some(self.now_ms());
            }
            if progress.current != RepairCounts::default() {
                tracing::info!(counts = ?progress.current, scrub = progress.scrubbing, "replica repair pass finished");
            }
        }
        self.meta.save_job_state(REPAIR_JOB, &progress).await?;
        Ok(progress)
    }

    /// Brings one blob's copies to the sites it belongs on; failures are counted, logged and
    /// left for the next pass.
    async fn repair_blob(
        &self,
        top: &Topology,
        bucket: &BucketRecord,
        p: &BlobPlacement,
        scrub: bool,
        counts: &mut RepairCounts,
    ) {
        let desired = match self.desired_sites(top, bucket, &p.key) {
            Ok(d) => d,
            Err(why) => {
                counts.unplaceable += 1;
                tracing::debug!(blob = %p.blob, bucket = %p.bucket, %why, "no compliant placement; copies left where they are");
                return;
            }
        };
        let mut held = top.holders(&p.sites);
        // A recorded site that is no longer configured has lost its copy.
        let mut changed = held.len() != p.sites.len().max(1);
        if scrub {
            let mut good = Vec::with_capacity(held.len());
            for &h in &held {
                match verify_copy(top, h, p).await {
                    Ok(()) => {
                        counts.verified += 1;
                        good.push(h);
                    }
                    Err(VerifyError::Unavailable(e)) => {
                        tracing::debug!(site = %top.sites()[h].id, blob = %p.blob, error = %e, "copy not verifiable now");
                        good.push(h);
                    }
                    Err(VerifyError::Damaged(why)) => {
                        counts.damaged += 1;
                        changed = true;
                        tracing::warn!(target: "vallum::audit", event = "replica_damaged", site = %top.sites()[h].id, blob = %p.blob, %why, "a copy is missing or damaged; it is replaced from a healthy one");
                    }
                }
            }
            held = good;
        }
        let mut made = Vec::new();
        for &m in desired.iter().filter(|m| !held.contains(m)) {
            if top.health(m).down {
                continue;
            }
            if held.is_empty() {
                break;
            }
            match copy_blob(top, &held, m, p).await {
                Ok(bytes) => {
                    counts.copied += 1;
                    counts.bytes_copied += bytes;
                    made.push(m);
                }
                Err(e) => {
                    tracing::warn!(site = %top.sites()[m].id, blob = %p.blob, error = %e, "could not copy a replica; will retry");
                }
            }
        }
        if held.is_empty() && made.is_empty() {
            counts.lost += 1;
            tracing::error!(target: "vallum::audit", event = "replica_lost", blob = %p.blob, bucket = %p.bucket, "no readable copy of a blob is left");
            return;
        }
        let mut now_held: Vec<usize> = held.iter().chain(&made).copied().collect();
        let complete = desired.iter().all(|d| now_held.contains(d));
        let extra: Vec<usize> = if complete {
            now_held
                .iter()
                .copied()
                .filter(|h| !desired.contains(h))
                .collect()
        } else {
            counts.pending += 1;
            Vec::new()
        };
        if made.is_empty() && extra.is_empty() && !changed {
            return;
        }
        now_held.retain(|h| !extra.contains(h));
        // Recorded best first, as the engine ranks them.
        now_held.sort_by_key(|h| desired.iter().position(|d| d == h).unwrap_or(usize::MAX));
        let recorded = top.ids_of(&now_held);
        match self.meta.set_blob_sites(p.blob, &p.sites, &recorded).await {
            Ok(true) => {
                for &x in &extra {
                    counts.removed += 1;
                    if let Err(e) = top.sites()[x].store.delete(p.blob).await {
                        tracing::warn!(site = %top.sites()[x].id, blob = %p.blob, error = %e, "could not delete a migrated copy; the GC will");
                    }
                }
                if !extra.is_empty() {
                    tracing::info!(target: "vallum::audit", event = "replica_migrated", blob = %p.blob, bucket = %p.bucket, from = %top.ids_of(&extra).join(","), to = %recorded.join(","), "copies moved to the sites the policy places them on");
                }
            }
            Ok(false) => {
                // Deleted or changed meanwhile: the new copies are strays.
                for &m in &made {
                    let _ = top.sites()[m].store.delete(p.blob).await;
                }
            }
            Err(e) => {
                tracing::warn!(blob = %p.blob, error = %e, "could not record a blob's copies; will retry");
                for &m in &made {
                    let _ = top.sites()[m].store.delete(p.blob).await;
                }
            }
        }
    }
}

enum VerifyError {
    Unavailable(String),
    Damaged(String),
}

/// Reads site `h`'s whole copy of `p` and checks its CRC32C.
async fn verify_copy(
    top: &Topology,
    h: usize,
    p: &BlobPlacement,
) -> std::result::Result<(), VerifyError> {
    let store = &top.sites()[h].store;
    let classify = |e: BlobError| match e {
        BlobError::Unavailable(why) => VerifyError::Unavailable(why),
        other => VerifyError::Damaged(other.to_string()),
    };
    let size = store.size(p.blob).await.map_err(classify)?;
    let mut stream = store.get(p.blob, 0..size).await.map_err(classify)?;
    let mut crc = 0u32;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| VerifyError::Unavailable(e.to_string()))?;
        crc = crc32c::crc32c_append(crc, &chunk);
    }
    match p.crc32c {
        Some(want) if want != crc => Err(VerifyError::Damaged(format!(
            "CRC32C {crc:08x}, recorded {want:08x}"
        ))),
        _ => Ok(()),
    }
}

/// Copies `p` from the best of `held` to site `to`, checking the CRC32C on the way; returns
/// the bytes copied. A copy that does not match is deleted.
async fn copy_blob(
    top: &Topology,
    held: &[usize],
    to: usize,
    p: &BlobPlacement,
) -> std::result::Result<u64, BlobError> {
    let mut last = None;
    for from in top.best_first(held.to_vec()) {
        let source = &top.sites()[from].store;
        let size = match source.size(p.blob).await {
            Ok(s) => s,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let stream = match source.get(p.blob, 0..size).await {
            Ok(s) => s,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let (stream, crc) = CrcTap::around(stream);
        let target = &top.sites()[to].store;
        let written = target.put(p.blob, stream).await?;
        let got = crc.value();
        if p.crc32c.is_some_and(|want| want != got) || written != size {
            let _ = target.delete(p.blob).await;
            last = Some(BlobError::Io(std::io::Error::other(format!(
                "the copy from site {} does not match its record",
                top.sites()[from].id
            ))));
            continue;
        }
        return Ok(written);
    }
    Err(last.unwrap_or_else(|| BlobError::Unavailable("no copy to copy from".into())))
}
