//! What both metadata stores share: error mapping, value conversions, and row decoding written
//! once over sqlx's database-generic `Row`.

use vallum_core::meta::{ChecksumAlgorithm, ListStart, MetaError, MetaResult, WriteCondition};

/// Whether a write condition holds for the key's current ETag.
pub(crate) fn check_condition(current: Option<&str>, condition: &WriteCondition) -> MetaResult<()> {
    let holds = match condition {
        WriteCondition::None => true,
        WriteCondition::IfAbsent => current.is_none(),
        WriteCondition::IfMatch(etag) => current.is_some_and(|c| etag == "*" || c == etag),
        WriteCondition::IfNoneMatch(etag) => current.is_none_or(|c| c != etag),
    };
    if holds {
        Ok(())
    } else {
        Err(MetaError::PreconditionFailed)
    }
}

/// Maps a database error: what a retry may cure becomes `Unavailable` (503 to clients).
pub(crate) fn backend(err: sqlx::Error) -> MetaError {
    if is_disk_full(&err) {
        return MetaError::StorageFull(err.to_string());
    }
    let retryable = match &err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                pg_retryable(&code)
            } else {
                sqlite_retryable(&code)
            }
        }
        _ => false,
    };
    if retryable {
        MetaError::Unavailable(format!("metadata store: {err}"))
    } else {
        MetaError::Backend(err.to_string())
    }
}

/// Maps an error of a rusqlite connection (the embedded store's group commit and object
/// lookups) as [`backend`] maps sqlx's: a full disk is `StorageFull`, a busy or locked
/// database `Unavailable` (a retry may cure it), the rest `Backend`.
pub(crate) fn sqlite_error(err: rusqlite::Error) -> MetaError {
    use rusqlite::ErrorCode;
    match err.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => MetaError::StorageFull(err.to_string()),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            MetaError::Unavailable(format!("metadata store: {err}"))
        }
        _ => MetaError::Backend(err.to_string()),
    }
}

/// SQLite's SQLITE_FULL (13, extended codes keep it in the low byte), PostgreSQL's
/// `disk_full` (53100), or the operating system's ENOSPC.
fn is_disk_full(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(io) => io.raw_os_error() == Some(ENOSPC),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                code == "53100"
            } else {
                code.parse::<u32>().is_ok_and(|n| n & 0xff == SQLITE_FULL)
            }
        }
        _ => false,
    }
}

/// `SQLITE_FULL`: an insert failed because the disk (or the page-count limit) is full.
const SQLITE_FULL: u32 = 13;
/// `ENOSPC` on Linux.
const ENOSPC: i32 = 28;

/// PostgreSQL SQLSTATE classes 08 (connection), 40 (serialization failure, deadlock), 53
/// (insufficient resources) and 57 (operator intervention: shutdown, restart).
fn pg_retryable(sqlstate: &str) -> bool {
    ["08", "40", "53", "57"]
        .iter()
        .any(|class| sqlstate.starts_with(class))
}

