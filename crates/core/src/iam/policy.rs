//! S3/IAM JSON policies (bucket policies and users' identity policies) translated into Cedar.
//!
//! Each statement becomes one Cedar policy: `Allow` a `permit`, `Deny` a `forbid`, so an
//! explicit deny wins as in AWS. `Action`/`NotAction` patterns expand over the action catalog;
//! `Resource`/`NotResource` ARNs match `context.arn` with Cedar's `like`; `Principal` names a
//! user of the tenant (`arn:aws:iam::<tenant>:user/<name>`), the tenant (`<tenant>` or
//! `arn:aws:iam::<tenant>:root`) or everyone (`*`); `Condition` operators map to Cedar
//! comparisons on context attributes, with AWS's rules for absent keys (a negated operator
//! and `…IfExists` hold when the key is absent; `Null` tests presence).
//!
//! What cannot be translated faithfully is refused with `MalformedPolicy`, never approximated:
//! the `?` wildcard, unknown condition keys or operators, set operators (`ForAnyValue:`),
//! and policy variables other than `${aws:username}` in identity policies.

use std::collections::BTreeMap;
use std::sync::Arc;

use cedar_policy::{Policy, PolicyId, PolicySet};
use serde_json::Value;

use super::IamError;
use super::actions;
use super::eval;

/// Largest policy document accepted (AWS's bucket-policy limit).
pub const MAX_POLICY_BYTES: usize = 20 * 1024;
/// Most statements in one policy.
pub const MAX_STATEMENTS: usize = 100;

/// Where a policy applies.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// A bucket policy of `bucket` (tenant-local name) in `tenant`.
    Bucket {
        /// Tenant.
        tenant: &'a str,
        /// Bucket.
        bucket: &'a str,
        /// RestrictPublicBuckets: a `*` principal covers only the tenant's own users.
        restrict_public: bool,
    },
    /// The identity policy of `user` in `tenant`.
    Identity {
        /// Tenant.
        tenant: &'a str,
        /// User name.
        user: &'a str,
    },
}

/// One translated statement, for decision traces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatementInfo {
    /// Cedar policy id.
    pub id: String,
    /// The statement's `Sid`, if any.
    pub sid: Option<String>,
    /// `Allow` or `Deny`.
    pub effect: String,
    /// The generated Cedar text.
    pub cedar: String,
}

/// A compiled policy document.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The Cedar policies, whole (what Cedar itself evaluates: `vallum authz explain`'s
    /// reference verdict and the differential tests).
    pub set: PolicySet,
    /// Each statement.
    pub statements: Vec<StatementInfo>,
    /// Whether an `Allow` grants everyone (a public policy).
    pub public: bool,
    /// Every action some statement can match, sorted (`None`: any). A request for another
    /// action skips the set: no statement of it could apply.
    pub actions: Option<Vec<&'static str>>,
    /// The statements one by one, as the decision point evaluates them.
    pub rules: Vec<Rule>,
}

/// One statement as the decision point evaluates it: compiled ([`eval::Program`]), or by
/// Cedar when it uses something outside the compiled subset; only for the actions it can
/// match.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Cedar policy id.
    pub id: String,
    /// A `forbid` (else a `permit`).
    pub forbid: bool,
    /// What it is (its description or statement Sid), for traces.
    pub description: String,
    /// The actions it can match, sorted (`None`: any).
    pub actions: Option<Vec<&'static str>>,
    /// The policy compiled, or why it is not (Cedar then evaluates `cedar`).
    pub program: Result<Arc<eval::Program>, eval::Unsupported>,
    /// The policy alone in a set, for Cedar.
    pub cedar: PolicySet,
}

impl Rule {
    /// The rule of `policy`.
    pub fn new(
        policy: &Policy,
        description: String,
        actions: Option<Vec<&'static str>>,
    ) -> Result<Self, Box<cedar_policy::PolicySetError>> {
        let mut cedar = PolicySet::new();
        cedar.add(policy.clone()).map_err(Box::new)?;
        Ok(Self {
            id: policy.id().to_string(),
            forbid: policy.effect() == cedar_policy::Effect::Forbid,
            description,
            actions,
            program: eval::Program::compile(policy).map(Arc::new),
            cedar,
        })
    }

