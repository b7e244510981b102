//! The `MetaStore` trait and the records it keeps. Every mutating call is one atomic
//! transaction; conditional writes are checked inside it, so they are atomic across gateways.
//! Blobs that a mutation stops referencing are moved to the *trash* in the same transaction
//! and deleted by the garbage collector after a grace period, so readers that already opened
//! an object keep working and no crash can leak or lose a blob.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vallum_types::{BlobId, UploadId};

use crate::lifecycle::config::LifecycleConfig;
use crate::residency::policy::BucketBoundary;
use crate::versioning::{ObjectLock, ObjectLockConfig, Tags, VersionUpdate, Versioning};

pub use crate::error::{MetaError, MetaResult};

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    /// Its validated name.
    pub name: String,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// The region (location constraint) it was created in.
    pub location: String,
    /// Versioning state.
    pub versioning: Versioning,
    /// Object lock configuration; `Some` means object lock is enabled (for good).
    pub object_lock: Option<ObjectLockConfig>,
    /// Lifecycle configuration.
    pub lifecycle: Option<LifecycleConfig>,
    /// Default encryption (PutBucketEncryption); `None`: the deployment's default key.
    pub encryption: Option<BucketEncryption>,
    /// The bucket's boundary policy, at its latest version; `None`: never set (the
    /// deployment default applies, as it also does after a version whose policy is `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundary: Option<BucketBoundary>,
}

/// A bucket's default encryption: which key-encryption key wraps new objects' data keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BucketEncryption {
    /// `aws:kms` (a named key) or `AES256` (the deployment's default key); objects are
    /// encrypted either way.
    pub algorithm: String,
    /// The key for `aws:kms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Recorded and returned (S3 Bucket Keys); every object has its own data key regardless.
    #[serde(default)]
    pub bucket_key_enabled: bool,
}

impl BucketRecord {
    /// A new bucket with default settings.
    #[must_use]
    pub fn new(name: impl Into<String>, created_ms: i64, location: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            created_ms,
            location: location.into(),
            versioning: Versioning::Unversioned,
            object_lock: None,
            lifecycle: None,
            encryption: None,
            boundary: None,
        }
    }
}

/// Representation headers and user metadata stored with an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectAttrs {
    /// Content-Type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Content-Encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// Content-Disposition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// Content-Language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// Cache-Control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// Expires, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
    /// `x-amz-meta-*` pairs, names lower-cased.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_metadata: BTreeMap<String, String>,
}

impl ObjectAttrs {
    /// Total bytes of user metadata names and values, as S3 counts them.
    #[must_use]
    pub fn user_metadata_bytes(&self) -> usize {
        self.user_metadata
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }
}

/// Additional checksums of an object or part, base64 of the big-endian digest. A multipart
/// object's value is the composite form `<base64>-<parts>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checksums {
    /// CRC32 (ISO-HDLC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
    /// CRC32C (Castagnoli).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    /// SHA-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    /// SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Checksums {
    /// True when no checksum is present.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.crc32.is_none()
            && self.crc32c.is_none()
            && self.sha1.is_none()
            && self.sha256.is_none()
    }
}

/// Additional checksum algorithms S3 clients may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChecksumAlgorithm {
    /// CRC32.
    Crc32,
    /// CRC32C.
    Crc32c,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

/// One contiguous piece of an object's data: a whole blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The blob holding the bytes.
    pub blob: BlobId,
    /// Its size.
    pub size_bytes: u64,
    /// The sites holding a durable copy of the blob, best first as the placement engine
    /// ranked them when written (empty: written before replicas were recorded, held by the
    /// deployment's primary site).
    pub sites: Vec<String>,
    /// CRC32C of the bytes stored on a site (the ciphertext), which the scrubber checks every
    /// copy against; `None` for blobs written before it was recorded.
    pub crc32c: Option<u32>,
}

/// The stored form of a site list: ids joined by commas (site ids never contain one).
#[must_use]
pub fn encode_sites(sites: &[String]) -> String {
    sites.join(",")
}

/// Reads the stored form of a site list.
#[must_use]
pub fn decode_sites(text: &str) -> Vec<String> {
    if text.is_empty() {
        Vec::new()
    } else {
        text.split(',').map(str::to_owned).collect()
    }
}

