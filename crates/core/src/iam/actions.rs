//! The action catalog: every action the decision point knows, by IAM-style name. Policies may
//! only name actions from it (an `s3:Get*` pattern expands over it), so a typo is an error
//! instead of a statement that silently never applies.

/// S3 actions on customer data and bucket configuration.
pub const S3: &[&str] = &[
    "s3:AbortMultipartUpload",
    "s3:BypassGovernanceRetention",
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:DeleteObject",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectVersionTagging",
    "s3:GetBucketLocation",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketPolicy",
    "s3:GetBucketPolicyStatus",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketTagging",
    "s3:GetBucketVersioning",
    "s3:GetEncryptionConfiguration",
    "s3:GetLifecycleConfiguration",
    "s3:GetObject",
    "s3:GetObjectAttributes",
    "s3:GetObjectLegalHold",
    "s3:GetObjectRetention",
    "s3:GetObjectTagging",
    "s3:GetObjectVersion",
    "s3:GetObjectVersionTagging",
    "s3:ListAllMyBuckets",
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:ListBucketVersions",
    "s3:ListMultipartUploadParts",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketPolicy",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketTagging",
    "s3:PutBucketVersioning",
    "s3:PutEncryptionConfiguration",
    "s3:PutLifecycleConfiguration",
    "s3:PutObject",
    "s3:PutObjectLegalHold",
    "s3:PutObjectRetention",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
    // Features Vallum answers NotImplemented (or from defaults); named so policies and
    // clients probing them (s3cmd asks for ACLs, CORS, ...) get the real answer, not a denial.
    "s3:GetBucketAcl",
    "s3:PutBucketAcl",
    "s3:GetObjectAcl",
    "s3:PutObjectAcl",
    "s3:GetBucketCORS",
    "s3:PutBucketCORS",
    "s3:GetBucketWebsite",
    "s3:PutBucketWebsite",
    "s3:DeleteBucketWebsite",
    "s3:GetBucketLogging",
    "s3:PutBucketLogging",
    "s3:GetBucketNotification",
    "s3:PutBucketNotification",
    "s3:GetReplicationConfiguration",
    "s3:PutReplicationConfiguration",
    "s3:GetBucketRequestPayment",
    "s3:PutBucketRequestPayment",
    "s3:GetAccelerateConfiguration",
    "s3:PutAccelerateConfiguration",
    "s3:GetBucketOwnershipControls",
    "s3:PutBucketOwnershipControls",
    "s3:RestoreObject",
    // Any other S3 operation (analytics, inventory, metrics configurations, ...).
    "s3:OtherOperation",
];

/// Platform administration: the root credentials only.
pub const PLATFORM: &[&str] = &[
    "vallum:CreateTenant",
    "vallum:ListTenants",
    "vallum:DisableTenant",
    "vallum:EnableTenant",
    "vallum:DeleteTenant",
    "vallum:CreateOperator",
    "vallum:ListOperators",
    "vallum:GetOperator",
    "vallum:AttestOperator",
    "vallum:DisableOperator",
    "vallum:EnableOperator",
    "vallum:DeleteOperator",
    "vallum:CreateOperatorKey",
];

/// Running the service: the root credentials and operators.
pub const SERVICE: &[&str] = &[
    "vallum:GetSites",
    "vallum:ManageSites",
    "vallum:GetRepair",
    "vallum:GetJobs",
    "vallum:StartRepair",
    "vallum:GetExposureRules",
    "vallum:GetPlatformCompliance",
];

/// Administration inside a tenant: its admins (and whoever its identity policies allow).
pub const TENANT: &[&str] = &[
    "vallum:GetTenant",
    "vallum:UpdateTenant",
    "vallum:CreateUser",
    "vallum:ListUsers",
    "vallum:GetUser",
    "vallum:DisableUser",
    "vallum:EnableUser",
    "vallum:DeleteUser",
    "vallum:PutUserPolicy",
    "vallum:GetUserPolicy",
    "vallum:DeleteUserPolicy",
    "vallum:CreateAccessKey",
    "vallum:ListAccessKeys",
    "vallum:DisableAccessKey",
    "vallum:EnableAccessKey",
    "vallum:DeleteAccessKey",
    "vallum:RotateAccessKey",
    "vallum:PutCharter",
    "vallum:GetCharter",
    "vallum:GetBoundaryPolicy",
    "vallum:PutBoundaryPolicy",
    "vallum:DeleteBoundaryPolicy",
    "vallum:GetPlacement",
    "vallum:GetCompliance",
    "vallum:ExplainAuthorization",
    "vallum:ListAccessRequests",
    "vallum:GetAccessRequest",
    "vallum:RevokeGrant",
    "vallum:ListAttestations",
    "vallum:RotateWebhookSecret",
    "vallum:GetLogBundle",
];