    /// Whether the rule can match `action`.
    #[must_use]
    pub fn may_match(&self, action: &str) -> bool {
        self.actions
            .as_ref()
            .is_none_or(|a| a.binary_search(&action).is_ok())
    }
}

impl Compiled {
    /// Whether some statement can match `action`.
    #[must_use]
    pub fn may_match(&self, action: &str) -> bool {
        self.actions
            .as_ref()
            .is_none_or(|a| a.binary_search(&action).is_ok())
    }
}

fn malformed(msg: impl Into<String>) -> IamError {
    IamError::MalformedPolicy(msg.into())
}

/// A Cedar string literal.
pub(crate) fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        escape_into(&mut out, c);
    }
    out.push('"');
    out
}

fn escape_into(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        c => out.push(c),
    }
}

/// The body of a Cedar `like` pattern matching `text` literally (`*` escaped).
pub(crate) fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '*' {
            out.push_str("\\*");
        } else {
            escape_into(&mut out, c);
        }
    }
    out
}

/// A Cedar `like` pattern for an IAM wildcard pattern (`*` any run of characters).
fn like(pattern: &str) -> Result<String, IamError> {
    if pattern.contains('?') {
        return Err(malformed(format!(
            "{pattern:?}: the '?' wildcard has no faithful translation; use '*'"
        )));
    }
    let mut out = String::from("\"");
    for c in pattern.chars() {
        if c == '*' {
            out.push('*');
        } else {
            escape_into(&mut out, c);
        }
    }
    out.push('"');
    Ok(out)
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, IamError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                _ => Err(malformed(format!("{what}: every value must be a string"))),
            })
            .collect(),
        _ => Err(malformed(format!(
            "{what}: a string or a non-empty list of strings"
        ))),
    }
}

/// Condition values: strings, numbers or booleans, one or many, as text.
fn values(v: &Value, what: &str) -> Result<Vec<String>, IamError> {
    let one = |i: &Value| match i {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(malformed(format!(
            "{what}: values are strings, numbers or booleans"
        ))),
    };
    match v {
        Value::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        Value::Array(_) => Err(malformed(format!("{what}: an empty list of values"))),
        other => Ok(vec![one(other)?]),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Str,
    Num,
    Date,
    Bool,
    Ip,
}

/// Condition keys the context carries: (IAM key, context attribute, type).
pub const CONDITION_KEYS: &[(&str, &str)] = &[
    ("aws:SourceIp", "ip"),
    ("aws:SecureTransport", "secure"),
    ("aws:CurrentTime", "epoch_ms"),
    ("aws:EpochTime", "epoch_ms"),
    ("aws:username", "username"),
    ("aws:UserAgent", "user_agent"),
    ("aws:Referer", "referer"),
    ("s3:prefix", "prefix"),
    ("s3:delimiter", "delimiter"),
    ("s3:max-keys", "max_keys"),
    ("s3:x-amz-server-side-encryption", "sse"),
];

fn key_attr(key: &str) -> Result<(&'static str, KeyType), IamError> {
    let attr = CONDITION_KEYS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            let known: Vec<&str> = CONDITION_KEYS.iter().map(|(k, _)| *k).collect();
            malformed(format!(
                "condition key {key:?} is not supported; supported keys: {}",
                known.join(", ")
            ))
        })?;
    let ty = match attr {
        "ip" => KeyType::Ip,
        "secure" => KeyType::Bool,
        "epoch_ms" => KeyType::Date,
        "max_keys" => KeyType::Num,
        _ => KeyType::Str,
    };
    Ok((attr, ty))
}