/// A trashed blob and the sites holding copies of it, which the collector deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrashedBlob {
    /// The blob.
    pub blob: BlobId,
    /// Sites holding it (empty: the primary site).
    pub sites: Vec<String>,
}

/// A blob some object or upload references, and where it is: what the replica repair scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobPlacement {
    /// The blob.
    pub blob: BlobId,
    /// The bucket of the object (or upload) it belongs to.
    pub bucket: String,
    /// The key of that object (or upload).
    pub key: String,
    /// Its size.
    pub size_bytes: u64,
    /// Sites holding a durable copy (empty: the primary site).
    pub sites: Vec<String>,
    /// CRC32C of the bytes stored, when recorded.
    pub crc32c: Option<u32>,
}

/// What a bucket holds on one combination of sites (objects' segments and uploads' parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteUsage {
    /// The bucket.
    pub bucket: String,
    /// The sites holding these blobs (empty: the primary site).
    pub sites: Vec<String>,
    /// Blobs.
    pub blobs: u64,
    /// Their bytes (plaintext).
    pub bytes: u64,
}

/// A site's state as recorded at run time: draining, removed, or added through the admin
/// API (with its definition, opaque to the metadata store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRecord {
    /// Site id.
    pub id: String,
    /// JSON definition (profile and backend) of a site added at run time; `None` for a site
    /// defined in the configuration.
    pub definition: Option<String>,
    /// `active`, `draining` or `removed`.
    pub state: String,
    /// Who changed it last.
    pub changed_by: String,
    /// When, ms since the epoch.
    pub changed_ms: i64,
}

/// A record as stored (an identity record, a site's run-time record, a job's state, ...): a
/// JSON document opaque to the metadata store, with a revision for compare-and-set updates.
/// Secrets inside are encrypted before they get here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// Record kind (`tenant`, `user`, `site`, `job`, ...; see [`crate::records::kind`]).
    pub kind: String,
    /// Id, unique within the kind.
    pub id: String,
    /// The JSON document.
    pub body: String,
    /// Revision: 1 when created, one more on every update.
    pub rev: i64,
}

/// A stored object version (or delete marker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Version id: `null` or 32 hex digits. Assigned by the store on write.
    pub version_id: String,
    /// Order among the key's versions (larger is newer). Assigned by the store on write.
    pub seq: i64,
    /// True for the key's newest version. Maintained by the store.
    pub latest: bool,
    /// True for a delete marker (no data).
    pub delete_marker: bool,
    /// Size in bytes.
    pub size_bytes: u64,
    /// ETag without quotes: hex MD5, or `<hex>-<parts>` for multipart objects.
    pub etag: String,
    /// Last-Modified, ms since the epoch.
    pub last_modified_ms: i64,
    /// Representation headers and user metadata.
    pub attrs: ObjectAttrs,
    /// Verified additional checksums.
    pub checksums: Checksums,
    /// Number of parts, for objects made by a multipart upload.
    pub parts_count: Option<u32>,
    /// The data, in order. Sizes add up to `size_bytes`.
    pub segments: Vec<Segment>,
    /// Object tags.
    pub tags: Tags,
    /// Retention and legal hold.
    pub lock: ObjectLock,
    /// How the data is encrypted; `None` for data written before encryption existed.
    pub encryption: Option<Encryption>,
}

/// How a version's (or an upload's) data is encrypted: its data key, wrapped by a
/// key-encryption key at a key provider, and the segment size of its blobs. Never the
/// plaintext key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// The wrapped data key.
    pub wrapped: vallum_crypto::keys::WrappedKey,
    /// Plaintext bytes per encrypted segment.
    pub segment_bytes: u32,
    /// Reported to S3 clients as SSE-S3 (`AES256`): the write asked for no key of its own
    /// (neither `aws:kms` nor a bucket default naming a key), so it is under the
    /// deployment's default key. Records written before this field existed are reported as
    /// `aws:kms`, as they were then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sse_s3: bool,
}

/// An encrypted version and its wrapped data key, as [`MetaStore::keyed_versions`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedVersion {
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Storage sequence of the version within its key.
    pub seq: i64,
    /// Version id.
    pub version_id: String,
    /// Plaintext size.
    pub size_bytes: u64,
    /// The wrapped data key.
    pub encryption: Encryption,
}

