//! A LIST page (1000 keys, the 1001 rows the list engine asks for) among 10^6 keys, on both
//! stores. PostgreSQL is measured when `VALLUM_TEST_PG_URL` names a server (scripts/test.sh
//! starts one; or point it at yours).
//!
//! Run: `cargo bench -p vallum-meta --bench list_million`.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use vallum_core::meta::{BucketRecord, ListStart, MetaStore};
use vallum_meta::{PgMetaStore, SqliteMetaStore};

const KEYS: u32 = 1_000_000;

fn key(i: u32) -> String {
    format!("tenant/{:03}/records/{i:08}.json", i % 997)
}

fn bucket() -> BucketRecord {
    BucketRecord {
        name: "million".into(),
        created_ms: 0,
        location: "us-east-1".into(),
    }
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
        sqlx::query("INSERT INTO objects (bucket, key, size_bytes, etag, last_modified_ms, attrs, checksums) VALUES ('million', ?, 1, 'e', 0, '{}', '{}')")
            .bind(key(i))
            .execute(&mut *tx)
            .await
            .unwrap();
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
        "INSERT INTO objects (bucket, key, size_bytes, etag, last_modified_ms, attrs, checksums) \
         SELECT 'million', 'tenant/' || lpad((i % 997)::text, 3, '0') || '/records/' || lpad(i::text, 8, '0') || '.json', 1, 'e', 0, '{}', '{}' \
         FROM generate_series(0, $1 - 1) AS i",
    )
    .bind(i64::from(KEYS))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE objects").execute(&pool).await.unwrap();
    pool.close().await;
    Arc::new(store)
}

fn bench_store(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: Arc<dyn MetaStore>,
) {
    let mut i = 0u32;
    c.bench_function(&format!("list_1000_of_1e6/{name}"), |b| {
        b.to_async(rt).iter(|| {
            // Keys sort by their 997 tenant groups; a start in the first 900 groups always has a
            // full page after it.
            loop {
                i = (i + 7919) % KEYS;
                if i % 997 < 900 {
                    break;
                }
            }
            let store = Arc::clone(&store);
            let start = key(i);
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
    bench_store(c, &rt, "sqlite", store);
    match std::env::var("VALLUM_TEST_PG_URL") {
        Ok(admin) => {
            let store = rt.block_on(postgres(&admin));
            bench_store(c, &rt, "postgres", store);
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