fn date_ms(text: &str, key: &str) -> Result<i64, IamError> {
    if let Ok(secs) = text.parse::<i64>() {
        return secs
            .checked_mul(1000)
            .ok_or_else(|| malformed(format!("{key}: {text} is out of range")));
    }
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .or_else(|_| {
            time::Date::parse(
                text,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .map(|d| d.midnight().assume_utc())
        })
        .map_err(|_| {
            malformed(format!(
                "{key}: {text:?} is not an ISO 8601 date (2026-12-31T23:59:59Z) or epoch seconds"
            ))
        })?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| malformed(format!("{key}: {text} is out of range")))
}

/// A CIDR block (or one address) as a Cedar test of the client's address: IPv4 addresses are
/// `context.ip4` (one 32-bit integer), IPv6 ones `context.ip6_0..3` (four 32-bit words),
/// compared as ranges. Plain integers instead of Cedar's `ip()` extension, whose values cost
/// microseconds to build on every request.
fn ip_range(text: &str, key: &str) -> Result<String, IamError> {
    let (addr, bits) = text
        .split_once('/')
        .map_or((text, None), |(a, b)| (a, Some(b)));
    let ip: std::net::IpAddr = addr.parse().map_err(|_| {
        malformed(format!(
            "{key}: {text:?} is not an IP address or CIDR block"
        ))
    })?;
    let max: u32 = if ip.is_ipv4() { 32 } else { 128 };
    let bits: u32 = match bits {
        None => max,
        Some(b) => match b.parse::<u32>() {
            Ok(b) if b <= max => b,
            _ => {
                return Err(malformed(format!(
                    "{key}: {text:?} has a bad prefix length"
                )));
            }
        },
    };
    let range = |word: u32, covered: u32| -> Option<(u32, u32)> {
        if covered == 0 {
            return None;
        }
        let mask = if covered >= 32 {
            u32::MAX
        } else {
            !(u32::MAX >> covered)
        };
        Some((word & mask, (word & mask) | !mask))
    };
    let mut parts = Vec::new();
    match ip {
        std::net::IpAddr::V4(v4) => {
            parts.push("context has ip4".to_owned());
            if let Some((lo, hi)) = range(u32::from(v4), bits) {
                parts.push(format!("context.ip4 >= {lo} && context.ip4 <= {hi}"));
            }
        }
        std::net::IpAddr::V6(v6) => {
            parts.push("context has ip6_0".to_owned());
            let n = u128::from(v6);
            for i in 0..4u32 {
                let word = u32::try_from((n >> (96 - 32 * i)) & u128::from(u32::MAX)).unwrap_or(0);
                let covered = bits.saturating_sub(32 * i).min(32);
                if let Some((lo, hi)) = range(word, covered) {
                    parts.push(format!(
                        "context.ip6_{i} >= {lo} && context.ip6_{i} <= {hi}"
                    ));
                }
            }
        }
    }
    Ok(format!("({})", parts.join(" && ")))
}

/// Turns one condition value into a Cedar comparison.
type Matcher<'a> = Box<dyn Fn(&str) -> Result<String, IamError> + 'a>;

