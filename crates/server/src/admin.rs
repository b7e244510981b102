//! The admin API (`/_vallum/admin/v1/...`, JSON): keys, jobs, residency, identity and access,
//! the lockbox and log bundles. Requests are signed with SigV4 (service [`ADMIN_SERVICE`]) by
//! any access key the deployment knows; each is parsed into one operation of the table in
//! `admin_ops.rs` (its action, its resource, its handler), judged by the decision point, then
//! served here (keys, jobs, repair, compliance, log bundles), in `admin_iam.rs` or in
//! `admin_residency.rs`. `docs/admin-api.md` lists every route.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use s3s::Body;
use serde::Deserialize;
use vallum_core::Error;
use vallum_core::context::RequestContext;
use vallum_core::keyadmin::{KeyAdmin, RewrapProgress};
use vallum_core::service::ObjectService;
use vallum_crypto::keys::KeyState;
use vallum_crypto::sigv4;

use vallum_core::iam::Iam;
use vallum_core::iam::authz::{Facts, Principal};

use crate::admin_ops::{AdminOp, KeyOp, RepairOp, Target};

/// URL prefix of the admin API.
pub const ADMIN_PREFIX: &str = "/_vallum/admin/v1/";

/// SigV4 service name of admin requests.
pub const ADMIN_SERVICE: &str = "vallum-admin";

/// Largest admin request body.
pub const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

/// The admin API.
pub struct Admin {
    service: Arc<ObjectService>,
    keys: KeyAdmin,
    iam: Arc<Iam>,
    rewrap: Arc<crate::jobs::KeyRewrap>,
    sites: Arc<crate::sites::SiteManager>,
    ledger: Arc<crate::ledger::Ledger>,
    job_statuses: vallum_core::jobs::JobStatuses,
}

/// `POST log/bundle`: which of the caller's entries.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BundleBody {
    /// One bucket (the caller's tenant's name for it).
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    from_ms: Option<i64>,
    #[serde(default)]
    to_ms: Option<i64>,
    /// Include a consistency proof from this older tree size.
    #[serde(default)]
    since_size: Option<u64>,
}

pub(crate) struct Failure(
    pub(crate) StatusCode,
    pub(crate) &'static str,
    pub(crate) String,
);

impl From<vallum_core::meta::MetaError> for Failure {
    fn from(e: vallum_core::meta::MetaError) -> Self {
        Error::from(e).into()
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::NoSuchKmsKey(_) => Failure(StatusCode::NOT_FOUND, "NoSuchKey", e.to_string()),
            Error::InvalidArgument(m) | Error::InvalidRequest(m) => {
                Failure(StatusCode::BAD_REQUEST, "InvalidRequest", m)
            }
            Error::KeyServiceUnavailable(_) | Error::Unavailable(_) => Failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                e.to_string(),
            ),
            Error::KeyRefused(m) => Failure(StatusCode::FORBIDDEN, "AccessDenied", m),
            Error::NoSuchBucket => Failure(StatusCode::NOT_FOUND, "NoSuchBucket", e.to_string()),
            // The sites in the registry cannot satisfy the policy: a conflict with the state
            // of the deployment, not a malformed request.
            Error::NoCompliantPlacement(m) => {
                Failure(StatusCode::CONFLICT, "NoCompliantPlacement", m)
            }
            other => {
                tracing::error!(error = %other, "admin request failed");
                Failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    other.to_string(),
                )
            }
        }
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(Bytes::from(
        serde_json::to_vec_pretty(value).unwrap_or_default(),
    )));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Percent-decodes `s` (UTF-8); `None` for bad escapes or bytes.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(crate) fn value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

#[derive(Deserialize)]
struct CreateBody {
    key_id: String,
}

#[derive(Deserialize)]
struct DeletionBody {
    days: u32,
}

#[derive(Deserialize)]
struct DestroyBody {
    confirm: String,
}

/// The answer for a known resource and a method it does not take.
pub(crate) fn not_allowed(method: &Method) -> Failure {
    Failure(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("{method} is not allowed on this admin resource"),
    )
}

