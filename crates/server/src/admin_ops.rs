//! The admin API's operation table: every admin route is one variant of [`AdminOp`], parsed
//! once from the method and path. The table carries both halves of a route:
//!
//! - [`AdminOp::action`] is the IAM action the decision point judges it by, and
//!   [`AdminOp::target`] the resource: exhaustive matches, so an operation without an action
//!   does not compile (no silent fallback to a deny or to an allow);
//! - the handler of each family (`Admin::serve`, `admin_iam::route`, `admin_residency::route`
//!   and `manage`) matches its own sub-enum exhaustively, so an operation without a handler
//!   does not compile either.
//!
//! A path the table does not know is `NoSuchResource`; a known path with a method it does not
//! take is `MethodNotAllowed`. Both are answered before authentication's decision, as they
//! disclose nothing but the API's shape.

use http::{Method, StatusCode};
use serde_json::Value;
use vallum_core::iam::Iam;
use vallum_core::iam::authz::{Principal, Resource};
use vallum_core::iam::lockbox::RequestSpec;
use vallum_core::iam::model::{DEFAULT_TENANT, Owner, internal_bucket};

use crate::admin::{Admin, Failure, not_allowed};

/// One admin operation, with the path parameters it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AdminOp {
    /// `GET jobs`
    Jobs,
    /// `POST log/bundle`
    LogBundle,
    /// `GET compliance`
    PlatformCompliance,
    /// `GET buckets/<b>/compliance`
    BucketCompliance(String),
    Key(KeyOp),
    Residency(ResidencyOp),
    Site(SiteOp),
    Repair(RepairOp),
    Iam(IamOp),
}

/// Key administration (`keys…`), served by `Admin::serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyOp {
    List,
    Create,
    Describe(String),
    Rotate(String),
    Rewrap(String),
    RewrapProgress(String),
    Disable(String),
    /// `enable` and `cancel-deletion`.
    Enable(String),
    ScheduleDeletion(String),
    Destroy(String),
}

/// Residency queries and boundary policies, served by `admin_residency::route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResidencyOp {
    ListSites,
    GetSite(String),
    ExposureRules,
    GetBoundary(String),
    PutBoundary(String),
    DeleteBoundary(String),
    BoundaryHistory(String),
    /// Bucket, key.
    Placement(String, String),
}

/// Site changes at run time, served by `admin_residency::manage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SiteOp {
    Add,
    Drain(String),
    Activate(String),
    Remove(String),
}

/// The replica repair (`repair`), served by `Admin::serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RepairOp {
    Progress,
    Start,
}

/// Identity and access, served by `admin_iam::route`. Pairs are (tenant, user), (tenant,
/// operator) or (tenant, charter version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IamOp {
    ListTenants,
    CreateTenant,
    GetTenant(String),
    UpdateTenant(String),
    DeleteTenant(String),
    DisableTenant(String),
    EnableTenant(String),
    ListUsers(String),
    CreateUser(String),
    GetUser(String, String),
    DeleteUser(String, String),
    DisableUser(String, String),
    EnableUser(String, String),
    SetApprovalKey(String, String),
    GetUserPolicy(String, String),
    PutUserPolicy(String, String),
    DeleteUserPolicy(String, String),
    ListUserKeys(String, String),
    CreateUserKey(String, String),
    ListAttestations(String),
    AttestForTenant(String, String),
    WithdrawAttestation(String, String),
    RotateWebhookSecret(String),
    GetCharter(String),
    PutCharter(String),
    SignCharter(String, String),
    GetAccessKey(String),
    DeleteAccessKey(String),
    DisableAccessKey(String),
    EnableAccessKey(String),
    RotateAccessKey(String),
    ListOperators,
    CreateOperator,
    GetOperator(String),
    DeleteOperator(String),
    AttestOperator(String),
    DisableOperator(String),
    EnableOperator(String),
    CreateOperatorKey(String),
    ListOperatorKeys(String),
    ListRequests,
    RequestAccess,
    BreakGlass,
    GetRequest(String),
    ApprovalStatement(String),
    Approve(String),
    Deny(String),
    Revoke(String),
    ClaimCredential(String),
    Review(String),
    Explain,
}

