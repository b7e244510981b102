//! A fault-injecting wrapper around any metadata store, for tests of the faults a test cannot
//! cause on a real database on demand: an I/O error, a lost connection, a full disk at a chosen
//! moment, latency. Faults are queued in a shared plan; each write (or read) takes the next.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vallum_core::meta::BucketUpdate;
use vallum_core::meta::{
    BlobPlacement, BucketRecord, DeleteRequest, DeleteResult, Encryption, KeyedVersion, Leases,
    ListStart, LogSequencing, MetaError, MetaResult, MetaStore, ObjectIndex, ObjectRecord,
    ObjectSummary, PartRecord, Records, ReplicaIndex, SiteUsage, StoredRecord, TrashedBlob,
    UploadRecord, Uploads, VersionStart, VersionSummary, WriteCondition,
};
use vallum_core::versioning::VersionUpdate;
use vallum_types::{BlobId, UploadId};

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaFault {
    /// The disk is full (what SQLite's SQLITE_FULL or PostgreSQL's disk_full become).
    StorageFull,
    /// The connection to the store is lost (retryable).
    ConnectionLost,
    /// An I/O error of the store.
    Io,
    /// The operation waits this long first.
    Latency(Duration),
}

/// The faults waiting for writes and reads.
#[derive(Debug, Default)]
pub struct MetaFaultPlan {
    writes: Mutex<VecDeque<MetaFault>>,
    reads: Mutex<VecDeque<MetaFault>>,
}

impl MetaFaultPlan {
    /// The next write meets `fault`.
    pub fn on_write(&self, fault: MetaFault) {
        self.writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(fault);
    }

    /// The next read meets `fault`.
    pub fn on_read(&self, fault: MetaFault) {
        self.reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(fault);
    }
}

/// `inner`, with the faults of a plan injected.
pub struct FaultInjectingMetaStore {
    inner: Arc<dyn MetaStore>,
    plan: Arc<MetaFaultPlan>,
}

impl FaultInjectingMetaStore {
    /// Wraps `inner`; faults are queued on the returned plan.
    pub fn new(inner: Arc<dyn MetaStore>) -> (Self, Arc<MetaFaultPlan>) {
        let plan = Arc::new(MetaFaultPlan::default());
        (
            Self {
                inner,
                plan: Arc::clone(&plan),
            },
            plan,
        )
    }

    async fn fault(&self, write: bool) -> MetaResult<()> {
        let queue = if write {
            &self.plan.writes
        } else {
            &self.plan.reads
        };
        let next = queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front();
        match next {
            None => Ok(()),
            Some(MetaFault::StorageFull) => Err(MetaError::StorageFull(
                "injected: database or disk is full".into(),
            )),
            Some(MetaFault::ConnectionLost) => {
                Err(MetaError::Unavailable("injected: connection lost".into()))
            }
            Some(MetaFault::Io) => Err(MetaError::Backend("injected: disk I/O error".into())),
            Some(MetaFault::Latency(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
        }
    }
}

#[async_trait::async_trait]
impl ObjectIndex for FaultInjectingMetaStore {
    async fn create_bucket(&self, bucket: &BucketRecord) -> MetaResult<()> {
        self.fault(true).await?;
        self.inner.create_bucket(bucket).await
    }

    async fn get_bucket(&self, name: &str) -> MetaResult<Option<BucketRecord>> {
        self.fault(false).await?;
        self.inner.get_bucket(name).await
    }

    async fn list_buckets(&self) -> MetaResult<Vec<BucketRecord>> {
        self.fault(false).await?;
        self.inner.list_buckets().await
    }

    async fn delete_bucket(&self, name: &str, now_ms: i64) -> MetaResult<()> {
        self.fault(true).await?;
        self.inner.delete_bucket(name, now_ms).await
    }

    async fn update_bucket(&self, name: &str, update: &BucketUpdate) -> MetaResult<BucketRecord> {
        self.fault(true).await?;
        self.inner.update_bucket(name, update).await
    }

    async fn boundary_history(
        &self,
        bucket: &str,
    ) -> MetaResult<Vec<vallum_core::residency::BucketBoundary>> {
        self.fault(false).await?;
        self.inner.boundary_history(bucket).await
    }

    async fn put_object(
        &self,
        object: &ObjectRecord,
        condition: &WriteCondition,
        now_ms: i64,
    ) -> MetaResult<String> {
        self.fault(true).await?;
        self.inner.put_object(object, condition, now_ms).await
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> MetaResult<Option<ObjectRecord>> {
        self.fault(false).await?;
        self.inner.get_object(bucket, key, version_id).await
    }

    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        request: &DeleteRequest<'_>,
        now_ms: i64,
    ) -> MetaResult<DeleteResult> {
        self.fault(true).await?;
        self.inner.delete_object(bucket, key, request, now_ms).await
    }

    async fn import_version(&self, object: &ObjectRecord) -> MetaResult<bool> {
        self.fault(true).await?;
        self.inner.import_version(object).await
    }

    async fn update_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        update: &VersionUpdate,
        now_ms: i64,
    ) -> MetaResult<String> {
        self.fault(true).await?;
        self.inner
            .update_version(bucket, key, version_id, update, now_ms)
            .await
    }

    async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
        start: VersionStart<'_>,
        limit: usize,
    ) -> MetaResult<Vec<VersionSummary>> {
        self.fault(false).await?;
        self.inner.list_versions(bucket, prefix, start, limit).await
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start: ListStart<'_>,
        limit: usize,
    ) -> MetaResult<Vec<ObjectSummary>> {
        self.fault(false).await?;
        self.inner.list_objects(bucket, prefix, start, limit).await
    }

