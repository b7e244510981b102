//! The embedded store's object lookups (what every GET and HEAD asks first), run on the
//! caller's own thread through rusqlite connections kept for the purpose. Through sqlx each
//! lookup is a hand-off to a worker thread and back (a channel send, a thread wake-up, a row
//! stream); a lookup here is an index probe of a few pages, almost always in memory, that
//! takes microseconds. Only lookups of one object come here; listings, which read many rows,
//! stay on sqlx's workers.
//!
//! The connections are read-only and never hold a transaction between lookups (each
//! statement is reset when its lookup ends), so they never keep the write-ahead file from
//! being checkpointed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, params};
use vallum_core::meta::{MetaResult, ObjectRecord, Segment};

use crate::common::{
    LATEST_WITH_SEGMENTS, VERSION_WITH_SEGMENTS, corrupt, crc_from, from_json, sqlite_error, to_u64,
};

/// Idle connections kept (more are opened while more threads read at once, then closed).
const IDLE_CONNECTIONS: usize = 4;
/// Prepared statements each connection keeps.
const STATEMENT_CACHE: usize = 8;

/// Read-only connections to one database, taken for a lookup and given back.
#[derive(Debug)]
pub(crate) struct Reader {
    path: PathBuf,
    busy_timeout: std::time::Duration,
    idle: Mutex<Vec<Connection>>,
}

impl Reader {
    pub(crate) fn new(path: &Path, busy_timeout: std::time::Duration) -> Self {
        Self {
            path: path.to_owned(),
            busy_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> MetaResult<T>) -> MetaResult<T> {
        let taken = self.idle().pop();
        let db = match taken {
            Some(db) => db,
            None => {
                let db = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sqlite_error)?;
                db.busy_timeout(self.busy_timeout).map_err(sqlite_error)?;
                db.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                db
            }
        };
        let result = f(&db);
        let mut idle = self.idle();
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(db);
        }
        result
    }

    /// Closes the idle connections (the store is closing).
    pub(crate) fn close(&self) {
        self.idle().clear();
    }

    /// The latest version of `key` (`version_id` `None`) or the named one, with its segments.
    pub(crate) fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> MetaResult<Option<ObjectRecord>> {
        self.with(|db| {
            let (sql, found) = match version_id {
                None => (LATEST_WITH_SEGMENTS, None),
                Some(v) => (VERSION_WITH_SEGMENTS, Some(v)),
            };
            let mut stmt = db.prepare_cached(sql).map_err(sqlite_error)?;
            let mut rows = match found {
                None => stmt.query(params![bucket, key]),
                Some(v) => stmt.query(params![bucket, key, v]),
            }
            .map_err(sqlite_error)?;
            let mut object: Option<ObjectRecord> = None;
            while let Some(row) = rows.next().map_err(sqlite_error)? {
                let record = match &mut object {
                    Some(record) => record,
                    None => object.insert(version(row)?),
                };
                if let Some(segment) = segment(row)? {
                    record.segments.push(segment);
                }
            }
            Ok(object)
        })
    }
}

/// The version columns of a joined row (as `common::object_from_joined_rows!` reads them).
fn version(row: &rusqlite::Row<'_>) -> MetaResult<ObjectRecord> {
    let text = |name: &str| row.get::<_, String>(name).map_err(sqlite_error);
    Ok(ObjectRecord {
        bucket: text("bucket")?,
        key: text("key")?,
        version_id: text("version_id")?,
        seq: row.get("seq").map_err(sqlite_error)?,
        latest: row.get("latest").map_err(sqlite_error)?,
        delete_marker: row.get("delete_marker").map_err(sqlite_error)?,
        size_bytes: to_u64(row.get("size_bytes").map_err(sqlite_error)?)?,
        etag: text("etag")?,
        last_modified_ms: row.get("last_modified_ms").map_err(sqlite_error)?,
        attrs: from_json(&text("attrs")?)?,
        checksums: from_json(&text("checksums")?)?,
        parts_count: row
            .get::<_, Option<i64>>("parts_count")
            .map_err(sqlite_error)?
            .map(u32::try_from)
            .transpose()
            .map_err(corrupt)?,
        segments: Vec::new(),
        tags: from_json(&text("tags")?)?,
        lock: from_json(&text("lock_state")?)?,
        encryption: row
            .get::<_, Option<String>>("encryption")
            .map_err(sqlite_error)?
            .as_deref()
            .map(from_json)
            .transpose()?,
    })
}

/// The segment columns of a joined row, if the row has a segment.
fn segment(row: &rusqlite::Row<'_>) -> MetaResult<Option<Segment>> {
    let Some(blob) = row
        .get::<_, Option<String>>("blob_id")
        .map_err(sqlite_error)?
    else {
        return Ok(None);
    };
    Ok(Some(Segment {
        blob: blob.parse().map_err(corrupt)?,
        size_bytes: to_u64(row.get("seg_size").map_err(sqlite_error)?)?,
        sites: vallum_core::meta::decode_sites(
            &row.get::<_, String>("seg_sites").map_err(sqlite_error)?,
        ),
        crc32c: crc_from(row.get("seg_crc").map_err(sqlite_error)?)?,
    }))
}