/// SQLite BUSY and LOCKED (primary codes 5 and 6; extended codes keep them in the low byte).
fn sqlite_retryable(code: &str) -> bool {
    code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> MetaError {
    MetaError::Corrupt(what.to_string())
}

pub(crate) fn to_i64(v: u64) -> MetaResult<i64> {
    i64::try_from(v)
        .map_err(|_| MetaError::Backend(format!("{v} does not fit a signed 64-bit column")))
}

pub(crate) fn to_u64(v: i64) -> MetaResult<u64> {
    u64::try_from(v).map_err(|_| corrupt(format!("negative size {v}")))
}

pub(crate) fn json<T: serde::Serialize>(value: &T) -> MetaResult<String> {
    serde_json::to_string(value).map_err(|e| MetaError::Backend(e.to_string()))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> MetaResult<T> {
    serde_json::from_str(text).map_err(corrupt)
}

pub(crate) fn algorithm_name(a: ChecksumAlgorithm) -> &'static str {
    match a {
        ChecksumAlgorithm::Crc32 => "CRC32",
        ChecksumAlgorithm::Crc32c => "CRC32C",
        ChecksumAlgorithm::Sha1 => "SHA1",
        ChecksumAlgorithm::Sha256 => "SHA256",
    }
}

pub(crate) fn algorithm_from(name: &str) -> MetaResult<ChecksumAlgorithm> {
    match name {
        "CRC32" => Ok(ChecksumAlgorithm::Crc32),
        "CRC32C" => Ok(ChecksumAlgorithm::Crc32c),
        "SHA1" => Ok(ChecksumAlgorithm::Sha1),
        "SHA256" => Ok(ChecksumAlgorithm::Sha256),
        other => Err(corrupt(format!("unknown checksum algorithm {other}"))),
    }
}

/// Decodes a row into a record (expanded per backend, whose row types differ).
macro_rules! bucket_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;

        Ok::<_, vallum_core::meta::MetaError>(vallum_core::meta::BucketRecord {
            name: $row.try_get("name").map_err($crate::common::backend)?,
            created_ms: $row
                .try_get("created_ms")
                .map_err($crate::common::backend)?,
            location: $row.try_get("location").map_err($crate::common::backend)?,
            versioning: vallum_core::versioning::Versioning::parse(
                &$row
                    .try_get::<String, _>("versioning")
                    .map_err($crate::common::backend)?,
            )?,
            object_lock: $row
                .try_get::<Option<String>, _>("object_lock")
                .map_err($crate::common::backend)?
                .as_deref()
                .map($crate::common::from_json)
                .transpose()?,
            lifecycle: $row
                .try_get::<Option<String>, _>("lifecycle")
                .map_err($crate::common::backend)?
                .as_deref()
                .map($crate::common::from_json)
                .transpose()?,
            encryption: $row
                .try_get::<Option<String>, _>("encryption")
                .map_err($crate::common::backend)?
                .as_deref()
                .map($crate::common::from_json)
                .transpose()?,
            boundary: $row
                .try_get::<Option<String>, _>("boundary")
                .map_err($crate::common::backend)?
                .as_deref()
                .map($crate::common::from_json)
                .transpose()?,
        })
    }};
}
pub(crate) use bucket_from_row;

/// Decodes a row into a record (expanded per backend, whose row types differ).
macro_rules! upload_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;

        let id: String = $row.try_get("upload_id").map_err($crate::common::backend)?;
        let attrs: String = $row.try_get("attrs").map_err($crate::common::backend)?;
        let algorithm: Option<String> = $row
            .try_get("checksum_algorithm")
            .map_err($crate::common::backend)?;
        Ok::<_, vallum_core::meta::MetaError>(vallum_core::meta::UploadRecord {
            upload_id: <vallum_types::UploadId as std::str::FromStr>::from_str(&id)
                .map_err($crate::common::corrupt)?,
            bucket: $row.try_get("bucket").map_err($crate::common::backend)?,
            key: $row.try_get("key").map_err($crate::common::backend)?,
            initiated_ms: $row
                .try_get("initiated_ms")
                .map_err($crate::common::backend)?,
            attrs: $crate::common::from_json(&attrs)?,
            checksum_algorithm: algorithm
                .as_deref()
                .map($crate::common::algorithm_from)
                .transpose()?,
            tags: $crate::common::from_json(
                &$row
                    .try_get::<String, _>("tags")
                    .map_err($crate::common::backend)?,
            )?,
            lock: $crate::common::from_json(
                &$row
                    .try_get::<String, _>("lock_state")
                    .map_err($crate::common::backend)?,
            )?,
            encryption: $row
                .try_get::<Option<String>, _>("encryption")
                .map_err($crate::common::backend)?
                .as_deref()
                .map($crate::common::from_json)
                .transpose()?,
        })
    }};
}
pub(crate) use upload_from_row;

/// Decodes a row into a record (expanded per backend, whose row types differ).
macro_rules! part_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;

        let blob: String = $row.try_get("blob_id").map_err($crate::common::backend)?;
        let checksums: String = $row.try_get("checksums").map_err($crate::common::backend)?;
        let number: i64 = $row
            .try_get("part_number")
            .map_err($crate::common::backend)?;
        Ok::<_, vallum_core::meta::MetaError>(vallum_core::meta::PartRecord {
            part_number: u32::try_from(number).map_err($crate::common::corrupt)?,
            blob: <vallum_types::BlobId as std::str::FromStr>::from_str(&blob)
                .map_err($crate::common::corrupt)?,
            size_bytes: $crate::common::to_u64(
                $row.try_get("size_bytes")
                    .map_err($crate::common::backend)?,
            )?,
            sites: vallum_core::meta::decode_sites(
                &$row
                    .try_get::<String, _>("sites")
                    .map_err($crate::common::backend)?,
            ),
            crc32c: $crate::common::crc_from(
                $row.try_get("crc32c").map_err($crate::common::backend)?,
            )?,
            etag: $row.try_get("etag").map_err($crate::common::backend)?,
            checksums: $crate::common::from_json(&checksums)?,
            last_modified_ms: $row
                .try_get("last_modified_ms")
                .map_err($crate::common::backend)?,
        })
    }};
}
pub(crate) use part_from_row;

