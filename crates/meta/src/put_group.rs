//! The embedded store's group commit of object writes: object writes waiting at the same
//! moment are committed in one SQLite transaction, so concurrent PUTs share one `fsync` of the
//! write-ahead file; a lone write waits for nothing but its own commit.
//!
//! The group runs on a thread of its own, synchronously, through a connection of its own
//! (rusqlite, with its prepared statements kept between groups). Through sqlx every
//! statement would be a hand-off to SQLite's worker thread and back to a runtime worker busy
//! with requests: tens of hand-offs per group, milliseconds per group under load. The group
//! still holds the store's single sqlx writer connection while it writes, so every other
//! write waits for it and SQLite never sees two writers race.
//!
//! Each write of a group runs in a savepoint of its own: one that is refused (a failed
//! condition, a locked version) is rolled back alone. A failure of the store itself fails the
//! whole group, none of which is then committed.
//!
//! The version logic mirrors `versions::version_logic!`'s `put_version` (which the sqlx
//! paths and PostgreSQL use); the metadata conformance suite runs against both.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};
use vallum_core::meta::{MetaError, MetaResult, ObjectRecord, WriteCondition};
use vallum_core::versioning::{NULL_VERSION, Versioning, new_version_id, next_seq};

use crate::common::{check_condition, crc_to, from_json, json, sqlite_error, to_i64};
use crate::versions::{HEAD_COLUMNS, VersionHead};

/// Most object writes one metadata transaction commits together.
const MAX_PUT_GROUP: usize = 64;
/// Prepared statements the group's connection keeps.
const STATEMENT_CACHE: usize = 32;

/// The latest version's head of a key (the statement is written once, not per write).
static LATEST_HEAD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {HEAD_COLUMNS} FROM versions WHERE bucket = ?1 AND key = ?2 ORDER BY seq DESC LIMIT 1"
    )
});
/// A named version's head of a key.
static HEAD_BY_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {HEAD_COLUMNS} FROM versions WHERE bucket = ?1 AND key = ?2 AND version_id = ?3"
    )
});

/// One object write waiting for the group commit.
pub(crate) struct PutJob {
    pub(crate) object: ObjectRecord,
    pub(crate) condition: WriteCondition,
    pub(crate) now_ms: i64,
    pub(crate) reply: oneshot::Sender<MetaResult<String>>,
}

/// What the group commit's thread is sent.
pub(crate) enum Msg {
    Put(Box<PutJob>),
    /// Close the connection and end the thread; answered once done.
    Stop(oneshot::Sender<()>),
}

/// Starts the group commit's thread for the database at `path`, whose sqlx writer pool is
/// `write` (one connection: holding it excludes every other writer). The thread ends when
/// told to stop or when every sender is gone.
pub(crate) fn spawn(
    write: SqlitePool,
    path: &Path,
    busy_timeout: std::time::Duration,
) -> MetaResult<mpsc::UnboundedSender<Msg>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| MetaError::Backend(format!("the metadata group commit's runtime: {e}")))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut group = Group {
        write,
        path: path.to_owned(),
        busy_timeout,
        db: None,
    };
    std::thread::Builder::new()
        .name("vallum-meta-puts".into())
        .spawn(move || runtime.block_on(group.run(rx)))
        .map_err(|e| MetaError::Backend(format!("the metadata group commit's thread: {e}")))?;
    Ok(tx)
}

struct Group {
    write: SqlitePool,
    path: PathBuf,
    busy_timeout: std::time::Duration,
    /// The group's connection, opened on first use and again after one was left unusable.
    db: Option<Connection>,
}

