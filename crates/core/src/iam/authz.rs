//! The decision point: every S3 and admin call asks [`Authorizer::decide`] whether this
//! principal may take this action on this resource, and gets a [`Decision`] that names the
//! policies that decided it.
//!
//! Three Cedar policy sets are evaluated for a request, each small: the platform's baseline
//! rules ([`baseline_text`]), the principal's own policies (a user's identity policy, or a
//! lockbox grant's scope), and the bucket's policy. Any `forbid` that holds denies (an explicit
//! deny wins), then any `permit` that holds allows, else the request is denied. An evaluation
//! error denies too: a policy that cannot be evaluated never lets a request through.
//!
//! Each policy is evaluated in its compiled form ([`super::eval`]), or by Cedar when it is
//! outside the compiled subset; [`Authorizer::decide_with_cedar`] decides by Cedar alone, the
//! reference the compiled evaluation is tested against and `vallum authz explain` reports.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Context, Effect, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    Policy, PolicyId, PolicySet, PrincipalConstraint, Request, RestrictedExpression,
};
use serde::Serialize;

use super::actions;
use super::eval::{self, Hierarchy, SLOT_COUNT, Val};
use super::model::DEFAULT_TENANT;
use super::policy::{Compiled, Rule};

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The deployment's root credentials: platform administration, and the administrator of
    /// the default tenant.
    Root,
    /// A tenant's user.
    User {
        /// Tenant.
        tenant: String,
        /// Name.
        name: String,
        /// Tenant administrator.
        admin: bool,
        /// Guardian.
        guardian: bool,
    },
    /// An operator acting on its own credentials: the service, never customer data.
    Operator {
        /// Name.
        name: String,
    },
    /// An operator acting under a lockbox grant.
    Grant {
        /// The request id of the grant.
        id: String,
        /// The operator.
        operator: String,
        /// The tenant the grant is for.
        tenant: String,
    },
    /// An unsigned request.
    Anonymous,
}

impl Principal {
    /// How the journal and the transparency log name it.
    #[must_use]
    pub fn actor(&self) -> String {
        match self {
            Principal::Root => "root".into(),
            Principal::User { tenant, name, .. } => format!("user:{tenant}/{name}"),
            Principal::Operator { name } => format!("operator:{name}"),
            Principal::Grant { id, operator, .. } => format!("operator:{operator} grant:{id}"),
            Principal::Anonymous => "anonymous".into(),
        }
    }

    /// The tenant whose bucket names an unqualified bucket name means; `None` for an
    /// operator without a grant, who has none.
    #[must_use]
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Principal::Root | Principal::Anonymous => Some(DEFAULT_TENANT),
            Principal::User { tenant, .. } | Principal::Grant { tenant, .. } => Some(tenant),
            Principal::Operator { .. } => None,
        }
    }

    /// The tenant the principal belongs to (`""` for operators, grants and anonymous).
    #[must_use]
    pub fn home_tenant(&self) -> &str {
        match self {
            Principal::Root => DEFAULT_TENANT,
            Principal::User { tenant, .. } => tenant,
            _ => "",
        }
    }

    /// How the journal and the transparency log name it when it signed with `access_key`:
    /// `key:<id>` for the root credentials (and first for users, so key-service rules on
    /// `key:*` keep matching customer requests), `operator:<name>` first for platform staff
    /// (so no `key:*` rule ever matches them), with the grant when one is used.
    #[must_use]
    pub fn actor_with_key(&self, access_key: &str) -> String {
        match self {
            Principal::Root => format!("key:{access_key}"),
            Principal::User { .. } => format!("key:{access_key} {}", self.actor()),
            Principal::Operator { .. } | Principal::Grant { .. } => {
                format!("{} key:{access_key}", self.actor())
            }
            Principal::Anonymous => self.actor(),
        }
    }

    /// The lockbox grant it acts under.
    #[must_use]
    pub fn grant(&self) -> Option<&str> {
        match self {
            Principal::Grant { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// What is acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// The platform itself (sites, tenants, operators).
    Platform,
    /// A tenant (its users, keys, charter, lockbox).
    Tenant(String),
    /// A bucket (tenant-local name).
    Bucket {
        /// Tenant.
        tenant: String,
        /// Bucket.
        bucket: String,
    },
    /// An object.
    Object {
        /// Tenant.
        tenant: String,
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
}

impl Resource {
    /// The tenant it belongs to (`""` for the platform).
    #[must_use]
    pub fn tenant(&self) -> &str {
        match self {
            Resource::Platform => "",
            Resource::Tenant(t)
            | Resource::Bucket { tenant: t, .. }
            | Resource::Object { tenant: t, .. } => t,
        }
    }

    /// The bucket it is or is in.
    #[must_use]
    pub fn bucket(&self) -> Option<&str> {
        match self {
            Resource::Bucket { bucket, .. } | Resource::Object { bucket, .. } => Some(bucket),
            _ => None,
        }
    }

    /// Its S3 ARN (`""` for non-S3 resources).
    #[must_use]
    pub fn arn(&self) -> String {
        match self {
            Resource::Bucket { bucket, .. } => format!("arn:aws:s3:::{bucket}"),
            Resource::Object { bucket, key, .. } => format!("arn:aws:s3:::{bucket}/{key}"),
            _ => String::new(),
        }
    }
}

/// Facts about the request that conditions may test.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Arrived over TLS.
    pub secure: bool,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// Now, ms since the epoch.
    pub now_ms: i64,
    /// `prefix` of a listing.
    pub prefix: Option<String>,
    /// `delimiter` of a listing.
    pub delimiter: Option<String>,
    /// `max-keys` of a listing.
    pub max_keys: Option<i64>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// `Referer`.
    pub referer: Option<String>,
    /// `x-amz-server-side-encryption` of a write.
    pub sse: Option<String>,
}

/// One policy that decided (or failed to evaluate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// Which set: `platform`, `identity:<tenant>/<user>`, `grant:<id>`, `bucket:<bucket>`.
    pub source: String,
    /// Cedar policy id.
    pub policy: String,
    /// `permit` or `forbid`.
    pub effect: String,
    /// What the policy is (its description or statement Sid).
    pub description: String,
}

/// The answer, with its trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Allowed.
    pub allowed: bool,
    /// Denied by a `forbid` (an explicit deny), not merely for want of a `permit`.
    pub explicit_deny: bool,
    /// The `forbid`s that held, else the `permit`s that did.
    pub reasons: Vec<Reason>,
    /// Evaluation errors (each denies).
    pub errors: Vec<String>,
}

