//! Typed access to the record store ([`Records`]): every kind of record is a serde value kept
//! as a JSON document under its kind and id, with a revision for compare-and-set. A new kind of
//! record (jobs, evidence, incidents, drills, console sessions) is one constant in [`kind`] and
//! a serde type; the stores, their schema and their conformance suite stay as they are.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{MetaError, MetaResult};
use crate::meta::{Records, SiteRecord, StoredRecord};

/// Every kind of record, in one place so two features cannot pick the same name.
pub mod kind {
    /// A tenant.
    pub const TENANT: &str = "tenant";
    /// A tenant's user (`<tenant>/<name>`).
    pub const USER: &str = "user";
    /// An access key (by key id).
    pub const ACCESS_KEY: &str = "access-key";
    /// An operator (platform staff).
    pub const OPERATOR: &str = "operator";
    /// A tenant's sovereignty charter (every version, by tenant).
    pub const CHARTER: &str = "charter";
    /// A lockbox access request and its grant.
    pub const LOCKBOX: &str = "lockbox";
    /// A bucket's policy and public-access block (by internal bucket name).
    pub const BUCKET_POLICY: &str = "bucket-policy";
    /// A tenant's guardians' attestation of an operator (`<tenant>/<operator>`).
    pub const ATTESTATION: &str = "attestation";
    /// The sealed secret signing a tenant's guardian webhook posts (by tenant).
    pub const WEBHOOK_SECRET: &str = "webhook-secret";
    /// A site's run-time record (by site id): its state and, when added through the admin API,
    /// its definition.
    pub const SITE: &str = "site";
    /// A background job's saved state (by job name; the body is the job's own JSON).
    pub const JOB: &str = "job";
    /// Facts about the deployment itself (by name: `key-providers`).
    pub const DEPLOYMENT: &str = "deployment";
    /// A globally unique bucket name's owner (by bare bucket name), with
    /// `global_bucket_names`.
    pub const BUCKET_NAME: &str = "bucket-name";
    /// Every kind, for copying a deployment's records (`vallum migrate-meta`).
    pub const ALL: &[&str] = &[
        TENANT,
        USER,
        ACCESS_KEY,
        OPERATOR,
        CHARTER,
        LOCKBOX,
        BUCKET_POLICY,
        ATTESTATION,
        WEBHOOK_SECRET,
        SITE,
        JOB,
        DEPLOYMENT,
        BUCKET_NAME,
    ];
}

/// How often [`TypedRecords::save`] retries when other writers keep changing the record.
pub const SAVE_ATTEMPTS: usize = 16;

/// A value of a kind with a fixed name.
pub trait RecordKind: Serialize + DeserializeOwned + Send + Sync {
    /// Its kind in the record store.
    const KIND: &'static str;
}

impl RecordKind for SiteRecord {
    const KIND: &'static str = kind::SITE;
}

/// A record read as a typed value, with the revision a compare-and-set names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// Its id within its kind.
    pub id: String,
    /// The value.
    pub value: T,
    /// Its revision: 1 when created, one more on every update.
    pub rev: i64,
}

fn decode<T: DeserializeOwned>(kind: &str, id: &str, body: &str) -> MetaResult<T> {
    serde_json::from_str(body)
        .map_err(|e| MetaError::Corrupt(format!("record {kind}/{id} does not decode: {e}")))
}

/// Stored record `r` of `kind` decoded as `T`.
fn versioned<T: DeserializeOwned>(kind: &str, r: StoredRecord) -> MetaResult<Versioned<T>> {
    Ok(Versioned {
        value: decode(kind, &r.id, &r.body)?,
        id: r.id,
        rev: r.rev,
    })
}

fn encode<T: Serialize>(value: &T) -> MetaResult<String> {
    serde_json::to_string(value).map_err(|e| MetaError::Backend(e.to_string()))
}

/// Typed reads and writes over any record store (every [`Records`] has them).
pub trait TypedRecords: Records {
    /// Record `kind`/`id` decoded as `T`.
    fn load_as<T: DeserializeOwned + Send>(
        &self,
        kind: &str,
        id: &str,
    ) -> impl Future<Output = MetaResult<Option<Versioned<T>>>> + Send {
        async move {
            self.record(kind, id)
                .await?
                .map(|r| versioned(kind, r))
                .transpose()
        }
    }

