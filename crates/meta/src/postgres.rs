//! The PostgreSQL metadata store, for several stateless gateways over one database. Same
//! tables and semantics as the embedded store (both pass `conformance::meta`).
//!
//! Atomicity across gateways comes from PostgreSQL, never from the gateways: each mutation is
//! one transaction; a write to a key takes a transaction-scoped advisory lock on that key (so
//! `If-None-Match: *` racers serialize even when the row does not exist yet), holds the bucket
//! row `FOR SHARE` (so DeleteBucket, which takes it `FOR UPDATE`, cannot interleave), and part
//! uploads hold their upload row `FOR SHARE` while completion and abort take it `FOR UPDATE`.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use vallum_core::meta::{
    BucketRecord, ListStart, LogSequencing, MetaError, MetaResult, ObjectIndex, ObjectRecord,
    ObjectSummary, PartRecord, TrashedBlob, UploadRecord, Uploads, VersionStart, VersionSummary,
    WriteCondition,
};
use vallum_core::meta::{BucketUpdate, apply_bucket_update};
use vallum_core::residency::BucketBoundary;
use vallum_types::{BlobId, UploadId};

use crate::common::{
    BOUNDARY_HISTORY_INSERT, BOUNDARY_HISTORY_SELECT, BUCKET_COLUMNS, LATEST_WITH_SEGMENTS,
    VERSION_WITH_SEGMENTS, algorithm_name, backend, bucket_from_row, check_condition, json,
    list_lower_bound, object_from_joined_rows, part_from_row, refuse_created_boundary, to_i64,
    to_u64, trashed, upload_from_row, version_list_sql, version_summary_from_row,
};

crate::versions::version_logic!(PgRow);
crate::shared::shared_ports!(PgMetaStore, read: pool, write: pool);

async fn insert_segments(tx: &mut Tx<'_>, object: &ObjectRecord, vseq: i64) -> MetaResult<()> {
    let blobs: Vec<String> = object.segments.iter().map(|s| s.blob.to_string()).collect();
    let sizes = object
        .segments
        .iter()
        .map(|s| to_i64(s.size_bytes))
        .collect::<MetaResult<Vec<i64>>>()?;
    let sites: Vec<String> = object
        .segments
        .iter()
        .map(|s| vallum_core::meta::encode_sites(&s.sites))
        .collect();
    let crcs: Vec<Option<i64>> = object
        .segments
        .iter()
        .map(|s| crate::common::crc_to(s.crc32c))
        .collect();
    sqlx::query(
        "INSERT INTO segments (blob_id, bucket, key, vseq, seq, size_bytes, sites, crc32c) \
         SELECT b, $3, $4, $5, s.ord - 1, z, w, c FROM unnest($1::text[], $2::bigint[], $6::text[], $7::bigint[]) WITH ORDINALITY AS s(b, z, w, c, ord)",
    )
    .bind(&blobs)
    .bind(&sizes)
    .bind(&object.bucket)
    .bind(&object.key)
    .bind(vseq)
    .bind(&sites)
    .bind(&crcs)
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(())
}

fn version_row(row: &PgRow) -> MetaResult<VersionSummary> {
    version_summary_from_row!(row)
}

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_initial.sql"),
    include_str!("../migrations/postgres/0002_leases.sql"),
    include_str!("../migrations/postgres/0003_versions.sql"),
    include_str!("../migrations/postgres/0004_ledger.sql"),
    include_str!("../migrations/postgres/0005_encryption.sql"),
    include_str!("../migrations/postgres/0006_bucket_encryption.sql"),
    include_str!("../migrations/postgres/0007_boundary.sql"),
    include_str!("../migrations/postgres/0008_replicas.sql"),
    include_str!("../migrations/postgres/0009_iam.sql"),
    include_str!("../migrations/postgres/0010_records.sql"),
];
/// The schema version this build writes.
pub const PG_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
/// Connections per gateway.
const POOL_CONNECTIONS: u32 = 16;
/// Advisory lock key held while migrating, so gateways starting together migrate once.
const MIGRATION_LOCK: i64 = 0x7661_6c6c_756d_0001;
/// Advisory lock key that serialises appends to the shared transparency-log sequence.
const LEDGER_LOCK: i64 = 0x7661_6c6c_756d_0002;
/// How long a request waits for a connection before failing with ServiceUnavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

use crate::common::contiguous;

