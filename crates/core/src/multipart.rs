//! Multipart uploads. Each part is its own blob; completing an upload does not copy data: the
//! object's segments are the parts' blobs, in order.

use crate::context::RequestContext;
use vallum_types::limits::{
    MAX_LIST_KEYS, MAX_OBJECT_BYTES, MAX_PART_BYTES, MAX_PARTS, MIN_PART_BYTES,
};
use vallum_types::{ObjectKey, UploadId};

use crate::blob::ByteStream;
use crate::digest::{self, ChecksumSet};
use crate::error::{Error, Result};
use crate::meta::{
    ChecksumAlgorithm, Checksums, ObjectAttrs, ObjectRecord, PartRecord, Segment, UploadRecord,
    WriteCondition,
};
use crate::service::{
    BodyCheck, ByteRange, LockRequest, ObjectService, ReadConditions, WriteCipher, check_attrs,
};
use crate::versioning::{Tags, validate_tags};

/// How long after an upload completed a retried CompleteMultipartUpload of the same parts
/// still gets the object (S3 answers such retries, sent by SDKs that lost the first answer).
pub const COMPLETED_UPLOAD_RETRY_MS: i64 = 15 * 60 * 1000;

/// A part as CompleteMultipartUpload names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// Part number.
    pub part_number: u32,
    /// ETag the client got from UploadPart (quotes allowed).
    pub etag: String,
    /// Checksums the client sent for the part, if any.
    pub checksums: Checksums,
}

/// A page of parts.
#[derive(Debug, Clone, Default)]
pub struct PartsPage {
    /// Parts, ascending.
    pub parts: Vec<PartRecord>,
    /// More parts follow.
    pub truncated: bool,
    /// The marker for the next page.
    pub next_marker: Option<u32>,
}

/// A page of uploads.
#[derive(Debug, Clone, Default)]
pub struct UploadsPage {
    /// Uploads, by key then initiation.
    pub uploads: Vec<UploadRecord>,
    /// Common prefixes when a delimiter was given.
    pub common_prefixes: Vec<String>,
    /// More uploads follow.
    pub truncated: bool,
    /// Next key marker.
    pub next_key_marker: Option<String>,
    /// Next upload-id marker.
    pub next_upload_id_marker: Option<UploadId>,
}

fn check_part_number(part_number: i64) -> Result<u32> {
    u32::try_from(part_number)
        .ok()
        .filter(|n| (1..=MAX_PARTS).contains(n))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "Part number must be an integer between 1 and {MAX_PARTS}, inclusive"
            ))
        })
}

/// Parses an upload id sent by a client; an unknown form is simply an unknown upload.
pub fn parse_upload_id(text: &str) -> Result<UploadId> {
    text.parse().map_err(|_| Error::NoSuchUpload)
}

/// What CreateMultipartUpload asks for besides bucket and key.
#[derive(Debug, Default)]
pub struct NewUpload {
    /// Headers and user metadata of the object-to-be.
    pub attrs: ObjectAttrs,
    /// Checksum algorithm of the parts.
    pub algorithm: Option<ChecksumAlgorithm>,
    /// Tags.
    pub tags: Tags,
    /// Object lock headers.
    pub lock: LockRequest,
    /// Server-side encryption headers.
    pub sse: crate::service::SseRequest,
}