/// One condition operator over one key: the Cedar expression.
fn condition(op_full: &str, key: &str, raw: &Value) -> Result<String, IamError> {
    if op_full.contains(':') {
        return Err(malformed(format!(
            "{op_full}: set operators (ForAnyValue:, ForAllValues:) are not supported"
        )));
    }
    let (op, if_exists) = match op_full.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (op_full, false),
    };
    let (attr, ty) = key_attr(key)?;
    let vals = values(raw, &format!("{op_full} {key}"))?;
    let a = format!("context.{attr}");
    let has = if ty == KeyType::Ip {
        "(context has ip4 || context has ip6_0)".to_owned()
    } else {
        format!("context has {attr}")
    };
    if op == "Null" {
        let want = match vals.as_slice() {
            [v] if v == "true" => true,
            [v] if v == "false" => false,
            _ => return Err(malformed(format!("Null {key}: \"true\" or \"false\""))),
        };
        return Ok(if want { format!("!({has})") } else { has });
    }
    let (negated, matcher): (bool, Matcher<'_>) = match (op, ty) {
        ("StringEquals" | "StringNotEquals", KeyType::Str) => (
            op == "StringNotEquals",
            Box::new(|v: &str| Ok(format!("{a} == {}", lit(v)))),
        ),
        ("StringLike" | "StringNotLike", KeyType::Str) => (
            op == "StringNotLike",
            Box::new(|v: &str| Ok(format!("{a} like {}", like(v)?))),
        ),
        (
            "NumericEquals"
            | "NumericNotEquals"
            | "NumericLessThan"
            | "NumericLessThanEquals"
            | "NumericGreaterThan"
            | "NumericGreaterThanEquals",
            KeyType::Num,
        ) => {
            let cmp = comparison(op.trim_start_matches("Numeric"));
            (
                op == "NumericNotEquals",
                Box::new(move |v: &str| {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| malformed(format!("{op} {key}: {v:?} is not an integer")))?;
                    Ok(format!("{a} {cmp} {n}"))
                }),
            )
        }
        (
            "DateEquals"
            | "DateNotEquals"
            | "DateLessThan"
            | "DateLessThanEquals"
            | "DateGreaterThan"
            | "DateGreaterThanEquals",
            KeyType::Date,
        ) => {
            let cmp = comparison(op.trim_start_matches("Date"));
            (
                op == "DateNotEquals",
                Box::new(move |v: &str| Ok(format!("{a} {cmp} {}", date_ms(v, key)?))),
            )
        }
        ("Bool", KeyType::Bool) => (
            false,
            Box::new(|v: &str| match v.to_ascii_lowercase().as_str() {
                "true" => Ok(format!("{a} == true")),
                "false" => Ok(format!("{a} == false")),
                _ => Err(malformed(format!("Bool {key}: \"true\" or \"false\""))),
            }),
        ),
        ("IpAddress" | "NotIpAddress", KeyType::Ip) => {
            (op == "NotIpAddress", Box::new(|v: &str| ip_range(v, key)))
        }
        _ => {
            return Err(malformed(format!(
                "condition operator {op_full} does not apply to {key} (or is not supported)"
            )));
        }
    };
    let any: Vec<String> = vals.iter().map(|v| matcher(v)).collect::<Result<_, _>>()?;
    let any = format!("({})", any.join(" || "));
    Ok(if negated {
        // AWS: a negated operator holds when the key is absent.
        format!("(!({has}) || !{any})")
    } else if if_exists {
        format!("(!({has}) || {any})")
    } else {
        format!("({has} && {any})")
    })
}

fn comparison(suffix: &str) -> &'static str {
    match suffix {
        "Equals" => "==",
        "NotEquals" => "==",
        "LessThan" => "<",
        "LessThanEquals" => "<=",
        "GreaterThan" => ">",
        _ => ">=",
    }
}

fn action_set(patterns: &[String]) -> Result<Vec<&'static str>, IamError> {
    let mut out: Vec<&'static str> = Vec::new();
    for p in patterns {
        let lower = p.to_ascii_lowercase();
        let matches: Vec<&'static str> = actions::policy_catalog()
            .filter(|a| wildcard(&lower, &a.to_ascii_lowercase()))
            .collect();
        if matches.is_empty() {
            return Err(malformed(format!("Policy has invalid action: {p}")));
        }
        for m in matches {
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    Ok(out)
}

/// IAM wildcard match (`*` any run; `?` one character) for actions, which AWS matches
/// case-insensitively.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn substitute(text: &str, scope: Scope<'_>) -> Result<String, IamError> {
    if !text.contains("${") {
        return Ok(text.to_owned());
    }
    match scope {
        Scope::Identity { user, .. } => {
            let replaced = text.replace("${aws:username}", user);
            if replaced.contains("${") {
                Err(malformed(format!(
                    "{text:?}: only the ${{aws:username}} policy variable is supported"
                )))
            } else {
                Ok(replaced)
            }
        }
        Scope::Bucket { .. } => Err(malformed(format!(
            "{text:?}: policy variables are not supported in bucket policies"
        ))),
    }
}

