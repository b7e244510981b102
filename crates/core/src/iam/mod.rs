//! Identity and access control: tenants, users, access keys, operators, bucket policies, the
//! sovereignty charter and the operator lockbox, with one decision point ([`Iam::authorize`])
//! that every S3 and admin call goes through.
//!
//! Records live in the metadata store as JSON documents ([`crate::meta::IamRecord`]); secrets
//! are sealed by a [`SecretBox`] before they get there. Each gateway keeps a snapshot of the
//! records for fast decisions, rebuilt after every change it makes and every
//! [`Iam::refresh`]; lockbox grants are read afresh on every use, so a revocation holds at
//! once on every gateway.

pub mod actions;
pub mod authz;
pub mod charter;
pub mod eval;
pub mod lockbox;
pub mod model;
pub mod operations;
pub mod policy;

use crate::context::RequestContext;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;
use vallum_crypto::CryptoError;
use vallum_crypto::secretbox::SecretBox;
use vallum_ledger::entry::Event;
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::journal::Recorder;
use crate::meta::{MetaError, MetaStore, ObjectIndex, Records};
use crate::records::TypedRecords;
use crate::service::ObjectService;
use authz::{Authorizer, Decision, Facts, Principal, Resource, Source};
use charter::{Charter, CharterDoc, CharterState, CharterVersion, Vote};
use lockbox::{AccessRequest, RequestSpec, RequestState, Review};
use model::{
    AccessKey, Attestation, Attributes, DEFAULT_TENANT, KeyView, Operator, Owner, Role, State,
    Tenant, TenantAttestation, User, check_name, check_tenant_id, internal_bucket, kind,
};
use policy::{Compiled, Scope};

/// Attempts at a compare-and-set update before giving up.
const MAX_UPDATE_ATTEMPTS: usize = 8;
/// Length of generated access key ids.
const ACCESS_KEY_LEN: usize = 20;
/// Length of generated secrets.
const SECRET_LEN: usize = 40;
/// Length of a tenant's webhook signing secret.
const WEBHOOK_SECRET_LEN: usize = 40;
/// Opened secrets kept in memory at most (the cache starts over when full).
const MAX_OPENED_SECRETS: usize = 100_000;
/// Name of the administrator a new tenant starts with.
pub const FIRST_ADMIN: &str = "admin";

/// Who records a lockbox grant's expiry in the log (`system:<this>`).
pub const LOCKBOX_EXPIRY_JOB: &str = "lockbox-expiry";

/// What identity and access operations fail with.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// No such tenant, user, key, operator, request.
    #[error("{0}")]
    NotFound(String),
    /// It exists already.
    #[error("{0}")]
    Exists(String),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// A policy that cannot be accepted.
    #[error("{0}")]
    MalformedPolicy(String),
    /// A policy over the size limit.
    #[error("{0}")]
    PolicyTooLarge(String),
    /// Refused by a rule (charter, public access block, state).
    #[error("{0}")]
    Denied(String),
    /// The record's state does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// Metadata store.
    #[error("metadata store: {0}")]
    Meta(#[from] MetaError),
    /// Sealing or opening a secret.
    #[error("secret: {0}")]
    Crypto(#[from] CryptoError),
    /// The transparency log refused the record.
    #[error("the log could not record it: {0}")]
    Log(String),
}

/// Result of identity and access operations.
pub type IamResult<T> = std::result::Result<T, IamError>;

/// S3's public access block for a bucket; every flag on unless the tenant turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    /// Refuse public ACLs (Vallum has no ACLs; kept for clients).
    pub block_public_acls: bool,
    /// Ignore public ACLs.
    pub ignore_public_acls: bool,
    /// Refuse a bucket policy that grants everyone.
    pub block_public_policy: bool,
    /// A public policy covers only the tenant's own users.
    pub restrict_public_buckets: bool,
}

impl Default for PublicAccessBlock {
    fn default() -> Self {
        Self {
            block_public_acls: true,
            ignore_public_acls: true,
            block_public_policy: true,
            restrict_public_buckets: true,
        }
    }
}

/// A bucket's policy, public access block and CORS configuration (one record per bucket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BucketPolicyRecord {
    /// The policy document.
    #[serde(default)]
    pub policy: Option<Value>,
    /// The block (`None`: the default, everything blocked).
    #[serde(default)]
    pub block: Option<PublicAccessBlock>,
    /// The CORS configuration (PutBucketCors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<crate::cors::CorsConfig>,
    /// The bucket's tags (PutBucketTagging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<crate::versioning::Tags>,
    /// DeleteBucketOwnershipControls was called: GetBucketOwnershipControls answers that
    /// there are none (object ownership is BucketOwnerEnforced either way: ACLs are off).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ownership_deleted: bool,
}

/// One lockbox event on its way to a tenant's guardians.
pub struct Delivery {
    /// Unique id: a receiver recognises a retried delivery by it.
    pub id: String,
    /// The tenant's webhook.
    pub url: String,
    /// The tenant's signing secret (the receiver checks an HMAC-SHA256 of the body with it).
    pub secret: Zeroizing<String>,
    /// The event name.
    pub event: String,
    /// The JSON body.
    pub body: Value,
}

/// Where lockbox events go: the tenant's guardian webhook.
pub trait Notifier: Send + Sync {
    /// Whether this deployment posts to `url` (its scheme, whether it names an internal
    /// address); why not.
    fn check_target(&self, url: &str) -> Result<(), crate::error::Invalid>;
    /// Delivers `delivery` in the background, retrying; the transparency log, not the
    /// webhook, is the record.
    fn notify(&self, delivery: Delivery);
}

/// What a tenant's guardian attests about an operator.
#[derive(Debug, Clone)]
pub struct AttestationSpec {
    /// The guardian's tenant.
    pub tenant: String,
    /// The operator.
    pub operator: String,
    /// Its vetted role.
    pub role: String,
    /// Its vetted attributes.
    pub attributes: Attributes,
    /// The operator's access key the attestation covers.
    pub access_key: String,
    /// Evidence reference.
    pub evidence: String,
}

/// The sealed secret of a tenant's webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WebhookSecret {
    sealed: String,
}

fn webhook_aad(tenant: &str) -> String {
    format!("webhook/{tenant}")
}

/// The records a gateway decides from.
#[derive(Debug, Default)]
pub struct IamState {
    tenants: HashMap<String, Tenant>,
    users: HashMap<String, (User, Option<Compiled>)>,
    keys: HashMap<String, AccessKey>,
    operators: HashMap<String, Operator>,
    buckets: HashMap<String, (BucketPolicyRecord, Option<Compiled>)>,
    grants: HashMap<String, Compiled>,
}

fn random(len: usize, alphabet: &[u8]) -> IamResult<String> {
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut raw = [0u8; 64];
        getrandom::fill(&mut raw).map_err(|e| CryptoError::Random(e.to_string()))?;
        for b in raw {
            if usize::from(b) < limit && out.len() < len {
                out.push(char::from(alphabet[usize::from(b) % alphabet.len()]));
            }
        }
    }
    Ok(out)
}

const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A key's record id for sealing.
fn key_aad(id: &str) -> String {
    format!("access-key/{id}")
}

/// What the identity service works over: its records, the bucket index (a tenant with buckets
/// is not deleted), the clock, and where it records what it does. Nothing else of the object
/// service.
#[derive(Clone)]
pub struct IamPorts {
    /// Identity records (compare-and-set by kind and id).
    pub records: Arc<dyn Records>,
    /// The buckets.
    pub buckets: Arc<dyn ObjectIndex>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// The journal, through the object service's recorder (one log).
    pub recorder: Recorder,
}

impl std::fmt::Debug for IamPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamPorts").finish_non_exhaustive()
    }
}

impl IamPorts {
    /// The ports of `service`'s stores, clock and recorder.
    #[must_use]
    pub fn of(service: &ObjectService) -> Self {
        let meta: Arc<dyn MetaStore> = Arc::clone(service.meta());
        Self {
            records: meta.clone(),
            buckets: meta,
            clock: Arc::clone(service.clock()),
            recorder: service.recorder().clone(),
        }
    }
}

/// The identity and access service.
pub struct Iam {
    records: Arc<dyn Records>,
    buckets: Arc<dyn ObjectIndex>,
    clock: Arc<dyn Clock>,
    recorder: Recorder,
    secrets: SecretBox,
    root_key: String,
    root_secret: Zeroizing<String>,
    authorizer: Authorizer,
    state: RwLock<Arc<IamState>>,
    notifier: Option<Arc<dyn Notifier>>,
    opened: std::sync::Mutex<HashMap<String, (String, Zeroizing<String>)>>,
}

impl std::fmt::Debug for Iam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iam")
            .field("root_key", &self.root_key)
            .finish_non_exhaustive()
    }
}

impl Iam {
    /// The service over `service`'s metadata store, with the root credentials, the box that
    /// seals secrets and where lockbox events go (`None`: nowhere); loads the records.
    pub async fn open(
        ports: IamPorts,
        secrets: SecretBox,
        root_key: String,
        root_secret: Zeroizing<String>,
        notifier: Option<Arc<dyn Notifier>>,
    ) -> IamResult<Arc<Self>> {
        let iam = Arc::new(Self {
            records: ports.records,
            buckets: ports.buckets,
            clock: ports.clock,
            recorder: ports.recorder,
            secrets,
            root_key,
            root_secret,
            authorizer: Authorizer::new(),
            state: RwLock::new(Arc::new(IamState::default())),
            notifier,
            opened: std::sync::Mutex::new(HashMap::new()),
        });
        iam.refresh().await?;
        iam.check_secret_box()?;
        Ok(iam)
    }

    /// The box must open the secrets already sealed in the store: a replaced or altered key
    /// would otherwise fail every access key at its first use, long after start-up.
    fn check_secret_box(&self) -> IamResult<()> {
        let st = self.snapshot();
        let Some(key) = st.keys.values().next() else {
            return Ok(());
        };
        self.secrets
            .open(&key.sealed_secret, &key_aad(&key.id))
            .map(drop)
            .map_err(|_| {
                IamError::Invalid(format!(
                    "the secret-sealing key does not open the access-key secrets in the metadata store (access key {} is the first it failed); it was replaced or altered: restore the original from a backup",
                    key.id
                ))
            })
    }

