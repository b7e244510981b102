//! The S3 side of the decision point: who signed the request ([`IamAuth`]), and whether they
//! may do what they ask ([`VallumAccess`], run by s3s before every operation). Bucket names
//! are scoped by tenant: a plain name means the caller's own tenant's bucket, `tenant:bucket`
//! another tenant's (reachable only where that bucket's policy opens it).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{S3Error, S3Result, s3_error};
use vallum_core::context::RequestContext;
use vallum_core::iam::authz::{Decision, Facts, Principal, Resource};
use vallum_core::iam::model::{TENANT_SEPARATOR, check_tenant_id, internal_bucket};
use vallum_core::iam::operations::{Required, S3Operation};
use vallum_core::iam::{Iam, IamError};

/// Request extension: the id the response carries (`x-amz-request-id`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Request extension: the client's address.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<IpAddr>);

/// Request extension set once the caller is authorized: who, in which tenant's namespace,
/// with the request's facts (for decisions a handler makes itself: copy sources,
/// multi-object deletes, governance bypass).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The principal.
    pub principal: Principal,
    /// The tenant whose bucket this request addresses.
    pub tenant: String,
    /// The request's facts.
    pub facts: Facts,
    /// Who acts, under which grant: what every service call of the request takes.
    pub ctx: RequestContext,
    /// The request's bucket as resolved here, `(wire name, internal name)`: handlers take it
    /// instead of resolving it again.
    pub bucket: Option<(String, String)>,
    /// Globally unique bucket names, when the deployment uses them (a copy source's bare
    /// name is resolved through them).
    pub names: Option<Arc<crate::bucket_names::BucketNames>>,
}

/// The request context of an authorized request (an anonymous one before authorization).
#[must_use]
pub fn context(ext: &http::Extensions) -> RequestContext {
    match ext.get::<Caller>() {
        Some(c) => c.ctx.clone(),
        None => RequestContext::anonymous(ext.get::<RequestId>().map(|r| r.0.clone())),
    }
}

/// The S3 error for a denial; the message says which kind, never what exists.
#[must_use]
pub fn denied(d: &Decision) -> S3Error {
    let why = if d.explicit_deny {
        "explicitly denied by a policy"
    } else {
        "no policy allows it"
    };
    s3_error!(AccessDenied, "Access Denied ({why})")
}

fn iam_error(e: IamError) -> S3Error {
    match e {
        IamError::Denied(m) => s3_error!(AccessDenied, "{m}"),
        other => {
            tracing::error!(error = %other, "credential lookup failed");
            s3_error!(InternalError, "credential lookup failed")
        }
    }
}

/// Access keys from the identity service (root, users, operators, lockbox grants).
pub struct IamAuth(pub Arc<Iam>);

