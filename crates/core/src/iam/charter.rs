//! A tenant's sovereignty charter: which platform staff may be granted access to its data, for
//! what, for how long, and with how many guardian approvals. Versioned; a version takes effect
//! once enough of the tenant's guardians have signed it off.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::IamError;
use super::model::{Clearance, Operator};

/// Kinds of access a charter rules on: the lockbox scope operations, and break-glass.
pub const ACCESS_KINDS: &[&str] = &["read", "list", "write", "delete", "break_glass"];
/// Longest grant any charter may allow (30 days).
pub const MAX_GRANT_SECS: u64 = 30 * 24 * 3600;
/// Most guardian approvals a charter may require.
pub const MAX_APPROVALS: u32 = 16;

/// What an operator must be to get one kind of access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Personnel roles allowed (empty: any of the charter's roles).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Citizenship: at least one of these (empty: any).
    #[serde(default)]
    pub citizenship: Vec<String>,
    /// Country of residence: one of these (empty: any).
    #[serde(default)]
    pub residency: Vec<String>,
    /// Minimum clearance.
    #[serde(default)]
    pub clearance: Option<Clearance>,
    /// Employer: one of these (empty: any).
    #[serde(default)]
    pub employer: Vec<String>,
    /// Working location or facility: one of these (empty: any).
    #[serde(default)]
    pub location: Vec<String>,
}

/// The charter document a tenant proposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CharterDoc {
    /// Personnel roles that may request access at all.
    pub roles: Vec<String>,
    /// Requirements per access kind (`read`, `list`, `write`, `delete`, `break_glass`); a kind
    /// not listed cannot be granted.
    pub access: BTreeMap<String, Requirement>,
    /// Longest grant, seconds.
    pub max_grant_secs: u64,
    /// Guardian approvals needed for a grant, and to sign off the next charter version.
    pub approvals_required: u32,
    /// How often the tenant audits grants, days (reported in evidence).
    pub audit_frequency_days: u32,
    /// Longest break-glass grant, seconds (break-glass also needs `access.break_glass`).
    #[serde(default)]
    pub break_glass_max_secs: Option<u64>,
}

/// A guardian's signature or vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The guardian (`<tenant>/<user>`).
    pub by: String,
    /// When, ms.
    pub at_ms: i64,
    /// Comment.
    #[serde(default)]
    pub comment: String,
}

/// A charter version's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CharterState {
    /// Waiting for signatures.
    Proposed,
    /// In force.
    Active,
    /// Replaced by a later version.
    Superseded,
}

/// One version of a tenant's charter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharterVersion {
    /// Version, from 1.
    pub version: u32,
    /// The document.
    pub doc: CharterDoc,
    /// State.
    pub state: CharterState,
    /// Who proposed it.
    pub proposed_by: String,
    /// When, ms.
    pub proposed_ms: i64,
    /// Guardian sign-offs.
    pub signatures: Vec<Vote>,
}

/// Every version of a tenant's charter (one record per tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Charter {
    /// Versions, oldest first.
    pub versions: Vec<CharterVersion>,
}

impl Charter {
    /// The version in force.
    #[must_use]
    pub fn active(&self) -> Option<&CharterVersion> {
        self.versions
            .iter()
            .rev()
            .find(|v| v.state == CharterState::Active)
    }

    /// Signatures a proposed version needs: the active version's `approvals_required`, or
    /// the proposal's own for a tenant's first charter.
    #[must_use]
    pub fn signatures_needed(&self, proposal: &CharterDoc) -> u32 {
        self.active()
            .map_or(proposal.approvals_required, |a| a.doc.approvals_required)
            .max(1)
    }
}

