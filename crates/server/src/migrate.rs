//! `vallum migrate-meta`: moves an embedded deployment's metadata (SQLite) into PostgreSQL.
//!
//! Offline: it takes the data directory's exclusive lock, so no server may be running. It is
//! idempotent: what already exists in PostgreSQL is skipped, so an interrupted run is simply run
//! again. Blob data stays where it is (records point at the same blob ids). Trashed blobs are
//! deleted first (no reader can hold them while the server is down) rather than carried over.

use std::path::Path;
use std::sync::Arc;
use vallum_core::meta::ObjectIndex;
use vallum_core::meta::Uploads;
use vallum_core::meta::{Records, SiteRecord};
use vallum_core::records::TypedRecords;

use vallum_core::list::versions_after;
use vallum_core::meta::BucketUpdate;
use vallum_core::meta::{BucketRecord, MetaError, MetaStore};
use vallum_meta::{PgMetaStore, SqliteMetaStore};
use vallum_types::limits::MAX_LIST_KEYS;

use crate::config::Config;
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
    /// Transparency-log entries copied into the database's sequence.
    pub log_entries: u64,
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
    /// The embedded transparency log could not be read or extended.
    #[error("transparency log: {0}")]
    Ledger(#[from] vallum_ledger::LedgerError),
}