/// A policy set with where it came from, for traces.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Trace label.
    pub label: &'a str,
    /// The compiled policies.
    pub compiled: &'a Compiled,
}

/// Action groups of the baseline, as Cedar action entities every catalog action belongs to
/// (so a rule names one group instead of a long list).
pub const GROUPS: &[(&str, &[&[&str]])] = &[
    (
        "group:root",
        &[actions::PLATFORM, actions::SERVICE, &["vallum:GetTenant"]],
    ),
    ("group:guardian", &[actions::GUARDIAN, GUARDIAN_READS]),
    ("group:guardian-only", &[actions::GUARDIAN]),
    ("group:service", &[actions::SERVICE]),
    ("group:operator-lockbox", &[actions::OPERATOR_LOCKBOX]),
    ("group:customer-data", &[actions::S3, actions::KMS]),
    ("group:s3", &[actions::S3]),
];

const GUARDIAN_READS: &[&str] = &[
    "vallum:GetCharter",
    "vallum:ListAttestations",
    "vallum:GetLogBundle",
    "vallum:ListAccessRequests",
    "vallum:GetAccessRequest",
    "vallum:RevokeGrant",
];

/// The baseline rules in Cedar: who may do what before any customer policy is consulted.
#[must_use]
pub fn baseline_text() -> String {
    let g = |name: &str| format!("Vallum::Action::\"{name}\"");
    format!(
        r#"@id("root-platform")
@description("the root credentials administer the platform and run the service")
permit(principal is Vallum::Root, action in {root}, resource);

@id("root-default-tenant")
@description("the root credentials administer the default tenant")
permit(principal is Vallum::Root, action, resource) when {{ context.resource_tenant == "default" }};

@id("tenant-admin")
@description("a tenant's administrators may do everything in their tenant")
permit(principal is Vallum::User, action, resource) when {{ context.admin && context.resource_tenant == context.principal_tenant }};

@id("guardian")
@description("a tenant's guardians sign the charter off and decide on operator access")
permit(principal is Vallum::User, action in {guardian}, resource) when {{ context.guardian && context.resource_tenant == context.principal_tenant }};

@id("guardians-only")
@description("only guardians sign charters and approve, deny or review access")
forbid(principal, action in {guardian_only}, resource) unless {{ context.guardian }};

@id("operator-service")
@description("operators run the service: sites, repair, capacity")
permit(principal is Vallum::Operator, action in {service}, resource);

@id("operator-lockbox")
@description("operators file access requests and claim what guardians grant")
permit(principal is Vallum::Operator, action in {lockbox}, resource);

@id("operator-no-customer-data")
@description("an operator's own credentials read no customer object and use no customer key")
forbid(principal is Vallum::Operator, action in {data}, resource);

@id("tenant-isolation")
@description("a user acts only inside its own tenant")
forbid(principal is Vallum::User, action, resource) unless {{ context.resource_tenant == context.principal_tenant }};

@id("anonymous-s3-only")
@description("unsigned requests reach only S3 resources a public bucket policy opens")
forbid(principal is Vallum::Anonymous, action, resource) unless {{ action in {s3} && context.arn != "" }};
"#,
        root = g("group:root"),
        guardian = g("group:guardian"),
        guardian_only = g("group:guardian-only"),
        service = g("group:service"),
        lockbox = g("group:operator-lockbox"),
        data = g("group:customer-data"),
        s3 = g("group:s3"),
    )
}

/// Every catalog action as a Cedar entity whose parents are the groups it is in.
fn action_entities(action_type: &EntityTypeName) -> Entities {
    let uid = |id: &str| EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(id));
    let mut all: Vec<&str> = actions::all().collect();
    all.sort_unstable();
    all.dedup();
    let mut entities: Vec<Entity> = all
        .iter()
        .map(|a| {
            let parents: HashSet<EntityUid> = GROUPS
                .iter()
                .filter(|(_, lists)| lists.iter().any(|l| l.contains(a)))
                .map(|(g, _)| uid(g))
                .collect();
            Entity::new_no_attrs(uid(a), parents)
        })
        .collect();
    entities.extend(
        GROUPS
            .iter()
            .map(|(g, _)| Entity::new_no_attrs(uid(g), HashSet::new())),
    );
    Entities::from_entities(entities, None).expect("the action hierarchy is well formed")
}

/// Entity type names.
const ROOT: &str = "Vallum::Root";
const USER: &str = "Vallum::User";
const OPERATOR: &str = "Vallum::Operator";
const GRANT: &str = "Vallum::Grant";
const ANONYMOUS: &str = "Vallum::Anonymous";
const ACTION: &str = "Vallum::Action";
const PLATFORM: &str = "Vallum::Platform";
const TENANT: &str = "Vallum::Tenant";
const BUCKET: &str = "Vallum::Bucket";
const OBJECT: &str = "Vallum::Object";

