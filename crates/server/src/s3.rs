//! The S3 operations: each converts the s3s input into a domain call and the result back.
//! No storage logic lives here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use vallum_core::context::{CustomerKeys, RequestContext};
use vallum_core::digest::ChecksumSet;
use vallum_core::lifecycle::{LifecycleConfig, LifecycleFilter, LifecycleRule as CoreRule};
use vallum_core::list::Marker as ListMarker;
use vallum_core::meta::BucketUpdate;
use vallum_core::meta::{
    ChecksumAlgorithm as CoreAlgorithm, Checksums, ObjectAttrs, ObjectRecord, WriteCondition,
};
use vallum_core::multipart::{CompletedPart as CorePart, parse_checksum_algorithm};
use vallum_core::service::{
    BodyCheck, ByteRange, CopyObject, LockRequest, ObjectService, PutObject, ReadConditions,
    SseAlgorithm, SseRequest,
};
use vallum_core::versioning::{
    DefaultRetention as CoreDefaultRetention, NULL_VERSION, ObjectLock, ObjectLockConfig,
    Retention, RetentionMode, Tags, VersionUpdate, Versioning,
};
use vallum_types::limits::{MAX_DELETE_OBJECTS, MAX_LIST_KEYS};

use crate::error::to_s3;

/// The S3 front end over an [`ObjectService`].
pub struct VallumS3 {
    service: Arc<ObjectService>,
    iam: Arc<vallum_core::iam::Iam>,
    region: String,
    owner: Owner,
    allow_governance_bypass: bool,
    /// Globally unique bucket names, when the deployment uses them.
    names: Option<Arc<crate::bucket_names::BucketNames>>,
    /// Buckets' lifecycle rules as `x-amz-expiration` last read them, and when.
    lifecycles: std::sync::Mutex<HashMap<String, CachedLifecycle>>,
}

/// A bucket's lifecycle rules (none: `None`) and when they were read.
type CachedLifecycle = (Option<Arc<LifecycleConfig>>, Instant);

/// How long a gateway reuses a bucket's lifecycle rules for `x-amz-expiration` (a change made
/// through another gateway shows within it; one made here, at once).
const LIFECYCLE_HEADER_TTL: Duration = Duration::from_secs(5);

/// S3 inputs that name a bucket.
trait BucketInput {
    fn bucket_mut(&mut self) -> &mut String;
}

macro_rules! bucket_inputs {
    ($($t:ident),* $(,)?) => {
        $(impl BucketInput for $t {
            fn bucket_mut(&mut self) -> &mut String {
                &mut self.bucket
            }
        })*
    };
}

bucket_inputs!(
    CreateBucketInput,
    HeadBucketInput,
    DeleteBucketInput,
    GetBucketLocationInput,
    PutObjectInput,
    GetObjectInput,
    HeadObjectInput,
    DeleteObjectInput,
    DeleteObjectsInput,
    CopyObjectInput,
    ListObjectsV2Input,
    ListObjectsInput,
    CreateMultipartUploadInput,
    UploadPartInput,
    UploadPartCopyInput,
    CompleteMultipartUploadInput,
    AbortMultipartUploadInput,
    ListPartsInput,
    ListMultipartUploadsInput,
    GetBucketVersioningInput,
    PutBucketVersioningInput,
    ListObjectVersionsInput,
    PutObjectLockConfigurationInput,
    GetObjectLockConfigurationInput,
    PutObjectRetentionInput,
    GetObjectRetentionInput,
    PutObjectLegalHoldInput,
    GetObjectLegalHoldInput,
    PutBucketLifecycleConfigurationInput,
    GetBucketLifecycleConfigurationInput,
    DeleteBucketLifecycleInput,
    PutBucketEncryptionInput,
    GetBucketEncryptionInput,
    DeleteBucketEncryptionInput,
    PutObjectTaggingInput,
    GetObjectTaggingInput,
    DeleteObjectTaggingInput,
    GetBucketPolicyInput,
    PutBucketPolicyInput,
    DeleteBucketPolicyInput,
    GetBucketPolicyStatusInput,
    GetPublicAccessBlockInput,
    PutPublicAccessBlockInput,
    DeletePublicAccessBlockInput,
    PutBucketCorsInput,
    GetBucketCorsInput,
    DeleteBucketCorsInput,
    GetObjectAttributesInput,
    GetBucketAclInput,
    PutBucketAclInput,
    GetObjectAclInput,
    PutObjectAclInput,
    GetBucketOwnershipControlsInput,
    PutBucketOwnershipControlsInput,
    DeleteBucketOwnershipControlsInput,
    GetBucketTaggingInput,
    PutBucketTaggingInput,
    DeleteBucketTaggingInput,
);

/// The preamble of every bucket handler, in one place: the request with its bucket under the
/// internal (tenant-qualified) name the decision point resolved, and the request's context
/// (who acts, under which grant).
fn scoped<T: BucketInput>(mut req: S3Request<T>) -> S3Result<(S3Request<T>, RequestContext)> {
    let internal = crate::authz::internal(&req.extensions, req.input.bucket_mut())?;
    *req.input.bucket_mut() = internal;
    let ctx = crate::authz::context(&req.extensions);
    Ok((req, ctx))
}

impl VallumS3 {
    /// `x-amz-expiration` for the current version `object`: when its bucket's lifecycle
    /// expires it, and by which rule (none without an expiration rule that matches).
    async fn expiration(&self, object: &ObjectRecord) -> Option<String> {
        if !object.latest || object.delete_marker {
            return None;
        }
        let lifecycle = self.lifecycle_of(&object.bucket).await?;
        let (at, rule) = lifecycle.expiration(
            &object.key,
            object.size_bytes,
            &object.tags,
            object.last_modified_ms,
        )?;
        Some(format!(
            "expiry-date=\"{}\", rule-id=\"{}\"",
            http_date(at),
            rule.unwrap_or_default()
        ))
    }

    /// The encryption headers of a multipart upload's answers (UploadPart, UploadPartCopy),
    /// from the upload's record.
    async fn upload_sse(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        ck_md5: Option<String>,
    ) -> S3Result<(
        Option<ServerSideEncryption>,
        Option<String>,
        Option<String>,
        Option<String>,
    )> {
        let upload = self
            .service
            .upload(bucket, key, upload_id)
            .await
            .map_err(to_s3)?;
        let (sse, kms) = sse_out(upload.encryption.as_ref());
        let (alg, md5) = ssec_out(upload.encryption.as_ref(), ck_md5);
        Ok((sse, kms, alg, md5))
    }

    /// A bucket's lifecycle rules, read at most every [`LIFECYCLE_HEADER_TTL`]; `None`
    /// without any (a failure to read only drops the informational header).
    async fn lifecycle_of(&self, bucket: &str) -> Option<Arc<LifecycleConfig>> {
        let cached = self.lifecycles.lock().ok().and_then(|m| {
            m.get(bucket)
                .filter(|(_, at)| at.elapsed() < LIFECYCLE_HEADER_TTL)
                .map(|(c, _)| c.clone())
        });
        if let Some(config) = cached {
            return config;
        }
        let config = self
            .service
            .bucket(bucket)
            .await
            .ok()?
            .lifecycle
            .map(Arc::new);
        if let Ok(mut m) = self.lifecycles.lock() {
            m.insert(bucket.to_owned(), (config.clone(), Instant::now()));
        }
        config
    }

    /// Forgets what [`Self::lifecycle_of`] read of `bucket` (its rules changed here).
    fn forget_lifecycle(&self, bucket: &str) {
        if let Ok(mut m) = self.lifecycles.lock() {
            m.remove(bucket);
        }
    }

    /// The record of the bucket a request names (resolved as [`scoped`] does): what every
    /// Get*Configuration handler reads.
    async fn bucket_of<T: BucketInput>(
        &self,
        req: S3Request<T>,
    ) -> S3Result<vallum_core::meta::BucketRecord> {
        let (mut req, _) = scoped(req)?;
        self.service
            .bucket(req.input.bucket_mut())
            .await
            .map_err(to_s3)
    }

    /// Applies `update` to the bucket a request names (resolved as [`scoped`] does), as the
    /// request's actor.
    async fn update_bucket_of<T: BucketInput>(
        &self,
        req: S3Request<T>,
        update: BucketUpdate,
    ) -> S3Result<()> {
        let (mut req, ctx) = scoped(req)?;
        self.service
            .update_bucket(&ctx, req.input.bucket_mut(), update)
            .await
            .map_err(to_s3)?;
        Ok(())
    }

    /// The front end; `allow_governance_bypass` is the deployment-wide permission to bypass
    /// GOVERNANCE retention (config `object_lock.allow_governance_bypass`).
    pub fn new(
        service: Arc<ObjectService>,
        iam: Arc<vallum_core::iam::Iam>,
        region: String,
        owner_id: String,
        allow_governance_bypass: bool,
    ) -> Self {
        Self {
            allow_governance_bypass,
            service,
            iam,
            region,
            owner: Owner {
                display_name: Some("vallum".into()),
                id: Some(owner_id),
            },
            names: None,
            lifecycles: std::sync::Mutex::default(),
        }
    }

    /// Bucket names unique across tenants (`global_bucket_names`).
    #[must_use]
    pub fn with_global_names(
        mut self,
        names: Option<Arc<crate::bucket_names::BucketNames>>,
    ) -> Self {
        self.names = names;
        self
    }
}

type R<T> = S3Result<S3Response<T>>;

/// `204 No Content` with `output`'s headers.
fn no_content<T>(output: T) -> R<T> {
    let mut resp = S3Response::new(output);
    resp.status = Some(http::StatusCode::NO_CONTENT);
    Ok(resp)
}

fn ok<T>(output: T) -> R<T> {
    Ok(S3Response::new(output))
}

fn timestamp(ms: i64) -> Timestamp {
    let nanos = i128::from(ms) * 1_000_000;
    Timestamp::from(
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
    )
}