/// Copies the embedded metadata of the deployment `config` describes (its data directory,
/// and its storage site for trashed blobs) into the PostgreSQL database at `url`; `progress`
/// receives a line now and then.
pub async fn migrate_meta(
    config: &Config,
    url: &str,
    mut progress: impl FnMut(&str),
) -> Result<MigrationReport, MigrateError> {
    let data_dir = config.data_dir.as_path();
    let _lock = lock_data_dir(data_dir, false)?;
    let source = SqliteMetaStore::open(&data_dir.join("meta.db")).await?;
    let sites = crate::sites::SiteManager::new(config.clone(), data_dir.to_owned());
    let (_, stores) = sites.build(&source.load_all::<SiteRecord>().await?).await?;
    let store_of = |id: &str| stores.iter().find(|(s, _)| s == id).map(|(_, s)| s);
    let target: Arc<dyn MetaStore> = Arc::new(PgMetaStore::connect(url).await?);
    let mut report = MigrationReport::default();
    let started = std::time::Instant::now();

    loop {
        let trash = source.trash_before(i64::MAX, MAX_LIST_KEYS).await?;
        for t in &trash {
            let ids = if t.sites.is_empty() {
                vec![config.site.id.clone()]
            } else {
                t.sites.clone()
            };
            for id in ids {
                if let Some(store) = store_of(&id) {
                    store.delete(t.blob).await?;
                }
            }
        }
        let ids: Vec<_> = trash.iter().map(|t| t.blob).collect();
        source.forget_trash(&ids).await?;
        report.trash_deleted += trash.len() as u64;
        if trash.len() < MAX_LIST_KEYS {
            break;
        }
    }
    progress(&format!("deleted {} trashed blobs", report.trash_deleted));
    // Every record comes verbatim: identity records (tenants, users, sealed keys, operators,
    // charters, lockbox, bucket policies; the secrets stay sealed by the same data-directory
    // key), run-time site records (so the gateways on PostgreSQL see the same sites) and job
    // states.
    for kind in vallum_core::records::kind::ALL {
        for r in source.records(kind).await? {
            if target.record(kind, &r.id).await?.is_none() {
                target.put_record(kind, &r.id, &r.body, None).await?;
            }
        }
    }

    for bucket in source.list_buckets().await? {
        let created = BucketRecord {
            boundary: None,
            ..bucket.clone()
        };
        match target.create_bucket(&created).await {
            Ok(()) => report.buckets += 1,
            Err(MetaError::BucketExists) => {}
            Err(e) => return Err(e.into()),
        }
        copy_boundary_history(&source, &*target, &bucket.name).await?;
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
            let copied = report.objects + report.objects_skipped;
            let secs = started.elapsed().as_secs_f64();
            progress(&format!(
                "bucket {}: {copied} versions copied so far ({:.0}/s over all buckets)",
                bucket.name,
                if secs > 0.0 {
                    copied as f64 / secs
                } else {
                    0.0
                }
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
    report.log_entries = migrate_log(data_dir, &*target, &mut progress).await?;
    source.close().await;
    Ok(report)
}

/// Entries copied per database transaction.
const LOG_COPY_BATCH: usize = 4096;

/// Continues the embedded transparency log in the database: records the migration in it,
/// then copies every entry to the same index of `ledger_entries` (what is already there must
/// be the same log). Gateways then sequence new entries after them.
async fn migrate_log(
    data_dir: &Path,
    target: &dyn MetaStore,
    progress: &mut impl FnMut(&str),
) -> Result<u64, MigrateError> {
    use vallum_core::journal::{Entry, Event};
    let log_dir = data_dir.join("ledger").join("log");
    if !log_dir.exists() {
        return Ok(0);
    }
    let mut store = vallum_ledger::store::TileStore::open(&log_dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let migrated = Entry::new(
        now,
        "system:migrate-meta",
        Event::Admin {
            action: "metadata_migrated".into(),
            target: "postgresql".into(),
        },
    );
    // Idempotent: a re-run does not record the migration twice.
    let already = store.size() > 0
        && vallum_ledger::seal::stored_entry(&store.entry(store.size() - 1)?).is_ok_and(
            |(e, _)| matches!(&e.event, Event::Admin { action, .. } if action == "metadata_migrated"),
        );
    if !already {
        let sealed = crate::ledger::seal(&migrated, migrated.encode())
            .map_err(|e| MigrateError::Verify(format!("sealing the migration entry: {e}")))?;
        store.append(&[sealed])?;
    }
    let size = store.integrate()?;
    let mut copied = 0u64;
    let mut index = 0u64;
    while index < size {
        let want: Vec<Vec<u8>> = (index..size.min(index + LOG_COPY_BATCH as u64))
            .map(|i| store.entry(i))
            .collect::<Result<_, _>>()?;
        let have = target.ledger_read(index, want.len()).await?;
        if have.iter().zip(&want).any(|(a, b)| a != b) {
            return Err(MigrateError::Verify(format!(
                "the database already holds another transparency log (differs at or after entry {index})"
            )));
        }
        let missing = &want[have.len()..];
        if !missing.is_empty() {
            let first = target.ledger_append(missing).await?;
            if first != index + have.len() as u64 {
                return Err(MigrateError::Verify(format!(
                    "the database's log sequence continued at {first}, expected {}",
                    index + have.len() as u64
                )));
            }
            copied += missing.len() as u64;
        }
        index += want.len() as u64;
    }
    if target.ledger_read(size, 1).await?.len() == 1 {
        return Err(MigrateError::Verify(format!(
            "the database's log sequence is longer than the embedded log ({size} entries)"
        )));
    }
    progress(&format!(
        "transparency log: {size} entries, {copied} copied"
    ));
    Ok(copied)
}

/// Replays the bucket's boundary policy versions the target lacks, oldest first, so the
/// target holds the same history and the same current version (idempotent).
async fn copy_boundary_history(
    source: &SqliteMetaStore,
    target: &dyn MetaStore,
    bucket: &str,
) -> Result<(), MigrateError> {
    let have = target
        .get_bucket(bucket)
        .await?
        .and_then(|b| b.boundary)
        .map_or(0, |b| b.version);
    for version in source.boundary_history(bucket).await? {
        if version.version > have {
            target
                .update_bucket(bucket, &BucketUpdate::Boundary(version))
                .await?;
        }
    }
    Ok(())
}

async fn verify_bucket(
    source: &SqliteMetaStore,
    target: &dyn MetaStore,
    bucket: &str,
) -> Result<(), MigrateError> {
    let want_bucket = source.get_bucket(bucket).await?;
    if target.get_bucket(bucket).await? != want_bucket
        || target.boundary_history(bucket).await? != source.boundary_history(bucket).await?
    {
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