impl ObjectService {
    /// Starts a multipart upload.
    pub async fn create_upload(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
        new: NewUpload,
    ) -> Result<UploadRecord> {
        let NewUpload {
            attrs,
            algorithm,
            tags,
            lock,
            sse,
        } = new;
        let sse = &sse;
        ObjectKey::new(key)?;
        check_attrs(&attrs)?;
        validate_tags(&tags).map_err(|e| Error::InvalidTag(e.0))?;
        let record = self.bucket(bucket).await?;
        let lock = self.resolve_lock(&record, lock)?;
        // Refused before anything is written or wrapped; each part is placed again.
        self.check_placement(&record, key)?;
        // One data key for the upload; each part's blob derives its own segment key from it.
        let encryption = self
            .new_object_key(ctx, &record, key, sse)
            .await?
            .map(|(_, enc)| enc);
        let upload = UploadRecord {
            encryption,
            tags,
            lock,
            upload_id: UploadId::random(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            initiated_ms: self.now_ms(),
            attrs,
            checksum_algorithm: algorithm,
        };
        self.meta.create_upload(&upload).await?;
        if let Some(enc) = &upload.encryption {
            self.log(ctx, self.key_used_event(ctx, "wrap", enc, bucket))
                .await?;
        }
        Ok(upload)
    }

    /// The upload `upload_id` of `bucket`/`key`, or `NoSuchUpload`.
    pub async fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadRecord> {
        let id = parse_upload_id(upload_id)?;
        match self.meta.get_upload(id).await? {
            Some(u) if u.bucket == bucket && u.key == key => Ok(u),
            _ => {
                self.bucket(bucket).await?;
                Err(Error::NoSuchUpload)
            }
        }
    }

    /// Stores one part from `body`.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i64,
        mut check: BodyCheck,
        body: ByteStream,
    ) -> Result<PartRecord> {
        let part_number = check_part_number(part_number)?;
        if check.content_length.is_some_and(|len| len > MAX_PART_BYTES) {
            return Err(Error::EntityTooLarge(MAX_PART_BYTES));
        }
        let upload = self.upload(bucket, key, upload_id).await?;
        if check.algorithm.is_none() {
            check.algorithm = upload.checksum_algorithm;
        }
        let (segment, digests) = self.write_part(ctx, &upload, body, check).await?;
        self.record_part(&upload, part_number, segment, digests)
            .await
    }

    /// Writes one part's blob, encrypted under the upload's data key if it has one.
    async fn write_part(
        &self,
        ctx: &RequestContext,
        upload: &UploadRecord,
        body: ByteStream,
        check: BodyCheck,
    ) -> Result<(Segment, digest::Digests)> {
        // The policy may have changed since the upload began: every part is placed anew.
        let bucket = self.bucket(&upload.bucket).await?;
        let placed = self.check_placement(&bucket, &upload.key)?;
        let cipher = self.part_cipher(ctx, upload).await?;
        self.write_blob(
            &placed,
            body,
            check,
            MAX_PART_BYTES,
            cipher.as_ref().map(|(c, seg)| WriteCipher {
                dek: &c.dek,
                segment_bytes: *seg,
                bucket: &upload.bucket,
                key: &upload.key,
            }),
        )
        .await
    }

    /// The upload's data key (unwrapped, and the unwrap logged) and segment size, if it is
    /// encrypted.
    async fn part_cipher(
        &self,
        ctx: &RequestContext,
        upload: &UploadRecord,
    ) -> Result<Option<(crate::service::ReadCipher, u32)>> {
        let Some(enc) = &upload.encryption else {
            return Ok(None);
        };
        let cipher = self
            .open_object_key(ctx, &upload.bucket, &upload.key, Some(enc), false)
            .await?;
        self.log(ctx, self.key_used_event(ctx, "unwrap", enc, &upload.bucket))
            .await?;
        Ok(cipher.map(|c| (c, enc.segment_bytes)))
    }

    async fn record_part(
        &self,
        upload: &UploadRecord,
        part_number: u32,
        segment: Segment,
        digests: digest::Digests,
    ) -> Result<PartRecord> {
        let part = PartRecord {
            part_number,
            blob: segment.blob,
            size_bytes: digests.len_bytes,
            sites: segment.sites.clone(),
            crc32c: segment.crc32c,
            etag: digest::hex(&digests.md5),
            checksums: digests.checksums,
            last_modified_ms: self.now_ms(),
        };
        if let Err(err) = self
            .meta
            .put_part(upload.upload_id, &part, self.now_ms())
            .await
        {
            self.discard(&[segment]).await;
            return Err(err.into());
        }
        Ok(part)
    }