/// What ListObjectVersions (and the lifecycle worker) sees per version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSummary {
    /// Object key.
    pub key: String,
    /// Version id.
    pub version_id: String,
    /// Order among the key's versions (larger is newer).
    pub seq: i64,
    /// True for the key's newest version.
    pub latest: bool,
    /// True for a delete marker.
    pub delete_marker: bool,
    /// Size in bytes.
    pub size_bytes: u64,
    /// ETag without quotes (empty for delete markers).
    pub etag: String,
    /// Last-Modified, ms since the epoch.
    pub last_modified_ms: i64,
    /// Tags (for lifecycle filters).
    pub tags: Tags,
    /// Retention and legal hold.
    pub lock: ObjectLock,
}

/// Where a version listing starts. Versions are ordered by key, then newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionStart<'a> {
    /// The first version.
    Beginning,
    /// The first version of the first key strictly after this one.
    AfterKey(&'a str),
    /// The first key at or after this one.
    AtOrAfterKey(&'a str),
    /// The version after (older than) version `seq` of key.
    AfterVersion(&'a str, i64),
}

/// A condition a delete must meet, checked atomically with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteCondition {
    /// No condition.
    None,
    /// The key's latest version must still be the one ordered at this seq.
    LatestSeq(i64),
    /// The named version must not be the latest.
    NotLatest,
    /// The key's only version must be the delete marker ordered at this seq (it is removed).
    SoleMarker(i64),
}

/// A DeleteObject request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteRequest<'a> {
    /// Remove this version for good; `None` deletes the current object (a delete marker in
    /// versioned buckets).
    pub version_id: Option<&'a str>,
    /// The request may bypass GOVERNANCE retention (header present and permission held).
    pub bypass_governance: bool,
    /// Atomic condition.
    pub condition: DeleteCondition,
}

/// What a delete did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteResult {
    /// The version removed, or the delete marker created (absent in unversioned buckets).
    pub version_id: Option<String>,
    /// The version removed or created is a delete marker.
    pub delete_marker: bool,
    /// Something was removed or created.
    pub changed: bool,
}

/// What a listing returns per object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// ETag without quotes.
    pub etag: String,
    /// Last-Modified, ms since the epoch.
    pub last_modified_ms: i64,
}

/// A condition a write must meet, checked atomically with the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// No condition.
    None,
    /// `If-None-Match: *`: the key must not exist.
    IfAbsent,
    /// `If-Match: <etag>`: the key must exist with this ETag (without quotes); `*` matches any.
    IfMatch(String),
    /// `If-None-Match: <etag>`: the key must not exist with this ETag (without quotes).
    IfNoneMatch(String),
}

/// Where a listing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStart<'a> {
    /// The first key.
    Beginning,
    /// The first key strictly after this one.
    After(&'a str),
    /// The first key at or after this one.
    AtOrAfter(&'a str),
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// Its id.
    pub upload_id: UploadId,
    /// Target bucket.
    pub bucket: String,
    /// Target key.
    pub key: String,
    /// Creation time, ms since the epoch.
    pub initiated_ms: i64,
    /// Headers and metadata the completed object will carry.
    pub attrs: ObjectAttrs,
    /// The checksum algorithm the client announced, if any.
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// Tags the completed object gets.
    pub tags: Tags,
    /// Retention and legal hold the completed object gets.
    pub lock: ObjectLock,
    /// The upload's data key (its parts are encrypted with it), wrapped.
    pub encryption: Option<Encryption>,
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRecord {
    /// Part number, 1 to 10,000.
    pub part_number: u32,
    /// The blob holding its bytes.
    pub blob: BlobId,
    /// Its size.
    pub size_bytes: u64,
    /// Sites holding a durable copy of the blob (empty: the primary site).
    pub sites: Vec<String>,
    /// CRC32C of the bytes stored (see [`Segment::crc32c`]).
    pub crc32c: Option<u32>,
    /// Hex MD5 of the part, without quotes.
    pub etag: String,
    /// Verified additional checksums.
    pub checksums: Checksums,
    /// Upload time, ms since the epoch.
    pub last_modified_ms: i64,
}

/// A change to a bucket's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketUpdate {
    /// PutBucketVersioning.
    Versioning(Versioning),
    /// PutObjectLockConfiguration (enables object lock if it was not).
    ObjectLock(ObjectLockConfig),
    /// Put/DeleteBucketLifecycleConfiguration.
    Lifecycle(Option<LifecycleConfig>),
    /// Put/DeleteBucketEncryption.
    Encryption(Option<BucketEncryption>),
    /// A new version of the boundary policy; refused (`PreconditionFailed`) unless its version
    /// is the current one plus one, so concurrent changes cannot both win.
    Boundary(BucketBoundary),
}

impl BucketUpdate {
    /// The setting changed and its new value (JSON for structured settings), as the log
    /// records them.
    #[must_use]
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            BucketUpdate::Versioning(v) => ("versioning", v.as_str().to_owned()),
            BucketUpdate::ObjectLock(c) => {
                ("object_lock", serde_json::to_string(c).unwrap_or_default())
            }
            BucketUpdate::Lifecycle(None) => ("lifecycle", "none".to_owned()),
            BucketUpdate::Lifecycle(Some(c)) => {
                ("lifecycle", serde_json::to_string(c).unwrap_or_default())
            }
            BucketUpdate::Encryption(None) => ("encryption", "default".to_owned()),
            BucketUpdate::Encryption(Some(c)) => {
                ("encryption", serde_json::to_string(c).unwrap_or_default())
            }
            BucketUpdate::Boundary(b) => (
                "boundary",
                serde_json::to_string(&b.policy).unwrap_or_default(),
            ),
        }
    }
}