/// The action hierarchy of [`GROUPS`] for compiled policies (the same one as
/// [`action_entities`] gives Cedar).
fn action_hierarchy() -> Hierarchy {
    let mut h = Hierarchy::default();
    for a in actions::all() {
        let groups = GROUPS
            .iter()
            .filter(|(_, lists)| lists.iter().any(|l| l.contains(&a)))
            .map(|(g, _)| (ACTION.to_owned(), (*g).to_owned()))
            .collect();
        h.insert(ACTION, a, groups);
    }
    h
}

/// The decision point's fixed part: the baseline rules, the action hierarchy and Cedar.
pub struct Authorizer {
    baseline: Compiled,
    /// The baseline split by the principal class it can apply to (root, user, operator,
    /// grant, anonymous) and by action, so a request evaluates only the rules that can
    /// concern it.
    by_class: Vec<HashMap<&'static str, Vec<Rule>>>,
    hierarchy: Hierarchy,
    cedar: cedar_policy::Authorizer,
    entities: Entities,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").finish_non_exhaustive()
    }
}

fn type_name(s: &str) -> EntityTypeName {
    EntityTypeName::from_str(s).expect("a valid Cedar type name")
}

impl Default for Authorizer {
    fn default() -> Self {
        Self::new()
    }
}

/// The strings a request's entities and context are made of, built once per decision.
struct Parts<'a> {
    principal: (&'static str, Cow<'a, str>),
    resource: (&'static str, Cow<'a, str>),
    arn: String,
}

impl<'a> Parts<'a> {
    fn new(p: &'a Principal, r: &'a Resource) -> Self {
        let principal = match p {
            Principal::Root => (ROOT, Cow::Borrowed("root")),
            Principal::User { tenant, name, .. } => (USER, Cow::Owned(format!("{tenant}/{name}"))),
            Principal::Operator { name } => (OPERATOR, Cow::Borrowed(name.as_str())),
            Principal::Grant { id, .. } => (GRANT, Cow::Borrowed(id.as_str())),
            Principal::Anonymous => (ANONYMOUS, Cow::Borrowed("anonymous")),
        };
        let resource = match r {
            Resource::Platform => (PLATFORM, Cow::Borrowed("vallum")),
            Resource::Tenant(id) => (TENANT, Cow::Borrowed(id.as_str())),
            Resource::Bucket { tenant, bucket } => {
                (BUCKET, Cow::Owned(format!("{tenant}/{bucket}")))
            }
            Resource::Object {
                tenant,
                bucket,
                key,
            } => (OBJECT, Cow::Owned(format!("{tenant}/{bucket}/{key}"))),
        };
        Self {
            principal,
            resource,
            arn: r.arn(),
        }
    }

    /// The request context by slot ([`eval::SLOTS`]): what conditions can test.
    fn context(
        &'a self,
        p: &'a Principal,
        r: &'a Resource,
        f: &'a Facts,
    ) -> [Option<Val<'a>>; SLOT_COUNT] {
        let (admin, guardian, username) = match p {
            Principal::User {
                admin,
                guardian,
                name,
                ..
            } => (*admin, *guardian, Some(name.as_str())),
            _ => (false, false, None),
        };
        let s = |v: Option<&'a str>| v.map(Val::Str);
        let mut ip = [None; 5];
        match f.source_ip.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => ip[0] = Some(Val::Long(i64::from(u32::from(v4)))),
            Some(IpAddr::V6(v6)) => {
                let n = u128::from(v6);
                for (i, word) in ip[1..].iter_mut().enumerate() {
                    let w = (n >> (96 - 32 * i)) & u128::from(u32::MAX);
                    *word = Some(Val::Long(i64::try_from(w).unwrap_or(0)));
                }
            }
            None => {}
        }
        [
            Some(Val::Str(p.home_tenant())),
            Some(Val::Str(r.tenant())),
            Some(Val::Bool(admin)),
            Some(Val::Bool(guardian)),
            Some(Val::Str(&self.arn)),
            Some(Val::Str(r.bucket().unwrap_or(""))),
            Some(Val::Bool(f.secure)),
            Some(Val::Long(f.now_ms)),
            s(f.prefix.as_deref()),
            s(f.delimiter.as_deref()),
            s(f.user_agent.as_deref()),
            s(f.referer.as_deref()),
            s(f.sse.as_deref()),
            s(username),
            f.max_keys.map(Val::Long),
            ip[0],
            ip[1],
            ip[2],
            ip[3],
            ip[4],
        ]
    }
}

/// The trace of one evaluation, turned into a [`Decision`] at the end.
#[derive(Default)]
struct Tally {
    permits: Vec<Reason>,
    forbids: Vec<Reason>,
    errors: Vec<String>,
}

impl Tally {
    fn held(&mut self, label: &str, id: &str, forbid: bool, description: &str) {
        let reason = Reason {
            source: label.to_owned(),
            policy: id.to_owned(),
            effect: if forbid { "forbid" } else { "permit" }.into(),
            description: description.to_owned(),
        };
        if forbid {
            self.forbids.push(reason);
        } else {
            self.permits.push(reason);
        }
    }

    /// Any forbid denies; else a permit allows unless something failed to evaluate.
    fn decision(self) -> Decision {
        let mut d = Decision {
            allowed: false,
            explicit_deny: false,
            reasons: Vec::new(),
            errors: self.errors,
        };
        if !self.forbids.is_empty() {
            d.explicit_deny = true;
            d.reasons = self.forbids;
        } else if d.errors.is_empty() && !self.permits.is_empty() {
            d.allowed = true;
            d.reasons = self.permits;
        }
        d
    }
}

