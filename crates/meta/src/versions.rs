//! The versioning logic both stores share, written once as a macro that each backend expands
//! over its own transaction type (a generic function over sqlx's `Executor` runs into a rustc
//! higher-ranked inference limitation inside `async_trait` methods).
//!
//! The expanding module must provide `type Tx<'a>`, `insert_segments(tx, object, vseq)`, and
//! call these functions only after it has serialized writers of the key (SQLite: the single
//! writer connection; PostgreSQL: the per-key advisory lock and the bucket row lock).

use vallum_core::versioning::{ObjectLock, Tags};

/// The mutable state and identity of one version, as the logic needs it.
pub(crate) struct VersionHead {
    pub(crate) seq: i64,
    pub(crate) version_id: String,
    pub(crate) latest: bool,
    pub(crate) delete_marker: bool,
    pub(crate) etag: String,
    pub(crate) tags: Tags,
    pub(crate) lock: ObjectLock,
}

pub(crate) const HEAD_COLUMNS: &str =
    "seq, version_id, latest, delete_marker, etag, tags, lock_state";

macro_rules! version_logic {
    ($row:ty) => {
        use vallum_core::meta::{DeleteCondition, DeleteRequest, DeleteResult};
        use vallum_core::versioning::{
            NULL_VERSION, VersionUpdate, Versioning, apply_version_update, new_version_id,
            next_seq,
        };
        use $crate::versions::{HEAD_COLUMNS, VersionHead};

        fn head_row(row: &$row) -> MetaResult<VersionHead> {
            Ok(VersionHead {
                seq: row.try_get("seq").map_err(backend)?,
                version_id: row.try_get("version_id").map_err(backend)?,
                latest: row.try_get("latest").map_err(backend)?,
                delete_marker: row.try_get("delete_marker").map_err(backend)?,
                etag: row.try_get("etag").map_err(backend)?,
                tags: $crate::common::from_json(
                    &row.try_get::<String, _>("tags").map_err(backend)?,
                )?,
                lock: $crate::common::from_json(
                    &row.try_get::<String, _>("lock_state").map_err(backend)?,
                )?,
            })
        }

        async fn v_latest(
            tx: &mut Tx<'_>,
            bucket: &str,
            key: &str,
        ) -> MetaResult<Option<VersionHead>> {
            let sql = format!(
                "SELECT {HEAD_COLUMNS} FROM versions WHERE bucket = $1 AND key = $2 ORDER BY seq DESC LIMIT 1"
            );
            let row = sqlx::query(&sql)
                .bind(bucket)
                .bind(key)
                .fetch_optional(&mut **tx)
                .await
                .map_err(backend)?;
            row.as_ref().map(head_row).transpose()
        }

        async fn v_by_id(
            tx: &mut Tx<'_>,
            bucket: &str,
            key: &str,
            version_id: &str,
        ) -> MetaResult<Option<VersionHead>> {
            let sql = format!(
                "SELECT {HEAD_COLUMNS} FROM versions WHERE bucket = $1 AND key = $2 AND version_id = $3"
            );
            let row = sqlx::query(&sql)
                .bind(bucket)
                .bind(key)
                .bind(version_id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(backend)?;
            row.as_ref().map(head_row).transpose()
        }

        /// How many versions the key has, counting at most two.
        async fn v_count(tx: &mut Tx<'_>, bucket: &str, key: &str) -> MetaResult<i64> {
            sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT 1 FROM versions WHERE bucket = $1 AND key = $2 LIMIT 2) AS v",
            )
                .bind(bucket)
                .bind(key)
                .fetch_one(&mut **tx)
                .await
                .map_err(backend)
        }

        /// Inserts `object` as the key's latest version at `seq`. `first` says the key had no
        /// version before (nothing to mark as no longer the latest: one statement less).
        async fn v_insert(
            tx: &mut Tx<'_>,
            object: &ObjectRecord,
            seq: i64,
            version_id: &str,
            first: bool,
        ) -> MetaResult<()> {
            if first {
                return v_insert_row(tx, object, seq, version_id, true).await;
            }
            // The latest version is always the one with the largest seq: an index probe, not a
            // scan of the key's versions.
            sqlx::query(
                "UPDATE versions SET latest = FALSE WHERE bucket = $1 AND key = $2 AND latest = TRUE \
                 AND seq = (SELECT max(seq) FROM versions WHERE bucket = $1 AND key = $2)",
            )
                .bind(&object.bucket)
                .bind(&object.key)
                .execute(&mut **tx)
                .await
                .map_err(backend)?;
            v_insert_row(tx, object, seq, version_id, true).await
        }

        /// Inserts a version row and its segments as given.
        async fn v_insert_row(
            tx: &mut Tx<'_>,
            object: &ObjectRecord,
            seq: i64,
            version_id: &str,
            latest: bool,
        ) -> MetaResult<()> {
            sqlx::query(
                "INSERT INTO versions (bucket, key, seq, version_id, latest, delete_marker, size_bytes, etag, last_modified_ms, attrs, checksums, parts_count, tags, lock_state, encryption) \
                 VALUES ($1, $2, $3, $4, $14, $5, $6, $7, $8, $9, $10, $11, $12, $13, $15)",
            )
            .bind(&object.bucket)
            .bind(&object.key)
            .bind(seq)
            .bind(version_id)
            .bind(object.delete_marker)
            .bind(to_i64(object.size_bytes)?)
            .bind(&object.etag)
            .bind(object.last_modified_ms)
            .bind(json(&object.attrs)?)
            .bind(json(&object.checksums)?)
            .bind(object.parts_count.map(i64::from))
            .bind(json(&object.tags)?)
            .bind(json(&object.lock)?)
            .bind(latest)
            .bind(object.encryption.as_ref().map(json).transpose()?)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
            insert_segments(tx, object, seq).await
        }

        /// Copies a version verbatim (id, order, flags) unless the key already has it.
        async fn import_version_in(tx: &mut Tx<'_>, object: &ObjectRecord) -> MetaResult<bool> {
            if v_by_id(tx, &object.bucket, &object.key, &object.version_id)
                .await?
                .is_some()
            {
                return Ok(false);
            }
            v_insert_row(tx, object, object.seq, &object.version_id, object.latest).await?;
            Ok(true)
        }

        /// Removes one version: its blobs go to the trash; if it was the latest, the next
        /// newest version becomes the latest.
        async fn v_remove(
            tx: &mut Tx<'_>,
            bucket: &str,
            key: &str,
            head: &VersionHead,
            now_ms: i64,
        ) -> MetaResult<()> {
            sqlx::query("INSERT INTO trash (blob_id, trashed_ms, sites) SELECT blob_id, $1, sites FROM segments WHERE bucket = $2 AND key = $3 AND vseq = $4 ON CONFLICT DO NOTHING")
                .bind(now_ms)
                .bind(bucket)
                .bind(key)
                .bind(head.seq)
                .execute(&mut **tx)
                .await
                .map_err(backend)?;
            sqlx::query("DELETE FROM segments WHERE bucket = $1 AND key = $2 AND vseq = $3")
                .bind(bucket)
                .bind(key)
                .bind(head.seq)
                .execute(&mut **tx)
                .await
                .map_err(backend)?;
            sqlx::query("DELETE FROM versions WHERE bucket = $1 AND key = $2 AND seq = $3")
                .bind(bucket)
                .bind(key)
                .bind(head.seq)
                .execute(&mut **tx)
                .await
                .map_err(backend)?;
            if head.latest {
                sqlx::query(
                    "UPDATE versions SET latest = TRUE WHERE bucket = $1 AND key = $2 AND seq = \
                     (SELECT max(seq) FROM versions WHERE bucket = $1 AND key = $2)",
                )
                .bind(bucket)
                .bind(key)
                .execute(&mut **tx)
                .await
                .map_err(backend)?;
            }
            Ok(())
        }

        /// Stores a new version per the bucket's versioning state; returns its id.
        async fn put_version(
            tx: &mut Tx<'_>,
            bucket: &BucketRecord,
            object: &ObjectRecord,
            condition: &WriteCondition,
            now_ms: i64,
        ) -> MetaResult<String> {
            let latest = v_latest(tx, &object.bucket, &object.key).await?;
            let current = latest
                .as_ref()
                .filter(|h| !h.delete_marker)
                .map(|h| h.etag.as_str());
            check_condition(current, condition)?;
            let seq = next_seq(latest.as_ref().map(|h| h.seq), now_ms);
            let version_id = if bucket.versioning == Versioning::Enabled {
                new_version_id(seq)
            } else {
                // The null version, if the key has one: the latest already read, or a lookup.
                let fetched;
                let null = match &latest {
                    None => None,
                    Some(head) if head.version_id == NULL_VERSION => Some(head),
                    Some(_) => {
                        fetched =
                            v_by_id(tx, &object.bucket, &object.key, NULL_VERSION).await?;
                        fetched.as_ref()
                    }
                };
                if let Some(null) = null {
                    null.lock.check_removable(now_ms, false)?;
                    v_remove(tx, &object.bucket, &object.key, null, now_ms).await?;
                }
                NULL_VERSION.to_owned()
            };
            v_insert(tx, object, seq, &version_id, latest.is_none()).await?;
            Ok(version_id)
        }

        /// Deletes per S3's rules (see `MetaStore::delete_object`).
        async fn delete_version(
            tx: &mut Tx<'_>,
            bucket: &BucketRecord,
            key: &str,
            request: &DeleteRequest<'_>,
            now_ms: i64,
        ) -> MetaResult<DeleteResult> {
            let name = bucket.name.as_str();
            if let Some(version_id) = request.version_id {
                let Some(head) = v_by_id(tx, name, key, version_id).await? else {
                    return Ok(DeleteResult {
                        version_id: Some(version_id.to_owned()),
                        delete_marker: false,
                        changed: false,
                    });
                };
                let holds = match request.condition {
                    DeleteCondition::None => true,
                    DeleteCondition::NotLatest => !head.latest,
                    DeleteCondition::LatestSeq(seq) => head.latest && head.seq == seq,
                    DeleteCondition::SoleMarker(_) => false,
                };
                if !holds {
                    return Err(MetaError::PreconditionFailed);
                }
                head.lock
                    .check_removable(now_ms, request.bypass_governance)?;
                v_remove(tx, name, key, &head, now_ms).await?;
                return Ok(DeleteResult {
                    version_id: Some(head.version_id),
                    delete_marker: head.delete_marker,
                    changed: true,
                });
            }
            let latest = v_latest(tx, name, key).await?;
            match request.condition {
                DeleteCondition::None => {}
                DeleteCondition::LatestSeq(seq) => {
                    if latest.as_ref().map(|h| h.seq) != Some(seq) {
                        return Err(MetaError::PreconditionFailed);
                    }
                }
                DeleteCondition::SoleMarker(seq) => {
                    let Some(head) = latest.filter(|h| h.seq == seq && h.delete_marker) else {
                        return Err(MetaError::PreconditionFailed);
                    };
                    if v_count(tx, name, key).await? != 1 {
                        return Err(MetaError::PreconditionFailed);
                    }
                    v_remove(tx, name, key, &head, now_ms).await?;
                    return Ok(DeleteResult {
                        version_id: Some(head.version_id),
                        delete_marker: true,
                        changed: true,
                    });
                }
                DeleteCondition::NotLatest => {
                    return Err(MetaError::Invalid(
                        "NotLatest needs a version id".into(),
                    ));
                }
            }
            match bucket.versioning {
                Versioning::Unversioned => {
                    let Some(head) = latest else {
                        return Ok(DeleteResult::default());
                    };
                    head.lock
                        .check_removable(now_ms, request.bypass_governance)?;
                    v_remove(tx, name, key, &head, now_ms).await?;
                    Ok(DeleteResult {
                        version_id: None,
                        delete_marker: false,
                        changed: true,
                    })
                }
                Versioning::Enabled | Versioning::Suspended => {
                    let seq = next_seq(latest.as_ref().map(|h| h.seq), now_ms);
                    let version_id = if bucket.versioning == Versioning::Enabled {
                        new_version_id(seq)
                    } else {
                        if let Some(null) = v_by_id(tx, name, key, NULL_VERSION).await? {
                            null.lock
                                .check_removable(now_ms, request.bypass_governance)?;
                            v_remove(tx, name, key, &null, now_ms).await?;
                        }
                        NULL_VERSION.to_owned()
                    };
                    let marker = ObjectRecord {
                        encryption: None,
                        bucket: name.to_owned(),
                        key: key.to_owned(),
                        version_id: version_id.clone(),
                        seq,
                        latest: true,
                        delete_marker: true,
                        size_bytes: 0,
                        etag: String::new(),
                        last_modified_ms: now_ms,
                        attrs: Default::default(),
                        checksums: Default::default(),
                        parts_count: None,
                        segments: Vec::new(),
                        tags: Default::default(),
                        lock: Default::default(),
                    };
                    v_insert(tx, &marker, seq, &version_id, false).await?;
                    Ok(DeleteResult {
                        version_id: Some(version_id),
                        delete_marker: true,
                        changed: true,
                    })
                }
            }
        }

        /// Applies a tags/retention/legal-hold change to one version.
        async fn update_version_in(
            tx: &mut Tx<'_>,
            bucket: &BucketRecord,
            key: &str,
            version_id: Option<&str>,
            update: &VersionUpdate,
            now_ms: i64,
        ) -> MetaResult<String> {
            let head = match version_id {
                Some(v) => {
                    let head = v_by_id(tx, &bucket.name, key, v)
                        .await?
                        .ok_or(MetaError::NoSuchVersion)?;
                    if head.delete_marker {
                        return Err(MetaError::DeleteMarker);
                    }
                    head
                }
                None => v_latest(tx, &bucket.name, key)
                    .await?
                    .filter(|h| !h.delete_marker)
                    .ok_or(MetaError::NoSuchKey)?,
            };
            let (mut tags, mut lock) = (head.tags, head.lock);
            apply_version_update(&mut tags, &mut lock, update, bucket.object_lock.is_some(), now_ms)?;
            sqlx::query("UPDATE versions SET tags = $1, lock_state = $2 WHERE bucket = $3 AND key = $4 AND seq = $5")
                .bind(json(&tags)?)
                .bind(json(&lock)?)
                .bind(&bucket.name)
                .bind(key)
                .bind(head.seq)
                .execute(&mut **tx)
                .await
                .map_err(backend)?;
            Ok(head.version_id)
        }
    };
}
pub(crate) use version_logic;