    /// Stores one part copied from (a range of) an existing object.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part_copy(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i64,
        src_bucket: &str,
        src_key: &str,
        src_version: Option<&str>,
        src_range: Option<ByteRange>,
        src_conditions: &ReadConditions,
    ) -> Result<(PartRecord, i64)> {
        let part_number = check_part_number(part_number)?;
        let upload = self.upload(bucket, key, upload_id).await?;
        let source = self.head_object(src_bucket, src_key, src_version).await?;
        src_conditions.check(&source, true)?;
        // Unlike a GET's range, a copy's is not cut to the object: it must lie within it.
        let beyond = matches!(src_range, Some(ByteRange::From { last: Some(last), .. }) if last >= source.size_bytes);
        if beyond {
            return Err(Error::InvalidRange);
        }
        let range = match src_range {
            Some(r) => r.resolve(source.size_bytes).map_err(|_| {
                Error::InvalidArgument(format!("The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy, within an object of {} bytes", source.size_bytes))
            })?,
            None => 0..source.size_bytes,
        };
        let len = range.end - range.start;
        if len > MAX_PART_BYTES {
            return Err(Error::EntityTooLarge(MAX_PART_BYTES));
        }
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
            .read_segments(&source.segments, range, source_cipher)
            .await?;
        let check = BodyCheck {
            content_length: Some(len),
            algorithm: upload.checksum_algorithm,
            ..BodyCheck::default()
        };
        let (blob, digests) = self.write_part(ctx, &upload, body, check).await?;
        let part = self
            .record_part(&upload, part_number, blob, digests)
            .await?;
        Ok((part, source.last_modified_ms))
    }

    /// Completes an upload: validates the named parts and commits the object atomically.
    pub async fn complete_upload(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
        upload_id: &str,
        requested: &[CompletedPart],
        condition: &WriteCondition,
    ) -> Result<ObjectRecord> {
        let upload = match self.upload(bucket, key, upload_id).await {
            Err(Error::NoSuchUpload) => {
                return match self.completed_before(bucket, key, requested).await? {
                    Some(object) => Ok(object),
                    None => Err(Error::NoSuchUpload),
                };
            }
            other => other?,
        };
        if requested.is_empty() {
            return Err(Error::MalformedXml("The XML you provided was not well-formed or did not validate against our published schema: you must specify at least one part".into()));
        }
        if requested.len() > MAX_PARTS as usize {
            return Err(Error::InvalidArgument(format!(
                "at most {MAX_PARTS} parts are allowed"
            )));
        }
        for pair in requested.windows(2) {
            if pair[0].part_number >= pair[1].part_number {
                return Err(Error::InvalidPartOrder);
            }
        }
        self.precheck_condition(bucket, key, condition).await?;
        let stored = self.all_parts(upload.upload_id).await?;
        let mut chosen: Vec<&PartRecord> = Vec::with_capacity(requested.len());
        for want in requested {
            let Some(have) = stored.iter().find(|p| p.part_number == want.part_number) else {
                return Err(Error::InvalidPart(format!(
                    "One or more of the specified parts could not be found: part {} was never uploaded.",
                    want.part_number
                )));
            };
            if want.etag.trim_matches('"') != have.etag {
                return Err(Error::InvalidPart(format!(
                    "One or more of the specified parts could not be found: the ETag of part {} does not match.",
                    want.part_number
                )));
            }
            let mismatch = [
                (&want.checksums.crc32, &have.checksums.crc32),
                (&want.checksums.crc32c, &have.checksums.crc32c),
                (&want.checksums.sha1, &have.checksums.sha1),
                (&want.checksums.sha256, &have.checksums.sha256),
            ]
            .iter()
            .any(|(w, h)| w.is_some() && h.is_some() && w != h);
            if mismatch {
                return Err(Error::InvalidPart(format!(
                    "The checksum of part {} does not match the uploaded part.",
                    want.part_number
                )));
            }
            chosen.push(have);
        }
        let last = chosen.len() - 1;
        for (i, part) in chosen.iter().enumerate() {
            if i != last && part.size_bytes < MIN_PART_BYTES {
                return Err(Error::EntityTooSmall {
                    part: part.part_number,
                    size_bytes: part.size_bytes,
                });
            }
        }
        let size_bytes: u64 = chosen.iter().map(|p| p.size_bytes).sum();
        if size_bytes > MAX_OBJECT_BYTES {
            return Err(Error::EntityTooLarge(MAX_OBJECT_BYTES));
        }
        let etag = digest::multipart_etag(chosen.iter().map(|p| p.etag.as_str()))
            .ok_or_else(|| Error::InvalidPart("a stored part ETag is not hex".into()))?;
        let checksums = upload
            .checksum_algorithm
            .and_then(|alg| {
                digest::composite_checksum(
                    alg,
                    &chosen.iter().map(|p| &p.checksums).collect::<Vec<_>>(),
                )
            })
            .unwrap_or_default();
        let parts_count = u32::try_from(chosen.len()).map_err(|_| Error::InvalidPartOrder)?;
        let mut object = ObjectRecord {
            encryption: upload.encryption.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: String::new(),
            seq: 0,
            latest: true,
            delete_marker: false,
            tags: upload.tags.clone(),
            lock: upload.lock,
            size_bytes,
            etag,
            last_modified_ms: self.now_ms(),
            attrs: upload.attrs.clone(),
            checksums,
            parts_count: Some(parts_count),
            segments: chosen
                .iter()
                .map(|p| Segment {
                    blob: p.blob,
                    size_bytes: p.size_bytes,
                    sites: p.sites.clone(),
                    crc32c: p.crc32c,
                })
                .collect(),
        };
        let numbers: Vec<u32> = chosen.iter().map(|p| p.part_number).collect();
        object.version_id = self
            .meta
            .complete_upload(
                upload.upload_id,
                &object,
                &numbers,
                condition,
                self.now_ms(),
            )
            .await?;
        tracing::debug!(
            bucket,
            key,
            parts = parts_count,
            size_bytes,
            "multipart upload completed"
        );
        self.log(ctx, self.stored_event(&object, "multipart"))
            .await?;
        Ok(object)
    }

    /// A retried CompleteMultipartUpload (the client lost the first answer): the key's current
    /// version, when a multipart upload of exactly the parts asked for made it within
    /// [`COMPLETED_UPLOAD_RETRY_MS`]. Known by its ETag (the digest of the part ETags) and part
    /// count, as the upload itself is gone.
    async fn completed_before(
        &self,
        bucket: &str,
        key: &str,
        requested: &[CompletedPart],
    ) -> Result<Option<ObjectRecord>> {
        let Some(etag) = digest::multipart_etag(requested.iter().map(|p| p.etag.trim_matches('"')))
        else {
            return Ok(None);
        };
        let object = match self.head_object(bucket, key, None).await {
            Ok(object) => object,
            Err(Error::NoSuchKey | Error::DeleteMarker { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let recent =
            self.now_ms().saturating_sub(object.last_modified_ms) <= COMPLETED_UPLOAD_RETRY_MS;
        let same = object.etag == etag && object.parts_count == u32::try_from(requested.len()).ok();
        Ok((recent && same).then_some(object))
    }

    async fn all_parts(&self, upload_id: UploadId) -> Result<Vec<PartRecord>> {
        let mut parts = Vec::new();
        let mut after = 0;
        loop {
            let batch = self
                .meta
                .list_parts(upload_id, after, MAX_LIST_KEYS)
                .await?;
            let done = batch.len() < MAX_LIST_KEYS;
            if let Some(last) = batch.last() {
                after = last.part_number;
            }
            parts.extend(batch);
            if done {
                return Ok(parts);
            }
        }
    }

    /// Aborts an upload; its parts are collected later.
    pub async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let upload = self.upload(bucket, key, upload_id).await?;
        self.meta
            .abort_upload(upload.upload_id, self.now_ms())
            .await?;
        Ok(())
    }

    /// Lists the parts of an upload after `marker`.
    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        marker: u32,
        max_parts: usize,
    ) -> Result<(UploadRecord, PartsPage)> {
        let upload = self.upload(bucket, key, upload_id).await?;
        let max_parts = max_parts.min(MAX_LIST_KEYS);
        let mut parts = self
            .meta
            .list_parts(upload.upload_id, marker, max_parts + 1)
            .await?;
        let truncated = parts.len() > max_parts;
        parts.truncate(max_parts);
        let next_marker = if truncated {
            parts.last().map(|p| p.part_number)
        } else {
            None
        };
        Ok((
            upload,
            PartsPage {
                parts,
                truncated,
                next_marker,
            },
        ))
    }

    /// Lists the uploads of a bucket.
    pub async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        key_marker: &str,
        upload_id_marker: Option<&str>,
        max_uploads: usize,
    ) -> Result<UploadsPage> {
        self.bucket(bucket).await?;
        let max_uploads = max_uploads.min(MAX_LIST_KEYS);
        let delimiter = delimiter.filter(|d| !d.is_empty());
        // An upload-id marker only counts together with a key marker; an unknown one starts
        // after every upload of that key.
        let mut id_marker = if key_marker.is_empty() {
            None
        } else {
            upload_id_marker.and_then(|m| m.parse::<UploadId>().ok())
        };
        let mut key_cursor = key_marker.to_owned();
        let mut page = UploadsPage::default();
        let mut count = 0usize;
        'outer: loop {
            let batch = self
                .meta
                .list_uploads(bucket, prefix, &key_cursor, id_marker, MAX_LIST_KEYS)
                .await?;
            let full = batch.len() == MAX_LIST_KEYS;
            for upload in batch {
                key_cursor.clone_from(&upload.key);
                id_marker = Some(upload.upload_id);
                let common = delimiter.and_then(|d| {
                    let rest = upload.key.get(prefix.len()..)?;
                    rest.find(d)
                        .map(|pos| upload.key[..prefix.len() + pos + d.len()].to_owned())
                });
                if let Some(common) = &common
                    && page.common_prefixes.last() == Some(common)
                {
                    continue;
                }
                if count == max_uploads {
                    page.truncated = true;
                    break 'outer;
                }
                count += 1;
                page.next_key_marker = Some(upload.key.clone());
                page.next_upload_id_marker = Some(upload.upload_id);
                match common {
                    Some(common) => page.common_prefixes.push(common),
                    None => page.uploads.push(upload),
                }
            }
            if !full {
                break;
            }
        }
        if !page.truncated {
            page.next_key_marker = None;
            page.next_upload_id_marker = None;
        }
        Ok(page)
    }
}

/// Checksum algorithm named by `x-amz-checksum-algorithm`.
pub fn parse_checksum_algorithm(name: &str) -> Result<ChecksumAlgorithm> {
    match name.to_ascii_uppercase().as_str() {
        "CRC32" => Ok(ChecksumAlgorithm::Crc32),
        "CRC32C" => Ok(ChecksumAlgorithm::Crc32c),
        "SHA1" => Ok(ChecksumAlgorithm::Sha1),
        "SHA256" => Ok(ChecksumAlgorithm::Sha256),
        other => Err(Error::InvalidArgument(format!(
            "Checksum algorithm {other} is not supported"
        ))),
    }
}

/// The set of algorithms present in a checksum set (re-exported for the server).
#[must_use]
pub fn algorithms_of(checksums: &Checksums) -> ChecksumSet {
    ChecksumSet::of(checksums)
}