/// Appends one version of a bucket's boundary policy to its history.
pub(crate) const BOUNDARY_HISTORY_INSERT: &str =
    "INSERT INTO boundary_history (bucket, version, document) VALUES ($1, $2, $3)";
/// Every version of a bucket's boundary policy, oldest first.
pub(crate) const BOUNDARY_HISTORY_SELECT: &str =
    "SELECT document FROM boundary_history WHERE bucket = $1 ORDER BY version";

/// A bucket record may not arrive with a boundary policy: a policy's versions are written by
/// `update_bucket`, which keeps the history; accepting one here would drop it silently.
pub(crate) fn refuse_created_boundary(bucket: &vallum_core::meta::BucketRecord) -> MetaResult<()> {
    if bucket.boundary.is_some() {
        return Err(MetaError::Invalid(
            "a bucket is created without a boundary policy; set one with update_bucket".into(),
        ));
    }
    Ok(())
}

/// The columns every bucket query selects.
pub(crate) const BUCKET_COLUMNS: &str =
    "name, created_ms, location, versioning, object_lock, lifecycle, encryption, boundary";

/// The latest version of a key joined with its segments, in order: a single statement, so the
/// row and its segments come from one snapshot even while another transaction replaces the
/// version. Both backends accept `$1`/`$2` placeholders.
pub(crate) const LATEST_WITH_SEGMENTS: &str = "SELECT v.*, s.blob_id, s.size_bytes AS seg_size, s.sites AS seg_sites, s.crc32c AS seg_crc FROM      (SELECT * FROM versions WHERE bucket = $1 AND key = $2 ORDER BY seq DESC LIMIT 1) v      LEFT JOIN segments s ON s.bucket = v.bucket AND s.key = v.key AND s.vseq = v.seq ORDER BY s.seq";
/// One named version of a key joined with its segments (`$3` is the version id).
pub(crate) const VERSION_WITH_SEGMENTS: &str = "SELECT v.*, s.blob_id, s.size_bytes AS seg_size, s.sites AS seg_sites, s.crc32c AS seg_crc FROM      (SELECT * FROM versions WHERE bucket = $1 AND key = $2 AND version_id = $3) v      LEFT JOIN segments s ON s.bucket = v.bucket AND s.key = v.key AND s.vseq = v.seq ORDER BY s.seq";

/// Decodes the rows of [`LATEST_WITH_SEGMENTS`] or [`VERSION_WITH_SEGMENTS`] into a record.
macro_rules! object_from_joined_rows {
    ($rows:expr) => {{
        use sqlx::Row as _;

        let Some(first) = $rows.first() else {
            return Ok(None);
        };
        let attrs: String = first.try_get("attrs").map_err($crate::common::backend)?;
        let checksums: String = first
            .try_get("checksums")
            .map_err($crate::common::backend)?;
        let parts: Option<i64> = first
            .try_get("parts_count")
            .map_err($crate::common::backend)?;
        let mut segments = Vec::with_capacity($rows.len());
        for row in $rows {
            let blob: Option<String> = row.try_get("blob_id").map_err($crate::common::backend)?;
            if let Some(blob) = blob {
                let size: i64 = row.try_get("seg_size").map_err($crate::common::backend)?;
                let sites: String = row.try_get("seg_sites").map_err($crate::common::backend)?;
                segments.push(vallum_core::meta::Segment {
                    sites: vallum_core::meta::decode_sites(&sites),
                    crc32c: $crate::common::crc_from(
                        row.try_get("seg_crc").map_err($crate::common::backend)?,
                    )?,
                    blob: blob
                        .parse::<vallum_types::BlobId>()
                        .map_err($crate::common::corrupt)?,
                    size_bytes: $crate::common::to_u64(size)?,
                });
            }
        }
        Ok::<_, vallum_core::meta::MetaError>(Some(vallum_core::meta::ObjectRecord {
            bucket: first.try_get("bucket").map_err($crate::common::backend)?,
            key: first.try_get("key").map_err($crate::common::backend)?,
            version_id: first
                .try_get("version_id")
                .map_err($crate::common::backend)?,
            seq: first.try_get("seq").map_err($crate::common::backend)?,
            latest: first.try_get("latest").map_err($crate::common::backend)?,
            delete_marker: first
                .try_get("delete_marker")
                .map_err($crate::common::backend)?,
            size_bytes: $crate::common::to_u64(
                first
                    .try_get("size_bytes")
                    .map_err($crate::common::backend)?,
            )?,
            etag: first.try_get("etag").map_err($crate::common::backend)?,
            last_modified_ms: first
                .try_get("last_modified_ms")
                .map_err($crate::common::backend)?,
            attrs: $crate::common::from_json(&attrs)?,
            checksums: $crate::common::from_json(&checksums)?,
            parts_count: parts
                .map(u32::try_from)
                .transpose()
                .map_err($crate::common::corrupt)?,
            segments,
            tags: $crate::common::from_json(
                &first
                    .try_get::<String, _>("tags")
                    .map_err($crate::common::backend)?,
            )?,
            lock: $crate::common::from_json(
                &first
                    .try_get::<String, _>("lock_state")
                    .map_err($crate::common::backend)?,
            )?,
            encryption: first
                .try_get::<Option<String>, _>("encryption")
                .map_err($crate::common::backend)?
                .as_deref()
                .map($crate::common::from_json)
                .transpose()?,
        }))
    }};
}
pub(crate) use object_from_joined_rows;