impl CharterDoc {
    /// Checks the document's own rules.
    pub fn validate(&self) -> Result<(), IamError> {
        let bad = |m: String| Err(IamError::Invalid(format!("charter: {m}")));
        if self.roles.is_empty() {
            return bad("roles lists at least one personnel role".into());
        }
        for (kind, req) in &self.access {
            if !ACCESS_KINDS.contains(&kind.as_str()) {
                return bad(format!(
                    "access.{kind}: kinds are {}",
                    ACCESS_KINDS.join(", ")
                ));
            }
            for r in &req.roles {
                if !self.roles.contains(r) {
                    return bad(format!("access.{kind}.roles: {r} is not in roles"));
                }
            }
            for c in req.citizenship.iter().chain(&req.residency) {
                if c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_uppercase()) {
                    return bad(format!(
                        "access.{kind}: {c:?} is not an ISO 3166-1 alpha-2 country code"
                    ));
                }
            }
        }
        if self.max_grant_secs == 0 || self.max_grant_secs > MAX_GRANT_SECS {
            return bad(format!("max_grant_secs is 1 to {MAX_GRANT_SECS}"));
        }
        if self.approvals_required == 0 || self.approvals_required > MAX_APPROVALS {
            return bad(format!("approvals_required is 1 to {MAX_APPROVALS}"));
        }
        if self.audit_frequency_days == 0 {
            return bad("audit_frequency_days is at least 1".into());
        }
        if let Some(s) = self.break_glass_max_secs
            && (s == 0 || s > self.max_grant_secs)
        {
            return bad("break_glass_max_secs is 1 to max_grant_secs".into());
        }
        Ok(())
    }

    /// What `op` lacks for access `kind`: empty when the operator meets the charter.
    #[must_use]
    pub fn unmet(&self, op: &Operator, kind: &str) -> Vec<String> {
        let mut out = Vec::new();
        if !self.roles.contains(&op.role) {
            out.push(format!(
                "role {} is not one the charter allows ({})",
                op.role,
                self.roles.join(", ")
            ));
        }
        let Some(req) = self.access.get(kind) else {
            out.push(format!("the charter grants no {kind} access"));
            return out;
        };
        let a = &op.attributes;
        if op.attestation.is_none() {
            out.push("the operator's attributes are not attested".into());
        }
        if !req.roles.is_empty() && !req.roles.contains(&op.role) {
            out.push(format!(
                "{kind} access needs role {} (operator is {})",
                req.roles.join(" or "),
                op.role
            ));
        }
        if !req.citizenship.is_empty() && !a.citizenship.iter().any(|c| req.citizenship.contains(c))
        {
            out.push(format!(
                "{kind} access needs citizenship {} (operator: {})",
                req.citizenship.join(" or "),
                if a.citizenship.is_empty() {
                    "none attested".into()
                } else {
                    a.citizenship.join(", ")
                }
            ));
        }
        let one_of = |what: &str, want: &[String], have: &Option<String>, out: &mut Vec<String>| {
            if !want.is_empty() && !have.as_ref().is_some_and(|h| want.contains(h)) {
                out.push(format!(
                    "{kind} access needs {what} {} (operator: {})",
                    want.join(" or "),
                    have.as_deref().unwrap_or("none attested")
                ));
            }
        };
        one_of("residency", &req.residency, &a.residency, &mut out);
        one_of("employer", &req.employer, &a.employer, &mut out);
        one_of("location", &req.location, &a.location, &mut out);
        if let Some(min) = req.clearance
            && a.clearance.is_none_or(|c| c < min)
        {
            out.push(format!(
                "{kind} access needs clearance {min:?} or higher (operator: {})",
                a.clearance
                    .map_or("none attested".into(), |c| format!("{c:?}"))
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::model::{Attestation, Attributes, State};

    fn doc() -> CharterDoc {
        serde_json::from_value(serde_json::json!({
            "roles": ["sre", "support"],
            "access": {
                "read": {"citizenship": ["FR", "DE"], "clearance": "secret", "location": ["par-1"]},
                "break_glass": {"roles": ["sre"], "citizenship": ["FR"]}
            },
            "max_grant_secs": 14400,
            "approvals_required": 2,
            "audit_frequency_days": 90,
            "break_glass_max_secs": 3600
        }))
        .unwrap()
    }

    fn op(citizenship: &str, clearance: Clearance) -> Operator {
        Operator {
            name: "olga".into(),
            role: "sre".into(),
            attributes: Attributes {
                citizenship: vec![citizenship.into()],
                residency: Some("FR".into()),
                clearance: Some(clearance),
                employer: Some("Vallum SAS".into()),
                location: Some("par-1".into()),
            },
            attestation: Some(Attestation {
                by: "root".into(),
                at_ms: 1,
                evidence: "HR-1".into(),
            }),
            state: State::Active,
            created_ms: 1,
        }
    }

    #[test]
    fn operators_are_checked_attribute_by_attribute() {
        let d = doc();
        d.validate().unwrap();
        assert!(d.unmet(&op("FR", Clearance::TopSecret), "read").is_empty());
        let u = d.unmet(&op("US", Clearance::Confidential), "read");
        assert_eq!(u.len(), 2, "{u:?}");
        assert!(u[0].contains("citizenship FR or DE"));
        assert!(u[1].contains("clearance Secret"));
        assert!(d.unmet(&op("FR", Clearance::Secret), "write")[0].contains("no write access"));
        let mut support = op("FR", Clearance::Secret);
        support.role = "support".into();
        assert!(d.unmet(&support, "break_glass")[0].contains("needs role sre"));
        support.attestation = None;
        assert!(
            d.unmet(&support, "read")
                .iter()
                .any(|m| m.contains("not attested"))
        );
    }

    #[test]
    fn invalid_charters_are_refused() {
        let mut d = doc();
        d.access.insert("teleport".into(), Requirement::default());
        assert!(d.validate().unwrap_err().to_string().contains("kinds are"));
        let mut d = doc();
        d.approvals_required = 0;
        assert!(d.validate().is_err());
        let mut d = doc();
        d.max_grant_secs = MAX_GRANT_SECS + 1;
        assert!(d.validate().is_err());
        let mut d = doc();
        d.access.get_mut("read").unwrap().citizenship = vec!["France".into()];
        assert!(d.validate().unwrap_err().to_string().contains("ISO 3166"));
    }
}