impl Admin {
    /// The admin API over `service` and `keys`, its callers known to `iam`; key re-wraps go to
    /// `rewrap`
    /// and the other jobs are listed from `jobs` (the gateway's registry); site changes go to
    /// `sites`; log bundles and reports' checkpoints come from `ledger`.
    pub fn new(
        service: Arc<ObjectService>,
        keys: KeyAdmin,
        iam: Arc<Iam>,
        rewrap: Arc<crate::jobs::KeyRewrap>,
        jobs: vallum_core::jobs::JobStatuses,
        sites: Arc<crate::sites::SiteManager>,
        ledger: Arc<crate::ledger::Ledger>,
    ) -> Self {
        Self {
            service,
            keys,
            iam,
            rewrap,
            sites,
            ledger,
            job_statuses: jobs,
        }
    }

    /// A proof bundle of the caller's own sealed log entries: a tenant's users get their
    /// tenant's, the root credentials the platform's and the default tenant's.
    async fn log_bundle(
        &self,
        principal: &Principal,
        body: &[u8],
    ) -> Result<serde_json::Value, Failure> {
        let b: BundleBody = if body.is_empty() {
            BundleBody::default()
        } else {
            Self::parse(body)?
        };
        let (owner, tenant) = match principal {
            Principal::Root => (
                String::new(),
                vallum_core::iam::model::DEFAULT_TENANT.to_owned(),
            ),
            Principal::User { tenant, .. } => (tenant.clone(), tenant.clone()),
            _ => {
                return Err(Failure(
                    StatusCode::FORBIDDEN,
                    "AccessDenied",
                    "log bundles are for a tenant's users and the root credentials".into(),
                ));
            }
        };
        let ledger = Arc::clone(&self.ledger);
        let internal = b
            .bucket
            .as_deref()
            .map(|name| vallum_core::iam::model::internal_bucket(&tenant, name));
        let filter = vallum_ledger::verify::BundleFilter {
            bucket: b.bucket.clone(),
            from_ms: b.from_ms,
            to_ms: b.to_ms,
        };
        let (from_ms, to_ms, since_size) = (b.from_ms, b.to_ms, b.since_size);
        let bundle = tokio::task::spawn_blocking(move || {
            let keep = |e: &vallum_ledger::entry::Entry| {
                internal
                    .as_deref()
                    .is_none_or(|name| e.event.bucket() == Some(name))
                    && from_ms.is_none_or(|f| e.time_ms >= f)
                    && to_ms.is_none_or(|t| e.time_ms <= t)
            };
            ledger.bundle_for(&owner, &keep, filter, since_size)
        })
        .await
        .map_err(|e| {
            Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })?
        .map_err(|e| {
            Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })?;
        serde_json::from_slice(&bundle.to_json()).map_err(|e| {
            Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })
    }