fn to_ms(ts: Timestamp) -> i64 {
    let dt: time::OffsetDateTime = ts.into();
    i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// An HTTP date (`Last-Modified` format) for `ms` since the epoch.
pub(crate) fn http_date(ms: i64) -> String {
    let dt = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    dt.format(&format).unwrap_or_default()
}

/// The version id to report for a version: `null` versions only when the request named one.
fn version_out(version_id: &str, named: bool) -> Option<String> {
    (named || version_id != NULL_VERSION).then(|| version_id.to_owned())
}

/// Parses `x-amz-tagging` (URL query form, `k1=v1&k2=v2`).
fn tags_from_header(header: Option<&str>) -> S3Result<Tags> {
    let mut tags = Tags::new();
    let Some(text) = header.filter(|t| !t.is_empty()) else {
        return Ok(tags);
    };
    for (k, v) in form_urlencoded::parse(text.as_bytes()) {
        if tags.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
    }
    Ok(tags)
}

/// Tags from a `<Tagging>` document.
fn tags_from_set(set: TagSet) -> S3Result<Tags> {
    let mut tags = Tags::new();
    for tag in set {
        let key = tag.key.unwrap_or_default();
        if tags.insert(key, tag.value.unwrap_or_default()).is_some() {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
    }
    Ok(tags)
}

fn tag_set(tags: &Tags) -> TagSet {
    tags.iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

fn mode_in(mode: &str) -> S3Result<RetentionMode> {
    match mode {
        "GOVERNANCE" => Ok(RetentionMode::Governance),
        "COMPLIANCE" => Ok(RetentionMode::Compliance),
        other => Err(s3_error!(
            InvalidArgument,
            "Unknown object lock mode {other}: use GOVERNANCE or COMPLIANCE"
        )),
    }
}

/// The `x-amz-object-lock-*` headers of a write.
fn lock_request(
    mode: Option<&ObjectLockMode>,
    until: Option<Timestamp>,
    legal_hold: Option<&ObjectLockLegalHoldStatus>,
) -> S3Result<LockRequest> {
    let retention = match (mode, until) {
        (Some(m), Some(u)) => Some(Retention {
            mode: mode_in(m.as_str())?,
            until_ms: to_ms(u),
        }),
        (None, None) => None,
        _ => {
            return Err(s3_error!(
                InvalidArgument,
                "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied"
            ));
        }
    };
    let legal_hold = legal_hold.map(|h| legal_hold_in(h.as_str())).transpose()?;
    Ok(LockRequest {
        retention,
        legal_hold,
    })
}

/// A retention mode in an XML document (PutObjectRetention, PutObjectLockConfiguration):
/// anything else than the two names, in capitals, is `MalformedXML` as in S3.
fn mode_in_xml(mode: &str) -> S3Result<RetentionMode> {
    mode_in(mode).map_err(|_| {
        s3_error!(
            MalformedXML,
            "Unknown object lock mode {mode}: use GOVERNANCE or COMPLIANCE"
        )
    })
}

fn legal_hold_in(status: &str) -> S3Result<bool> {
    match status {
        "ON" => Ok(true),
        "OFF" => Ok(false),
        other => Err(s3_error!(
            MalformedXML,
            "Unknown legal hold status {other}: use ON or OFF"
        )),
    }
}

/// A default retention's period: exactly one of Days and Years, positive.
fn retention_period(days: Option<i32>, years: Option<i32>) -> S3Result<(Option<u32>, Option<u32>)> {
    let positive = |v: i32, what: &str| {
        u32::try_from(v).ok().filter(|v| *v > 0).ok_or_else(|| {
            crate::error::custom_error(
                "InvalidRetentionPeriod",
                http::StatusCode::BAD_REQUEST,
                format!("Default retention period must be a positive integer value for {what}"),
            )
        })
    };
    match (days, years) {
        (Some(d), None) => Ok((Some(positive(d, "Days")?), None)),
        (None, Some(y)) => Ok((None, Some(positive(y, "Years")?))),
        _ => Err(s3_error!(
            MalformedXML,
            "DefaultRetention names exactly one of Days and Years"
        )),
    }
}

/// Retention and legal hold apply in buckets made with object lock only: 400 InvalidRequest
/// elsewhere, as in S3.
fn require_object_lock(bucket: &vallum_core::meta::BucketRecord) -> S3Result<()> {
    if bucket.object_lock.is_none() {
        return Err(s3_error!(
            InvalidRequest,
            "Bucket is missing Object Lock Configuration"
        ));
    }
    Ok(())
}

fn legal_hold_out(on: bool) -> ObjectLockLegalHoldStatus {
    ObjectLockLegalHoldStatus::from(if on { "ON" } else { "OFF" }.to_owned())
}

/// The response headers describing a version's lock state.
fn lock_out(
    lock: &ObjectLock,
    bucket_locked: bool,
) -> (
    Option<ObjectLockMode>,
    Option<Timestamp>,
    Option<ObjectLockLegalHoldStatus>,
) {
    (
        lock.retention
            .map(|r| ObjectLockMode::from(r.mode.as_str().to_owned())),
        lock.retention.map(|r| timestamp(r.until_ms)),
        bucket_locked.then(|| legal_hold_out(lock.legal_hold)),
    )
}

/// A count as S3 sends it (`i32` in the DTOs); negative counts are refused.
fn count_in(value: Option<i32>, what: &str) -> S3Result<Option<u32>> {
    value
        .map(|v| {
            u32::try_from(v).map_err(|_| s3_error!(InvalidArgument, "{what} must not be negative"))
        })
        .transpose()
}

fn lifecycle_in(config: BucketLifecycleConfiguration) -> S3Result<LifecycleConfig> {
    let mut rules = Vec::with_capacity(config.rules.len());
    for rule in config.rules {
        if rule.transitions.as_ref().is_some_and(|t| !t.is_empty())
            || rule
                .noncurrent_version_transitions
                .as_ref()
                .is_some_and(|t| !t.is_empty())
        {
            return Err(s3_error!(
                InvalidStorageClass,
                "storage class transitions are not supported: Vallum has one storage class, STANDARD"
            ));
        }
        let enabled = match rule.status.as_str() {
            ExpirationStatus::ENABLED => true,
            ExpirationStatus::DISABLED => false,
            other => {
                return Err(s3_error!(
                    MalformedXML,
                    "a rule's Status is Enabled or Disabled, not {other:?}"
                ));
            }
        };
        let legacy_prefix = rule.prefix.is_some() && rule.filter.is_none();
        let mut filter = LifecycleFilter::default();
        if let Some(p) = rule.prefix {
            filter.prefix = p;
        }
        if let Some(f) = rule.filter {
            if let Some(p) = f.prefix {
                filter.prefix = p;
            }
            if let Some(t) = f.tag {
                filter
                    .tags
                    .insert(t.key.unwrap_or_default(), t.value.unwrap_or_default());
            }
            filter.size_greater_than = f
                .object_size_greater_than
                .map(|n| u64::try_from(n).unwrap_or(0));
            filter.size_less_than = f
                .object_size_less_than
                .map(|n| u64::try_from(n).unwrap_or(0));
            if let Some(and) = f.and {
                if let Some(p) = and.prefix {
                    filter.prefix = p;
                }
                if let Some(tags) = and.tags {
                    filter.tags.extend(tags_from_set(tags)?);
                }
                if let Some(n) = and.object_size_greater_than {
                    filter.size_greater_than = Some(u64::try_from(n).unwrap_or(0));
                }
                if let Some(n) = and.object_size_less_than {
                    filter.size_less_than = Some(u64::try_from(n).unwrap_or(0));
                }
            }
        }
        let expiration = rule.expiration.unwrap_or_default();
        let noncurrent = rule.noncurrent_version_expiration.unwrap_or_default();
        rules.push(CoreRule {
            // S3 names a rule given without an ID.
            id: Some(rule.id.unwrap_or_else(|| {
                format!(
                    "rule-{}",
                    vallum_types::UploadId::random()
                        .to_string()
                        .get(..16)
                        .unwrap_or_default()
                )
            })),
            enabled,
            legacy_prefix,
            filter,
            expiration_days: count_in(expiration.days, "Days")?,
            expiration_date_ms: expiration.date.map(to_ms),
            expired_object_delete_marker: expiration.expired_object_delete_marker.unwrap_or(false),
            noncurrent_days: count_in(noncurrent.noncurrent_days, "NoncurrentDays")?,
            newer_noncurrent_versions: count_in(
                noncurrent.newer_noncurrent_versions,
                "NewerNoncurrentVersions",
            )?,
            abort_incomplete_days: count_in(
                rule.abort_incomplete_multipart_upload
                    .and_then(|a| a.days_after_initiation),
                "DaysAfterInitiation",
            )?,
        });
    }
    Ok(LifecycleConfig { rules })
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn lifecycle_out(config: &LifecycleConfig) -> LifecycleRules {
    config
        .rules
        .iter()
        .map(|r| {
            let f = &r.filter;
            let conditions = usize::from(!f.prefix.is_empty())
                + f.tags.len()
                + usize::from(f.size_greater_than.is_some())
                + usize::from(f.size_less_than.is_some());
            let size = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
            let filter = if conditions > 1 {
                LifecycleRuleFilter {
                    and: Some(LifecycleRuleAndOperator {
                        prefix: (!f.prefix.is_empty()).then(|| f.prefix.clone()),
                        tags: (!f.tags.is_empty()).then(|| tag_set(&f.tags)),
                        object_size_greater_than: size(f.size_greater_than),
                        object_size_less_than: size(f.size_less_than),
                    }),
                    ..Default::default()
                }
            } else {
                LifecycleRuleFilter {
                    prefix: (conditions == 0 || !f.prefix.is_empty()).then(|| f.prefix.clone()),
                    tag: tag_set(&f.tags).into_iter().next(),
                    object_size_greater_than: size(f.size_greater_than),
                    object_size_less_than: size(f.size_less_than),
                    ..Default::default()
                }
            };
            let has_expiration = r.expiration_days.is_some()
                || r.expiration_date_ms.is_some()
                || r.expired_object_delete_marker;
            LifecycleRule {
                id: r.id.clone(),
                status: ExpirationStatus::from(
                    if r.enabled {
                        ExpirationStatus::ENABLED
                    } else {
                        ExpirationStatus::DISABLED
                    }
                    .to_owned(),
                ),
                filter: (!r.legacy_prefix).then_some(filter),
                expiration: has_expiration.then(|| LifecycleExpiration {
                    days: r.expiration_days.map(to_i32),
                    date: r.expiration_date_ms.map(timestamp),
                    expired_object_delete_marker: r.expired_object_delete_marker.then_some(true),
                }),
                noncurrent_version_expiration: r.noncurrent_days.map(|d| {
                    NoncurrentVersionExpiration {
                        noncurrent_days: Some(to_i32(d)),
                        newer_noncurrent_versions: r.newer_noncurrent_versions.map(to_i32),
                    }
                }),
                abort_incomplete_multipart_upload: r.abort_incomplete_days.map(|d| {
                    AbortIncompleteMultipartUpload {
                        days_after_initiation: Some(to_i32(d)),
                    }
                }),
                prefix: r.legacy_prefix.then(|| f.prefix.clone()),
                transitions: None,
                noncurrent_version_transitions: None,
            }
        })
        .collect()
}

fn to_secs(ts: Timestamp) -> i64 {
    let dt: time::OffsetDateTime = ts.into();
    dt.unix_timestamp()
}

fn etag(value: &str) -> ETag {
    ETag::Strong(value.to_owned())
}

fn condition_etags(c: Option<ETagCondition>) -> Option<Vec<String>> {
    c.map(|c| match c {
        ETagCondition::Any => vec!["*".to_owned()],
        ETagCondition::ETag(e) => vec![e.value().to_owned()],
    })
}

fn read_conditions(
    if_match: Option<ETagCondition>,
    if_none_match: Option<ETagCondition>,
    modified_since: Option<Timestamp>,
    unmodified_since: Option<Timestamp>,
) -> ReadConditions {
    ReadConditions {
        if_match: condition_etags(if_match),
        if_none_match: condition_etags(if_none_match),
        if_modified_since_secs: modified_since.map(to_secs),
        if_unmodified_since_secs: unmodified_since.map(to_secs),
    }
}

fn checksums_in(
    crc32: &Option<String>,
    crc32c: &Option<String>,
    sha1: &Option<String>,
    sha256: &Option<String>,
) -> Checksums {
    Checksums {
        crc32: crc32.clone(),
        crc32c: crc32c.clone(),
        sha1: sha1.clone(),
        sha256: sha256.clone(),
    }
}

fn write_condition(
    if_match: Option<ETagCondition>,
    if_none_match: Option<ETagCondition>,
) -> S3Result<WriteCondition> {
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidRequest,
            "If-Match and If-None-Match cannot both be given on a write"
        )),
        (Some(ETagCondition::Any), None) => Ok(WriteCondition::IfMatch("*".into())),
        (Some(ETagCondition::ETag(e)), None) => Ok(WriteCondition::IfMatch(e.value().to_owned())),
        (None, Some(ETagCondition::Any)) => Ok(WriteCondition::IfAbsent),
        (None, Some(ETagCondition::ETag(e))) => {
            Ok(WriteCondition::IfNoneMatch(e.value().to_owned()))
        }
        (None, None) => Ok(WriteCondition::None),
    }
}

fn metadata_in(metadata: Option<Metadata>) -> std::collections::BTreeMap<String, String> {
    metadata
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

fn metadata_out(attrs: &ObjectAttrs) -> Option<Metadata> {
    if attrs.user_metadata.is_empty() {
        None
    } else {
        Some(
            attrs
                .user_metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }
}

fn algorithm(alg: Option<&ChecksumAlgorithm>) -> S3Result<Option<CoreAlgorithm>> {
    alg.map(|a| parse_checksum_algorithm(a.as_str()).map_err(to_s3))
        .transpose()
}

fn algorithm_out(alg: CoreAlgorithm) -> ChecksumAlgorithm {
    ChecksumAlgorithm::from(
        match alg {
            CoreAlgorithm::Crc32 => ChecksumAlgorithm::CRC32,
            CoreAlgorithm::Crc32c => ChecksumAlgorithm::CRC32C,
            CoreAlgorithm::Sha1 => ChecksumAlgorithm::SHA1,
            CoreAlgorithm::Sha256 => ChecksumAlgorithm::SHA256,
        }
        .to_owned(),
    )
}

/// What the request's headers say about its body.
fn body_check<T>(
    req: &S3Request<T>,
    content_length: Option<i64>,
    content_md5: Option<String>,
    checksums: Checksums,
    alg: Option<&ChecksumAlgorithm>,
    crc64: Option<&String>,
) -> S3Result<BodyCheck> {
    if crc64.is_some() {
        return Err(s3_error!(
            NotImplemented,
            "CRC64NVME checksums are not supported"
        ));
    }
    let content_length = content_length
        .map(|l| {
            u64::try_from(l).map_err(|_| s3_error!(InvalidArgument, "negative Content-Length"))
        })
        .transpose()?;
    let mut trailer_set = ChecksumSet::default();
    if let Some(trailer) = req
        .headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
    {
        for name in trailer.split(',').map(str::trim) {
            match name.to_ascii_lowercase().as_str() {
                "x-amz-checksum-crc32" => trailer_set.crc32 = true,
                "x-amz-checksum-crc32c" => trailer_set.crc32c = true,
                "x-amz-checksum-sha1" => trailer_set.sha1 = true,
                "x-amz-checksum-sha256" => trailer_set.sha256 = true,
                other => return Err(s3_error!(InvalidRequest, "unsupported trailer {other}")),
            }
        }
    }
    let trailer = req
        .trailing_headers
        .clone()
        .map(|th| -> vallum_core::digest::LateChecksums {
            Box::new(move || {
                th.read(|h| {
                    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
                    Checksums {
                        crc32: get("x-amz-checksum-crc32"),
                        crc32c: get("x-amz-checksum-crc32c"),
                        sha1: get("x-amz-checksum-sha1"),
                        sha256: get("x-amz-checksum-sha256"),
                    }
                })
                .unwrap_or_default()
            })
        });
    // s3s already checks a signed request's payload hash as the body streams (and ends it with
    // an error, not cleanly, on a mismatch: see `body_stream`); hashing it twice cost a sixth
    // of a large PUT's CPU. Only an anonymous request's hash is left to the core to check.
    let payload_sha256_hex = req
        .credentials
        .is_none()
        .then(|| req.headers.get("x-amz-content-sha256"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned);
    Ok(BodyCheck {
        content_length,
        content_md5,
        checksums,
        algorithm: algorithm(alg)?,
        trailer,
        trailer_set,
        extra: ChecksumSet::default(),
        payload_sha256_hex,
    })
}

/// `body_check` for any input with the PutObject/UploadPart body fields.
macro_rules! body_check_of {
    ($req:expr) => {
        body_check(
            &$req,
            $req.input.content_length,
            $req.input.content_md5.clone(),
            checksums_in(
                &$req.input.checksum_crc32,
                &$req.input.checksum_crc32c,
                &$req.input.checksum_sha1,
                &$req.input.checksum_sha256,
            ),
            $req.input.checksum_algorithm.as_ref(),
            $req.input.checksum_crc64nvme.as_ref(),
        )
    };
}

/// How s3s's payload-hash check (`UploadStream`, a private type) reports a body whose SHA-256
/// is not the signed `x-amz-content-sha256`; the test
/// `a_body_that_does_not_match_its_signed_hash_is_refused_and_not_stored` holds it to that.
const S3S_PAYLOAD_HASH_MISMATCH: &str = "UploadStreamError: Sha256Mismatch";

fn body_stream(body: Option<StreamingBlob>) -> vallum_core::blob::ByteStream {
    match body {
        // A body that stopped arriving stays recognisable: the client gets `RequestTimeout`.
        Some(body) => Box::pin(body.map_err(|e| {
            if crate::conn::is_body_timeout(&*e) {
                std::io::Error::new(std::io::ErrorKind::TimedOut, e)
            } else if e.to_string() == S3S_PAYLOAD_HASH_MISMATCH {
                std::io::Error::other(vallum_core::digest::PayloadHashMismatch)
            } else {
                std::io::Error::other(e)
            }
        })),
        None => Box::pin(futures::stream::empty()),
    }
}

fn checksums_enabled(mode: Option<&ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED))
}

fn checksum_type(c: &Checksums) -> Option<ChecksumType> {
    let composite = [&c.crc32, &c.crc32c, &c.sha1, &c.sha256]
        .iter()
        .any(|v| v.as_deref().is_some_and(|s| s.contains('-')));
    if c.is_empty() {
        None
    } else if composite {
        Some(ChecksumType::from(ChecksumType::COMPOSITE.to_owned()))
    } else {
        Some(ChecksumType::from(ChecksumType::FULL_OBJECT.to_owned()))
    }
}

fn copy_source(src: &CopySource) -> S3Result<(String, String, Option<String>)> {
    match src {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => Ok((
            bucket.to_string(),
            key.to_string(),
            version_id.as_deref().map(str::to_owned),
        )),
        _ => Err(s3_error!(
            NotImplemented,
            "access point and outpost copy sources are not supported"
        )),
    }
}

fn parse_copy_range(text: &str) -> S3Result<ByteRange> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last"
        )
    };
    let spec = text.strip_prefix("bytes=").ok_or_else(bad)?;
    let (first, last) = spec.split_once('-').ok_or_else(bad)?;
    let first = first.parse::<u64>().map_err(|_| bad())?;
    let last = last.parse::<u64>().map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    Ok(ByteRange::From {
        first,
        last: Some(last),
    })
}

