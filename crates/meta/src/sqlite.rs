//! The embedded metadata store: SQLite in WAL mode with `synchronous=FULL`, so a committed
//! transaction survives power loss. All writes go through one connection (SQLite has one
//! writer anyway; this avoids lock-upgrade failures), reads through a pool.
//!
//! Schema migrations are plain SQL files under `migrations/sqlite/`, compiled in and applied in
//! order; the applied version is kept in `PRAGMA user_version`.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::common::{
    BOUNDARY_HISTORY_INSERT, BOUNDARY_HISTORY_SELECT, BUCKET_COLUMNS, algorithm_name, backend,
    bucket_from_row, check_condition, json, list_lower_bound, part_from_row,
    refuse_created_boundary, to_i64, to_u64, trashed, upload_from_row, version_list_sql,
    version_summary_from_row,
};

type Tx<'a> = Transaction<'a, Sqlite>;

crate::versions::version_logic!(SqliteRow);
crate::shared::shared_ports!(SqliteMetaStore, read: read, write: write);

async fn insert_segments(tx: &mut Tx<'_>, object: &ObjectRecord, vseq: i64) -> MetaResult<()> {
    for (seq, segment) in object.segments.iter().enumerate() {
        sqlx::query("INSERT INTO segments (blob_id, bucket, key, vseq, seq, size_bytes, sites, crc32c) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(segment.blob.to_string())
            .bind(&object.bucket)
            .bind(&object.key)
            .bind(vseq)
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .bind(to_i64(segment.size_bytes)?)
            .bind(vallum_core::meta::encode_sites(&segment.sites))
            .bind(crate::common::crc_to(segment.crc32c))
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

/// The bucket, read inside the write transaction (the single writer serializes all writes).
async fn bucket_in(tx: &mut Tx<'_>, name: &str) -> MetaResult<BucketRecord> {
    let row = sqlx::query(&format!(
        "SELECT {BUCKET_COLUMNS} FROM buckets WHERE name = $1"
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

fn version_row(row: &SqliteRow) -> MetaResult<VersionSummary> {
    version_summary_from_row!(row)
}

fn bucket_row(row: &SqliteRow) -> MetaResult<BucketRecord> {
    bucket_from_row!(row)
}

fn upload_row(row: &SqliteRow) -> MetaResult<UploadRecord> {
    upload_from_row!(row)
}

fn part_row(row: &SqliteRow) -> MetaResult<PartRecord> {
    part_from_row!(row)
}

use vallum_core::meta::{
    BucketRecord, ListStart, LogSequencing, MetaError, MetaResult, ObjectIndex, ObjectRecord,
    ObjectSummary, PartRecord, TrashedBlob, UploadRecord, Uploads, VersionStart, VersionSummary,
    WriteCondition,
};
use vallum_core::meta::{BucketUpdate, apply_bucket_update};
use vallum_core::residency::BucketBoundary;
use vallum_types::{BlobId, UploadId};

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_initial.sql"),
    include_str!("../migrations/sqlite/0002_leases.sql"),
    include_str!("../migrations/sqlite/0003_versions.sql"),
    include_str!("../migrations/sqlite/0004_ledger.sql"),
    include_str!("../migrations/sqlite/0005_encryption.sql"),
    include_str!("../migrations/sqlite/0006_bucket_encryption.sql"),
    include_str!("../migrations/sqlite/0007_boundary.sql"),
    include_str!("../migrations/sqlite/0008_replicas.sql"),
    include_str!("../migrations/sqlite/0009_iam.sql"),
    include_str!("../migrations/sqlite/0010_commit_counter.sql"),
    include_str!("../migrations/sqlite/0011_records.sql"),
];
/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
const READ_CONNECTIONS: u32 = 4;
/// Whether the writer connection can serve the next write, checked each time it returns to
/// its pool. A COMMIT that fails (SQLITE_FULL, SQLITE_IOERR) may leave the connection inside
/// a transaction, in SQLite's view or in sqlx's: every later "transaction" would then be a
/// savepoint nested in it, answered as committed and never written. Such a connection is
/// closed (which rolls back whatever it held) and the pool opens a fresh one. sqlx's depth is
/// the test: when SQLite itself rolled the failed transaction back, sqlx's own ROLLBACK fails
/// and leaves its depth at 1; when SQLite kept it open, that ROLLBACK ends it.
async fn writer_is_clean(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    // Runs the rollback a dropped transaction queued, so the state read next is current.
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::warn!("the metadata writer was left inside a failed transaction; reopening it");
        return Ok(false);
    }
    Ok(true)
}

/// Most bucket records the store keeps in memory (a full cache starts over).
const MAX_CACHED_BUCKETS: usize = 4096;

/// Bucket records as requests read them (every request reads its bucket), kept in memory.
/// The embedded store is its file's only writer (the data directory is locked by one
/// process), so a change is seen exactly: each bucket write empties the cache once it has
/// committed, and a read that overlapped a write does not keep what it read.
#[derive(Debug, Default)]
struct BucketCache {
    inner: std::sync::Mutex<BucketCacheInner>,
}

#[derive(Debug, Default)]
struct BucketCacheInner {
    /// Advanced by every bucket write.
    generation: u64,
    records: std::collections::HashMap<String, BucketRecord>,
}

impl BucketCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, BucketCacheInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, name: &str) -> Option<BucketRecord> {
        self.lock().records.get(name).cloned()
    }

    /// The generation to pass to `insert` for a record read from now on.
    fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Keeps `bucket`, read at `generation`, unless a bucket write has happened since.
    fn insert(&self, generation: u64, bucket: &BucketRecord) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.records.len() >= MAX_CACHED_BUCKETS {
            inner.records.clear();
        }
        inner.records.insert(bucket.name.clone(), bucket.clone());
    }

    /// After a bucket write: forgets every record, and those being read.
    fn invalidate(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.records.clear();
    }
}

/// Beside the database: the highest commit count the store has reached, written as it grows
/// (`vallum-meta-commits 1`, then the count).
const COMMITS_SUFFIX: &str = "commits";
const COMMITS_MAGIC: &str = "vallum-meta-commits 1";

/// The embedded SQLite metadata store.
#[derive(Debug, Clone)]
pub struct SqliteMetaStore {
    read: SqlitePool,
    write: SqlitePool,
    puts: tokio::sync::mpsc::UnboundedSender<crate::put_group::Msg>,
    buckets: std::sync::Arc<BucketCache>,
    reader: std::sync::Arc<crate::reader::Reader>,
    path: std::path::PathBuf,
    guard: std::sync::Arc<Guard>,
}

/// What the store's guard has seen of its files.
#[derive(Debug, Default)]
struct Guard {
    /// The write-ahead file existed at a previous check.
    wal_seen: std::sync::atomic::AtomicBool,
    /// It was deleted while in use: writes are refused until a restart.
    wal_lost: std::sync::atomic::AtomicBool,
    /// The commit count last written to the high-water file.
    recorded: std::sync::atomic::AtomicI64,
}

fn sibling(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!("-{suffix}"));
    path.with_file_name(name)
}