/// Applies `update` to `bucket` if the rules allow it. Stores call this inside the
/// transaction that holds the bucket row.
pub fn apply_bucket_update(bucket: &mut BucketRecord, update: &BucketUpdate) -> MetaResult<()> {
    match update {
        BucketUpdate::Versioning(Versioning::Unversioned) => Err(MetaError::Invalid(
            "versioning can be Enabled or Suspended, not turned off".into(),
        )),
        BucketUpdate::Versioning(Versioning::Suspended) if bucket.object_lock.is_some() => {
            Err(MetaError::InvalidBucketState(
                "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.".into(),
            ))
        }
        BucketUpdate::Versioning(state) => {
            bucket.versioning = *state;
            Ok(())
        }
        BucketUpdate::ObjectLock(config) => {
            if bucket.versioning != Versioning::Enabled {
                return Err(MetaError::InvalidBucketState(
                    "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration".into(),
                ));
            }
            bucket.object_lock = Some(*config);
            Ok(())
        }
        BucketUpdate::Lifecycle(config) => {
            bucket.lifecycle.clone_from(config);
            Ok(())
        }
        BucketUpdate::Encryption(config) => {
            bucket.encryption.clone_from(config);
            Ok(())
        }
        BucketUpdate::Boundary(next) => {
            let current = bucket.boundary.as_ref().map_or(0, |b| b.version);
            if next.version != current + 1 {
                return Err(MetaError::PreconditionFailed);
            }
            bucket.boundary = Some(next.clone());
            Ok(())
        }
    }
}

// Metadata storage is a set of ports, each a small trait: a service takes only the ports it
// uses. Implementations: embedded SQLite and PostgreSQL (`vallum-meta`); both implement every
// port and pass each port's suite of `conformance::meta`.