fn bucket_row(row: &PgRow) -> MetaResult<BucketRecord> {
    bucket_from_row!(row)
}

fn upload_row(row: &PgRow) -> MetaResult<UploadRecord> {
    upload_from_row!(row)
}

fn part_row(row: &PgRow) -> MetaResult<PartRecord> {
    part_from_row!(row)
}

/// The PostgreSQL metadata store.
#[derive(Debug, Clone)]
pub struct PgMetaStore {
    pool: PgPool,
}

pub(crate) type Tx<'a> = Transaction<'a, Postgres>;

impl PgMetaStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and migrates.
    /// Connects once to `url` and asks the server's version, changing nothing (no
    /// migration): for `vallum config check`.
    pub async fn ping(url: &str) -> MetaResult<String> {
        use sqlx::Connection as _;
        let mut conn = tokio::time::timeout(ACQUIRE_TIMEOUT, sqlx::PgConnection::connect(url))
            .await
            .map_err(|_| {
                MetaError::Unavailable(format!(
                    "metadata store: no connection within {} s",
                    ACQUIRE_TIMEOUT.as_secs()
                ))
            })?
            .map_err(backend)?;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut conn)
            .await
            .map_err(backend)?;
        let _ = conn.close().await;
        Ok(format!("server version {version}"))
    }

    pub async fn connect(url: &str) -> MetaResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(backend)?;
        Self::migrate(&pool).await?;
        Ok(Self { pool })
    }

    /// Applies missing migrations in one transaction (PostgreSQL DDL is transactional) under
    /// a transaction-scoped advisory lock, so gateways starting together migrate once.
    async fn migrate(pool: &PgPool) -> MetaResult<()> {
        let mut tx = pool.begin().await.map_err(backend)?;
        Self::run(
            &mut tx,
            &format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"),
        )
        .await?;
        Self::run(
            &mut tx,
            "CREATE TABLE IF NOT EXISTS vallum_schema (version BIGINT NOT NULL)",
        )
        .await?;
        let current = Self::schema_version(&mut tx).await?;
        if current > PG_SCHEMA_VERSION {
            return Err(MetaError::Backend(format!(
                "the database has schema version {current}; this build knows up to {PG_SCHEMA_VERSION}"
            )));
        }
        for (index, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(current).unwrap_or(0))
        {
            for statement in statements(sql) {
                Self::run(&mut tx, statement).await?;
            }
            let version = index + 1;
            Self::run(
                &mut tx,
                &format!("INSERT INTO vallum_schema (version) VALUES ({version})"),
            )
            .await?;
            tracing::info!(version, "PostgreSQL metadata schema migrated");
        }
        tx.commit().await.map_err(backend)
    }

    async fn run(tx: &mut Tx<'_>, sql: &str) -> MetaResult<()> {
        sqlx::query(sql).execute(&mut **tx).await.map_err(backend)?;
        Ok(())
    }

    async fn schema_version(tx: &mut Tx<'_>) -> MetaResult<i64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM vallum_schema")
            .fetch_one(&mut **tx)
            .await
            .map_err(backend)?;
        Ok(v.unwrap_or(0))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> MetaResult<Tx<'static>> {
        self.pool.begin().await.map_err(backend)
    }

    async fn lock_key(tx: &mut Tx<'_>, kind: &str, a: &str, b: &str) -> MetaResult<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("{kind}:{}:{a}/{b}", a.len()))
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Holds the bucket row so the bucket cannot be deleted or reconfigured before the
    /// transaction ends, and returns it.
    async fn hold_bucket(tx: &mut Tx<'_>, name: &str, exclusive: bool) -> MetaResult<BucketRecord> {
        let lock = if exclusive { "FOR UPDATE" } else { "FOR SHARE" };
        let row = sqlx::query(&format!(
            "SELECT {BUCKET_COLUMNS} FROM buckets WHERE name = $1 {lock}"
        ))
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
        row.as_ref()
            .map(bucket_row)
            .transpose()?
            .ok_or(MetaError::NoSuchBucket)
    }

    async fn hold_upload(tx: &mut Tx<'_>, upload_id: &str, exclusive: bool) -> MetaResult<()> {
        let sql = if exclusive {
            "SELECT 1 FROM uploads WHERE upload_id = $1 FOR UPDATE"
        } else {
            "SELECT 1 FROM uploads WHERE upload_id = $1 FOR SHARE"
        };
        match sqlx::query(sql)
            .bind(upload_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?
        {
            Some(_) => Ok(()),
            None => Err(MetaError::NoSuchUpload),
        }
    }

    async fn trash_parts(tx: &mut Tx<'_>, upload_id: &str, now_ms: i64) -> MetaResult<()> {
        sqlx::query("INSERT INTO trash (blob_id, trashed_ms, sites) SELECT blob_id, $1, sites FROM parts WHERE upload_id = $2 ON CONFLICT DO NOTHING")
            .bind(now_ms)
            .bind(upload_id)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM parts WHERE upload_id = $1")
            .bind(upload_id)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM uploads WHERE upload_id = $1")
            .bind(upload_id)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// The statements of a migration file. Migration files use `;` only to end statements (not in
/// comments or literals); `migration_files_split_cleanly` checks it.
fn statements(sql: &'static str) -> impl Iterator<Item = &'static str> {
    sql.split(';').map(str::trim).filter(|s| {
        s.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
    })
}

fn object_from_rows(rows: &[PgRow]) -> MetaResult<Option<ObjectRecord>> {
    object_from_joined_rows!(rows)
}

crate::common::keyed_versions_fns!(sqlx::PgPool);

#[async_trait::async_trait]
impl ObjectIndex for PgMetaStore {
    async fn create_bucket(&self, bucket: &BucketRecord) -> MetaResult<()> {
        refuse_created_boundary(bucket)?;
        let done = sqlx::query("INSERT INTO buckets (name, created_ms, location, versioning, object_lock, lifecycle, encryption) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING")
            .bind(&bucket.name)
            .bind(bucket.created_ms)
            .bind(&bucket.location)
            .bind(bucket.versioning.as_str())
            .bind(bucket.object_lock.as_ref().map(json).transpose()?)
            .bind(bucket.lifecycle.as_ref().map(json).transpose()?)
            .bind(bucket.encryption.as_ref().map(json).transpose()?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            Err(MetaError::BucketExists)
        } else {
            Ok(())
        }
    }

    async fn get_bucket(&self, name: &str) -> MetaResult<Option<BucketRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {BUCKET_COLUMNS} FROM buckets WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(bucket_row).transpose()
    }

    async fn list_buckets(&self) -> MetaResult<Vec<BucketRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {BUCKET_COLUMNS} FROM buckets ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(bucket_row).collect()
    }

    async fn delete_bucket(&self, name: &str, now_ms: i64) -> MetaResult<()> {
        let mut tx = self.begin().await?;
        Self::hold_bucket(&mut tx, name, true).await?;
        if sqlx::query("SELECT 1 FROM versions WHERE bucket = $1 LIMIT 1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .is_some()
        {
            return Err(MetaError::BucketNotEmpty);
        }
        let uploads: Vec<String> =
            sqlx::query_scalar("SELECT upload_id FROM uploads WHERE bucket = $1 FOR UPDATE")
                .bind(name)
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
        for upload in uploads {
            Self::trash_parts(&mut tx, &upload, now_ms).await?;
        }
        sqlx::query("DELETE FROM boundary_history WHERE bucket = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM buckets WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn boundary_history(&self, bucket: &str) -> MetaResult<Vec<BucketBoundary>> {
        let docs: Vec<String> = sqlx::query_scalar(BOUNDARY_HISTORY_SELECT)
            .bind(bucket)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        docs.iter().map(|d| crate::common::from_json(d)).collect()
    }

    async fn update_bucket(&self, name: &str, update: &BucketUpdate) -> MetaResult<BucketRecord> {
        let mut tx = self.begin().await?;
        let mut bucket = Self::hold_bucket(&mut tx, name, true).await?;
        apply_bucket_update(&mut bucket, update)?;
        sqlx::query(
            "UPDATE buckets SET versioning = $1, object_lock = $2, lifecycle = $3, encryption = $5, boundary = $6 WHERE name = $4",
        )
        .bind(bucket.versioning.as_str())
        .bind(bucket.object_lock.as_ref().map(json).transpose()?)
        .bind(bucket.lifecycle.as_ref().map(json).transpose()?)
        .bind(name)
        .bind(bucket.encryption.as_ref().map(json).transpose()?)
        .bind(bucket.boundary.as_ref().map(json).transpose()?)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if let BucketUpdate::Boundary(version) = update {
            sqlx::query(BOUNDARY_HISTORY_INSERT)
                .bind(name)
                .bind(i64::try_from(version.version).map_err(|_| MetaError::PreconditionFailed)?)
                .bind(json(version)?)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(bucket)
    }

    async fn put_object(
        &self,
        object: &ObjectRecord,
        condition: &WriteCondition,
        now_ms: i64,
    ) -> MetaResult<String> {
        let mut tx = self.begin().await?;
        let bucket = Self::hold_bucket(&mut tx, &object.bucket, false).await?;
        Self::lock_key(&mut tx, "object", &object.bucket, &object.key).await?;
        let version_id = put_version(&mut tx, &bucket, object, condition, now_ms).await?;
        tx.commit().await.map_err(backend)?;
        Ok(version_id)
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> MetaResult<Option<ObjectRecord>> {
        // One statement, one snapshot: the row and its segments always belong together.
        let rows = match version_id {
            None => sqlx::query(LATEST_WITH_SEGMENTS)
                .bind(bucket)
                .bind(key)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?,
            Some(v) => sqlx::query(VERSION_WITH_SEGMENTS)
                .bind(bucket)
                .bind(key)
                .bind(v)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?,
        };
        object_from_rows(&rows)
    }

    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        request: &DeleteRequest<'_>,
        now_ms: i64,
    ) -> MetaResult<DeleteResult> {
        let mut tx = self.begin().await?;
        let record = Self::hold_bucket(&mut tx, bucket, false).await?;
        Self::lock_key(&mut tx, "object", bucket, key).await?;
        let result = delete_version(&mut tx, &record, key, request, now_ms).await?;
        tx.commit().await.map_err(backend)?;
        Ok(result)
    }

    async fn import_version(&self, object: &ObjectRecord) -> MetaResult<bool> {
        let mut tx = self.begin().await?;
        Self::hold_bucket(&mut tx, &object.bucket, false).await?;
        Self::lock_key(&mut tx, "object", &object.bucket, &object.key).await?;
        let copied = import_version_in(&mut tx, object).await?;
        tx.commit().await.map_err(backend)?;
        Ok(copied)
    }

    async fn update_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        update: &VersionUpdate,
        now_ms: i64,
    ) -> MetaResult<String> {
        let mut tx = self.begin().await?;
        let record = Self::hold_bucket(&mut tx, bucket, false).await?;
        Self::lock_key(&mut tx, "object", bucket, key).await?;
        let id = update_version_in(&mut tx, &record, key, version_id, update, now_ms).await?;
        tx.commit().await.map_err(backend)?;
        Ok(id)
    }

    async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
        start: VersionStart<'_>,
        limit: usize,
    ) -> MetaResult<Vec<VersionSummary>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = version_list_sql(prefix, start);
        let query = sqlx::query(&sql).bind(bucket);
        let query = match start {
            VersionStart::AfterVersion(key, seq) => query.bind(key).bind(seq),
            VersionStart::AfterKey(k) | VersionStart::AtOrAfterKey(k) if k >= prefix => {
                query.bind(k)
            }
            _ => query.bind(prefix),
        };
        let rows = query
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let v = version_row(row)?;
            if !v.key.starts_with(prefix) {
                break;
            }
            out.push(v);
        }
        Ok(out)
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start: ListStart<'_>,
        limit: usize,
    ) -> MetaResult<Vec<ObjectSummary>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (bound, sql) = list_lower_bound(prefix, start);
        let query = sqlx::query(sql).bind(bucket).bind(bound).bind(limit);
        let rows = query.fetch_all(&self.pool).await.map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get("key").map_err(backend)?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push(ObjectSummary {
                key,
                size_bytes: to_u64(row.try_get("size_bytes").map_err(backend)?)?,
                etag: row.try_get("etag").map_err(backend)?,
                last_modified_ms: row.try_get("last_modified_ms").map_err(backend)?,
            });
        }
        Ok(out)
    }

    async fn trash_before(&self, before_ms: i64, limit: usize) -> MetaResult<Vec<TrashedBlob>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT blob_id, sites FROM trash WHERE trashed_ms < $1 ORDER BY trashed_ms LIMIT $2",
        )
        .bind(before_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|(blob, sites)| trashed(blob, sites))
            .collect()
    }

    async fn forget_trash(&self, blobs: &[BlobId]) -> MetaResult<()> {
        let ids: Vec<String> = blobs.iter().map(ToString::to_string).collect();
        sqlx::query("DELETE FROM trash WHERE blob_id = ANY($1)")
            .bind(&ids)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn keyed_versions(
        &self,
        key_id: &str,
        after: Option<&vallum_core::meta::KeyedVersion>,
        limit: usize,
    ) -> MetaResult<Vec<vallum_core::meta::KeyedVersion>> {
        keyed_versions_in(&self.pool, key_id, after, limit).await
    }

    async fn rewrap_version(
        &self,
        version: &vallum_core::meta::KeyedVersion,
        new: &vallum_core::meta::Encryption,
    ) -> MetaResult<bool> {
        rewrap_version_in(&self.pool, version, new).await
    }
}