/// S3's `encoding-type=url`: percent-encode everything but unreserved characters and '/'.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encoder(encoding: Option<&EncodingType>) -> impl Fn(String) -> String + use<> {
    let url = encoding.is_some_and(|e| e.as_str() == EncodingType::URL);
    move |s| if url { url_encode(&s) } else { s }
}

fn max_keys(v: Option<i32>) -> S3Result<usize> {
    match v {
        None => Ok(MAX_LIST_KEYS),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok(usize::try_from(n)
            .unwrap_or(MAX_LIST_KEYS)
            .min(MAX_LIST_KEYS)),
    }
}

fn attrs_from(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<Timestamp>,
    metadata: Option<Metadata>,
) -> ObjectAttrs {
    ObjectAttrs {
        content_type,
        content_encoding: content_encoding.and_then(|e| without_aws_chunked(&e)),
        content_disposition,
        content_language,
        cache_control,
        expires_ms: expires.map(to_ms),
        user_metadata: metadata_in(metadata),
    }
}

/// A Content-Encoding without `aws-chunked`, which describes only how the body was sent
/// (S3 does not store it); `None` when nothing else is left.
fn without_aws_chunked(encoding: &str) -> Option<String> {
    let tokens = encoding.split(',').map(str::trim);
    if !tokens
        .clone()
        .any(|e| e.eq_ignore_ascii_case("aws-chunked"))
    {
        // Kept exactly as the client wrote it.
        return (!encoding.is_empty()).then(|| encoding.to_owned());
    }
    let kept: Vec<&str> = tokens
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

fn content_type_out(attrs: &ObjectAttrs) -> Option<ContentType> {
    let text = attrs
        .content_type
        .as_deref()
        .unwrap_or("binary/octet-stream");
    text.parse().ok()
}

impl VallumS3 {
    /// Whether a request bypasses GOVERNANCE retention: it must carry
    /// `x-amz-bypass-governance-retention: true` *and* the caller must hold the permission.
    /// Every request that reaches this point is authenticated as the deployment's root
    /// credential, which holds the permission unless the deployment withdrew it
    /// (`object_lock.allow_governance_bypass = false`). Without the permission the header is
    /// ignored and protected versions stay protected (the request fails with AccessDenied).
    fn bypass_governance(
        &self,
        ext: &http::Extensions,
        bucket: &str,
        header: Option<bool>,
    ) -> bool {
        let asked = header.unwrap_or(false);
        if !asked {
            return false;
        }
        let permitted = self.allow_governance_bypass
            && self.allowed(ext, "s3:BypassGovernanceRetention", bucket, None);
        if !permitted {
            tracing::info!(target: "vallum::audit", event = "governance_bypass_refused", "GOVERNANCE bypass requested without the permission");
        }
        permitted
    }

    /// Whether the caller may take `action` on `bucket` (internal name) or an object in it:
    /// the decisions a handler makes itself (copy sources, multi-object deletes, bypass).
    fn allowed(
        &self,
        ext: &http::Extensions,
        action: &str,
        bucket: &str,
        key: Option<&str>,
    ) -> bool {
        let Some(caller) = ext.get::<crate::authz::Caller>() else {
            return false;
        };
        let (tenant, bucket) = vallum_core::iam::model::split_internal(bucket);
        let resource = match key {
            Some(k) => vallum_core::iam::authz::Resource::Object {
                tenant: tenant.to_owned(),
                bucket: bucket.to_owned(),
                key: k.to_owned(),
            },
            None => vallum_core::iam::authz::Resource::Bucket {
                tenant: tenant.to_owned(),
                bucket: bucket.to_owned(),
            },
        };
        self.iam
            .authorize(&caller.principal, action, &resource, &caller.facts)
            .allowed
    }

    /// The copy source of a CopyObject or UploadPartCopy, scoped to the caller's tenant and
    /// checked for read permission (the decision point checked the target already).
    fn copy_source_of(
        &self,
        ext: &http::Extensions,
        src: &CopySource,
    ) -> S3Result<(String, String, Option<String>)> {
        let (wire, key, version) = copy_source(src)?;
        let bucket = crate::authz::internal(ext, &wire)?;
        let action = if version.is_some() {
            "s3:GetObjectVersion"
        } else {
            "s3:GetObject"
        };
        if !self.allowed(ext, action, &bucket, Some(&key)) {
            return Err(s3_error!(
                AccessDenied,
                "Access Denied (reading the copy source)"
            ));
        }
        Ok((bucket, key, version))
    }

    /// The internal name of an existing bucket the caller addresses as `wire` (the policy and
    /// public access block operations).
    /// [`scoped`], for the access-control handlers (bucket policy, public access block): the
    /// bucket must exist, and its access-control record is the identity service's.
    async fn access_scoped<T: BucketInput>(
        &self,
        req: S3Request<T>,
    ) -> S3Result<(S3Request<T>, RequestContext)> {
        let (mut req, ctx) = scoped(req)?;
        self.service
            .bucket(req.input.bucket_mut())
            .await
            .map_err(to_s3)?;
        Ok((req, ctx))
    }

    /// The access-control record (policy, public access block) of the bucket a request names.
    async fn access_record_of<T: BucketInput>(
        &self,
        req: S3Request<T>,
    ) -> S3Result<(String, vallum_core::iam::BucketPolicyRecord)> {
        let (mut req, _) = self.access_scoped(req).await?;
        let bucket = std::mem::take(req.input.bucket_mut());
        let record = self
            .iam
            .bucket_record(&bucket)
            .await
            .map_err(crate::error::iam_to_s3)?;
        Ok((bucket, record))
    }

    fn owner_of(&self, ext: &http::Extensions) -> Owner {
        let tenant = ext
            .get::<crate::authz::Caller>()
            .and_then(|c| c.principal.namespace().map(str::to_owned));
        match tenant {
            Some(t) if t != vallum_core::iam::model::DEFAULT_TENANT => Owner {
                display_name: Some(t.clone()),
                id: Some(t),
            },
            _ => self.owner.clone(),
        }
    }

    /// A listing page's objects and common prefixes as S3 lists them (absent when empty), keys
    /// encoded by `enc`.
    fn listing_out(
        &self,
        objects: Vec<vallum_core::meta::ObjectSummary>,
        common_prefixes: Vec<String>,
        fetch_owner: bool,
        enc: &impl Fn(String) -> String,
    ) -> (Option<Vec<Object>>, Option<Vec<CommonPrefix>>) {
        let contents: Vec<Object> = objects
            .into_iter()
            .map(|o| self.object_summary(o, fetch_owner, enc))
            .collect();
        let prefixes: Vec<CommonPrefix> = common_prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc(p)),
            })
            .collect();
        (
            (!contents.is_empty()).then_some(contents),
            (!prefixes.is_empty()).then_some(prefixes),
        )
    }

    fn object_summary(
        &self,
        o: vallum_core::meta::ObjectSummary,
        fetch_owner: bool,
        enc: &impl Fn(String) -> String,
    ) -> Object {
        Object {
            key: Some(enc(o.key)),
            size: Some(i64::try_from(o.size_bytes).unwrap_or(i64::MAX)),
            e_tag: Some(etag(&o.etag)),
            last_modified: Some(timestamp(o.last_modified_ms)),
            storage_class: Some(ObjectStorageClass::from(
                ObjectStorageClass::STANDARD.to_owned(),
            )),
            owner: fetch_owner.then(|| self.owner.clone()),
            ..Default::default()
        }
    }
}

macro_rules! head_fields {
    ($obj:expr, $with_checksums:expr) => {{
        let o: &ObjectRecord = $obj;
        let sums = if $with_checksums {
            o.checksums.clone()
        } else {
            Checksums::default()
        };
        (
            Some(etag(&o.etag)),
            Some(timestamp(o.last_modified_ms)),
            content_type_out(&o.attrs),
            metadata_out(&o.attrs),
            o.attrs.expires_ms.map(timestamp),
            checksum_type(&sums),
            sums,
        )
    }};
}