/// Buckets, object versions, listing and the blob trash: the S3 namespace.
#[async_trait::async_trait]
pub trait ObjectIndex: Send + Sync + 'static {
    /// Creates a bucket; `BucketExists` if it exists.
    async fn create_bucket(&self, bucket: &BucketRecord) -> MetaResult<()>;
    /// Looks a bucket up.
    async fn get_bucket(&self, name: &str) -> MetaResult<Option<BucketRecord>>;
    /// All buckets, by name.
    async fn list_buckets(&self) -> MetaResult<Vec<BucketRecord>>;
    /// Deletes a bucket that holds no version (nor delete marker); its unfinished uploads are
    /// aborted and their parts trashed.
    async fn delete_bucket(&self, name: &str, now_ms: i64) -> MetaResult<()>;
    /// Applies a configuration change (checked by `versioning::apply_bucket_update` inside the
    /// transaction) and returns the updated bucket.
    async fn update_bucket(&self, name: &str, update: &BucketUpdate) -> MetaResult<BucketRecord>;
    /// Every version of the bucket's boundary policy, oldest first (kept, with who and when,
    /// in the transaction that changes it; gone with the bucket).
    async fn boundary_history(&self, bucket: &str) -> MetaResult<Vec<BucketBoundary>>;
    /// Stores a new version if `condition` holds (checked against the latest version that is
    /// not a delete marker) and returns its version id. In an `Enabled` bucket it becomes the
    /// newest version; otherwise it replaces the `null` version, whose blobs go to the trash —
    /// unless object lock protects it (`Locked`).
    async fn put_object(
        &self,
        object: &ObjectRecord,
        condition: &WriteCondition,
        now_ms: i64,
    ) -> MetaResult<String>;
    /// Looks a version up (the latest when `version_id` is `None`), segments included. The
    /// latest may be a delete marker.
    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> MetaResult<Option<ObjectRecord>>;
    /// Deletes as S3 does: a named version is removed for good (`Locked` if protected); else
    /// unversioned buckets remove the object, `Enabled` ones add a delete marker, `Suspended`
    /// ones replace the `null` version with a `null` delete marker. Removed blobs go to the
    /// trash. A missing key or version is not an error; a missing bucket is.
    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        request: &DeleteRequest<'_>,
        now_ms: i64,
    ) -> MetaResult<DeleteResult>;
    /// Copies a version verbatim (version id, order, latest and delete-marker flags, segments)
    /// unless the key already holds that version id; returns whether it was copied. For
    /// `vallum migrate-meta`, which copies versions of a key newest first.
    async fn import_version(&self, object: &ObjectRecord) -> MetaResult<bool>;
    /// Changes a version's tags, retention or legal hold (checked by
    /// `versioning::apply_version_update` inside the transaction); returns the version id.
    async fn update_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        update: &VersionUpdate,
        now_ms: i64,
    ) -> MetaResult<String>;
    /// Up to `limit` versions whose key starts with `prefix`, from `start`, by key then newest
    /// first.
    async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
        start: VersionStart<'_>,
        limit: usize,
    ) -> MetaResult<Vec<VersionSummary>>;
    /// Up to `limit` current objects (latest versions that are not delete markers) whose key
    /// starts with `prefix`, from `start`, in byte order of key.
    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start: ListStart<'_>,
        limit: usize,
    ) -> MetaResult<Vec<ObjectSummary>>;
    /// Up to `limit` trashed blobs trashed before `before_ms`, with the sites holding them.
    async fn trash_before(&self, before_ms: i64, limit: usize) -> MetaResult<Vec<TrashedBlob>>;
    /// Forgets trashed blobs once they are deleted from the blob store.
    async fn forget_trash(&self, blobs: &[BlobId]) -> MetaResult<()>;
    /// Encrypted versions whose data key is wrapped under `key_id`, in storage order after
    /// `after`, at most `limit` (key rotation's re-wrap job, crypto-shred reports).
    async fn keyed_versions(
        &self,
        key_id: &str,
        after: Option<&KeyedVersion>,
        limit: usize,
    ) -> MetaResult<Vec<KeyedVersion>>;
    /// Replaces a version's wrapped data key if it still holds `expected`; false when the
    /// version is gone or changed meanwhile.
    async fn rewrap_version(&self, version: &KeyedVersion, new: &Encryption) -> MetaResult<bool>;
}

/// Multipart uploads and their parts.
#[async_trait::async_trait]
pub trait Uploads: Send + Sync + 'static {
    /// Records a new upload; `NoSuchBucket` if the bucket is gone.
    async fn create_upload(&self, upload: &UploadRecord) -> MetaResult<()>;
    /// Looks an upload up.
    async fn get_upload(&self, upload_id: UploadId) -> MetaResult<Option<UploadRecord>>;
    /// Records a part, replacing (and trashing) an earlier part with the same number.
    async fn put_part(&self, upload_id: UploadId, part: &PartRecord, now_ms: i64)
    -> MetaResult<()>;
    /// Up to `limit` parts numbered above `after_part`, ascending.
    async fn list_parts(
        &self,
        upload_id: UploadId,
        after_part: u32,
        limit: usize,
    ) -> MetaResult<Vec<PartRecord>>;
    /// Up to `limit` uploads of `bucket` whose key starts with `prefix`, ordered by key then
    /// initiation then id, strictly after (`key_marker`, `upload_id_marker`).
    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: &str,
        upload_id_marker: Option<UploadId>,
        limit: usize,
    ) -> MetaResult<Vec<UploadRecord>>;
    /// Atomically: checks that segment *i* of `object` is still the blob of part
    /// `part_numbers[i]`, checks `condition`, stores `object`, trashes unused parts and the
    /// replaced object, and removes the upload. Versions as `put_object`; returns the version id.
    async fn complete_upload(
        &self,
        upload_id: UploadId,
        object: &ObjectRecord,
        part_numbers: &[u32],
        condition: &WriteCondition,
        now_ms: i64,
    ) -> MetaResult<String>;
    /// Removes an upload; its parts go to the trash.
    async fn abort_upload(&self, upload_id: UploadId, now_ms: i64) -> MetaResult<()>;
    /// Up to `limit` uploads initiated before `before_ms`.
    async fn stale_uploads(&self, before_ms: i64, limit: usize) -> MetaResult<Vec<UploadRecord>>;
}

