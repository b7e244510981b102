//! [`ObjectService`]: the S3 semantics of buckets and objects over a `MetaStore` and a
//! `BlobStore`. A write streams into a new blob (verified on the way), and only then commits
//! the record that makes it visible; a failure at any point leaves nothing visible.

use std::ops::Range;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use vallum_types::limits::{MAX_BUCKETS, MAX_PUT_OBJECT_BYTES, MAX_USER_METADATA_BYTES};
use vallum_types::{BlobId, BucketName, ObjectKey};

use crate::blob::{BlobStore, ByteStream};
use crate::clock::Clock;
use crate::context::RequestContext;
use crate::crypt::KeyService;
use crate::digest::{self, ChecksumSet, Digests, Expectations};
use crate::error::{Error, Result};
use crate::journal::{Event, Journal, KeyPrivacy, KeyRef, Recorder, SiteRef};
use crate::meta::BucketUpdate;
use crate::meta::{
    BucketRecord, ChecksumAlgorithm, DeleteCondition, DeleteRequest, DeleteResult, Encryption,
    MetaStore, ObjectAttrs, ObjectRecord, Segment, WriteCondition,
};
use crate::residency::Placed;
use crate::residency::sites::Topology;
use crate::versioning::{
    NULL_VERSION, ObjectLock, ObjectLockConfig, Retention, Tags, VersionUpdate, Versioning,
    is_valid_version_id, validate_tags,
};
use vallum_crypto::keys::DataKey;

/// A byte range as a client asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last` (inclusive) or `bytes=first-`.
    From {
        /// First byte.
        first: u64,
        /// Last byte, inclusive.
        last: Option<u64>,
    },
    /// `bytes=-len`: the last `len` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The half-open range this selects in an object of `size` bytes, or `InvalidRange`.
    pub fn resolve(self, size: u64) -> Result<Range<u64>> {
        match self {
            ByteRange::From { first, last } => {
                if first >= size || last.is_some_and(|l| l < first) {
                    return Err(Error::InvalidRange);
                }
                let end = last.map_or(size, |l| l.saturating_add(1).min(size));
                Ok(first..end)
            }
            ByteRange::Suffix(len) => {
                if len == 0 || size == 0 {
                    return Err(Error::InvalidRange);
                }
                Ok(size.saturating_sub(len)..size)
            }
        }
    }
}

/// Conditional-request headers of a read (GET, HEAD, or a copy source).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadConditions {
    /// If-Match ETags (without quotes); `*` matches any.
    pub if_match: Option<Vec<String>>,
    /// If-None-Match ETags (without quotes); `*` matches any.
    pub if_none_match: Option<Vec<String>>,
    /// If-Modified-Since, seconds since the epoch.
    pub if_modified_since_secs: Option<i64>,
    /// If-Unmodified-Since, seconds since the epoch.
    pub if_unmodified_since_secs: Option<i64>,
}

fn etag_listed(list: &[String], etag: &str) -> bool {
    list.iter().any(|e| e == "*" || e == etag)
}

impl ReadConditions {
    /// Evaluates the conditions against `object` as RFC 9110 section 13.2.2 orders them.
    /// `for_copy` turns a "not modified" outcome into a precondition failure, as S3 does for
    /// `x-amz-copy-source-if-*`.
    pub fn check(&self, object: &ObjectRecord, for_copy: bool) -> Result<()> {
        let modified_secs = object.last_modified_ms.div_euclid(1000);
        if let Some(list) = &self.if_match {
            if !etag_listed(list, &object.etag) {
                return Err(Error::PreconditionFailed);
            }
        } else if let Some(since) = self.if_unmodified_since_secs
            && modified_secs > since
        {
            return Err(Error::PreconditionFailed);
        }
        let not_modified = if let Some(list) = &self.if_none_match {
            etag_listed(list, &object.etag)
        } else if let Some(since) = self.if_modified_since_secs {
            modified_secs <= since
        } else {
            false
        };
        if not_modified {
            return Err(if for_copy {
                Error::PreconditionFailed
            } else {
                Error::NotModified {
                    etag: object.etag.clone(),
                    last_modified_ms: object.last_modified_ms,
                }
            });
        }
        Ok(())
    }
}

/// What the client sent about a body it uploads.
#[derive(Default)]
pub struct BodyCheck {
    /// Content-Length (decoded length for aws-chunked bodies).
    pub content_length: Option<u64>,
    /// Content-MD5, base64.
    pub content_md5: Option<String>,
    /// `x-amz-checksum-*` header values.
    pub checksums: crate::meta::Checksums,
    /// `x-amz-checksum-algorithm` / `x-amz-sdk-checksum-algorithm`: compute and keep this one.
    pub algorithm: Option<ChecksumAlgorithm>,
    /// Checksums that arrive as trailers.
    pub trailer: Option<digest::LateChecksums>,
    /// Algorithms the trailers will carry.
    pub trailer_set: ChecksumSet,
    /// Further algorithms to compute and keep.
    pub extra: ChecksumSet,
    /// Hex `x-amz-content-sha256`, when it is a real payload hash.
    pub payload_sha256_hex: Option<String>,
}

/// A PutObject request, minus the body.
pub struct PutObject {
    /// Target bucket.
    pub bucket: String,
    /// Target key.
    pub key: String,
    /// Headers and user metadata.
    pub attrs: ObjectAttrs,
    /// Body verification.
    pub check: BodyCheck,
    /// Conditional-write header.
    pub condition: WriteCondition,
    /// Tags (`x-amz-tagging`).
    pub tags: Tags,
    /// Object lock headers.
    pub lock: LockRequest,
    /// Server-side encryption headers.
    pub sse: SseRequest,
}

/// What a write asks of server-side encryption (`x-amz-server-side-encryption*` headers).
/// Every object is encrypted; the request can only choose the key.
#[derive(Debug, Clone, Default)]
pub struct SseRequest {
    /// What `x-amz-server-side-encryption` asked for, if anything.
    pub algorithm: Option<SseAlgorithm>,
    /// `x-amz-server-side-encryption-aws-kms-key-id`: the key-encryption key to use.
    pub key_id: Option<String>,
    /// SSE-C: the customer's key wraps the data key (and is not stored).
    pub customer_key: Option<vallum_crypto::customer::CustomerKey>,
}

/// The server-side encryption a client can ask for by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseAlgorithm {
    /// `AES256` (SSE-S3): the deployment's default key.
    S3,
    /// `aws:kms` (SSE-KMS): a named key, else the bucket's default key.
    Kms,
}