impl Group {
    async fn run(&mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut msgs = Vec::with_capacity(MAX_PUT_GROUP);
        let mut batch = Vec::with_capacity(MAX_PUT_GROUP);
        while rx.recv_many(&mut msgs, MAX_PUT_GROUP).await > 0 {
            let mut stop = None;
            for msg in msgs.drain(..) {
                match msg {
                    // A request that stopped waiting is not written behind its back.
                    Msg::Put(job) if job.reply.is_closed() => {}
                    Msg::Put(job) => batch.push(*job),
                    Msg::Stop(done) => stop = Some(done),
                }
            }
            if !batch.is_empty() {
                let results = match self.commit(&batch).await {
                    Ok(results) => results,
                    Err(e) => vec![Err(e); batch.len()],
                };
                for (job, result) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            if let Some(done) = stop {
                self.db = None;
                let _ = done.send(());
                return;
            }
        }
    }

    async fn commit(&mut self, jobs: &[PutJob]) -> MetaResult<Vec<MetaResult<String>>> {
        // The writer token: no other write runs while the group holds it.
        let token = self.write.acquire().await.map_err(crate::common::backend)?;
        if self.db.is_none() {
            self.db = Some(open(&self.path, self.busy_timeout)?);
        }
        let db = self.db.as_ref().expect("opened above");
        let result = commit_group(db, jobs);
        if result.is_err() && !db.is_autocommit() {
            // A failed COMMIT (SQLITE_FULL, SQLITE_IOERR) may leave the transaction open:
            // end it, or give the connection up so the next group starts clean.
            if db.execute_batch("ROLLBACK").is_err() || !db.is_autocommit() {
                tracing::warn!(
                    "the metadata group commit's connection was left inside a failed transaction; reopening it"
                );
                self.db = None;
            }
        }
        drop(token);
        result
    }
}

/// Opens the group's connection with the settings of the sqlx pools (which set up the file).
fn open(path: &Path, busy_timeout: std::time::Duration) -> MetaResult<Connection> {
    let db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_error)?;
    db.busy_timeout(busy_timeout).map_err(sqlite_error)?;
    // Per connection: durable commits, enforced foreign keys (the file is already in WAL).
    db.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(sqlite_error)?;
    db.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(db)
}

/// Commits `jobs` in one transaction; each one's result, or the store's failure.
fn commit_group(db: &Connection, jobs: &[PutJob]) -> MetaResult<Vec<MetaResult<String>>> {
    // Buckets' versioning read once per group: object writes do not change it.
    let mut buckets = HashMap::new();
    db.execute_batch("BEGIN IMMEDIATE").map_err(sqlite_error)?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        db.execute_batch("SAVEPOINT put").map_err(sqlite_error)?;
        let result = put_one(db, job, &mut buckets);
        match &result {
            Err(e) if !e.is_refusal() => {
                db.execute_batch("ROLLBACK").map_err(sqlite_error)?;
                return Err(e.clone());
            }
            Err(_) => db
                .execute_batch("ROLLBACK TO put; RELEASE put")
                .map_err(sqlite_error)?,
            Ok(_) => db.execute_batch("RELEASE put").map_err(sqlite_error)?,
        }
        results.push(result);
    }
    db.execute_batch("COMMIT").map_err(sqlite_error)?;
    Ok(results)
}

/// Stores a new version per the bucket's versioning state; returns its id.
fn put_one<'j>(
    db: &Connection,
    job: &'j PutJob,
    buckets: &mut HashMap<&'j str, Versioning>,
) -> MetaResult<String> {
    let object = &job.object;
    let (bucket, key) = (object.bucket.as_str(), object.key.as_str());
    let versioning = match buckets.get(bucket) {
        Some(v) => *v,
        None => {
            let v = versioning_of(db, bucket)?;
            buckets.insert(bucket, v);
            v
        }
    };
    let latest = head(db, &LATEST_HEAD, params![bucket, key])?;
    let current = latest
        .as_ref()
        .filter(|h| !h.delete_marker)
        .map(|h| h.etag.as_str());
    check_condition(current, &job.condition)?;
    let seq = next_seq(latest.as_ref().map(|h| h.seq), job.now_ms);
    let version_id = if versioning == Versioning::Enabled {
        new_version_id(seq)
    } else {
        // The null version, if the key has one: the latest already read, or a lookup.
        let fetched;
        let null = match &latest {
            None => None,
            Some(h) if h.version_id == NULL_VERSION => Some(h),
            Some(_) => {
                fetched = head(db, &HEAD_BY_ID, params![bucket, key, NULL_VERSION])?;
                fetched.as_ref()
            }
        };
        if let Some(null) = null {
            null.lock.check_removable(job.now_ms, false)?;
            remove(db, bucket, key, null, job.now_ms)?;
        }
        NULL_VERSION.to_owned()
    };
    if latest.is_some() {
        // The latest version is always the one with the largest seq.
        db.prepare_cached(
            "UPDATE versions SET latest = FALSE WHERE bucket = ?1 AND key = ?2 AND latest = TRUE \
             AND seq = (SELECT max(seq) FROM versions WHERE bucket = ?1 AND key = ?2)",
        )
        .and_then(|mut s| s.execute(params![bucket, key]))
        .map_err(sqlite_error)?;
    }
    insert(db, object, seq, &version_id)?;
    Ok(version_id)
}