/// Which sites hold each blob, and what each site holds.
#[async_trait::async_trait]
pub trait ReplicaIndex: Send + Sync + 'static {
    /// The sites an object, a part or the trash records for the blob; `None` when nothing
    /// references it.
    async fn blob_sites(&self, blob: BlobId) -> MetaResult<Option<Vec<String>>>;
    /// Replaces the site list of the segment or part holding `blob` if it is still
    /// `expected`; false when the blob is no longer referenced or its list changed meanwhile.
    async fn set_blob_sites(
        &self,
        blob: BlobId,
        expected: &[String],
        sites: &[String],
    ) -> MetaResult<bool>;
    /// Up to `limit` blobs of objects and uploads, by blob id strictly after `after`: the
    /// replica repair's scan.
    async fn blob_placements(
        &self,
        after: Option<BlobId>,
        limit: usize,
    ) -> MetaResult<Vec<BlobPlacement>>;
    /// What each bucket (or only `bucket`) holds per combination of sites.
    async fn site_usage(&self, bucket: Option<&str>) -> MetaResult<Vec<SiteUsage>>;
}

/// The record store: typed, versioned documents keyed by kind and id, with compare-and-set.
/// Identity records, run-time site records and saved job states live here, and so does every
/// new kind of record (one constant in [`crate::records::kind`], no new table, method or
/// migration). [`crate::records::TypedRecords`] reads and writes them as typed values.
#[async_trait::async_trait]
pub trait Records: Send + Sync + 'static {
    /// Every record of `kind`, by id.
    async fn records(&self, kind: &str) -> MetaResult<Vec<StoredRecord>>;
    /// One record.
    async fn record(&self, kind: &str, id: &str) -> MetaResult<Option<StoredRecord>>;
    /// Writes `body` as record `kind`/`id` if its revision is still `expected` (`None`: the
    /// record must not exist yet); the new revision, or `None` when another writer got there
    /// first.
    async fn put_record(
        &self,
        kind: &str,
        id: &str,
        body: &str,
        expected: Option<i64>,
    ) -> MetaResult<Option<i64>>;
    /// Deletes record `kind`/`id` if its revision is still `expected`; whether it did.
    async fn delete_record(&self, kind: &str, id: &str, expected: i64) -> MetaResult<bool>;
}

/// Leases under which one gateway at a time runs a job.
#[async_trait::async_trait]
pub trait Leases: Send + Sync + 'static {
    /// Takes (or renews) lease `name` for `holder` until `now_ms + ttl_ms` when it is free,
    /// expired, or already `holder`'s; returns whether `holder` now holds it. Jobs that must run
    /// on one gateway at a time (garbage collection) run only while holding their lease.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> MetaResult<bool>;
    /// Gives lease `name` up if `holder` holds it.
    async fn release_lease(&self, name: &str, holder: &str) -> MetaResult<()>;
}

/// The shared transparency log's sequenced entries (gateways over one store).
#[async_trait::async_trait]
pub trait LogSequencing: Send + Sync + 'static {
    /// Appends transparency-log entries to the shared sequence (when the database sequences
    /// the log for several gateways); returns the index of the first. Durable on return.
    async fn ledger_append(&self, entries: &[Vec<u8>]) -> MetaResult<u64>;
    /// Up to `limit` sequenced entries from index `from`.
    async fn ledger_read(&self, from: u64, limit: usize) -> MetaResult<Vec<Vec<u8>>>;
}

/// Every port at once: what a metadata store implements (by the blanket impl below).
/// Services that need less take only the ports they use.
pub trait MetaStore:
    ObjectIndex + Uploads + ReplicaIndex + Records + Leases + LogSequencing
{
}

impl<T: ObjectIndex + Uploads + ReplicaIndex + Records + Leases + LogSequencing> MetaStore for T {}