/// Whether the customer-provided key a request carries fits the object: SSE-C objects need
/// theirs (400 without, 403 with another), other objects take none (400).
pub fn check_customer_key(
    enc: Option<&Encryption>,
    given: Option<&vallum_crypto::customer::CustomerKey>,
) -> Result<()> {
    let ssec = enc.filter(|e| e.wrapped.provider == vallum_crypto::customer::SSE_C);
    match (ssec, given) {
        (Some(_), None) => Err(Error::InvalidRequest(
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.".into(),
        )),
        (Some(e), Some(k)) => {
            if k.matches(&e.wrapped).map_err(crate::crypt::crypto_error)? {
                Ok(())
            } else {
                Err(Error::AccessDenied(
                    "The provided customer key does not match the key the object was stored with.".into(),
                ))
            }
        }
        (None, Some(_)) => Err(Error::InvalidRequest(
            "The encryption parameters are not applicable to this object.".into(),
        )),
        (None, None) => Ok(()),
    }
}

/// Object lock settings a write asks for (`x-amz-object-lock-*` headers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockRequest {
    /// Explicit retention (mode and date together).
    pub retention: Option<Retention>,
    /// Explicit legal hold.
    pub legal_hold: Option<bool>,
}

/// A CopyObject request.
pub struct CopyObject {
    /// Source bucket.
    pub src_bucket: String,
    /// Source key.
    pub src_key: String,
    /// Source version (`?versionId=` in `x-amz-copy-source`).
    pub src_version: Option<String>,
    /// `x-amz-copy-source-if-*`.
    pub src_conditions: ReadConditions,
    /// Destination bucket.
    pub bucket: String,
    /// Destination key.
    pub key: String,
    /// `Some` for `x-amz-metadata-directive: REPLACE`: the new headers and metadata.
    pub replace_attrs: Option<ObjectAttrs>,
    /// Conditional-write header on the destination.
    pub condition: WriteCondition,
    /// `Some` for `x-amz-tagging-directive: REPLACE`: the new tags.
    pub replace_tags: Option<Tags>,
    /// Object lock headers for the new object.
    pub lock: LockRequest,
    /// Server-side encryption headers of the copy.
    pub sse: SseRequest,
}

/// The outcome of a DeleteObjects entry.
#[derive(Debug)]
pub struct DeleteOutcome {
    /// The key.
    pub key: String,
    /// The version asked for.
    pub version_id: Option<String>,
    /// What happened (deleting an absent key or version succeeds).
    pub result: Result<DeleteResult>,
}

/// An object opened for reading.
pub struct ObjectRead {
    /// The record.
    pub object: ObjectRecord,
    /// The bytes being returned.
    pub range: Range<u64>,
    /// Whether the client asked for a range (206 rather than 200).
    pub partial: bool,
    /// The bytes.
    pub body: ByteStream,
}

/// The domain service the S3 front end calls.
pub struct ObjectService {
    pub(crate) meta: Arc<dyn MetaStore>,
    /// The sites in force; replaced as a whole when one is added, drained or removed.
    topology: std::sync::RwLock<Arc<Topology>>,
    pub(crate) clock: Arc<dyn Clock>,
    region: String,
    recorder: Recorder,
    /// Woken when a write left fewer replicas than its placement wants.
    pub(crate) repair_hint: Arc<tokio::sync::Notify>,
    key_privacy: Arc<KeyPrivacy>,
    keys: Arc<KeyService>,
}

/// How a blob being written is encrypted.
pub(crate) struct WriteCipher<'a> {
    pub(crate) dek: &'a DataKey,
    pub(crate) segment_bytes: u32,
    pub(crate) bucket: &'a str,
    pub(crate) key: &'a str,
}

/// How the blobs being read are decrypted.
#[derive(Clone)]
pub(crate) struct ReadCipher {
    pub(crate) dek: DataKey,
    pub(crate) bucket: String,
    pub(crate) key: String,
}

impl ObjectService {
    /// A service over the given stores; `region` is reported as every bucket's location.
    /// Every access is recorded in `journal` (the request fails if it cannot be), and every
    /// object is encrypted with data keys from `keys`: a service that stores data in clear or
    /// keeps no record cannot be built.
    #[must_use]
    pub fn new(
        meta: Arc<dyn MetaStore>,
        blobs: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
        region: impl Into<String>,
        journal: Arc<dyn Journal>,
        keys: Arc<KeyService>,
    ) -> Self {
        Self {
            meta,
            topology: std::sync::RwLock::new(Arc::new(Topology::single(blobs))),
            recorder: Recorder::new(journal, Arc::clone(&clock)),
            clock,
            region: region.into(),
            repair_hint: Arc::new(tokio::sync::Notify::new()),
            key_privacy: Arc::new(KeyPrivacy::none()),
            keys,
        }
    }

    /// The key service every object is encrypted with.
    #[must_use]
    pub fn keys(&self) -> &Arc<KeyService> {
        &self.keys
    }

    /// A fresh, wrapped data key for a new object or upload (none without a key service),
    /// under the key the request names, else the bucket's default, else the deployment's.
    pub(crate) async fn new_object_key(
        &self,
        ctx: &RequestContext,
        bucket: &BucketRecord,
        key: &str,
        sse: &SseRequest,
    ) -> Result<Option<(DataKey, Encryption)>> {
        if let Some(ck) = &sse.customer_key {
            if sse.key_id.is_some() {
                return Err(Error::InvalidArgument(
                    "Server Side Encryption with Customer provided key and with KMS are incompatible".into(),
                ));
            }
            let dek = DataKey::generate().map_err(crate::crypt::crypto_error)?;
            let wrapped = ck
                .wrap(&dek, &crate::crypt::wrap_context(&bucket.name, key))
                .map_err(crate::crypt::crypto_error)?;
            let segment_bytes = self.keys.segment_bytes();
            return Ok(Some((
                dek,
                Encryption {
                    wrapped,
                    segment_bytes,
                    sse_s3: false,
                },
            )));
        }
        let k = &self.keys;
        let bucket_kms = bucket
            .encryption
            .as_ref()
            .filter(|e| e.algorithm != "AES256")
            .and_then(|e| e.key_id.as_deref());
        // An explicit AES256 takes the deployment's key even where the bucket names one;
        // aws:kms without a key id takes the bucket's, and S3's managed key is not offered.
        let key_id = match sse.algorithm {
            Some(SseAlgorithm::S3) => None,
            Some(SseAlgorithm::Kms) => Some(sse.key_id.as_deref().or(bucket_kms).ok_or_else(|| {
                Error::InvalidArgument(
                    "aws:kms needs x-amz-server-side-encryption-aws-kms-key-id (the bucket has no default key)".into(),
                )
            })?),
            None => sse.key_id.as_deref().or(bucket_kms),
        };
        if let Some(id) = key_id {
            vallum_crypto::check_key_id(id).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        }
        let result = k
            .new_key(&bucket.name, key, key_id, &ctx.justification())
            .await;
        match result {
            Err(Error::KeyNotFound(id)) => Err(Error::InvalidArgument(format!(
                "the encryption key {id} does not exist"
            ))),
            Ok((dek, mut enc)) => {
                // Reported as what was asked: SSE-S3 when the request or the bucket's
                // configuration said AES256; otherwise `aws:kms` with the key used.
                enc.sse_s3 = match sse.algorithm {
                    Some(SseAlgorithm::S3) => true,
                    Some(SseAlgorithm::Kms) => false,
                    None => {
                        key_id.is_none()
                            && bucket
                                .encryption
                                .as_ref()
                                .is_some_and(|e| e.algorithm == "AES256")
                    }
                };
                Ok(Some((dek, enc)))
            }
            Err(e) => Err(e),
        }
    }