#[async_trait::async_trait]
impl S3 for VallumS3 {
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> R<ListBucketsOutput> {
        let tenant = req
            .extensions
            .get::<crate::authz::Caller>()
            .map(|c| c.tenant.clone())
            .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"))?;
        let buckets = self.service.list_buckets().await.map_err(to_s3)?;
        // Only the caller's own tenant's buckets: no other tenant's name is ever listed.
        let buckets = buckets
            .into_iter()
            .filter_map(|b| {
                let (t, local) = vallum_core::iam::model::split_internal(&b.name);
                let local = (t == tenant).then(|| local.to_owned());
                local.map(|l| (l, b))
            })
            .map(|(local, b)| Bucket {
                name: Some(local),
                creation_date: Some(timestamp(b.created_ms)),
                bucket_region: Some(b.location),
            })
            .collect();
        ok(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(self.owner_of(&req.extensions)),
            ..Default::default()
        })
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> R<CreateBucketOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let input = req.input;
        if let Some(constraint) = input
            .create_bucket_configuration
            .as_ref()
            .and_then(|c| c.location_constraint.as_ref())
            && constraint.as_str() != self.region
        {
            return Err(s3_error!(
                InvalidLocationConstraint,
                "The specified location-constraint {} is not valid for this endpoint, whose region is {}",
                constraint.as_str(),
                self.region
            ));
        }
        // With global names the name is claimed first: another tenant's is taken.
        let (tenant, bare) = vallum_core::iam::model::split_internal(&input.bucket);
        if let Some(names) = &self.names
            && !names
                .claim(tenant, bare)
                .await
                .map_err(|e| to_s3(e.into()))?
        {
            return Err(s3_error!(
                BucketAlreadyExists,
                "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."
            ));
        }
        let created = if input.object_lock_enabled_for_bucket == Some(true) {
            self.service.create_locked_bucket(ctx, &input.bucket).await
        } else {
            self.service.create_bucket(ctx, &input.bucket).await
        };
        if let (Err(_), Some(names)) = (&created, &self.names) {
            // A bucket that was not made keeps no claim (release checks it does not exist).
            names
                .release(tenant, bare)
                .await
                .map_err(|e| to_s3(e.into()))?;
        }
        match created {
            // us-east-1 keeps S3's legacy answer to re-creating one's own bucket: 200, and
            // nothing changes (its objects, policy and settings stay).
            Err(vallum_core::Error::BucketAlreadyOwnedByYou) if self.region == "us-east-1" => {
                return ok(CreateBucketOutput {
                    location: Some(format!(
                        "/{}",
                        crate::authz::wire_name(&req.extensions, &input.bucket)
                    )),
                });
            }
            other => {
                other.map_err(to_s3)?;
            }
        }
        // A policy left by an earlier bucket of the same name does not carry over.
        self.iam
            .forget_bucket(&input.bucket)
            .await
            .map_err(crate::error::iam_to_s3)?;
        ok(CreateBucketOutput {
            location: Some(format!(
                "/{}",
                crate::authz::wire_name(&req.extensions, &input.bucket)
            )),
        })
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> R<HeadBucketOutput> {
        let bucket = self.bucket_of(req).await?;
        ok(HeadBucketOutput {
            bucket_region: Some(bucket.location),
            ..Default::default()
        })
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> R<DeleteBucketOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        self.service
            .delete_bucket(ctx, &req.input.bucket)
            .await
            .map_err(to_s3)?;
        self.forget_lifecycle(&req.input.bucket);
        if let Some(names) = &self.names {
            let (tenant, bare) = vallum_core::iam::model::split_internal(&req.input.bucket);
            names
                .release(tenant, bare)
                .await
                .map_err(|e| to_s3(e.into()))?;
        }
        self.iam
            .forget_bucket(&req.input.bucket)
            .await
            .map_err(crate::error::iam_to_s3)?;
        ok(DeleteBucketOutput {})
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> R<GetBucketLocationOutput> {
        let bucket = self.bucket_of(req).await?;
        // S3 reports us-east-1 as an empty location constraint.
        let location = (bucket.location != "us-east-1")
            .then(|| BucketLocationConstraint::from(bucket.location));
        ok(GetBucketLocationOutput {
            location_constraint: location,
        })
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> R<PutObjectOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let tls = secure(&req);
        let check = body_check_of!(req)?;
        let input = req.input;
        let ck = customer_key_of(tls, &input)?;
        let condition = write_condition(input.if_match, input.if_none_match)?;
        let attrs = attrs_from(
            input.content_type.map(|c| c.to_string()),
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires,
            input.metadata,
        );
        let ck_md5 = input.sse_customer_key_md5.clone();
        let sse = sse_request(
            input.server_side_encryption.as_ref(),
            input.ssekms_key_id,
            ck,
        )?;
        let put = PutObject {
            bucket: input.bucket,
            key: input.key,
            attrs,
            check,
            condition,
            sse,
            tags: tags_from_header(input.tagging.as_deref())?,
            lock: lock_request(
                input.object_lock_mode.as_ref(),
                input.object_lock_retain_until_date,
                input.object_lock_legal_hold_status.as_ref(),
            )?,
        };
        let record = self
            .service
            .put_object(ctx, put, body_stream(input.body))
            .await
            .map_err(to_s3)?;
        let sums = record.checksums.clone();
        let (server_side_encryption, ssekms_key_id) = sse_out(record.encryption.as_ref());
        let (sse_customer_algorithm, sse_customer_key_md5) =
            ssec_out(record.encryption.as_ref(), ck_md5);
        ok(PutObjectOutput {
            server_side_encryption,
            ssekms_key_id,
            sse_customer_algorithm,
            sse_customer_key_md5,
            e_tag: Some(etag(&record.etag)),
            checksum_type: checksum_type(&sums),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            size: i64::try_from(record.size_bytes).ok(),
            version_id: version_out(&record.version_id, false),
            expiration: self.expiration(&record).await,
            ..Default::default()
        })
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> R<GetObjectOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let tls = secure(&req);
        no_sse_on_read(&req.headers)?;
        let input = req.input;
        let ck = customer_key_of(tls, &input)?;
        let ctx = &ctx.clone().with_customer_keys(CustomerKeys {
            target: ck,
            source: None,
        });
        let ck_md5 = input.sse_customer_key_md5.clone();
        let conditions = read_conditions(
            input.if_match,
            input.if_none_match,
            input.if_modified_since,
            input.if_unmodified_since,
        );
        let mut range = input.range.map(|r| match r {
            Range::Int { first, last } => ByteRange::From { first, last },
            Range::Suffix { length } => ByteRange::Suffix(length),
        });
        let mut version_id = input.version_id.clone();
        if let Some(n) = input.part_number {
            if range.is_some() {
                return Err(s3_error!(
                    InvalidRequest,
                    "Cannot specify both Range header and partNumber query parameter"
                ));
            }
            // The part's bytes of the version the key names now (read again by id below,
            // so a concurrent overwrite cannot mix two versions).
            let object = self
                .service
                .head_object(&input.bucket, &input.key, version_id.as_deref())
                .await
                .map_err(to_s3)?;
            range = part_range(&object, n)?;
            version_id = Some(object.version_id);
        }
        let read = self
            .service
            .get_object(
                ctx,
                &input.bucket,
                &input.key,
                version_id.as_deref(),
                range,
                &conditions,
            )
            .await
            .map_err(to_s3)?;
        let len = read.range.end - read.range.start;
        let whole = !read.partial;
        let (e_tag, last_modified, content_type, metadata, expires, checksum_type, sums) = head_fields!(
            &read.object,
            whole && checksums_enabled(input.checksum_mode.as_ref())
        );
        let attrs = &read.object.attrs;
        let content_range = read.partial.then(|| {
            format!(
                "bytes {}-{}/{}",
                read.range.start,
                read.range.end.saturating_sub(1),
                read.object.size_bytes
            )
        });
        let (object_lock_mode, object_lock_retain_until_date, object_lock_legal_hold_status) =
            lock_out(&read.object.lock, read.object.lock.legal_hold);
        let (server_side_encryption, ssekms_key_id) = sse_out(read.object.encryption.as_ref());
        let (sse_customer_algorithm, sse_customer_key_md5) =
            ssec_out(read.object.encryption.as_ref(), ck_md5);
        ok(GetObjectOutput {
            server_side_encryption,
            ssekms_key_id,
            sse_customer_algorithm,
            sse_customer_key_md5,
            version_id: version_out(&read.object.version_id, input.version_id.is_some()),
            tag_count: (!read.object.tags.is_empty())
                .then(|| i32::try_from(read.object.tags.len()).unwrap_or(i32::MAX)),
            object_lock_mode,
            object_lock_retain_until_date,
            object_lock_legal_hold_status,
            expiration: self.expiration(&read.object).await,
            body: Some(StreamingBlob::wrap(sync_wrapper::SyncStream::new(
                read.body,
            ))),
            content_length: i64::try_from(len).ok(),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag,
            last_modified,
            content_type,
            metadata,
            expires,
            content_encoding: attrs.content_encoding.clone(),
            content_disposition: attrs.content_disposition.clone(),
            content_language: attrs.content_language.clone(),
            cache_control: attrs.cache_control.clone(),
            parts_count: read.object.parts_count.and_then(|n| i32::try_from(n).ok()),
            checksum_type,
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            ..Default::default()
        })
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> R<HeadObjectOutput> {
        let (req, _) = scoped(req)?;
        let tls = secure(&req);
        no_sse_on_read(&req.headers)?;
        let input = req.input;
        let ck = customer_key_of(tls, &input)?;
        let ck_md5 = input.sse_customer_key_md5.clone();
        let object = self
            .service
            .head_object(&input.bucket, &input.key, input.version_id.as_deref())
            .await
            .map_err(to_s3)?;
        vallum_core::service::check_customer_key(object.encryption.as_ref(), ck.as_ref())
            .map_err(to_s3)?;
        let conditions = read_conditions(
            input.if_match,
            input.if_none_match,
            input.if_modified_since,
            input.if_unmodified_since,
        );
        conditions.check(&object, false).map_err(to_s3)?;
        let range = match input.part_number {
            Some(n) => part_range(&object, n)?,
            None => input.range.map(|r| match r {
                Range::Int { first, last } => ByteRange::From { first, last },
                Range::Suffix { length } => ByteRange::Suffix(length),
            }),
        };
        let (content_length, content_range) = match range {
            Some(r) => {
                let span = r.resolve(object.size_bytes).map_err(to_s3)?;
                (
                    span.end - span.start,
                    Some(format!(
                        "bytes {}-{}/{}",
                        span.start,
                        span.end.saturating_sub(1),
                        object.size_bytes
                    )),
                )
            }
            None => (object.size_bytes, None),
        };
        let (e_tag, last_modified, content_type, metadata, expires, checksum_type, sums) =
            head_fields!(&object, checksums_enabled(input.checksum_mode.as_ref()));
        let (object_lock_mode, object_lock_retain_until_date, object_lock_legal_hold_status) =
            lock_out(&object.lock, object.lock.legal_hold);
        let (server_side_encryption, ssekms_key_id) = sse_out(object.encryption.as_ref());
        let (sse_customer_algorithm, sse_customer_key_md5) =
            ssec_out(object.encryption.as_ref(), ck_md5);
        let tag_count = object.tags.len();
        let mut resp = S3Response::new(HeadObjectOutput {
            server_side_encryption,
            ssekms_key_id,
            sse_customer_algorithm,
            sse_customer_key_md5,
            version_id: version_out(&object.version_id, input.version_id.is_some()),
            object_lock_mode,
            object_lock_retain_until_date,
            object_lock_legal_hold_status,
            expiration: self.expiration(&object).await,
            content_length: i64::try_from(content_length).ok(),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag,
            last_modified,
            content_type,
            metadata,
            expires,
            content_encoding: object.attrs.content_encoding.clone(),
            content_disposition: object.attrs.content_disposition.clone(),
            content_language: object.attrs.content_language.clone(),
            cache_control: object.attrs.cache_control.clone(),
            parts_count: object.parts_count.and_then(|n| i32::try_from(n).ok()),
            checksum_type,
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            ..Default::default()
        });
        // HeadObjectOutput has no field for it; GET's tag count is on HEAD too, as in S3.
        if tag_count > 0 {
            resp.headers
                .insert("x-amz-tagging-count", http::HeaderValue::from(tag_count));
        }
        Ok(resp)
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> R<GetObjectAttributesOutput> {
        let (req, _) = scoped(req)?;
        let tls = secure(&req);
        let input = req.input;
        let ck = customer_key_of(tls, &input)?;
        let object = self
            .service
            .head_object(&input.bucket, &input.key, input.version_id.as_deref())
            .await
            .map_err(to_s3)?;
        vallum_core::service::check_customer_key(object.encryption.as_ref(), ck.as_ref())
            .map_err(to_s3)?;
        // One header value lists them comma-separated (or the header repeats).
        let wanted = |name: &str| {
            input
                .object_attributes
                .iter()
                .flat_map(|a| a.as_str().split(','))
                .any(|a| a.trim() == name)
        };
        let sums = &object.checksums;
        let checksum = (wanted(ObjectAttributes::CHECKSUM) && !sums.is_empty()).then(|| Checksum {
            checksum_crc32: sums.crc32.clone(),
            checksum_crc32c: sums.crc32c.clone(),
            checksum_sha1: sums.sha1.clone(),
            checksum_sha256: sums.sha256.clone(),
            checksum_type: checksum_type(sums),
            ..Default::default()
        });
        let object_parts = match object.parts_count {
            Some(count) if wanted(ObjectAttributes::OBJECT_PARTS) => {
                let marker = input
                    .part_number_marker
                    .and_then(|m| usize::try_from(m).ok())
                    .unwrap_or(0);
                let max = input
                    .max_parts
                    .and_then(|m| usize::try_from(m).ok())
                    .unwrap_or(MAX_LIST_KEYS)
                    .min(MAX_LIST_KEYS);
                let parts: Vec<ObjectPart> = object
                    .segments
                    .iter()
                    .enumerate()
                    .skip(marker)
                    .take(max)
                    .map(|(i, segment)| ObjectPart {
                        part_number: i32::try_from(i + 1).ok(),
                        size: i64::try_from(segment.size_bytes).ok(),
                        ..Default::default()
                    })
                    .collect();
                let last = parts.last().and_then(|p| p.part_number);
                let truncated = marker + parts.len() < object.segments.len();
                Some(GetObjectAttributesParts {
                    total_parts_count: i32::try_from(count).ok(),
                    part_number_marker: input.part_number_marker,
                    max_parts: i32::try_from(max).ok(),
                    is_truncated: Some(truncated),
                    next_part_number_marker: if truncated { last } else { None },
                    parts: Some(parts),
                })
            }
            _ => None,
        };
        ok(GetObjectAttributesOutput {
            e_tag: wanted(ObjectAttributes::ETAG).then(|| etag(&object.etag)),
            last_modified: Some(timestamp(object.last_modified_ms)),
            object_size: wanted(ObjectAttributes::OBJECT_SIZE)
                .then(|| i64::try_from(object.size_bytes).unwrap_or(i64::MAX)),
            storage_class: wanted(ObjectAttributes::STORAGE_CLASS)
                .then(|| StorageClass::from_static(StorageClass::STANDARD)),
            version_id: version_out(&object.version_id, input.version_id.is_some()),
            checksum,
            object_parts,
            ..Default::default()
        })
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> R<DeleteObjectOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let input = req.input;
        let result = self
            .service
            .delete_object(
                ctx,
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                self.bypass_governance(
                    &req.extensions,
                    &input.bucket,
                    input.bypass_governance_retention,
                ),
            )
            .await
            .map_err(to_s3)?;
        no_content(DeleteObjectOutput {
            delete_marker: result.delete_marker.then_some(true),
            version_id: result
                .version_id
                .as_deref()
                .and_then(|v| version_out(v, input.version_id.is_some() || result.delete_marker)),
            ..Default::default()
        })
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> R<DeleteObjectsOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let input = req.input;
        if input.delete.objects.len() > MAX_DELETE_OBJECTS {
            return Err(s3_error!(
                MalformedXML,
                "a DeleteObjects request may name at most {MAX_DELETE_OBJECTS} keys"
            ));
        }
        if input.delete.objects.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "a DeleteObjects request must name at least one key"
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        // Each key is a decision of its own (a policy may protect some prefixes only).
        let mut errors = Vec::new();
        let entries: Vec<(String, Option<String>)> = input
            .delete
            .objects
            .into_iter()
            .map(|o| (o.key, o.version_id))
            .filter(|(key, version)| {
                let action = if version.is_some() {
                    "s3:DeleteObjectVersion"
                } else {
                    "s3:DeleteObject"
                };
                let ok = self.allowed(&req.extensions, action, &input.bucket, Some(key));
                if !ok {
                    errors.push(Error {
                        key: Some(key.clone()),
                        code: Some("AccessDenied".into()),
                        message: Some("Access Denied".into()),
                        version_id: version.clone(),
                    });
                }
                ok
            })
            .collect();
        let outcomes = if entries.is_empty() {
            Vec::new()
        } else {
            self.service
                .delete_objects(
                    ctx,
                    &input.bucket,
                    entries,
                    self.bypass_governance(
                        &req.extensions,
                        &input.bucket,
                        input.bypass_governance_retention,
                    ),
                )
                .await
                .map_err(to_s3)?
        };
        let mut deleted = Vec::new();
        for outcome in outcomes {
            match outcome.result {
                Ok(result) if !quiet => {
                    let named = outcome.version_id.is_some();
                    let (version_id, delete_marker_version_id) = if named {
                        (outcome.version_id, None)
                    } else if result.delete_marker {
                        (None, result.version_id)
                    } else {
                        (None, None)
                    };
                    deleted.push(DeletedObject {
                        key: Some(outcome.key),
                        version_id,
                        delete_marker: result.delete_marker.then_some(true),
                        delete_marker_version_id,
                    });
                }
                Ok(_) => {}
                Err(err) => {
                    let s3 = to_s3(err);
                    errors.push(Error {
                        key: Some(outcome.key),
                        code: Some(s3.code().as_str().to_owned()),
                        message: s3.message().map(str::to_owned),
                        version_id: outcome.version_id,
                    });
                }
            }
        }
        ok(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        })
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> R<CopyObjectOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let tls = secure(&req);
        let input = req.input;
        let ck = customer_key_of(tls, &input)?;
        let source_ck = customer_key_of(tls, &CopySourceKey(&input))?;
        let ctx = &ctx.clone().with_customer_keys(CustomerKeys {
            target: None,
            source: source_ck,
        });
        let ck_md5 = input.sse_customer_key_md5.clone();
        let sse = sse_request(
            input.server_side_encryption.as_ref(),
            input.ssekms_key_id.clone(),
            ck,
        )?;
        let (src_bucket, src_key, src_version) =
            self.copy_source_of(&req.extensions, &input.copy_source)?;
        let replace_tags = match input
            .tagging_directive
            .as_ref()
            .map(TaggingDirective::as_str)
        {
            Some("REPLACE") => Some(tags_from_header(input.tagging.as_deref())?),
            None | Some("COPY") => None,
            Some(other) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Unknown tagging directive {other}: use COPY or REPLACE"
                ));
            }
        };
        let lock = lock_request(
            input.object_lock_mode.as_ref(),
            input.object_lock_retain_until_date,
            input.object_lock_legal_hold_status.as_ref(),
        )?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let replace_attrs = replace.then(|| {
            attrs_from(
                input.content_type.map(|c| c.to_string()),
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.expires,
                input.metadata,
            )
        });
        let req = CopyObject {
            src_version: src_version.clone(),
            replace_tags,
            lock,
            src_bucket,
            src_key,
            src_conditions: read_conditions(
                input.copy_source_if_match,
                input.copy_source_if_none_match,
                input.copy_source_if_modified_since,
                input.copy_source_if_unmodified_since,
            ),
            bucket: input.bucket,
            key: input.key,
            replace_attrs,
            condition: WriteCondition::None,
            sse,
        };
        let record = self.service.copy_object(ctx, req).await.map_err(to_s3)?;
        let sums = record.checksums;
        let (server_side_encryption, ssekms_key_id) = sse_out(record.encryption.as_ref());
        let (sse_customer_algorithm, sse_customer_key_md5) =
            ssec_out(record.encryption.as_ref(), ck_md5);
        ok(CopyObjectOutput {
            server_side_encryption,
            ssekms_key_id,
            sse_customer_algorithm,
            sse_customer_key_md5,
            version_id: version_out(&record.version_id, false),
            copy_source_version_id: src_version,
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&record.etag)),
                last_modified: Some(timestamp(record.last_modified_ms)),
                checksum_type: checksum_type(&sums),
                checksum_crc32: sums.crc32,
                checksum_crc32c: sums.crc32c,
                checksum_sha1: sums.sha1,
                checksum_sha256: sums.sha256,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> R<ListObjectsV2Output> {
        let (req, _) = scoped(req)?;
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        // An empty delimiter is none (and is not echoed), as in S3.
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let start = match (&input.continuation_token, &input.start_after) {
            // An empty token starts at the beginning, as no token does.
            (Some(token), _) if !token.is_empty() => {
                Some(ListMarker::from_token(token).map_err(to_s3)?)
            }
            (None, Some(after)) if !after.is_empty() => Some(ListMarker::from_client(
                after,
                &prefix,
                delimiter.as_deref(),
            )),
            _ => None,
        };
        let max = max_keys(input.max_keys)?;
        let page = self
            .service
            .list_objects(&input.bucket, &prefix, delimiter.as_deref(), start, max)
            .await
            .map_err(to_s3)?;
        let enc = encoder(input.encoding_type.as_ref());
        let fetch_owner = input.fetch_owner.unwrap_or(false);
        let key_count =
            i32::try_from(page.objects.len() + page.common_prefixes.len()).unwrap_or(i32::MAX);
        let (contents, common_prefixes) =
            self.listing_out(page.objects, page.common_prefixes, fetch_owner, &enc);
        ok(ListObjectsV2Output {
            name: Some(crate::authz::wire_name(&req.extensions, &input.bucket)),
            prefix: Some(enc(prefix)),
            delimiter: delimiter.map(&enc),
            start_after: input.start_after.map(&enc),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next.as_ref().map(ListMarker::to_token),
            key_count: Some(key_count),
            max_keys: Some(i32::try_from(max).unwrap_or(i32::MAX)),
            is_truncated: Some(page.truncated),
            contents,
            common_prefixes,
            encoding_type: input.encoding_type,
            ..Default::default()
        })
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> R<ListObjectsOutput> {
        let (req, _) = scoped(req)?;
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let start = input
            .marker
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(|m| ListMarker::from_client(m, &prefix, delimiter.as_deref()));
        let max = max_keys(input.max_keys)?;
        let page = self
            .service
            .list_objects(&input.bucket, &prefix, delimiter.as_deref(), start, max)
            .await
            .map_err(to_s3)?;
        let enc = encoder(input.encoding_type.as_ref());
        // S3 returns NextMarker only when a delimiter was given; clients use the last key otherwise.
        let next_marker = if delimiter.is_some() {
            page.next.as_ref().map(|m| enc(m.text().to_owned()))
        } else {
            None
        };
        let (contents, common_prefixes) =
            self.listing_out(page.objects, page.common_prefixes, true, &enc);
        ok(ListObjectsOutput {
            name: Some(crate::authz::wire_name(&req.extensions, &input.bucket)),
            prefix: Some(enc(prefix)),
            delimiter: delimiter.map(&enc),
            marker: Some(input.marker.map(&enc).unwrap_or_default()),
            next_marker,
            max_keys: Some(i32::try_from(max).unwrap_or(i32::MAX)),
            is_truncated: Some(page.truncated),
            contents,
            common_prefixes,
            encoding_type: input.encoding_type,
            ..Default::default()
        })
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> R<CreateMultipartUploadOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let tls = secure(&req);
        let input = req.input;
        let ck = customer_key_of(tls, &input)?;
        let ck_md5 = input.sse_customer_key_md5.clone();
        let alg = algorithm(input.checksum_algorithm.as_ref())?;
        let attrs = attrs_from(
            input.content_type.map(|c| c.to_string()),
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires,
            input.metadata,
        );
        let tags = tags_from_header(input.tagging.as_deref())?;
        let lock = lock_request(
            input.object_lock_mode.as_ref(),
            input.object_lock_retain_until_date,
            input.object_lock_legal_hold_status.as_ref(),
        )?;
        let sse = sse_request(
            input.server_side_encryption.as_ref(),
            input.ssekms_key_id,
            ck,
        )?;
        let upload = self
            .service
            .create_upload(
                ctx,
                &input.bucket,
                &input.key,
                vallum_core::multipart::NewUpload {
                    attrs,
                    algorithm: alg,
                    tags,
                    lock,
                    sse,
                },
            )
            .await
            .map_err(to_s3)?;
        let (server_side_encryption, ssekms_key_id) = sse_out(upload.encryption.as_ref());
        let (sse_customer_algorithm, sse_customer_key_md5) =
            ssec_out(upload.encryption.as_ref(), ck_md5);
        ok(CreateMultipartUploadOutput {
            server_side_encryption,
            ssekms_key_id,
            sse_customer_algorithm,
            sse_customer_key_md5,
            bucket: Some(crate::authz::wire_name(&req.extensions, &upload.bucket)),
            key: Some(upload.key),
            upload_id: Some(upload.upload_id.to_string()),
            checksum_algorithm: alg.map(algorithm_out),
            ..Default::default()
        })
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> R<UploadPartOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let tls = secure(&req);
        let check = body_check_of!(req)?;
        let input = req.input;
        let ck = customer_key_of(tls, &input)?;
        let ck_md5 = input.sse_customer_key_md5.clone();
        let ctx = &ctx.clone().with_customer_keys(CustomerKeys {
            target: ck,
            source: None,
        });
        let part = self
            .service
            .upload_part(
                ctx,
                &input.bucket,
                &input.key,
                &input.upload_id,
                i64::from(input.part_number),
                check,
                body_stream(input.body),
            )
            .await
            .map_err(to_s3)?;
        let sums = part.checksums;
        let (server_side_encryption, ssekms_key_id, sse_customer_algorithm, sse_customer_key_md5) =
            self.upload_sse(&input.bucket, &input.key, &input.upload_id, ck_md5)
                .await?;
        ok(UploadPartOutput {
            server_side_encryption,
            ssekms_key_id,
            sse_customer_algorithm,
            sse_customer_key_md5,
            e_tag: Some(etag(&part.etag)),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            ..Default::default()
        })
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> R<UploadPartCopyOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let tls = secure(&req);
        let input = req.input;
        let target = customer_key_of(tls, &input)?;
        let source = customer_key_of(tls, &CopySourceKey(&input))?;
        let ck_md5 = input.sse_customer_key_md5.clone();
        let ctx = &ctx
            .clone()
            .with_customer_keys(CustomerKeys { target, source });
        let (src_bucket, src_key, src_version) =
            self.copy_source_of(&req.extensions, &input.copy_source)?;
        let range = input
            .copy_source_range
            .as_deref()
            .map(parse_copy_range)
            .transpose()?;
        let conditions = read_conditions(
            input.copy_source_if_match,
            input.copy_source_if_none_match,
            input.copy_source_if_modified_since,
            input.copy_source_if_unmodified_since,
        );
        let (part, _) = self
            .service
            .upload_part_copy(
                ctx,
                &input.bucket,
                &input.key,
                &input.upload_id,
                i64::from(input.part_number),
                &src_bucket,
                &src_key,
                src_version.as_deref(),
                range,
                &conditions,
            )
            .await
            .map_err(to_s3)?;
        let sums = part.checksums;
        let (server_side_encryption, ssekms_key_id, sse_customer_algorithm, sse_customer_key_md5) =
            self.upload_sse(&input.bucket, &input.key, &input.upload_id, ck_md5)
                .await?;
        ok(UploadPartCopyOutput {
            server_side_encryption,
            ssekms_key_id,
            sse_customer_algorithm,
            sse_customer_key_md5,
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag(&part.etag)),
                last_modified: Some(timestamp(part.last_modified_ms)),
                checksum_crc32: sums.crc32,
                checksum_crc32c: sums.crc32c,
                checksum_sha1: sums.sha1,
                checksum_sha256: sums.sha256,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> R<CompleteMultipartUploadOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let input = req.input;
        let condition = write_condition(input.if_match, input.if_none_match)?;
        let parts = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let number = p
                    .part_number
                    .ok_or_else(|| s3_error!(MalformedXML, "every Part needs a PartNumber"))?;
                let etag = p
                    .e_tag
                    .ok_or_else(|| s3_error!(MalformedXML, "every Part needs an ETag"))?;
                Ok(CorePart {
                    part_number: u32::try_from(number)
                        .map_err(|_| s3_error!(InvalidPart, "part numbers are positive"))?,
                    etag: etag.value().to_owned(),
                    checksums: Checksums {
                        crc32: p.checksum_crc32,
                        crc32c: p.checksum_crc32c,
                        sha1: p.checksum_sha1,
                        sha256: p.checksum_sha256,
                    },
                })
            })
            .collect::<S3Result<Vec<_>>>()?;
        let object = self
            .service
            .complete_upload(
                ctx,
                &input.bucket,
                &input.key,
                &input.upload_id,
                &parts,
                &condition,
            )
            .await
            .map_err(to_s3)?;
        let sums = object.checksums;
        let (server_side_encryption, ssekms_key_id) = sse_out(object.encryption.as_ref());
        ok(CompleteMultipartUploadOutput {
            server_side_encryption,
            ssekms_key_id,
            bucket: Some(crate::authz::wire_name(&req.extensions, &object.bucket)),
            key: Some(object.key.clone()),
            location: Some(format!("/{}/{}", object.bucket, object.key)),
            e_tag: Some(etag(&object.etag)),
            version_id: version_out(&object.version_id, false),
            checksum_type: checksum_type(&sums),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            ..Default::default()
        })
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> R<AbortMultipartUploadOutput> {
        let (req, _) = scoped(req)?;
        let input = req.input;
        self.service
            .abort_upload(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(to_s3)?;
        no_content(AbortMultipartUploadOutput::default())
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> R<ListPartsOutput> {
        let (req, _) = scoped(req)?;
        let input = req.input;
        let marker = u32::try_from(input.part_number_marker.unwrap_or(0))
            .map_err(|_| s3_error!(InvalidArgument, "part-number-marker must not be negative"))?;
        let max = max_keys(input.max_parts)?;
        let (upload, page) = self
            .service
            .list_parts(&input.bucket, &input.key, &input.upload_id, marker, max)
            .await
            .map_err(to_s3)?;
        let parts = page
            .parts
            .into_iter()
            .map(|p| Part {
                part_number: i32::try_from(p.part_number).ok(),
                e_tag: Some(etag(&p.etag)),
                size: i64::try_from(p.size_bytes).ok(),
                last_modified: Some(timestamp(p.last_modified_ms)),
                checksum_crc32: p.checksums.crc32,
                checksum_crc32c: p.checksums.crc32c,
                checksum_sha1: p.checksums.sha1,
                checksum_sha256: p.checksums.sha256,
                ..Default::default()
            })
            .collect();
        ok(ListPartsOutput {
            bucket: Some(crate::authz::wire_name(&req.extensions, &upload.bucket)),
            key: Some(upload.key),
            upload_id: Some(input.upload_id),
            part_number_marker: i32::try_from(marker).ok(),
            next_part_number_marker: page.next_marker.and_then(|n| i32::try_from(n).ok()),
            max_parts: i32::try_from(max).ok(),
            is_truncated: Some(page.truncated),
            parts: Some(parts),
            owner: Some(self.owner.clone()),
            initiator: Some(Initiator {
                display_name: self.owner.display_name.clone(),
                id: self.owner.id.clone(),
            }),
            storage_class: Some(StorageClass::from(StorageClass::STANDARD.to_owned())),
            checksum_algorithm: upload.checksum_algorithm.map(algorithm_out),
            ..Default::default()
        })
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> R<ListMultipartUploadsOutput> {
        let (req, _) = scoped(req)?;
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let max = max_keys(input.max_uploads)?;
        let page = self
            .service
            .list_uploads(
                &input.bucket,
                &prefix,
                input.delimiter.as_deref(),
                &key_marker,
                input.upload_id_marker.as_deref(),
                max,
            )
            .await
            .map_err(to_s3)?;
        let enc = encoder(input.encoding_type.as_ref());
        let uploads = page
            .uploads
            .into_iter()
            .map(|u| MultipartUpload {
                key: Some(enc(u.key)),
                upload_id: Some(u.upload_id.to_string()),
                initiated: Some(timestamp(u.initiated_ms)),
                owner: Some(self.owner.clone()),
                initiator: Some(Initiator {
                    display_name: self.owner.display_name.clone(),
                    id: self.owner.id.clone(),
                }),
                storage_class: Some(StorageClass::from(StorageClass::STANDARD.to_owned())),
                checksum_algorithm: u.checksum_algorithm.map(algorithm_out),
                ..Default::default()
            })
            .collect();
        let prefixes: Vec<CommonPrefix> = page
            .common_prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc(p)),
            })
            .collect();
        ok(ListMultipartUploadsOutput {
            bucket: Some(crate::authz::wire_name(&req.extensions, &input.bucket)),
            prefix: Some(enc(prefix)),
            delimiter: input.delimiter.map(&enc),
            key_marker: Some(enc(key_marker)),
            upload_id_marker: input.upload_id_marker,
            next_key_marker: page.next_key_marker.map(&enc),
            next_upload_id_marker: page.next_upload_id_marker.map(|u| u.to_string()),
            max_uploads: i32::try_from(max).ok(),
            is_truncated: Some(page.truncated),
            uploads: Some(uploads),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        })
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> R<GetBucketVersioningOutput> {
        let bucket = self.bucket_of(req).await?;
        let status = match bucket.versioning {
            Versioning::Unversioned => None,
            state => Some(BucketVersioningStatus::from(state.as_str().to_owned())),
        };
        ok(GetBucketVersioningOutput {
            status,
            mfa_delete: None,
        })
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> R<PutBucketVersioningOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let input = req.input;
        if input
            .versioning_configuration
            .mfa_delete
            .as_ref()
            .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
        {
            return Err(s3_error!(NotImplemented, "MFA delete is not supported"));
        }
        let state = match input
            .versioning_configuration
            .status
            .as_ref()
            .map(BucketVersioningStatus::as_str)
        {
            Some("Enabled") => Versioning::Enabled,
            Some("Suspended") => Versioning::Suspended,
            _ => {
                return Err(s3_error!(
                    MalformedXML,
                    "The versioning Status must be Enabled or Suspended"
                ));
            }
        };
        self.service
            .update_bucket(ctx, &input.bucket, BucketUpdate::Versioning(state))
            .await
            .map_err(to_s3)?;
        ok(PutBucketVersioningOutput {})
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> R<ListObjectVersionsOutput> {
        let (req, _) = scoped(req)?;
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = max_keys(input.max_keys)?;
        let page = self
            .service
            .list_versions(
                &input.bucket,
                &prefix,
                input.delimiter.as_deref(),
                input.key_marker.as_deref(),
                input.version_id_marker.as_deref(),
                max,
            )
            .await
            .map_err(to_s3)?;
        let enc = encoder(input.encoding_type.as_ref());
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        for v in page.versions {
            if v.delete_marker {
                markers.push(DeleteMarkerEntry {
                    is_latest: Some(v.latest),
                    key: Some(enc(v.key)),
                    last_modified: Some(timestamp(v.last_modified_ms)),
                    owner: Some(self.owner.clone()),
                    version_id: Some(v.version_id),
                });
            } else {
                versions.push(ObjectVersion {
                    e_tag: Some(etag(&v.etag)),
                    is_latest: Some(v.latest),
                    key: Some(enc(v.key)),
                    last_modified: Some(timestamp(v.last_modified_ms)),
                    owner: Some(self.owner.clone()),
                    size: Some(i64::try_from(v.size_bytes).unwrap_or(i64::MAX)),
                    storage_class: Some(ObjectVersionStorageClass::from(
                        ObjectVersionStorageClass::STANDARD.to_owned(),
                    )),
                    version_id: Some(v.version_id),
                    ..Default::default()
                });
            }
        }
        let prefixes: Vec<CommonPrefix> = page
            .common_prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc(p)),
            })
            .collect();
        ok(ListObjectVersionsOutput {
            name: Some(crate::authz::wire_name(&req.extensions, &input.bucket)),
            prefix: Some(enc(prefix)),
            delimiter: input.delimiter.map(&enc),
            key_marker: Some(input.key_marker.map(&enc).unwrap_or_default()),
            version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
            max_keys: Some(i32::try_from(max).unwrap_or(i32::MAX)),
            is_truncated: Some(page.truncated),
            next_key_marker: page.next_key_marker.map(&enc),
            next_version_id_marker: page.next_version_id_marker,
            versions: Some(versions),
            delete_markers: Some(markers),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        })
    }