fn resource_cond(patterns: &[String], scope: Scope<'_>) -> Result<String, IamError> {
    let mut parts = Vec::new();
    for p in patterns {
        let p = substitute(p, scope)?;
        if p == "*" {
            return Ok("true".into());
        }
        let Some(rest) = p.strip_prefix("arn:aws:s3:::") else {
            return Err(malformed(format!(
                "Policy has invalid resource: {p} (an arn:aws:s3::: ARN or *)"
            )));
        };
        if let Scope::Bucket { bucket, .. } = scope {
            let in_bucket = rest == bucket || rest.starts_with(&format!("{bucket}/"));
            if !in_bucket {
                return Err(malformed(format!(
                    "Policy has invalid resource: {p} is not in bucket {bucket}"
                )));
            }
        }
        parts.push(format!("context.arn like {}", like(&p)?));
    }
    Ok(format!("({})", parts.join(" || ")))
}

/// Narrowest prefix of an IPv4 range that still pins callers (AWS: wider is public).
const MIN_PINNING_V4_PREFIX: u8 = 8;
/// Narrowest prefix of an IPv6 range that still pins callers.
const MIN_PINNING_V6_PREFIX: u8 = 32;

/// Whether `values` (one CIDR or a list) are all fixed ranges narrow enough to count as
/// pinning the caller's address: no wildcard, no policy variable, no /0.
fn narrow_source_ips(values: &Value) -> bool {
    let list: Vec<&Value> = match values {
        Value::Array(items) if !items.is_empty() => items.iter().collect(),
        Value::String(_) => vec![values],
        _ => return false,
    };
    list.into_iter().all(|v| {
        let Some(text) = v.as_str() else {
            return false;
        };
        let (addr, prefix) = text.split_once('/').unwrap_or((text, ""));
        let Ok(addr) = addr.trim().parse::<std::net::IpAddr>() else {
            return false;
        };
        let (max, min) = match addr {
            std::net::IpAddr::V4(_) => (32, MIN_PINNING_V4_PREFIX),
            std::net::IpAddr::V6(_) => (128, MIN_PINNING_V6_PREFIX),
        };
        let prefix = if prefix.is_empty() {
            max
        } else {
            match prefix.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return false,
            }
        };
        prefix >= min
    })
}

fn principal_cond(v: &Value, scope: Scope<'_>) -> Result<(String, bool), IamError> {
    let Scope::Bucket {
        tenant,
        restrict_public,
        ..
    } = scope
    else {
        return Err(malformed(
            "identity policies have no Principal (they apply to their user)",
        ));
    };
    let everyone = if restrict_public {
        "(principal is Vallum::User)".to_owned()
    } else {
        "(principal is Vallum::User || principal is Vallum::Anonymous)".to_owned()
    };
    let names = match v {
        Value::String(s) if s == "*" => return Ok((everyone, true)),
        Value::Object(map) => {
            let mut names = Vec::new();
            for (k, v) in map {
                if k != "AWS" {
                    return Err(malformed(format!(
                        "Principal {k:?}: only \"AWS\" principals (users, tenants, *) exist here"
                    )));
                }
                names.extend(strings(v, "Principal.AWS")?);
            }
            names
        }
        _ => return Err(malformed("Principal: \"*\" or {\"AWS\": ...}")),
    };
    let mut parts = Vec::new();
    let mut public = false;
    for n in names {
        if n == "*" {
            public = true;
            parts.push(everyone.clone());
            continue;
        }
        let account = n
            .strip_prefix("arn:aws:iam::")
            .map(|rest| rest.split_once(':').map_or((rest, ""), |(a, r)| (a, r)));
        let (acct, rest) = match account {
            Some(x) => x,
            None => (n.as_str(), "root"),
        };
        if acct != tenant {
            return Err(malformed(format!(
                "Invalid principal in policy: {n} (principals of another tenant cannot be granted access)"
            )));
        }
        if rest == "root" {
            parts.push(format!(
                "(principal is Vallum::User && context.principal_tenant == {})",
                lit(tenant)
            ));
        } else if let Some(user) = rest.strip_prefix("user/") {
            super::model::check_name("user", user)
                .map_err(|e| malformed(format!("Invalid principal in policy: {n}: {e}")))?;
            parts.push(format!(
                "principal == Vallum::User::{}",
                lit(&format!("{tenant}/{user}"))
            ));
        } else {
            return Err(malformed(format!("Invalid principal in policy: {n}")));
        }
    }
    Ok((format!("({})", parts.join(" || ")), public))
}

