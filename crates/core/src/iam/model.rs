//! The identity records: tenants, users, access keys, operators. Stored as JSON documents in
//! the metadata store (kind + id); secrets are sealed before they are stored.

use serde::{Deserialize, Serialize};

use super::IamError;

/// The tenant every bucket created before tenants existed belongs to; the root credentials
/// administer it.
pub const DEFAULT_TENANT: &str = "default";
/// Separates a tenant from a bucket in a tenant-qualified bucket name (`acme:photos`).
pub const TENANT_SEPARATOR: char = ':';
/// Longest tenant id.
pub const MAX_TENANT_ID_LEN: usize = 32;
/// Longest user or operator name.
pub const MAX_NAME_LEN: usize = 64;

/// Record kinds in the metadata store.
pub use crate::records::kind;

/// Enabled or disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// In use.
    #[default]
    Active,
    /// Refused until enabled again.
    Disabled,
}

/// A customer organisation: its buckets, users, charter and guardians.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Id (lowercase letters, digits, `-`).
    pub id: String,
    /// Human name.
    #[serde(default)]
    pub display_name: String,
    /// State.
    #[serde(default)]
    pub state: State,
    /// Where lockbox events are posted for the tenant's guardians (http:// URL).
    #[serde(default)]
    pub guardian_webhook: Option<String>,
    /// When created, ms.
    pub created_ms: i64,
}

/// What a user may do beyond its identity policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Administers the tenant: everything in it, users and keys included.
    Admin,
    /// Signs the charter off and approves or denies operator access.
    Guardian,
}

/// A tenant's user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Tenant.
    pub tenant: String,
    /// Name, unique in the tenant.
    pub name: String,
    /// Roles.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// State.
    #[serde(default)]
    pub state: State,
    /// Identity policy (S3/IAM JSON policy language), if any.
    #[serde(default)]
    pub policy: Option<serde_json::Value>,
    /// When created, ms.
    pub created_ms: i64,
    /// A guardian's own approval key (a signed-note verifier key): once set, the guardian's
    /// lockbox approvals must carry a signature by it, which key services can check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_key: Option<String>,
}

impl User {
    /// `<tenant>/<name>`: the record id.
    #[must_use]
    pub fn id(&self) -> String {
        format!("{}/{}", self.tenant, self.name)
    }

    /// Whether the user has `role`.
    #[must_use]
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Security clearance levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clearance {
    /// No clearance.
    None,
    /// Restricted.
    Restricted,
    /// Confidential.
    Confidential,
    /// Secret.
    Secret,
    /// Top secret.
    TopSecret,
}

/// What the platform attests about an operator: checked against each tenant's charter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Attributes {
    /// Citizenships (ISO 3166-1 alpha-2).
    #[serde(default)]
    pub citizenship: Vec<String>,
    /// Country of residence (ISO 3166-1 alpha-2).
    #[serde(default)]
    pub residency: Option<String>,
    /// Security clearance.
    #[serde(default)]
    pub clearance: Option<Clearance>,
    /// Employer.
    #[serde(default)]
    pub employer: Option<String>,
    /// Working location or facility.
    #[serde(default)]
    pub location: Option<String>,
}

/// Platform staff who run Vallum: they manage the service, never read customer data on their
/// own; they reach it only through a lockbox grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// Name.
    pub name: String,
    /// Personnel role (`sre`, `support`, `dba`, ...), matched against charters.
    pub role: String,
    /// Attested attributes.
    #[serde(default)]
    pub attributes: Attributes,
    /// Who attested them, when, and on what evidence.
    #[serde(default)]
    pub attestation: Option<Attestation>,
    /// State.
    #[serde(default)]
    pub state: State,
    /// When created, ms.
    pub created_ms: i64,
}

/// Who vouched for an operator's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The attesting principal.
    pub by: String,
    /// When, ms.
    pub at_ms: i64,
    /// Evidence reference (vetting file, HR record).
    #[serde(default)]
    pub evidence: String,
}