#[async_trait::async_trait]
impl S3Auth for IamAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        // Only the secret, for the signature check; who the key stands for (and whether its
        // user, operator or grant is live) is decided once, by the access check.
        match self.0.signing_secret(access_key).await.map_err(iam_error)? {
            Some(secret) => Ok(SecretKey::from(secret.as_str().to_owned())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

/// Bucket names: S3's rules, or `tenant:bucket` with a valid tenant id and bucket name.
#[derive(Debug, Clone, Copy, Default)]
pub struct TenantNames;

impl s3s::validation::NameValidation for TenantNames {
    fn validate_bucket_name(&self, name: &str) -> bool {
        match name.split_once(TENANT_SEPARATOR) {
            Some((tenant, bucket)) => {
                check_tenant_id(tenant).is_ok() && s3s::path::check_bucket_name(bucket)
            }
            None => s3s::path::check_bucket_name(name),
        }
    }
}

/// The tenant and tenant-local bucket a wire bucket name means for `principal`.
pub fn resolve(principal: &Principal, wire: &str) -> S3Result<(String, String)> {
    if let Some((tenant, bucket)) = wire.split_once(TENANT_SEPARATOR) {
        return Ok((tenant.to_owned(), bucket.to_owned()));
    }
    match principal.namespace() {
        Some(t) => Ok((t.to_owned(), wire.to_owned())),
        None => Err(s3_error!(
            AccessDenied,
            "Access Denied (an operator's own credentials reach no bucket; request lockbox access)"
        )),
    }
}

/// The internal bucket name a wire name means for the caller of `ext` (the request's own
/// bucket as the decision point resolved it; another, such as a copy source, resolved now).
pub fn internal(ext: &http::Extensions, wire: &str) -> S3Result<String> {
    let caller = ext
        .get::<Caller>()
        .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"))?;
    if let Some((resolved_wire, internal)) = &caller.bucket
        && resolved_wire == wire
    {
        return Ok(internal.clone());
    }
    if let Some(owner) = caller
        .names
        .as_ref()
        .filter(|_| !wire.contains(TENANT_SEPARATOR))
        .and_then(|n| n.cached_owner(wire))
    {
        return Ok(internal_bucket(&owner, wire));
    }
    let (tenant, bucket) = resolve(&caller.principal, wire)?;
    Ok(internal_bucket(&tenant, &bucket))
}

impl VallumAccess {
    /// The tenant and bucket a wire name means for `principal`: with global names a bare
    /// name is its owner's bucket (CreateBucket excepted: it names one of the caller's own);
    /// otherwise as [`resolve`] says.
    async fn resolve_for(
        &self,
        principal: &Principal,
        wire: &str,
        creating: bool,
    ) -> S3Result<(String, String)> {
        if let Some(names) = &self.names
            && !creating
            && !wire.contains(TENANT_SEPARATOR)
            && let Some(owner) = names
                .owner(wire)
                .await
                .map_err(|e| s3_error!(ServiceUnavailable, "resolving the bucket name: {e}"))?
        {
            return Ok((owner, wire.to_owned()));
        }
        resolve(principal, wire)
    }
}

/// How a bucket's internal name is shown to the caller: bare in its own namespace.
#[must_use]
pub fn wire_name(ext: &http::Extensions, internal: &str) -> String {
    let (tenant, bucket) = vallum_core::iam::model::split_internal(internal);
    match ext.get::<Caller>() {
        Some(c) if c.principal.namespace() == Some(tenant) => bucket.to_owned(),
        _ => format!("{tenant}{TENANT_SEPARATOR}{bucket}"),
    }
}

fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        // A query string may carry a space as `+` (a literal `+` arrives as `%2B`).
        (k == name).then(|| {
            let v = v.replace('+', " ");
            crate::admin::percent_decode(&v).unwrap_or(v)
        })
    })
}

/// The decision point in front of every S3 operation; also records the operation name.
pub struct VallumAccess {
    /// The identity service.
    pub iam: Arc<Iam>,
    /// Globally unique bucket names, when the deployment uses them.
    pub names: Option<Arc<crate::bucket_names::BucketNames>>,
}

/// Filled in by [`VallumAccess`] once s3s has resolved the operation.
#[derive(Clone, Default)]
pub struct OperationSlot(pub Arc<Mutex<Option<String>>>);

/// Filled in by [`VallumAccess`] with the request's bucket (internal name) once resolved,
/// before the decision: a browser's CORS headers follow that bucket's configuration, whether
/// the request is allowed or not.
#[derive(Clone, Default)]
pub struct BucketSlot(pub Arc<Mutex<Option<String>>>);