/// Compiles `doc` (already size-checked JSON) for `scope`; policy ids start with `prefix`.
pub fn compile(doc: &Value, scope: Scope<'_>, prefix: &str) -> Result<Compiled, IamError> {
    let Value::Object(top) = doc else {
        return Err(malformed("a policy is a JSON object"));
    };
    for k in top.keys() {
        if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
            return Err(malformed(format!("unknown policy field {k:?}")));
        }
    }
    match top.get("Version").and_then(Value::as_str) {
        None | Some("2012-10-17" | "2008-10-17") => {}
        Some(v) => return Err(malformed(format!("unsupported policy Version {v:?}"))),
    }
    let statements: Vec<&Value> = match top.get("Statement") {
        Some(Value::Array(items)) if !items.is_empty() => items.iter().collect(),
        Some(obj @ Value::Object(_)) => vec![obj],
        _ => return Err(malformed("Statement: an object or a non-empty list")),
    };
    if statements.len() > MAX_STATEMENTS {
        return Err(malformed(format!(
            "a policy has at most {MAX_STATEMENTS} statements"
        )));
    }
    let mut set = PolicySet::new();
    let mut infos = Vec::new();
    let mut public = false;
    let mut covered: Vec<&'static str> = Vec::new();
    let mut rules: Vec<Rule> = Vec::new();
    let base = match scope {
        Scope::Bucket { tenant, bucket, .. } => format!(
            "context.resource_tenant == {} && context.bucket == {}",
            lit(tenant),
            lit(bucket)
        ),
        Scope::Identity { tenant, user } => format!(
            "context.resource_tenant == {} && principal == Vallum::User::{}",
            lit(tenant),
            lit(&format!("{tenant}/{user}"))
        ),
    };
    for (i, st) in statements.into_iter().enumerate() {
        let Value::Object(st) = st else {
            return Err(malformed("every statement is an object"));
        };
        let sid = st.get("Sid").and_then(Value::as_str).map(str::to_owned);
        let at = sid.clone().unwrap_or_else(|| format!("statement {i}"));
        for k in st.keys() {
            if !matches!(
                k.as_str(),
                "Sid"
                    | "Effect"
                    | "Principal"
                    | "NotPrincipal"
                    | "Action"
                    | "NotAction"
                    | "Resource"
                    | "NotResource"
                    | "Condition"
            ) {
                return Err(malformed(format!("{at}: unknown field {k:?}")));
            }
        }
        let effect = match st.get("Effect").and_then(Value::as_str) {
            Some("Allow") => "permit",
            Some("Deny") => "forbid",
            _ => return Err(malformed(format!("{at}: Effect is \"Allow\" or \"Deny\""))),
        };
        let mut conds = vec![base.clone()];
        if st.contains_key("NotPrincipal") {
            return Err(malformed(format!(
                "{at}: NotPrincipal is not supported; use a Deny with a Principal and a condition"
            )));
        }
        match (st.get("Principal"), scope) {
            (Some(p), _) => {
                let (c, everyone) =
                    principal_cond(p, scope).map_err(|e| malformed(format!("{at}: {e}")))?;
                // AWS counts a policy public unless a condition pins the caller to fixed
                // source addresses, each range no wider than a /8 (IPv4) or a /32 (IPv6):
                // 0.0.0.0/0 or ::/0 pins nothing.
                let pinned = st
                    .get("Condition")
                    .and_then(|c| c.get("IpAddress"))
                    .and_then(Value::as_object)
                    .is_some_and(|k| {
                        k.iter().any(|(k, v)| {
                            k.eq_ignore_ascii_case("aws:SourceIp") && narrow_source_ips(v)
                        })
                    });
                public |= everyone && effect == "permit" && !pinned;
                conds.push(c);
            }
            (None, Scope::Bucket { .. }) => {
                return Err(malformed(format!(
                    "{at}: a bucket policy statement needs a Principal"
                )));
            }
            (None, Scope::Identity { .. }) => {}
        }
        // The catalog actions the statement covers (AWS matches action names
        // case-insensitively), named in the policy's scope.
        let mut mine: Vec<&'static str> = match (st.get("Action"), st.get("NotAction")) {
            (Some(a), None) => action_set(&strings(a, "Action")?)?,
            (None, Some(a)) => {
                let excluded = action_set(&strings(a, "NotAction")?)?;
                actions::policy_catalog()
                    .filter(|a| !excluded.contains(a))
                    .collect()
            }
            _ => {
                return Err(malformed(format!(
                    "{at}: exactly one of Action or NotAction"
                )));
            }
        };
        mine.sort_unstable();
        mine.dedup();
        let head_action = match mine.as_slice() {
            [one] => format!("action == Vallum::Action::{}", lit(one)),
            all => format!("action in {}", actions::cedar_list(all.iter().copied())),
        };
        match (st.get("Resource"), st.get("NotResource")) {
            (Some(r), None) => conds.push(resource_cond(&strings(r, "Resource")?, scope)?),
            (None, Some(r)) => {
                conds.push(format!(
                    "!{}",
                    resource_cond(&strings(r, "NotResource")?, scope)?
                ));
            }
            _ => {
                return Err(malformed(format!(
                    "{at}: exactly one of Resource or NotResource"
                )));
            }
        }
        if let Some(c) = st.get("Condition") {
            let Value::Object(ops) = c else {
                return Err(malformed(format!("{at}: Condition is an object")));
            };
            let ops: BTreeMap<&String, &Value> = ops.iter().collect();
            for (op, keys) in ops {
                let Value::Object(keys) = keys else {
                    return Err(malformed(format!("{at}: Condition.{op} is an object")));
                };
                for (key, v) in keys {
                    conds.push(condition(op, key, v).map_err(|e| malformed(format!("{at}: {e}")))?);
                }
            }
        }
        let id = format!("{prefix}{i}");
        let text = format!(
            "{effect}(principal, {head_action}, resource) when {{ {} }};",
            conds.join(" && ")
        );
        let policy = Policy::parse(Some(PolicyId::new(&id)), &text)
            .map_err(|e| malformed(format!("{at}: translation failed: {e}")))?;
        covered.extend(mine.iter().copied());
        rules.push(
            Rule::new(&policy, sid.clone().unwrap_or_default(), Some(mine))
                .map_err(|e| malformed(format!("{at}: {e}")))?,
        );
        set.add(policy)
            .map_err(|e| malformed(format!("{at}: {e}")))?;
        infos.push(StatementInfo {
            id,
            sid,
            effect: if effect == "permit" { "Allow" } else { "Deny" }.into(),
            cedar: text,
        });
    }
    covered.sort_unstable();
    covered.dedup();
    Ok(Compiled {
        set,
        statements: infos,
        public,
        actions: Some(covered),
        rules,
    })
}