/// What the decision point judges an operation by.
pub(crate) struct Target {
    pub(crate) action: &'static str,
    pub(crate) resource: Resource,
}

/// The methods [`AdminOp::parse`] tries to tell `MethodNotAllowed` from `NoSuchResource`.
const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::PUT, Method::DELETE];

impl AdminOp {
    /// The operation of `method` on the (percent-decoded) path segments `seg`.
    pub(crate) fn parse(method: &Method, seg: &[&str]) -> Result<AdminOp, Failure> {
        if let Some(op) = Self::route(method, seg) {
            return Ok(op);
        }
        if METHODS.iter().any(|m| Self::route(m, seg).is_some()) {
            Err(not_allowed(method))
        } else {
            Err(Failure(
                StatusCode::NOT_FOUND,
                "NoSuchResource",
                "no such admin resource".into(),
            ))
        }
    }

    /// The table of routes.
    fn route(method: &Method, seg: &[&str]) -> Option<AdminOp> {
        use AdminOp as A;
        use IamOp as I;
        use KeyOp as K;
        use Method as M;
        use ResidencyOp as R;
        use SiteOp as S;
        let s = |x: &&str| (*x).to_owned();
        let op = match (method, seg) {
            (&M::GET, ["jobs"]) => A::Jobs,
            (&M::POST, ["log", "bundle"]) => A::LogBundle,
            (&M::GET, ["compliance"]) => A::PlatformCompliance,
            (&M::GET, ["buckets", b, "compliance"]) => A::BucketCompliance(s(b)),

            (&M::GET, ["keys"]) => A::Key(K::List),
            (&M::POST, ["keys"]) => A::Key(K::Create),
            (&M::GET, ["keys", id]) => A::Key(K::Describe(s(id))),
            (&M::POST, ["keys", id, "rotate"]) => A::Key(K::Rotate(s(id))),
            (&M::POST, ["keys", id, "rewrap"]) => A::Key(K::Rewrap(s(id))),
            (&M::GET, ["keys", id, "rewrap"]) => A::Key(K::RewrapProgress(s(id))),
            (&M::POST, ["keys", id, "disable"]) => A::Key(K::Disable(s(id))),
            (&M::POST, ["keys", id, "enable" | "cancel-deletion"]) => A::Key(K::Enable(s(id))),
            (&M::POST, ["keys", id, "schedule-deletion"]) => A::Key(K::ScheduleDeletion(s(id))),
            (&M::POST, ["keys", id, "destroy"]) => A::Key(K::Destroy(s(id))),

            (&M::GET, ["sites"]) => A::Residency(R::ListSites),
            (&M::GET, ["sites", id]) => A::Residency(R::GetSite(s(id))),
            (&M::GET, ["exposure-rules"]) => A::Residency(R::ExposureRules),
            (&M::GET, ["buckets", b, "boundary"]) => A::Residency(R::GetBoundary(s(b))),
            (&M::PUT, ["buckets", b, "boundary"]) => A::Residency(R::PutBoundary(s(b))),
            (&M::DELETE, ["buckets", b, "boundary"]) => A::Residency(R::DeleteBoundary(s(b))),
            (&M::GET, ["buckets", b, "boundary", "history"]) => {
                A::Residency(R::BoundaryHistory(s(b)))
            }
            (&M::GET, ["buckets", b, "placement", key]) => A::Residency(R::Placement(s(b), s(key))),

            (&M::POST, ["sites"]) => A::Site(S::Add),
            (&M::POST, ["sites", id, "drain"]) => A::Site(S::Drain(s(id))),
            (&M::POST, ["sites", id, "activate"]) => A::Site(S::Activate(s(id))),
            (&M::DELETE, ["sites", id]) => A::Site(S::Remove(s(id))),
            (&M::GET, ["repair"]) => A::Repair(RepairOp::Progress),
            (&M::POST, ["repair"]) => A::Repair(RepairOp::Start),

            (&M::GET, ["tenants"]) => A::Iam(I::ListTenants),
            (&M::POST, ["tenants"]) => A::Iam(I::CreateTenant),
            (&M::GET, ["tenants", t]) => A::Iam(I::GetTenant(s(t))),
            (&M::PUT, ["tenants", t]) => A::Iam(I::UpdateTenant(s(t))),
            (&M::DELETE, ["tenants", t]) => A::Iam(I::DeleteTenant(s(t))),
            (&M::POST, ["tenants", t, "disable"]) => A::Iam(I::DisableTenant(s(t))),
            (&M::POST, ["tenants", t, "enable"]) => A::Iam(I::EnableTenant(s(t))),
            (&M::GET, ["tenants", t, "users"]) => A::Iam(I::ListUsers(s(t))),
            (&M::POST, ["tenants", t, "users"]) => A::Iam(I::CreateUser(s(t))),
            (&M::GET, ["tenants", t, "users", u]) => A::Iam(I::GetUser(s(t), s(u))),
            (&M::DELETE, ["tenants", t, "users", u]) => A::Iam(I::DeleteUser(s(t), s(u))),
            (&M::POST, ["tenants", t, "users", u, "disable"]) => A::Iam(I::DisableUser(s(t), s(u))),
            (&M::POST, ["tenants", t, "users", u, "enable"]) => A::Iam(I::EnableUser(s(t), s(u))),
            (&M::PUT, ["tenants", t, "users", u, "approval-key"]) => {
                A::Iam(I::SetApprovalKey(s(t), s(u)))
            }
            (&M::GET, ["tenants", t, "users", u, "policy"]) => A::Iam(I::GetUserPolicy(s(t), s(u))),
            (&M::PUT, ["tenants", t, "users", u, "policy"]) => A::Iam(I::PutUserPolicy(s(t), s(u))),
            (&M::DELETE, ["tenants", t, "users", u, "policy"]) => {
                A::Iam(I::DeleteUserPolicy(s(t), s(u)))
            }
            (&M::GET, ["tenants", t, "users", u, "access-keys"]) => {
                A::Iam(I::ListUserKeys(s(t), s(u)))
            }
            (&M::POST, ["tenants", t, "users", u, "access-keys"]) => {
                A::Iam(I::CreateUserKey(s(t), s(u)))
            }
            (&M::GET, ["tenants", t, "attestations"]) => A::Iam(I::ListAttestations(s(t))),
            (&M::PUT, ["tenants", t, "attestations", op]) => {
                A::Iam(I::AttestForTenant(s(t), s(op)))
            }
            (&M::DELETE, ["tenants", t, "attestations", op]) => {
                A::Iam(I::WithdrawAttestation(s(t), s(op)))
            }
            (&M::POST, ["tenants", t, "webhook-secret"]) => A::Iam(I::RotateWebhookSecret(s(t))),
            (&M::GET, ["tenants", t, "charter"]) => A::Iam(I::GetCharter(s(t))),
            (&M::PUT, ["tenants", t, "charter"]) => A::Iam(I::PutCharter(s(t))),
            (&M::POST, ["tenants", t, "charter", v, "sign"]) => A::Iam(I::SignCharter(s(t), s(v))),

            (&M::GET, ["access-keys", id]) => A::Iam(I::GetAccessKey(s(id))),
            (&M::DELETE, ["access-keys", id]) => A::Iam(I::DeleteAccessKey(s(id))),
            (&M::POST, ["access-keys", id, "disable"]) => A::Iam(I::DisableAccessKey(s(id))),
            (&M::POST, ["access-keys", id, "enable"]) => A::Iam(I::EnableAccessKey(s(id))),
            (&M::POST, ["access-keys", id, "rotate"]) => A::Iam(I::RotateAccessKey(s(id))),

            (&M::GET, ["operators"]) => A::Iam(I::ListOperators),
            (&M::POST, ["operators"]) => A::Iam(I::CreateOperator),
            (&M::GET, ["operators", n]) => A::Iam(I::GetOperator(s(n))),
            (&M::DELETE, ["operators", n]) => A::Iam(I::DeleteOperator(s(n))),
            (&M::POST, ["operators", n, "attest"]) => A::Iam(I::AttestOperator(s(n))),
            (&M::POST, ["operators", n, "disable"]) => A::Iam(I::DisableOperator(s(n))),
            (&M::POST, ["operators", n, "enable"]) => A::Iam(I::EnableOperator(s(n))),
            (&M::POST, ["operators", n, "access-keys"]) => A::Iam(I::CreateOperatorKey(s(n))),
            (&M::GET, ["operators", n, "access-keys"]) => A::Iam(I::ListOperatorKeys(s(n))),

            (&M::GET, ["lockbox"]) => A::Iam(I::ListRequests),
            (&M::POST, ["lockbox"]) => A::Iam(I::RequestAccess),
            (&M::POST, ["lockbox", "break-glass"]) => A::Iam(I::BreakGlass),
            (&M::GET, ["lockbox", id]) => A::Iam(I::GetRequest(s(id))),
            (&M::GET, ["lockbox", id, "statement"]) => A::Iam(I::ApprovalStatement(s(id))),
            (&M::POST, ["lockbox", id, "approve"]) => A::Iam(I::Approve(s(id))),
            (&M::POST, ["lockbox", id, "deny"]) => A::Iam(I::Deny(s(id))),
            (&M::POST, ["lockbox", id, "revoke"]) => A::Iam(I::Revoke(s(id))),
            (&M::POST, ["lockbox", id, "credential"]) => A::Iam(I::ClaimCredential(s(id))),
            (&M::POST, ["lockbox", id, "review"]) => A::Iam(I::Review(s(id))),
            (&M::POST, ["authz", "explain"]) => A::Iam(I::Explain),
            _ => return None,
        };
        Some(op)
    }