    async fn trash_before(&self, before_ms: i64, limit: usize) -> MetaResult<Vec<TrashedBlob>> {
        self.fault(false).await?;
        self.inner.trash_before(before_ms, limit).await
    }

    async fn forget_trash(&self, blobs: &[BlobId]) -> MetaResult<()> {
        self.fault(true).await?;
        self.inner.forget_trash(blobs).await
    }

    async fn keyed_versions(
        &self,
        key_id: &str,
        after: Option<&KeyedVersion>,
        limit: usize,
    ) -> MetaResult<Vec<KeyedVersion>> {
        self.fault(false).await?;
        self.inner.keyed_versions(key_id, after, limit).await
    }

    async fn rewrap_version(&self, version: &KeyedVersion, new: &Encryption) -> MetaResult<bool> {
        self.fault(true).await?;
        self.inner.rewrap_version(version, new).await
    }
}

#[async_trait::async_trait]
impl Uploads for FaultInjectingMetaStore {
    async fn create_upload(&self, upload: &UploadRecord) -> MetaResult<()> {
        self.fault(true).await?;
        self.inner.create_upload(upload).await
    }

    async fn get_upload(&self, upload_id: UploadId) -> MetaResult<Option<UploadRecord>> {
        self.fault(false).await?;
        self.inner.get_upload(upload_id).await
    }

    async fn put_part(
        &self,
        upload_id: UploadId,
        part: &PartRecord,
        now_ms: i64,
    ) -> MetaResult<()> {
        self.fault(true).await?;
        self.inner.put_part(upload_id, part, now_ms).await
    }

    async fn list_parts(
        &self,
        upload_id: UploadId,
        after_part: u32,
        limit: usize,
    ) -> MetaResult<Vec<PartRecord>> {
        self.fault(false).await?;
        self.inner.list_parts(upload_id, after_part, limit).await
    }

    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: &str,
        upload_id_marker: Option<UploadId>,
        limit: usize,
    ) -> MetaResult<Vec<UploadRecord>> {
        self.fault(false).await?;
        self.inner
            .list_uploads(bucket, prefix, key_marker, upload_id_marker, limit)
            .await
    }

    async fn complete_upload(
        &self,
        upload_id: UploadId,
        object: &ObjectRecord,
        part_numbers: &[u32],
        condition: &WriteCondition,
        now_ms: i64,
    ) -> MetaResult<String> {
        self.fault(true).await?;
        self.inner
            .complete_upload(upload_id, object, part_numbers, condition, now_ms)
            .await
    }

    async fn abort_upload(&self, upload_id: UploadId, now_ms: i64) -> MetaResult<()> {
        self.fault(true).await?;
        self.inner.abort_upload(upload_id, now_ms).await
    }

    async fn stale_uploads(&self, before_ms: i64, limit: usize) -> MetaResult<Vec<UploadRecord>> {
        self.fault(false).await?;
        self.inner.stale_uploads(before_ms, limit).await
    }
}

#[async_trait::async_trait]
impl ReplicaIndex for FaultInjectingMetaStore {
    async fn blob_sites(&self, blob: BlobId) -> MetaResult<Option<Vec<String>>> {
        self.fault(false).await?;
        self.inner.blob_sites(blob).await
    }

    async fn set_blob_sites(
        &self,
        blob: BlobId,
        expected: &[String],
        sites: &[String],
    ) -> MetaResult<bool> {
        self.fault(true).await?;
        self.inner.set_blob_sites(blob, expected, sites).await
    }

    async fn blob_placements(
        &self,
        after: Option<BlobId>,
        limit: usize,
    ) -> MetaResult<Vec<BlobPlacement>> {
        self.fault(false).await?;
        self.inner.blob_placements(after, limit).await
    }

    async fn site_usage(&self, bucket: Option<&str>) -> MetaResult<Vec<SiteUsage>> {
        self.fault(false).await?;
        self.inner.site_usage(bucket).await
    }
}

#[async_trait::async_trait]
impl Records for FaultInjectingMetaStore {
    async fn records(&self, kind: &str) -> MetaResult<Vec<StoredRecord>> {
        self.fault(false).await?;
        self.inner.records(kind).await
    }

    async fn record(&self, kind: &str, id: &str) -> MetaResult<Option<StoredRecord>> {
        self.fault(false).await?;
        self.inner.record(kind, id).await
    }

    async fn put_record(
        &self,
        kind: &str,
        id: &str,
        body: &str,
        expected: Option<i64>,
    ) -> MetaResult<Option<i64>> {
        self.fault(true).await?;
        self.inner.put_record(kind, id, body, expected).await
    }

    async fn delete_record(&self, kind: &str, id: &str, expected: i64) -> MetaResult<bool> {
        self.fault(true).await?;
        self.inner.delete_record(kind, id, expected).await
    }
}

#[async_trait::async_trait]
impl Leases for FaultInjectingMetaStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> MetaResult<bool> {
        self.fault(true).await?;
        self.inner.acquire_lease(name, holder, now_ms, ttl_ms).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> MetaResult<()> {
        self.fault(true).await?;
        self.inner.release_lease(name, holder).await
    }
}

#[async_trait::async_trait]
impl LogSequencing for FaultInjectingMetaStore {
    async fn ledger_append(&self, entries: &[Vec<u8>]) -> MetaResult<u64> {
        self.fault(true).await?;
        self.inner.ledger_append(entries).await
    }

    async fn ledger_read(&self, from: u64, limit: usize) -> MetaResult<Vec<Vec<u8>>> {
        self.fault(false).await?;
        self.inner.ledger_read(from, limit).await
    }
}