    /// Serves one admin request.
    /// Every site's health, as its blob store sees it.
    pub fn site_health(&self) -> Vec<(String, vallum_core::blob::SiteHealth)> {
        let top = self.service.topology();
        (0..top.sites().len())
            .map(|i| (top.sites()[i].id.clone(), top.health_report(i)))
            .collect()
    }

    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        request_id: &str,
        secure: bool,
        peer: Option<std::net::IpAddr>,
    ) -> Response<Body> {
        let (parts, body) = req.into_parts();
        // The whole (small) body within the body-read timeout: a client trickling its body
        // cannot hold the connection.
        let collected = tokio::time::timeout(
            std::time::Duration::from_secs(vallum_types::limits::BODY_READ_TIMEOUT_SECS),
            Limited::new(body, MAX_ADMIN_BODY_BYTES).collect(),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Box::new(crate::conn::BodyTimedOut(
                vallum_types::limits::BODY_READ_TIMEOUT_SECS,
            )))
        });
        let body = match collected {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return self.fail(
                    Failure(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "InvalidRequest",
                        format!(
                            "request body unreadable or over {MAX_ADMIN_BODY_BYTES} bytes: {e}"
                        ),
                    ),
                    request_id,
                );
            }
        };
        let (principal, actor, caller_key) = match self.authenticate(&parts, &body).await {
            Ok(p) => p,
            Err(f) => return self.fail(f, request_id),
        };
        let ctx = RequestContext::new(actor, Some(request_id.to_owned()))
            .with_grant(principal.grant().map(str::to_owned), None);
        let facts = Facts {
            secure,
            source_ip: peer,
            now_ms: self.service.now_ms(),
            ..Facts::default()
        };
        let path = parts.uri.path().strip_prefix(ADMIN_PREFIX).unwrap_or("");
        let segments: Option<Vec<String>> = path.split('/').map(percent_decode).collect();
        let result = match segments {
            Some(seg) => {
                let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
                let this = Arc::clone(self);
                this.authorized(
                    &ctx,
                    &principal,
                    &caller_key,
                    &facts,
                    &parts.method,
                    &seg,
                    &body,
                )
                .await
            }
            None => Err(Failure(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "bad percent-encoding".into(),
            )),
        };
        match result {
            Ok(v) => json(StatusCode::OK, &v),
            Err(f) => self.fail(f, request_id),
        }
    }

    /// Who signed the request: SigV4 (service [`ADMIN_SERVICE`]) with any access key the
    /// identity service knows.
    async fn authenticate(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<(Principal, String, String), Failure> {
        let denied = |m: String| Failure(StatusCode::FORBIDDEN, "AccessDenied", m);
        let access_key = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(sigv4::access_key_of)
            .map(str::to_owned)
            .ok_or_else(|| {
                denied(format!(
                    "admin requests are signed with SigV4 (service {ADMIN_SERVICE})"
                ))
            })?;
        let (principal, secret) = match self.iam.authenticate(&access_key).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Err(denied(
                    "the access key is not known to this deployment".into(),
                ));
            }
            Err(vallum_core::iam::IamError::Denied(m)) => return Err(denied(m)),
            Err(e) => return Err(e.into()),
        };
        sigv4::verify_http(
            parts,
            body,
            ADMIN_SERVICE,
            self.service.now_ms() / 1000,
            |ak| (ak == access_key).then(|| secret.clone()),
        )
        .map_err(|e| {
            denied(format!(
                "admin requests are signed with SigV4 (service {ADMIN_SERVICE}): {e}"
            ))
        })?;
        let actor = principal.actor_with_key(&access_key);
        Ok((principal, actor, access_key))
    }

    /// The operation table, the decision point, then the operation's handler.
    #[allow(clippy::too_many_arguments)]
    async fn authorized(
        self: &Arc<Self>,
        ctx: &RequestContext,
        principal: &Principal,
        caller_key: &str,
        facts: &Facts,
        method: &Method,
        seg: &[&str],
        body: &[u8],
    ) -> Result<serde_json::Value, Failure> {
        let mut op = AdminOp::parse(method, seg)?;
        let Target { action, resource } = op.target(&self.iam, principal, body).await?;
        let d = self.iam.authorize(principal, action, &resource, facts);
        if !d.allowed {
            let why: Vec<String> = d.reasons.iter().map(|r| r.policy.clone()).collect();
            return Err(Failure(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                format!(
                    "{} may not {action} on {resource:?}: {}",
                    principal.actor(),
                    if d.explicit_deny {
                        format!("explicitly denied by {}", why.join(", "))
                    } else {
                        "no policy allows it".to_owned()
                    }
                ),
            ));
        }
        match op {
            AdminOp::Iam(op) => {
                crate::admin_iam::route(ctx, &self.iam, principal, caller_key, facts, op, body)
                    .await
            }
            AdminOp::Residency(op) => {
                crate::admin_residency::route(ctx, &self.service, op, body).await
            }
            AdminOp::Site(op) => {
                crate::admin_residency::manage(ctx, &self.service, &self.sites, op, body).await
            }
            AdminOp::Repair(RepairOp::Progress) => {
                let progress = self.service.repair_progress().await?;
                Ok(serde_json::json!({ "repair": value(&progress) }))
            }
            AdminOp::Repair(RepairOp::Start) => {
                self.service.repair_hint().notify_one();
                let progress = self.service.repair_progress().await?;
                Ok(serde_json::json!({ "repair": value(&progress), "started": true }))
            }
            AdminOp::Key(op) => self.key_op(ctx, op, body).await,
            AdminOp::LogBundle => self.log_bundle(principal, body).await,
            AdminOp::Jobs => Ok(self.jobs()),
            AdminOp::PlatformCompliance => {
                let s = &self.service;
                let buckets = s.compliance().await?;
                let outside = buckets.iter().filter(|b| !b.compliant).count();
                let report = vallum_core::residency::drift_report(
                    "platform",
                    &buckets,
                    s.now_ms(),
                    self.checkpoint(),
                );
                Ok(
                    serde_json::json!({ "buckets": value(&buckets), "non_compliant": outside, "report": report }),
                )
            }
            AdminOp::BucketCompliance(b) => {
                let s = &self.service;
                let bucket = s.bucket_compliance(&b).await?;
                let report = vallum_core::residency::drift_report(
                    &format!("bucket {}", bucket.bucket),
                    std::slice::from_ref(&bucket),
                    s.now_ms(),
                    self.checkpoint(),
                );
                Ok(with_report(value(&bucket), &report))
            }
        }
    }

    fn fail(&self, f: Failure, request_id: &str) -> Response<Body> {
        json(
            f.0,
            &serde_json::json!({ "error": f.1, "message": f.2, "request_id": request_id }),
        )
    }

    pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
        serde_json::from_slice(body).map_err(|e| {
            Failure(
                StatusCode::BAD_REQUEST,
                "MalformedJSON",
                format!("request body: {e}"),
            )
        })
    }

    /// `GET jobs`: the registry's jobs, and the key re-wraps.
    fn jobs(&self) -> serde_json::Value {
        let jobs = self.job_statuses.list();
        let rewraps: Vec<serde_json::Value> = self
            .rewrap
            .all()
            .iter()
            .map(|(key, p)| serde_json::json!({ "key_id": key, "progress": value(p) }))
            .collect();
        serde_json::json!({ "jobs": value(&jobs), "rewraps": rewraps })
    }

    /// Key administration.
    async fn key_op(
        &self,
        ctx: &RequestContext,
        op: KeyOp,
        body: &[u8],
    ) -> Result<serde_json::Value, Failure> {
        let s = &self.keys;
        match op {
            KeyOp::List => Ok(serde_json::json!({ "keys": value(&s.list_keys().await?) })),
            KeyOp::Create => {
                let b: CreateBody = Self::parse(body)?;
                Ok(value(&s.create_key(ctx, &b.key_id).await?))
            }
            KeyOp::Describe(id) => {
                let key = s.describe_key(&id).await?;
                let usage = s.key_usage(&id).await?;
                Ok(serde_json::json!({
                    "key": value(&key),
                    "usage": value(&usage),
                    "rewrap": value(&self.progress(&id).await),
                }))
            }
            KeyOp::Rotate(id) => {
                let key = s.rotate_key(ctx, &id).await?;
                self.start_rewrap(&id);
                Ok(serde_json::json!({ "key": value(&key), "rewrap": "started" }))
            }
            KeyOp::Rewrap(id) => {
                s.describe_key(&id).await?;
                self.start_rewrap(&id);
                Ok(serde_json::json!({ "rewrap": "started" }))
            }
            KeyOp::RewrapProgress(id) => Ok(value(&self.progress(&id).await)),
            KeyOp::Disable(id) => Ok(value(&s.set_key_state(ctx, &id, KeyState::Disabled).await?)),
            KeyOp::Enable(id) => Ok(value(&s.set_key_state(ctx, &id, KeyState::Enabled).await?)),
            KeyOp::ScheduleDeletion(id) => {
                let b: DeletionBody = Self::parse(body)?;
                Ok(value(&s.schedule_key_deletion(ctx, &id, b.days).await?))
            }
            KeyOp::Destroy(id) => {
                let b: DestroyBody = Self::parse(body)?;
                if b.confirm != id {
                    return Err(Failure(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequest",
                        format!(
                            "destroying makes every object under {id} unrecoverable; confirm with {{\"confirm\": \"{id}\"}}"
                        ),
                    ));
                }
                let shred = s.destroy_key(ctx, &id).await?;
                let report = shred.to_report(self.service.now_ms(), self.checkpoint());
                Ok(with_report(value(&shred), &report))
            }
        }
    }

    /// The log's published signed checkpoint, which reports refer to.
    fn checkpoint(&self) -> Option<vallum_ledger::report::CheckpointRef> {
        let note = self.ledger.resource("checkpoint")?;
        vallum_ledger::report::CheckpointRef::from_note(&note)
    }

    /// The re-wrap job's progress for key `id`: this gateway's, else the last one recorded.
    async fn progress(&self, id: &str) -> Option<RewrapProgress> {
        self.rewrap.progress(id).await
    }

    /// Queues a re-wrap of key `id` on this gateway's re-wrap job.
    fn start_rewrap(&self, id: &str) {
        self.rewrap.request(id);
    }
}

/// `v` (an object) with the common-shape `report` added beside its own fields.
fn with_report(
    mut v: serde_json::Value,
    report: &vallum_ledger::report::Report,
) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("report".into(), value(report));
    }
    v
}