impl Authorizer {
    /// The decision point with the baseline rules.
    ///
    /// # Panics
    /// If the built-in baseline does not parse (a bug caught by every test).
    #[must_use]
    pub fn new() -> Self {
        let text = baseline_text();
        let parsed = PolicySet::from_str(&text).expect("the baseline policies parse");
        let classes = ["Root", "User", "Operator", "Grant", "Anonymous"];
        let mut set = PolicySet::new();
        let mut statements = Vec::new();
        let mut rules: Vec<Rule> = Vec::new();
        let mut only_class: Vec<Option<String>> = Vec::new();
        for p in parsed.policies() {
            let id = p.annotation("id").unwrap_or("baseline").to_owned();
            let description = p.annotation("description").unwrap_or("").to_owned();
            let src = p.to_string();
            // The actions the rule can apply to: its group's, or any.
            let group = match p.action_constraint() {
                ActionConstraint::In(parents) if parents.len() == 1 => {
                    Some(parents[0].id().unescaped().to_owned())
                }
                _ => None,
            };
            let scope: Option<Vec<&'static str>> = GROUPS
                .iter()
                .find(|(g, _)| group.as_deref() == Some(*g))
                .map(|(_, lists)| {
                    let mut a: Vec<&'static str> =
                        lists.iter().flat_map(|l| l.iter().copied()).collect();
                    a.sort_unstable();
                    a.dedup();
                    a
                });
            let policy = Policy::parse(Some(PolicyId::new(&id)), &src).expect("baseline policy");
            set.add(policy.clone()).expect("unique baseline ids");
            statements.push(super::policy::StatementInfo {
                id: id.clone(),
                sid: Some(description.clone()),
                effect: if p.effect() == Effect::Permit {
                    "Allow"
                } else {
                    "Deny"
                }
                .into(),
                cedar: src,
            });
            // The principal class the rule is limited to (`principal is Vallum::<class>`).
            only_class.push(match p.principal_constraint() {
                PrincipalConstraint::Is(t) | PrincipalConstraint::IsIn(t, _) => {
                    Some(t.basename().to_owned())
                }
                _ => None,
            });
            rules.push(Rule::new(&policy, description, scope).expect("a baseline rule"));
        }
        let mut every: Vec<&'static str> = actions::all().collect();
        every.sort_unstable();
        every.dedup();
        let by_class = classes
            .iter()
            .map(|class| {
                let mut index = HashMap::new();
                for action in &every {
                    let concerned: Vec<Rule> = rules
                        .iter()
                        .zip(&only_class)
                        .filter(|(rule, only)| {
                            only.as_deref().is_none_or(|c| c == *class) && rule.may_match(action)
                        })
                        .map(|(rule, _)| rule.clone())
                        .collect();
                    index.insert(*action, concerned);
                }
                index
            })
            .collect();
        Self {
            by_class,
            baseline: Compiled {
                set,
                statements,
                public: false,
                actions: None,
                rules,
            },
            hierarchy: action_hierarchy(),
            cedar: cedar_policy::Authorizer::new(),
            entities: action_entities(&type_name(ACTION)),
        }
    }

    /// The baseline rules, for `vallum authz explain` and the docs.
    #[must_use]
    pub fn baseline(&self) -> &Compiled {
        &self.baseline
    }

    fn class(principal: &Principal) -> usize {
        match principal {
            Principal::Root => 0,
            Principal::User { .. } => 1,
            Principal::Operator { .. } => 2,
            Principal::Grant { .. } => 3,
            Principal::Anonymous => 4,
        }
    }

    fn unknown(action: &str) -> Decision {
        Decision {
            allowed: false,
            explicit_deny: false,
            reasons: Vec::new(),
            errors: vec![format!(
                "{action} is not an action the decision point knows"
            )],
        }
    }

