//! Globally unique bucket names (`[s3] global_bucket_names = true`): a bare bucket name means
//! the one bucket of that name, whichever tenant owns it, as in S3. Unmodified clients (the
//! aws CLI and SDKs refuse `tenant:bucket` names) and anonymous ones then reach a bucket
//! another tenant shares with them by a bucket policy; the decision point still decides every
//! request, exactly as for a `tenant:bucket` name.
//!
//! A name is claimed by its owner in the record store before its bucket is created (a
//! compare-and-set: of two tenants racing for a name, one wins and the other gets `409
//! BucketAlreadyExists`), and released when the bucket is deleted. Every gateway keeps the
//! claims in memory and asks the store about a name it does not know yet.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vallum_core::iam::model::split_internal;
use vallum_core::meta::{MetaResult, MetaStore};
use vallum_core::records::{TypedRecords, kind};

/// The record of a claimed name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    /// The owning tenant.
    tenant: String,
    /// When it was claimed, ms since the epoch.
    #[serde(default)]
    claimed_ms: i64,
}

/// How old a claim without its bucket must be before a starting gateway releases it (younger
/// ones may belong to a bucket being created right now).
pub const STALE_CLAIM_MS: i64 = 10 * 60 * 1000;

fn now_ms() -> i64 {
    crate::keys::now_ms()
}

/// How long a gateway trusts what it knows of a name's owner before asking the store again
/// (another gateway may have deleted the bucket and another tenant claimed the name).
pub const BUCKET_NAME_CACHE_TTL: Duration = Duration::from_secs(5);

/// The claims of bucket names, as this gateway knows them: owner and when last read.
pub struct BucketNames {
    meta: Arc<dyn MetaStore>,
    owners: RwLock<HashMap<String, (String, Instant)>>,
}

/// Existing buckets of several tenants share a name: the deployment cannot switch to global
/// names until all but one are renamed (copied and deleted).
#[derive(Debug, thiserror::Error)]
#[error("global_bucket_names needs bucket names unique across tenants, and these are not: {0:?}")]
pub struct NameConflicts(pub Vec<String>);

