//! Lockbox requests: an operator asks for scoped, time-bound access to a tenant's data; the
//! tenant's guardians approve or deny (m of n, as the charter says); an approval is a grant
//! with its own expiring credential. Break-glass grants start at once and are reviewed later.

use cedar_policy::{Policy, PolicyId};
use serde::{Deserialize, Serialize};

use super::IamError;
use super::actions;
use super::charter::Vote;
use super::policy::{Compiled, Rule, StatementInfo, like_escape, lit};

/// Longest purpose or ticket text.
pub const MAX_TEXT_LEN: usize = 1024;

/// What a grant covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// The bucket (tenant-local name).
    pub bucket: String,
    /// Key prefix (`""`: the whole bucket).
    #[serde(default)]
    pub prefix: String,
    /// Operations: `read`, `list`, `write`, `delete`.
    pub operations: Vec<String>,
}

/// What an operator files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// The tenant.
    pub tenant: String,
    /// Scope.
    pub scope: Scope,
    /// Why.
    pub purpose: String,
    /// Incident or ticket reference.
    pub ticket: String,
    /// How long, seconds.
    pub duration_secs: u64,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for guardians.
    Pending,
    /// Granted (until `expires_ms`).
    Approved,
    /// Denied by a guardian.
    Denied,
    /// Revoked before it expired.
    Revoked,
}

/// A guardian's after-the-fact review of a break-glass grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// The vote.
    pub vote: Vote,
    /// Whether the guardian found the emergency justified.
    pub justified: bool,
}

/// A lockbox request and, once approved, its grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    /// Id (`lb-…`).
    pub id: String,
    /// The operator.
    pub operator: String,
    /// What was asked.
    pub spec: RequestSpec,
    /// Break-glass (granted at once, reviewed afterwards).
    #[serde(default)]
    pub break_glass: bool,
    /// The charter version it was checked against.
    pub charter_version: u32,
    /// Approvals the charter requires.
    pub approvals_required: u32,
    /// State.
    pub state: RequestState,
    /// Guardian approvals so far.
    #[serde(default)]
    pub approvals: Vec<Vote>,
    /// The denial, revocation, if any.
    #[serde(default)]
    pub closed_by: Option<Vote>,
    /// Filed, ms.
    pub created_ms: i64,
    /// Granted, ms.
    #[serde(default)]
    pub granted_ms: Option<i64>,
    /// Expires, ms.
    #[serde(default)]
    pub expires_ms: Option<i64>,
    /// The operator's access key the request was signed with (the one the tenant's guardians
    /// attested): only that key claims the grant, and rotating it ends the request.
    #[serde(default)]
    pub requested_with: Option<String>,
    /// The grant's access key id, once claimed.
    #[serde(default)]
    pub credential: Option<String>,
    /// Signed-note signature lines of guardians over the approval statement
    /// (`vallum_crypto::approval`), one per signing guardian.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approval_signatures: Vec<String>,
    /// The break-glass review.
    #[serde(default)]
    pub review: Option<Review>,
    /// The grant's expiry has been recorded in the log.
    #[serde(default)]
    pub expiry_logged: bool,
}

impl AccessRequest {
    /// Whether the grant is usable at `now_ms`.
    #[must_use]
    pub fn live(&self, now_ms: i64) -> bool {
        self.state == RequestState::Approved && self.expires_ms.is_some_and(|e| now_ms < e)
    }

    /// The state as shown: `expired` for an approved grant past its end.
    #[must_use]
    pub fn status(&self, now_ms: i64) -> &'static str {
        match self.state {
            RequestState::Pending => "pending",
            RequestState::Approved if self.live(now_ms) => "active",
            RequestState::Approved => "expired",
            RequestState::Denied => "denied",
            RequestState::Revoked => "revoked",
        }
    }

    /// The access kinds the scope needs from the charter.
    #[must_use]
    pub fn kinds(&self) -> Vec<&str> {
        if self.break_glass {
            let mut k = vec!["break_glass"];
            k.extend(self.spec.scope.operations.iter().map(String::as_str));
            k
        } else {
            self.spec
                .scope
                .operations
                .iter()
                .map(String::as_str)
                .collect()
        }
    }

    /// The grant's Cedar policy: only its scope, only until it expires.
    pub fn compile(&self) -> Result<Compiled, IamError> {
        let s = &self.spec.scope;
        let mut acts: Vec<&'static str> = s
            .operations
            .iter()
            .filter_map(|o| actions::for_operation(o))
            .flat_map(|a| a.iter().copied())
            .collect();
        acts.sort_unstable();
        acts.dedup();
        let expires = self.expires_ms.unwrap_or(0);
        let object = format!("arn:aws:s3:::{}/{}", s.bucket, s.prefix);
        let object_like = format!("\"{}*\"", like_escape(&object));
        let bucket_arn = lit(&format!("arn:aws:s3:::{}", s.bucket));
        let listing = if s.prefix.is_empty() {
            format!("context.arn == {bucket_arn}")
        } else {
            format!(
                "(context.arn == {bucket_arn} && context has prefix && context.prefix like \"{}*\")",
                like_escape(&s.prefix)
            )
        };
        let text = format!(
            "permit(principal == Vallum::Grant::{id}, action in {acts}, resource) when {{ context.resource_tenant == {tenant} && context.bucket == {bucket} && (context.arn like {object_like} || {listing}) && context.epoch_ms < {expires} }};",
            id = lit(&self.id),
            acts = actions::cedar_list(acts.iter().copied()),
            tenant = lit(&self.spec.tenant),
            bucket = lit(&s.bucket),
        );
        let pid = format!("grant:{}", self.id);
        let policy = Policy::parse(Some(PolicyId::new(&pid)), &text)
            .map_err(|e| IamError::Invalid(format!("grant {}: {e}", self.id)))?;
        let description = format!(
            "lockbox grant {} ({}) for {}",
            self.id, self.spec.ticket, self.operator
        );
        let bad = |e: Box<cedar_policy::PolicySetError>| {
            IamError::Invalid(format!("grant {}: {e}", self.id))
        };
        let rule = Rule::new(&policy, description.clone(), Some(acts.clone())).map_err(bad)?;
        Ok(Compiled {
            set: rule.cedar.clone(),
            statements: vec![StatementInfo {
                id: pid,
                sid: Some(description),
                effect: "Allow".into(),
                cedar: text,
            }],
            public: false,
            actions: Some(acts),
            rules: vec![rule],
        })
    }
}

impl RequestSpec {
    /// Checks the request's own shape.
    pub fn validate(&self) -> Result<(), IamError> {
        let bad = |m: String| Err(IamError::Invalid(m));
        if self.scope.operations.is_empty() {
            return bad("scope.operations lists at least one of read, list, write, delete".into());
        }
        for op in &self.scope.operations {
            if actions::for_operation(op).is_none() {
                return bad(format!(
                    "scope.operations: {op:?} is not one of read, list, write, delete"
                ));
            }
        }
        if self.scope.bucket.is_empty() {
            return bad("scope.bucket is required".into());
        }
        if self.purpose.trim().is_empty() || self.ticket.trim().is_empty() {
            return bad("purpose and ticket (an incident or ticket reference) are required".into());
        }
        if self.purpose.len() > MAX_TEXT_LEN || self.ticket.len() > MAX_TEXT_LEN {
            return bad(format!(
                "purpose and ticket are at most {MAX_TEXT_LEN} bytes"
            ));
        }
        if self.duration_secs == 0 {
            return bad("duration_secs is at least 1".into());
        }
        Ok(())
    }
}
