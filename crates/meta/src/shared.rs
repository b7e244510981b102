//! The ports whose SQL is the same on both backends (replica index, record store, leases):
//! the macro expands each `impl` once per backend, over its pools (SQLite reads through a pool
//! and writes through its single writer; PostgreSQL uses one pool for both).

macro_rules! shared_ports {
    ($store:ty, read: $read:ident, write: $write:ident) => {
        #[async_trait::async_trait]
        impl vallum_core::meta::ReplicaIndex for $store {
        async fn blob_sites(
            &self,
            blob: vallum_types::BlobId,
        ) -> vallum_core::meta::MetaResult<Option<Vec<String>>> {
            let found: Option<String> = sqlx::query_scalar($crate::common::BLOB_SITES)
                .bind(blob.to_string())
                .fetch_optional(&self.$write)
                .await
                .map_err($crate::common::backend)?;
            Ok(found.as_deref().map(vallum_core::meta::decode_sites))
        }

        async fn set_blob_sites(
            &self,
            blob: vallum_types::BlobId,
            expected: &[String],
            sites: &[String],
        ) -> vallum_core::meta::MetaResult<bool> {
            let (id, old, new) = (
                blob.to_string(),
                vallum_core::meta::encode_sites(expected),
                vallum_core::meta::encode_sites(sites),
            );
            let mut tx = self.$write.begin().await.map_err($crate::common::backend)?;
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

        async fn blob_placements(
            &self,
            after: Option<vallum_types::BlobId>,
            limit: usize,
        ) -> vallum_core::meta::MetaResult<Vec<vallum_core::meta::BlobPlacement>> {
            let rows = sqlx::query($crate::common::BLOB_PLACEMENTS)
                .bind(after.map_or_else(String::new, |b| b.to_string()))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.$read)
                .await
                .map_err($crate::common::backend)?;
            rows.iter()
                .map(|r| $crate::common::blob_placement_from_row!(r))
                .collect()
        }

        async fn site_usage(
            &self,
            bucket: Option<&str>,
        ) -> vallum_core::meta::MetaResult<Vec<vallum_core::meta::SiteUsage>> {
            let rows: Vec<(String, String, i64, i64)> = sqlx::query_as($crate::common::SITE_USAGE)
                .bind(bucket)
                .fetch_all(&self.$read)
                .await
                .map_err($crate::common::backend)?;
            rows.into_iter()
                .map(|(b, sites, blobs, bytes)| {
                    $crate::common::site_usage_from(b, &sites, blobs, bytes)
                })
                .collect()
        }
        }

        #[async_trait::async_trait]
        impl vallum_core::meta::Records for $store {
            async fn records(
                &self,
                kind: &str,
            ) -> vallum_core::meta::MetaResult<Vec<vallum_core::meta::StoredRecord>> {
                let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
                    "SELECT kind, id, body, rev FROM records WHERE kind = $1 ORDER BY id",
                )
                .bind(kind)
                .fetch_all(&self.$read)
                .await
                .map_err($crate::common::backend)?;
                Ok(rows
                    .into_iter()
                    .map(|(kind, id, body, rev)| vallum_core::meta::StoredRecord { kind, id, body, rev })
                    .collect())
            }

            async fn record(
                &self,
                kind: &str,
                id: &str,
            ) -> vallum_core::meta::MetaResult<Option<vallum_core::meta::StoredRecord>> {
                let row: Option<(String, String, String, i64)> = sqlx::query_as(
                    "SELECT kind, id, body, rev FROM records WHERE kind = $1 AND id = $2",
                )
                .bind(kind)
                .bind(id)
                .fetch_optional(&self.$read)
                .await
                .map_err($crate::common::backend)?;
                Ok(row.map(|(kind, id, body, rev)| vallum_core::meta::StoredRecord { kind, id, body, rev }))
            }

            async fn put_record(
                &self,
                kind: &str,
                id: &str,
                body: &str,
                expected: Option<i64>,
            ) -> vallum_core::meta::MetaResult<Option<i64>> {
                let done = match expected {
                    None => sqlx::query(
                        "INSERT INTO records (kind, id, body, rev) VALUES ($1, $2, $3, 1) ON CONFLICT (kind, id) DO NOTHING",
                    )
                    .bind(kind)
                    .bind(id)
                    .bind(body)
                    .execute(&self.$write)
                    .await,
                    Some(rev) => sqlx::query(
                        "UPDATE records SET body = $3, rev = rev + 1 WHERE kind = $1 AND id = $2 AND rev = $4",
                    )
                    .bind(kind)
                    .bind(id)
                    .bind(body)
                    .bind(rev)
                    .execute(&self.$write)
                    .await,
                }
                .map_err($crate::common::backend)?;
                Ok((done.rows_affected() == 1).then(|| expected.unwrap_or(0) + 1))
            }

            async fn delete_record(
                &self,
                kind: &str,
                id: &str,
                expected: i64,
            ) -> vallum_core::meta::MetaResult<bool> {
                let done = sqlx::query("DELETE FROM records WHERE kind = $1 AND id = $2 AND rev = $3")
                    .bind(kind)
                    .bind(id)
                    .bind(expected)
                    .execute(&self.$write)
                    .await
                    .map_err($crate::common::backend)?;
                Ok(done.rows_affected() == 1)
            }
        }

        #[async_trait::async_trait]
        impl vallum_core::meta::Leases for $store {
            async fn acquire_lease(
                &self,
                name: &str,
                holder: &str,
                now_ms: i64,
                ttl_ms: i64,
            ) -> vallum_core::meta::MetaResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE \
                     SET holder = excluded.holder, expires_ms = excluded.expires_ms WHERE leases.expires_ms < $4 OR leases.holder = excluded.holder",
                )
                .bind(name)
                .bind(holder)
                .bind(now_ms.saturating_add(ttl_ms))
                .bind(now_ms)
                .execute(&self.$write)
                .await
                .map_err($crate::common::backend)?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_lease(
                &self,
                name: &str,
                holder: &str,
            ) -> vallum_core::meta::MetaResult<()> {
                sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                    .bind(name)
                    .bind(holder)
                    .execute(&self.$write)
                    .await
                    .map_err($crate::common::backend)?;
                Ok(())
            }
        }
    };
}
pub(crate) use shared_ports;