    /// Unwraps the data key of an encrypted object or upload: with the request's
    /// customer-provided key for SSE-C objects (the copy source's when `source`), otherwise
    /// through the key provider.
    pub(crate) async fn open_object_key(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
        enc: Option<&Encryption>,
        source: bool,
    ) -> Result<Option<ReadCipher>> {
        let customer = if source {
            ctx.customer_keys.source.clone()
        } else {
            ctx.customer_keys.target.clone()
        };
        check_customer_key(enc, customer.as_ref())?;
        let Some(enc) = enc else { return Ok(None) };
        if let Some(ck) = customer {
            let dek = ck
                .unwrap(&enc.wrapped, &crate::crypt::wrap_context(bucket, key))
                .map_err(crate::crypt::crypto_error)?;
            return Ok(Some(ReadCipher {
                dek,
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }));
        }
        let dek = self
            .keys
            .open_key(bucket, key, enc, &ctx.justification())
            .await?;
        Ok(Some(ReadCipher {
            dek,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }))
    }

    /// The entry for a data key wrapped or unwrapped for `bucket`.
    pub(crate) fn key_used_event(
        &self,
        ctx: &RequestContext,
        operation: &str,
        enc: &Encryption,
        bucket: &str,
    ) -> Event {
        Event::KeyUsed {
            operation: operation.to_owned(),
            key_id: enc.wrapped.key_id.clone(),
            provider: enc.wrapped.provider.clone(),
            justification: ctx.justification().reason,
            bucket: Some(bucket.to_owned()),
            location: Some(self.topology().primary().site_ref.clone()),
        }
    }

    /// The profile of the (single) site the blob store writes to, as entries record it.
    #[must_use]
    pub fn with_site(self, site: SiteRef) -> Self {
        let mut top = (*self.topology()).clone();
        let primary = top.primary;
        top.sites[primary].id.clone_from(&site.id);
        top.sites[primary].site_ref = site;
        self.replace_topology(top);
        self
    }