    async fn put_object_lock_configuration(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> R<PutObjectLockConfigurationOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let input = req.input;
        let config = input.object_lock_configuration.ok_or_else(|| {
            s3_error!(
                MalformedXML,
                "an ObjectLockConfiguration document is required"
            )
        })?;
        if config
            .object_lock_enabled
            .as_ref()
            .is_none_or(|e| e.as_str() != ObjectLockEnabled::ENABLED)
        {
            return Err(s3_error!(MalformedXML, "ObjectLockEnabled must be Enabled"));
        }
        let default_retention = match config.rule.and_then(|r| r.default_retention) {
            None => None,
            Some(d) => {
                let mode = d
                    .mode
                    .as_ref()
                    .ok_or_else(|| s3_error!(MalformedXML, "DefaultRetention needs a Mode"))?;
                let mode = mode_in_xml(mode.as_str())?;
                let (days, years) = retention_period(d.days, d.years)?;
                Some(CoreDefaultRetention { mode, days, years })
            }
        };
        self.service
            .update_bucket(
                ctx,
                &input.bucket,
                BucketUpdate::ObjectLock(ObjectLockConfig { default_retention }),
            )
            .await
            .map_err(to_s3)?;
        ok(PutObjectLockConfigurationOutput::default())
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> R<GetObjectLockConfigurationOutput> {
        let bucket = self.bucket_of(req).await?;
        let config = bucket
            .object_lock
            .ok_or_else(|| to_s3(vallum_core::Error::ObjectLockConfigurationNotFound))?;
        ok(GetObjectLockConfigurationOutput {
            object_lock_configuration: Some(ObjectLockConfiguration {
                object_lock_enabled: Some(ObjectLockEnabled::from(
                    ObjectLockEnabled::ENABLED.to_owned(),
                )),
                rule: config.default_retention.map(|d| ObjectLockRule {
                    default_retention: Some(DefaultRetention {
                        mode: Some(ObjectLockRetentionMode::from(d.mode.as_str().to_owned())),
                        days: d.days.map(to_i32),
                        years: d.years.map(to_i32),
                    }),
                }),
            }),
        })
    }

    async fn put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> R<PutObjectRetentionOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let input = req.input;
        let retention = match input.retention {
            Some(ObjectLockRetention {
                mode: Some(mode),
                retain_until_date: Some(until),
            }) => Some(Retention {
                mode: mode_in_xml(mode.as_str())?,
                until_ms: to_ms(until),
            }),
            Some(ObjectLockRetention {
                mode: None,
                retain_until_date: None,
            })
            | None => None,
            Some(_) => {
                return Err(s3_error!(
                    MalformedXML,
                    "a Retention names both Mode and RetainUntilDate, or neither"
                ));
            }
        };
        require_object_lock(&self.service.bucket(&input.bucket).await.map_err(to_s3)?)?;
        self.service
            .update_version(
                ctx,
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                VersionUpdate::Retention {
                    retention,
                    bypass_governance: self.bypass_governance(
                        &req.extensions,
                        &input.bucket,
                        input.bypass_governance_retention,
                    ),
                },
            )
            .await
            .map_err(to_s3)?;
        ok(PutObjectRetentionOutput::default())
    }

