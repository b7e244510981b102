//! The shared MetaStore conformance suite against a real PostgreSQL server.
//! `scripts/test.sh` starts one and sets `VALLUM_TEST_PG_URL` (an admin URL); each test gets a
//! database of its own.

use std::sync::Arc;

use vallum_core::meta::MetaStore;
use vallum_meta::PgMetaStore;

/// The URL of a new, empty database on the test server.
async fn empty_database() -> String {
    let admin = std::env::var("VALLUM_TEST_PG_URL")
        .expect("VALLUM_TEST_PG_URL is not set: run ./scripts/test.sh, which starts a PostgreSQL server for the tests");
    let name = format!("vallum_test_{}", vallum_types::UploadId::random());
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').expect("the URL names a database");
    format!("{base}/{name}")
}

/// Creates a fresh database and connects a store to it.
async fn make() -> ((), Arc<dyn MetaStore>) {
    let store = PgMetaStore::connect(&empty_database().await).await.unwrap();
    ((), Arc::new(store))
}

vallum_core::meta_conformance_tests!(make().await);

#[tokio::test]
async fn gateways_starting_together_migrate_once() {
    let url = empty_database().await;
    let starts = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { PgMetaStore::connect(&url).await })
    });
    for s in futures::future::join_all(starts).await {
        s.unwrap().unwrap();
    }
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM vallum_schema ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        versions,
        (1..=vallum_meta::PG_SCHEMA_VERSION).collect::<Vec<_>>(),
        "each migration applied exactly once"
    );
}

#[tokio::test]
async fn unreachable_server_is_unavailable_not_internal() {
    let err = PgMetaStore::connect("postgres://vallum@127.0.0.1:1/none")
        .await
        .unwrap_err();
    assert!(
        matches!(err, vallum_core::meta::MetaError::Unavailable(_)),
        "{err:?}"
    );
}

/// Schema v10 moves the rows of the old `sites` and `jobs` tables into the record store: the
/// test puts a database back to v9 (the old tables, with rows) and lets a gateway upgrade it.
#[tokio::test]
async fn site_and_job_rows_become_records_on_upgrade() {
    let url = empty_database().await;
    PgMetaStore::connect(&url).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for statement in [
        "DELETE FROM vallum_schema WHERE version >= 10",
        "ALTER TABLE records RENAME TO iam_records",
        "CREATE TABLE sites (id TEXT PRIMARY KEY, definition TEXT, state TEXT NOT NULL, \
         changed_by TEXT NOT NULL, changed_ms BIGINT NOT NULL)",
        "CREATE TABLE jobs (name TEXT PRIMARY KEY, state TEXT NOT NULL, updated_ms BIGINT NOT NULL)",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    for (table, values) in vallum_core::conformance::meta::V10_ROWS {
        sqlx::query(&format!("INSERT INTO {table} VALUES ({values})"))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    let store = PgMetaStore::connect(&url).await.unwrap();
    vallum_core::conformance::meta::v10_rows_are_records(&store).await;
}