/// The high-water commit count recorded beside `db`, if any.
fn recorded_commits(db: &Path) -> MetaResult<Option<i64>> {
    let file = sibling(db, COMMITS_SUFFIX);
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let mut lines = text.lines();
            if lines.next() != Some(COMMITS_MAGIC) {
                return Err(MetaError::Corrupt(format!(
                    "{} is not a commit high-water file",
                    file.display()
                )));
            }
            lines
                .next()
                .and_then(|n| n.trim().parse().ok())
                .map(Some)
                .ok_or_else(|| MetaError::Corrupt(format!("{} holds no count", file.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MetaError::Backend(format!("{}: {e}", file.display()))),
    }
}

/// Writes `n` as the high-water commit count beside `db`, durably (temporary file, fsync,
/// rename, directory fsync).
fn record_commits(db: &Path, n: i64) -> std::io::Result<()> {
    use std::io::Write;
    let file = sibling(db, COMMITS_SUFFIX);
    let tmp = sibling(db, "commits.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format!("{COMMITS_MAGIC}\n{n}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &file)?;
    if let Some(dir) = db.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl SqliteMetaStore {
    /// Opens (creating and migrating if needed) the database file at `path`.
    pub async fn open(path: &Path) -> MetaResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .after_release(|conn, _| Box::pin(writer_is_clean(conn)))
            .connect_with(options.clone())
            .await
            .map_err(backend)?;
        Self::migrate(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options.read_only(true))
            .await
            .map_err(backend)?;
        let puts = crate::put_group::spawn(write.clone(), path, BUSY_TIMEOUT)?;
        let store = Self {
            read,
            write,
            puts,
            buckets: std::sync::Arc::default(),
            reader: std::sync::Arc::new(crate::reader::Reader::new(path, BUSY_TIMEOUT)),
            path: path.to_owned(),
            guard: std::sync::Arc::default(),
        };
        // A database behind the commits it had acknowledged lost them: refuse to serve it.
        let now = store.commits().await?;
        if let Some(recorded) = recorded_commits(path)?
            && recorded > now
        {
            store.close().await;
            return Err(MetaError::LostCommits {
                path: path.display().to_string(),
                recorded,
                found: now,
            });
        }
        store
            .guard
            .recorded
            .store(now, std::sync::atomic::Ordering::Relaxed);
        Ok(store)
    }

    /// The store's commit count.
    async fn commits(&self) -> MetaResult<i64> {
        sqlx::query_scalar("SELECT n FROM commit_counter WHERE id = 0")
            .fetch_one(&self.read)
            .await
            .map_err(backend)
    }

    /// Checks the store's files; called about every second by the server. Records the commit
    /// count's high-water mark beside the database, so that a later start notices committed
    /// state that went missing. If the write-ahead file was deleted while in use (later
    /// commits would live only in an unlinked file, lost at the next crash), it copies
    /// everything committed into the database file at once and refuses writes from then on
    /// (503 until a restart); the error says so.
    pub async fn guard(&self) -> MetaResult<()> {
        use std::sync::atomic::Ordering;
        if self.guard.wal_lost.load(Ordering::Acquire) {
            return Err(MetaError::Unavailable(self.wal_lost_message()));
        }
        let wal = sibling(&self.path, "wal");
        let present = wal.exists();
        if present {
            self.guard.wal_seen.store(true, Ordering::Release);
        } else if self.guard.wal_seen.load(Ordering::Acquire) {
            self.guard.wal_lost.store(true, Ordering::Release);
            // Rescue: the connections still hold the unlinked file; a checkpoint copies its
            // committed frames into the database file.
            let rescued = sqlx::query("PRAGMA wal_checkpoint(FULL)")
                .execute(&self.write)
                .await;
            self.write.close().await;
            let msg = self.wal_lost_message();
            tracing::error!(rescued = rescued.is_ok(), "{msg}");
            return Err(MetaError::Unavailable(msg));
        }
        let now = self.commits().await?;
        if now > self.guard.recorded.load(Ordering::Relaxed) {
            record_commits(&self.path, now)
                .map_err(|e| MetaError::Backend(format!("recording the commit count: {e}")))?;
            self.guard.recorded.store(now, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether the write-ahead file was lost while in use (writes refused until a restart).
    #[must_use]
    pub fn wal_lost(&self) -> bool {
        self.guard
            .wal_lost
            .load(std::sync::atomic::Ordering::Acquire)
    }

    fn wal_lost_message(&self) -> String {
        format!(
            "{}-wal, the metadata store's write-ahead file, was deleted while in use; everything committed until then was copied into {}, and writes are refused until vallum serve is restarted",
            self.path.display(),
            self.path.display()
        )
    }

    async fn migrate(pool: &SqlitePool) -> MetaResult<()> {
        let current: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(pool)
            .await
            .map_err(backend)?;
        if current > SCHEMA_VERSION {
            return Err(MetaError::Backend(format!(
                "the database has schema version {current}; this build knows up to {SCHEMA_VERSION}"
            )));
        }
        for (index, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(current).unwrap_or(0))
        {
            let version = index + 1;
            let mut tx = pool.begin().await.map_err(backend)?;
            sqlx::raw_sql(sql)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            sqlx::raw_sql(&format!("PRAGMA user_version = {version}"))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            tracing::info!(version, "metadata schema migrated");
        }
        Ok(())
    }

    /// Closes both pools (checkpointing the WAL).
    pub async fn close(&self) {
        let (done, stopped) = tokio::sync::oneshot::channel();
        if self.puts.send(crate::put_group::Msg::Stop(done)).is_ok() {
            let _ = stopped.await;
        }
        self.reader.close();
        self.read.close().await;
        self.write.close().await;
    }

    async fn bucket_exists(tx: &mut Transaction<'_, Sqlite>, name: &str) -> MetaResult<bool> {
        Ok(sqlx::query("SELECT 1 FROM buckets WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?
            .is_some())
    }

    async fn require_upload(tx: &mut Transaction<'_, Sqlite>, upload_id: &str) -> MetaResult<()> {
        let found = sqlx::query("SELECT 1 FROM uploads WHERE upload_id = ?")
            .bind(upload_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
        if found.is_some() {
            Ok(())
        } else {
            Err(MetaError::NoSuchUpload)
        }
    }

    async fn trash_parts(
        tx: &mut Transaction<'_, Sqlite>,
        upload_id: &str,
        now_ms: i64,
    ) -> MetaResult<()> {
        sqlx::query("INSERT INTO trash (blob_id, trashed_ms, sites) SELECT blob_id, ?, sites FROM parts WHERE upload_id = ?")
            .bind(now_ms)
            .bind(upload_id)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM parts WHERE upload_id = ?")
            .bind(upload_id)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM uploads WHERE upload_id = ?")
            .bind(upload_id)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

crate::common::keyed_versions_fns!(sqlx::SqlitePool);

#[async_trait::async_trait]
impl ObjectIndex for SqliteMetaStore {
    async fn create_bucket(&self, bucket: &BucketRecord) -> MetaResult<()> {
        refuse_created_boundary(bucket)?;
        let mut tx = self.write.begin().await.map_err(backend)?;
        if Self::bucket_exists(&mut tx, &bucket.name).await? {
            return Err(MetaError::BucketExists);
        }
        sqlx::query("INSERT INTO buckets (name, created_ms, location, versioning, object_lock, lifecycle, encryption) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&bucket.name)
            .bind(bucket.created_ms)
            .bind(&bucket.location)
            .bind(bucket.versioning.as_str())
            .bind(bucket.object_lock.as_ref().map(json).transpose()?)
            .bind(bucket.lifecycle.as_ref().map(json).transpose()?)
            .bind(bucket.encryption.as_ref().map(json).transpose()?)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let committed = tx.commit().await.map_err(backend);
        self.buckets.invalidate();
        committed
    }

    async fn get_bucket(&self, name: &str) -> MetaResult<Option<BucketRecord>> {
        if let Some(bucket) = self.buckets.get(name) {
            return Ok(Some(bucket));
        }
        let generation = self.buckets.generation();
        let row = sqlx::query(&format!(
            "SELECT {BUCKET_COLUMNS} FROM buckets WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        let bucket = row.as_ref().map(bucket_row).transpose()?;
        if let Some(b) = &bucket {
            self.buckets.insert(generation, b);
        }
        Ok(bucket)
    }

    async fn list_buckets(&self) -> MetaResult<Vec<BucketRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {BUCKET_COLUMNS} FROM buckets ORDER BY name"
        ))
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter().map(bucket_row).collect()
    }

    async fn delete_bucket(&self, name: &str, now_ms: i64) -> MetaResult<()> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        if !Self::bucket_exists(&mut tx, name).await? {
            return Err(MetaError::NoSuchBucket);
        }
        if sqlx::query("SELECT 1 FROM versions WHERE bucket = ? LIMIT 1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .is_some()
        {
            return Err(MetaError::BucketNotEmpty);
        }
        let uploads: Vec<String> =
            sqlx::query_scalar("SELECT upload_id FROM uploads WHERE bucket = ?")
                .bind(name)
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
        for upload in uploads {
            Self::trash_parts(&mut tx, &upload, now_ms).await?;
        }
        sqlx::query("DELETE FROM boundary_history WHERE bucket = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM buckets WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let committed = tx.commit().await.map_err(backend);
        self.buckets.invalidate();
        committed
    }

    async fn boundary_history(&self, bucket: &str) -> MetaResult<Vec<BucketBoundary>> {
        let docs: Vec<String> = sqlx::query_scalar(BOUNDARY_HISTORY_SELECT)
            .bind(bucket)
            .fetch_all(&self.read)
            .await
            .map_err(backend)?;
        docs.iter().map(|d| crate::common::from_json(d)).collect()
    }

    async fn update_bucket(&self, name: &str, update: &BucketUpdate) -> MetaResult<BucketRecord> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        let mut bucket = bucket_in(&mut tx, name).await?;
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
        let committed = tx.commit().await.map_err(backend);
        self.buckets.invalidate();
        committed?;
        Ok(bucket)
    }

    async fn put_object(
        &self,
        object: &ObjectRecord,
        condition: &WriteCondition,
        now_ms: i64,
    ) -> MetaResult<String> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.puts
            .send(crate::put_group::Msg::Put(Box::new(
                crate::put_group::PutJob {
                    object: object.clone(),
                    condition: condition.clone(),
                    now_ms,
                    reply,
                },
            )))
            .map_err(|_| MetaError::Unavailable("the metadata writer has stopped".into()))?;
        done.await
            .map_err(|_| MetaError::Unavailable("the metadata writer has stopped".into()))?
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> MetaResult<Option<ObjectRecord>> {
        self.reader.get_object(bucket, key, version_id)
    }

    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        request: &DeleteRequest<'_>,
        now_ms: i64,
    ) -> MetaResult<DeleteResult> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        let record = bucket_in(&mut tx, bucket).await?;
        let result = delete_version(&mut tx, &record, key, request, now_ms).await?;
        tx.commit().await.map_err(backend)?;
        Ok(result)
    }

    async fn import_version(&self, object: &ObjectRecord) -> MetaResult<bool> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        bucket_in(&mut tx, &object.bucket).await?;
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
        let mut tx = self.write.begin().await.map_err(backend)?;
        let record = bucket_in(&mut tx, bucket).await?;
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
            .fetch_all(&self.read)
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
        let rows = query.fetch_all(&self.read).await.map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get("key").map_err(backend)?;
            // Keys with the prefix are contiguous from the prefix on: stop at the first that is not.
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
            "SELECT blob_id, sites FROM trash WHERE trashed_ms < ? ORDER BY trashed_ms LIMIT ?",
        )
        .bind(before_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|(blob, sites)| trashed(blob, sites))
            .collect()
    }

    async fn forget_trash(&self, blobs: &[BlobId]) -> MetaResult<()> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        for blob in blobs {
            sqlx::query("DELETE FROM trash WHERE blob_id = ?")
                .bind(blob.to_string())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn keyed_versions(
        &self,
        key_id: &str,
        after: Option<&vallum_core::meta::KeyedVersion>,
        limit: usize,
    ) -> MetaResult<Vec<vallum_core::meta::KeyedVersion>> {
        keyed_versions_in(&self.read, key_id, after, limit).await
    }

    async fn rewrap_version(
        &self,
        version: &vallum_core::meta::KeyedVersion,
        new: &vallum_core::meta::Encryption,
    ) -> MetaResult<bool> {
        rewrap_version_in(&self.write, version, new).await
    }
}

#[async_trait::async_trait]
impl Uploads for SqliteMetaStore {
    async fn create_upload(&self, upload: &UploadRecord) -> MetaResult<()> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        if !Self::bucket_exists(&mut tx, &upload.bucket).await? {
            return Err(MetaError::NoSuchBucket);
        }
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
        let row = sqlx::query("SELECT * FROM uploads WHERE upload_id = ?")
            .bind(upload_id.to_string())
            .fetch_optional(&self.read)
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
        let mut tx = self.write.begin().await.map_err(backend)?;
        Self::require_upload(&mut tx, &id).await?;
        let number = i64::from(part.part_number);
        sqlx::query("INSERT INTO trash (blob_id, trashed_ms, sites) SELECT blob_id, ?, sites FROM parts WHERE upload_id = ? AND part_number = ?")
            .bind(now_ms)
            .bind(&id)
            .bind(number)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM parts WHERE upload_id = ? AND part_number = ?")
            .bind(&id)
            .bind(number)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("INSERT INTO parts (upload_id, part_number, blob_id, size_bytes, etag, checksums, last_modified_ms, sites, crc32c) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
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
        let rows = sqlx::query("SELECT * FROM parts WHERE upload_id = ? AND part_number > ? ORDER BY part_number LIMIT ?")
            .bind(upload_id.to_string())
            .bind(i64::from(after_part))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.read)
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
        // Within one key, uploads are ordered by (initiated_ms, upload_id); resuming after an
        // upload id therefore needs its initiation time.
        let marker_initiated: Option<i64> = match upload_id_marker {
            Some(id) => sqlx::query_scalar("SELECT initiated_ms FROM uploads WHERE upload_id = ?")
                .bind(id.to_string())
                .fetch_optional(&self.read)
                .await
                .map_err(backend)?,
            None => None,
        };
        let rows = match (upload_id_marker, marker_initiated) {
            (Some(id), Some(initiated)) => sqlx::query(
                "SELECT * FROM uploads WHERE bucket = ? AND key >= ? AND (key > ? OR (key = ? AND (initiated_ms > ? OR (initiated_ms = ? AND upload_id > ?)))) \
                 ORDER BY key, initiated_ms, upload_id LIMIT ?",
            )
            .bind(bucket)
            .bind(prefix)
            .bind(key_marker)
            .bind(key_marker)
            .bind(initiated)
            .bind(initiated)
            .bind(id.to_string())
            .bind(limit)
            .fetch_all(&self.read)
            .await
            .map_err(backend)?,
            _ => sqlx::query("SELECT * FROM uploads WHERE bucket = ? AND key >= ? AND key > ? ORDER BY key, initiated_ms, upload_id LIMIT ?")
                .bind(bucket)
                .bind(prefix)
                .bind(key_marker)
                .bind(limit)
                .fetch_all(&self.read)
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
        let mut tx = self.write.begin().await.map_err(backend)?;
        Self::require_upload(&mut tx, &id).await?;
        if part_numbers.len() != object.segments.len() {
            return Err(MetaError::Backend(
                "one part number per segment is required".into(),
            ));
        }
        for (segment, number) in object.segments.iter().zip(part_numbers) {
            let still_there = sqlx::query(
                "SELECT 1 FROM parts WHERE upload_id = ? AND part_number = ? AND blob_id = ?",
            )
            .bind(&id)
            .bind(i64::from(*number))
            .bind(segment.blob.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            if still_there.is_none() {
                return Err(MetaError::PartChanged(*number));
            }
        }
        let bucket = bucket_in(&mut tx, &object.bucket).await?;
        // Used parts become segments; the rest go to the trash with the upload.
        for segment in &object.segments {
            sqlx::query("DELETE FROM parts WHERE upload_id = ? AND blob_id = ?")
                .bind(&id)
                .bind(segment.blob.to_string())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        Self::trash_parts(&mut tx, &id, now_ms).await?;
        let version_id = put_version(&mut tx, &bucket, object, condition, now_ms).await?;
        tx.commit().await.map_err(backend)?;
        Ok(version_id)
    }

    async fn abort_upload(&self, upload_id: UploadId, now_ms: i64) -> MetaResult<()> {
        let id = upload_id.to_string();
        let mut tx = self.write.begin().await.map_err(backend)?;
        Self::require_upload(&mut tx, &id).await?;
        Self::trash_parts(&mut tx, &id, now_ms).await?;
        tx.commit().await.map_err(backend)
    }

    async fn stale_uploads(&self, before_ms: i64, limit: usize) -> MetaResult<Vec<UploadRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM uploads WHERE initiated_ms < ? ORDER BY initiated_ms LIMIT ?",
        )
        .bind(before_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter().map(upload_row).collect()
    }
}

#[async_trait::async_trait]
impl LogSequencing for SqliteMetaStore {
    async fn ledger_append(&self, entries: &[Vec<u8>]) -> MetaResult<u64> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        for (i, e) in entries.iter().enumerate() {
            sqlx::query("INSERT INTO ledger_entries (idx, entry) VALUES ($1, $2)")
                .bind(next + i as i64)
                .bind(e)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(u64::try_from(next).unwrap_or(0))
    }

    async fn ledger_read(&self, from: u64, limit: usize) -> MetaResult<Vec<Vec<u8>>> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT idx, entry FROM ledger_entries WHERE idx >= $1 ORDER BY idx LIMIT $2",
        )
        .bind(i64::try_from(from).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        crate::common::contiguous(from, rows)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use vallum_core::meta::MetaStore;
    use vallum_core::versioning::Versioning;

    async fn make() -> (tempfile::TempDir, Arc<dyn MetaStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteMetaStore::open(&dir.path().join("meta.db"))
            .await
            .unwrap();
        (dir, Arc::new(store))
    }

    vallum_core::meta_conformance_tests!(make().await);

    async fn bucket_names(store: &SqliteMetaStore) -> Vec<String> {
        store
            .list_buckets()
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect()
    }

    #[test]
    fn the_commit_high_water_file_format_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("meta.db");
        record_commits(&db, 42).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("meta.db-commits")).unwrap(),
            "vallum-meta-commits 1\n42\n"
        );
        assert_eq!(recorded_commits(&db).unwrap(), Some(42));
        std::fs::write(dir.path().join("meta.db-commits"), "something else\n1\n").unwrap();
        assert!(matches!(recorded_commits(&db), Err(MetaError::Corrupt(_))));
    }

    #[tokio::test]
    async fn a_database_behind_its_recorded_commits_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = SqliteMetaStore::open(&path).await.unwrap();
        store
            .create_bucket(&BucketRecord::new("first", 1, "r"))
            .await
            .unwrap();
        store.guard().await.unwrap();
        store.close().await;
        // Everything committed so far into the main file before it is copied (closing the
        // pools checkpoints too, but a connection still letting go can leave the last commit
        // in the write-ahead file, and the copy below would miss the first bucket).
        {
            use sqlx::Connection;
            let url = format!("sqlite://{}", path.display());
            let mut c = sqlx::sqlite::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut c)
                .await
                .unwrap();
            c.close().await.unwrap();
        }
        let older = dir.path().join("older.db");
        std::fs::copy(&path, &older).unwrap();

        let store = SqliteMetaStore::open(&path).await.unwrap();
        store
            .create_bucket(&BucketRecord::new("second", 1, "r"))
            .await
            .unwrap();
        store.guard().await.unwrap();
        store.close().await;

        // The older copy as the database, with no write-ahead file (as after one was deleted
        // and the process crashed) but the high-water file it had reached: the second
        // bucket's commit is gone. (A fresh directory: nothing of the closed pools lingers.)
        let restored = dir.path().join("restored");
        std::fs::create_dir(&restored).unwrap();
        let path = restored.join("meta.db");
        std::fs::copy(&older, &path).unwrap();
        std::fs::copy(
            dir.path().join("meta.db-commits"),
            restored.join("meta.db-commits"),
        )
        .unwrap();
        let err = SqliteMetaStore::open(&path).await.unwrap_err();
        assert!(
            matches!(err, MetaError::LostCommits { recorded, found, .. } if recorded > found),
            "{err:?}"
        );
        assert!(err.to_string().contains("meta.db-commits"), "{err}");
        // Accepting the loss: delete the high-water file, as the error says.
        std::fs::remove_file(restored.join("meta.db-commits")).unwrap();
        let store = SqliteMetaStore::open(&path).await.unwrap();
        assert_eq!(bucket_names(&store).await, ["first"]);
        store.close().await;
    }

    #[tokio::test]
    async fn a_write_ahead_file_deleted_in_use_is_rescued_and_writes_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = SqliteMetaStore::open(&path).await.unwrap();
        store
            .create_bucket(&BucketRecord::new("before", 1, "r"))
            .await
            .unwrap();
        store.guard().await.unwrap();
        std::fs::remove_file(dir.path().join("meta.db-wal")).unwrap();
        // Acknowledged, though it lands in a file that no longer has a name.
        store
            .create_bucket(&BucketRecord::new("after", 1, "r"))
            .await
            .unwrap();
        let err = store.guard().await.unwrap_err();
        assert!(matches!(err, MetaError::Unavailable(_)), "{err:?}");
        assert!(store.wal_lost());
        assert!(
            store
                .create_bucket(&BucketRecord::new("refused", 1, "r"))
                .await
                .is_err()
        );
        drop(store);
        // A crash now loses nothing acknowledged: the guard copied it into the database.
        let store = SqliteMetaStore::open(&path).await.unwrap();
        assert_eq!(bucket_names(&store).await, ["after", "before"]);
        store.close().await;
    }

    /// Schema v11 moves the rows of the old `sites` and `jobs` tables into the record store.
    #[tokio::test]
    async fn site_and_job_rows_become_records_on_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        for sql in &MIGRATIONS[..10] {
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        }
        sqlx::raw_sql("PRAGMA user_version = 10")
            .execute(&pool)
            .await
            .unwrap();
        for (table, values) in vallum_core::conformance::meta::V10_ROWS {
            sqlx::raw_sql(&format!("INSERT INTO {table} VALUES ({values})"))
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;

        let store = SqliteMetaStore::open(&path).await.unwrap();
        vallum_core::conformance::meta::v10_rows_are_records(&store).await;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('sites', 'jobs', 'iam_records')",
        )
        .fetch_all(&store.read)
        .await
        .unwrap();
        assert!(tables.is_empty(), "old tables left: {tables:?}");
        store.close().await;
    }

    #[test]
    fn a_bucket_read_that_overlapped_a_write_is_not_cached() {
        let cache = BucketCache::default();
        let old = BucketRecord::new("b", 1, "r");
        let generation = cache.generation();
        cache.invalidate();
        cache.insert(generation, &old);
        assert!(cache.get("b").is_none(), "a stale read was cached");
        cache.insert(cache.generation(), &old);
        assert_eq!(cache.get("b").map(|b| b.name), Some("b".to_owned()));
        cache.invalidate();
        assert!(cache.get("b").is_none(), "a write left the record cached");
    }

    #[tokio::test]
    async fn bucket_changes_are_read_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteMetaStore::open(&dir.path().join("meta.db"))
            .await
            .unwrap();
        store
            .create_bucket(&BucketRecord::new("b", 1, "r"))
            .await
            .unwrap();
        let before = store.get_bucket("b").await.unwrap().unwrap();
        assert_eq!(before.versioning, Versioning::Unversioned);
        store
            .update_bucket("b", &BucketUpdate::Versioning(Versioning::Enabled))
            .await
            .unwrap();
        let after = store.get_bucket("b").await.unwrap().unwrap();
        assert_eq!(after.versioning, Versioning::Enabled);
        store.delete_bucket("b", 2).await.unwrap();
        assert!(store.get_bucket("b").await.unwrap().is_none());
        store.close().await;
    }

    #[tokio::test]
    async fn reopens_and_refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = SqliteMetaStore::open(&path).await.unwrap();
        store
            .create_bucket(&BucketRecord::new("kept", 1, "r"))
            .await
            .unwrap();
        store.close().await;
        let store = SqliteMetaStore::open(&path).await.unwrap();
        assert!(store.get_bucket("kept").await.unwrap().is_some());
        sqlx::raw_sql("PRAGMA user_version = 99")
            .execute(&store.write)
            .await
            .unwrap();
        store.close().await;
        assert!(SqliteMetaStore::open(&path).await.is_err());
    }
}