/// Parses a policy document from bytes, size-checked.
pub fn parse_document(bytes: &[u8]) -> Result<Value, IamError> {
    if bytes.len() > MAX_POLICY_BYTES {
        return Err(IamError::PolicyTooLarge(format!(
            "a policy is at most {MAX_POLICY_BYTES} bytes"
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| malformed(format!("the policy is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket_scope() -> Scope<'static> {
        Scope::Bucket {
            tenant: "acme",
            bucket: "photos",
            restrict_public: false,
        }
    }

    #[test]
    fn wildcards_match_like_iam() {
        assert!(wildcard("s3:get*", "s3:getobject"));
        assert!(wildcard("s3:*object", "s3:putobject"));
        assert!(wildcard("s3:?etobject", "s3:getobject"));
        assert!(!wildcard("s3:get*", "s3:putobject"));
        assert!(wildcard("*", "kms:createkey"));
    }

    #[test]
    fn malformed_policies_are_refused_with_the_reason() {
        let cases = [
            (r#"[]"#, "JSON object"),
            (r#"{"Statement": []}"#, "non-empty"),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"s3:Fly","Resource":"arn:aws:s3:::photos/*"}}"#,
                "invalid action",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}}"#,
                "not in bucket",
            ),
            (
                r#"{"Statement":{"Effect":"Maybe","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}}"#,
                "Effect",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}}"#,
                "needs a Principal",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::other:user/bob"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}}"#,
                "another tenant",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/a?c"}}"#,
                "'?' wildcard",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*","Condition":{"StringEquals":{"aws:Magic":"x"}}}}"#,
                "not supported",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*","Condition":{"IpAddress":{"aws:SourceIp":"300.1.1.1"}}}}"#,
                "not an IP",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*","Condition":{"DateLessThan":{"aws:CurrentTime":"soon"}}}}"#,
                "ISO 8601",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*","Condition":{"ForAnyValue:StringEquals":{"s3:prefix":"x"}}}}"#,
                "set operators",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/${aws:username}/*"}}"#,
                "variables",
            ),
        ];
        for (doc, want) in cases {
            let v: Value = serde_json::from_str(doc).unwrap();
            let err = compile(&v, bucket_scope(), "b").unwrap_err().to_string();
            assert!(err.contains(want), "{doc}: {err}");
        }
    }

    #[test]
    fn a_source_ip_condition_that_admits_everyone_is_still_public() {
        let public = |cond: &str| {
            let doc = format!(
                r#"{{"Statement":{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*","Condition":{cond}}}}}"#
            );
            let v: Value = serde_json::from_str(&doc).unwrap();
            compile(&v, bucket_scope(), "b").unwrap().public
        };
        for open in [
            r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#,
            r#"{"IpAddress":{"aws:SourceIp":"::/0"}}"#,
            r#"{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","0.0.0.0/1"]}}"#,
            r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/16"}}"#,
            r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
        ] {
            assert!(public(open), "{open} must count as public");
        }
        for pinned in [
            r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            r#"{"IpAddress":{"aws:SourceIp":["192.0.2.0/24","198.51.100.7"]}}"#,
            r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#,
        ] {
            assert!(!public(pinned), "{pinned} pins the caller");
        }
    }

    #[test]
    fn statements_translate_to_cedar_with_deny_as_forbid() {
        let v: Value = serde_json::from_str(
            r#"{"Version":"2012-10-17","Statement":[
                {"Sid":"Public","Effect":"Allow","Principal":"*","Action":["s3:GetObject"],"Resource":"arn:aws:s3:::photos/*"},
                {"Sid":"TLS","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::photos","arn:aws:s3:::photos/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}
            ]}"#,
        )
        .unwrap();
        let c = compile(&v, bucket_scope(), "b").unwrap();
        assert!(c.public);
        assert_eq!(c.statements.len(), 2);
        assert!(c.statements[0].cedar.starts_with("permit("));
        assert!(c.statements[1].cedar.starts_with("forbid("));
        assert!(c.statements[1].cedar.contains("context.secure == false"));
        assert_eq!(c.statements[1].sid.as_deref(), Some("TLS"));
    }

    #[test]
    fn identity_policies_substitute_the_user_name() {
        let v: Value = serde_json::from_str(
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${aws:username}/*"}}"#,
        )
        .unwrap();
        let c = compile(
            &v,
            Scope::Identity {
                tenant: "acme",
                user: "bob",
            },
            "u",
        )
        .unwrap();
        assert!(c.statements[0].cedar.contains("arn:aws:s3:::home/bob/*"));
        let with_principal: Value = serde_json::from_str(
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#,
        )
        .unwrap();
        assert!(
            compile(
                &with_principal,
                Scope::Identity {
                    tenant: "acme",
                    user: "bob"
                },
                "u"
            )
            .is_err()
        );
    }
}