/// A list page from an inclusive lower bound (`$1` bucket, `$2` bound, `$3` limit).
pub(crate) const LIST_FROM_INCLUSIVE: &str = "SELECT key, size_bytes, etag, last_modified_ms FROM versions WHERE bucket = $1 AND key >= $2 AND latest = TRUE AND delete_marker = FALSE ORDER BY key LIMIT $3";
/// A list page from an exclusive lower bound.
pub(crate) const LIST_FROM_EXCLUSIVE: &str = "SELECT key, size_bytes, etag, last_modified_ms FROM versions WHERE bucket = $1 AND key > $2 AND latest = TRUE AND delete_marker = FALSE ORDER BY key LIMIT $3";

/// The one lower bound where a listing of `prefix` from `start` begins, and whether it is
/// inclusive. Giving the database a single bound matters: with two lower bounds on `key`
/// SQLite ranges the index on one and filters the other, scanning from the prefix.
pub(crate) fn list_lower_bound<'a>(
    prefix: &'a str,
    start: ListStart<'a>,
) -> (&'a str, &'static str) {
    match start {
        ListStart::After(k) if k >= prefix => (k, LIST_FROM_EXCLUSIVE),
        ListStart::AtOrAfter(k) if k >= prefix => (k, LIST_FROM_INCLUSIVE),
        _ => (prefix, LIST_FROM_INCLUSIVE),
    }
}

/// The columns of a version summary.
const VERSION_COLUMNS: &str = "key, version_id, seq, latest, delete_marker, size_bytes, etag, last_modified_ms, tags, lock_state";

/// The version-listing query for `start` (after binding `$1` bucket): the bound and how many
/// further parameters follow. Versions are ordered by key, then newest first; each query has a
/// single lower bound on key (see [`list_lower_bound`]).
pub(crate) fn version_list_sql(prefix: &str, start: vallum_core::meta::VersionStart<'_>) -> String {
    use vallum_core::meta::VersionStart;
    match start {
        VersionStart::AfterVersion(..) => format!(
            "SELECT {VERSION_COLUMNS} FROM versions WHERE bucket = $1 AND key = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4"
        ),
        VersionStart::AfterKey(k) if k >= prefix => format!(
            "SELECT {VERSION_COLUMNS} FROM versions WHERE bucket = $1 AND key > $2 ORDER BY key, seq DESC LIMIT $3"
        ),
        _ => format!(
            "SELECT {VERSION_COLUMNS} FROM versions WHERE bucket = $1 AND key >= $2 ORDER BY key, seq DESC LIMIT $3"
        ),
    }
}