    /// The IAM action the decision point judges this operation by. (An access key owned by an
    /// operator is managed under `vallum:CreateOperatorKey` whatever is done to it: see
    /// [`AdminOp::target`].)
    pub(crate) fn action(&self) -> &'static str {
        use AdminOp as A;
        match self {
            A::Jobs => "vallum:GetJobs",
            A::LogBundle => "vallum:GetLogBundle",
            A::PlatformCompliance => "vallum:GetPlatformCompliance",
            A::BucketCompliance(_) => "vallum:GetCompliance",
            A::Key(k) => match k {
                KeyOp::List => "kms:ListKeys",
                KeyOp::Create => "kms:CreateKey",
                KeyOp::Describe(_) | KeyOp::RewrapProgress(_) => "kms:DescribeKey",
                KeyOp::Rotate(_) | KeyOp::Rewrap(_) => "kms:RotateKey",
                KeyOp::Disable(_) => "kms:DisableKey",
                KeyOp::Enable(_) => "kms:EnableKey",
                KeyOp::ScheduleDeletion(_) => "kms:ScheduleKeyDeletion",
                KeyOp::Destroy(_) => "kms:DestroyKey",
            },
            A::Residency(r) => match r {
                ResidencyOp::ListSites | ResidencyOp::GetSite(_) => "vallum:GetSites",
                ResidencyOp::ExposureRules => "vallum:GetExposureRules",
                ResidencyOp::GetBoundary(_) | ResidencyOp::BoundaryHistory(_) => {
                    "vallum:GetBoundaryPolicy"
                }
                ResidencyOp::PutBoundary(_) => "vallum:PutBoundaryPolicy",
                ResidencyOp::DeleteBoundary(_) => "vallum:DeleteBoundaryPolicy",
                ResidencyOp::Placement(..) => "vallum:GetPlacement",
            },
            A::Site(_) => "vallum:ManageSites",
            A::Repair(RepairOp::Progress) => "vallum:GetRepair",
            A::Repair(RepairOp::Start) => "vallum:StartRepair",
            A::Iam(i) => i.action(),
        }
    }

    /// The action and resource the decision point judges this operation by, for caller `p`.
    /// A bucket operation is resolved in the caller's tenant and rewritten to run on the
    /// bucket's internal (tenant-qualified) name.
    pub(crate) async fn target(
        &mut self,
        iam: &Iam,
        p: &Principal,
        body: &[u8],
    ) -> Result<Target, Failure> {
        use ResidencyOp as R;
        let action = self.action();
        let resource = match self {
            AdminOp::BucketCompliance(b)
            | AdminOp::Residency(
                R::GetBoundary(b)
                | R::PutBoundary(b)
                | R::DeleteBoundary(b)
                | R::BoundaryHistory(b)
                | R::Placement(b, _),
            ) => {
                let (tenant, local) = resolve_bucket(p, b)?;
                *b = internal_bucket(&tenant, &local);
                Resource::Bucket {
                    tenant,
                    bucket: local,
                }
            }
            AdminOp::Key(_) => Resource::Tenant(DEFAULT_TENANT.to_owned()),
            AdminOp::LogBundle => Resource::Tenant(own_tenant(p)?),
            AdminOp::Jobs
            | AdminOp::PlatformCompliance
            | AdminOp::Residency(R::ListSites | R::GetSite(_) | R::ExposureRules)
            | AdminOp::Site(_)
            | AdminOp::Repair(_) => Resource::Platform,
            AdminOp::Iam(i) => return i.target(iam, p, body).await,
        };
        Ok(Target { action, resource })
    }
}