    /// Decides `action` by `principal` on `resource`, consulting the baseline rules that can
    /// concern the principal and the action, and `sources` (the principal's own policies,
    /// the bucket's policy), each statement that can match the action evaluated compiled.
    #[must_use]
    pub fn decide(
        &self,
        principal: &Principal,
        action: &str,
        resource: &Resource,
        facts: &Facts,
        sources: &[Source<'_>],
    ) -> Decision {
        let Some(baseline) = self.by_class[Self::class(principal)].get(action) else {
            return Self::unknown(action);
        };
        let parts = Parts::new(principal, resource);
        let request = eval::Request {
            principal: (parts.principal.0, &parts.principal.1),
            action: (ACTION, action),
            resource: (parts.resource.0, &parts.resource.1),
            context: parts.context(principal, resource, facts),
            hierarchy: &self.hierarchy,
        };
        // Built only if some rule is outside the compiled subset.
        let mut cedar: Option<Result<Request, RuleError>> = None;
        let mut tally = Tally::default();
        let sets = sources
            .iter()
            .filter(|src| src.compiled.may_match(action))
            .map(|src| (src.label, src.compiled.rules.as_slice()));
        for (label, rules) in std::iter::once(("platform", baseline.as_slice())).chain(sets) {
            for rule in rules.iter().filter(|r| r.may_match(action)) {
                let held = match &rule.program {
                    Ok(program) => program
                        .holds(&request)
                        .map_err(|e| RuleError::Compiled(e.to_string())),
                    Err(_) => match cedar
                        .get_or_insert_with(|| self.cedar_request(&parts, action, &request.context))
                    {
                        Ok(q) => self.cedar_holds(q, &rule.cedar),
                        Err(e) => Err(e.clone()),
                    },
                };
                match held {
                    Ok(true) => tally.held(label, &rule.id, rule.forbid, &rule.description),
                    Ok(false) => {}
                    Err(e) => tally.errors.push(format!("{}: {}: {e}", label, rule.id)),
                }
            }
        }
        tally.decision()
    }

    /// [`Self::decide`] by Cedar alone: the whole baseline and every source's whole policy
    /// set, with the whole context, nothing skipped. The reference the compiled evaluation
    /// is held to (`vallum authz explain` reports both; the differential tests compare them).
    #[must_use]
    pub fn decide_with_cedar(
        &self,
        principal: &Principal,
        action: &str,
        resource: &Resource,
        facts: &Facts,
        sources: &[Source<'_>],
    ) -> Decision {
        if !actions::is_known(action) {
            return Self::unknown(action);
        }
        let parts = Parts::new(principal, resource);
        let context = parts.context(principal, resource, facts);
        let request = match self.cedar_request(&parts, action, &context) {
            Ok(q) => q,
            Err(e) => {
                let mut tally = Tally::default();
                tally.errors.push(e.to_string());
                return tally.decision();
            }
        };
        let platform = Source {
            label: "platform",
            compiled: &self.baseline,
        };
        let mut tally = Tally::default();
        for src in std::iter::once(&platform).chain(sources) {
            let answer = self
                .cedar
                .is_authorized(&request, &src.compiled.set, &self.entities);
            let mut held: Vec<&PolicyId> = answer.diagnostics().reason().collect();
            held.sort_by_key(|id| id.to_string());
            for id in held {
                let Some(policy) = src.compiled.set.policy(id) else {
                    continue;
                };
                let description = src
                    .compiled
                    .statements
                    .iter()
                    .find(|s| s.id == id.to_string())
                    .and_then(|s| s.sid.clone())
                    .unwrap_or_default();
                tally.held(
                    src.label,
                    id.as_ref(),
                    policy.effect() == Effect::Forbid,
                    &description,
                );
            }
            for e in answer.diagnostics().errors() {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(failed) = e;
                tally
                    .errors
                    .push(format!("{}: {}: {e}", src.label, failed.policy_id()));
            }
        }
        tally.decision()
    }

    /// The Cedar request for `parts`, with every context attribute that has a value.
    fn cedar_request(
        &self,
        parts: &Parts<'_>,
        action: &str,
        context: &[Option<Val<'_>>; SLOT_COUNT],
    ) -> Result<Request, RuleError> {
        let uid =
            |t: &str, id: &str| EntityUid::from_type_name_and_id(type_name(t), EntityId::new(id));
        let pairs = eval::SLOTS.iter().zip(context).filter_map(|(name, v)| {
            let v = match (*v)? {
                Val::Bool(b) => RestrictedExpression::new_bool(b),
                Val::Long(n) => RestrictedExpression::new_long(n),
                Val::Str(s) => RestrictedExpression::new_string(s.to_owned()),
                Val::Entity(t, id) => RestrictedExpression::new_entity_uid(uid(t, id)),
            };
            Some(((*name).to_owned(), v))
        });
        let context = Context::from_pairs(pairs).map_err(|e| RuleError::Request(e.to_string()))?;
        Request::new(
            uid(parts.principal.0, &parts.principal.1),
            uid(ACTION, action),
            uid(parts.resource.0, &parts.resource.1),
            context,
            None,
        )
        .map_err(|e| RuleError::Request(e.to_string()))
    }

    /// Whether the one policy of `set` holds for `request`, by Cedar.
    fn cedar_holds(&self, request: &Request, set: &PolicySet) -> Result<bool, RuleError> {
        let answer = self.cedar.is_authorized(request, set, &self.entities);
        if let Some(e) = answer.diagnostics().errors().next() {
            return Err(RuleError::Cedar(e.to_string()));
        }
        Ok(answer.diagnostics().reason().next().is_some())
    }
}

/// Why a rule could not be evaluated: the decision records it (an error, never an allow).
#[derive(Debug, Clone, thiserror::Error)]
enum RuleError {
    /// The compiled evaluation failed (a type error in the rule's condition).
    #[error("{0}")]
    Compiled(String),
    /// The request could not be put to Cedar.
    #[error("{0}")]
    Request(String),
    /// Cedar's evaluation failed.
    #[error("{0}")]
    Cedar(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::policy::{Scope, compile};

    fn user(tenant: &str, name: &str, admin: bool) -> Principal {
        Principal::User {
            tenant: tenant.into(),
            name: name.into(),
            admin,
            guardian: false,
        }
    }

    fn object(tenant: &str, key: &str) -> Resource {
        Resource::Object {
            tenant: tenant.into(),
            bucket: "photos".into(),
            key: key.into(),
        }
    }

    #[test]
    fn the_baseline_index_keeps_class_limited_rules_to_their_class() {
        // The index is built from Cedar's own principal constraint; the policy text is the
        // independent oracle here. A rule limited to a class is indexed for that class alone,
        // so a request is never judged against another class's rules (and the index is not
        // every rule for everyone).
        let a = Authorizer::new();
        let classes = ["Root", "User", "Operator", "Grant", "Anonymous"];
        let mut limited = 0;
        for (i, class) in classes.iter().enumerate() {
            for (action, rules) in &a.by_class[i] {
                for rule in rules {
                    let text = a
                        .baseline
                        .statements
                        .iter()
                        .find(|s| s.id == rule.id)
                        .map(|s| s.cedar.clone())
                        .unwrap_or_default();
                    if text.contains("(principal is Vallum::") {
                        limited += 1;
                        assert!(
                            text.contains(&format!("(principal is Vallum::{class},")),
                            "rule {} is indexed for {class} on {action}: {text}",
                            rule.id
                        );
                    }
                }
            }
        }
        assert!(limited > 0, "no class-limited baseline rule was indexed");
        let counts: Vec<usize> = a
            .by_class
            .iter()
            .map(|m| m.values().map(Vec::len).sum())
            .collect();
        assert!(
            counts.iter().any(|&c| c != counts[0]),
            "every class got the same rules ({counts:?}): the index filters nothing"
        );
    }

    #[test]
    fn baseline_rules_separate_tenants_operators_and_the_root() {
        let a = Authorizer::new();
        let f = Facts::default();
        let yes = |p: &Principal, act: &str, r: &Resource| a.decide(p, act, r, &f, &[]).allowed;
        assert!(yes(
            &user("acme", "admin", true),
            "s3:GetObject",
            &object("acme", "k")
        ));
        assert!(!yes(
            &user("acme", "admin", true),
            "s3:GetObject",
            &object("other", "k")
        ));
        assert!(!yes(
            &user("acme", "bob", false),
            "s3:GetObject",
            &object("acme", "k")
        ));
        assert!(yes(
            &Principal::Root,
            "s3:GetObject",
            &object("default", "k")
        ));
        assert!(!yes(&Principal::Root, "s3:GetObject", &object("acme", "k")));
        assert!(yes(
            &Principal::Root,
            "vallum:CreateTenant",
            &Resource::Platform
        ));
        let op = Principal::Operator {
            name: "olga".into(),
        };
        assert!(yes(&op, "vallum:ManageSites", &Resource::Platform));
        assert!(!yes(&op, "s3:GetObject", &object("acme", "k")));
        assert!(!yes(&op, "kms:CreateKey", &Resource::Tenant("acme".into())));
        assert!(yes(
            &op,
            "vallum:RequestAccess",
            &Resource::Tenant("acme".into())
        ));
        // An admin who is not a guardian cannot approve.
        let d = a.decide(
            &user("acme", "admin", true),
            "vallum:ApproveAccessRequest",
            &Resource::Tenant("acme".into()),
            &f,
            &[],
        );
        assert!(!d.allowed && d.explicit_deny);
        assert_eq!(d.reasons[0].policy, "guardians-only");
        assert!(!yes(
            &Principal::Anonymous,
            "vallum:ListTenants",
            &Resource::Platform
        ));
        // Unknown actions are denied with an error, not ignored.
        let d = a.decide(
            &Principal::Root,
            "s3:Teleport",
            &Resource::Platform,
            &f,
            &[],
        );
        assert!(!d.allowed && !d.errors.is_empty());
    }

    #[test]
    fn bucket_policy_allows_and_explicit_deny_wins() {
        let a = Authorizer::new();
        let doc = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "ReadForBob", "Effect": "Allow",
                 "Principal": {"AWS": "arn:aws:iam::acme:user/bob"},
                 "Action": ["s3:GetObject", "s3:ListBucket"],
                 "Resource": ["arn:aws:s3:::photos", "arn:aws:s3:::photos/*"]},
                {"Sid": "NoSecrets", "Effect": "Deny", "Principal": "*",
                 "Action": "s3:*", "Resource": "arn:aws:s3:::photos/secret/*"},
                {"Sid": "OfficeOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                 "Resource": "arn:aws:s3:::photos/*",
                 "Condition": {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8"]}}}
            ]
        });
        let c = compile(
            &doc,
            Scope::Bucket {
                tenant: "acme",
                bucket: "photos",
                restrict_public: true,
            },
            "bucket:photos#",
        )
        .unwrap();
        let src = [Source {
            label: "bucket:photos",
            compiled: &c,
        }];
        let office = Facts {
            source_ip: Some("10.1.2.3".parse().unwrap()),
            ..Facts::default()
        };
        let home = Facts {
            source_ip: Some("192.0.2.1".parse().unwrap()),
            ..Facts::default()
        };
        let bob = user("acme", "bob", false);
        let d = a.decide(
            &bob,
            "s3:GetObject",
            &object("acme", "a.jpg"),
            &office,
            &src,
        );
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.reasons[0].description, "ReadForBob");
        let d = a.decide(
            &bob,
            "s3:GetObject",
            &object("acme", "secret/x"),
            &office,
            &src,
        );
        assert!(!d.allowed && d.explicit_deny);
        assert_eq!(d.reasons[0].description, "NoSecrets");
        let d = a.decide(&bob, "s3:GetObject", &object("acme", "a.jpg"), &home, &src);
        assert!(!d.allowed && d.explicit_deny);
        // Even the tenant's admin is bound by the bucket's explicit deny.
        let admin = user("acme", "root", true);
        assert!(
            !a.decide(
                &admin,
                "s3:GetObject",
                &object("acme", "secret/x"),
                &office,
                &src
            )
            .allowed
        );
        assert!(
            a.decide(&admin, "s3:PutObject", &object("acme", "x"), &office, &src)
                .allowed
        );
        let carol = user("acme", "carol", false);
        assert!(
            !a.decide(
                &carol,
                "s3:GetObject",
                &object("acme", "a.jpg"),
                &office,
                &src
            )
            .allowed
        );
    }

    /// A small deterministic generator (xorshift), so a failure reproduces.
    struct Dice(u64);

    impl Dice {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[usize::try_from(self.next() % items.len() as u64).unwrap()]
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    /// A random IAM statement from the forms the translation supports.
    fn statement(d: &mut Dice, bucket_policy: bool) -> serde_json::Value {
        use serde_json::json;
        let mut st = serde_json::Map::new();
        st.insert("Effect".into(), json!(d.pick(&["Allow", "Allow", "Deny"])));
        if bucket_policy {
            let principals = [
                json!("*"),
                json!({"AWS": "arn:aws:iam::acme:user/bob"}),
                json!({"AWS": ["acme", "arn:aws:iam::acme:user/eve"]}),
                json!({"AWS": "arn:aws:iam::acme:root"}),
                json!({"AWS": ["*"]}),
            ];
            st.insert("Principal".into(), d.pick(&principals).clone());
        }
        let actions = [
            json!("s3:GetObject"),
            json!("s3:*"),
            json!(["s3:Get*", "s3:ListBucket"]),
            json!("*"),
            json!("s3:get*"),
            json!(["s3:PutObject", "s3:DeleteObject"]),
        ];
        let name = if d.chance(25) { "NotAction" } else { "Action" };
        st.insert(name.into(), d.pick(&actions).clone());
        let resources = if bucket_policy {
            vec![
                json!("arn:aws:s3:::photos/*"),
                json!("arn:aws:s3:::photos"),
                json!(["arn:aws:s3:::photos", "arn:aws:s3:::photos/a/*"]),
                json!("*"),
                json!("arn:aws:s3:::photos/*x"),
            ]
        } else {
            vec![
                json!("arn:aws:s3:::photos/home/${aws:username}/*"),
                json!("arn:aws:s3:::*"),
                json!("*"),
                json!(["arn:aws:s3:::photos", "arn:aws:s3:::photos/a/*"]),
            ]
        };
        let name = if d.chance(20) {
            "NotResource"
        } else {
            "Resource"
        };
        st.insert(name.into(), d.pick(&resources).clone());
        let conditions = [
            json!({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
            json!({"NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "2001:db8::/32"]}}),
            json!({"IpAddress": {"aws:SourceIp": ["::1", "10.1.2.3/32"]}}),
            json!({"Bool": {"aws:SecureTransport": "false"}}),
            json!({"StringLike": {"s3:prefix": ["home/*", ""]}}),
            json!({"StringEqualsIfExists": {"s3:delimiter": "/"}}),
            json!({"NumericLessThan": {"s3:max-keys": "100"}}),
            json!({"NumericGreaterThanEqualsIfExists": {"s3:max-keys": 10}}),
            json!({"DateGreaterThan": {"aws:CurrentTime": "2026-06-01T00:00:00Z"}}),
            json!({"DateLessThanEquals": {"aws:EpochTime": "1800000000"}}),
            json!({"Null": {"s3:prefix": "true"}}),
            json!({"Null": {"aws:Referer": "false"}}),
            json!({"StringNotLike": {"aws:UserAgent": "*curl*"}}),
            json!({"StringEquals": {"aws:Referer": "https://intranet.example/"}}),
            json!({"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}}),
            json!({"StringLike": {"aws:username": "b*"}}),
        ];
        if d.chance(60) {
            let mut c = serde_json::Map::new();
            for _ in 0..=d.next() % 2 {
                if let serde_json::Value::Object(one) = d.pick(&conditions).clone() {
                    c.extend(one);
                }
            }
            st.insert("Condition".into(), serde_json::Value::Object(c));
        }
        serde_json::Value::Object(st)
    }

    /// Policies in the compiled subset that fail to evaluate for some requests (a missing
    /// attribute, the wrong types), and ones outside it (evaluated by Cedar).
    fn hand_written() -> Compiled {
        let texts = [
            r#"permit(principal, action == Vallum::Action::"s3:GetObject", resource) when { context.prefix == "x" };"#,
            r#"forbid(principal is Vallum::User, action, resource) when { context.max_keys > 5 };"#,
            r#"permit(principal, action in [Vallum::Action::"s3:ListBucket", Vallum::Action::"s3:GetObject"], resource) when { context.arn < 3 };"#,
            r#"permit(principal, action, resource) when { if context.secure then context.bucket like "ph*" else context.sse == "x" };"#,
            r#"forbid(principal, action, resource) when { action in Vallum::Action::"group:s3" && context.bucket != "photos" && context has ip4 && context.ip4 >= 167772160 };"#,
            r#"permit(principal == Vallum::Operator::"op1", action, resource) unless { context.epoch_ms >= 1800000000000 };"#,
            r#"permit(principal, action, resource) when { ip("10.0.0.0/8").isInRange(ip("10.1.1.1")) && context.admin };"#,
            r#"forbid(principal, action, resource) when { principal.clearance > 3 };"#,
            r#"permit(principal, action, resource is Vallum::Object) when { context.nothing };"#,
        ];
        let mut set = PolicySet::new();
        let mut rules = Vec::new();
        let mut statements = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let p = Policy::parse(Some(PolicyId::new(format!("hand{i}"))), *t).unwrap();
            set.add(p.clone()).unwrap();
            rules.push(Rule::new(&p, String::new(), None).unwrap());
            statements.push(crate::iam::policy::StatementInfo {
                id: format!("hand{i}"),
                sid: None,
                effect: String::new(),
                cedar: (*t).to_owned(),
            });
        }
        assert_eq!(
            rules.iter().filter(|r| r.program.is_err()).count(),
            2,
            "ip() and an entity attribute are outside the compiled subset"
        );
        Compiled {
            set,
            statements,
            public: false,
            actions: None,
            rules,
        }
    }

    fn sorted(d: &Decision) -> (bool, bool, Vec<Reason>, Vec<String>) {
        let mut reasons = d.reasons.clone();
        reasons.sort_by(|a, b| (&a.source, &a.policy).cmp(&(&b.source, &b.policy)));
        // Which policies failed: `<source>: <policy id>: <message>`.
        let mut failed: Vec<String> = d
            .errors
            .iter()
            .map(|e| e.splitn(3, ": ").take(2).collect::<Vec<_>>().join(": "))
            .collect();
        failed.sort();
        (d.allowed, d.explicit_deny, reasons, failed)
    }

    #[test]
    fn compiled_evaluation_decides_exactly_as_cedar() {
        let a = Authorizer::new();
        for rule in &a.baseline().rules {
            assert!(rule.program.is_ok(), "baseline {} is compiled", rule.id);
        }
        let mut d = Dice(0x005e_ed0f_ca11);
        let mut sets: Vec<(String, Compiled)> = Vec::new();
        for i in 0..60 {
            let bucket = i % 3 != 0;
            let n = 1 + d.next() % 4;
            let doc = serde_json::json!({
                "Statement": (0..n).map(|_| statement(&mut d, bucket)).collect::<Vec<_>>()
            });
            let scope = if bucket {
                Scope::Bucket {
                    tenant: "acme",
                    bucket: "photos",
                    restrict_public: d.chance(50),
                }
            } else {
                Scope::Identity {
                    tenant: "acme",
                    user: "bob",
                }
            };
            let c = compile(&doc, scope, &format!("p{i}#")).unwrap();
            for rule in &c.rules {
                assert!(rule.program.is_ok(), "{} is compiled: {doc}", rule.id);
            }
            let label = if bucket {
                "bucket:photos"
            } else {
                "identity:acme/bob"
            };
            sets.push((label.to_owned(), c));
        }
        let grant: crate::iam::lockbox::AccessRequest = serde_json::from_value(serde_json::json!({
            "id": "lb-1", "operator": "op1",
            "spec": {"tenant": "acme", "scope": {"bucket": "photos", "prefix": "a/", "operations": ["read", "list"]},
                     "purpose": "p", "ticket": "t", "duration_secs": 60},
            "charter_version": 1, "approvals_required": 1, "state": "approved",
            "created_ms": 0, "expires_ms": 1_790_000_000_000i64
        }))
        .unwrap();
        let grant = grant.compile().unwrap();
        assert!(grant.rules[0].program.is_ok());
        let hand = hand_written();
        let principals = [
            Principal::Root,
            user("acme", "bob", false),
            user("acme", "admin", true),
            Principal::User {
                tenant: "acme".into(),
                name: "gina".into(),
                admin: false,
                guardian: true,
            },
            user("other", "eve", true),
            Principal::Operator { name: "op1".into() },
            Principal::Grant {
                id: "lb-1".into(),
                operator: "op1".into(),
                tenant: "acme".into(),
            },
            Principal::Anonymous,
        ];
        let mut acts: Vec<&str> = actions::all().collect();
        acts.sort_unstable();
        acts.dedup();
        let s3 = [
            "s3:GetObject",
            "s3:PutObject",
            "s3:ListBucket",
            "s3:DeleteObject",
        ];
        let resources = [
            Resource::Platform,
            Resource::Tenant("acme".into()),
            Resource::Tenant("other".into()),
            Resource::Bucket {
                tenant: "acme".into(),
                bucket: "photos".into(),
            },
            object("acme", "a/x.jpg"),
            object("acme", "secret/y"),
            object("acme", "home/bob/z"),
            object("acme", "é*?x"),
            object("other", "a/x.jpg"),
            Resource::Bucket {
                tenant: "default".into(),
                bucket: "logs".into(),
            },
        ];
        // Range edges as well as addresses inside and outside.
        let ips: [Option<IpAddr>; 10] = [
            None,
            Some("10.1.2.3".parse().unwrap()),
            Some("10.0.0.0".parse().unwrap()),
            Some("10.255.255.255".parse().unwrap()),
            Some("9.255.255.255".parse().unwrap()),
            Some("11.0.0.0".parse().unwrap()),
            Some("192.0.2.5".parse().unwrap()),
            Some("2001:db8::1".parse().unwrap()),
            Some("::ffff:10.0.0.1".parse().unwrap()),
            Some("::1".parse().unwrap()),
        ];
        let text = |d: &mut Dice, options: &[&str]| {
            let v = *d.pick(options);
            (!v.is_empty()).then(|| v.trim_start_matches('-').to_owned())
        };
        let (mut allowed, mut explicit, mut errors, mut fallbacks) = (0, 0, 0, 0);
        for round in 0..30_000 {
            let p = d.pick(&principals);
            let action = if d.chance(60) {
                *d.pick(&s3)
            } else {
                *d.pick(&acts)
            };
            let r = d.pick(&resources);
            let facts = Facts {
                secure: d.chance(50),
                source_ip: *d.pick(&ips),
                // The grant's expiry and the policies' dates, and either side of them.
                now_ms: *d.pick(&[
                    1_700_000_000_000i64,
                    1_780_272_000_000,
                    1_785_000_000_000,
                    1_790_000_000_000,
                    1_800_000_000_000,
                    1_800_000_000_001,
                    1_900_000_000_000,
                ]),
                prefix: text(&mut d, &["", "home/bob/", "-", "a/", "other/"]),
                delimiter: text(&mut d, &["", "/", "-"]),
                max_keys: *d.pick(&[None, Some(5), Some(6), Some(10), Some(100), Some(1000)]),
                user_agent: text(&mut d, &["", "curl/8.5", "aws-cli/2"]),
                referer: text(&mut d, &["", "https://intranet.example/"]),
                sse: text(&mut d, &["", "AES256", "aws:kms"]),
            };
            let (label, c) = d.pick(&sets);
            let (label2, c2) = d.pick(&sets);
            let mut sources = vec![Source { label, compiled: c }];
            if d.chance(50) {
                sources.push(Source {
                    label: label2,
                    compiled: c2,
                });
            }
            if matches!(p, Principal::Grant { .. }) {
                sources.push(Source {
                    label: "grant:lb-1",
                    compiled: &grant,
                });
            }
            let with_hand = d.chance(15);
            if with_hand {
                sources.push(Source {
                    label: "hand",
                    compiled: &hand,
                });
            }
            let fast = a.decide(p, action, r, &facts, &sources);
            let cedar = a.decide_with_cedar(p, action, r, &facts, &sources);
            assert_eq!(
                sorted(&fast),
                sorted(&cedar),
                "round {round}: {p:?} {action} {r:?} {facts:?}\nsources: {:#?}",
                sources
                    .iter()
                    .map(|s| (s.label, &s.compiled.statements))
                    .collect::<Vec<_>>()
            );
            allowed += usize::from(fast.allowed);
            explicit += usize::from(fast.explicit_deny);
            errors += usize::from(!fast.errors.is_empty());
            fallbacks += usize::from(with_hand);
        }
        // The comparison covered every kind of answer.
        assert!(allowed > 1000, "allowed {allowed}");
        assert!(explicit > 1000, "explicit denies {explicit}");
        assert!(errors > 100, "errors {errors}");
        assert!(fallbacks > 1000, "with Cedar-evaluated rules {fallbacks}");
    }
}