/// What loading the claims can fail with.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The store failed.
    #[error(transparent)]
    Meta(#[from] vallum_core::meta::MetaError),
    /// Names are not unique.
    #[error(transparent)]
    Conflicts(#[from] NameConflicts),
}

impl BucketNames {
    /// Loads every claim, first claiming the names of buckets that have none (buckets made
    /// before the deployment used global names): refused when two tenants hold a name.
    pub async fn load(meta: Arc<dyn MetaStore>) -> Result<Self, LoadError> {
        let names = Self {
            meta,
            owners: RwLock::new(HashMap::new()),
        };
        let stored = names.meta.load_all_as::<Claim>(kind::BUCKET_NAME).await?;
        let mut claims: HashMap<String, String> = stored
            .iter()
            .map(|c| (c.id.clone(), c.value.tenant.clone()))
            .collect();
        let buckets = names.meta.list_buckets().await?;
        let mut conflicts = Vec::new();
        for bucket in &buckets {
            let (tenant, bare) = split_internal(&bucket.name);
            let held = match claims.get(bare) {
                Some(owner) => owner == tenant,
                None => names.claim(tenant, bare).await?,
            };
            if !held {
                conflicts.push(bare.to_owned());
            }
        }
        // A claim whose bucket is gone (a gateway stopped between deleting a bucket and
        // releasing its name) is released, unless someone claims or re-creates it meanwhile.
        for claim in &stored {
            let internal = vallum_core::iam::model::internal_bucket(&claim.value.tenant, &claim.id);
            let stale = now_ms().saturating_sub(claim.value.claimed_ms) > STALE_CLAIM_MS;
            if stale
                && !buckets.iter().any(|b| b.name == internal)
                && names
                    .meta
                    .delete_record(kind::BUCKET_NAME, &claim.id, claim.rev)
                    .await?
            {
                claims.remove(&claim.id);
            }
        }
        if !conflicts.is_empty() {
            conflicts.sort();
            conflicts.dedup();
            return Err(NameConflicts(conflicts).into());
        }
        for (bare, tenant) in &claims {
            names.remember(bare, tenant);
        }
        Ok(names)
    }

    fn remember(&self, bare: &str, tenant: &str) {
        if let Ok(mut owners) = self.owners.write() {
            owners.insert(bare.to_owned(), (tenant.to_owned(), Instant::now()));
        }
    }

    fn forget(&self, bare: &str) {
        if let Ok(mut owners) = self.owners.write() {
            owners.remove(bare);
        }
    }

    /// The owner of `bare` as this gateway last knew it, however long ago.
    #[must_use]
    pub fn cached_owner(&self, bare: &str) -> Option<String> {
        self.owners.read().ok()?.get(bare).map(|(t, _)| t.clone())
    }

    /// The owner of `bare`: known here within [`BUCKET_NAME_CACHE_TTL`], or else asked of
    /// the store (another gateway may have created, deleted or re-created the bucket).
    pub async fn owner(&self, bare: &str) -> MetaResult<Option<String>> {
        let fresh = self.owners.read().ok().and_then(|o| {
            o.get(bare)
                .filter(|(_, at)| at.elapsed() < BUCKET_NAME_CACHE_TTL)
                .map(|(t, _)| t.clone())
        });
        if fresh.is_some() {
            return Ok(fresh);
        }
        let found = self
            .meta
            .load_as::<Claim>(kind::BUCKET_NAME, bare)
            .await?
            .map(|v| v.value.tenant);
        match &found {
            Some(tenant) => self.remember(bare, tenant),
            None => self.forget(bare),
        }
        Ok(found)
    }

    /// Claims `bare` for `tenant`; whether `tenant` holds it now (false: another tenant does).
    pub async fn claim(&self, tenant: &str, bare: &str) -> MetaResult<bool> {
        let body = Claim {
            tenant: tenant.to_owned(),
            claimed_ms: now_ms(),
        };
        let text = serde_json::to_string(&body)
            .map_err(|e| vallum_core::meta::MetaError::Backend(e.to_string()))?;
        if self
            .meta
            .put_record(kind::BUCKET_NAME, bare, &text, None)
            .await?
            .is_some()
        {
            self.remember(bare, tenant);
            return Ok(true);
        }
        match self.meta.load_as::<Claim>(kind::BUCKET_NAME, bare).await? {
            Some(v) => {
                self.remember(bare, &v.value.tenant);
                Ok(v.value.tenant == tenant)
            }
            // Released meanwhile: try once more.
            None => Ok(self
                .meta
                .put_record(kind::BUCKET_NAME, bare, &text, None)
                .await?
                .is_some()),
        }
    }

    /// Releases `bare` if `tenant` holds it and has no bucket of that name (any more).
    pub async fn release(&self, tenant: &str, bare: &str) -> MetaResult<()> {
        let internal = vallum_core::iam::model::internal_bucket(tenant, bare);
        if self.meta.get_bucket(&internal).await?.is_some() {
            return Ok(());
        }
        if let Some(v) = self.meta.load_as::<Claim>(kind::BUCKET_NAME, bare).await?
            && v.value.tenant == tenant
        {
            self.meta
                .delete_record(kind::BUCKET_NAME, bare, v.rev)
                .await?;
        }
        self.forget(bare);
        Ok(())
    }
}

impl std::fmt::Debug for BucketNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known = self.owners.read().map(|o| o.len()).unwrap_or(0);
        f.debug_struct("BucketNames")
            .field("known", &known)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vallum_core::meta::BucketRecord;

    async fn store(dir: &std::path::Path) -> Arc<dyn MetaStore> {
        Arc::new(
            vallum_meta::SqliteMetaStore::open(&dir.join("meta.db"))
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn a_name_has_one_owner_until_its_bucket_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let meta = store(dir.path()).await;
        meta.create_bucket(&BucketRecord::new("acme:photos", 1, "us-east-1"))
            .await
            .unwrap();
        let names = BucketNames::load(Arc::clone(&meta)).await.unwrap();
        // Existing buckets are claimed by their tenants at load.
        assert_eq!(names.cached_owner("photos").as_deref(), Some("acme"));
        assert!(names.claim("acme", "photos").await.unwrap());
        assert!(!names.claim("globex", "photos").await.unwrap());
        assert!(names.claim("globex", "reports").await.unwrap());
        // Another gateway sees the claims through the store.
        let other = BucketNames {
            meta: Arc::clone(&meta),
            owners: RwLock::new(HashMap::new()),
        };
        assert_eq!(
            other.owner("reports").await.unwrap().as_deref(),
            Some("globex")
        );
        assert_eq!(other.owner("nothing").await.unwrap(), None);
        // Released only by its owner, and only once the bucket is gone.
        names.release("globex", "photos").await.unwrap();
        names.release("acme", "photos").await.unwrap();
        assert_eq!(
            other.owner("photos").await.unwrap().as_deref(),
            Some("acme")
        );
        meta.delete_bucket("acme:photos", 2).await.unwrap();
        names.release("acme", "photos").await.unwrap();
        assert!(names.claim("globex", "photos").await.unwrap());
    }

    #[tokio::test]
    async fn a_claim_left_without_its_bucket_is_released_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let meta = store(dir.path()).await;
        let names = BucketNames::load(Arc::clone(&meta)).await.unwrap();
        // Claimed just now, its bucket perhaps on its way: kept at a start.
        assert!(names.claim("acme", "young").await.unwrap());
        // Claimed long ago, but the bucket never made it (or its deletion's release did not).
        let old = serde_json::to_string(&Claim {
            tenant: "acme".into(),
            claimed_ms: 0,
        })
        .unwrap();
        meta.put_record(kind::BUCKET_NAME, "orphan", &old, None)
            .await
            .unwrap();
        assert!(!names.claim("globex", "orphan").await.unwrap());
        let restarted = BucketNames::load(Arc::clone(&meta)).await.unwrap();
        assert_eq!(restarted.cached_owner("orphan"), None);
        assert!(restarted.claim("globex", "orphan").await.unwrap());
        assert_eq!(restarted.cached_owner("young").as_deref(), Some("acme"));
        assert!(!restarted.claim("globex", "young").await.unwrap());
    }

    #[tokio::test]
    async fn names_held_by_two_tenants_refuse_global_names() {
        let dir = tempfile::tempdir().unwrap();
        let meta = store(dir.path()).await;
        for name in ["acme:photos", "globex:photos", "globex:ok"] {
            meta.create_bucket(&BucketRecord::new(name, 1, "us-east-1"))
                .await
                .unwrap();
        }
        match BucketNames::load(meta).await {
            Err(LoadError::Conflicts(NameConflicts(names))) => {
                assert_eq!(names, vec!["photos".to_owned()]);
            }
            other => panic!("expected a conflict, got {:?}", other.map(|_| ())),
        }
    }
}