impl IamOp {
    fn action(&self) -> &'static str {
        use IamOp as I;
        match self {
            I::ListTenants => "vallum:ListTenants",
            I::CreateTenant => "vallum:CreateTenant",
            I::GetTenant(_) => "vallum:GetTenant",
            I::UpdateTenant(_) => "vallum:UpdateTenant",
            I::DeleteTenant(_) => "vallum:DeleteTenant",
            I::DisableTenant(_) => "vallum:DisableTenant",
            I::EnableTenant(_) => "vallum:EnableTenant",
            I::ListUsers(_) => "vallum:ListUsers",
            I::CreateUser(_) => "vallum:CreateUser",
            I::GetUser(..) => "vallum:GetUser",
            I::DeleteUser(..) => "vallum:DeleteUser",
            I::DisableUser(..) => "vallum:DisableUser",
            I::EnableUser(..) => "vallum:EnableUser",
            I::SetApprovalKey(..) => "vallum:SetApprovalKey",
            I::GetUserPolicy(..) => "vallum:GetUserPolicy",
            I::PutUserPolicy(..) => "vallum:PutUserPolicy",
            I::DeleteUserPolicy(..) => "vallum:DeleteUserPolicy",
            I::ListUserKeys(..) | I::GetAccessKey(_) => "vallum:ListAccessKeys",
            I::CreateUserKey(..) => "vallum:CreateAccessKey",
            I::ListAttestations(_) => "vallum:ListAttestations",
            I::AttestForTenant(..) => "vallum:AttestOperatorForTenant",
            I::WithdrawAttestation(..) => "vallum:WithdrawAttestation",
            I::RotateWebhookSecret(_) => "vallum:RotateWebhookSecret",
            I::GetCharter(_) => "vallum:GetCharter",
            I::PutCharter(_) => "vallum:PutCharter",
            I::SignCharter(..) => "vallum:SignCharter",
            I::DeleteAccessKey(_) => "vallum:DeleteAccessKey",
            I::DisableAccessKey(_) => "vallum:DisableAccessKey",
            I::EnableAccessKey(_) => "vallum:EnableAccessKey",
            I::RotateAccessKey(_) => "vallum:RotateAccessKey",
            I::ListOperators => "vallum:ListOperators",
            I::CreateOperator => "vallum:CreateOperator",
            I::GetOperator(_) => "vallum:GetOperator",
            I::DeleteOperator(_) => "vallum:DeleteOperator",
            I::AttestOperator(_) => "vallum:AttestOperator",
            I::DisableOperator(_) => "vallum:DisableOperator",
            I::EnableOperator(_) => "vallum:EnableOperator",
            I::CreateOperatorKey(_) | I::ListOperatorKeys(_) => "vallum:CreateOperatorKey",
            I::ListRequests => "vallum:ListAccessRequests",
            I::RequestAccess => "vallum:RequestAccess",
            I::BreakGlass => "vallum:BreakGlass",
            I::GetRequest(_) | I::ApprovalStatement(_) => "vallum:GetAccessRequest",
            I::Approve(_) => "vallum:ApproveAccessRequest",
            I::Deny(_) => "vallum:DenyAccessRequest",
            I::Revoke(_) => "vallum:RevokeGrant",
            I::ClaimCredential(_) => "vallum:ClaimGrantCredential",
            I::Review(_) => "vallum:ReviewBreakGlass",
            I::Explain => "vallum:ExplainAuthorization",
        }
    }

    async fn target(&self, iam: &Iam, p: &Principal, body: &[u8]) -> Result<Target, Failure> {
        use IamOp as I;
        let platform = Resource::Platform;
        let tenant = |t: &str| Resource::Tenant(t.to_owned());
        let mut action = self.action();
        let resource = match self {
            I::ListTenants
            | I::CreateTenant
            | I::DeleteTenant(_)
            | I::DisableTenant(_)
            | I::EnableTenant(_)
            | I::ListOperators
            | I::CreateOperator
            | I::GetOperator(_)
            | I::DeleteOperator(_)
            | I::AttestOperator(_)
            | I::DisableOperator(_)
            | I::EnableOperator(_)
            | I::CreateOperatorKey(_)
            | I::ListOperatorKeys(_) => platform,
            I::GetTenant(t)
            | I::UpdateTenant(t)
            | I::ListUsers(t)
            | I::CreateUser(t)
            | I::GetUser(t, _)
            | I::DeleteUser(t, _)
            | I::DisableUser(t, _)
            | I::EnableUser(t, _)
            | I::SetApprovalKey(t, _)
            | I::GetUserPolicy(t, _)
            | I::PutUserPolicy(t, _)
            | I::DeleteUserPolicy(t, _)
            | I::ListUserKeys(t, _)
            | I::CreateUserKey(t, _)
            | I::ListAttestations(t)
            | I::AttestForTenant(t, _)
            | I::WithdrawAttestation(t, _)
            | I::RotateWebhookSecret(t)
            | I::GetCharter(t)
            | I::PutCharter(t)
            | I::SignCharter(t, _) => tenant(t),
            I::GetAccessKey(id)
            | I::DeleteAccessKey(id)
            | I::DisableAccessKey(id)
            | I::EnableAccessKey(id)
            | I::RotateAccessKey(id) => match iam.key(id).await?.owner {
                Owner::User { tenant: t, .. } => tenant(&t),
                Owner::Operator { .. } => {
                    action = "vallum:CreateOperatorKey";
                    platform
                }
                _ => platform,
            },
            I::ListRequests => match p {
                Principal::Operator { .. } => platform,
                _ => tenant(&own_tenant(p)?),
            },
            I::RequestAccess | I::BreakGlass => {
                let spec: RequestSpec = Admin::parse(body)?;
                tenant(&spec.tenant)
            }
            I::GetRequest(id)
            | I::ApprovalStatement(id)
            | I::Approve(id)
            | I::Deny(id)
            | I::Revoke(id)
            | I::ClaimCredential(id)
            | I::Review(id) => tenant(&iam.request(id).await?.spec.tenant),
            I::Explain => match p {
                Principal::Root => platform_or_default(body),
                _ => tenant(&own_tenant(p)?),
            },
        };
        Ok(Target { action, resource })
    }
}