    /// The sites in force now.
    #[must_use]
    pub fn topology(&self) -> Arc<Topology> {
        Arc::clone(
            &self
                .topology
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Puts `top` in force for every request from now on (requests under way keep theirs).
    pub(crate) fn replace_topology(&self, top: Topology) {
        *self
            .topology
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(top);
    }

    /// Which buckets' object keys the log records as keyed hashes.
    #[must_use]
    pub fn with_key_privacy(mut self, privacy: KeyPrivacy) -> Self {
        self.key_privacy = Arc::new(privacy);
        self
    }

    /// The profile of the primary site, as entries record it.
    #[must_use]
    pub fn site(&self) -> SiteRef {
        self.topology().primary().site_ref.clone()
    }

    /// Records `event` by the context's actor; the request fails if it cannot be recorded.
    pub async fn log(&self, ctx: &RequestContext, event: Event) -> Result<()> {
        self.log_all(ctx, vec![event]).await
    }

    /// Records several events in order, durably, in one batch.
    pub async fn log_all(&self, ctx: &RequestContext, events: Vec<Event>) -> Result<()> {
        self.recorder.record_or_fail(ctx, events).await
    }

    /// What the service records through: its journal and clock (the identity service records
    /// through the same).
    #[must_use]
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }
    /// An object key as the log records it for `bucket`.
    #[must_use]
    pub fn key_ref(&self, bucket: &str, key: &str) -> KeyRef {
        self.key_privacy.key_ref(bucket, key)
    }

    /// The entry for a stored version.
    pub(crate) fn stored_event(&self, record: &ObjectRecord, via: &str) -> Event {
        let sha256 = if record.parts_count.is_none() {
            record
                .checksums
                .sha256
                .as_deref()
                .and_then(|b| base64_simd::STANDARD.decode_to_vec(b).ok())
                .map(|raw| digest::hex(&raw))
        } else {
            None
        };
        Event::ObjectStored {
            bucket: record.bucket.clone(),
            key: self.key_ref(&record.bucket, &record.key),
            version_id: record.version_id.clone(),
            size: record.size_bytes,
            etag: record.etag.clone(),
            sha256,
            via: via.to_owned(),
            sites: self.sites_of(&record.segments),
            key_id: None,
        }
    }

    /// The entry for a deletion.
    pub(crate) fn deleted_event(
        &self,
        bucket: &str,
        key: &str,
        result: &DeleteResult,
        bypass_governance: bool,
    ) -> Event {
        let (version_id, delete_marker) = if result.delete_marker && result.version_id.is_some() {
            (None, result.version_id.clone())
        } else {
            (result.version_id.clone(), None)
        };
        Event::ObjectDeleted {
            bucket: bucket.to_owned(),
            key: self.key_ref(bucket, key),
            version_id,
            delete_marker,
            bypass_governance,
        }
    }

    /// The metadata store.
    #[must_use]
    pub fn meta(&self) -> &Arc<dyn MetaStore> {
        &self.meta
    }

    /// The clock every time the service records comes from.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The site a read of `segments` goes to first, as entries record it.
    pub(crate) fn read_site(&self, segments: &[Segment]) -> SiteRef {
        let top = self.topology();
        segments.first().map_or_else(
            || top.primary().site_ref.clone(),
            |s| top.read_ref(&s.sites),
        )
    }

    /// The sites holding any of `segments`, as entries record them, best first.
    pub(crate) fn sites_of(&self, segments: &[Segment]) -> Vec<SiteRef> {
        let top = self.topology();
        let mut out: Vec<SiteRef> = Vec::new();
        for seg in segments {
            for i in top.holders(&seg.sites) {
                let r = &top.sites()[i].site_ref;
                if !out.iter().any(|o| o.id == r.id) {
                    out.push(r.clone());
                }
            }
        }
        if out.is_empty() {
            out.push(top.primary().site_ref.clone());
        }
        out
    }

    /// The service's clock.
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    // ---- buckets ----

    /// Creates a bucket with object lock (and therefore versioning) enabled.
    pub async fn create_locked_bucket(
        &self,
        ctx: &RequestContext,
        name: &str,
    ) -> Result<BucketRecord> {
        self.insert_bucket(name).await?;
        self.meta
            .update_bucket(name, &BucketUpdate::Versioning(Versioning::Enabled))
            .await?;
        let bucket = self
            .meta
            .update_bucket(name, &BucketUpdate::ObjectLock(ObjectLockConfig::default()))
            .await?;
        tracing::info!(target: "vallum::audit", event = "object_lock_enabled", bucket = name, "bucket created with object lock");
        self.log(
            ctx,
            Event::BucketCreated {
                bucket: name.to_owned(),
                object_lock: true,
            },
        )
        .await?;
        self.log_default_boundary(ctx, name).await?;
        Ok(bucket)
    }

    /// Changes a bucket's configuration (versioning, object lock, lifecycle).
    pub async fn update_bucket(
        &self,
        ctx: &RequestContext,
        name: &str,
        update: BucketUpdate,
    ) -> Result<BucketRecord> {
        if let BucketUpdate::Lifecycle(Some(config)) = &update {
            config.validate().map_err(|e| Error::InvalidArgument(e.0))?;
        }
        if let BucketUpdate::ObjectLock(config) = &update
            && let Some(d) = &config.default_retention
        {
            d.validate().map_err(|e| Error::InvalidArgument(e.0))?;
        }
        if let BucketUpdate::Encryption(Some(config)) = &update {
            self.check_bucket_encryption(config).await?;
        }
        let bucket = self.meta.update_bucket(name, &update).await?;
        tracing::info!(target: "vallum::audit", event = "bucket_configuration_changed", bucket = name, change = ?update, "bucket configuration changed");
        if let BucketUpdate::Encryption(config) = &update {
            let key_id = config
                .as_ref()
                .and_then(|c| c.key_id.clone())
                .or_else(|| Some(self.keys.default_key_id().to_owned()));
            self.log(
                ctx,
                Event::EncryptionPolicyChanged {
                    bucket: name.to_owned(),
                    key_id,
                },
            )
            .await?;
            return Ok(bucket);
        }
        let (setting, value) = update.describe();
        self.log(
            ctx,
            Event::BucketChanged {
                bucket: name.to_owned(),
                setting: setting.to_owned(),
                value,
            },
        )
        .await?;
        Ok(bucket)
    }

    /// A bucket encryption configuration must name a usable key.
    async fn check_bucket_encryption(&self, config: &crate::meta::BucketEncryption) -> Result<()> {
        match config.algorithm.as_str() {
            "AES256" | "aws:kms" | "aws:kms:dsse" => {}
            other => {
                return Err(Error::InvalidArgument(format!(
                    "{other:?} is not a server-side encryption algorithm"
                )));
            }
        }
        let Some(id) = &config.key_id else {
            return Ok(());
        };
        let info = self
            .keys
            .provider()
            .describe(id)
            .await
            .map_err(|e| match e {
                vallum_crypto::CryptoError::NoSuchKey(_) => {
                    Error::InvalidArgument(format!("the encryption key {id} does not exist"))
                }
                other => crate::crypt::crypto_error(other),
            })?;
        if info.state != vallum_crypto::keys::KeyState::Enabled {
            return Err(Error::KeyUnavailable(format!("key {id} is {}", info.state)));
        }
        Ok(())
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, ctx: &RequestContext, name: &str) -> Result<BucketRecord> {
        let record = self.insert_bucket(name).await?;
        self.log(
            ctx,
            Event::BucketCreated {
                bucket: record.name.clone(),
                object_lock: false,
            },
        )
        .await?;
        self.log_default_boundary(ctx, name).await?;
        Ok(record)
    }

    async fn insert_bucket(&self, name: &str) -> Result<BucketRecord> {
        let name = BucketName::new(name)?;
        if self.meta.list_buckets().await?.len() >= MAX_BUCKETS {
            return Err(Error::TooManyBuckets);
        }
        let record = BucketRecord::new(name.as_str(), self.clock.now_ms(), self.region.clone());
        self.meta.create_bucket(&record).await?;
        tracing::info!(bucket = %name, "bucket created");
        Ok(record)
    }

    /// Looks a bucket up; `NoSuchBucket` if absent.
    pub async fn bucket(&self, name: &str) -> Result<BucketRecord> {
        self.meta.get_bucket(name).await?.ok_or(Error::NoSuchBucket)
    }

    /// All buckets.
    pub async fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        Ok(self.meta.list_buckets().await?)
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&self, ctx: &RequestContext, name: &str) -> Result<()> {
        self.meta.delete_bucket(name, self.clock.now_ms()).await?;
        tracing::info!(bucket = %name, "bucket deleted");
        self.log(
            ctx,
            Event::BucketDeleted {
                bucket: name.to_owned(),
            },
        )
        .await
    }

    // ---- objects ----

    /// Stores an object from `body`. Returns once data and record are durable.
    pub async fn put_object(
        &self,
        ctx: &RequestContext,
        req: PutObject,
        body: ByteStream,
    ) -> Result<ObjectRecord> {
        ObjectKey::new(&req.key)?;
        check_attrs(&req.attrs)?;
        if req
            .check
            .content_length
            .is_some_and(|len| len > MAX_PUT_OBJECT_BYTES)
        {
            return Err(Error::EntityTooLarge(MAX_PUT_OBJECT_BYTES));
        }
        validate_tags(&req.tags).map_err(|e| Error::InvalidTag(e.0))?;
        let bucket = self.bucket(&req.bucket).await?;
        let lock = self.resolve_lock(&bucket, req.lock)?;
        self.precheck_condition(&req.bucket, &req.key, &req.condition)
            .await?;
        let placed = self.check_placement(&bucket, &req.key)?;
        let key = self
            .new_object_key(ctx, &bucket, &req.key, &req.sse)
            .await?;
        let cipher = key.as_ref().map(|(dek, enc)| WriteCipher {
            dek,
            segment_bytes: enc.segment_bytes,
            bucket: &req.bucket,
            key: &req.key,
        });
        let (segment, digests) = self
            .write_blob(&placed, body, req.check, MAX_PUT_OBJECT_BYTES, cipher)
            .await?;
        let encryption = key.map(|(_, enc)| enc);
        let mut record =
            self.single_blob_record(req.bucket, req.key, req.attrs, segment.clone(), digests);
        record.tags = req.tags;
        record.lock = lock;
        record.encryption = encryption;
        self.commit(&mut record, &req.condition, &[segment]).await?;
        let mut events = Vec::with_capacity(2);
        if let Some(enc) = &record.encryption {
            events.push(self.key_used_event(ctx, "wrap", enc, &record.bucket));
        }
        events.push(self.stored_event(&record, "put"));
        self.log_all(ctx, events).await?;
        Ok(record)
    }