    async fn get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> R<GetObjectRetentionOutput> {
        let (req, _) = scoped(req)?;
        let input = req.input;
        require_object_lock(&self.service.bucket(&input.bucket).await.map_err(to_s3)?)?;
        let object = self
            .service
            .head_object(&input.bucket, &input.key, input.version_id.as_deref())
            .await
            .map_err(to_s3)?;
        let retention = object
            .lock
            .retention
            .ok_or_else(|| to_s3(vallum_core::Error::NoSuchObjectLockConfiguration))?;
        ok(GetObjectRetentionOutput {
            retention: Some(ObjectLockRetention {
                mode: Some(ObjectLockRetentionMode::from(
                    retention.mode.as_str().to_owned(),
                )),
                retain_until_date: Some(timestamp(retention.until_ms)),
            }),
        })
    }

    async fn put_object_legal_hold(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> R<PutObjectLegalHoldOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let input = req.input;
        let status = input
            .legal_hold
            .and_then(|h| h.status)
            .ok_or_else(|| s3_error!(MalformedXML, "a LegalHold document needs a Status"))?;
        let on = legal_hold_in(status.as_str())?;
        require_object_lock(&self.service.bucket(&input.bucket).await.map_err(to_s3)?)?;
        self.service
            .update_version(
                ctx,
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                VersionUpdate::LegalHold(on),
            )
            .await
            .map_err(to_s3)?;
        ok(PutObjectLegalHoldOutput::default())
    }

