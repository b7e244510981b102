//! Admin API resources of identity and access: tenants, users, access keys, operators, the
//! sovereignty charter, the lockbox, and `authz/explain`; and [`required`], the one table
//! saying which action on which resource every admin route is, so that the decision point
//! judges every admin call before it runs.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use vallum_core::context::RequestContext;
use vallum_core::iam::authz::{Decision, Facts, Principal, Resource};
use vallum_core::iam::charter::CharterDoc;
use vallum_core::iam::lockbox::RequestSpec;
use vallum_core::iam::model::{Attributes, Owner, Role, State};
use vallum_core::iam::{Iam, IamError};

use crate::admin::{Admin, Failure, value};
use crate::admin_ops::{IamOp, own_tenant, resolve_bucket};

impl From<IamError> for Failure {
    fn from(e: IamError) -> Self {
        let (status, code) = match &e {
            IamError::NotFound(_) => (StatusCode::NOT_FOUND, "NoSuchEntity"),
            IamError::Exists(_) => (StatusCode::CONFLICT, "EntityAlreadyExists"),
            IamError::Invalid(_) => (StatusCode::BAD_REQUEST, "InvalidRequest"),
            IamError::MalformedPolicy(_) => (StatusCode::BAD_REQUEST, "MalformedPolicy"),
            IamError::PolicyTooLarge(_) => (StatusCode::BAD_REQUEST, "PolicyTooLarge"),
            IamError::Denied(_) => (StatusCode::FORBIDDEN, "AccessDenied"),
            IamError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
            IamError::Meta(_) | IamError::Crypto(_) | IamError::Log(_) => {
                tracing::error!(error = %e, "identity request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
            }
        };
        Failure(status, code, e.to_string())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantBody {
    id: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    guardian_webhook: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantUpdate {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default, with = "double_option")]
    guardian_webhook: Option<Option<String>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Ok(Some(Option::<String>::deserialize(d)?))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    name: String,
    #[serde(default)]
    roles: Vec<Role>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorBody {
    name: String,
    role: String,
    #[serde(default)]
    attributes: Attributes,
    #[serde(default)]
    evidence: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantAttestBody {
    role: String,
    attributes: Attributes,
    access_key: String,
    #[serde(default)]
    evidence: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttestBody {
    #[serde(default)]
    role: Option<String>,
    attributes: Attributes,
    #[serde(default)]
    evidence: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VoteBody {
    #[serde(default)]
    comment: String,
    /// A guardian's signed-note signature line over the approval statement.
    #[serde(default)]
    signature: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalKeyBody {
    vkey: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    justified: bool,
    #[serde(default)]
    comment: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainBody {
    #[serde(default)]
    access_key: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    operator: Option<String>,
    #[serde(default)]
    anonymous: bool,
    action: String,
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    source_ip: Option<std::net::IpAddr>,
    #[serde(default)]
    secure: bool,
}

fn parse_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    Admin::parse(body)
}

fn key_json(key: &vallum_core::iam::model::KeyView, secret: &str) -> Value {
    json!({
        "access_key": value(key),
        "secret_key": secret,
        "note": "the secret is shown once; it is stored sealed and cannot be read back",
    })
}

fn request_json(iam: &Iam, r: &vallum_core::iam::lockbox::AccessRequest) -> Value {
    let mut v = value(r);
    v["status"] = json!(r.status(iam.now()));
    v
}

fn guardian_of(p: &Principal) -> Result<String, Failure> {
    match p {
        Principal::User { tenant, name, .. } => Ok(format!("{tenant}/{name}")),
        _ => Err(Failure(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "only a tenant's guardians do this".into(),
        )),
    }
}

fn operator_of(p: &Principal) -> Result<&str, Failure> {
    match p {
        Principal::Operator { name } => Ok(name),
        _ => Err(Failure(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "only an operator, on its own credentials, does this".into(),
        )),
    }
}

/// Serves the identity and access routes (already authorized).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn route(
    ctx: &RequestContext,
    iam: &Iam,
    p: &Principal,
    caller_key: &str,
    facts: &Facts,
    op: IamOp,
    body: &[u8],
) -> Result<Value, Failure> {
    use IamOp as I;
    match &op {
        I::ListTenants => Ok(json!({ "tenants": value(&iam.tenants().await?) })),
        I::CreateTenant => {
            let b: TenantBody = Admin::parse(body)?;
            let with_webhook = b.guardian_webhook.is_some();
            let (t, key, secret) = iam
                .create_tenant(ctx, &b.id, &b.display_name, b.guardian_webhook)
                .await?;
            let mut v = key_json(&key, &secret);
            v["tenant"] = value(&t);
            v["admin"] = json!(vallum_core::iam::FIRST_ADMIN);
            if with_webhook {
                v["webhook_secret"] = json!(iam.new_webhook_secret(ctx, &t.id).await?.as_str());
            }
            Ok(v)
        }
        I::GetTenant(t) => Ok(value(&iam.tenant(t).await?)),
        I::UpdateTenant(t) => {
            let b: TenantUpdate = Admin::parse(body)?;
            let new_webhook = matches!(b.guardian_webhook, Some(Some(_)));
            let mut v = value(
                &iam.update_tenant(ctx, t, b.display_name, b.guardian_webhook)
                    .await?,
            );
            // A webhook set (again) gets a fresh signing secret, shown once.
            if new_webhook {
                v["webhook_secret"] = json!(iam.new_webhook_secret(ctx, t).await?.as_str());
            }
            Ok(v)
        }
        I::RotateWebhookSecret(t) => {
            Ok(json!({ "webhook_secret": iam.new_webhook_secret(ctx, t).await?.as_str() }))
        }
        I::ListAttestations(t) => Ok(json!({ "attestations": value(&iam.attestations(t).await?) })),
        I::AttestForTenant(t, op) => {
            let b: TenantAttestBody = Admin::parse(body)?;
            let spec = vallum_core::iam::AttestationSpec {
                tenant: (*t).to_owned(),
                operator: (*op).to_owned(),
                role: b.role,
                attributes: b.attributes,
                access_key: b.access_key,
                evidence: b.evidence,
            };
            Ok(value(
                &iam.attest_for_tenant(ctx, spec, &guardian_of(p)?).await?,
            ))
        }
        I::WithdrawAttestation(t, op) => {
            iam.withdraw_attestation(ctx, t, op, &guardian_of(p)?)
                .await?;
            Ok(json!({ "withdrawn": op }))
        }
        I::DeleteTenant(t) => {
            iam.delete_tenant(ctx, t).await?;
            Ok(json!({ "deleted": t }))
        }
        I::DisableTenant(t) => Ok(value(&iam.set_tenant_state(ctx, t, State::Disabled).await?)),
        I::EnableTenant(t) => Ok(value(&iam.set_tenant_state(ctx, t, State::Active).await?)),
        I::ListUsers(t) => Ok(json!({ "users": value(&iam.users(t).await?) })),
        I::CreateUser(t) => {
            let b: UserBody = Admin::parse(body)?;
            Ok(value(&iam.create_user(ctx, t, &b.name, b.roles).await?))
        }
        I::GetUser(t, u) => {
            let user = iam.user(t, u).await?;
            let keys = iam
                .keys_of(&Owner::User {
                    tenant: (*t).to_owned(),
                    name: (*u).to_owned(),
                })
                .await?;
            Ok(json!({ "user": value(&user), "access_keys": value(&keys) }))
        }
        I::DeleteUser(t, u) => {
            iam.delete_user(ctx, t, u).await?;
            Ok(json!({ "deleted": format!("{t}/{u}") }))
        }
        I::DisableUser(t, u) => Ok(value(
            &iam.set_user_state(ctx, t, u, State::Disabled).await?,
        )),
        I::EnableUser(t, u) => Ok(value(&iam.set_user_state(ctx, t, u, State::Active).await?)),
        I::GetUserPolicy(t, u) => {
            let user = iam.user(t, u).await?;
            user.policy.ok_or_else(|| {
                Failure(
                    StatusCode::NOT_FOUND,
                    "NoSuchEntity",
                    format!("user {t}/{u} has no identity policy"),
                )
            })
        }
        I::PutUserPolicy(t, u) => {
            let doc = vallum_core::iam::policy::parse_document(body)?;
            Ok(value(&iam.set_user_policy(ctx, t, u, Some(doc)).await?))
        }
        I::DeleteUserPolicy(t, u) => Ok(value(&iam.set_user_policy(ctx, t, u, None).await?)),
        I::ListUserKeys(t, u) => {
            let keys = iam
                .keys_of(&Owner::User {
                    tenant: (*t).to_owned(),
                    name: (*u).to_owned(),
                })
                .await?;
            Ok(json!({ "access_keys": value(&keys) }))
        }
        I::CreateUserKey(t, u) => {
            let (key, secret) = iam
                .create_key(
                    ctx,
                    Owner::User {
                        tenant: (*t).to_owned(),
                        name: (*u).to_owned(),
                    },
                )
                .await?;
            Ok(key_json(&key, &secret))
        }
        I::GetCharter(t) => {
            let c = iam.charter(t).await?;
            Ok(json!({
                "active": value(&c.active()),
                "versions": value(&c.versions),
            }))
        }
        I::PutCharter(t) => {
            let doc: CharterDoc = Admin::parse(body)?;
            let v = iam.propose_charter(ctx, t, doc).await?;
            let needed = iam.charter(t).await?.signatures_needed(&v.doc);
            Ok(json!({ "proposed": value(&v), "signatures_needed": needed }))
        }
        I::SignCharter(t, v) => {
            let version: u32 = v.parse().map_err(|_| {
                Failure(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequest",
                    format!("{v:?} is not a charter version"),
                )
            })?;
            let b: VoteBody = parse_body(body)?;
            Ok(value(
                &iam.sign_charter(ctx, t, version, &guardian_of(p)?, &b.comment)
                    .await?,
            ))
        }
        I::GetAccessKey(id) => Ok(value(&iam.key(id).await?)),
        I::DeleteAccessKey(id) => {
            iam.delete_key(ctx, id).await?;
            Ok(json!({ "deleted": id }))
        }
        I::DisableAccessKey(id) => Ok(value(&iam.set_key_state(ctx, id, State::Disabled).await?)),
        I::EnableAccessKey(id) => Ok(value(&iam.set_key_state(ctx, id, State::Active).await?)),
        I::RotateAccessKey(id) => {
            let (key, secret) = iam.rotate_key(ctx, id).await?;
            Ok(key_json(&key, &secret))
        }
        I::ListOperators => Ok(json!({ "operators": value(&iam.operators().await?) })),
        I::CreateOperator => {
            let b: OperatorBody = Admin::parse(body)?;
            Ok(value(
                &iam.create_operator(ctx, &b.name, &b.role, b.attributes, &b.evidence)
                    .await?,
            ))
        }
        I::GetOperator(n) => {
            let op = iam.operator(n).await?;
            let keys = iam
                .keys_of(&Owner::Operator {
                    name: (*n).to_owned(),
                })
                .await?;
            Ok(json!({ "operator": value(&op), "access_keys": value(&keys) }))
        }
        I::DeleteOperator(n) => {
            iam.delete_operator(ctx, n).await?;
            Ok(json!({ "deleted": n }))
        }
        I::AttestOperator(n) => {
            let b: AttestBody = Admin::parse(body)?;
            Ok(value(
                &iam.attest_operator(ctx, n, b.role, b.attributes, &b.evidence)
                    .await?,
            ))
        }
        I::DisableOperator(n) => Ok(value(
            &iam.set_operator_state(ctx, n, State::Disabled).await?,
        )),
        I::EnableOperator(n) => Ok(value(&iam.set_operator_state(ctx, n, State::Active).await?)),
        I::CreateOperatorKey(n) => {
            let (key, secret) = iam
                .create_key(
                    ctx,
                    Owner::Operator {
                        name: (*n).to_owned(),
                    },
                )
                .await?;
            Ok(key_json(&key, &secret))
        }
        I::ListOperatorKeys(n) => {
            let keys = iam
                .keys_of(&Owner::Operator {
                    name: (*n).to_owned(),
                })
                .await?;
            Ok(json!({ "access_keys": value(&keys) }))
        }
        I::ListRequests => {
            let list = match p {
                Principal::Operator { name } => iam.requests(None, Some(name)).await?,
                _ => iam.requests(Some(&own_tenant(p)?), None).await?,
            };
            let list: Vec<Value> = list.iter().map(|r| request_json(iam, r)).collect();
            Ok(json!({ "requests": list }))
        }
        I::RequestAccess => {
            let spec: RequestSpec = Admin::parse(body)?;
            Ok(request_json(
                iam,
                &iam.request_access(ctx, operator_of(p)?, caller_key, spec)
                    .await?,
            ))
        }
        I::BreakGlass => {
            let spec: RequestSpec = Admin::parse(body)?;
            Ok(request_json(
                iam,
                &iam.break_glass(ctx, operator_of(p)?, caller_key, spec)
                    .await?,
            ))
        }
        I::GetRequest(id) => {
            let r = iam.request(id).await?;
            if let Principal::Operator { name } = p
                && *name != r.operator
            {
                return Err(Failure(
                    StatusCode::FORBIDDEN,
                    "AccessDenied",
                    format!("request {id} was filed by another operator"),
                ));
            }
            Ok(request_json(iam, &r))
        }
        I::Approve(id) => {
            let b: VoteBody = parse_body(body)?;
            Ok(request_json(
                iam,
                &iam.approve(
                    ctx,
                    id,
                    &guardian_of(p)?,
                    &b.comment,
                    b.signature.as_deref(),
                )
                .await?,
            ))
        }
        I::ApprovalStatement(id) => {
            let r = iam.request(id).await?;
            Ok(json!({ "statement": Iam::approval_statement(&r) }))
        }
        I::SetApprovalKey(t, u) => {
            // Only the guardian itself: the key is what proves it approved.
            if guardian_of(p)? != format!("{t}/{u}") {
                return Err(Failure(
                    StatusCode::FORBIDDEN,
                    "AccessDenied",
                    "a guardian registers its own approval key only".into(),
                ));
            }
            let b: ApprovalKeyBody = Admin::parse(body)?;
            Ok(value(&iam.set_approval_key(ctx, t, u, &b.vkey).await?))
        }
        I::Deny(id) => {
            let b: VoteBody = parse_body(body)?;
            Ok(request_json(
                iam,
                &iam.deny(ctx, id, &guardian_of(p)?, &b.comment).await?,
            ))
        }
        I::Revoke(id) => {
            let b: VoteBody = parse_body(body)?;
            if let Principal::Operator { name } = p {
                let r = iam.request(id).await?;
                if *name != r.operator {
                    return Err(Failure(
                        StatusCode::FORBIDDEN,
                        "AccessDenied",
                        format!("request {id} was filed by another operator"),
                    ));
                }
            }
            Ok(request_json(
                iam,
                &iam.revoke(ctx, id, &p.actor(), &b.comment).await?,
            ))
        }
        I::ClaimCredential(id) => {
            let (key, secret, r) = iam.claim(ctx, id, operator_of(p)?, caller_key).await?;
            let mut v = key_json(&key, &secret);
            v["request"] = request_json(iam, &r);
            v["expires_ms"] = json!(r.expires_ms);
            Ok(v)
        }
        I::Review(id) => {
            let b: ReviewBody = Admin::parse(body)?;
            Ok(request_json(
                iam,
                &iam.review(ctx, id, &guardian_of(p)?, b.justified, &b.comment)
                    .await?,
            ))
        }
        I::Explain => explain(iam, p, facts, body).await,
    }
}

/// `vallum authz explain`: the decision for a principal of the caller's tenant (root: also
/// operators), with every policy that decided it.
async fn explain(
    iam: &Iam,
    caller: &Principal,
    facts: &Facts,
    body: &[u8],
) -> Result<Value, Failure> {
    let b: ExplainBody = Admin::parse(body)?;
    let home = caller.namespace().unwrap_or("").to_owned();
    let forbidden = |m: &str| Failure(StatusCode::FORBIDDEN, "AccessDenied", m.to_owned());
    let principal = if let Some(ak) = &b.access_key {
        let (p, _) = iam.authenticate(ak).await?.ok_or_else(|| {
            Failure(
                StatusCode::NOT_FOUND,
                "NoSuchEntity",
                format!("no such access key {ak}"),
            )
        })?;
        if *caller != Principal::Root && p.home_tenant() != home {
            return Err(forbidden("that key belongs to another tenant"));
        }
        p
    } else if let Some(u) = &b.user {
        let user = iam.user(&home, u).await?;
        Principal::User {
            tenant: home.clone(),
            name: user.name.clone(),
            admin: user.has(Role::Admin),
            guardian: user.has(Role::Guardian),
        }
    } else if let Some(o) = &b.operator {
        if *caller != Principal::Root {
            return Err(forbidden(
                "only the root credentials explain operators' decisions",
            ));
        }
        iam.operator(o).await?;
        Principal::Operator { name: o.clone() }
    } else if b.anonymous {
        Principal::Anonymous
    } else {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "name the principal: access_key, user, operator or anonymous".into(),
        ));
    };
    if !vallum_core::iam::actions::is_known(&b.action) {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            format!("{} is not an action the decision point knows", b.action),
        ));
    }
    let resource = match &b.bucket {
        Some(wire) => {
            let (t, bucket) = resolve_bucket(&principal, wire)?;
            if *caller != Principal::Root && t != home {
                return Err(forbidden("that bucket belongs to another tenant"));
            }
            match &b.key {
                Some(k) => Resource::Object {
                    tenant: t,
                    bucket,
                    key: k.clone(),
                },
                None => Resource::Bucket { tenant: t, bucket },
            }
        }
        None => Resource::Tenant(principal.namespace().unwrap_or(&home).to_owned()),
    };
    let f = Facts {
        secure: b.secure,
        source_ip: b.source_ip,
        prefix: b.prefix.clone(),
        now_ms: facts.now_ms,
        ..Facts::default()
    };
    let d = iam.authorize(&principal, &b.action, &resource, &f);
    // The same case by Cedar's own evaluator: the reference the compiled evaluation is held to.
    let reference = iam.authorize_with_cedar(&principal, &b.action, &resource, &f);
    let same_policies = |a: &Decision, b: &Decision| {
        let key = |d: &Decision| {
            let mut k: Vec<(String, String)> = d
                .reasons
                .iter()
                .map(|r| (r.source.clone(), r.policy.clone()))
                .collect();
            k.sort();
            k
        };
        key(a) == key(b)
    };
    let agrees = verdict(&d) == verdict(&reference)
        && same_policies(&d, &reference)
        && d.errors.is_empty() == reference.errors.is_empty();
    if !agrees {
        tracing::error!(
            principal = %principal.actor(),
            action = %b.action,
            resource = ?resource,
            compiled = verdict(&d),
            cedar = verdict(&reference),
            "the compiled policy evaluation and Cedar disagree"
        );
    }
    Ok(json!({
        "principal": principal.actor(),
        "action": b.action,
        "resource": format!("{resource:?}"),
        "decision": verdict(&d),
        "reasons": value(&d.reasons),
        "errors": d.errors,
        "cedar": {
            "decision": verdict(&reference),
            "reasons": value(&reference.reasons),
            "errors": reference.errors,
            "agrees": agrees,
        },
    }))
}

/// `allow`, `explicit_deny` or `implicit_deny`.
fn verdict(d: &Decision) -> &'static str {
    if d.allowed {
        "allow"
    } else if d.explicit_deny {
        "explicit_deny"
    } else {
        "implicit_deny"
    }
}
