//! The decision point: every S3 and admin call asks [`Authorizer::decide`] whether this
//! principal may take this action on this resource, and gets a [`Decision`] that names the
//! policies that decided it.
//!
//! Three Cedar policy sets are evaluated for a request, each small: the platform's baseline
//! rules ([`baseline_text`]), the principal's own policies (a user's identity policy, or a
//! lockbox grant's scope), and the bucket's policy. Any `forbid` that holds denies (an explicit
//! deny wins), then any `permit` that holds allows, else the request is denied. An evaluation
//! error denies too: a policy that cannot be evaluated never lets a request through.

use std::net::IpAddr;
use std::str::FromStr;

use std::collections::HashSet;

use cedar_policy::{
    Context, Effect, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicyId,
    PolicySet, Request, RestrictedExpression,
};
use serde::Serialize;

use super::actions;
use super::model::DEFAULT_TENANT;
use super::policy::Compiled;

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
    ("group:customer-data", &[actions::S3, KMS]),
    ("group:s3", &[actions::S3]),
];

const GUARDIAN_READS: &[&str] = &[
    "vallum:GetCharter",
    "vallum:ListAccessRequests",
    "vallum:GetAccessRequest",
    "vallum:RevokeGrant",
];

const KMS: &[&str] = &[
    "kms:ListKeys",
    "kms:CreateKey",
    "kms:DescribeKey",
    "kms:RotateKey",
    "kms:DisableKey",
    "kms:EnableKey",
    "kms:ScheduleKeyDeletion",
    "kms:DestroyKey",
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

struct Types {
    root: EntityTypeName,
    user: EntityTypeName,
    operator: EntityTypeName,
    grant: EntityTypeName,
    anonymous: EntityTypeName,
    action: EntityTypeName,
    platform: EntityTypeName,
    tenant: EntityTypeName,
    bucket: EntityTypeName,
    object: EntityTypeName,
}

/// The decision point's fixed part: the baseline rules and the Cedar evaluator.
pub struct Authorizer {
    baseline: Compiled,
    /// The baseline split by the principal class it can apply to (root, user, operator,
    /// grant, anonymous), so a request evaluates only the rules that can concern it.
    by_class: Vec<std::collections::HashMap<&'static str, Compiled>>,
    cedar: cedar_policy::Authorizer,
    entities: Entities,
    types: Types,
    /// Decisions already made, by everything they depend on (see [`Authorizer::decide_cached`]).
    cache: std::sync::Mutex<(u64, std::collections::HashMap<String, Decision>)>,
}

/// Decisions kept at most (the cache starts over when full, and whenever the policies change).
pub const MAX_CACHED_DECISIONS: usize = 16_384;

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
        // (policy, its text, the actions it can apply to: `None` any).
        let mut rules: Vec<(
            Policy,
            super::policy::StatementInfo,
            Option<Vec<&'static str>>,
        )> = Vec::new();
        for p in parsed.policies() {
            let id = p.annotation("id").unwrap_or("baseline").to_owned();
            let description = p.annotation("description").unwrap_or("").to_owned();
            let src = p.to_string();
            let info = super::policy::StatementInfo {
                id: id.clone(),
                sid: Some(description),
                effect: if p.effect() == Effect::Permit {
                    "Allow"
                } else {
                    "Deny"
                }
                .into(),
                cedar: src.clone(),
            };
            let scope = GROUPS
                .iter()
                .find(|(g, _)| {
                    src.contains(&format!("action in Vallum::Action::\"{g}\", resource"))
                })
                .map(|(_, lists)| lists.iter().flat_map(|l| l.iter().copied()).collect());
            let policy = Policy::parse(Some(PolicyId::new(&id)), &src).expect("baseline policy");
            set.add(policy.clone()).expect("unique baseline ids");
            statements.push(info.clone());
            rules.push((policy, info, scope));
        }
        let mut every: Vec<&'static str> = actions::all().collect();
        every.sort_unstable();
        every.dedup();
        // The baseline indexed by principal class and action: a request evaluates only the
        // rules that can concern it.
        let by_class = classes
            .iter()
            .map(|class| {
                let mut index = std::collections::HashMap::new();
                for action in &every {
                    let mut c = Compiled {
                        set: PolicySet::new(),
                        statements: Vec::new(),
                        public: false,
                        actions: None,
                        parts: Vec::new(),
                        context_bits: 0,
                    };
                    for (policy, info, scope) in &rules {
                        let only = info.cedar.contains("(principal is Vallum::");
                        let class_ok = !only
                            || info
                                .cedar
                                .contains(&format!("(principal is Vallum::{class},"));
                        let action_ok = scope.as_ref().is_none_or(|s| s.contains(action));
                        if class_ok && action_ok {
                            c.set.add(policy.clone()).expect("unique baseline ids");
                            c.statements.push(info.clone());
                        }
                    }
                    index.insert(*action, c.with_needs());
                }
                index
            })
            .collect();
        let action_type = type_name("Vallum::Action");
        Self {
            by_class,
            baseline: Compiled {
                set,
                statements,
                public: false,
                actions: None,
                parts: Vec::new(),
                context_bits: 0,
            },
            cedar: cedar_policy::Authorizer::new(),
            entities: action_entities(&action_type),
            cache: std::sync::Mutex::new((0, std::collections::HashMap::new())),
            types: Types {
                root: type_name("Vallum::Root"),
                user: type_name("Vallum::User"),
                operator: type_name("Vallum::Operator"),
                grant: type_name("Vallum::Grant"),
                anonymous: type_name("Vallum::Anonymous"),
                action: type_name("Vallum::Action"),
                platform: type_name("Vallum::Platform"),
                tenant: type_name("Vallum::Tenant"),
                bucket: type_name("Vallum::Bucket"),
                object: type_name("Vallum::Object"),
            },
        }
    }

    /// The baseline rules, for `vallum authz explain` and the docs.
    #[must_use]
    pub fn baseline(&self) -> &Compiled {
        &self.baseline
    }

    fn uid(t: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(t.clone(), EntityId::new(id))
    }

    fn principal_uid(&self, p: &Principal) -> EntityUid {
        let t = &self.types;
        match p {
            Principal::Root => Self::uid(&t.root, "root"),
            Principal::User { tenant, name, .. } => Self::uid(&t.user, &format!("{tenant}/{name}")),
            Principal::Operator { name } => Self::uid(&t.operator, name),
            Principal::Grant { id, .. } => Self::uid(&t.grant, id),
            Principal::Anonymous => Self::uid(&t.anonymous, "anonymous"),
        }
    }

    fn resource_uid(&self, r: &Resource) -> EntityUid {
        let t = &self.types;
        match r {
            Resource::Platform => Self::uid(&t.platform, "vallum"),
            Resource::Tenant(id) => Self::uid(&t.tenant, id),
            Resource::Bucket { tenant, bucket } => {
                Self::uid(&t.bucket, &format!("{tenant}/{bucket}"))
            }
            Resource::Object {
                tenant,
                bucket,
                key,
            } => Self::uid(&t.object, &format!("{tenant}/{bucket}/{key}")),
        }
    }

    fn context(
        p: &Principal,
        action: &str,
        r: &Resource,
        f: &Facts,
        needs: u32,
    ) -> Result<Context, String> {
        let want = |a: &str| super::policy::reads(needs, a);
        let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
        let (admin, guardian, username) = match p {
            Principal::User {
                admin,
                guardian,
                name,
                ..
            } => (*admin, *guardian, Some(name.as_str())),
            _ => (false, false, None),
        };
        let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(12);
        let mut put = |k: &str, v: &dyn Fn() -> RestrictedExpression| {
            if want(k) {
                pairs.push((k.to_owned(), v()));
            }
        };
        put("principal_tenant", &|| s(p.home_tenant()));
        put("resource_tenant", &|| s(r.tenant()));
        put("admin", &|| RestrictedExpression::new_bool(admin));
        put("guardian", &|| RestrictedExpression::new_bool(guardian));
        put("arn", &|| s(&r.arn()));
        put("bucket", &|| s(r.bucket().unwrap_or("")));
        put("secure", &|| RestrictedExpression::new_bool(f.secure));
        put("epoch_ms", &|| RestrictedExpression::new_long(f.now_ms));
        // IAM matches action names case-insensitively: policies test this.
        put("action", &|| s(&action.to_ascii_lowercase()));
        let mut opt = |k: &str, v: Option<&str>| {
            if let Some(v) = v
                && want(k)
            {
                pairs.push((k.to_owned(), s(v)));
            }
        };
        opt("prefix", f.prefix.as_deref());
        opt("delimiter", f.delimiter.as_deref());
        opt("user_agent", f.user_agent.as_deref());
        opt("referer", f.referer.as_deref());
        opt("sse", f.sse.as_deref());
        opt("username", username);
        if let Some(n) = f.max_keys
            && want("max_keys")
        {
            pairs.push(("max_keys".into(), RestrictedExpression::new_long(n)));
        }
        // The client's address as integers (see `policy::ip_range`).
        match f
            .source_ip
            .map(|ip| ip.to_canonical())
            .filter(|_| want("ip"))
        {
            Some(IpAddr::V4(v4)) => {
                pairs.push((
                    "ip4".into(),
                    RestrictedExpression::new_long(i64::from(u32::from(v4))),
                ));
            }
            Some(IpAddr::V6(v6)) => {
                let n = u128::from(v6);
                for i in 0..4u32 {
                    let word = (n >> (96 - 32 * i)) & u128::from(u32::MAX);
                    pairs.push((
                        format!("ip6_{i}"),
                        RestrictedExpression::new_long(i64::try_from(word).unwrap_or(0)),
                    ));
                }
            }
            None => {}
        }
        Context::from_pairs(pairs).map_err(|e| e.to_string())
    }

    /// [`Self::decide`], remembering the answer. A decision is a pure function of the policy
    /// sets (named by `generation`, which changes whenever any policy does), the principal, the
    /// action, the resource and the context attributes the sets read; the cache key is exactly
    /// those. A set that reads the time (`aws:CurrentTime`, a grant's expiry) puts the current
    /// millisecond in the key, so such decisions are in effect never reused.
    #[must_use]
    pub fn decide_cached(
        &self,
        generation: u64,
        principal: &Principal,
        action: &str,
        resource: &Resource,
        facts: &Facts,
        sources: &[Source<'_>],
    ) -> Decision {
        let Some((rules, needs)) = self.rules_and_needs(principal, action, sources) else {
            return self.decide(principal, action, resource, facts, sources);
        };
        let key = self.cache_key(
            needs, generation, principal, action, resource, facts, sources,
        );
        if let Ok(cache) = self.cache.lock()
            && cache.0 == generation
            && let Some(d) = cache.1.get(&key)
        {
            return d.clone();
        }
        let d = self.evaluate(rules, needs, principal, action, resource, facts, sources);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.0 != generation || cache.1.len() >= MAX_CACHED_DECISIONS {
                cache.1.clear();
                cache.0 = generation;
            }
            cache.1.insert(key, d.clone());
        }
        d
    }

    #[allow(clippy::too_many_arguments)]
    fn cache_key(
        &self,
        needs: u32,
        generation: u64,
        principal: &Principal,
        action: &str,
        resource: &Resource,
        facts: &Facts,
        sources: &[Source<'_>],
    ) -> String {
        let want = |a: &str| super::policy::reads(needs, a);
        use std::fmt::Write;
        let mut k = String::with_capacity(160);
        let _ = write!(
            k,
            "{generation}\u{1}{}\u{1}{action}\u{1}{}",
            self.principal_uid(principal),
            self.resource_uid(resource)
        );
        for label in sources.iter().map(|s| s.label) {
            let _ = write!(k, "\u{1}{label}");
        }
        let (admin, guardian) = match principal {
            Principal::User {
                admin, guardian, ..
            } => (*admin, *guardian),
            _ => (false, false),
        };
        let mut add = |name: &str, v: &dyn std::fmt::Display| {
            if want(name) {
                let _ = write!(k, "\u{1}{name}={v}");
            }
        };
        add("admin", &admin);
        add("guardian", &guardian);
        add("secure", &facts.secure);
        add("epoch_ms", &facts.now_ms);
        let opt = |v: &Option<String>| {
            v.clone()
                .map_or_else(|| "\u{0}".to_owned(), |s| format!("+{s}"))
        };
        add("prefix", &opt(&facts.prefix));
        add("delimiter", &opt(&facts.delimiter));
        add("user_agent", &opt(&facts.user_agent));
        add("referer", &opt(&facts.referer));
        add("sse", &opt(&facts.sse));
        add(
            "max_keys",
            &facts
                .max_keys
                .map_or_else(|| "\u{0}".to_owned(), |n| n.to_string()),
        );
        add(
            "ip",
            &facts
                .source_ip
                .map_or_else(|| "\u{0}".to_owned(), |ip| ip.to_string()),
        );
        k
    }

    /// The baseline rules that can concern `principal` taking `action`, and the context
    /// attributes they and the `sources` that can match read; `None` for an unknown action.
    fn rules_and_needs(
        &self,
        principal: &Principal,
        action: &str,
        sources: &[Source<'_>],
    ) -> Option<(&Compiled, u32)> {
        let rules = self.by_class[Self::class(principal)].get(action)?;
        let needs = sources
            .iter()
            .filter(|src| src.compiled.may_match(action))
            .fold(rules.context_bits, |acc, src| {
                acc | src.compiled.context_bits
            });
        Some((rules, needs))
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

    /// Decides `action` by `principal` on `resource`, consulting the baseline and `sources`
    /// (the principal's own policies, the bucket's policy).
    #[must_use]
    pub fn decide(
        &self,
        principal: &Principal,
        action: &str,
        resource: &Resource,
        facts: &Facts,
        sources: &[Source<'_>],
    ) -> Decision {
        match self.rules_and_needs(principal, action, sources) {
            Some((rules, needs)) => {
                self.evaluate(rules, needs, principal, action, resource, facts, sources)
            }
            _ => Decision {
                allowed: false,
                explicit_deny: false,
                reasons: Vec::new(),
                errors: vec![format!(
                    "{action} is not an action the decision point knows"
                )],
            },
        }
    }

    /// Evaluates the baseline `rules` and `sources`, with a context of only the attributes in
    /// `needs` (the ones they read).
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        rules: &Compiled,
        needs: u32,
        principal: &Principal,
        action: &str,
        resource: &Resource,
        facts: &Facts,
        sources: &[Source<'_>],
    ) -> Decision {
        let mut decision = Decision {
            allowed: false,
            explicit_deny: false,
            reasons: Vec::new(),
            errors: Vec::new(),
        };
        let platform = Source {
            label: "platform",
            compiled: rules,
        };
        let request =
            match Self::context(principal, action, resource, facts, needs).and_then(|ctx| {
                Request::new(
                    self.principal_uid(principal),
                    Self::uid(&self.types.action, action),
                    self.resource_uid(resource),
                    ctx,
                    None,
                )
                .map_err(|e| e.to_string())
            }) {
                Ok(r) => r,
                Err(e) => {
                    decision.errors.push(e);
                    return decision;
                }
            };
        let (mut permits, mut forbids) = (Vec::new(), Vec::new());
        for src in std::iter::once(&platform).chain(sources) {
            if !src.compiled.may_match(action) {
                continue;
            }
            // Statement by statement where the set is split, skipping those that cannot
            // concern this action; else the whole set.
            let whole = [&src.compiled.set];
            let sets: Vec<&PolicySet> = if src.compiled.parts.is_empty() {
                whole.to_vec()
            } else {
                src.compiled
                    .parts
                    .iter()
                    .filter(|p| p.actions.binary_search(&action).is_ok())
                    .map(|p| &p.set)
                    .collect()
            };
            for set in sets {
                let answer = self.cedar.is_authorized(&request, set, &self.entities);
                for id in answer.diagnostics().reason() {
                    let Some(policy) = set.policy(id) else {
                        continue;
                    };
                    let description = src
                        .compiled
                        .statements
                        .iter()
                        .find(|s| s.id == id.to_string())
                        .and_then(|s| s.sid.clone())
                        .unwrap_or_default();
                    let forbid = policy.effect() == Effect::Forbid;
                    let reason = Reason {
                        source: src.label.to_owned(),
                        policy: id.to_string(),
                        effect: if forbid { "forbid" } else { "permit" }.into(),
                        description,
                    };
                    if forbid {
                        forbids.push(reason);
                    } else {
                        permits.push(reason);
                    }
                }
                for e in answer.diagnostics().errors() {
                    decision.errors.push(format!("{}: {e}", src.label));
                }
            }
        }
        if !forbids.is_empty() {
            decision.explicit_deny = true;
            decision.reasons = forbids;
        } else if decision.errors.is_empty() && !permits.is_empty() {
            decision.allowed = true;
            decision.reasons = permits;
        }
        decision
    }
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
    fn cached_decisions_follow_everything_they_depend_on() {
        let a = Authorizer::new();
        let doc = serde_json::json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::acme:user/bob"},
             "Action": "s3:GetObject", "Resource": "arn:aws:s3:::photos/*",
             "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::acme:user/bob"},
             "Action": "s3:PutObject", "Resource": "arn:aws:s3:::photos/*",
             "Condition": {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}}
        ]});
        let c = compile(
            &doc,
            Scope::Bucket {
                tenant: "acme",
                bucket: "photos",
                restrict_public: true,
            },
            "b#",
        )
        .unwrap();
        let src = [Source {
            label: "bucket:photos",
            compiled: &c,
        }];
        let bob = user("acme", "bob", false);
        let at = |ip: &str, now_ms: i64| Facts {
            source_ip: Some(ip.parse().unwrap()),
            now_ms,
            ..Facts::default()
        };
        let get = |f: &Facts, g: u64| {
            a.decide_cached(g, &bob, "s3:GetObject", &object("acme", "x"), f, &src)
                .allowed
        };
        for _ in 0..2 {
            assert!(get(&at("10.1.1.1", 0), 1));
            assert!(!get(&at("192.0.2.1", 0), 1));
            assert!(
                !a.decide_cached(
                    1,
                    &user("acme", "eve", false),
                    "s3:GetObject",
                    &object("acme", "x"),
                    &at("10.1.1.1", 0),
                    &src
                )
                .allowed
            );
        }
        // The time is part of the key where a policy reads it.
        let put = |now_ms: i64| {
            a.decide_cached(
                1,
                &bob,
                "s3:PutObject",
                &object("acme", "x"),
                &at("10.1.1.1", now_ms),
                &src,
            )
            .allowed
        };
        assert!(put(1_800_000_000_000));
        assert!(!put(1_900_000_000_000));
        // Another generation (a policy changed) decides afresh: without the bucket's policy.
        assert!(
            !a.decide_cached(
                2,
                &bob,
                "s3:GetObject",
                &object("acme", "x"),
                &at("10.1.1.1", 0),
                &[]
            )
            .allowed
        );
        assert!(get(&at("10.1.1.1", 0), 3));
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
}