    fn meta(&self) -> &Arc<dyn Records> {
        &self.records
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Now, by the service's clock (ms).
    #[must_use]
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The current snapshot.
    #[must_use]
    pub fn snapshot(&self) -> Arc<IamState> {
        self.state
            .read()
            .map(|s| Arc::clone(&s))
            .unwrap_or_default()
    }

    /// The decision point's baseline.
    #[must_use]
    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    async fn all<T: DeserializeOwned + Send>(&self, k: &str) -> IamResult<Vec<(String, T)>> {
        let all = self.meta().load_all_as::<T>(k).await?;
        Ok(all.into_iter().map(|v| (v.id, v.value)).collect())
    }

    /// Reloads every record into a fresh snapshot.
    pub async fn refresh(&self) -> IamResult<()> {
        let mut st = IamState::default();
        for (id, t) in self.all::<Tenant>(kind::TENANT).await? {
            st.tenants.insert(id, t);
        }
        for (id, u) in self.all::<User>(kind::USER).await? {
            let compiled = match &u.policy {
                Some(doc) => match policy::compile(
                    doc,
                    Scope::Identity {
                        tenant: &u.tenant,
                        user: &u.name,
                    },
                    &format!("identity:{id}#"),
                ) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::error!(user = %id, error = %e, "stored identity policy no longer compiles; the user gets no policy permissions");
                        None
                    }
                },
                None => None,
            };
            st.users.insert(id, (u, compiled));
        }
        for (id, k) in self.all::<AccessKey>(kind::ACCESS_KEY).await? {
            st.keys.insert(id, k);
        }
        for (id, o) in self.all::<Operator>(kind::OPERATOR).await? {
            st.operators.insert(id, o);
        }
        for (id, b) in self.all::<BucketPolicyRecord>(kind::BUCKET_POLICY).await? {
            let compiled = Self::compile_bucket(&id, &b).unwrap_or_else(|e| {
                tracing::error!(bucket = %id, error = %e, "stored bucket policy no longer compiles; ignoring it");
                None
            });
            st.buckets.insert(id, (b, compiled));
        }
        let now = self.now_ms();
        let mut expired = Vec::new();
        for (id, r) in self.all::<AccessRequest>(kind::LOCKBOX).await? {
            if r.live(now)
                && let Ok(c) = r.compile()
            {
                st.grants.insert(id, c);
            } else if r.state == RequestState::Approved && !r.expiry_logged {
                expired.push(id);
            }
        }
        if let Ok(mut s) = self.state.write() {
            *s = Arc::new(st);
        }
        for id in expired {
            // Expiry is the identity service's own finding, whoever's request noticed it.
            self.record_expiry(&RequestContext::system(LOCKBOX_EXPIRY_JOB), &id)
                .await?;
        }
        Ok(())
    }

    /// Records that a grant ran out, once across gateways (the record's compare-and-set
    /// decides which gateway writes the entry); its credential is deleted.
    async fn record_expiry(&self, ctx: &RequestContext, id: &str) -> IamResult<()> {
        let now = self.now_ms();
        let mut first = false;
        let req = self
            .update::<AccessRequest, _>(kind::LOCKBOX, id, "lockbox request", |r| {
                first = !r.expiry_logged && r.state == RequestState::Approved && !r.live(now);
                if first {
                    r.expiry_logged = true;
                }
                Ok(())
            })
            .await?;
        if first {
            if let Some(key) = &req.credential {
                self.remove(kind::ACCESS_KEY, key).await?;
            }
            self.log(
                ctx,
                "lockbox_expired",
                format!(
                    "request={id} tenant={} operator={} expired_ms={}",
                    req.spec.tenant,
                    req.operator,
                    req.expires_ms.unwrap_or(0)
                ),
            )
            .await?;
        }
        Ok(())
    }

    fn compile_bucket(internal: &str, rec: &BucketPolicyRecord) -> IamResult<Option<Compiled>> {
        let Some(doc) = &rec.policy else {
            return Ok(None);
        };
        let (tenant, bucket) = model::split_internal(internal);
        let block = rec.block.unwrap_or_default();
        policy::compile(
            doc,
            Scope::Bucket {
                tenant,
                bucket,
                restrict_public: block.restrict_public_buckets,
            },
            &format!("bucket:{bucket}#"),
        )
        .map(Some)
    }

    async fn log(&self, ctx: &RequestContext, action: &str, target: String) -> IamResult<()> {
        tracing::info!(target: "vallum::audit", event = action, %target, "identity change");
        self.recorder
            .record(
                ctx,
                vec![Event::Admin {
                    action: action.to_owned(),
                    target,
                }],
            )
            .await
            .map_err(|e| IamError::Log(e.to_string()))
    }

    async fn get<T: DeserializeOwned + Send>(
        &self,
        k: &str,
        id: &str,
    ) -> IamResult<Option<(T, i64)>> {
        let found = self.meta().load_as::<T>(k, id).await?;
        Ok(found.map(|v| (v.value, v.rev)))
    }

    async fn create<T: Serialize>(&self, k: &str, id: &str, v: &T, what: &str) -> IamResult<()> {
        match self.meta().put_record(k, id, &to_json(v), None).await? {
            Some(_) => Ok(()),
            None => Err(IamError::Exists(format!("{what} already exists"))),
        }
    }

    /// Reads `kind`/`id`, applies `f`, writes it back if nobody changed it meanwhile (retried).
    async fn update<T, F>(&self, k: &str, id: &str, what: &str, mut f: F) -> IamResult<T>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut(&mut T) -> IamResult<()>,
    {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let (mut v, rev) = self
                .get::<T>(k, id)
                .await?
                .ok_or_else(|| IamError::NotFound(format!("no such {what}")))?;
            f(&mut v)?;
            if self
                .meta()
                .put_record(k, id, &to_json(&v), Some(rev))
                .await?
                .is_some()
            {
                return Ok(v);
            }
        }
        Err(IamError::Conflict(format!(
            "{what} is being changed concurrently; try again"
        )))
    }

    async fn remove(&self, k: &str, id: &str) -> IamResult<bool> {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let Some(r) = self.meta().record(k, id).await? else {
                return Ok(false);
            };
            if self.meta().delete_record(k, id, r.rev).await? {
                return Ok(true);
            }
        }
        Err(IamError::Conflict(format!(
            "{k} {id} is being changed concurrently"
        )))
    }

    /// Creates or replaces `kind`/`id`.
    async fn upsert<T: Serialize>(&self, k: &str, id: &str, v: &T) -> IamResult<()> {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let rev = self.meta().record(k, id).await?.map(|r| r.rev);
            if self
                .meta()
                .put_record(k, id, &to_json(v), rev)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(IamError::Conflict(format!(
            "{k} {id} is being changed concurrently"
        )))
    }

    // ---------------------------------------------------------------- authentication

    /// The secret of an access key, to check a request's signature: `None` for an unknown key,
    /// refused for a disabled one. Who the key stands for is [`Iam::authenticate`]'s question
    /// (asked once per request, after the signature holds).
    pub async fn signing_secret(&self, access_key: &str) -> IamResult<Option<Zeroizing<String>>> {
        if bool::from(self.root_key.as_bytes().ct_eq(access_key.as_bytes())) {
            return Ok(Some(self.root_secret.clone()));
        }
        let snap = self.snapshot();
        let Some(key) = self.active_key(&snap, access_key).await? else {
            return Ok(None);
        };
        Ok(Some(self.open_secret(&key)?))
    }

    /// An access key's record: borrowed from the snapshot, or read (created on another gateway
    /// since the last refresh); `None` when unknown, refused when disabled.
    async fn active_key<'a>(
        &self,
        snap: &'a IamState,
        access_key: &str,
    ) -> IamResult<Option<Cow<'a, AccessKey>>> {
        let key: Cow<'a, AccessKey> = match snap.keys.get(access_key) {
            Some(k) => Cow::Borrowed(k),
            None => match self.get::<AccessKey>(kind::ACCESS_KEY, access_key).await? {
                Some((k, _)) => Cow::Owned(k),
                None => return Ok(None),
            },
        };
        if key.state != State::Active {
            return Err(IamError::Denied(format!(
                "access key {access_key} is disabled"
            )));
        }
        Ok(Some(key))
    }

    /// The principal an access key stands for, with its secret (to check the signature);
    /// `None` for an unknown key. Disabled keys, users, tenants and operators, and grants
    /// that are not live, are refused with the reason.
    pub async fn authenticate(
        &self,
        access_key: &str,
    ) -> IamResult<Option<(Principal, Zeroizing<String>)>> {
        if bool::from(self.root_key.as_bytes().ct_eq(access_key.as_bytes())) {
            return Ok(Some((Principal::Root, self.root_secret.clone())));
        }
        let snap = self.snapshot();
        // Records are borrowed from the snapshot, not copied (a user's record carries its
        // identity policy); those created on another gateway since the last refresh are read.
        let Some(key) = self.active_key(&snap, access_key).await? else {
            return Ok(None);
        };
        let principal = match &key.owner {
            Owner::User { tenant, name } => {
                let id = format!("{tenant}/{name}");
                let user: Cow<'_, User> = match snap.users.get(&id) {
                    Some((u, _)) => Cow::Borrowed(u),
                    None => Cow::Owned(
                        self.get::<User>(kind::USER, &id)
                            .await?
                            .map(|(u, _)| u)
                            .ok_or_else(|| {
                                IamError::Denied(format!("user {id} no longer exists"))
                            })?,
                    ),
                };
                if user.state != State::Active {
                    return Err(IamError::Denied(format!("user {id} is disabled")));
                }
                if snap
                    .tenants
                    .get(tenant)
                    .is_some_and(|t| t.state == State::Disabled)
                {
                    return Err(IamError::Denied(format!("tenant {tenant} is disabled")));
                }
                Principal::User {
                    tenant: tenant.clone(),
                    name: name.clone(),
                    admin: user.has(Role::Admin),
                    guardian: user.has(Role::Guardian),
                }
            }
            Owner::Operator { name } => {
                let op: Cow<'_, Operator> = match snap.operators.get(name) {
                    Some(o) => Cow::Borrowed(o),
                    None => Cow::Owned(
                        self.get::<Operator>(kind::OPERATOR, name)
                            .await?
                            .map(|(o, _)| o)
                            .ok_or_else(|| {
                                IamError::Denied(format!("operator {name} no longer exists"))
                            })?,
                    ),
                };
                if op.state != State::Active {
                    return Err(IamError::Denied(format!("operator {name} is disabled")));
                }
                Principal::Operator { name: name.clone() }
            }
            Owner::Grant { id } => {
                // Read afresh: a revocation holds at once, on every gateway.
                let (req, _) = self
                    .get::<AccessRequest>(kind::LOCKBOX, id)
                    .await?
                    .ok_or_else(|| IamError::Denied(format!("grant {id} no longer exists")))?;
                let now = self.now_ms();
                if !req.live(now) {
                    return Err(IamError::Denied(format!(
                        "lockbox grant {id} is {}",
                        req.status(now)
                    )));
                }
                // The grant lives only as long as its operator and its tenant do: disabling or
                // deleting either ends it at once, on every gateway (both read afresh).
                match self.get::<Operator>(kind::OPERATOR, &req.operator).await? {
                    Some((op, _)) if op.state == State::Active => {}
                    Some(_) => {
                        return Err(IamError::Denied(format!(
                            "lockbox grant {id}: operator {} is disabled",
                            req.operator
                        )));
                    }
                    None => {
                        return Err(IamError::Denied(format!(
                            "lockbox grant {id}: operator {} no longer exists",
                            req.operator
                        )));
                    }
                }
                match self.get::<Tenant>(kind::TENANT, &req.spec.tenant).await? {
                    Some((t, _)) if t.state != State::Disabled => {}
                    // The default tenant exists without a stored record.
                    None if req.spec.tenant == DEFAULT_TENANT => {}
                    Some(_) => {
                        return Err(IamError::Denied(format!(
                            "lockbox grant {id}: tenant {} is disabled",
                            req.spec.tenant
                        )));
                    }
                    None => {
                        return Err(IamError::Denied(format!(
                            "lockbox grant {id}: tenant {} no longer exists",
                            req.spec.tenant
                        )));
                    }
                }
                if !snap.grants.contains_key(id) {
                    self.refresh().await?;
                }
                Principal::Grant {
                    id: id.clone(),
                    operator: req.operator,
                    tenant: req.spec.tenant,
                }
            }
        };
        let secret = self.open_secret(&key)?;
        Ok(Some((principal, secret)))
    }

    /// A key's secret, opened once and kept (zeroized on drop) while its sealed form stays the
    /// same: a rotation changes the sealed form, so the old secret is never served again.
    fn open_secret(&self, key: &AccessKey) -> IamResult<Zeroizing<String>> {
        if let Ok(cache) = self.opened.lock()
            && let Some((sealed, secret)) = cache.get(&key.id)
            && *sealed == key.sealed_secret
        {
            return Ok(secret.clone());
        }
        let secret = self.secrets.open(&key.sealed_secret, &key_aad(&key.id))?;
        if let Ok(mut cache) = self.opened.lock() {
            if cache.len() >= MAX_OPENED_SECRETS {
                cache.clear();
            }
            cache.insert(key.id.clone(), (key.sealed_secret.clone(), secret.clone()));
        }
        Ok(secret)
    }

    // ---------------------------------------------------------------- the decision point

    /// Decides whether `principal` may take `action` on `resource`.
    #[must_use]
    pub fn authorize(
        &self,
        principal: &Principal,
        action: &str,
        resource: &Resource,
        facts: &Facts,
    ) -> Decision {
        let snap = self.snapshot();
        self.decide_with(&snap, principal, action, resource, facts)
    }

    /// [`Self::authorize`] against a given snapshot.
    #[must_use]
    pub fn decide_with(
        &self,
        snap: &IamState,
        principal: &Principal,
        action: &str,
        resource: &Resource,
        facts: &Facts,
    ) -> Decision {
        Self::with_sources(snap, principal, resource, |sources| {
            self.authorizer
                .decide(principal, action, resource, facts, sources)
        })
    }

    /// [`Self::authorize`] by Cedar's own evaluator over whole policy sets: the reference
    /// `vallum authz explain` reports beside the decision.
    #[must_use]
    pub fn authorize_with_cedar(
        &self,
        principal: &Principal,
        action: &str,
        resource: &Resource,
        facts: &Facts,
    ) -> Decision {
        let snap = self.snapshot();
        Self::with_sources(&snap, principal, resource, |sources| {
            self.authorizer
                .decide_with_cedar(principal, action, resource, facts, sources)
        })
    }

    /// Calls `f` with the policy sets that concern `principal` acting on `resource`: its own
    /// (a user's identity policy, a grant's scope) and the bucket's policy.
    fn with_sources<R>(
        snap: &IamState,
        principal: &Principal,
        resource: &Resource,
        f: impl FnOnce(&[Source<'_>]) -> R,
    ) -> R {
        let mut sources: Vec<Source<'_>> = Vec::with_capacity(2);
        let identity_label;
        match principal {
            Principal::User { tenant, name, .. } => {
                identity_label = format!("identity:{tenant}/{name}");
                if let Some((_, Some(c))) = snap.users.get(&format!("{tenant}/{name}")) {
                    sources.push(Source {
                        label: &identity_label,
                        compiled: c,
                    });
                }
            }
            Principal::Grant { id, .. } => {
                identity_label = format!("grant:{id}");
                if let Some(c) = snap.grants.get(id) {
                    sources.push(Source {
                        label: &identity_label,
                        compiled: c,
                    });
                }
            }
            _ => {}
        }
        let bucket_label;
        if let Some(bucket) = resource.bucket() {
            let internal = internal_bucket(resource.tenant(), bucket);
            bucket_label = format!("bucket:{bucket}");
            if let Some((_, Some(c))) = snap.buckets.get(&internal) {
                sources.push(Source {
                    label: &bucket_label,
                    compiled: c,
                });
            }
        }
        f(&sources)
    }

    // ---------------------------------------------------------------- tenants

    /// Creates a tenant with its first administrator (`admin`) and that user's access key;
    /// the secret is returned once.
    pub async fn create_tenant(
        &self,
        ctx: &RequestContext,
        id: &str,
        display_name: &str,
        webhook: Option<String>,
    ) -> IamResult<(Tenant, KeyView, Zeroizing<String>)> {
        check_tenant_id(id)?;
        if id == DEFAULT_TENANT {
            return Err(IamError::Exists("the default tenant always exists".into()));
        }
        if let Some(w) = &webhook {
            self.check_webhook(w)?;
        }
        let tenant = Tenant {
            id: id.to_owned(),
            display_name: display_name.to_owned(),
            state: State::Active,
            guardian_webhook: webhook,
            created_ms: self.now_ms(),
        };
        self.create(kind::TENANT, id, &tenant, &format!("tenant {id}"))
            .await?;
        self.create_user_record(id, FIRST_ADMIN, vec![Role::Admin])
            .await?;
        let (key, secret) = self
            .new_key(Owner::User {
                tenant: id.to_owned(),
                name: FIRST_ADMIN.to_owned(),
            })
            .await?;
        self.log(
            ctx,
            "tenant_created",
            format!("tenant={id} admin={FIRST_ADMIN} key={}", key.id),
        )
        .await?;
        self.refresh().await?;
        Ok((tenant, key, secret))
    }

    /// A new secret for the tenant's webhook (the old one stops being used); returned once.
    pub async fn new_webhook_secret(
        &self,
        ctx: &RequestContext,
        tenant: &str,
    ) -> IamResult<Zeroizing<String>> {
        self.tenant(tenant).await?;
        let secret = Zeroizing::new(random(WEBHOOK_SECRET_LEN, KEY_ALPHABET)?);
        let sealed = self.secrets.seal(&secret, &webhook_aad(tenant))?;
        self.upsert(kind::WEBHOOK_SECRET, tenant, &WebhookSecret { sealed })
            .await?;
        self.log(ctx, "webhook_secret_created", format!("tenant={tenant}"))
            .await?;
        Ok(secret)
    }

    async fn webhook_secret(&self, tenant: &str) -> IamResult<Option<Zeroizing<String>>> {
        match self
            .get::<WebhookSecret>(kind::WEBHOOK_SECRET, tenant)
            .await?
        {
            Some((w, _)) => Ok(Some(self.secrets.open(&w.sealed, &webhook_aad(tenant))?)),
            None => Ok(None),
        }
    }

    /// The webhook's form, then the deployment's rules on targets.
    fn check_webhook(&self, url: &str) -> IamResult<()> {
        check_webhook(url)?;
        if let Some(n) = &self.notifier {
            n.check_target(url).map_err(|why| {
                IamError::Invalid(format!("guardian_webhook {url:?} is refused: {why}"))
            })?;
        }
        Ok(())
    }

    /// Every tenant (the default one included).
    pub async fn tenants(&self) -> IamResult<Vec<Tenant>> {
        let mut out = vec![default_tenant()];
        out.extend(
            self.all::<Tenant>(kind::TENANT)
                .await?
                .into_iter()
                .map(|(_, t)| t),
        );
        Ok(out)
    }

    /// One tenant.
    pub async fn tenant(&self, id: &str) -> IamResult<Tenant> {
        if id == DEFAULT_TENANT {
            return Ok(default_tenant());
        }
        self.get::<Tenant>(kind::TENANT, id)
            .await?
            .map(|(t, _)| t)
            .ok_or_else(|| IamError::NotFound(format!("no such tenant {id}")))
    }

    /// Disables or enables a tenant: its users' keys stop (or start) working.
    pub async fn set_tenant_state(
        &self,
        ctx: &RequestContext,
        id: &str,
        state: State,
    ) -> IamResult<Tenant> {
        if id == DEFAULT_TENANT {
            return Err(IamError::Invalid(
                "the default tenant cannot be disabled".into(),
            ));
        }
        let t = self
            .update::<Tenant, _>(kind::TENANT, id, &format!("tenant {id}"), |t| {
                t.state = state;
                Ok(())
            })
            .await?;
        self.log(
            ctx,
            "tenant_state_changed",
            format!("tenant={id} state={state:?}"),
        )
        .await?;
        self.refresh().await?;
        Ok(t)
    }

    /// Changes a tenant's display name or guardian webhook.
    pub async fn update_tenant(
        &self,
        ctx: &RequestContext,
        id: &str,
        display_name: Option<String>,
        webhook: Option<Option<String>>,
    ) -> IamResult<Tenant> {
        if let Some(Some(w)) = &webhook {
            self.check_webhook(w)?;
        }
        let t = self
            .update::<Tenant, _>(kind::TENANT, id, &format!("tenant {id}"), |t| {
                if let Some(d) = &display_name {
                    t.display_name.clone_from(d);
                }
                if let Some(w) = &webhook {
                    t.guardian_webhook.clone_from(w);
                }
                Ok(())
            })
            .await?;
        self.log(ctx, "tenant_updated", format!("tenant={id}"))
            .await?;
        self.refresh().await?;
        Ok(t)
    }

    /// Deletes a tenant that holds no bucket, with its users, keys and charter.
    pub async fn delete_tenant(&self, ctx: &RequestContext, id: &str) -> IamResult<()> {
        if id == DEFAULT_TENANT {
            return Err(IamError::Invalid(
                "the default tenant cannot be deleted".into(),
            ));
        }
        self.tenant(id).await?;
        let prefix = format!("{id}{}", model::TENANT_SEPARATOR);
        let buckets = self.buckets.list_buckets().await?;
        let held: Vec<String> = buckets
            .iter()
            .filter_map(|b| b.name.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        if !held.is_empty() {
            return Err(IamError::Conflict(format!(
                "tenant {id} still has buckets ({}); delete them first",
                held.join(", ")
            )));
        }
        for u in self.users(id).await? {
            self.delete_user(ctx, id, &u.name).await?;
        }
        self.remove(kind::CHARTER, id).await?;
        self.remove(kind::TENANT, id).await?;
        self.log(ctx, "tenant_deleted", format!("tenant={id}"))
            .await?;
        self.refresh().await?;
        Ok(())
    }

    // ---------------------------------------------------------------- users

    async fn create_user_record(
        &self,
        tenant: &str,
        name: &str,
        roles: Vec<Role>,
    ) -> IamResult<User> {
        check_name("user name", name)?;
        let user = User {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            roles,
            state: State::Active,
            policy: None,
            created_ms: self.now_ms(),
            approval_key: None,
        };
        self.create(
            kind::USER,
            &user.id(),
            &user,
            &format!("user {}", user.id()),
        )
        .await?;
        Ok(user)
    }

    async fn require_tenant(&self, tenant: &str) -> IamResult<()> {
        if tenant != DEFAULT_TENANT {
            self.tenant(tenant).await?;
        }
        Ok(())
    }

    /// Creates a user in `tenant`.
    pub async fn create_user(
        &self,
        ctx: &RequestContext,
        tenant: &str,
        name: &str,
        roles: Vec<Role>,
    ) -> IamResult<User> {
        self.require_tenant(tenant).await?;
        let user = self.create_user_record(tenant, name, roles).await?;
        self.log(
            ctx,
            "user_created",
            format!("user={} roles={:?}", user.id(), user.roles),
        )
        .await?;
        self.refresh().await?;
        Ok(user)
    }

    /// The users of `tenant`.
    pub async fn users(&self, tenant: &str) -> IamResult<Vec<User>> {
        let prefix = format!("{tenant}/");
        Ok(self
            .all::<User>(kind::USER)
            .await?
            .into_iter()
            .filter(|(id, _)| id.starts_with(&prefix))
            .map(|(_, u)| u)
            .collect())
    }

    /// One user.
    pub async fn user(&self, tenant: &str, name: &str) -> IamResult<User> {
        self.get::<User>(kind::USER, &format!("{tenant}/{name}"))
            .await?
            .map(|(u, _)| u)
            .ok_or_else(|| IamError::NotFound(format!("no such user {tenant}/{name}")))
    }

    async fn change_user<F>(
        &self,
        ctx: &RequestContext,
        tenant: &str,
        name: &str,
        action: &str,
        f: F,
    ) -> IamResult<User>
    where
        F: FnMut(&mut User) -> IamResult<()>,
    {
        let id = format!("{tenant}/{name}");
        let u = self
            .update::<User, _>(kind::USER, &id, &format!("user {id}"), f)
            .await?;
        self.log(ctx, action, format!("user={id}")).await?;
        self.refresh().await?;
        Ok(u)
    }

    /// Disables or enables a user.
    pub async fn set_user_state(
        &self,
        ctx: &RequestContext,
        tenant: &str,
        name: &str,
        state: State,
    ) -> IamResult<User> {
        self.change_user(ctx, tenant, name, "user_state_changed", |u| {
            u.state = state;
            Ok(())
        })
        .await
    }

    /// Sets (or, with `None`, removes) a user's identity policy; it is compiled first, so a
    /// policy that cannot be translated is refused.
    pub async fn set_user_policy(
        &self,
        ctx: &RequestContext,
        tenant: &str,
        name: &str,
        doc: Option<Value>,
    ) -> IamResult<User> {
        if let Some(d) = &doc {
            policy::compile(d, Scope::Identity { tenant, user: name }, "check#")?;
        }
        let action = if doc.is_some() {
            "user_policy_set"
        } else {
            "user_policy_deleted"
        };
        self.change_user(ctx, tenant, name, action, |u| {
            u.policy.clone_from(&doc);
            Ok(())
        })
        .await
    }

    /// Deletes a user and its access keys.
    pub async fn delete_user(
        &self,
        ctx: &RequestContext,
        tenant: &str,
        name: &str,
    ) -> IamResult<()> {
        let id = format!("{tenant}/{name}");
        self.user(tenant, name).await?;
        let owner = Owner::User {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
        };
        for k in self.keys_of(&owner).await? {
            self.remove(kind::ACCESS_KEY, &k.id).await?;
        }
        self.remove(kind::USER, &id).await?;
        self.log(ctx, "user_deleted", format!("user={id}")).await?;
        self.refresh().await?;
        Ok(())
    }

    // ---------------------------------------------------------------- access keys

    async fn new_key(&self, owner: Owner) -> IamResult<(KeyView, Zeroizing<String>)> {
        let prefix = if matches!(owner, Owner::Grant { .. }) {
            "VG"
        } else {
            "VA"
        };
        let id = format!("{prefix}{}", random(ACCESS_KEY_LEN - 2, KEY_ALPHABET)?);
        let secret = Zeroizing::new(random(SECRET_LEN, SECRET_ALPHABET)?);
        let now = self.now_ms();
        let key = AccessKey {
            id: id.clone(),
            owner,
            sealed_secret: self.secrets.seal(&secret, &key_aad(&id))?,
            state: State::Active,
            created_ms: now,
            rotated_ms: now,
        };
        self.create(kind::ACCESS_KEY, &id, &key, &format!("access key {id}"))
            .await?;
        Ok((KeyView::from(&key), secret))
    }

    /// Creates an access key for `owner` (a user or an operator); the secret is returned
    /// once and stored sealed.
    pub async fn create_key(
        &self,
        ctx: &RequestContext,
        owner: Owner,
    ) -> IamResult<(KeyView, Zeroizing<String>)> {
        match &owner {
            Owner::User { tenant, name } => {
                self.user(tenant, name).await?;
            }
            Owner::Operator { name } => {
                self.operator(name).await?;
            }
            Owner::Grant { .. } => {
                return Err(IamError::Invalid(
                    "grant credentials are claimed through the lockbox".into(),
                ));
            }
        }
        let (key, secret) = self.new_key(owner).await?;
        self.log(
            ctx,
            "access_key_created",
            format!("key={} owner={:?}", key.id, key.owner),
        )
        .await?;
        self.refresh().await?;
        if let Owner::Operator { name } = &key.owner {
            // A key the guardians have not attested opens nothing, but they hear of it.
            self.notify_attesters(
                name,
                None,
                &format!("access key {} was created", key.id),
                &[],
            )
            .await?;
        }
        Ok((key, secret))
    }

    /// The keys of `owner`.
    pub async fn keys_of(&self, owner: &Owner) -> IamResult<Vec<KeyView>> {
        Ok(self
            .all::<AccessKey>(kind::ACCESS_KEY)
            .await?
            .into_iter()
            .filter(|(_, k)| &k.owner == owner)
            .map(|(_, k)| KeyView::from(&k))
            .collect())
    }

    /// One key (never its secret).
    pub async fn key(&self, id: &str) -> IamResult<KeyView> {
        self.get::<AccessKey>(kind::ACCESS_KEY, id)
            .await?
            .map(|(k, _)| KeyView::from(&k))
            .ok_or_else(|| IamError::NotFound(format!("no such access key {id}")))
    }

    /// Disables or enables a key.
    pub async fn set_key_state(
        &self,
        ctx: &RequestContext,
        id: &str,
        state: State,
    ) -> IamResult<KeyView> {
        let k = self
            .update::<AccessKey, _>(kind::ACCESS_KEY, id, &format!("access key {id}"), |k| {
                k.state = state;
                Ok(())
            })
            .await?;
        self.log(
            ctx,
            "access_key_state_changed",
            format!("key={id} state={state:?}"),
        )
        .await?;
        self.refresh().await?;
        if let (Owner::Operator { name }, State::Disabled) = (&k.owner, state) {
            self.end_operator_access(ctx, name, None, &format!("access key {id} was disabled"))
                .await?;
        }
        Ok(KeyView::from(&k))
    }

    /// Replaces a key's secret; the new one is returned once, the old one stops working.
    pub async fn rotate_key(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> IamResult<(KeyView, Zeroizing<String>)> {
        let secret = Zeroizing::new(random(SECRET_LEN, SECRET_ALPHABET)?);
        let sealed = self.secrets.seal(&secret, &key_aad(id))?;
        let now = self.now_ms();
        let k = self
            .update::<AccessKey, _>(kind::ACCESS_KEY, id, &format!("access key {id}"), |k| {
                if matches!(k.owner, Owner::Grant { .. }) {
                    return Err(IamError::Invalid(
                        "grant credentials are not rotated; revoke the grant instead".into(),
                    ));
                }
                k.sealed_secret.clone_from(&sealed);
                k.rotated_ms = now;
                Ok(())
            })
            .await?;
        self.log(ctx, "access_key_rotated", format!("key={id}"))
            .await?;
        self.refresh().await?;
        if let Owner::Operator { name } = &k.owner {
            // Whoever rotated it now holds the secret: the grants and the guardians'
            // attestation of this key end with the old secret.
            self.end_operator_access(ctx, name, None, &format!("access key {id} was rotated"))
                .await?;
        }
        Ok((KeyView::from(&k), secret))
    }

    /// Deletes a key.
    pub async fn delete_key(&self, ctx: &RequestContext, id: &str) -> IamResult<()> {
        let operator = self.operator_of_key(id).await?;
        if !self.remove(kind::ACCESS_KEY, id).await? {
            return Err(IamError::NotFound(format!("no such access key {id}")));
        }
        self.log(ctx, "access_key_deleted", format!("key={id}"))
            .await?;
        self.refresh().await?;
        if let Some(name) = operator {
            self.end_operator_access(ctx, &name, None, &format!("access key {id} was deleted"))
                .await?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- operators

    /// Registers an operator with attested attributes.
    pub async fn create_operator(
        &self,
        ctx: &RequestContext,
        name: &str,
        role: &str,
        attributes: Attributes,
        evidence: &str,
    ) -> IamResult<Operator> {
        check_name("operator name", name)?;
        check_name("operator role", role)?;
        check_attributes(&attributes)?;
        let by = ctx.actor.clone();
        let now = self.now_ms();
        let op = Operator {
            name: name.to_owned(),
            role: role.to_owned(),
            attributes,
            attestation: Some(Attestation {
                by,
                at_ms: now,
                evidence: evidence.to_owned(),
            }),
            state: State::Active,
            created_ms: now,
        };
        self.create(kind::OPERATOR, name, &op, &format!("operator {name}"))
            .await?;
        self.log(
            ctx,
            "operator_created",
            format!(
                "operator={name} role={role} attributes={}",
                to_json(&op.attributes)
            ),
        )
        .await?;
        self.refresh().await?;
        Ok(op)
    }

    /// Every operator.
    pub async fn operators(&self) -> IamResult<Vec<Operator>> {
        Ok(self
            .all::<Operator>(kind::OPERATOR)
            .await?
            .into_iter()
            .map(|(_, o)| o)
            .collect())
    }

    /// One operator.
    pub async fn operator(&self, name: &str) -> IamResult<Operator> {
        self.get::<Operator>(kind::OPERATOR, name)
            .await?
            .map(|(o, _)| o)
            .ok_or_else(|| IamError::NotFound(format!("no such operator {name}")))
    }

    /// Re-attests an operator's attributes (and optionally role).
    pub async fn attest_operator(
        &self,
        ctx: &RequestContext,
        name: &str,
        role: Option<String>,
        attributes: Attributes,
        evidence: &str,
    ) -> IamResult<Operator> {
        check_attributes(&attributes)?;
        if let Some(r) = &role {
            check_name("operator role", r)?;
        }
        let by = ctx.actor.clone();
        let now = self.now_ms();
        let op = self
            .update::<Operator, _>(kind::OPERATOR, name, &format!("operator {name}"), |o| {
                o.attributes = attributes.clone();
                if let Some(r) = &role {
                    o.role.clone_from(r);
                }
                o.attestation = Some(Attestation {
                    by: by.clone(),
                    at_ms: now,
                    evidence: evidence.to_owned(),
                });
                Ok(())
            })
            .await?;
        self.log(
            ctx,
            "operator_attested",
            format!(
                "operator={name} role={} attributes={}",
                op.role,
                to_json(&op.attributes)
            ),
        )
        .await?;
        self.refresh().await?;
        Ok(op)
    }

    /// Disables or enables an operator.
    pub async fn set_operator_state(
        &self,
        ctx: &RequestContext,
        name: &str,
        state: State,
    ) -> IamResult<Operator> {
        let op = self
            .update::<Operator, _>(kind::OPERATOR, name, &format!("operator {name}"), |o| {
                o.state = state;
                Ok(())
            })
            .await?;
        self.log(
            ctx,
            "operator_state_changed",
            format!("operator={name} state={state:?}"),
        )
        .await?;
        self.refresh().await?;
        if state == State::Disabled {
            self.end_operator_access(ctx, name, None, "the operator was disabled")
                .await?;
        }
        Ok(op)
    }

    /// Deletes an operator and its keys.
    pub async fn delete_operator(&self, ctx: &RequestContext, name: &str) -> IamResult<()> {
        self.operator(name).await?;
        self.end_operator_access(ctx, name, None, "the operator was deleted")
            .await?;
        for (id, _) in self
            .all::<TenantAttestation>(kind::ATTESTATION)
            .await?
            .into_iter()
            .filter(|(_, a)| a.operator == name)
        {
            self.remove(kind::ATTESTATION, &id).await?;
        }
        for k in self
            .keys_of(&Owner::Operator {
                name: name.to_owned(),
            })
            .await?
        {
            self.remove(kind::ACCESS_KEY, &k.id).await?;
        }
        self.remove(kind::OPERATOR, name).await?;
        self.log(ctx, "operator_deleted", format!("operator={name}"))
            .await?;
        self.refresh().await?;
        Ok(())
    }

    // ---------------------------------------------------------------- bucket policies

    /// The bucket's policy record (internal bucket name).
    pub async fn bucket_record(&self, internal: &str) -> IamResult<BucketPolicyRecord> {
        Ok(self
            .get::<BucketPolicyRecord>(kind::BUCKET_POLICY, internal)
            .await?
            .map(|(r, _)| r)
            .unwrap_or_default())
    }

    async fn change_bucket<F>(&self, internal: &str, mut f: F) -> IamResult<BucketPolicyRecord>
    where
        F: FnMut(&mut BucketPolicyRecord) -> IamResult<()>,
    {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let (mut rec, rev) = match self.get(kind::BUCKET_POLICY, internal).await? {
                Some((rec, rev)) => (rec, Some(rev)),
                None => (BucketPolicyRecord::default(), None),
            };
            f(&mut rec)?;
            Self::compile_bucket(internal, &rec)?;
            let done = if rec == BucketPolicyRecord::default() {
                match rev {
                    Some(rev) => {
                        self.meta()
                            .delete_record(kind::BUCKET_POLICY, internal, rev)
                            .await?
                    }
                    None => true,
                }
            } else {
                self.meta()
                    .put_record(kind::BUCKET_POLICY, internal, &to_json(&rec), rev)
                    .await?
                    .is_some()
            };
            if done {
                self.refresh().await?;
                return Ok(rec);
            }
        }
        Err(IamError::Conflict(format!(
            "the policy of {internal} is being changed concurrently; try again"
        )))
    }

    /// Sets a bucket's policy from its JSON text; refused if malformed, or public while the
    /// bucket blocks public policies.
    pub async fn put_bucket_policy(
        &self,
        ctx: &RequestContext,
        internal: &str,
        text: &[u8],
    ) -> IamResult<()> {
        let doc = policy::parse_document(text)?;
        self.change_bucket(internal, |rec| {
            let block = rec.block.unwrap_or_default();
            let (tenant, bucket) = model::split_internal(internal);
            let compiled = policy::compile(
                &doc,
                Scope::Bucket {
                    tenant,
                    bucket,
                    restrict_public: block.restrict_public_buckets,
                },
                "check#",
            )?;
            if compiled.public && block.block_public_policy {
                return Err(IamError::Denied(
                    "the bucket's public access block (BlockPublicPolicy) refuses a policy that grants everyone".into(),
                ));
            }
            rec.policy = Some(doc.clone());
            Ok(())
        })
        .await?;
        self.log(ctx, "bucket_policy_set", format!("bucket={internal}"))
            .await
    }

    /// Removes a bucket's policy.
    pub async fn delete_bucket_policy(
        &self,
        ctx: &RequestContext,
        internal: &str,
    ) -> IamResult<()> {
        self.change_bucket(internal, |rec| {
            rec.policy = None;
            Ok(())
        })
        .await?;
        self.log(ctx, "bucket_policy_deleted", format!("bucket={internal}"))
            .await
    }

    /// Sets (or with `None` resets to all-blocked) a bucket's public access block.
    pub async fn put_public_access_block(
        &self,
        ctx: &RequestContext,
        internal: &str,
        block: Option<PublicAccessBlock>,
    ) -> IamResult<()> {
        self.change_bucket(internal, |rec| {
            rec.block = block.filter(|b| *b != PublicAccessBlock::default());
            Ok(())
        })
        .await?;
        self.log(
            ctx,
            "public_access_block_set",
            format!(
                "bucket={internal} block={}",
                to_json(&block.unwrap_or_default())
            ),
        )
        .await
    }

    /// Sets (or with `None` removes) a bucket's CORS configuration.
    pub async fn put_bucket_cors(
        &self,
        ctx: &RequestContext,
        internal: &str,
        cors: Option<crate::cors::CorsConfig>,
    ) -> IamResult<()> {
        let action = if cors.is_some() {
            "bucket_cors_set"
        } else {
            "bucket_cors_deleted"
        };
        // The rules name the tenant's own origins: the log records only that they changed.
        self.change_bucket_setting(ctx, internal, action, |rec| rec.cors.clone_from(&cors))
            .await
    }

    /// Sets (or with `None` removes) a bucket's tags, checked as S3 checks them.
    pub async fn put_bucket_tags(
        &self,
        ctx: &RequestContext,
        internal: &str,
        tags: Option<crate::versioning::Tags>,
    ) -> IamResult<()> {
        if let Some(t) = &tags {
            crate::versioning::validate_tag_set(t, vallum_types::limits::MAX_BUCKET_TAGS, "Bucket")
                .map_err(|e| IamError::Invalid(e.0))?;
        }
        let action = if tags.is_some() {
            "bucket_tags_set"
        } else {
            "bucket_tags_deleted"
        };
        // Tags are the tenant's own words: the log records only that they changed.
        self.change_bucket_setting(ctx, internal, action, |rec| rec.tags.clone_from(&tags))
            .await
    }

    /// Changes one setting of a bucket's record and logs `action` naming only the bucket:
    /// CORS rules, tags and ownership are the tenant's own, and stay out of the public log.
    async fn change_bucket_setting(
        &self,
        ctx: &RequestContext,
        internal: &str,
        action: &str,
        mut set: impl FnMut(&mut BucketPolicyRecord),
    ) -> IamResult<()> {
        self.change_bucket(internal, |rec| {
            set(rec);
            Ok(())
        })
        .await?;
        self.log(ctx, action, format!("bucket={internal}")).await
    }

    /// Records Put (`deleted = false`) or DeleteBucketOwnershipControls (`true`).
    pub async fn put_bucket_ownership(
        &self,
        ctx: &RequestContext,
        internal: &str,
        deleted: bool,
    ) -> IamResult<()> {
        let action = if deleted {
            "bucket_ownership_controls_deleted"
        } else {
            "bucket_ownership_controls_set"
        };
        self.change_bucket_setting(ctx, internal, action, |rec| rec.ownership_deleted = deleted)
            .await
    }

    /// A bucket's CORS configuration as this gateway knows it (no store access: browsers'
    /// requests consult it).
    #[must_use]
    pub fn bucket_cors(&self, internal: &str) -> Option<crate::cors::CorsConfig> {
        self.snapshot()
            .buckets
            .get(internal)
            .and_then(|(rec, _)| rec.cors.clone())
    }

    /// Whether the bucket's policy grants everyone (S3's policy status).
    #[must_use]
    pub fn is_public(&self, internal: &str, rec: &BucketPolicyRecord) -> bool {
        Self::compile_bucket(internal, rec)
            .ok()
            .flatten()
            .is_some_and(|c| c.public)
    }

    /// Forgets a bucket's policy record (the bucket was created afresh or deleted).
    pub async fn forget_bucket(&self, internal: &str) -> IamResult<()> {
        if self.remove(kind::BUCKET_POLICY, internal).await? {
            self.refresh().await?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- charter

    /// A tenant's charter (every version).
    pub async fn charter(&self, tenant: &str) -> IamResult<Charter> {
        Ok(self
            .get::<Charter>(kind::CHARTER, tenant)
            .await?
            .map(|(c, _)| c)
            .unwrap_or_default())
    }

    /// Proposes a new charter version; it takes effect once signed off.
    pub async fn propose_charter(
        &self,
        ctx: &RequestContext,
        tenant: &str,
        doc: CharterDoc,
    ) -> IamResult<CharterVersion> {
        self.require_tenant(tenant).await?;
        doc.validate()?;
        let by = ctx.actor.clone();
        let now = self.now_ms();
        if self.meta().record(kind::CHARTER, tenant).await?.is_none() {
            // Ignore the race: the loser's update below sees the winner's record.
            let _ = self
                .meta()
                .put_record(kind::CHARTER, tenant, &to_json(&Charter::default()), None)
                .await?;
        }
        let charter = self
            .update::<Charter, _>(kind::CHARTER, tenant, "charter", |c| {
                for v in &mut c.versions {
                    if v.state == CharterState::Proposed {
                        v.state = CharterState::Superseded;
                    }
                }
                let version = u32::try_from(c.versions.len()).unwrap_or(u32::MAX) + 1;
                c.versions.push(CharterVersion {
                    version,
                    doc: doc.clone(),
                    state: CharterState::Proposed,
                    proposed_by: by.clone(),
                    proposed_ms: now,
                    signatures: Vec::new(),
                });
                Ok(())
            })
            .await?;
        let v = charter.versions.last().cloned().expect("just pushed");
        self.log(
            ctx,
            "charter_proposed",
            format!(
                "tenant={tenant} version={} document={}",
                v.version,
                to_json(&v.doc)
            ),
        )
        .await?;
        Ok(v)
    }

    /// A guardian signs a proposed version off; with enough signatures it takes effect.
    pub async fn sign_charter(
        &self,
        ctx: &RequestContext,
        tenant: &str,
        version: u32,
        guardian: &str,
        comment: &str,
    ) -> IamResult<CharterVersion> {
        let now = self.now_ms();
        let charter = self
            .update::<Charter, _>(kind::CHARTER, tenant, "charter", |c| {
                let needed = {
                    let v = c
                        .versions
                        .iter()
                        .find(|v| v.version == version)
                        .ok_or_else(|| {
                            IamError::NotFound(format!("no charter version {version}"))
                        })?;
                    if v.state != CharterState::Proposed {
                        return Err(IamError::Conflict(format!(
                            "charter version {version} is {:?}, not proposed",
                            v.state
                        )));
                    }
                    if v.signatures.iter().any(|s| s.by == guardian) {
                        return Err(IamError::Conflict(format!(
                            "{guardian} has already signed version {version}"
                        )));
                    }
                    c.signatures_needed(&v.doc)
                };
                let mut activated = false;
                if let Some(v) = c.versions.iter_mut().find(|v| v.version == version) {
                    v.signatures.push(Vote {
                        by: guardian.to_owned(),
                        at_ms: now,
                        comment: comment.to_owned(),
                    });
                    if v.signatures.len() >= needed as usize {
                        v.state = CharterState::Active;
                        activated = true;
                    }
                }
                if activated {
                    for v in &mut c.versions {
                        if v.version != version && v.state == CharterState::Active {
                            v.state = CharterState::Superseded;
                        }
                    }
                }
                Ok(())
            })
            .await?;
        let v = charter
            .versions
            .iter()
            .find(|v| v.version == version)
            .cloned()
            .expect("signed above");
        self.log(
            ctx,
            if v.state == CharterState::Active {
                "charter_activated"
            } else {
                "charter_signed"
            },
            format!("tenant={tenant} version={version} guardian={guardian}"),
        )
        .await?;
        Ok(v)
    }

    // ---------------------------------------------------------------- lockbox

    /// Tells the tenant's guardians about a lockbox event (signed, retried, in the
    /// background). A webhook that cannot be told is logged, never fails the request.
    async fn notify_tenant(&self, tenant: &Tenant, event: &str, detail: Value) {
        let (Some(n), Some(url)) = (&self.notifier, &tenant.guardian_webhook) else {
            return;
        };
        let secret = match self.webhook_secret(&tenant.id).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                tracing::warn!(tenant = %tenant.id, event, "the tenant's webhook has no signing secret; event not posted");
                return;
            }
            Err(err) => {
                tracing::error!(tenant = %tenant.id, event, %err, "the tenant's webhook secret cannot be opened; event not posted");
                return;
            }
        };
        let Ok(id) = random(24, b"0123456789abcdef") else {
            return;
        };
        let mut body = serde_json::json!({
            "event": event,
            "tenant": tenant.id,
            "delivery": id,
            "at_ms": self.now_ms(),
        });
        if let (Value::Object(b), Value::Object(d)) = (&mut body, detail) {
            b.extend(d);
        }
        n.notify(Delivery {
            id,
            url: url.clone(),
            secret,
            event: event.to_owned(),
            body,
        });
    }

    async fn notify(&self, tenant: &Tenant, event: &str, req: &AccessRequest) {
        let detail = serde_json::json!({
            "request": req,
            "status": req.status(self.now_ms()),
        });
        self.notify_tenant(tenant, event, detail).await;
    }

    /// The operator as tenant `tenant`'s guardians attested it, for requests signed with
    /// `access_key`: refused without an attestation, for another key, or for a key rotated
    /// since. The platform's own record of the operator decides nothing here.
    async fn attested_operator(
        &self,
        tenant: &str,
        operator: &str,
        access_key: &str,
    ) -> IamResult<Operator> {
        let op = self.operator(operator).await?;
        if op.state != State::Active {
            return Err(IamError::Denied(format!("operator {operator} is disabled")));
        }
        let Some((att, _)) = self
            .get::<TenantAttestation>(kind::ATTESTATION, &format!("{tenant}/{operator}"))
            .await?
        else {
            return Err(IamError::Denied(format!(
                "operator {operator} is not attested by the guardians of tenant {tenant}: a guardian attests the operator's role, attributes and access key first (vallum operator attest-for)"
            )));
        };
        if att.access_key != access_key {
            return Err(IamError::Denied(format!(
                "tenant {tenant}'s guardians attested operator {operator} with access key {}; this request is signed with {access_key}, which they have not attested",
                att.access_key
            )));
        }
        let key = self
            .get::<AccessKey>(kind::ACCESS_KEY, access_key)
            .await?
            .map(|(k, _)| k);
        match key {
            Some(k)
                if k.state == State::Active
                    && k.rotated_ms == att.key_rotated_ms
                    && k.owner
                        == (Owner::Operator {
                            name: operator.to_owned(),
                        }) => {}
            _ => {
                return Err(IamError::Denied(format!(
                    "access key {access_key} changed (rotated, disabled or deleted) since tenant {tenant}'s guardians attested it; they must attest operator {operator} again"
                )));
            }
        }
        Ok(Operator {
            role: att.role,
            attributes: att.attributes,
            attestation: Some(Attestation {
                by: att.by,
                at_ms: att.at_ms,
                evidence: att.evidence,
            }),
            ..op
        })
    }

    async fn checked_request(
        &self,
        operator: &str,
        access_key: &str,
        spec: RequestSpec,
        break_glass: bool,
    ) -> IamResult<(AccessRequest, Tenant)> {
        spec.validate()?;
        let tenant = self.tenant(&spec.tenant).await?;
        let charter = self.charter(&spec.tenant).await?;
        let active = charter.active().ok_or_else(|| {
            IamError::Denied(format!(
                "tenant {} has no charter in force: no operator access can be granted",
                spec.tenant
            ))
        })?;
        let op = self
            .attested_operator(&spec.tenant, operator, access_key)
            .await?;
        let max = if break_glass {
            active.doc.break_glass_max_secs.ok_or_else(|| {
                IamError::Denied(format!(
                    "the charter of tenant {} (version {}) allows no break-glass access",
                    spec.tenant, active.version
                ))
            })?
        } else {
            active.doc.max_grant_secs
        };
        if spec.duration_secs > max {
            return Err(IamError::Denied(format!(
                "the charter (version {}) allows grants of at most {max} s; {} s asked",
                active.version, spec.duration_secs
            )));
        }
        let mut req = AccessRequest {
            id: format!("lb-{}", random(12, b"0123456789abcdef")?),
            operator: operator.to_owned(),
            spec,
            break_glass,
            charter_version: active.version,
            approvals_required: active.doc.approvals_required,
            state: RequestState::Pending,
            approvals: Vec::new(),
            closed_by: None,
            created_ms: self.now_ms(),
            granted_ms: None,
            expires_ms: None,
            requested_with: Some(access_key.to_owned()),
            credential: None,
            approval_signatures: Vec::new(),
            review: None,
            expiry_logged: false,
        };
        let unmet: Vec<String> = req
            .kinds()
            .iter()
            .flat_map(|k| active.doc.unmet(&op, k))
            .collect();
        if !unmet.is_empty() {
            return Err(IamError::Denied(format!(
                "operator {operator} does not meet the charter of tenant {} (version {}): {}",
                req.spec.tenant,
                active.version,
                unmet.join("; ")
            )));
        }
        if break_glass {
            let now = self.now_ms();
            req.state = RequestState::Approved;
            req.granted_ms = Some(now);
            req.expires_ms = Some(
                now.saturating_add(
                    i64::try_from(req.spec.duration_secs)
                        .unwrap_or(i64::MAX)
                        .saturating_mul(1000),
                ),
            );
        }
        Ok((req, tenant))
    }

    fn describe(req: &AccessRequest) -> String {
        format!(
            "request={} tenant={} operator={} bucket={} prefix={:?} operations={} duration_s={} ticket={:?} purpose={:?} charter_version={}",
            req.id,
            req.spec.tenant,
            req.operator,
            req.spec.scope.bucket,
            req.spec.scope.prefix,
            req.spec.scope.operations.join("+"),
            req.spec.duration_secs,
            req.spec.ticket,
            req.spec.purpose,
            req.charter_version
        )
    }

    /// An operator files a request; refused at once if the operator fails the charter.
    pub async fn request_access(
        &self,
        ctx: &RequestContext,
        operator: &str,
        access_key: &str,
        spec: RequestSpec,
    ) -> IamResult<AccessRequest> {
        let (req, tenant) = self
            .checked_request(operator, access_key, spec, false)
            .await?;
        self.create(kind::LOCKBOX, &req.id, &req, "request").await?;
        self.log(ctx, "lockbox_request_filed", Self::describe(&req))
            .await?;
        self.notify(&tenant, "lockbox_request_filed", &req).await;
        Ok(req)
    }

    /// Break-glass: granted at once within the charter's break-glass rules, raising an alert;
    /// guardians review it afterwards.
    pub async fn break_glass(
        &self,
        ctx: &RequestContext,
        operator: &str,
        access_key: &str,
        spec: RequestSpec,
    ) -> IamResult<AccessRequest> {
        let (req, tenant) = self
            .checked_request(operator, access_key, spec, true)
            .await?;
        self.create(kind::LOCKBOX, &req.id, &req, "request").await?;
        tracing::warn!(target: "vallum::alert", request = %req.id, tenant = %req.spec.tenant, operator, "BREAK-GLASS access granted; guardians must review it");
        self.log(ctx, "lockbox_break_glass", Self::describe(&req))
            .await?;
        self.notify(&tenant, "lockbox_break_glass", &req).await;
        self.refresh().await?;
        Ok(req)
    }

    /// Requests, optionally of one tenant or one operator.
    pub async fn requests(
        &self,
        tenant: Option<&str>,
        operator: Option<&str>,
    ) -> IamResult<Vec<AccessRequest>> {
        Ok(self
            .all::<AccessRequest>(kind::LOCKBOX)
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| tenant.is_none_or(|t| r.spec.tenant == t))
            .filter(|r| operator.is_none_or(|o| r.operator == o))
            .collect())
    }

    /// One request.
    pub async fn request(&self, id: &str) -> IamResult<AccessRequest> {
        self.get::<AccessRequest>(kind::LOCKBOX, id)
            .await?
            .map(|(r, _)| r)
            .ok_or_else(|| IamError::NotFound(format!("no such lockbox request {id}")))
    }

    /// A guardian approves; with the charter's number of approvals the grant starts. The
    /// operator is checked against the charter in force again.
    pub async fn approve(
        &self,
        ctx: &RequestContext,
        id: &str,
        guardian: &str,
        comment: &str,
        signature: Option<&str>,
    ) -> IamResult<AccessRequest> {
        let current = self.request(id).await?;
        // A guardian with an approval key signs: the signature is what a key service checks.
        let signed = self
            .checked_approval_signature(&current, guardian, signature)
            .await?;
        let charter = self.charter(&current.spec.tenant).await?;
        let active = charter
            .active()
            .cloned()
            .ok_or_else(|| IamError::Denied("the tenant has no charter in force".into()))?;
        let op = self
            .attested_operator(
                &current.spec.tenant,
                &current.operator,
                current.requested_with.as_deref().unwrap_or_default(),
            )
            .await?;
        let unmet: Vec<String> = current
            .kinds()
            .iter()
            .flat_map(|k| active.doc.unmet(&op, k))
            .collect();
        if !unmet.is_empty() || op.state != State::Active {
            return Err(IamError::Denied(format!(
                "operator {} does not meet the charter in force (version {}): {}",
                op.name,
                active.version,
                if unmet.is_empty() {
                    "the operator is disabled".into()
                } else {
                    unmet.join("; ")
                }
            )));
        }
        if current.spec.duration_secs > active.doc.max_grant_secs {
            return Err(IamError::Denied(format!(
                "the charter in force (version {}) allows at most {} s",
                active.version, active.doc.max_grant_secs
            )));
        }
        let now = self.now_ms();
        let req = self
            .update::<AccessRequest, _>(kind::LOCKBOX, id, "lockbox request", |r| {
                if r.state != RequestState::Pending {
                    return Err(IamError::Conflict(format!(
                        "request {id} is {}, not pending",
                        r.status(now)
                    )));
                }
                if r.approvals.iter().any(|v| v.by == guardian) {
                    return Err(IamError::Conflict(format!(
                        "{guardian} has already approved request {id}"
                    )));
                }
                r.approvals.push(Vote {
                    by: guardian.to_owned(),
                    at_ms: now,
                    comment: comment.to_owned(),
                });
                if let Some(line) = &signed {
                    r.approval_signatures.push(line.clone());
                }
                r.approvals_required = active.doc.approvals_required;
                r.charter_version = active.version;
                if r.approvals.len() >= r.approvals_required as usize {
                    r.state = RequestState::Approved;
                    r.granted_ms = Some(now);
                    r.expires_ms = Some(
                        now.saturating_add(
                            i64::try_from(r.spec.duration_secs)
                                .unwrap_or(i64::MAX)
                                .saturating_mul(1000),
                        ),
                    );
                }
                Ok(())
            })
            .await?;
        let granted = req.state == RequestState::Approved;
        self.log(
            ctx,
            if granted {
                "lockbox_granted"
            } else {
                "lockbox_approval"
            },
            format!(
                "request={id} tenant={} guardian={guardian} approvals={}/{} expires_ms={}",
                req.spec.tenant,
                req.approvals.len(),
                req.approvals_required,
                req.expires_ms.unwrap_or(0)
            ),
        )
        .await?;
        if granted {
            self.refresh().await?;
        }
        if let Ok(t) = self.tenant(&req.spec.tenant).await {
            let event = if granted {
                "lockbox_granted"
            } else {
                "lockbox_approval"
            };
            self.notify(&t, event, &req).await;
        }
        Ok(req)
    }

    #[allow(clippy::too_many_arguments)]
    async fn close(
        &self,
        ctx: &RequestContext,
        id: &str,
        by: &str,
        comment: &str,
        to: RequestState,
        allowed_from: &[RequestState],
        action: &str,
    ) -> IamResult<AccessRequest> {
        let now = self.now_ms();
        let req = self
            .update::<AccessRequest, _>(kind::LOCKBOX, id, "lockbox request", |r| {
                if !allowed_from.contains(&r.state) || (to == RequestState::Revoked && !r.live(now))
                {
                    return Err(IamError::Conflict(format!(
                        "request {id} is {}",
                        r.status(now)
                    )));
                }
                r.state = to;
                r.closed_by = Some(Vote {
                    by: by.to_owned(),
                    at_ms: now,
                    comment: comment.to_owned(),
                });
                Ok(())
            })
            .await?;
        if let Some(key) = &req.credential {
            let _ = self.remove(kind::ACCESS_KEY, key).await?;
        }
        self.log(
            ctx,
            action,
            format!(
                "request={id} tenant={} by={by} comment={comment:?}",
                req.spec.tenant
            ),
        )
        .await?;
        self.refresh().await?;
        if let Ok(t) = self.tenant(&req.spec.tenant).await {
            self.notify(&t, action, &req).await;
        }
        Ok(req)
    }

    /// A guardian denies a pending request.
    pub async fn deny(
        &self,
        ctx: &RequestContext,
        id: &str,
        guardian: &str,
        comment: &str,
    ) -> IamResult<AccessRequest> {
        self.close(
            ctx,
            id,
            guardian,
            comment,
            RequestState::Denied,
            &[RequestState::Pending],
            "lockbox_denied",
        )
        .await
    }

    /// Revokes a live grant at once; its credential is deleted.
    pub async fn revoke(
        &self,
        ctx: &RequestContext,
        id: &str,
        by: &str,
        comment: &str,
    ) -> IamResult<AccessRequest> {
        self.close(
            ctx,
            id,
            by,
            comment,
            RequestState::Revoked,
            &[RequestState::Approved],
            "lockbox_revoked",
        )
        .await
    }

    /// The requesting operator claims the grant's credential (once): an access key that
    /// works only inside the scope and only until the grant ends.
    pub async fn claim(
        &self,
        ctx: &RequestContext,
        id: &str,
        operator: &str,
        access_key: &str,
    ) -> IamResult<(KeyView, Zeroizing<String>, AccessRequest)> {
        let req = self.request(id).await?;
        if req.operator != operator {
            return Err(IamError::Denied(format!(
                "request {id} was filed by another operator"
            )));
        }
        // Bound to the credential that filed the request: another key of the same operator
        // (one the platform made, say) claims nothing.
        if req.requested_with.as_deref() != Some(access_key) {
            return Err(IamError::Denied(format!(
                "request {id} was filed with another access key; only that key claims its grant"
            )));
        }
        let now = self.now_ms();
        if !req.live(now) {
            return Err(IamError::Conflict(format!(
                "request {id} is {}",
                req.status(now)
            )));
        }
        if req.credential.is_some() {
            return Err(IamError::Conflict(format!(
                "the credential of {id} was already claimed (it is shown once)"
            )));
        }
        let (key, secret) = self.new_key(Owner::Grant { id: id.to_owned() }).await?;
        let key_id = key.id.clone();
        let updated = self
            .update::<AccessRequest, _>(kind::LOCKBOX, id, "lockbox request", |r| {
                if r.credential.is_some() {
                    return Err(IamError::Conflict(format!(
                        "the credential of {id} was already claimed"
                    )));
                }
                r.credential = Some(key_id.clone());
                Ok(())
            })
            .await;
        let updated = match updated {
            Ok(r) => r,
            Err(e) => {
                let _ = self.remove(kind::ACCESS_KEY, &key.id).await;
                return Err(e);
            }
        };
        self.log(
            ctx,
            "lockbox_credential_claimed",
            format!(
                "request={id} tenant={} operator={operator} key={}",
                updated.spec.tenant, key.id
            ),
        )
        .await?;
        self.refresh().await?;
        if let Ok(t) = self.tenant(&updated.spec.tenant).await {
            self.notify(&t, "lockbox_credential_claimed", &updated)
                .await;
        }
        Ok((key, secret, updated))
    }

    /// A guardian reviews a break-glass grant after the fact.
    pub async fn review(
        &self,
        ctx: &RequestContext,
        id: &str,
        guardian: &str,
        justified: bool,
        comment: &str,
    ) -> IamResult<AccessRequest> {
        let now = self.now_ms();
        let req = self
            .update::<AccessRequest, _>(kind::LOCKBOX, id, "lockbox request", |r| {
                if !r.break_glass {
                    return Err(IamError::Conflict(format!(
                        "request {id} is not a break-glass grant"
                    )));
                }
                if r.review.is_some() {
                    return Err(IamError::Conflict(format!(
                        "break-glass grant {id} is already reviewed"
                    )));
                }
                r.review = Some(Review {
                    vote: Vote {
                        by: guardian.to_owned(),
                        at_ms: now,
                        comment: comment.to_owned(),
                    },
                    justified,
                });
                Ok(())
            })
            .await?;
        self.log(
            ctx,
            "lockbox_break_glass_reviewed",
            format!(
                "request={id} tenant={} guardian={guardian} justified={justified} comment={comment:?}",
                req.spec.tenant
            ),
        )
        .await?;
        if let Ok(t) = self.tenant(&req.spec.tenant).await {
            self.notify(&t, "lockbox_break_glass_reviewed", &req).await;
        }
        Ok(req)
    }

    // ---------------------------------------------------------------- signed approvals

    /// The statement guardians sign to approve `req` (`vallum_crypto::approval`).
    #[must_use]
    pub fn approval_statement(req: &AccessRequest) -> String {
        vallum_crypto::approval::statement(&vallum_crypto::approval::ApprovalFacts {
            request: &req.id,
            tenant: &req.spec.tenant,
            operator: &req.operator,
            access_key: req.requested_with.as_deref().unwrap_or_default(),
            bucket: &req.spec.scope.bucket,
            prefix: &req.spec.scope.prefix,
            operations: &req.spec.scope.operations,
            duration_secs: req.spec.duration_secs,
            break_glass: req.break_glass,
        })
    }

    /// A guardian registers its own approval key (a signed-note verifier key). From then on
    /// its approvals must be signed with it.
    pub async fn set_approval_key(
        &self,
        ctx: &RequestContext,
        tenant: &str,
        name: &str,
        vkey: &str,
    ) -> IamResult<User> {
        vallum_ledger::note::Verifier::parse(vkey)
            .map_err(|e| IamError::Invalid(format!("approval key: {e}")))?;
        let id = format!("{tenant}/{name}");
        let user = self
            .update::<User, _>(kind::USER, &id, &format!("user {id}"), |u| {
                if !u.has(Role::Guardian) {
                    return Err(IamError::Invalid(format!(
                        "{id} is no guardian: only guardians sign approvals"
                    )));
                }
                u.approval_key = Some(vkey.to_owned());
                Ok(())
            })
            .await?;
        self.log(
            ctx,
            "guardian_approval_key_set",
            format!("tenant={tenant} user={id} vkey={vkey}"),
        )
        .await?;
        self.refresh().await?;
        Ok(user)
    }

    /// The signature line `guardian` gives for `req`: required (and checked against the
    /// statement) when the guardian registered an approval key.
    async fn checked_approval_signature(
        &self,
        req: &AccessRequest,
        guardian: &str,
        signature: Option<&str>,
    ) -> IamResult<Option<String>> {
        let user = self
            .get::<User>(kind::USER, guardian)
            .await?
            .map(|(u, _)| u)
            .ok_or_else(|| IamError::NotFound(format!("no such user {guardian}")))?;
        let Some(vkey) = user.approval_key else {
            return Ok(None);
        };
        let line = signature.ok_or_else(|| {
            IamError::Denied(format!(
                "{guardian} has an approval key: the approval must be signed with it (vallum lockbox approve --signing-key)"
            ))
        })?;
        let statement = Self::approval_statement(req);
        let line = format!("{}\n", line.trim_end());
        let note = vallum_ledger::note::Note::parse(format!("{statement}\n{line}").as_bytes())
            .map_err(|e| IamError::Invalid(format!("approval signature: {e}")))?;
        let verifier = vallum_ledger::note::Verifier::parse(&vkey)
            .map_err(|e| IamError::Invalid(format!("approval key: {e}")))?;
        vallum_ledger::note::open(&note, std::slice::from_ref(&verifier)).map_err(|_| {
            IamError::Denied(format!(
                "the signature is not {guardian}'s over request {}'s approval statement",
                req.id
            ))
        })?;
        Ok(Some(line))
    }

    /// The guardians' signed approvals of grant `id` (the statement and every signature), for
    /// the key services; `None` when nobody signed.
    pub async fn grant_approvals(&self, id: &str) -> IamResult<Option<String>> {
        let Some((req, _)) = self.get::<AccessRequest>(kind::LOCKBOX, id).await? else {
            return Ok(None);
        };
        if req.approval_signatures.is_empty() {
            return Ok(None);
        }
        Ok(Some(format!(
            "{}\n{}",
            Self::approval_statement(&req),
            req.approval_signatures.concat()
        )))
    }

    // ---------------------------------------------------------------- attestations

    /// A guardian of `tenant` attests `operator`: the role and attributes the tenant's charter
    /// is checked against, and the operator's access key (at its current secret) that may
    /// file requests. Replaces the tenant's earlier attestation of the operator.
    pub async fn attest_for_tenant(
        &self,
        ctx: &RequestContext,
        spec: AttestationSpec,
        guardian: &str,
    ) -> IamResult<TenantAttestation> {
        let AttestationSpec {
            tenant,
            operator,
            role,
            attributes,
            access_key,
            evidence,
        } = spec;
        let (tenant, operator, role, access_key, evidence) = (
            tenant.as_str(),
            operator.as_str(),
            role.as_str(),
            access_key.as_str(),
            evidence.as_str(),
        );
        check_name("operator role", role)?;
        check_attributes(&attributes)?;
        let t = self.tenant(tenant).await?;
        let op = self.operator(operator).await?;
        let key = self
            .get::<AccessKey>(kind::ACCESS_KEY, access_key)
            .await?
            .map(|(k, _)| k)
            .filter(|k| {
                k.owner
                    == Owner::Operator {
                        name: op.name.clone(),
                    }
            })
            .ok_or_else(|| {
                IamError::Invalid(format!(
                    "access key {access_key} is not a key of operator {operator}"
                ))
            })?;
        if key.state != State::Active {
            return Err(IamError::Invalid(format!(
                "access key {access_key} is disabled"
            )));
        }
        let att = TenantAttestation {
            tenant: tenant.to_owned(),
            operator: operator.to_owned(),
            role: role.to_owned(),
            attributes,
            access_key: access_key.to_owned(),
            key_rotated_ms: key.rotated_ms,
            by: guardian.to_owned(),
            at_ms: self.now_ms(),
            evidence: evidence.to_owned(),
        };
        self.upsert(kind::ATTESTATION, &format!("{tenant}/{operator}"), &att)
            .await?;
        self.log(
            ctx,
            "operator_attested_by_tenant",
            format!(
                "tenant={tenant} operator={operator} role={role} key={access_key} guardian={guardian} attributes={}",
                to_json(&att.attributes)
            ),
        )
        .await?;
        self.notify_tenant(
            &t,
            "operator_attested",
            serde_json::json!({ "attestation": att }),
        )
        .await;
        Ok(att)
    }

    /// The tenant's attestations.
    pub async fn attestations(&self, tenant: &str) -> IamResult<Vec<TenantAttestation>> {
        Ok(self
            .all::<TenantAttestation>(kind::ATTESTATION)
            .await?
            .into_iter()
            .map(|(_, a)| a)
            .filter(|a| a.tenant == tenant)
            .collect())
    }

    /// A guardian withdraws the tenant's attestation of an operator; the operator's live
    /// grants and pending requests for the tenant end with it.
    pub async fn withdraw_attestation(
        &self,
        ctx: &RequestContext,
        tenant: &str,
        operator: &str,
        guardian: &str,
    ) -> IamResult<()> {
        if !self
            .remove(kind::ATTESTATION, &format!("{tenant}/{operator}"))
            .await?
        {
            return Err(IamError::NotFound(format!(
                "tenant {tenant} has no attestation of operator {operator}"
            )));
        }
        self.log(
            ctx,
            "operator_attestation_withdrawn",
            format!("tenant={tenant} operator={operator} guardian={guardian}"),
        )
        .await?;
        self.end_operator_access(ctx, operator, Some(tenant), "its attestation was withdrawn")
            .await
    }

    /// Ends an operator's pending requests and live grants (of one tenant, or all), deleting
    /// claimed credentials, because something they depended on changed (`why`); each affected
    /// tenant's guardians are told, and so is every tenant that attested the operator.
    async fn end_operator_access(
        &self,
        ctx: &RequestContext,
        operator: &str,
        only_tenant: Option<&str>,
        why: &str,
    ) -> IamResult<()> {
        let now = self.now_ms();
        let mut told: Vec<String> = Vec::new();
        for req in self.requests(only_tenant, Some(operator)).await? {
            let open = req.state == RequestState::Pending || req.live(now);
            if !open {
                continue;
            }
            let to = if req.state == RequestState::Pending {
                RequestState::Denied
            } else {
                RequestState::Revoked
            };
            let ended = self
                .update::<AccessRequest, _>(kind::LOCKBOX, &req.id, "lockbox request", |r| {
                    r.state = to;
                    r.closed_by = Some(Vote {
                        by: "vallum".into(),
                        at_ms: now,
                        comment: format!("ended: {why}"),
                    });
                    Ok(())
                })
                .await?;
            if let Some(key) = &ended.credential {
                self.remove(kind::ACCESS_KEY, key).await?;
            }
            self.log(
                ctx,
                "lockbox_ended",
                format!(
                    "request={} tenant={} operator={operator} reason={why:?}",
                    ended.id, ended.spec.tenant
                ),
            )
            .await?;
            if let Ok(t) = self.tenant(&ended.spec.tenant).await {
                self.notify(&t, "lockbox_ended", &ended).await;
            }
            told.push(ended.spec.tenant.clone());
        }
        self.notify_attesters(operator, only_tenant, why, &told)
            .await?;
        self.refresh().await
    }

    /// Tells every tenant that attested `operator` (but those in `skip`) that its
    /// credentials changed.
    async fn notify_attesters(
        &self,
        operator: &str,
        only_tenant: Option<&str>,
        why: &str,
        skip: &[String],
    ) -> IamResult<()> {
        for att in self
            .all::<TenantAttestation>(kind::ATTESTATION)
            .await?
            .into_iter()
            .map(|(_, a)| a)
            .filter(|a| a.operator == operator)
            .filter(|a| only_tenant.is_none_or(|t| a.tenant == t))
        {
            if skip.contains(&att.tenant) {
                continue;
            }
            if let Ok(t) = self.tenant(&att.tenant).await {
                self.notify_tenant(
                    &t,
                    "operator_credentials_changed",
                    serde_json::json!({ "operator": operator, "reason": why }),
                )
                .await;
            }
        }
        Ok(())
    }

    /// The operator owning access key `key`, if an operator owns it.
    async fn operator_of_key(&self, key: &str) -> IamResult<Option<String>> {
        Ok(self
            .get::<AccessKey>(kind::ACCESS_KEY, key)
            .await?
            .and_then(|(k, _)| match k.owner {
                Owner::Operator { name } => Some(name),
                _ => None,
            }))
    }
}

/// The default tenant, which has no record: it always exists and is always active.
fn default_tenant() -> Tenant {
    Tenant {
        id: DEFAULT_TENANT.into(),
        display_name: "default tenant (administered by the root credentials)".into(),
        state: State::Active,
        guardian_webhook: None,
        created_ms: 0,
    }
}

fn check_webhook(url: &str) -> IamResult<()> {
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .map(|rest| rest.split(['/', '?']).next().unwrap_or(""));
    let ok =
        host.is_some_and(|h| !h.is_empty() && !h.contains('@') && !h.contains(char::is_whitespace));
    if ok {
        Ok(())
    } else {
        Err(IamError::Invalid(format!(
            "guardian_webhook {url:?} must be an https:// (or, where allowed, http://) URL"
        )))
    }
}

fn check_attributes(a: &Attributes) -> IamResult<()> {
    for c in a.citizenship.iter().chain(a.residency.iter()) {
        if c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_uppercase()) {
            return Err(IamError::Invalid(format!(
                "{c:?} is not an ISO 3166-1 alpha-2 country code"
            )));
        }
    }
    Ok(())
}