    /// The lock state a new version gets: explicit settings, else the bucket's default
    /// retention. Lock settings on a bucket without object lock are refused.
    pub(crate) fn resolve_lock(
        &self,
        bucket: &BucketRecord,
        req: LockRequest,
    ) -> Result<ObjectLock> {
        let Some(config) = &bucket.object_lock else {
            if req.retention.is_some() || req.legal_hold.is_some() {
                return Err(Error::InvalidRequest(
                    "Bucket is missing ObjectLockConfiguration".into(),
                ));
            }
            return Ok(ObjectLock::default());
        };
        let now = self.now_ms();
        if let Some(r) = req.retention
            && r.until_ms <= now
        {
            return Err(Error::InvalidArgument(
                "The retain until date must be in the future!".into(),
            ));
        }
        let retention = req
            .retention
            .or_else(|| config.default_retention.map(|d| d.retention_from(now)));
        let lock = ObjectLock {
            retention,
            legal_hold: req.legal_hold.unwrap_or(false),
        };
        Ok(lock)
    }

    /// Fails fast (before any data is written) when a write condition already cannot hold.
    /// The authoritative check happens atomically in the metadata store.
    pub(crate) async fn precheck_condition(
        &self,
        bucket: &str,
        key: &str,
        condition: &WriteCondition,
    ) -> Result<()> {
        match condition {
            WriteCondition::None => Ok(()),
            WriteCondition::IfAbsent => match self.meta.get_object(bucket, key, None).await? {
                Some(obj) if !obj.delete_marker => Err(Error::PreconditionFailed),
                _ => Ok(()),
            },
            WriteCondition::IfMatch(etag) => match self.meta.get_object(bucket, key, None).await? {
                Some(obj) if obj.delete_marker => Err(Error::NoSuchKey),
                Some(obj) if etag == "*" || obj.etag == *etag => Ok(()),
                Some(_) => Err(Error::PreconditionFailed),
                None => Err(Error::NoSuchKey),
            },
            WriteCondition::IfNoneMatch(etag) => {
                match self.meta.get_object(bucket, key, None).await? {
                    Some(obj) if !obj.delete_marker && obj.etag == *etag => {
                        Err(Error::PreconditionFailed)
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Streams `body` into a new blob, verifying it; nothing is left behind on failure. Only
    /// a write the placement engine permitted can get here (`Placed`).
    pub(crate) async fn write_blob(
        &self,
        placed: &Placed,
        body: ByteStream,
        check: BodyCheck,
        max_len_bytes: u64,
        cipher: Option<WriteCipher<'_>>,
    ) -> Result<(Segment, Digests)> {
        let md5 = check
            .content_md5
            .as_deref()
            .map(digest::parse_content_md5)
            .transpose()?;
        let payload_sha256 = match check.payload_sha256_hex.as_deref() {
            Some(hex) => Some(
                hex_simd::decode_to_vec(hex)
                    .ok()
                    .and_then(|raw| <[u8; 32]>::try_from(raw.as_slice()).ok())
                    .ok_or_else(|| {
                        Error::InvalidArgument("x-amz-content-sha256 must be 64 hex digits".into())
                    })?,
            ),
            None => None,
        };
        let keep_sha256 = check.algorithm == Some(ChecksumAlgorithm::Sha256)
            || check.extra.sha256
            || check.checksums.sha256.is_some()
            || check.trailer_set.sha256;
        let compute = check
            .algorithm
            .map(ChecksumSet::only)
            .unwrap_or_default()
            .union(check.extra);
        let expect = Expectations {
            content_length: check.content_length,
            max_len_bytes,
            md5,
            checksums: check.checksums,
            compute,
            late: check.trailer,
            late_set: check.trailer_set,
            payload_sha256,
        };
        let (stream, outcome) = digest::verifying_stream(body, expect);
        let blob = BlobId::random();
        // Digests and checks see the plaintext; the site sees only ciphertext.
        let stream = match cipher {
            Some(c) => crate::crypt::encrypt_stream(
                stream,
                c.dek,
                &vallum_crypto::format::ObjectContext {
                    bucket: c.bucket.to_owned(),
                    key: c.key.to_owned(),
                    object_id: blob.to_string(),
                },
                c.segment_bytes,
            )?,
            None => stream,
        };
        match placed.put(blob, stream).await {
            Ok(written) => {
                let mut segment = Segment {
                    blob,
                    size_bytes: 0,
                    sites: placed.site_ids(&written),
                    crc32c: Some(written.crc32c),
                };
                match digest::take_outcome(&outcome) {
                    Some(Ok(mut digests)) => {
                        if !keep_sha256 {
                            // Computed only to check the signed payload hash; not an object
                            // checksum.
                            digests.checksums.sha256 = None;
                        }
                        segment.size_bytes = digests.len_bytes;
                        if placed.short_of_wanted(&written) {
                            // Acknowledged at the quorum: the repair completes the rest.
                            self.repair_hint.notify_one();
                        }
                        Ok((segment, digests))
                    }
                    Some(Err(err)) => {
                        self.discard(&[segment]).await;
                        Err(err)
                    }
                    None => {
                        self.discard(&[segment]).await;
                        Err(Error::ClientStream(
                            "the body was not read to its end".into(),
                        ))
                    }
                }
            }
            Err(err) => Err(digest::take_outcome(&outcome)
                .and_then(Result::err)
                .unwrap_or_else(|| err.into())),
        }
    }

    /// The record of an object held in one freshly written blob.
    fn single_blob_record(
        &self,
        bucket: String,
        key: String,
        attrs: ObjectAttrs,
        segment: Segment,
        digests: Digests,
    ) -> ObjectRecord {
        ObjectRecord {
            bucket,
            key,
            version_id: String::new(),
            seq: 0,
            latest: true,
            delete_marker: false,
            tags: Tags::new(),
            lock: ObjectLock::default(),
            size_bytes: digests.len_bytes,
            etag: digest::hex(&digests.md5),
            last_modified_ms: self.clock.now_ms(),
            attrs,
            checksums: digests.checksums,
            parts_count: None,
            segments: vec![segment],
            encryption: None,
        }
    }

    /// Commits a record whose blobs are written; on failure deletes the blobs.
    pub(crate) async fn commit(
        &self,
        record: &mut ObjectRecord,
        condition: &WriteCondition,
        new_blobs: &[Segment],
    ) -> Result<()> {
        match self
            .meta
            .put_object(record, condition, self.clock.now_ms())
            .await
        {
            Ok(version_id) => {
                record.version_id = version_id;
                tracing::debug!(bucket = %record.bucket, key = %record.key, version_id = %record.version_id, size_bytes = record.size_bytes, "object stored");
                if record.lock != ObjectLock::default() {
                    tracing::info!(target: "vallum::audit", event = "object_lock_set", bucket = %record.bucket, key = %record.key, version_id = %record.version_id, lock = ?record.lock, "new version stored under object lock");
                }
                Ok(())
            }
            Err(err) => {
                self.discard(new_blobs).await;
                Err(err.into())
            }
        }
    }

    /// Best-effort removal of blobs no record references; the GC's orphan sweep catches any
    /// that survive a crash here.
    pub(crate) async fn discard(&self, segments: &[Segment]) {
        let top = self.topology();
        for seg in segments {
            // Failures are logged there; the GC's orphan sweep removes what is left.
            top.delete_all(seg.blob, &seg.sites).await;
        }
    }

    /// Looks an object version up (the latest when `version_id` is `None`); `NoSuchKey`,
    /// `NoSuchVersion` or `NoSuchBucket` if absent, `DeleteMarker` if it is one.
    pub async fn head_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectRecord> {
        if let Some(v) = version_id
            && !is_valid_version_id(v)
        {
            return Err(Error::InvalidArgument(
                "Invalid version id specified".into(),
            ));
        }
        match self.meta.get_object(bucket, key, version_id).await? {
            Some(obj) if obj.delete_marker => Err(Error::DeleteMarker {
                version_id: obj.version_id,
                last_modified_ms: obj.last_modified_ms,
                named: version_id.is_some(),
            }),
            Some(obj) => Ok(obj),
            None => {
                self.bucket(bucket).await?;
                if version_id.is_some() {
                    Err(Error::NoSuchVersion)
                } else {
                    Err(Error::NoSuchKey)
                }
            }
        }
    }

    /// Opens an object (or a range of it) for reading, after evaluating `conditions`.
    pub async fn get_object(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        range: Option<ByteRange>,
        conditions: &ReadConditions,
    ) -> Result<ObjectRead> {
        let object = self.head_object(bucket, key, version_id).await?;
        conditions.check(&object, false)?;
        let (range, partial) = match range {
            Some(r) => (r.resolve(object.size_bytes)?, true),
            None => (0..object.size_bytes, false),
        };
        let cipher = self
            .open_object_key(
                ctx,
                &object.bucket,
                &object.key,
                object.encryption.as_ref(),
                false,
            )
            .await?;
        let body = self
            .read_segments(&object.segments, range.clone(), cipher)
            .await?;
        // Logged (durably) before the first byte leaves.
        let mut events = Vec::with_capacity(2);
        if let Some(enc) = &object.encryption {
            events.push(self.key_used_event(ctx, "unwrap", enc, &object.bucket));
        }
        events.push(Event::ObjectRead {
            bucket: object.bucket.clone(),
            key: self.key_ref(&object.bucket, &object.key),
            version_id: object.version_id.clone(),
            first: range.start,
            length: range.end - range.start,
            site: self.read_site(&object.segments),
        });
        self.log_all(ctx, events).await?;
        Ok(ObjectRead {
            object,
            range,
            partial,
            body,
        })
    }

    /// Streams `range` of the concatenation of `segments`. The first blob is opened before
    /// returning so that a missing blob is an error, not a truncated body.
    pub(crate) async fn read_segments(
        &self,
        segments: &[Segment],
        range: Range<u64>,
        cipher: Option<ReadCipher>,
    ) -> Result<ByteStream> {
        let mut pieces = Vec::new();
        let mut offset = 0u64;
        for seg in segments {
            let seg_range = offset..offset + seg.size_bytes;
            offset += seg.size_bytes;
            let start = range.start.max(seg_range.start);
            let end = range.end.min(seg_range.end);
            if start < end {
                pieces.push((
                    seg.clone(),
                    (start - seg_range.start)..(end - seg_range.start),
                ));
            }
        }
        let mut pieces = pieces.into_iter();
        let Some((first_seg, first_range)) = pieces.next() else {
            return Ok(Box::pin(futures::stream::empty()));
        };
        let top = self.topology();
        let mut first =
            open_piece(Arc::clone(&top), cipher.clone(), first_seg, first_range).await?;
        if cipher.is_some() {
            // Authenticate the first segment before answering, so damaged or tampered data on
            // the site is an error response, not a 200 with a broken body.
            match first.next().await {
                Some(Ok(head)) => {
                    first = Box::pin(futures::stream::once(async move { Ok(head) }).chain(first));
                }
                Some(Err(e)) => return Err(Error::Integrity(e.to_string())),
                None => {}
            }
        }
        let rest = futures::stream::iter(pieces)
            .then(move |(seg, r)| {
                let top = Arc::clone(&top);
                let cipher = cipher.clone();
                async move {
                    open_piece(top, cipher, seg, r)
                        .await
                        .map_err(std::io::Error::other)
                }
            })
            .try_flatten();
        Ok(Box::pin(first.chain(rest)))
    }

    /// Deletes an object (S3 semantics: a delete marker in versioned buckets) or, with
    /// `version_id`, one version for good. Deleting an absent key or version succeeds.
    /// `bypass_governance` is true only when the request carried the bypass header and the
    /// caller holds the permission for it.
    pub async fn delete_object(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        bypass_governance: bool,
    ) -> Result<DeleteResult> {
        if let Some(v) = version_id
            && !is_valid_version_id(v)
        {
            return Err(Error::InvalidArgument(
                "Invalid version id specified".into(),
            ));
        }
        let request = DeleteRequest {
            version_id,
            bypass_governance,
            condition: DeleteCondition::None,
        };
        let result = self
            .meta
            .delete_object(bucket, key, &request, self.clock.now_ms())
            .await?;
        if result.changed {
            tracing::debug!(bucket, key, version_id = ?result.version_id, delete_marker = result.delete_marker, "object deleted");
            if version_id.is_some() {
                tracing::info!(target: "vallum::audit", event = "version_deleted", bucket, key, version_id = ?result.version_id, bypass_governance, "object version permanently deleted");
            }
            self.log(
                ctx,
                self.deleted_event(bucket, key, &result, bypass_governance),
            )
            .await?;
        }
        Ok(result)
    }

    /// Deletes several objects or versions, each independently.
    pub async fn delete_objects(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        entries: Vec<(String, Option<String>)>,
        bypass_governance: bool,
    ) -> Result<Vec<DeleteOutcome>> {
        self.bucket(bucket).await?;
        let mut out = Vec::with_capacity(entries.len());
        for (key, version_id) in entries {
            let result = match ObjectKey::new(&key) {
                Ok(_) => {
                    self.delete_object(ctx, bucket, &key, version_id.as_deref(), bypass_governance)
                        .await
                }
                Err(err) => Err(err.into()),
            };
            out.push(DeleteOutcome {
                key,
                version_id,
                result,
            });
        }
        Ok(out)
    }

    /// Changes one version's tags, retention or legal hold; returns the version id.
    pub async fn update_version(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        update: VersionUpdate,
    ) -> Result<String> {
        if let Some(v) = version_id
            && !is_valid_version_id(v)
        {
            return Err(Error::InvalidArgument(
                "Invalid version id specified".into(),
            ));
        }
        match &update {
            VersionUpdate::Tags(tags) => validate_tags(tags).map_err(|e| Error::InvalidTag(e.0))?,
            VersionUpdate::Retention {
                retention: Some(r), ..
            } if r.until_ms <= self.now_ms() => {
                return Err(Error::InvalidArgument(
                    "The retain until date must be in the future!".into(),
                ));
            }
            _ => {}
        }
        let id = match self
            .meta
            .update_version(bucket, key, version_id, &update, self.now_ms())
            .await
        {
            Ok(id) => id,
            Err(crate::meta::MetaError::NoSuchKey) => {
                self.bucket(bucket).await?;
                return Err(Error::NoSuchKey);
            }
            Err(err) => return Err(err.into()),
        };
        match &update {
            VersionUpdate::Tags(_) => {
                tracing::debug!(bucket, key, version_id = %id, "tags changed");
            }
            VersionUpdate::Retention {
                retention,
                bypass_governance,
            } => {
                tracing::info!(target: "vallum::audit", event = "retention_set", bucket, key, version_id = %id, retention = ?retention, bypass_governance, "object retention set");
                self.log(
                    ctx,
                    Event::ObjectLockChanged {
                        bucket: bucket.to_owned(),
                        key: self.key_ref(bucket, key),
                        version_id: id.clone(),
                        setting: "retention".into(),
                        value: retention.map_or_else(
                            || "none".to_owned(),
                            |r| format!("{} until {}", r.mode.as_str(), r.until_ms),
                        ),
                        bypass_governance: *bypass_governance,
                    },
                )
                .await?;
            }
            VersionUpdate::LegalHold(on) => {
                tracing::info!(target: "vallum::audit", event = if *on { "legal_hold_placed" } else { "legal_hold_removed" }, bucket, key, version_id = %id, "object legal hold changed");
                self.log(
                    ctx,
                    Event::ObjectLockChanged {
                        bucket: bucket.to_owned(),
                        key: self.key_ref(bucket, key),
                        version_id: id.clone(),
                        setting: "legal_hold".into(),
                        value: if *on { "ON" } else { "OFF" }.into(),
                        bypass_governance: false,
                    },
                )
                .await?;
            }
        }
        Ok(id)
    }

    /// Copies an object (server-side: the data is read and written again, verified).
    pub async fn copy_object(&self, ctx: &RequestContext, req: CopyObject) -> Result<ObjectRecord> {
        ObjectKey::new(&req.key)?;
        let source = self
            .head_object(&req.src_bucket, &req.src_key, req.src_version.as_deref())
            .await?;
        req.src_conditions.check(&source, true)?;
        if source.size_bytes > MAX_PUT_OBJECT_BYTES {
            return Err(Error::InvalidRequest(format!(
                "The specified copy source is larger than the maximum allowable size for a copy source: {MAX_PUT_OBJECT_BYTES}"
            )));
        }
        if req.src_bucket == req.bucket
            && req.src_key == req.key
            && req.src_version.is_none()
            && req.replace_attrs.is_none()
        {
            return Err(Error::InvalidRequest(
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.".into(),
            ));
        }
        let bucket = self.bucket(&req.bucket).await?;
        let lock = self.resolve_lock(&bucket, req.lock)?;
        let tags = req.replace_tags.unwrap_or_else(|| source.tags.clone());
        validate_tags(&tags).map_err(|e| Error::InvalidTag(e.0))?;
        let attrs = req.replace_attrs.unwrap_or_else(|| source.attrs.clone());
        check_attrs(&attrs)?;
        self.precheck_condition(&req.bucket, &req.key, &req.condition)
            .await?;
        let placed = self.check_placement(&bucket, &req.key)?;
        let source_cipher = self
            .open_object_key(
                ctx,
                &source.bucket,
                &source.key,
                source.encryption.as_ref(),
                true,
            )
            .await?;
        let body = self
            .read_segments(&source.segments, 0..source.size_bytes, source_cipher)
            .await?;
        // The copy keeps the source's checksum algorithms, as whole-object checksums.
        let check = BodyCheck {
            content_length: Some(source.size_bytes),
            extra: ChecksumSet::of(&source.checksums),
            ..BodyCheck::default()
        };
        let key = self
            .new_object_key(ctx, &bucket, &req.key, &req.sse)
            .await?;
        let cipher = key.as_ref().map(|(dek, enc)| WriteCipher {
            dek,
            segment_bytes: enc.segment_bytes,
            bucket: &req.bucket,
            key: &req.key,
        });
        let (segment, digests) = self
            .write_blob(&placed, body, check, MAX_PUT_OBJECT_BYTES, cipher)
            .await?;
        let encryption = key.map(|(_, enc)| enc);
        let mut record =
            self.single_blob_record(req.bucket, req.key, attrs, segment.clone(), digests);
        record.tags = tags;
        record.lock = lock;
        record.encryption = encryption;
        self.commit(&mut record, &req.condition, &[segment]).await?;
        // A copy reads the source's bytes (on the site it is stored on) and stores new ones.
        let mut events = Vec::with_capacity(4);
        if let Some(enc) = &source.encryption {
            events.push(self.key_used_event(ctx, "unwrap", enc, &source.bucket));
        }
        if let Some(enc) = &record.encryption {
            events.push(self.key_used_event(ctx, "wrap", enc, &record.bucket));
        }
        events.extend([
            Event::ObjectRead {
                bucket: source.bucket.clone(),
                key: self.key_ref(&source.bucket, &source.key),
                version_id: source.version_id.clone(),
                first: 0,
                length: source.size_bytes,
                site: self.read_site(&source.segments),
            },
            self.stored_event(&record, "copy"),
        ]);
        self.log_all(ctx, events).await?;
        Ok(record)
    }
}

/// Opens plaintext `range` of one blob of `plain_size` plaintext bytes: read as it is, or —
/// encrypted — its header and only the segments the range needs, decrypted.
async fn open_piece(
    top: Arc<Topology>,
    cipher: Option<ReadCipher>,
    seg: Segment,
    range: Range<u64>,
) -> Result<ByteStream> {
    let (blob, plain_size) = (seg.blob, seg.size_bytes);
    let Some(c) = cipher else {
        return Ok(top.open(&seg.sites, blob, range).await?);
    };
    let mut header = Vec::with_capacity(crate::crypt::HEADER_LEN as usize);
    let mut h = top
        .open(&seg.sites, blob, 0..crate::crypt::HEADER_LEN)
        .await?;
    while let Some(chunk) = h.next().await {
        header.extend_from_slice(&chunk.map_err(|e| Error::Integrity(e.to_string()))?);
    }
    let ctx = vallum_crypto::format::ObjectContext {
        bucket: c.bucket,
        key: c.key,
        object_id: blob.to_string(),
    };
    let dec = vallum_crypto::format::Decryptor::new(&c.dek, &ctx, &header, plain_size)
        .map_err(crate::crypt::crypto_error)?;
    let span = dec
        .span(range.start, range.end)
        .map_err(crate::crypt::crypto_error)?;
    let raw = top
        .open(&seg.sites, blob, span.offset..span.offset + span.len)
        .await?;
    Ok(crate::crypt::decrypt_stream(
        raw,
        dec,
        span,
        range.start,
        range.end,
    ))
}

/// True when a version id should be reported to clients (`null` versions of never-versioned
/// buckets are not).
#[must_use]
pub fn reported_version(bucket_versioning: Versioning, version_id: &str) -> bool {
    bucket_versioning != Versioning::Unversioned || version_id != NULL_VERSION
}

/// Checks user metadata against the S3 limit.
pub(crate) fn check_attrs(attrs: &ObjectAttrs) -> Result<()> {
    let bytes = attrs.user_metadata_bytes();
    if bytes > MAX_USER_METADATA_BYTES {
        return Err(Error::MetadataTooLarge(bytes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_like_rfc_9110() {
        assert_eq!(
            ByteRange::From {
                first: 0,
                last: Some(9)
            }
            .resolve(100)
            .unwrap(),
            0..10
        );
        assert_eq!(
            ByteRange::From {
                first: 90,
                last: None
            }
            .resolve(100)
            .unwrap(),
            90..100
        );
        assert_eq!(
            ByteRange::From {
                first: 90,
                last: Some(500)
            }
            .resolve(100)
            .unwrap(),
            90..100
        );
        assert_eq!(ByteRange::Suffix(10).resolve(100).unwrap(), 90..100);
        assert_eq!(ByteRange::Suffix(500).resolve(100).unwrap(), 0..100);
        assert!(
            ByteRange::From {
                first: 100,
                last: None
            }
            .resolve(100)
            .is_err()
        );
        assert!(
            ByteRange::From {
                first: 5,
                last: Some(4)
            }
            .resolve(100)
            .is_err()
        );
        assert!(ByteRange::Suffix(0).resolve(100).is_err());
        assert!(ByteRange::Suffix(5).resolve(0).is_err());
    }

    fn object(etag: &str, modified_secs: i64) -> ObjectRecord {
        ObjectRecord {
            bucket: "b".into(),
            key: "k".into(),
            version_id: "null".into(),
            seq: 0,
            latest: true,
            delete_marker: false,
            tags: Tags::new(),
            lock: ObjectLock::default(),
            encryption: None,
            size_bytes: 0,
            etag: etag.into(),
            last_modified_ms: modified_secs * 1000 + 500,
            attrs: ObjectAttrs::default(),
            checksums: Default::default(),
            parts_count: None,
            segments: vec![],
        }
    }

    #[test]
    fn conditions_follow_precedence() {
        let obj = object("abc", 1000);
        let c = |f: fn(&mut ReadConditions)| {
            let mut c = ReadConditions::default();
            f(&mut c);
            c.check(&obj, false)
        };
        assert!(c(|c| c.if_match = Some(vec!["abc".into()])).is_ok());
        assert!(matches!(
            c(|c| c.if_match = Some(vec!["zzz".into()])),
            Err(Error::PreconditionFailed)
        ));
        // If-Match wins over a failing If-Unmodified-Since.
        assert!(
            c(|c| {
                c.if_match = Some(vec!["*".into()]);
                c.if_unmodified_since_secs = Some(10);
            })
            .is_ok()
        );
        assert!(matches!(
            c(|c| c.if_unmodified_since_secs = Some(999)),
            Err(Error::PreconditionFailed)
        ));
        assert!(c(|c| c.if_unmodified_since_secs = Some(1000)).is_ok());
        assert!(matches!(
            c(|c| c.if_none_match = Some(vec!["abc".into()])),
            Err(Error::NotModified { .. })
        ));
        assert!(matches!(
            c(|c| c.if_modified_since_secs = Some(1000)),
            Err(Error::NotModified { .. })
        ));
        assert!(c(|c| c.if_modified_since_secs = Some(999)).is_ok());
        // If-None-Match not matching wins over If-Modified-Since.
        assert!(
            c(|c| {
                c.if_none_match = Some(vec!["zzz".into()]);
                c.if_modified_since_secs = Some(5000);
            })
            .is_ok()
        );
        let copy = ReadConditions {
            if_none_match: Some(vec!["abc".into()]),
            ..ReadConditions::default()
        };
        assert!(matches!(
            copy.check(&obj, true),
            Err(Error::PreconditionFailed)
        ));
    }
}