/// Decodes a version summary row.
macro_rules! version_summary_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;

        Ok::<_, vallum_core::meta::MetaError>(vallum_core::meta::VersionSummary {
            key: $row.try_get("key").map_err($crate::common::backend)?,
            version_id: $row
                .try_get("version_id")
                .map_err($crate::common::backend)?,
            seq: $row.try_get("seq").map_err($crate::common::backend)?,
            latest: $row.try_get("latest").map_err($crate::common::backend)?,
            delete_marker: $row
                .try_get("delete_marker")
                .map_err($crate::common::backend)?,
            size_bytes: $crate::common::to_u64(
                $row.try_get("size_bytes")
                    .map_err($crate::common::backend)?,
            )?,
            etag: $row.try_get("etag").map_err($crate::common::backend)?,
            last_modified_ms: $row
                .try_get("last_modified_ms")
                .map_err($crate::common::backend)?,
            tags: $crate::common::from_json(
                &$row
                    .try_get::<String, _>("tags")
                    .map_err($crate::common::backend)?,
            )?,
            lock: $crate::common::from_json(
                &$row
                    .try_get::<String, _>("lock_state")
                    .map_err($crate::common::backend)?,
            )?,
        })
    }};
}
pub(crate) use version_summary_from_row;

/// The entries of `rows` (index, entry), which must run without a gap from `from`.
pub(crate) fn contiguous(from: u64, rows: Vec<(i64, Vec<u8>)>) -> MetaResult<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(rows.len());
    for (i, (idx, entry)) in rows.into_iter().enumerate() {
        if to_u64(idx)? != from + i as u64 {
            return Err(corrupt(format!(
                "transparency-log sequence has a gap before index {idx}"
            )));
        }
        out.push(entry);
    }
    Ok(out)
}

/// `LIKE` pattern selecting stored encryption JSON that names `key_id` (exact match is checked
/// after parsing).
pub(crate) fn key_id_pattern(key_id: &str) -> String {
    let escaped: String = key_id
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%\"key_id\":\"{escaped}\"%")
}

pub(crate) const KEYED_VERSIONS_SQL: &str = "SELECT bucket, key, seq, version_id, size_bytes, encryption FROM versions \
     WHERE encryption LIKE $1 ESCAPE '\\' AND (bucket, key, seq) > ($2, $3, $4) \
     ORDER BY bucket, key, seq LIMIT $5";

pub(crate) const REWRAP_SQL: &str = "UPDATE versions SET encryption = $1 WHERE bucket = $2 AND key = $3 AND seq = $4 AND encryption = $5";

/// `keyed_versions` and `rewrap_version` as free functions over a backend's pool type (the same
/// SQL on both backends); the `MetaStore` methods delegate to them.
macro_rules! keyed_versions_fns {
    ($pool:ty) => {
        async fn keyed_versions_in(
            pool: &$pool,
            key_id: &str,
            after: Option<&vallum_core::meta::KeyedVersion>,
            limit: usize,
        ) -> MetaResult<Vec<vallum_core::meta::KeyedVersion>> {
            let (b, k, s) = after.map_or((String::new(), String::new(), -1), |a| {
                (a.bucket.clone(), a.key.clone(), a.seq)
            });
            let rows = sqlx::query($crate::common::KEYED_VERSIONS_SQL)
                .bind($crate::common::key_id_pattern(key_id))
                .bind(b)
                .bind(k)
                .bind(s)
                .bind(limit as i64)
                .fetch_all(pool)
                .await
                .map_err(backend)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let text: String = row.try_get("encryption").map_err(backend)?;
                let encryption: vallum_core::meta::Encryption = $crate::common::from_json(&text)?;
                out.push(vallum_core::meta::KeyedVersion {
                    bucket: row.try_get("bucket").map_err(backend)?,
                    key: row.try_get("key").map_err(backend)?,
                    seq: row.try_get("seq").map_err(backend)?,
                    version_id: row.try_get("version_id").map_err(backend)?,
                    size_bytes: row.try_get::<i64, _>("size_bytes").map_err(backend)? as u64,
                    encryption,
                });
            }
            // The LIKE pattern is a coarse filter; the exact key id is checked here.
            out.retain(|v| v.encryption.wrapped.key_id == key_id);
            Ok(out)
        }

        async fn rewrap_version_in(
            pool: &$pool,
            version: &vallum_core::meta::KeyedVersion,
            new: &vallum_core::meta::Encryption,
        ) -> MetaResult<bool> {
            let done = sqlx::query($crate::common::REWRAP_SQL)
                .bind(json(new)?)
                .bind(&version.bucket)
                .bind(&version.key)
                .bind(version.seq)
                .bind(json(&version.encryption)?)
                .execute(pool)
                .await
                .map_err(backend)?;
            Ok(done.rows_affected() == 1)
        }
    };
}
pub(crate) use keyed_versions_fns;

