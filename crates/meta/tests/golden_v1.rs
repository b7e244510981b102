//! Golden files for the metadata format: a database written by schema version 1 must keep
//! opening and reading, and the schema itself changes only through a new migration.
//! Regenerate (after a deliberate format change, with a new migration) with
//! `VALLUM_REGENERATE_GOLDEN=1 cargo test -p vallum-meta --test golden_v1`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::Row;
use vallum_core::meta::{
    Checksums, DeleteCondition, DeleteRequest, Leases, ListStart, ObjectAttrs, ObjectIndex,
    ObjectRecord, Segment, Uploads, VersionStart,
};
use vallum_core::versioning::Versioning;
use vallum_meta::{SCHEMA_VERSION, SqliteMetaStore};
use vallum_types::{BlobId, UploadId};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn regenerate() -> bool {
    std::env::var_os("VALLUM_REGENERATE_GOLDEN").is_some()
}

fn sample_object() -> ObjectRecord {
    let mut attrs = ObjectAttrs {
        content_type: Some("text/plain".into()),
        cache_control: Some("no-cache".into()),
        expires_ms: Some(1_900_000_000_000),
        ..ObjectAttrs::default()
    };
    attrs.user_metadata.insert("case".into(), "GDPR-17".into());
    // As schema v3 reads a v1 object: the key's `null` version, ordered by its write time.
    ObjectRecord {
        bucket: "golden".into(),
        key: "records/2026/é.txt".into(),
        version_id: "null".into(),
        seq: 1_795_000_000_000_000,
        latest: true,
        delete_marker: false,
        tags: Default::default(),
        lock: Default::default(),
        encryption: None,
        size_bytes: 11,
        etag: "5eb63bbbe01eeed093cb22bb8f5acdc3".into(),
        last_modified_ms: 1_795_000_000_000,
        attrs,
        checksums: Checksums {
            crc32: Some("DUoRhQ==".into()),
            ..Checksums::default()
        },
        parts_count: None,
        segments: vec![Segment {
            blob: BlobId::from_str("0123456789abcdef0123456789abcdef").unwrap(),
            size_bytes: 11,
            sites: Vec::new(),
            crc32c: None,
        }],
    }
}

async fn schema(db: &Path) -> String {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    let mut out = format!("-- user_version = {version}\n");
    for row in rows {
        let sql: String = row.get("sql");
        out.push_str(&sql);
        out.push_str(";\n");
    }
    out
}

#[tokio::test]
async fn current_schema_matches_its_golden_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta.db");
    SqliteMetaStore::open(&db).await.unwrap().close().await;
    let got = schema(&db).await;
    if regenerate() {
        std::fs::write(golden(&format!("schema-v{SCHEMA_VERSION}.sql")), &got).unwrap();
    }
    assert_eq!(
        got,
        std::fs::read_to_string(golden(&format!("schema-v{SCHEMA_VERSION}.sql"))).unwrap(),
        "the schema changed without a new migration"
    );
}

#[tokio::test]
async fn database_written_by_v1_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta.db");
    let upload_id = UploadId::from_str("fedcba9876543210fedcba9876543210").unwrap();
    // The v1 database is history: it was written once by the schema-v1 build and is never
    // regenerated, only read by newer builds.
    std::fs::copy(golden("meta-v1.db"), &db).unwrap();
    let store = SqliteMetaStore::open(&db).await.unwrap();
    assert_eq!(
        store.get_bucket("golden").await.unwrap().unwrap().location,
        "eu-west-3"
    );
    assert_eq!(
        store
            .get_object("golden", "records/2026/é.txt", None)
            .await
            .unwrap(),
        Some(sample_object())
    );
    let listed = store
        .list_objects("golden", "records/", ListStart::Beginning, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let upload = store.get_upload(upload_id).await.unwrap().unwrap();
    // Opening the v1 file migrated it forward.
    assert!(
        store.acquire_lease("gc", "golden", 0, 1).await.unwrap(),
        "migrations after v1 applied"
    );
    assert_eq!(
        upload.checksum_algorithm,
        Some(vallum_core::meta::ChecksumAlgorithm::Crc32c)
    );
    let bucket = store.get_bucket("golden").await.unwrap().unwrap();
    assert_eq!(bucket.versioning, Versioning::Unversioned);
    assert!(upload.tags.is_empty());
    // The migrated object is a version like any other: listed, and deletable with its blobs.
    let versions = store
        .list_versions("golden", "", VersionStart::Beginning, 10)
        .await
        .unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].version_id, "null");
    let request = DeleteRequest {
        version_id: Some("null"),
        bypass_governance: false,
        condition: DeleteCondition::None,
    };
    assert!(
        store
            .delete_object("golden", "records/2026/é.txt", &request, 5)
            .await
            .unwrap()
            .changed
    );
    let trash = store.trash_before(i64::MAX, 10).await.unwrap();
    let trashed: Vec<_> = trash.iter().map(|t| t.blob).collect();
    assert_eq!(trashed, [sample_object().segments[0].blob]);
    assert!(
        trash[0].sites.is_empty(),
        "a version 1 blob is on the primary site"
    );
}
