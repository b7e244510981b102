//! `vallum migrate-meta`: moves an embedded deployment's metadata (SQLite) into PostgreSQL.
//!
//! Offline: it takes the data directory's exclusive lock, so no server may be running. It is
//! idempotent: what already exists in PostgreSQL is skipped, so an interrupted run is simply run
//! again. Blob data stays where it is (records point at the same blob ids). Trashed blobs are
//! deleted first (no reader can hold them while the server is down) rather than carried over.

use std::path::Path;
use std::sync::Arc;

use vallum_blob::LocalBlobStore;
use vallum_core::blob::BlobStore;
use vallum_core::list::versions_after;
use vallum_core::meta::{MetaError, MetaStore};
use vallum_meta::{PgMetaStore, SqliteMetaStore};
use vallum_types::limits::MAX_LIST_KEYS;

use crate::server::{ServerError, lock_data_dir};

/// What a migration did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Buckets created in PostgreSQL.
    pub buckets: u64,
    /// Objects copied.
    pub objects: u64,
    /// Objects already present (skipped).
    pub objects_skipped: u64,
    /// Multipart uploads copied.
    pub uploads: u64,
    /// Parts copied.
    pub parts: u64,
    /// Trashed blobs deleted before the copy.
    pub trash_deleted: u64,
}

/// Why a migration failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The data directory is unusable or in use.
    #[error(transparent)]
    DataDir(#[from] ServerError),
    /// A store failed.
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    /// The blob site failed.
    #[error("blob site: {0}")]
    Blob(#[from] vallum_core::blob::BlobError),
    /// The copy does not match the source.
    #[error("verification failed: {0}")]
    Verify(String),
}

/// Copies the embedded metadata under `data_dir` into the PostgreSQL database at `url`;
/// `progress` receives a line now and then.
pub async fn migrate_meta(
    data_dir: &Path,
    url: &str,
    mut progress: impl FnMut(&str),
) -> Result<MigrationReport, MigrateError> {
    let _lock = lock_data_dir(data_dir, false)?;
    let source = SqliteMetaStore::open(&data_dir.join("meta.db")).await?;
    let blobs = LocalBlobStore::open(data_dir.join("sites").join("local")).map_err(|source| {
        ServerError::DataDir {
            path: data_dir.to_owned(),
            source,
        }
    })?;
    let target: Arc<dyn MetaStore> = Arc::new(PgMetaStore::connect(url).await?);
    let mut report = MigrationReport::default();

    loop {
        let trash = source.trash_before(i64::MAX, MAX_LIST_KEYS).await?;
        for blob in &trash {
            blobs.delete(*blob).await?;
        }
        source.forget_trash(&trash).await?;
        report.trash_deleted += trash.len() as u64;
        if trash.len() < MAX_LIST_KEYS {
            break;
        }
    }
    progress(&format!("deleted {} trashed blobs", report.trash_deleted));

    for bucket in source.list_buckets().await? {
        match target.create_bucket(&bucket).await {
            Ok(()) => report.buckets += 1,
            Err(MetaError::BucketExists) => {}
            Err(e) => return Err(e.into()),
        }
        // Every version and delete marker, by key then newest first, copied verbatim.
        let mut position: Option<(String, i64)> = None;
        loop {
            let after = position.as_ref().map(|(k, seq)| (k.as_str(), *seq));
            let page = versions_after(&source, &bucket.name, after, MAX_LIST_KEYS).await?;
            let Some(last) = page.last() else { break };
            position = Some((last.key.clone(), last.seq));
            for summary in &page {
                let Some(object) = source
                    .get_object(&bucket.name, &summary.key, Some(&summary.version_id))
                    .await?
                else {
                    continue;
                };
                if target.import_version(&object).await? {
                    report.objects += 1;
                } else {
                    report.objects_skipped += 1;
                }
            }
            progress(&format!(
                "bucket {}: {} versions copied so far",
                bucket.name,
                report.objects + report.objects_skipped
            ));
        }
        let (mut key_marker, mut id_marker) = (String::new(), None);
        loop {
            let uploads = source
                .list_uploads(&bucket.name, "", &key_marker, id_marker, MAX_LIST_KEYS)
                .await?;
            for upload in &uploads {
                if target.get_upload(upload.upload_id).await?.is_none() {
                    target.create_upload(upload).await?;
                    report.uploads += 1;
                }
                let present: std::collections::HashSet<_> = target
                    .list_parts(upload.upload_id, 0, usize::MAX)
                    .await?
                    .into_iter()
                    .map(|p| p.blob)
                    .collect();
                for part in source.list_parts(upload.upload_id, 0, usize::MAX).await? {
                    if !present.contains(&part.blob) {
                        target
                            .put_part(upload.upload_id, &part, part.last_modified_ms)
                            .await?;
                        report.parts += 1;
                    }
                }
            }
            match uploads.last() {
                Some(last) if uploads.len() == MAX_LIST_KEYS => {
                    key_marker.clone_from(&last.key);
                    id_marker = Some(last.upload_id);
                }
                _ => break,
            }
        }
        verify_bucket(&source, &*target, &bucket.name).await?;
        progress(&format!("bucket {}: done and verified", bucket.name));
    }
    source.close().await;
    Ok(report)
}

async fn verify_bucket(
    source: &SqliteMetaStore,
    target: &dyn MetaStore,
    bucket: &str,
) -> Result<(), MigrateError> {
    let want_bucket = source.get_bucket(bucket).await?;
    if target.get_bucket(bucket).await? != want_bucket {
        return Err(MigrateError::Verify(format!(
            "bucket {bucket}: configuration differs"
        )));
    }
    let mut position: Option<(String, i64)> = None;
    loop {
        let after = position.as_ref().map(|(k, seq)| (k.as_str(), *seq));
        let want = versions_after(source, bucket, after, MAX_LIST_KEYS).await?;
        let got = versions_after(target, bucket, after, MAX_LIST_KEYS).await?;
        if want != got {
            return Err(MigrateError::Verify(format!(
                "bucket {bucket}: versions differ after {position:?}"
            )));
        }
        let Some(last) = want.last() else {
            return Ok(());
        };
        position = Some((last.key.clone(), last.seq));
    }
}