/// The site list recorded for a blob by a segment, a part or the trash (`$1` the blob id).
pub(crate) const BLOB_SITES: &str = "SELECT sites FROM segments WHERE blob_id = $1 UNION ALL SELECT sites FROM parts WHERE blob_id = $1 UNION ALL SELECT sites FROM trash WHERE blob_id = $1 LIMIT 1";

/// Blobs of objects and uploads by blob id after `$1` (empty: from the start), `$2` at most.
pub(crate) const BLOB_PLACEMENTS: &str = "SELECT blob_id, bucket, key, size_bytes, sites, crc32c FROM (\
     SELECT s.blob_id, s.bucket, s.key, s.size_bytes, s.sites, s.crc32c FROM segments s WHERE s.blob_id > $1 \
     UNION ALL SELECT p.blob_id, u.bucket, u.key, p.size_bytes, p.sites, p.crc32c FROM parts p JOIN uploads u ON u.upload_id = p.upload_id WHERE p.blob_id > $1\
     ) AS b ORDER BY blob_id LIMIT $2";

/// Blobs and bytes per bucket and site list (`$1` a bucket, or NULL for all).
pub(crate) const SITE_USAGE: &str = "SELECT bucket, sites, CAST(COUNT(*) AS BIGINT) AS blobs, CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) AS bytes FROM (\
     SELECT s.bucket, s.sites, s.size_bytes FROM segments s WHERE $1 IS NULL OR s.bucket = $1 \
     UNION ALL SELECT u.bucket, p.sites, p.size_bytes FROM parts p JOIN uploads u ON u.upload_id = p.upload_id WHERE $1 IS NULL OR u.bucket = $1\
     ) AS b GROUP BY bucket, sites ORDER BY bucket, sites";

/// Decodes a row of [`SITE_USAGE`].
pub(crate) fn site_usage_from(
    bucket: String,
    sites: &str,
    blobs: i64,
    bytes: i64,
) -> MetaResult<vallum_core::meta::SiteUsage> {
    Ok(vallum_core::meta::SiteUsage {
        bucket,
        sites: vallum_core::meta::decode_sites(sites),
        blobs: to_u64(blobs)?,
        bytes: to_u64(bytes)?,
    })
}

/// A stored CRC32C (a BIGINT, as both backends have no unsigned 32-bit type).
pub(crate) fn crc_from(value: Option<i64>) -> MetaResult<Option<u32>> {
    value.map(u32::try_from).transpose().map_err(corrupt)
}

/// The stored form of a CRC32C.
pub(crate) fn crc_to(value: Option<u32>) -> Option<i64> {
    value.map(i64::from)
}

/// A trash row's blob and sites.
pub(crate) fn trashed(blob: &str, sites: &str) -> MetaResult<vallum_core::meta::TrashedBlob> {
    Ok(vallum_core::meta::TrashedBlob {
        blob: blob.parse().map_err(corrupt)?,
        sites: vallum_core::meta::decode_sites(sites),
    })
}

/// Decodes a row of [`BLOB_PLACEMENTS`].
macro_rules! blob_placement_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;

        let blob: String = $row.try_get("blob_id").map_err($crate::common::backend)?;
        let sites: String = $row.try_get("sites").map_err($crate::common::backend)?;
        Ok::<_, vallum_core::meta::MetaError>(vallum_core::meta::BlobPlacement {
            blob: blob.parse().map_err($crate::common::corrupt)?,
            bucket: $row.try_get("bucket").map_err($crate::common::backend)?,
            key: $row.try_get("key").map_err($crate::common::backend)?,
            size_bytes: $crate::common::to_u64(
                $row.try_get("size_bytes")
                    .map_err($crate::common::backend)?,
            )?,
            sites: vallum_core::meta::decode_sites(&sites),
            crc32c: $crate::common::crc_from(
                $row.try_get("crc32c").map_err($crate::common::backend)?,
            )?,
        })
    }};
}
pub(crate) use blob_placement_from_row;

#[cfg(test)]
mod tests {
    use super::{pg_retryable, sqlite_retryable};

    #[test]
    fn retryable_database_codes() {
        for code in [
            "57P01", "57P03", "08006", "08001", "40001", "40P01", "53300",
        ] {
            assert!(pg_retryable(code), "{code}");
        }
        for code in ["23505", "42P01", "22021", "XX000"] {
            assert!(!pg_retryable(code), "{code}");
        }
        for code in ["5", "6", "517", "262"] {
            assert!(sqlite_retryable(code), "{code}");
        }
        for code in ["19", "2067", "1", ""] {
            assert!(!sqlite_retryable(code), "{code}");
        }
    }
}