/// A tenant's guardians vouching for an operator: the role and attributes the tenant's charter
/// is checked against, and the one access key (at its current secret) the operator files
/// requests with. Rotating, disabling or deleting that key, or another key appearing, does not
/// carry the attestation over: the guardians must attest again. The platform's own record of
/// the operator (what the root credentials declared) counts for nothing in a tenant's charter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantAttestation {
    /// The tenant.
    pub tenant: String,
    /// The operator.
    pub operator: String,
    /// Personnel role, as the guardians vetted it.
    pub role: String,
    /// Attributes, as the guardians vetted them.
    #[serde(default)]
    pub attributes: Attributes,
    /// The operator's access key the attestation covers.
    pub access_key: String,
    /// That key's `rotated_ms` when attested: a rotation since voids the attestation.
    pub key_rotated_ms: i64,
    /// The guardian (`<tenant>/<user>`).
    pub by: String,
    /// When, ms.
    pub at_ms: i64,
    /// Evidence reference (vetting file, interview, HR record).
    #[serde(default)]
    pub evidence: String,
}

/// Whose key it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Owner {
    /// A tenant's user.
    User {
        /// Tenant.
        tenant: String,
        /// User name.
        name: String,
    },
    /// An operator.
    Operator {
        /// Operator name.
        name: String,
    },
    /// A lockbox grant (the scoped, expiring credential of an approved request).
    Grant {
        /// The request id.
        id: String,
    },
}

/// An access key: the id is public, the secret is sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    /// Key id (`VA…` for users and operators, `VG…` for grants).
    pub id: String,
    /// Owner.
    pub owner: Owner,
    /// The secret, sealed by the deployment's secret box.
    pub sealed_secret: String,
    /// State.
    #[serde(default)]
    pub state: State,
    /// When created, ms.
    pub created_ms: i64,
    /// When the secret last changed, ms.
    #[serde(default)]
    pub rotated_ms: i64,
}

/// What a key's JSON view shows (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    /// Key id.
    pub id: String,
    /// Owner.
    pub owner: Owner,
    /// State.
    pub state: State,
    /// Created, ms.
    pub created_ms: i64,
    /// Secret last changed, ms.
    pub rotated_ms: i64,
}

impl From<&AccessKey> for KeyView {
    fn from(k: &AccessKey) -> Self {
        Self {
            id: k.id.clone(),
            owner: k.owner.clone(),
            state: k.state,
            created_ms: k.created_ms,
            rotated_ms: k.rotated_ms,
        }
    }
}

fn check_chars(what: &str, id: &str, max: usize, extra: &[char]) -> Result<(), IamError> {
    let ok = !id.is_empty()
        && id.len() <= max
        && id.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || extra.contains(&c)
        })
        && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(IamError::Invalid(format!(
            "{what} {id:?}: 1 to {max} lowercase letters, digits or '-'{}, starting with a letter or digit",
            if extra.is_empty() {
                String::new()
            } else {
                format!(" (or {extra:?})")
            }
        )))
    }
}

/// Checks a tenant id.
pub fn check_tenant_id(id: &str) -> Result<(), IamError> {
    check_chars("tenant id", id, MAX_TENANT_ID_LEN, &[])?;
    if id.len() < 3 {
        return Err(IamError::Invalid(format!(
            "tenant id {id:?}: at least 3 characters"
        )));
    }
    Ok(())
}

/// Checks a user or operator name.
pub fn check_name(what: &str, name: &str) -> Result<(), IamError> {
    check_chars(what, name, MAX_NAME_LEN, &['.', '_', '@'])
}

/// The internal (stored) name of `bucket` in `tenant`: the bare name in the default tenant,
/// `tenant:bucket` elsewhere.
#[must_use]
pub fn internal_bucket(tenant: &str, bucket: &str) -> String {
    if tenant == DEFAULT_TENANT {
        bucket.to_owned()
    } else {
        format!("{tenant}{TENANT_SEPARATOR}{bucket}")
    }
}

/// The tenant and bucket of an internal bucket name.
#[must_use]
pub fn split_internal(internal: &str) -> (&str, &str) {
    internal
        .split_once(TENANT_SEPARATOR)
        .unwrap_or((DEFAULT_TENANT, internal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_names_round_trip_and_default_stays_bare() {
        assert_eq!(internal_bucket("default", "photos"), "photos");
        assert_eq!(internal_bucket("acme", "photos"), "acme:photos");
        assert_eq!(split_internal("acme:photos"), ("acme", "photos"));
        assert_eq!(split_internal("photos"), ("default", "photos"));
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_tenant_id("acme-bank").is_ok());
        for bad in ["", "ab", "Acme", "a:b", "-ab", &"x".repeat(33)] {
            assert!(check_tenant_id(bad).is_err(), "{bad}");
        }
        assert!(check_name("user", "alice.smith@ops").is_ok());
        assert!(check_name("user", "alice/x").is_err());
    }
}