/// The key lifecycle, inside a tenant (administered like [`TENANT`]).
pub const KMS: &[&str] = &[
    "kms:ListKeys",
    "kms:CreateKey",
    "kms:DescribeKey",
    "kms:RotateKey",
    "kms:DisableKey",
    "kms:EnableKey",
    "kms:ScheduleKeyDeletion",
    "kms:DestroyKey",
];

/// What only a tenant's guardians do (a tenant admin who is not a guardian cannot).
pub const GUARDIAN: &[&str] = &[
    "vallum:SignCharter",
    "vallum:AttestOperatorForTenant",
    "vallum:WithdrawAttestation",
    "vallum:SetApprovalKey",
    "vallum:ApproveAccessRequest",
    "vallum:DenyAccessRequest",
    "vallum:ReviewBreakGlass",
];

/// What operators do in the lockbox.
pub const OPERATOR_LOCKBOX: &[&str] = &[
    "vallum:RequestAccess",
    "vallum:BreakGlass",
    "vallum:ClaimGrantCredential",
    "vallum:RevokeGrant",
    "vallum:GetCharter",
    "vallum:ListAccessRequests",
    "vallum:GetAccessRequest",
];

/// The S3 actions a lockbox scope's operation names stand for.
#[must_use]
pub fn for_operation(op: &str) -> Option<&'static [&'static str]> {
    Some(match op {
        "read" => &[
            "s3:GetObject",
            "s3:GetObjectVersion",
            "s3:GetObjectAttributes",
            "s3:GetObjectTagging",
            "s3:GetObjectRetention",
            "s3:GetObjectLegalHold",
        ],
        "list" => &["s3:ListBucket", "s3:ListBucketVersions"],
        "write" => &[
            "s3:PutObject",
            "s3:PutObjectTagging",
            "s3:AbortMultipartUpload",
            "s3:ListMultipartUploadParts",
        ],
        "delete" => &["s3:DeleteObject", "s3:DeleteObjectVersion"],
        _ => return None,
    })
}

/// Every action a policy may name: S3 and tenant administration.
pub fn policy_catalog() -> impl Iterator<Item = &'static str> {
    S3.iter().chain(TENANT).chain(KMS).chain(GUARDIAN).copied()
}

/// Every action of the catalog (some more than once: an action can be in several lists).
pub fn all() -> impl Iterator<Item = &'static str> {
    S3.iter()
        .chain(PLATFORM)
        .chain(SERVICE)
        .chain(TENANT)
        .chain(KMS)
        .chain(GUARDIAN)
        .chain(OPERATOR_LOCKBOX)
        .copied()
}

/// Whether the decision point knows `action`.
#[must_use]
pub fn is_known(action: &str) -> bool {
    all().any(|a| a == action)
}

/// A Cedar list literal of these actions.
#[must_use]
pub fn cedar_list<'a>(actions: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = actions
        .into_iter()
        .map(|a| format!("Vallum::Action::\"{a}\""))
        .collect();
    format!("[{}]", items.join(", "))
}

/// The S3 action an S3 operation (s3s's name) needs; `version` when the request names an
/// object version: the operation table's ([`crate::iam::operations`]), or
/// `s3:OtherOperation` (which no policy grants) for a name outside it.
#[must_use]
pub fn for_s3_operation(op: &str, version: bool) -> String {
    crate::iam::operations::S3Operation::from_name(op)
        .and_then(|o| o.required(version).action())
        .unwrap_or("s3:OtherOperation")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_operation_is_in_the_catalog() {
        for op in [
            "GetObject",
            "HeadObject",
            "PutObject",
            "CopyObject",
            "DeleteObject",
            "ListObjectsV2",
            "ListBuckets",
            "ListParts",
            "GetBucketPolicy",
            "PutPublicAccessBlock",
            "GetObjectLockConfiguration",
            "DeleteBucketLifecycle",
        ] {
            for v in [false, true] {
                let a = for_s3_operation(op, v);
                assert!(S3.contains(&a.as_str()), "{op} -> {a}");
            }
        }
        for op in ["read", "list", "write", "delete"] {
            assert!(for_operation(op).unwrap().iter().all(|a| S3.contains(a)));
        }
        assert!(for_operation("admin").is_none());
    }
}