#[async_trait::async_trait]
impl Uploads for PgMetaStore {
    async fn create_upload(&self, upload: &UploadRecord) -> MetaResult<()> {
        let mut tx = self.begin().await?;
        Self::hold_bucket(&mut tx, &upload.bucket, false).await?;
        sqlx::query("INSERT INTO uploads (upload_id, bucket, key, initiated_ms, attrs, checksum_algorithm, tags, lock_state, encryption) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(upload.upload_id.to_string())
            .bind(&upload.bucket)
            .bind(&upload.key)
            .bind(upload.initiated_ms)
            .bind(json(&upload.attrs)?)
            .bind(upload.checksum_algorithm.map(algorithm_name))
            .bind(json(&upload.tags)?)
            .bind(json(&upload.lock)?)
            .bind(upload.encryption.as_ref().map(json).transpose()?)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn get_upload(&self, upload_id: UploadId) -> MetaResult<Option<UploadRecord>> {
        let row = sqlx::query("SELECT * FROM uploads WHERE upload_id = $1")
            .bind(upload_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(upload_row).transpose()
    }

    async fn put_part(
        &self,
        upload_id: UploadId,
        part: &PartRecord,
        now_ms: i64,
    ) -> MetaResult<()> {
        let id = upload_id.to_string();
        let number = i64::from(part.part_number);
        let mut tx = self.begin().await?;
        Self::hold_upload(&mut tx, &id, false).await?;
        Self::lock_key(&mut tx, "part", &id, &number.to_string()).await?;
        sqlx::query("INSERT INTO trash (blob_id, trashed_ms, sites) SELECT blob_id, $1, sites FROM parts WHERE upload_id = $2 AND part_number = $3 ON CONFLICT DO NOTHING")
            .bind(now_ms)
            .bind(&id)
            .bind(number)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM parts WHERE upload_id = $1 AND part_number = $2")
            .bind(&id)
            .bind(number)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("INSERT INTO parts (upload_id, part_number, blob_id, size_bytes, etag, checksums, last_modified_ms, sites, crc32c) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(&id)
            .bind(number)
            .bind(part.blob.to_string())
            .bind(to_i64(part.size_bytes)?)
            .bind(&part.etag)
            .bind(json(&part.checksums)?)
            .bind(part.last_modified_ms)
            .bind(vallum_core::meta::encode_sites(&part.sites))
            .bind(crate::common::crc_to(part.crc32c))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn list_parts(
        &self,
        upload_id: UploadId,
        after_part: u32,
        limit: usize,
    ) -> MetaResult<Vec<PartRecord>> {
        let rows = sqlx::query("SELECT * FROM parts WHERE upload_id = $1 AND part_number > $2 ORDER BY part_number LIMIT $3")
            .bind(upload_id.to_string())
            .bind(i64::from(after_part))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(part_row).collect()
    }

    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: &str,
        upload_id_marker: Option<UploadId>,
        limit: usize,
    ) -> MetaResult<Vec<UploadRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let marker_initiated: Option<i64> = match upload_id_marker {
            Some(id) => sqlx::query_scalar("SELECT initiated_ms FROM uploads WHERE upload_id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?,
            None => None,
        };
        let rows = match (upload_id_marker, marker_initiated) {
            (Some(id), Some(initiated)) => sqlx::query(
                "SELECT * FROM uploads WHERE bucket = $1 AND key >= $2 AND (key > $3 OR (key = $3 AND (initiated_ms > $4 OR (initiated_ms = $4 AND upload_id > $5)))) \
                 ORDER BY key, initiated_ms, upload_id LIMIT $6",
            )
            .bind(bucket)
            .bind(prefix)
            .bind(key_marker)
            .bind(initiated)
            .bind(id.to_string())
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?,
            _ => sqlx::query("SELECT * FROM uploads WHERE bucket = $1 AND key >= $2 AND key > $3 ORDER BY key, initiated_ms, upload_id LIMIT $4")
                .bind(bucket)
                .bind(prefix)
                .bind(key_marker)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?,
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let upload = upload_row(row)?;
            if !upload.key.starts_with(prefix) {
                break;
            }
            out.push(upload);
        }
        Ok(out)
    }

    async fn complete_upload(
        &self,
        upload_id: UploadId,
        object: &ObjectRecord,
        part_numbers: &[u32],
        condition: &WriteCondition,
        now_ms: i64,
    ) -> MetaResult<String> {
        let id = upload_id.to_string();
        if part_numbers.len() != object.segments.len() {
            return Err(MetaError::Backend(
                "one part number per segment is required".into(),
            ));
        }
        let mut tx = self.begin().await?;
        Self::hold_upload(&mut tx, &id, true).await?;
        let rows = sqlx::query("SELECT part_number, blob_id FROM parts WHERE upload_id = $1")
            .bind(&id)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        let mut current = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let number: i64 = row.try_get("part_number").map_err(backend)?;
            let blob: String = row.try_get("blob_id").map_err(backend)?;
            current.insert(number, blob);
        }
        for (segment, number) in object.segments.iter().zip(part_numbers) {
            if current.get(&i64::from(*number)) != Some(&segment.blob.to_string()) {
                return Err(MetaError::PartChanged(*number));
            }
        }
        let bucket = Self::hold_bucket(&mut tx, &object.bucket, false).await?;
        Self::lock_key(&mut tx, "object", &object.bucket, &object.key).await?;
        let used: Vec<String> = object.segments.iter().map(|s| s.blob.to_string()).collect();
        sqlx::query("DELETE FROM parts WHERE upload_id = $1 AND blob_id = ANY($2)")
            .bind(&id)
            .bind(&used)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        Self::trash_parts(&mut tx, &id, now_ms).await?;
        let version_id = put_version(&mut tx, &bucket, object, condition, now_ms).await?;
        tx.commit().await.map_err(backend)?;
        Ok(version_id)
    }

    async fn abort_upload(&self, upload_id: UploadId, now_ms: i64) -> MetaResult<()> {
        let id = upload_id.to_string();
        let mut tx = self.begin().await?;
        Self::hold_upload(&mut tx, &id, true).await?;
        Self::trash_parts(&mut tx, &id, now_ms).await?;
        tx.commit().await.map_err(backend)
    }

    async fn stale_uploads(&self, before_ms: i64, limit: usize) -> MetaResult<Vec<UploadRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM uploads WHERE initiated_ms < $1 ORDER BY initiated_ms LIMIT $2",
        )
        .bind(before_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(upload_row).collect()
    }
}

#[async_trait::async_trait]
impl LogSequencing for PgMetaStore {
    async fn ledger_append(&self, entries: &[Vec<u8>]) -> MetaResult<u64> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // One sequencer for all gateways: appends are serialised by a transaction lock.
        sqlx::query(&format!("SELECT pg_advisory_xact_lock({LEDGER_LOCK})"))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let idx: Vec<i64> = (0..entries.len() as i64).map(|i| next + i).collect();
        sqlx::query("INSERT INTO ledger_entries (idx, entry) SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[])")
            .bind(&idx)
            .bind(entries)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(u64::try_from(next).unwrap_or(0))
    }

    async fn ledger_read(&self, from: u64, limit: usize) -> MetaResult<Vec<Vec<u8>>> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT idx, entry FROM ledger_entries WHERE idx >= $1 ORDER BY idx LIMIT $2",
        )
        .bind(i64::try_from(from).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        contiguous(from, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_split_cleanly() {
        for sql in MIGRATIONS {
            for statement in statements(sql) {
                let code: Vec<&str> = statement
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .collect();
                let first = code.first().map(|l| l.trim_start()).unwrap_or_default();
                assert!(
                    first.starts_with("CREATE ")
                        || first.starts_with("ALTER ")
                        || first.starts_with("INSERT ")
                        || first.starts_with("UPDATE ")
                        || first.starts_with("DROP "),
                    "suspicious statement: {statement}"
                );
            }
        }
        assert_eq!(statements(MIGRATIONS[0]).count(), 10);
    }
}
