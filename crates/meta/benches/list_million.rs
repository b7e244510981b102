//! Listing among 10^6 versions (250,000 keys with 4 versions each), on both stores:
//! a ListObjects page (1000 current objects, the 1001 rows the list engine asks for) and a
//! ListObjectVersions page (1000 versions, through the service's list engine). PostgreSQL is
//! measured when `VALLUM_TEST_PG_URL` names a server (scripts/test.sh starts one; or point it
//! at yours).
//!
//! Run: `cargo bench -p vallum-meta --bench list_million`.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use vallum_blob::LocalBlobStore;
use vallum_core::clock::SystemClock;
use vallum_core::meta::{BucketRecord, ListStart, MetaStore, ObjectIndex};
use vallum_core::service::ObjectService;
use vallum_meta::{PgMetaStore, SqliteMetaStore};

const KEYS: u32 = 250_000;
const VERSIONS: u32 = 4;

/// A key service over a fresh keyring in `dir` (every object is encrypted).
fn keys(dir: &std::path::Path) -> Arc<vallum_core::crypt::KeyService> {
    use vallum_crypto::keys::KeyProvider;
    std::fs::create_dir_all(dir).unwrap();
    let ring = vallum_crypto::keyring::LocalKeyring::open(
        &dir.join("keyring"),
        &vallum_crypto::keyring::RootKey::File(dir.join("root.key")),
    )
    .unwrap();
    futures::executor::block_on(ring.create_key("bench", 1)).unwrap();
    Arc::new(vallum_core::crypt::KeyService::new(
        Arc::new(ring),
        "bench".into(),
        64 * 1024,
    ))
}

fn key(i: u32) -> String {
    format!("tenant/{:03}/records/{i:08}.json", i % 997)
}

fn bucket() -> BucketRecord {
    let mut b = BucketRecord::new("million", 0, "us-east-1");
    b.versioning = vallum_core::versioning::Versioning::Enabled;
    b
}

async fn sqlite(dir: &std::path::Path) -> Arc<dyn MetaStore> {
    let path = dir.join("meta.db");
    let store = SqliteMetaStore::open(&path).await.unwrap();
    store.create_bucket(&bucket()).await.unwrap();
    // Bulk load straight into the table: a million S3 PUTs would measure the loader, not LIST.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    for i in 0..KEYS {
        for v in 0..VERSIONS {
            sqlx::query("INSERT INTO versions (bucket, key, seq, version_id, latest, delete_marker, size_bytes, etag, last_modified_ms, attrs, checksums, tags, lock_state) \
                 VALUES ('million', ?, ?, ?, ?, FALSE, 1, 'e', 0, '{}', '{}', '{}', '{}')")
                .bind(key(i))
                .bind(i64::from(v))
                .bind(format!("{:016x}{:016x}", v, i))
                .bind(v == VERSIONS - 1)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
    }
    tx.commit().await.unwrap();
    pool.close().await;
    Arc::new(store)
}

async fn postgres(admin: &str) -> Arc<dyn MetaStore> {
    let pool = sqlx::PgPool::connect(admin).await.unwrap();
    sqlx::query("DROP DATABASE IF EXISTS vallum_bench_million")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("CREATE DATABASE vallum_bench_million")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let url = format!("{}/vallum_bench_million", admin.rsplit_once('/').unwrap().0);
    let store = PgMetaStore::connect(&url).await.unwrap();
    store.create_bucket(&bucket()).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO versions (bucket, key, seq, version_id, latest, delete_marker, size_bytes, etag, last_modified_ms, attrs, checksums, tags, lock_state) \
         SELECT 'million', 'tenant/' || lpad((i % 997)::text, 3, '0') || '/records/' || lpad(i::text, 8, '0') || '.json', v, \
                lpad(to_hex(v), 16, '0') || lpad(to_hex(i), 16, '0'), v = $2 - 1, FALSE, 1, 'e', 0, '{}', '{}', '{}', '{}' \
         FROM generate_series(0, $1 - 1) AS i, generate_series(0, $2 - 1) AS v",
    )
    .bind(i64::from(KEYS))
    .bind(i64::from(VERSIONS))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE versions")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    Arc::new(store)
}

/// A start key with a full page after it: keys sort by their 997 tenant groups, and a start
/// in the first 900 groups always has more than 1000 keys after it.
fn next_start(i: &mut u32) -> String {
    loop {
        *i = (*i + 7919) % KEYS;
        if *i % 997 < 900 {
            return key(*i);
        }
    }
}

fn bench_store(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: Arc<dyn MetaStore>,
    blobs_dir: &std::path::Path,
) {
    let service = Arc::new(ObjectService::new(
        Arc::clone(&store),
        Arc::new(LocalBlobStore::open(blobs_dir.join(name)).unwrap()),
        Arc::new(SystemClock),
        "us-east-1",
        Arc::new(vallum_core::journal::MemoryJournal::default()),
        keys(&blobs_dir.join(format!("{name}-keys"))),
    ));
    let mut j = 0u32;
    c.bench_function(&format!("list_versions_1000_of_1e6_versions/{name}"), |b| {
        b.to_async(rt).iter(|| {
            let service = Arc::clone(&service);
            let start = next_start(&mut j);
            async move {
                let page = service
                    .list_versions("million", "tenant/", None, Some(&start), None, 1000)
                    .await
                    .unwrap();
                assert_eq!(page.versions.len(), 1000);
                assert!(page.truncated);
            }
        })
    });
    let mut i = 0u32;
    c.bench_function(&format!("list_1000_current_of_1e6_versions/{name}"), |b| {
        b.to_async(rt).iter(|| {
            let store = Arc::clone(&store);
            let start = next_start(&mut i);
            async move {
                let page = store
                    .list_objects("million", "tenant/", ListStart::After(&start), 1001)
                    .await
                    .unwrap();
                assert_eq!(page.len(), 1001);
            }
        })
    });
}

fn list_million(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(sqlite(dir.path()));
    bench_store(c, &rt, "sqlite", store, dir.path());
    match std::env::var("VALLUM_TEST_PG_URL") {
        Ok(admin) => {
            let store = rt.block_on(postgres(&admin));
            bench_store(c, &rt, "postgres", store, dir.path());
        }
        Err(_) => eprintln!("VALLUM_TEST_PG_URL is not set: PostgreSQL not measured"),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = list_million
}
criterion_main!(benches);
