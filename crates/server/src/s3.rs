//! The S3 operations: each converts the s3s input into a domain call and the result back.
//! No storage logic lives here.

use std::sync::Arc;

use futures::TryStreamExt;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use vallum_core::digest::ChecksumSet;
use vallum_core::list::Marker as ListMarker;
use vallum_core::meta::{
    ChecksumAlgorithm as CoreAlgorithm, Checksums, ObjectAttrs, ObjectRecord, WriteCondition,
};
use vallum_core::multipart::{CompletedPart as CorePart, parse_checksum_algorithm};
use vallum_core::service::{
    BodyCheck, ByteRange, CopyObject, ObjectService, PutObject, ReadConditions,
};
use vallum_types::limits::{MAX_DELETE_OBJECTS, MAX_LIST_KEYS};

use crate::error::to_s3;

/// The S3 front end over an [`ObjectService`].
pub struct VallumS3 {
    service: Arc<ObjectService>,
    region: String,
    owner: Owner,
}

impl VallumS3 {
    pub fn new(service: Arc<ObjectService>, region: String, owner_id: String) -> Self {
        Self {
            service,
            region,
            owner: Owner {
                display_name: Some("vallum".into()),
                id: Some(owner_id),
            },
        }
    }
}

type R<T> = S3Result<S3Response<T>>;

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
        (None, Some(ETagCondition::ETag(_))) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on a write accepts only '*'"
        )),
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
    let payload_sha256_hex = req
        .headers
        .get("x-amz-content-sha256")
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