impl VallumAccess {
    fn facts(cx: &mut S3AccessContext<'_>, now_ms: i64) -> Facts {
        let ext = cx.extensions_mut();
        let secure = ext
            .get::<crate::http_service::Secure>()
            .is_some_and(|s| s.0);
        let source_ip = ext.get::<PeerAddr>().and_then(|p| p.0);
        let header = |n: &str| {
            cx.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Facts {
            secure,
            source_ip,
            now_ms,
            prefix: query_param(cx.uri(), "prefix"),
            delimiter: query_param(cx.uri(), "delimiter"),
            max_keys: query_param(cx.uri(), "max-keys").and_then(|v| v.parse().ok()),
            user_agent: header("user-agent"),
            referer: header("referer"),
            sse: header("x-amz-server-side-encryption"),
        }
    }
}

#[async_trait::async_trait]
impl S3Access for VallumAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let op = cx.s3_op().name().to_owned();
        let operation = S3Operation::from_name(&op)
            .ok_or_else(|| s3_error!(NotImplemented, "{op} is not in Vallum's operation table"))?;
        if let Some(slot) = cx.extensions_mut().get::<OperationSlot>()
            && let Ok(mut s) = slot.0.lock()
        {
            *s = Some(op.clone());
        }
        let (principal, actor) = match cx.credentials() {
            Some(c) => {
                let key = c.access_key.clone();
                match self.iam.authenticate(&key).await.map_err(iam_error)? {
                    Some((p, _)) => {
                        let actor = p.actor_with_key(&key);
                        (p, actor)
                    }
                    None => return Err(s3_error!(InvalidAccessKeyId, "unknown access key")),
                }
            }
            None => (Principal::Anonymous, Principal::Anonymous.actor()),
        };
        let request_id = cx.extensions_mut().get::<RequestId>().map(|r| r.0.clone());
        let mut ctx = RequestContext::new(actor, request_id);
        if let Some(grant) = principal.grant() {
            // The guardians' signatures go with every key use under the grant.
            let approvals = self
                .iam
                .grant_approvals(grant)
                .await
                .map_err(|e| s3_error!(InternalError, "reading the grant's approvals: {e}"))?;
            ctx = ctx.with_grant(Some(grant.to_owned()), approvals);
        }
        let version = query_param(cx.uri(), "versionId").is_some();
        let facts = Self::facts(cx, self.iam.now());
        let (tenant, resource, resolved) = match cx.s3_path() {
            S3Path::Root => {
                let tenant = principal.namespace().ok_or_else(|| {
                    s3_error!(
                        AccessDenied,
                        "Access Denied (an operator's own credentials list no buckets)"
                    )
                })?;
                (tenant.to_owned(), Resource::Tenant(tenant.to_owned()), None)
            }
            S3Path::Bucket { bucket: wire } => {
                let (tenant, bucket) = self
                    .resolve_for(&principal, wire, op == "CreateBucket")
                    .await?;
                let resolved = (wire.to_string(), internal_bucket(&tenant, &bucket));
                (
                    tenant.clone(),
                    Resource::Bucket { tenant, bucket },
                    Some(resolved),
                )
            }
            S3Path::Object { bucket: wire, key } => {
                let (tenant, bucket) = self.resolve_for(&principal, wire, false).await?;
                let resolved = (wire.to_string(), internal_bucket(&tenant, &bucket));
                (
                    tenant.clone(),
                    Resource::Object {
                        tenant,
                        bucket,
                        key: key.to_string(),
                    },
                    Some(resolved),
                )
            }
        };
        if let Some((_, internal)) = &resolved
            && let Some(slot) = cx.extensions_mut().get::<BucketSlot>()
            && let Ok(mut s) = slot.0.lock()
        {
            *s = Some(internal.clone());
        }
        // Every operation is in the table with what it needs: an action decided here, or
        // (a multi-object delete) one decided key by key in the handler.
        match operation.required(version) {
            Required::Action(action) => {
                let d = self.iam.authorize(&principal, action, &resource, &facts);
                if !d.allowed {
                    tracing::debug!(actor = %principal.actor(), %action, ?resource, reasons = ?d.reasons, errors = ?d.errors, "denied");
                    return Err(denied(&d));
                }
            }
            Required::PerObject(_) => {}
            Required::Unsupported => {
                return Err(s3_error!(
                    NotImplemented,
                    "{op} is not an operation of this service"
                ));
            }
        }
        // A copy source's bare name, known to this gateway before the handler needs it.
        if let Some(names) = &self.names
            && let Some(source) = cx
                .headers()
                .get("x-amz-copy-source")
                .and_then(|v| v.to_str().ok())
        {
            let decoded = crate::admin::percent_decode(source).unwrap_or_else(|| source.to_owned());
            let bucket = decoded
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or("");
            if !bucket.is_empty() && !bucket.contains(TENANT_SEPARATOR) {
                let _ = names.owner(bucket).await;
            }
        }
        cx.extensions_mut().insert(Caller {
            principal,
            tenant,
            facts,
            ctx,
            bucket: resolved,
            names: self.names.clone(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of every operation the s3s version this build uses dispatches, read from its
    /// generated operation code (found through `cargo metadata`).
    fn s3s_operations() -> Vec<String> {
        let out = std::process::Command::new(env!("CARGO"))
            .args(["metadata", "--format-version", "1", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .output()
            .expect("cargo metadata");
        assert!(out.status.success(), "{out:?}");
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let manifest = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "s3s")
            .and_then(|p| p["manifest_path"].as_str())
            .expect("s3s in the dependency graph")
            .to_owned();
        let dir = std::path::Path::new(&manifest).parent().unwrap();
        let code = std::fs::read_to_string(dir.join("src/ops/generated.rs")).unwrap();
        let marker = "fn name(&self) -> &'static str {";
        code.match_indices(marker)
            .filter_map(|(at, _)| {
                let rest = code[at + marker.len()..].trim_start();
                let name = rest.strip_prefix('"')?.split('"').next()?;
                Some(name.to_owned())
            })
            .collect()
    }

    #[test]
    fn the_operation_table_holds_exactly_what_s3s_dispatches() {
        let mut dispatched = s3s_operations();
        dispatched.sort();
        dispatched.dedup();
        assert!(dispatched.len() > 90, "{dispatched:?}");
        let mut table: Vec<String> = S3Operation::ALL
            .iter()
            .map(|o| o.name().to_owned())
            .collect();
        table.sort();
        assert_eq!(table, dispatched);
    }
}