    async fn get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> R<GetObjectLegalHoldOutput> {
        let (req, _) = scoped(req)?;
        let input = req.input;
        require_object_lock(&self.service.bucket(&input.bucket).await.map_err(to_s3)?)?;
        let object = self
            .service
            .head_object(&input.bucket, &input.key, input.version_id.as_deref())
            .await
            .map_err(to_s3)?;
        ok(GetObjectLegalHoldOutput {
            legal_hold: Some(ObjectLockLegalHold {
                status: Some(legal_hold_out(object.lock.legal_hold)),
            }),
        })
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> R<PutBucketLifecycleConfigurationOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let input = req.input;
        let config = input.lifecycle_configuration.ok_or_else(|| {
            s3_error!(
                MalformedXML,
                "a LifecycleConfiguration document is required"
            )
        })?;
        let config = lifecycle_in(config)?;
        self.service
            .update_bucket(ctx, &input.bucket, BucketUpdate::Lifecycle(Some(config)))
            .await
            .map_err(to_s3)?;
        self.forget_lifecycle(&input.bucket);
        ok(PutBucketLifecycleConfigurationOutput::default())
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> R<GetBucketLifecycleConfigurationOutput> {
        let bucket = self.bucket_of(req).await?;
        let config = bucket
            .lifecycle
            .ok_or_else(|| to_s3(vallum_core::Error::NoSuchLifecycleConfiguration))?;
        ok(GetBucketLifecycleConfigurationOutput {
            rules: Some(lifecycle_out(&config)),
            ..Default::default()
        })
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> R<DeleteBucketLifecycleOutput> {
        let (req, ctx) = scoped(req)?;
        self.service
            .update_bucket(&ctx, &req.input.bucket, BucketUpdate::Lifecycle(None))
            .await
            .map_err(to_s3)?;
        self.forget_lifecycle(&req.input.bucket);
        no_content(DeleteBucketLifecycleOutput {})
    }

    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> R<PutBucketEncryptionOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let input = req.input;
        let rules = input.server_side_encryption_configuration.rules;
        let [rule] = rules.as_slice() else {
            return Err(s3_error!(
                MalformedXML,
                "A server-side encryption configuration has exactly one rule"
            ));
        };
        let Some(default) = &rule.apply_server_side_encryption_by_default else {
            return Err(s3_error!(
                MalformedXML,
                "The rule needs ApplyServerSideEncryptionByDefault"
            ));
        };
        let algorithm = default.sse_algorithm.as_str().to_owned();
        let key_id = default.kms_master_key_id.as_deref().map(kms_key_id);
        if algorithm == ServerSideEncryption::AES256 && key_id.is_some() {
            return Err(s3_error!(
                InvalidArgument,
                "KMSMasterKeyID is only allowed with aws:kms"
            ));
        }
        let config = vallum_core::meta::BucketEncryption {
            algorithm,
            key_id,
            bucket_key_enabled: rule.bucket_key_enabled.unwrap_or(false),
        };
        self.service
            .update_bucket(ctx, &input.bucket, BucketUpdate::Encryption(Some(config)))
            .await
            .map_err(to_s3)?;
        ok(PutBucketEncryptionOutput {})
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> R<GetBucketEncryptionOutput> {
        let bucket = self.bucket_of(req).await?;
        // Every bucket encrypts, without a configuration under the deployment's default key;
        // but only a configuration set by PutBucketEncryption is returned.
        let Some(config) = bucket.encryption else {
            // 404 as S3 answers (s3s's table says 400).
            let mut e = s3_error!(
                ServerSideEncryptionConfigurationNotFoundError,
                "The server side encryption configuration was not found"
            );
            e.set_status_code(http::StatusCode::NOT_FOUND);
            return Err(e);
        };
        ok(GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
                rules: vec![ServerSideEncryptionRule {
                    apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                        sse_algorithm: ServerSideEncryption::from(config.algorithm),
                        kms_master_key_id: config.key_id,
                    }),
                    bucket_key_enabled: Some(config.bucket_key_enabled),
                }],
            }),
        })
    }

    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> R<DeleteBucketEncryptionOutput> {
        self.update_bucket_of(req, BucketUpdate::Encryption(None))
            .await?;
        no_content(DeleteBucketEncryptionOutput {})
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> R<PutObjectTaggingOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let input = req.input;
        let tags = tags_from_set(input.tagging.tag_set)?;
        let id = self
            .service
            .update_version(
                ctx,
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                VersionUpdate::Tags(tags),
            )
            .await
            .map_err(to_s3)?;
        ok(PutObjectTaggingOutput {
            version_id: version_out(&id, input.version_id.is_some()),
        })
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> R<GetObjectTaggingOutput> {
        let (req, _) = scoped(req)?;
        let input = req.input;
        let object = self
            .service
            .head_object(&input.bucket, &input.key, input.version_id.as_deref())
            .await
            .map_err(to_s3)?;
        ok(GetObjectTaggingOutput {
            tag_set: tag_set(&object.tags),
            version_id: version_out(&object.version_id, input.version_id.is_some()),
        })
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> R<DeleteObjectTaggingOutput> {
        let (req, ctx) = scoped(req)?;
        let ctx = &ctx;
        let input = req.input;
        let id = self
            .service
            .update_version(
                ctx,
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                VersionUpdate::Tags(Tags::new()),
            )
            .await
            .map_err(to_s3)?;
        no_content(DeleteObjectTaggingOutput {
            version_id: version_out(&id, input.version_id.is_some()),
        })
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> R<GetBucketPolicyOutput> {
        let (_, rec) = self.access_record_of(req).await?;
        let policy = rec
            .policy
            .ok_or_else(|| s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist"))?;
        ok(GetBucketPolicyOutput {
            policy: Some(policy.to_string()),
        })
    }

    async fn get_bucket_acl(&self, req: S3Request<GetBucketAclInput>) -> R<GetBucketAclOutput> {
        let (req, _) = self.access_scoped(req).await?;
        let owner = bucket_owner(&req.input.bucket, &self.owner);
        ok(GetBucketAclOutput {
            grants: Some(owner_acl(&owner)),
            owner: Some(owner),
        })
    }

    async fn put_bucket_acl(&self, req: S3Request<PutBucketAclInput>) -> R<PutBucketAclOutput> {
        let (req, _) = self.access_scoped(req).await?;
        let input = req.input;
        let owner = bucket_owner(&input.bucket, &self.owner);
        let grants = [
            &input.grant_full_control,
            &input.grant_read,
            &input.grant_read_acp,
            &input.grant_write,
            &input.grant_write_acp,
        ];
        only_owner(
            input.acl.as_ref().map(BucketCannedACL::as_str),
            input.access_control_policy.as_ref(),
            &grants,
            &owner,
        )?;
        ok(PutBucketAclOutput {})
    }

    async fn get_object_acl(&self, req: S3Request<GetObjectAclInput>) -> R<GetObjectAclOutput> {
        let (req, _) = scoped(req)?;
        let input = req.input;
        // The object (version) must exist; its ACL is the bucket owner's, as for every object.
        self.service
            .head_object(&input.bucket, &input.key, input.version_id.as_deref())
            .await
            .map_err(to_s3)?;
        let owner = bucket_owner(&input.bucket, &self.owner);
        ok(GetObjectAclOutput {
            grants: Some(owner_acl(&owner)),
            owner: Some(owner),
            ..Default::default()
        })
    }

    async fn put_object_acl(&self, req: S3Request<PutObjectAclInput>) -> R<PutObjectAclOutput> {
        let (req, _) = scoped(req)?;
        let input = req.input;
        self.service
            .head_object(&input.bucket, &input.key, input.version_id.as_deref())
            .await
            .map_err(to_s3)?;
        let owner = bucket_owner(&input.bucket, &self.owner);
        let grants = [
            &input.grant_full_control,
            &input.grant_read,
            &input.grant_read_acp,
            &input.grant_write,
            &input.grant_write_acp,
        ];
        only_owner(
            input.acl.as_ref().map(ObjectCannedACL::as_str),
            input.access_control_policy.as_ref(),
            &grants,
            &owner,
        )?;
        ok(PutObjectAclOutput::default())
    }

    async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> R<GetBucketOwnershipControlsOutput> {
        let (_, rec) = self.access_record_of(req).await?;
        if rec.ownership_deleted {
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("OwnershipControlsNotFoundError".into()),
                "The bucket ownership controls were not found",
            );
            e.set_status_code(http::StatusCode::NOT_FOUND);
            return Err(e);
        }
        ok(GetBucketOwnershipControlsOutput {
            ownership_controls: Some(OwnershipControls {
                rules: vec![OwnershipControlsRule {
                    object_ownership: ObjectOwnership::from_static(
                        ObjectOwnership::BUCKET_OWNER_ENFORCED,
                    ),
                }],
            }),
        })
    }

    async fn put_bucket_ownership_controls(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> R<PutBucketOwnershipControlsOutput> {
        let (req, ctx) = self.access_scoped(req).await?;
        let input = req.input;
        let [rule] = input.ownership_controls.rules.as_slice() else {
            return Err(s3_error!(
                MalformedXML,
                "OwnershipControls has exactly one rule"
            ));
        };
        if rule.object_ownership.as_str() != ObjectOwnership::BUCKET_OWNER_ENFORCED {
            return Err(s3_error!(
                NotImplemented,
                "ACLs are not supported: object ownership is BucketOwnerEnforced, not {}",
                rule.object_ownership.as_str()
            ));
        }
        self.iam
            .put_bucket_ownership(&ctx, &input.bucket, false)
            .await
            .map_err(crate::error::iam_to_s3)?;
        ok(PutBucketOwnershipControlsOutput {})
    }

    async fn delete_bucket_ownership_controls(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> R<DeleteBucketOwnershipControlsOutput> {
        let (req, ctx) = self.access_scoped(req).await?;
        self.iam
            .put_bucket_ownership(&ctx, &req.input.bucket, true)
            .await
            .map_err(crate::error::iam_to_s3)?;
        no_content(DeleteBucketOwnershipControlsOutput {})
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> R<GetBucketTaggingOutput> {
        let (_, rec) = self.access_record_of(req).await?;
        let tags = rec
            .tags
            .ok_or_else(|| s3_error!(NoSuchTagSet, "The TagSet does not exist"))?;
        ok(GetBucketTaggingOutput {
            tag_set: tag_set(&tags),
        })
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> R<PutBucketTaggingOutput> {
        let (req, ctx) = self.access_scoped(req).await?;
        let input = req.input;
        let mut tags = vallum_core::versioning::Tags::new();
        for t in input.tagging.tag_set {
            let key = t.key.unwrap_or_default();
            if tags
                .insert(key.clone(), t.value.unwrap_or_default())
                .is_some()
            {
                return Err(s3_error!(
                    InvalidTag,
                    "Cannot provide multiple Tags with the same key: {key}"
                ));
            }
        }
        self.iam
            .put_bucket_tags(&ctx, &input.bucket, Some(tags))
            .await
            .map_err(|e| match e {
                vallum_core::iam::IamError::Invalid(m) => s3_error!(InvalidTag, "{m}"),
                other => crate::error::iam_to_s3(other),
            })?;
        no_content(PutBucketTaggingOutput {})
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> R<DeleteBucketTaggingOutput> {
        let (req, ctx) = self.access_scoped(req).await?;
        self.iam
            .put_bucket_tags(&ctx, &req.input.bucket, None)
            .await
            .map_err(crate::error::iam_to_s3)?;
        no_content(DeleteBucketTaggingOutput {})
    }

    async fn put_bucket_cors(&self, req: S3Request<PutBucketCorsInput>) -> R<PutBucketCorsOutput> {
        let (req, ctx) = self.access_scoped(req).await?;
        let input = req.input;
        let config = vallum_core::cors::CorsConfig {
            rules: input
                .cors_configuration
                .cors_rules
                .into_iter()
                .map(|r| vallum_core::cors::CorsRule {
                    id: r.id,
                    allowed_origins: r.allowed_origins,
                    allowed_methods: r.allowed_methods,
                    allowed_headers: r.allowed_headers.unwrap_or_default(),
                    expose_headers: r.expose_headers.unwrap_or_default(),
                    max_age_secs: r.max_age_seconds,
                })
                .collect(),
        };
        config
            .validate()
            .map_err(|m| s3_error!(MalformedXML, "{m}"))?;
        self.iam
            .put_bucket_cors(&ctx, &input.bucket, Some(config))
            .await
            .map_err(crate::error::iam_to_s3)?;
        ok(PutBucketCorsOutput {})
    }

    async fn get_bucket_cors(&self, req: S3Request<GetBucketCorsInput>) -> R<GetBucketCorsOutput> {
        let (_, rec) = self.access_record_of(req).await?;
        let config = rec.cors.ok_or_else(|| {
            s3_error!(
                NoSuchCORSConfiguration,
                "The CORS configuration does not exist"
            )
        })?;
        ok(GetBucketCorsOutput {
            cors_rules: Some(
                config
                    .rules
                    .into_iter()
                    .map(|r| CORSRule {
                        id: r.id,
                        allowed_origins: r.allowed_origins,
                        allowed_methods: r.allowed_methods,
                        allowed_headers: (!r.allowed_headers.is_empty())
                            .then_some(r.allowed_headers),
                        expose_headers: (!r.expose_headers.is_empty()).then_some(r.expose_headers),
                        max_age_seconds: r.max_age_secs,
                    })
                    .collect(),
            ),
        })
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> R<DeleteBucketCorsOutput> {
        let (req, ctx) = self.access_scoped(req).await?;
        self.iam
            .put_bucket_cors(&ctx, &req.input.bucket, None)
            .await
            .map_err(crate::error::iam_to_s3)?;
        no_content(DeleteBucketCorsOutput {})
    }

    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> R<PutBucketPolicyOutput> {
        let (req, ctx) = self.access_scoped(req).await?;
        let ctx = &ctx;
        self.iam
            .put_bucket_policy(ctx, &req.input.bucket, req.input.policy.as_bytes())
            .await
            .map_err(crate::error::iam_to_s3)?;
        ok(PutBucketPolicyOutput {})
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> R<DeleteBucketPolicyOutput> {
        let (req, ctx) = self.access_scoped(req).await?;
        let ctx = &ctx;
        self.iam
            .delete_bucket_policy(ctx, &req.input.bucket)
            .await
            .map_err(crate::error::iam_to_s3)?;
        ok(DeleteBucketPolicyOutput {})
    }

    async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> R<GetBucketPolicyStatusOutput> {
        let (bucket, rec) = self.access_record_of(req).await?;
        let public = self.iam.is_public(&bucket, &rec);
        ok(GetBucketPolicyStatusOutput {
            policy_status: Some(PolicyStatus {
                is_public: Some(public),
            }),
        })
    }

    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> R<GetPublicAccessBlockOutput> {
        let (_, rec) = self.access_record_of(req).await?;
        let b = rec.block.unwrap_or_default();
        ok(GetPublicAccessBlockOutput {
            public_access_block_configuration: Some(PublicAccessBlockConfiguration {
                block_public_acls: Some(b.block_public_acls),
                block_public_policy: Some(b.block_public_policy),
                ignore_public_acls: Some(b.ignore_public_acls),
                restrict_public_buckets: Some(b.restrict_public_buckets),
            }),
        })
    }

    async fn put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> R<PutPublicAccessBlockOutput> {
        let (req, ctx) = self.access_scoped(req).await?;
        let ctx = &ctx;
        let c = &req.input.public_access_block_configuration;
        // S3: an omitted setting is false.
        let block = vallum_core::iam::PublicAccessBlock {
            block_public_acls: c.block_public_acls.unwrap_or(false),
            ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
            block_public_policy: c.block_public_policy.unwrap_or(false),
            restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
        };
        self.iam
            .put_public_access_block(ctx, &req.input.bucket, Some(block))
            .await
            .map_err(crate::error::iam_to_s3)?;
        ok(PutPublicAccessBlockOutput {})
    }

    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> R<DeletePublicAccessBlockOutput> {
        let (req, ctx) = self.access_scoped(req).await?;
        let ctx = &ctx;
        self.iam
            .put_public_access_block(ctx, &req.input.bucket, None)
            .await
            .map_err(crate::error::iam_to_s3)?;
        ok(DeletePublicAccessBlockOutput {})
    }
}

/// An error for operations Vallum does not implement (used by tests to pin the behaviour).
#[allow(dead_code)]
pub fn not_implemented() -> S3Error {
    S3Error::new(S3ErrorCode::NotImplemented)
}

/// How S3 reports Vallum's encryption: keys held by a key service, i.e. `aws:kms` with the
/// key-encryption key's id.
/// A KMS key id from a header or configuration: a key id, or an ARN
/// (`arn:aws:kms:<region>:<account>:key/<id>`) whose last part names it.
fn kms_key_id(raw: &str) -> String {
    match raw.strip_prefix("arn:") {
        Some(arn) => arn
            .rsplit_once(":key/")
            .map_or_else(|| raw.to_owned(), |(_, id)| id.to_owned()),
        None => raw.to_owned(),
    }
}

/// Whether the request came over TLS.
fn secure<T>(req: &S3Request<T>) -> bool {
    req.extensions
        .get::<crate::http_service::Secure>()
        .is_some_and(|s| s.0)
}

/// The customer-provided key of `x-amz-[copy-source-]server-side-encryption-customer-*`
/// headers: algorithm `AES256`, a Base64 256-bit key and its Base64 MD5, over TLS only.
/// Inputs that carry SSE-C headers (`x-amz-server-side-encryption-customer-*`): algorithm,
/// key and key MD5.
trait SseCustomerInput {
    fn sse_customer(&self) -> (Option<&str>, Option<&str>, Option<&str>);
}

macro_rules! sse_customer_inputs {
    ($($t:ident),* $(,)?) => {
        $(impl SseCustomerInput for $t {
            fn sse_customer(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
                (
                    self.sse_customer_algorithm.as_deref(),
                    self.sse_customer_key.as_deref(),
                    self.sse_customer_key_md5.as_deref(),
                )
            }
        })*
    };
}

sse_customer_inputs!(
    PutObjectInput,
    GetObjectInput,
    GetObjectAttributesInput,
    HeadObjectInput,
    CopyObjectInput,
    CreateMultipartUploadInput,
    UploadPartInput,
    UploadPartCopyInput,
);

/// The copy source's SSE-C headers (`x-amz-copy-source-server-side-encryption-customer-*`).
struct CopySourceKey<'a, T>(&'a T);

macro_rules! copy_source_keys {
    ($($t:ident),* $(,)?) => {
        $(impl SseCustomerInput for CopySourceKey<'_, $t> {
            fn sse_customer(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
                (
                    self.0.copy_source_sse_customer_algorithm.as_deref(),
                    self.0.copy_source_sse_customer_key.as_deref(),
                    self.0.copy_source_sse_customer_key_md5.as_deref(),
                )
            }
        })*
    };
}

copy_source_keys!(CopyObjectInput, UploadPartCopyInput);

/// The customer-provided key an input's SSE-C headers give, checked as S3 does; `None` when
/// it has none.
fn customer_key_of(
    secure: bool,
    input: &impl SseCustomerInput,
) -> S3Result<Option<vallum_crypto::customer::CustomerKey>> {
    let (algorithm, key, md5) = input.sse_customer();
    if algorithm.is_none() && key.is_none() && md5.is_none() {
        return Ok(None);
    }
    if !secure {
        return Err(s3_error!(
            InvalidRequest,
            "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."
        ));
    }
    if algorithm != Some("AES256") {
        return Err(s3_error!(
            InvalidEncryptionAlgorithmError,
            "The encryption request you specified is not valid. The valid value is AES256."
        ));
    }
    let (Some(key), Some(md5)) = (key, md5) else {
        return Err(s3_error!(
            InvalidArgument,
            "Requests specifying Server Side Encryption with Customer provided keys must provide the key and its MD5."
        ));
    };
    let bytes =
        zeroize::Zeroizing::new(base64_simd::STANDARD.decode_to_vec(key).map_err(|_| {
            s3_error!(
                InvalidArgument,
                "The secret key was invalid for the specified algorithm."
            )
        })?);
    let ck = vallum_crypto::customer::CustomerKey::from_bytes(&bytes).map_err(|_| {
        s3_error!(
            InvalidArgument,
            "The secret key was invalid for the specified algorithm."
        )
    })?;
    use md5::Digest as _;
    let computed = base64_simd::STANDARD.encode_to_string(md5::Md5::digest(bytes.as_slice()));
    let equal: bool = subtle::ConstantTimeEq::ct_eq(computed.as_bytes(), md5.as_bytes()).into();
    if !equal {
        return Err(s3_error!(
            InvalidArgument,
            "The calculated MD5 hash of the key did not match the hash that was provided."
        ));
    }
    Ok(Some(ck))
}

/// The server-side encryption a write asks for. Every object is encrypted whatever is asked;
/// `aws:kms` may name the key; a customer-provided key (SSE-C) wraps the data key instead.
fn sse_request(
    sse: Option<&ServerSideEncryption>,
    key_id: Option<String>,
    customer_key: Option<vallum_crypto::customer::CustomerKey>,
) -> S3Result<SseRequest> {
    if customer_key.is_some() && (sse.is_some() || key_id.is_some()) {
        return Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
        ));
    }
    match sse.map(ServerSideEncryption::as_str) {
        None | Some(ServerSideEncryption::AES256) => {
            if key_id.is_some() {
                return Err(s3_error!(
                    InvalidArgument,
                    "x-amz-server-side-encryption-aws-kms-key-id requires x-amz-server-side-encryption: aws:kms"
                ));
            }
            Ok(SseRequest {
                algorithm: sse.map(|_| SseAlgorithm::S3),
                key_id: None,
                customer_key,
            })
        }
        Some(ServerSideEncryption::AWS_KMS | ServerSideEncryption::AWS_KMS_DSSE) => {
            Ok(SseRequest {
                algorithm: Some(SseAlgorithm::Kms),
                key_id: key_id.as_deref().map(kms_key_id),
                customer_key: None,
            })
        }
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "{other:?} is not a server-side encryption algorithm (AES256, aws:kms)"
        )),
    }
}

/// The bytes of part `n` (`?partNumber=`) of an object: its `n`th part for a multipart
/// object, the whole object (no range) for part 1 of any other; `400 InvalidPart` beyond.
fn part_range(object: &ObjectRecord, n: i32) -> S3Result<Option<ByteRange>> {
    let invalid = || {
        s3_error!(
            InvalidPart,
            "The requested partnumber is not satisfiable: the object has no part {n}"
        )
    };
    let index = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .ok_or_else(invalid)?;
    if object.parts_count.is_none() {
        return if index == 0 { Ok(None) } else { Err(invalid()) };
    }
    let segment = object.segments.get(index).ok_or_else(invalid)?;
    let first: u64 = object.segments[..index].iter().map(|s| s.size_bytes).sum();
    if segment.size_bytes == 0 {
        return Ok(None);
    }
    Ok(Some(ByteRange::From {
        first,
        last: Some(first + segment.size_bytes - 1),
    }))
}

/// The owner S3 reports for a bucket (internal name): its tenant, or for the `default`
/// tenant's buckets the deployment's root.
fn bucket_owner(internal: &str, root: &Owner) -> Owner {
    match vallum_core::iam::model::split_internal(internal) {
        (vallum_core::iam::model::DEFAULT_TENANT, _) => root.clone(),
        (tenant, _) => Owner {
            display_name: Some(tenant.to_owned()),
            id: Some(tenant.to_owned()),
        },
    }
}

/// The ACL of every bucket and object with ACLs off (object ownership BucketOwnerEnforced,
/// S3's default since 2023): the bucket owner has FULL_CONTROL, and nobody else anything.
fn owner_acl(owner: &Owner) -> Vec<Grant> {
    vec![Grant {
        grantee: Some(Grantee {
            display_name: owner.display_name.clone(),
            email_address: None,
            id: owner.id.clone(),
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    }]
}

/// With ACLs off, a Put*Acl may only say what is already so: the owner's full control (a
/// `private` or `bucket-owner-full-control` canned ACL, or grants to the owner alone); anything
/// else is `400 AccessControlListNotSupported`, as S3 answers for such buckets.
fn only_owner(
    canned: Option<&str>,
    policy: Option<&AccessControlPolicy>,
    grants: &[&Option<String>],
    owner: &Owner,
) -> S3Result<()> {
    let refused = || {
        s3_error!(
            AccessControlListNotSupported,
            "The bucket does not allow ACLs: access is granted by policies"
        )
    };
    if canned.is_some_and(|c| !matches!(c, "private" | "bucket-owner-full-control")) {
        return Err(refused());
    }
    let owner_id = owner.id.as_deref().unwrap_or_default();
    let names_owner_only = |g: &str| {
        g.split(',').all(|part| {
            part.trim().strip_prefix("id=").map(|v| v.trim_matches('"')) == Some(owner_id)
        })
    };
    for grant in grants.iter().copied().flatten() {
        if !names_owner_only(grant) {
            return Err(refused());
        }
    }
    if let Some(p) = policy {
        for g in p.grants.iter().flatten() {
            let to_owner = g
                .grantee
                .as_ref()
                .is_some_and(|ge| ge.id.as_deref() == Some(owner_id) && ge.uri.is_none());
            let full = g
                .permission
                .as_ref()
                .is_some_and(|p| p.as_str() == Permission::FULL_CONTROL);
            if !(to_owner && full) {
                return Err(refused());
            }
        }
    }
    Ok(())
}

/// GET and HEAD take no `x-amz-server-side-encryption*` header but SSE-C's: S3 answers 400.
fn no_sse_on_read(headers: &http::HeaderMap) -> S3Result<()> {
    for name in [
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-aws-kms-key-id",
        "x-amz-server-side-encryption-context",
    ] {
        if headers.contains_key(name) {
            return Err(s3_error!(
                InvalidArgument,
                "{name} is not allowed on a read: the object's encryption is recorded with it"
            ));
        }
    }
    Ok(())
}

/// Response headers of SSE-C: the algorithm and the MD5 the client sent.
fn ssec_out(
    enc: Option<&vallum_core::meta::Encryption>,
    md5: Option<String>,
) -> (Option<String>, Option<String>) {
    match enc {
        Some(e) if e.wrapped.provider == vallum_crypto::customer::SSE_C => {
            (Some("AES256".to_owned()), md5)
        }
        _ => (None, None),
    }
}

fn sse_out(
    enc: Option<&vallum_core::meta::Encryption>,
) -> (Option<ServerSideEncryption>, Option<String>) {
    match enc {
        Some(e) if e.wrapped.provider == vallum_crypto::customer::SSE_C => (None, None),
        Some(e) if e.sse_s3 => (
            Some(ServerSideEncryption::from_static(
                ServerSideEncryption::AES256,
            )),
            None,
        ),
        Some(e) => (
            Some(ServerSideEncryption::from_static(
                ServerSideEncryption::AWS_KMS,
            )),
            Some(e.wrapped.key_id.clone()),
        ),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_matches_s3() {
        assert_eq!(url_encode("a b/c+d%é"), "a%20b/c%2Bd%25%C3%A9");
        assert_eq!(url_encode("plain-key_1.txt~"), "plain-key_1.txt~");
    }

    #[test]
    fn aws_chunked_is_not_a_stored_content_encoding() {
        assert_eq!(
            without_aws_chunked("gzip,aws-chunked").as_deref(),
            Some("gzip")
        );
        assert_eq!(without_aws_chunked("aws-chunked"), None);
        assert_eq!(
            without_aws_chunked("aws-chunked, br, gzip").as_deref(),
            Some("br, gzip")
        );
        assert_eq!(
            without_aws_chunked("deflate, gzip").as_deref(),
            Some("deflate, gzip")
        );
        assert_eq!(without_aws_chunked("aws-chunked, aws-chunked"), None);
        assert_eq!(without_aws_chunked("identity").as_deref(), Some("identity"));
    }

    #[test]
    fn copy_ranges_are_strict() {
        assert_eq!(
            parse_copy_range("bytes=0-9").unwrap(),
            ByteRange::From {
                first: 0,
                last: Some(9)
            }
        );
        assert!(parse_copy_range("bytes=9-0").is_err());
        assert!(parse_copy_range("bytes=-5").is_err());
        assert!(parse_copy_range("0-5").is_err());
    }
}