fn body_stream(body: Option<StreamingBlob>) -> vallum_core::blob::ByteStream {
    match body {
        Some(body) => Box::pin(body.map_err(std::io::Error::other)),
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

fn copy_source(src: &CopySource) -> S3Result<(String, String)> {
    match src {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => {
            if version_id.as_deref().is_some_and(|v| v != "null") {
                return Err(s3_error!(NoSuchVersion, "versioning is not enabled"));
            }
            Ok((bucket.to_string(), key.to_string()))
        }
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
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        expires_ms: expires.map(to_ms),
        user_metadata: metadata_in(metadata),
    }
}

fn content_type_out(attrs: &ObjectAttrs) -> Option<ContentType> {
    let text = attrs
        .content_type
        .as_deref()
        .unwrap_or("binary/octet-stream");
    text.parse().ok()
}

impl VallumS3 {
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
    async fn list_buckets(&self, _req: S3Request<ListBucketsInput>) -> R<ListBucketsOutput> {
        let buckets = self.service.list_buckets().await.map_err(to_s3)?;
        let buckets = buckets
            .into_iter()
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_ms)),
                bucket_region: Some(b.location),
            })
            .collect();
        ok(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(self.owner.clone()),
            ..Default::default()
        })
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> R<CreateBucketOutput> {
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
        if input.object_lock_enabled_for_bucket == Some(true) {
            return Err(s3_error!(
                NotImplemented,
                "object lock is not available yet"
            ));
        }
        self.service
            .create_bucket(&input.bucket)
            .await
            .map_err(to_s3)?;
        ok(CreateBucketOutput {
            location: Some(format!("/{}", input.bucket)),
        })
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> R<HeadBucketOutput> {
        let bucket = self
            .service
            .bucket(&req.input.bucket)
            .await
            .map_err(to_s3)?;
        ok(HeadBucketOutput {
            bucket_region: Some(bucket.location),
            ..Default::default()
        })
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> R<DeleteBucketOutput> {
        self.service
            .delete_bucket(&req.input.bucket)
            .await
            .map_err(to_s3)?;
        ok(DeleteBucketOutput {})
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> R<GetBucketLocationOutput> {
        let bucket = self
            .service
            .bucket(&req.input.bucket)
            .await
            .map_err(to_s3)?;
        // S3 reports us-east-1 as an empty location constraint.
        let location = (bucket.location != "us-east-1")
            .then(|| BucketLocationConstraint::from(bucket.location));
        ok(GetBucketLocationOutput {
            location_constraint: location,
        })
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> R<PutObjectOutput> {
        let check = body_check_of!(req)?;
        let input = req.input;
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
        let put = PutObject {
            bucket: input.bucket,
            key: input.key,
            attrs,
            check,
            condition,
        };
        let record = self
            .service
            .put_object(put, body_stream(input.body))
            .await
            .map_err(to_s3)?;
        let sums = record.checksums.clone();
        ok(PutObjectOutput {
            e_tag: Some(etag(&record.etag)),
            checksum_type: checksum_type(&sums),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            size: i64::try_from(record.size_bytes).ok(),
            ..Default::default()
        })
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> R<GetObjectOutput> {
        let input = req.input;
        if input.part_number.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "GetObject with partNumber is not supported"
            ));
        }
        if input.version_id.as_deref().is_some_and(|v| v != "null") {
            return Err(s3_error!(NoSuchVersion, "versioning is not enabled"));
        }
        let conditions = read_conditions(
            input.if_match,
            input.if_none_match,
            input.if_modified_since,
            input.if_unmodified_since,
        );
        let range = input.range.map(|r| match r {
            Range::Int { first, last } => ByteRange::From { first, last },
            Range::Suffix { length } => ByteRange::Suffix(length),
        });
        let read = self
            .service
            .get_object(&input.bucket, &input.key, range, &conditions)
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
        ok(GetObjectOutput {
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
        let input = req.input;
        if input.version_id.as_deref().is_some_and(|v| v != "null") {
            return Err(s3_error!(NoSuchVersion, "versioning is not enabled"));
        }
        let object = self
            .service
            .head_object(&input.bucket, &input.key)
            .await
            .map_err(to_s3)?;
        let conditions = read_conditions(
            input.if_match,
            input.if_none_match,
            input.if_modified_since,
            input.if_unmodified_since,
        );
        conditions.check(&object, false).map_err(to_s3)?;
        let (content_length, content_range) = match input.range {
            Some(r) => {
                let r = match r {
                    Range::Int { first, last } => ByteRange::From { first, last },
                    Range::Suffix { length } => ByteRange::Suffix(length),
                };
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
        ok(HeadObjectOutput {
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
        })
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> R<DeleteObjectOutput> {
        let input = req.input;
        if input.version_id.as_deref().is_some_and(|v| v != "null") {
            return Err(s3_error!(NoSuchVersion, "versioning is not enabled"));
        }
        self.service
            .delete_object(&input.bucket, &input.key)
            .await
            .map_err(to_s3)?;
        ok(DeleteObjectOutput::default())
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> R<DeleteObjectsOutput> {
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
        let keys = input.delete.objects.into_iter().map(|o| o.key).collect();
        let outcomes = self
            .service
            .delete_objects(&input.bucket, keys)
            .await
            .map_err(to_s3)?;
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for outcome in outcomes {
            match outcome.result {
                Ok(()) if !quiet => deleted.push(DeletedObject {
                    key: Some(outcome.key),
                    ..Default::default()
                }),
                Ok(()) => {}
                Err(err) => {
                    let s3 = to_s3(err);
                    errors.push(Error {
                        key: Some(outcome.key),
                        code: Some(s3.code().as_str().to_owned()),
                        message: s3.message().map(str::to_owned),
                        version_id: None,
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
        let input = req.input;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
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
        };
        let record = self.service.copy_object(req).await.map_err(to_s3)?;
        let sums = record.checksums;
        ok(CopyObjectOutput {
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
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone();
        let start = match (&input.continuation_token, &input.start_after) {
            (Some(token), _) => Some(ListMarker::from_token(token).map_err(to_s3)?),
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
        let contents: Vec<Object> = page
            .objects
            .into_iter()
            .map(|o| self.object_summary(o, fetch_owner, &enc))
            .collect();
        let prefixes: Vec<CommonPrefix> = page
            .common_prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc(p)),
            })
            .collect();
        ok(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            delimiter: delimiter.map(&enc),
            start_after: input.start_after.map(&enc),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next.as_ref().map(ListMarker::to_token),
            key_count: Some(key_count),
            max_keys: Some(i32::try_from(max).unwrap_or(i32::MAX)),
            is_truncated: Some(page.truncated),
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        })
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> R<ListObjectsOutput> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone();
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
        let contents: Vec<Object> = page
            .objects
            .into_iter()
            .map(|o| self.object_summary(o, true, &enc))
            .collect();
        let prefixes: Vec<CommonPrefix> = page
            .common_prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc(p)),
            })
            .collect();
        ok(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            delimiter: delimiter.map(&enc),
            marker: Some(input.marker.map(&enc).unwrap_or_default()),
            next_marker,
            max_keys: Some(i32::try_from(max).unwrap_or(i32::MAX)),
            is_truncated: Some(page.truncated),
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        })
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> R<CreateMultipartUploadOutput> {
        let input = req.input;
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
        let upload = self
            .service
            .create_upload(&input.bucket, &input.key, attrs, alg)
            .await
            .map_err(to_s3)?;
        ok(CreateMultipartUploadOutput {
            bucket: Some(upload.bucket),
            key: Some(upload.key),
            upload_id: Some(upload.upload_id.to_string()),
            checksum_algorithm: alg.map(algorithm_out),
            ..Default::default()
        })
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> R<UploadPartOutput> {
        let check = body_check_of!(req)?;
        let input = req.input;
        let part = self
            .service
            .upload_part(
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
        ok(UploadPartOutput {
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
        let input = req.input;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
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
                &input.bucket,
                &input.key,
                &input.upload_id,
                i64::from(input.part_number),
                &src_bucket,
                &src_key,
                range,
                &conditions,
            )
            .await
            .map_err(to_s3)?;
        let sums = part.checksums;
        ok(UploadPartCopyOutput {
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
                &input.bucket,
                &input.key,
                &input.upload_id,
                &parts,
                &condition,
            )
            .await
            .map_err(to_s3)?;
        let sums = object.checksums;
        ok(CompleteMultipartUploadOutput {
            bucket: Some(object.bucket.clone()),
            key: Some(object.key.clone()),
            location: Some(format!("/{}/{}", object.bucket, object.key)),
            e_tag: Some(etag(&object.etag)),
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
        let input = req.input;
        self.service
            .abort_upload(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(to_s3)?;
        let mut resp = S3Response::new(AbortMultipartUploadOutput::default());
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> R<ListPartsOutput> {
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
            bucket: Some(upload.bucket),
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
            bucket: Some(input.bucket),
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
}

/// An error for operations Vallum does not implement (used by tests to pin the behaviour).
#[allow(dead_code)]
pub fn not_implemented() -> S3Error {
    S3Error::new(S3ErrorCode::NotImplemented)
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
