//! Replica records and run-time site records, the same SQL on both backends: the macro
//! expands these functions once per backend, over its pool type (the `MetaStore` impls, whose
//! `async_trait` cannot see through a macro, delegate to them).

macro_rules! replica_logic {
    ($pool:ty) => {
        pub(crate) async fn blob_sites_in(
            pool: &$pool,
            blob: vallum_types::BlobId,
        ) -> vallum_core::meta::MetaResult<Option<Vec<String>>> {
            let found: Option<String> = sqlx::query_scalar($crate::common::BLOB_SITES)
                .bind(blob.to_string())
                .fetch_optional(pool)
                .await
                .map_err($crate::common::backend)?;
            Ok(found.as_deref().map(vallum_core::meta::decode_sites))
        }

        pub(crate) async fn set_blob_sites_in(
            pool: &$pool,
            blob: vallum_types::BlobId,
            expected: &[String],
            sites: &[String],
        ) -> vallum_core::meta::MetaResult<bool> {
            let (id, old, new) = (
                blob.to_string(),
                vallum_core::meta::encode_sites(expected),
                vallum_core::meta::encode_sites(sites),
            );
            let mut tx = pool.begin().await.map_err($crate::common::backend)?;
            let mut changed = 0;
            for table in ["segments", "parts"] {
                changed += sqlx::query(&format!(
                    "UPDATE {table} SET sites = $1 WHERE blob_id = $2 AND sites = $3"
                ))
                .bind(&new)
                .bind(&id)
                .bind(&old)
                .execute(&mut *tx)
                .await
                .map_err($crate::common::backend)?
                .rows_affected();
            }
            tx.commit().await.map_err($crate::common::backend)?;
            Ok(changed > 0)
        }

        pub(crate) async fn blob_placements_in(
            pool: &$pool,
            after: Option<vallum_types::BlobId>,
            limit: usize,
        ) -> vallum_core::meta::MetaResult<Vec<vallum_core::meta::BlobPlacement>> {
            let rows = sqlx::query($crate::common::BLOB_PLACEMENTS)
                .bind(after.map_or_else(String::new, |b| b.to_string()))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(pool)
                .await
                .map_err($crate::common::backend)?;
            rows.iter()
                .map(|r| $crate::common::blob_placement_from_row!(r))
                .collect()
        }

        pub(crate) async fn site_usage_in(
            pool: &$pool,
            bucket: Option<&str>,
        ) -> vallum_core::meta::MetaResult<Vec<vallum_core::meta::SiteUsage>> {
            let rows: Vec<(String, String, i64, i64)> = sqlx::query_as($crate::common::SITE_USAGE)
                .bind(bucket)
                .fetch_all(pool)
                .await
                .map_err($crate::common::backend)?;
            rows.into_iter()
                .map(|(b, sites, blobs, bytes)| {
                    $crate::common::site_usage_from(b, &sites, blobs, bytes)
                })
                .collect()
        }

        pub(crate) async fn site_records_in(
            pool: &$pool,
        ) -> vallum_core::meta::MetaResult<Vec<vallum_core::meta::SiteRecord>> {
            let rows = sqlx::query("SELECT * FROM sites ORDER BY id")
                .fetch_all(pool)
                .await
                .map_err($crate::common::backend)?;
            rows.iter()
                .map(|r| $crate::common::site_record_from_row!(r))
                .collect()
        }

        pub(crate) async fn put_site_record_in(
            pool: &$pool,
            site: &vallum_core::meta::SiteRecord,
        ) -> vallum_core::meta::MetaResult<()> {
            sqlx::query($crate::common::SITE_RECORD_UPSERT)
                .bind(&site.id)
                .bind(&site.definition)
                .bind(&site.state)
                .bind(&site.changed_by)
                .bind(site.changed_ms)
                .execute(pool)
                .await
                .map_err($crate::common::backend)?;
            Ok(())
        }

        pub(crate) async fn delete_site_record_in(
            pool: &$pool,
            id: &str,
        ) -> vallum_core::meta::MetaResult<()> {
            sqlx::query("DELETE FROM sites WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .map_err($crate::common::backend)?;
            Ok(())
        }

        pub(crate) async fn iam_records_in(
            pool: &$pool,
            kind: &str,
        ) -> vallum_core::meta::MetaResult<Vec<vallum_core::meta::IamRecord>> {
            let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT kind, id, body, rev FROM iam_records WHERE kind = $1 ORDER BY id",
            )
            .bind(kind)
            .fetch_all(pool)
            .await
            .map_err($crate::common::backend)?;
            Ok(rows
                .into_iter()
                .map(|(kind, id, body, rev)| vallum_core::meta::IamRecord { kind, id, body, rev })
                .collect())
        }

        pub(crate) async fn iam_record_in(
            pool: &$pool,
            kind: &str,
            id: &str,
        ) -> vallum_core::meta::MetaResult<Option<vallum_core::meta::IamRecord>> {
            let row: Option<(String, String, String, i64)> = sqlx::query_as(
                "SELECT kind, id, body, rev FROM iam_records WHERE kind = $1 AND id = $2",
            )
            .bind(kind)
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err($crate::common::backend)?;
            Ok(row.map(|(kind, id, body, rev)| vallum_core::meta::IamRecord { kind, id, body, rev }))
        }

        pub(crate) async fn put_iam_record_in(
            pool: &$pool,
            kind: &str,
            id: &str,
            body: &str,
            expected: Option<i64>,
        ) -> vallum_core::meta::MetaResult<Option<i64>> {
            let done = match expected {
                None => sqlx::query(
                    "INSERT INTO iam_records (kind, id, body, rev) VALUES ($1, $2, $3, 1) ON CONFLICT (kind, id) DO NOTHING",
                )
                .bind(kind)
                .bind(id)
                .bind(body)
                .execute(pool)
                .await,
                Some(rev) => sqlx::query(
                    "UPDATE iam_records SET body = $3, rev = rev + 1 WHERE kind = $1 AND id = $2 AND rev = $4",
                )
                .bind(kind)
                .bind(id)
                .bind(body)
                .bind(rev)
                .execute(pool)
                .await,
            }
            .map_err($crate::common::backend)?;
            Ok((done.rows_affected() == 1).then(|| expected.unwrap_or(0) + 1))
        }

        pub(crate) async fn delete_iam_record_in(
            pool: &$pool,
            kind: &str,
            id: &str,
            expected: i64,
        ) -> vallum_core::meta::MetaResult<bool> {
            let done = sqlx::query("DELETE FROM iam_records WHERE kind = $1 AND id = $2 AND rev = $3")
                .bind(kind)
                .bind(id)
                .bind(expected)
                .execute(pool)
                .await
                .map_err($crate::common::backend)?;
            Ok(done.rows_affected() == 1)
        }
    };
}
pub(crate) use replica_logic;