    /// Every record of `kind` decoded as `T`, by id.
    fn load_all_as<T: DeserializeOwned + Send>(
        &self,
        kind: &str,
    ) -> impl Future<Output = MetaResult<Vec<Versioned<T>>>> + Send {
        async move {
            self.records(kind)
                .await?
                .into_iter()
                .map(|r| versioned(kind, r))
                .collect()
        }
    }

    /// Writes `value` as record `kind`/`id` whatever its revision (the last writer wins),
    /// retrying a compare-and-set that another writer beat; the new revision.
    fn save_as<T: Serialize + Sync>(
        &self,
        kind: &str,
        id: &str,
        value: &T,
    ) -> impl Future<Output = MetaResult<i64>> + Send {
        async move {
            let body = encode(value)?;
            for _ in 0..SAVE_ATTEMPTS {
                let rev = self.record(kind, id).await?.map(|r| r.rev);
                if let Some(rev) = self.put_record(kind, id, &body, rev).await? {
                    return Ok(rev);
                }
            }
            Err(MetaError::Unavailable(format!(
                "record {kind}/{id} kept changing under {SAVE_ATTEMPTS} attempts to save it"
            )))
        }
    }

    /// Deletes record `kind`/`id` whatever its revision; whether there was one.
    fn remove_as(&self, kind: &str, id: &str) -> impl Future<Output = MetaResult<bool>> + Send {
        async move {
            for _ in 0..SAVE_ATTEMPTS {
                let Some(r) = self.record(kind, id).await? else {
                    return Ok(false);
                };
                if self.delete_record(kind, id, r.rev).await? {
                    return Ok(true);
                }
            }
            Err(MetaError::Unavailable(format!(
                "record {kind}/{id} kept changing under {SAVE_ATTEMPTS} attempts to delete it"
            )))
        }
    }

    /// Record `id` of `T`'s kind.
    fn load<T: RecordKind>(
        &self,
        id: &str,
    ) -> impl Future<Output = MetaResult<Option<Versioned<T>>>> + Send {
        self.load_as(T::KIND, id)
    }

    /// Every record of `T`'s kind, by id.
    fn load_all<T: RecordKind>(&self) -> impl Future<Output = MetaResult<Vec<T>>> + Send {
        async move {
            Ok(self
                .load_all_as::<T>(T::KIND)
                .await?
                .into_iter()
                .map(|v| v.value)
                .collect())
        }
    }

    /// Writes `value` as record `id` of `T`'s kind (the last writer wins).
    fn save<T: RecordKind>(
        &self,
        id: &str,
        value: &T,
    ) -> impl Future<Output = MetaResult<i64>> + Send {
        self.save_as(T::KIND, id, value)
    }

    /// Deletes record `id` of `T`'s kind; whether there was one.
    fn remove<T: RecordKind>(&self, id: &str) -> impl Future<Output = MetaResult<bool>> + Send {
        self.remove_as(T::KIND, id)
    }

    /// The saved state of background job `name`, or its default when there is none. A state
    /// that no longer decodes (another version wrote it) is logged and starts afresh: a job
    /// must not stop for good over its own bookkeeping.
    fn job_state<T: DeserializeOwned + Default + Send>(
        &self,
        name: &str,
    ) -> impl Future<Output = MetaResult<T>> + Send {
        async move {
            let Some(r) = self.record(kind::JOB, name).await? else {
                return Ok(T::default());
            };
            Ok(serde_json::from_str(&r.body).unwrap_or_else(|e| {
                tracing::warn!(job = name, error = %e, "saved job state does not decode; starting afresh");
                T::default()
            }))
        }
    }

    /// Saves the state of background job `name`.
    fn save_job_state<T: Serialize + Sync>(
        &self,
        name: &str,
        state: &T,
    ) -> impl Future<Output = MetaResult<()>> + Send {
        async move { self.save_as(kind::JOB, name, state).await.map(drop) }
    }
}

impl<S: Records + ?Sized> TypedRecords for S {}

#[cfg(test)]
mod tests {
    use super::kind;

    #[test]
    fn every_kind_has_its_own_name() {
        let mut names = kind::ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), kind::ALL.len(), "two kinds share a name");
    }
}