/// Disk-full behaviour on a real full filesystem: a small tmpfs mounted for the test (root is
/// needed to mount it; the suite runs as root).
#[cfg(test)]
mod disk_full {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;

    /// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
    pub(crate) struct SmallFs {
        dir: tempfile::TempDir,
    }

    impl SmallFs {
        pub(crate) fn mount(size: &str) -> SmallFs {
            let dir = tempfile::tempdir().unwrap();
            let status = Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0700"),
                    "tmpfs",
                ])
                .arg(dir.path())
                .status()
                .expect("run mount");
            assert!(
                status.success(),
                "mounting a {size} tmpfs on {} failed: the disk-full tests need root (run the suite as root, as scripts/test.sh and CI do)",
                dir.path().display()
            );
            SmallFs { dir }
        }

        pub(crate) fn path(&self) -> &Path {
            self.dir.path()
        }

        /// Fills the filesystem with one file, written until ENOSPC; returns its path.
        pub(crate) fn fill(&self) -> PathBuf {
            let path = self.path().join("filler");
            let mut file = std::fs::File::create(&path).unwrap();
            let block = vec![0u8; 4096];
            loop {
                match file.write(&block) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(28) => break,
                    Err(e) => panic!("filling {}: {e}", path.display()),
                }
            }
            // Whatever partial block is left: one byte at a time.
            while file.write(&[0]).is_ok_and(|n| n == 1) {}
            path
        }
    }

    impl Drop for SmallFs {
        fn drop(&mut self) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }

    fn bucket(name: &str) -> BucketRecord {
        BucketRecord::new(name, 1, "r")
    }

    #[tokio::test]
    async fn a_full_disk_fails_writes_and_never_acknowledges_a_lost_one() {
        let fs = SmallFs::mount("2m");
        let db = fs.path().join("meta.db");
        let store = SqliteMetaStore::open(&db).await.unwrap();
        store.create_bucket(&bucket("before")).await.unwrap();
        let filler = fs.fill();

        // Write until the disk refuses, then keep writing: every write that answers Ok must
        // be durable, and with the disk still full at least the next ones must fail.
        let mut acknowledged = vec!["before".to_owned()];
        let mut failures = 0;
        for i in 0..2000 {
            let name = format!("b{i:04}-{}", "x".repeat(40));
            match store.create_bucket(&bucket(&name)).await {
                Ok(()) => acknowledged.push(name),
                Err(err) => {
                    failures += 1;
                    assert!(
                        matches!(err, MetaError::StorageFull(_)),
                        "a full disk must read as StorageFull, got {err:?}"
                    );
                    // The deletes that poisoned the writer in the field: they fail too.
                    let del = store.delete_bucket(&acknowledged[0], 2).await;
                    assert!(del.is_err(), "a delete on a full disk succeeded");
                    if failures >= 20 {
                        break;
                    }
                }
            }
        }
        assert!(failures >= 20, "the disk never filled up");

        // Space returns: the store works again without a restart.
        std::fs::remove_file(&filler).unwrap();
        store.create_bucket(&bucket("after-space")).await.unwrap();
        acknowledged.push("after-space".into());
        store.close().await;

        // Everything acknowledged is there after reopening; nothing else is.
        let store = SqliteMetaStore::open(&db).await.unwrap();
        let names: Vec<String> = store
            .list_buckets()
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        for name in &acknowledged {
            assert!(names.contains(name), "acknowledged bucket {name} was lost");
        }
        assert_eq!(
            names.len(),
            acknowledged.len(),
            "unacknowledged buckets were stored"
        );
        store.close().await;
    }

    fn small_object(key: &str) -> ObjectRecord {
        ObjectRecord {
            bucket: "objects".into(),
            key: key.into(),
            version_id: String::new(),
            seq: 0,
            latest: true,
            delete_marker: false,
            tags: Default::default(),
            lock: Default::default(),
            size_bytes: 4096,
            etag: "e".repeat(32),
            last_modified_ms: 1,
            attrs: Default::default(),
            checksums: Default::default(),
            parts_count: None,
            segments: vec![vallum_core::meta::Segment {
                blob: BlobId::random(),
                size_bytes: 4096,
                sites: vec!["local".into()],
                crc32c: Some(7),
            }],
            encryption: None,
        }
    }

    /// The same for object writes, which the group commit writes eight at a time here.
    #[tokio::test]
    async fn a_full_disk_fails_grouped_object_writes_and_never_acknowledges_a_lost_one() {
        let fs = SmallFs::mount("2m");
        let db = fs.path().join("meta.db");
        let store = SqliteMetaStore::open(&db).await.unwrap();
        store.create_bucket(&bucket("objects")).await.unwrap();
        let filler = fs.fill();

        let mut acknowledged = Vec::new();
        let mut failures = 0;
        for round in 0..1000 {
            let puts = (0..8).map(|i| {
                let key = format!("k{round:04}-{i}-{}", "x".repeat(200));
                let store = &store;
                async move {
                    let result = store
                        .put_object(&small_object(&key), &WriteCondition::None, 1)
                        .await;
                    (key, result)
                }
            });
            for (key, result) in futures::future::join_all(puts).await {
                match result {
                    Ok(_) => acknowledged.push(key),
                    Err(err) => {
                        failures += 1;
                        assert!(
                            matches!(err, MetaError::StorageFull(_)),
                            "a full disk must read as StorageFull, got {err:?}"
                        );
                    }
                }
            }
            if failures >= 40 {
                break;
            }
        }
        assert!(failures >= 40, "the disk never filled up");

        std::fs::remove_file(&filler).unwrap();
        let after = small_object("after-space");
        store
            .put_object(&after, &WriteCondition::None, 1)
            .await
            .unwrap();
        acknowledged.push("after-space".into());
        store.close().await;

        let store = SqliteMetaStore::open(&db).await.unwrap();
        let keys: Vec<String> = store
            .list_objects("objects", "", ListStart::Beginning, 100_000)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        acknowledged.sort();
        assert_eq!(
            keys, acknowledged,
            "the store must hold exactly the acknowledged objects"
        );
        store.close().await;
    }
}