pub(crate) fn resolve_bucket(p: &Principal, wire: &str) -> Result<(String, String), Failure> {
    crate::authz::resolve(p, wire).map_err(|e| {
        Failure(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            e.message().unwrap_or("Access Denied").to_owned(),
        )
    })
}

pub(crate) fn own_tenant(p: &Principal) -> Result<String, Failure> {
    p.namespace().map(str::to_owned).ok_or_else(|| {
        Failure(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "operators belong to no tenant".into(),
        )
    })
}

/// Root explains decisions of the default tenant and of operators (the platform).
fn platform_or_default(body: &[u8]) -> Resource {
    let asks_operator = serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.get("operator").is_some());
    if asks_operator {
        Resource::Platform
    } else {
        Resource::Tenant(DEFAULT_TENANT.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, path: &str) -> Result<AdminOp, &'static str> {
        let seg: Vec<&str> = path.split('/').collect();
        AdminOp::parse(&method, &seg).map_err(|f| f.1)
    }

    #[test]
    fn routes_parse_to_their_operation() {
        assert_eq!(
            parse(Method::POST, "keys/k1/cancel-deletion"),
            Ok(AdminOp::Key(KeyOp::Enable("k1".into())))
        );
        assert_eq!(
            parse(Method::GET, "buckets/b/placement/a b"),
            Ok(AdminOp::Residency(ResidencyOp::Placement(
                "b".into(),
                "a b".into()
            )))
        );
        assert_eq!(
            parse(Method::POST, "lockbox/break-glass"),
            Ok(AdminOp::Iam(IamOp::BreakGlass))
        );
        assert_eq!(
            parse(Method::POST, "lockbox/r1/approve"),
            Ok(AdminOp::Iam(IamOp::Approve("r1".into())))
        );
    }

    #[test]
    fn unknown_paths_and_methods_are_told_apart() {
        assert_eq!(parse(Method::PATCH, "tenants"), Err("MethodNotAllowed"));
        assert_eq!(parse(Method::PUT, "repair"), Err("MethodNotAllowed"));
        assert_eq!(
            parse(Method::GET, "tenants/t/nothing"),
            Err("NoSuchResource")
        );
        assert_eq!(parse(Method::GET, "nothing"), Err("NoSuchResource"));
        assert_eq!(parse(Method::GET, ""), Err("NoSuchResource"));
    }

    #[test]
    fn actions_are_distinct_where_operations_differ_in_power() {
        // Reading never shares an action with changing: a read-only policy stays read-only.
        let pairs = [
            (AdminOp::Key(KeyOp::List), AdminOp::Key(KeyOp::Create)),
            (
                AdminOp::Residency(ResidencyOp::GetBoundary("b".into())),
                AdminOp::Residency(ResidencyOp::PutBoundary("b".into())),
            ),
            (
                AdminOp::Repair(RepairOp::Progress),
                AdminOp::Repair(RepairOp::Start),
            ),
            (
                AdminOp::Iam(IamOp::GetRequest("r".into())),
                AdminOp::Iam(IamOp::Approve("r".into())),
            ),
        ];
        for (read, write) in pairs {
            assert_ne!(read.action(), write.action(), "{read:?} vs {write:?}");
        }
    }

    #[test]
    fn every_action_is_one_the_decision_point_knows() {
        // Every operation the table can produce names an action of the catalog, else the
        // decision point would deny it whatever the policies say.
        let methods = [Method::GET, Method::POST, Method::PUT, Method::DELETE];
        let paths = [
            "jobs",
            "log/bundle",
            "compliance",
            "buckets/b/compliance",
            "keys",
            "keys/k",
            "keys/k/rotate",
            "keys/k/rewrap",
            "keys/k/disable",
            "keys/k/enable",
            "keys/k/cancel-deletion",
            "keys/k/schedule-deletion",
            "keys/k/destroy",
            "sites",
            "sites/s",
            "sites/s/drain",
            "sites/s/activate",
            "exposure-rules",
            "repair",
            "buckets/b/boundary",
            "buckets/b/boundary/history",
            "buckets/b/placement/k",
            "tenants",
            "tenants/t",
            "tenants/t/disable",
            "tenants/t/enable",
            "tenants/t/users",
            "tenants/t/users/u",
            "tenants/t/users/u/disable",
            "tenants/t/users/u/enable",
            "tenants/t/users/u/approval-key",
            "tenants/t/users/u/policy",
            "tenants/t/users/u/access-keys",
            "tenants/t/attestations",
            "tenants/t/attestations/o",
            "tenants/t/webhook-secret",
            "tenants/t/charter",
            "tenants/t/charter/1/sign",
            "access-keys/a",
            "access-keys/a/disable",
            "access-keys/a/enable",
            "access-keys/a/rotate",
            "operators",
            "operators/o",
            "operators/o/attest",
            "operators/o/disable",
            "operators/o/enable",
            "operators/o/access-keys",
            "lockbox",
            "lockbox/break-glass",
            "lockbox/r",
            "lockbox/r/statement",
            "lockbox/r/approve",
            "lockbox/r/deny",
            "lockbox/r/revoke",
            "lockbox/r/credential",
            "lockbox/r/review",
            "authz/explain",
        ];
        let mut operations = 0;
        for path in paths {
            let seg: Vec<&str> = path.split('/').collect();
            let ops: Vec<AdminOp> = methods
                .iter()
                .filter_map(|m| AdminOp::route(m, &seg))
                .collect();
            assert!(!ops.is_empty(), "{path} routes nowhere");
            for op in ops {
                operations += 1;
                assert!(
                    vallum_core::iam::actions::is_known(op.action()),
                    "{op:?}: {} is not in the action catalog",
                    op.action()
                );
            }
        }
        assert!(operations >= 80, "only {operations} operations checked");
    }
}