fn versioning_of(db: &Connection, bucket: &str) -> MetaResult<Versioning> {
    let text: Option<String> = db
        .prepare_cached("SELECT versioning FROM buckets WHERE name = ?1")
        .and_then(|mut s| s.query_row(params![bucket], |r| r.get(0)).optional())
        .map_err(sqlite_error)?;
    Versioning::parse(&text.ok_or(MetaError::NoSuchBucket)?)
}

fn head(
    db: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> MetaResult<Option<VersionHead>> {
    let row = db
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_row(params, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })
            .optional()
        })
        .map_err(sqlite_error)?;
    row.map(
        |(seq, version_id, latest, delete_marker, etag, tags, lock)| {
            Ok(VersionHead {
                seq,
                version_id,
                latest,
                delete_marker,
                etag,
                tags: from_json(&tags)?,
                lock: from_json(&lock)?,
            })
        },
    )
    .transpose()
}

/// Removes one version: its blobs go to the trash; if it was the latest, the next newest
/// version becomes the latest.
fn remove(
    db: &Connection,
    bucket: &str,
    key: &str,
    head: &VersionHead,
    now_ms: i64,
) -> MetaResult<()> {
    let run = |sql: &str, params: &[&dyn rusqlite::ToSql]| {
        db.prepare_cached(sql)
            .and_then(|mut s| s.execute(params))
            .map_err(sqlite_error)
    };
    run(
        "INSERT INTO trash (blob_id, trashed_ms, sites) SELECT blob_id, ?1, sites FROM segments \
         WHERE bucket = ?2 AND key = ?3 AND vseq = ?4 ON CONFLICT DO NOTHING",
        params![now_ms, bucket, key, head.seq],
    )?;
    run(
        "DELETE FROM segments WHERE bucket = ?1 AND key = ?2 AND vseq = ?3",
        params![bucket, key, head.seq],
    )?;
    run(
        "DELETE FROM versions WHERE bucket = ?1 AND key = ?2 AND seq = ?3",
        params![bucket, key, head.seq],
    )?;
    if head.latest {
        run(
            "UPDATE versions SET latest = TRUE WHERE bucket = ?1 AND key = ?2 AND seq = \
             (SELECT max(seq) FROM versions WHERE bucket = ?1 AND key = ?2)",
            params![bucket, key],
        )?;
    }
    Ok(())
}

/// Inserts `object` as the key's latest version at `seq`, with its segments.
fn insert(db: &Connection, object: &ObjectRecord, seq: i64, version_id: &str) -> MetaResult<()> {
    db.prepare_cached(
        "INSERT INTO versions (bucket, key, seq, version_id, latest, delete_marker, size_bytes, etag, \
         last_modified_ms, attrs, checksums, parts_count, tags, lock_state, encryption) \
         VALUES (?1, ?2, ?3, ?4, TRUE, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )
    .and_then(|mut s| {
        s.execute(params![
            object.bucket,
            object.key,
            seq,
            version_id,
            object.delete_marker,
            to_i64(object.size_bytes).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?,
            object.etag,
            object.last_modified_ms,
            json(&object.attrs).map_err(to_sql)?,
            json(&object.checksums).map_err(to_sql)?,
            object.parts_count.map(i64::from),
            json(&object.tags).map_err(to_sql)?,
            json(&object.lock).map_err(to_sql)?,
            object.encryption.as_ref().map(json).transpose().map_err(to_sql)?,
        ])
    })
    .map_err(sqlite_error)?;
    let mut segments = db
        .prepare_cached(
            "INSERT INTO segments (blob_id, bucket, key, vseq, seq, size_bytes, sites, crc32c) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(sqlite_error)?;
    for (n, segment) in object.segments.iter().enumerate() {
        segments
            .execute(params![
                segment.blob.to_string(),
                object.bucket,
                object.key,
                seq,
                i64::try_from(n).unwrap_or(i64::MAX),
                to_i64(segment.size_bytes)?,
                vallum_core::meta::encode_sites(&segment.sites),
                crc_to(segment.crc32c),
            ])
            .map_err(sqlite_error)?;
    }
    Ok(())
}

fn to_sql(e: MetaError) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.into())
}
