//! Cedar policies compiled for direct evaluation: the decision point's fast path.
//!
//! Every rule the decision point applies is a Cedar policy, parsed and checked by
//! `cedar-policy`. Cedar's own evaluator rebuilds each policy's condition and runs a partial
//! evaluation on every call, which costs microseconds per policy; [`Program::compile`] turns a
//! policy (through its JSON form, Cedar's stable representation) into a tree over the request
//! that [`Program::holds`] evaluates in a few nanoseconds per node.
//!
//! The compiled subset is the Cedar the decision point writes: scopes (`==`, `is`, `in`),
//! `when`/`unless`, `&&`, `||`, `!`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `like`, `is`, `in`,
//! `if … then … else`, `.` and `has` on the context, and string, long, boolean and entity
//! literals. Its semantics are Cedar's, errors included: `&&` and `||` short-circuit, a
//! comparison of the wrong types or a missing context attribute is an error (and an error
//! denies), `==` across types is false. A policy using anything else is not compiled and is
//! evaluated by Cedar itself. Differential tests run both evaluators over the same policies
//! and requests and require the same answers, and `vallum authz explain` reports Cedar's
//! verdict beside the compiled one.

use std::collections::HashMap;

use serde_json::Value as Json;

/// The request-context attributes the decision point gives policies, by slot. An IPv4 client
/// is `ip4`, an IPv6 one `ip6_0..3` (see `policy::ip_range`).
pub const SLOTS: &[&str] = &[
    "principal_tenant",
    "resource_tenant",
    "admin",
    "guardian",
    "arn",
    "bucket",
    "secure",
    "epoch_ms",
    "prefix",
    "delimiter",
    "user_agent",
    "referer",
    "sse",
    "username",
    "max_keys",
    "ip4",
    "ip6_0",
    "ip6_1",
    "ip6_2",
    "ip6_3",
];

/// How many context slots there are.
pub const SLOT_COUNT: usize = 20;

/// The slot of context attribute `name`.
#[must_use]
pub fn slot(name: &str) -> Option<usize> {
    SLOTS.iter().position(|s| *s == name)
}

/// A value met during evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val<'a> {
    /// A boolean.
    Bool(bool),
    /// A long.
    Long(i64),
    /// A string.
    Str(&'a str),
    /// An entity: type name and id.
    Entity(&'a str, &'a str),
}

impl Val<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Val::Bool(_) => "bool",
            Val::Long(_) => "long",
            Val::Str(_) => "string",
            Val::Entity(..) => "entity",
        }
    }
}

/// Entity ancestors (the action groups), transitively closed: what `in` consults.
#[derive(Debug, Default, Clone)]
pub struct Hierarchy {
    ancestors: HashMap<String, HashMap<String, Vec<(String, String)>>>,
}

impl Hierarchy {
    /// Records that `(ty, id)` is in each of `ancestors` (already transitively closed).
    pub fn insert(&mut self, ty: &str, id: &str, ancestors: Vec<(String, String)>) {
        self.ancestors
            .entry(ty.to_owned())
            .or_default()
            .insert(id.to_owned(), ancestors);
    }

    fn of(&self, ty: &str, id: &str) -> &[(String, String)] {
        self.ancestors
            .get(ty)
            .and_then(|m| m.get(id))
            .map_or(&[], Vec::as_slice)
    }
}

/// One request as compiled policies see it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Principal: type name and id.
    pub principal: (&'a str, &'a str),
    /// Action: type name and id.
    pub action: (&'a str, &'a str),
    /// Resource: type name and id.
    pub resource: (&'a str, &'a str),
    /// The context, by slot (`None`: absent).
    pub context: [Option<Val<'a>>; SLOT_COUNT],
    /// Entity ancestors.
    pub hierarchy: &'a Hierarchy,
}

/// An evaluation error (the policy does not hold, and the decision denies).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Principal,
    Action,
    Resource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
}

/// A run of a program's `text` (or of its `runs` or `targets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    at: u32,
    len: u32,
}

/// An index into a program's nodes.
type At = u32;

/// One node of a compiled expression; children are indices into the same program, so a
/// policy is a few contiguous arrays (cheap to reach from a cold cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Bool(bool),
    Long(i64),
    Str(Span),
    Entity(Span, Span),
    Var(Var),
    /// `context.<attr>` (slot `None`: an attribute the context never has; the name).
    Attr(Option<u8>, Span),
    /// `context has <attr>`.
    Has(Option<u8>),
    And(At, At),
    Or(At, At),
    Not(At),
    Eq(At, At),
    Ne(At, At),
    Cmp(Cmp, At, At),
    /// `x like p`: the literal runs of `p` (a span of `runs`), and whether it starts and
    /// ends with a wildcard; a wildcard stands between consecutive runs.
    Like {
        arg: At,
        runs: Span,
        open_start: bool,
        open_end: bool,
    },
    Is(At, Span),
    /// `x in e` or `x in [e, …]`: a span of `targets`, sorted.
    In(At, Span),
    If(At, At, At),
}

/// Why a policy is not compiled (it is then evaluated by Cedar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

fn unsupported<T>(what: impl std::fmt::Display) -> Result<T, Unsupported> {
    Err(Unsupported(what.to_string()))
}

fn field<'a>(j: &'a Json, name: &str) -> Result<&'a Json, Unsupported> {
    j.get(name)
        .ok_or_else(|| Unsupported(format!("no {name:?} in {j}")))
}

fn text<'a>(j: &'a Json, name: &str) -> Result<&'a str, Unsupported> {
    field(j, name)?
        .as_str()
        .ok_or_else(|| Unsupported(format!("{name:?} is not a string")))
}

fn entity_of(j: &Json) -> Result<(&str, &str), Unsupported> {
    // `{"type": …, "id": …}`, bare or as `{"__entity": {…}}`.
    let e = j.get("__entity").unwrap_or(j);
    Ok((text(e, "type")?, text(e, "id")?))
}

fn too_big(_: std::num::TryFromIntError) -> Unsupported {
    Unsupported("a policy too large to compile".into())
}

/// Builds a [`Program`] from Cedar's JSON form.
#[derive(Default)]
struct Builder {
    nodes: Vec<Node>,
    text: String,
    runs: Vec<Span>,
    targets: Vec<(Span, Span)>,
}

impl Builder {
    fn push(&mut self, n: Node) -> Result<At, Unsupported> {
        self.nodes.push(n);
        At::try_from(self.nodes.len() - 1).map_err(too_big)
    }

    fn span(&mut self, s: &str) -> Result<Span, Unsupported> {
        let at = u32::try_from(self.text.len()).map_err(too_big)?;
        self.text.push_str(s);
        Ok(Span {
            at,
            len: u32::try_from(s.len()).map_err(too_big)?,
        })
    }

    fn literal(&mut self, v: &Json) -> Result<Node, Unsupported> {
        Ok(match v {
            Json::Bool(b) => Node::Bool(*b),
            Json::Number(n) => Node::Long(
                n.as_i64()
                    .ok_or_else(|| Unsupported(format!("number {n}")))?,
            ),
            Json::String(s) => Node::Str(self.span(s)?),
            Json::Object(o) if o.contains_key("__entity") => {
                let (t, i) = entity_of(v)?;
                Node::Entity(self.span(t)?, self.span(i)?)
            }
            other => return unsupported(format!("value {other}")),
        })
    }

    fn child(&mut self, j: &Json, name: &str) -> Result<At, Unsupported> {
        self.expr(field(j, name)?)
    }

    fn two(&mut self, body: &Json) -> Result<(At, At), Unsupported> {
        Ok((self.child(body, "left")?, self.child(body, "right")?))
    }

    /// `in`'s right side: entity literals, stored sorted.
    fn targets(&mut self, entities: &[(&str, &str)]) -> Result<Span, Unsupported> {
        let mut sorted = entities.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let at = u32::try_from(self.targets.len()).map_err(too_big)?;
        for (t, i) in &sorted {
            let pair = (self.span(t)?, self.span(i)?);
            self.targets.push(pair);
        }
        Ok(Span {
            at,
            len: u32::try_from(sorted.len()).map_err(too_big)?,
        })
    }

    fn expr(&mut self, j: &Json) -> Result<At, Unsupported> {
        let Some((op, body)) = j
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.iter().next())
        else {
            return unsupported(format!("expression {j}"));
        };
        let node = match op.as_str() {
            "Value" => self.literal(body)?,
            "Var" => match body.as_str() {
                Some("principal") => Node::Var(Var::Principal),
                Some("action") => Node::Var(Var::Action),
                Some("resource") => Node::Var(Var::Resource),
                _ => return unsupported(format!("variable {body} as a value")),
            },
            "." | "has" => {
                // The left side must be the context itself.
                if field(body, "left")?.get("Var").and_then(Json::as_str) != Some("context") {
                    return unsupported(format!("{op:?} on something other than the context"));
                }
                let attr = text(body, "attr")?;
                let slot = slot(attr).map(|s| u8::try_from(s).expect("few slots"));
                if op == "." {
                    Node::Attr(slot, self.span(attr)?)
                } else {
                    Node::Has(slot)
                }
            }
            "&&" => {
                let (a, b) = self.two(body)?;
                Node::And(a, b)
            }
            "||" => {
                let (a, b) = self.two(body)?;
                Node::Or(a, b)
            }
            "==" => {
                let (a, b) = self.two(body)?;
                Node::Eq(a, b)
            }
            "!=" => {
                let (a, b) = self.two(body)?;
                Node::Ne(a, b)
            }
            "<" | "<=" | ">" | ">=" => {
                let (a, b) = self.two(body)?;
                let cmp = match op.as_str() {
                    "<" => Cmp::Lt,
                    "<=" => Cmp::Le,
                    ">" => Cmp::Gt,
                    _ => Cmp::Ge,
                };
                Node::Cmp(cmp, a, b)
            }
            "!" => Node::Not(self.child(body, "arg")?),
            "like" => {
                let arg = self.child(body, "left")?;
                self.like(arg, field(body, "pattern")?)?
            }
            "is" => {
                if body.get("in").is_some() {
                    return unsupported("`is … in`");
                }
                let arg = self.child(body, "left")?;
                Node::Is(arg, self.span(text(body, "entity_type")?)?)
            }
            "in" => {
                let right = field(body, "right")?;
                let entities: Vec<(&str, &str)> = match (right.get("Value"), right.get("Set")) {
                    (Some(Json::Array(items)), _) => {
                        items.iter().map(entity_of).collect::<Result<_, _>>()?
                    }
                    (Some(v), _) if v.get("__entity").is_some() => vec![entity_of(v)?],
                    (None, Some(Json::Array(items))) => items
                        .iter()
                        .map(|i| entity_of(field(i, "Value")?))
                        .collect::<Result<_, _>>()?,
                    _ => return unsupported("`in` whose right side is not entity literals"),
                };
                let arg = self.child(body, "left")?;
                Node::In(arg, self.targets(&entities)?)
            }
            "if-then-else" => Node::If(
                self.child(body, "if")?,
                self.child(body, "then")?,
                self.child(body, "else")?,
            ),
            other => return unsupported(format!("operator {other:?}")),
        };
        self.push(node)
    }

    fn like(&mut self, arg: At, pattern: &Json) -> Result<Node, Unsupported> {
        let Json::Array(elems) = pattern else {
            return unsupported("a pattern that is not a list");
        };
        let mut runs: Vec<String> = Vec::new();
        let mut current = String::new();
        let (mut open_start, mut open_end) = (false, false);
        for (i, e) in elems.iter().enumerate() {
            if e.as_str() == Some("Wildcard") {
                open_start |= i == 0;
                if !current.is_empty() {
                    runs.push(std::mem::take(&mut current));
                }
                open_end = true;
            } else {
                current.push_str(text(e, "Literal")?);
                open_end = false;
            }
        }
        if !current.is_empty() {
            runs.push(current);
        }
        let at = u32::try_from(self.runs.len()).map_err(too_big)?;
        for r in &runs {
            let span = self.span(r)?;
            self.runs.push(span);
        }
        Ok(Node::Like {
            arg,
            runs: Span {
                at,
                len: u32::try_from(runs.len()).map_err(too_big)?,
            },
            open_start,
            open_end,
        })
    }

    fn scope(&mut self, j: &Json, var: Var) -> Result<Option<At>, Unsupported> {
        let node = match text(j, "op")? {
            "All" => return Ok(None),
            "==" if j.get("entity").is_some() => {
                let (t, i) = entity_of(field(j, "entity")?)?;
                let lit = Node::Entity(self.span(t)?, self.span(i)?);
                let (v, e) = (self.push(Node::Var(var))?, self.push(lit)?);
                Node::Eq(v, e)
            }
            "in" if j.get("entity").is_some() => {
                let target = entity_of(field(j, "entity")?)?;
                let v = self.push(Node::Var(var))?;
                Node::In(v, self.targets(&[target])?)
            }
            "in" if j.get("entities").is_some() => {
                let Json::Array(items) = field(j, "entities")? else {
                    return unsupported("`in` over something other than a list");
                };
                let entities: Vec<(&str, &str)> =
                    items.iter().map(entity_of).collect::<Result<_, _>>()?;
                let v = self.push(Node::Var(var))?;
                Node::In(v, self.targets(&entities)?)
            }
            "is" if j.get("in").is_none() => {
                let v = self.push(Node::Var(var))?;
                Node::Is(v, self.span(text(j, "entity_type")?)?)
            }
            other => return unsupported(format!("scope {other:?} ({j})")),
        };
        self.push(node).map(Some)
    }
}

/// One Cedar policy, compiled: it holds for a request when [`Program::holds`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    nodes: Box<[Node]>,
    /// Every string of the policy, one after the other.
    text: Box<str>,
    /// `like` patterns' literal runs.
    runs: Box<[Span]>,
    /// `in`'s entity lists, each sorted.
    targets: Box<[(Span, Span)]>,
    /// The policy's condition: its scope, then its `when`/`unless` clauses, in Cedar's
    /// order (`None`: it always holds).
    root: Option<At>,
}

impl Program {
    /// Compiles `policy`, or says what it uses outside the compiled subset.
    pub fn compile(policy: &cedar_policy::Policy) -> Result<Self, Unsupported> {
        let j = policy
            .to_json()
            .map_err(|e| Unsupported(format!("no JSON form: {e}")))?;
        let mut b = Builder::default();
        let mut parts: Vec<At> = Vec::new();
        for (name, var) in [
            ("principal", Var::Principal),
            ("action", Var::Action),
            ("resource", Var::Resource),
        ] {
            parts.extend(b.scope(field(&j, name)?, var)?);
        }
        if let Some(Json::Array(conds)) = j.get("conditions") {
            for c in conds {
                let body = b.expr(field(c, "body")?)?;
                match text(c, "kind")? {
                    "when" => parts.push(body),
                    "unless" => parts.push(b.push(Node::Not(body))?),
                    other => return unsupported(format!("condition kind {other:?}")),
                }
            }
        }
        // Cedar's condition is `principal && (action && (resource && (c1 && c2 …)))`: the same
        // evaluation order, so the same short-circuits and the same errors.
        let mut root = None;
        for part in parts.into_iter().rev() {
            root = Some(match root {
                None => part,
                Some(right) => b.push(Node::And(part, right))?,
            });
        }
        Ok(Self {
            nodes: b.nodes.into(),
            text: b.text.into(),
            runs: b.runs.into(),
            targets: b.targets.into(),
            root,
        })
    }

    /// Whether the policy holds for `r` (an error: it cannot be evaluated, which denies).
    pub fn holds(&self, r: &Request<'_>) -> Result<bool, EvalError> {
        match self.root {
            None => Ok(true),
            Some(n) => boolean(self.eval(n, r)?),
        }
    }

    fn str(&self, s: Span) -> &str {
        &self.text[s.at as usize..(s.at + s.len) as usize]
    }

    fn eval<'a>(&'a self, at: At, r: &Request<'a>) -> Result<Val<'a>, EvalError> {
        Ok(match self.nodes[at as usize] {
            Node::Bool(b) => Val::Bool(b),
            Node::Long(l) => Val::Long(l),
            Node::Str(s) => Val::Str(self.str(s)),
            Node::Entity(t, i) => Val::Entity(self.str(t), self.str(i)),
            Node::Var(Var::Principal) => Val::Entity(r.principal.0, r.principal.1),
            Node::Var(Var::Action) => Val::Entity(r.action.0, r.action.1),
            Node::Var(Var::Resource) => Val::Entity(r.resource.0, r.resource.1),
            Node::Attr(slot, name) => match slot.and_then(|s| r.context[usize::from(s)]) {
                Some(v) => v,
                None => {
                    return Err(EvalError(format!(
                        "the context does not have the attribute {:?}",
                        self.str(name)
                    )));
                }
            },
            Node::Has(slot) => Val::Bool(slot.is_some_and(|s| r.context[usize::from(s)].is_some())),
            Node::And(a, b) => Val::Bool(boolean(self.eval(a, r)?)? && boolean(self.eval(b, r)?)?),
            Node::Or(a, b) => Val::Bool(boolean(self.eval(a, r)?)? || boolean(self.eval(b, r)?)?),
            Node::Not(a) => Val::Bool(!boolean(self.eval(a, r)?)?),
            Node::Eq(a, b) => Val::Bool(self.eval(a, r)? == self.eval(b, r)?),
            Node::Ne(a, b) => Val::Bool(self.eval(a, r)? != self.eval(b, r)?),
            Node::Cmp(op, a, b) => {
                let (x, y) = match (self.eval(a, r)?, self.eval(b, r)?) {
                    (Val::Long(x), Val::Long(y)) => (x, y),
                    (Val::Long(_), other) | (other, _) => return Err(type_error("long", other)),
                };
                Val::Bool(match op {
                    Cmp::Lt => x < y,
                    Cmp::Le => x <= y,
                    Cmp::Gt => x > y,
                    Cmp::Ge => x >= y,
                })
            }
            Node::Like {
                arg,
                runs,
                open_start,
                open_end,
            } => match self.eval(arg, r)? {
                Val::Str(s) => Val::Bool(self.like(s, runs, open_start, open_end)),
                other => return Err(type_error("string", other)),
            },
            Node::Is(a, ty) => match self.eval(a, r)? {
                Val::Entity(t, _) => Val::Bool(t == self.str(ty)),
                other => return Err(type_error("entity", other)),
            },
            Node::In(a, targets) => match self.eval(a, r)? {
                Val::Entity(t, i) => {
                    let list =
                        &self.targets[targets.at as usize..(targets.at + targets.len) as usize];
                    let has = |t: &str, i: &str| {
                        list.binary_search_by(|(lt, li)| {
                            (self.str(*lt), self.str(*li)).cmp(&(t, i))
                        })
                        .is_ok()
                    };
                    Val::Bool(has(t, i) || r.hierarchy.of(t, i).iter().any(|(at, ai)| has(at, ai)))
                }
                other => return Err(type_error("entity", other)),
            },
            Node::If(c, a, b) => {
                if boolean(self.eval(c, r)?)? {
                    self.eval(a, r)?
                } else {
                    self.eval(b, r)?
                }
            }
        })
    }

    /// Cedar's `like`. Byte-wise matching is exact: a literal run is whole UTF-8 characters,
    /// and UTF-8 is self-synchronising, so a run found in the text starts on a character
    /// boundary.
    fn like(&self, text: &str, runs: Span, open_start: bool, open_end: bool) -> bool {
        let runs = &self.runs[runs.at as usize..(runs.at + runs.len) as usize];
        if runs.is_empty() {
            return open_start || open_end || text.is_empty();
        }
        let mut rest = text;
        for (i, run) in runs.iter().enumerate() {
            let run = self.str(*run);
            let is_last = i == runs.len() - 1;
            if i == 0 && !open_start {
                let Some(r) = rest.strip_prefix(run) else {
                    return false;
                };
                rest = r;
            } else if is_last && !open_end {
                return rest.ends_with(run);
            } else {
                match rest.find(run) {
                    Some(at) => rest = &rest[at + run.len()..],
                    None => return false,
                }
            }
        }
        open_end || rest.is_empty()
    }
}

fn type_error(want: &str, got: Val<'_>) -> EvalError {
    EvalError(format!(
        "type error: expected {want}, got {} {got:?}",
        got.kind()
    ))
}

fn boolean(v: Val<'_>) -> Result<bool, EvalError> {
    match v {
        Val::Bool(b) => Ok(b),
        other => Err(type_error("bool", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::{Policy, PolicyId};

    fn program(text: &str) -> Program {
        Program::compile(&Policy::parse(Some(PolicyId::new("p")), text).unwrap()).unwrap()
    }

    fn request(h: &Hierarchy) -> Request<'_> {
        let mut context = [None; SLOT_COUNT];
        context[slot("arn").unwrap()] = Some(Val::Str("arn:aws:s3:::b/k"));
        context[slot("epoch_ms").unwrap()] = Some(Val::Long(10));
        Request {
            principal: ("Vallum::User", "acme/bob"),
            action: ("Vallum::Action", "s3:GetObject"),
            resource: ("Vallum::Object", "acme/b/k"),
            context,
            hierarchy: h,
        }
    }

    #[test]
    fn patterns_match_like_cedar_like() {
        let h = Hierarchy::default();
        let like = |pattern: &str, text: &str| {
            let mut r = request(&h);
            r.context[slot("arn").unwrap()] = Some(Val::Str(text));
            program(&format!(
                "permit(principal, action, resource) when {{ context.arn like \"{pattern}\" }};"
            ))
            .holds(&r)
            .unwrap()
        };
        assert!(like("ab", "ab") && !like("ab", "abc") && !like("ab", "a"));
        assert!(like("ab*", "ab") && like("ab*", "abzz") && !like("ab*", "zab"));
        assert!(like("*ab", "zzab") && !like("*ab", "abz"));
        assert!(like("a*a", "aa") && like("a*a", "aXa") && !like("a*a", "a"));
        assert!(like("*", "") && like("*", "anything"));
        assert!(like("", "") && !like("", "x"));
        assert!(like("é**€", "é€") && like("é**€", "éxx€") && !like("é**€", "€é"));
        assert!(like("a*b*c", "abc") && like("a*b*c", "aXbYbc") && !like("a*b*c", "acb"));
        assert!(
            like(r"a\*", "a*") && !like(r"a\*", "ab"),
            "an escaped star is literal"
        );
    }

    #[test]
    fn conditions_evaluate_with_cedars_errors() {
        let h = Hierarchy::default();
        let r = request(&h);
        let holds = |t: &str| program(t).holds(&r);
        assert_eq!(holds("permit(principal, action, resource);"), Ok(true));
        assert_eq!(
            holds(
                r#"permit(principal == Vallum::User::"acme/bob", action, resource) when { context.arn like "arn:aws:s3:::b/*" };"#
            ),
            Ok(true)
        );
        assert_eq!(
            holds(
                r#"permit(principal is Vallum::Operator, action, resource) when { context.missing };"#
            ),
            Ok(false),
            "the scope fails first, so the missing attribute is never read"
        );
        assert!(
            holds("permit(principal, action, resource) when { context.prefix == \"x\" };").is_err()
        );
        assert_eq!(
            holds(
                "permit(principal, action, resource) when { context has prefix && context.prefix == \"x\" };"
            ),
            Ok(false)
        );
        assert!(holds("permit(principal, action, resource) when { context.arn < 3 };").is_err());
        assert!(holds("permit(principal, action, resource) when { context.epoch_ms };").is_err());
        assert_eq!(
            holds("permit(principal, action, resource) when { context.epoch_ms == \"10\" };"),
            Ok(false)
        );
        assert_eq!(
            holds("permit(principal, action, resource) unless { context.epoch_ms >= 10 };"),
            Ok(false)
        );
        assert_eq!(
            holds(
                "permit(principal, action, resource) when { if context.epoch_ms > 5 then true else context.nope };"
            ),
            Ok(true)
        );
    }

    #[test]
    fn what_is_not_compiled_is_said() {
        let p = |t: &str| {
            Program::compile(&Policy::parse(Some(PolicyId::new("p")), t).unwrap()).unwrap_err()
        };
        assert!(
            p(r#"permit(principal, action, resource) when { ip("10.0.0.1").isLoopback() };"#)
                .0
                .contains("isLoopback")
        );
        assert!(
            p("permit(principal, action, resource) when { principal.level > 3 };")
                .0
                .contains("other than the context")
        );
        assert!(
            p("permit(principal, action, resource) when { [1, 2].contains(1) };")
                .0
                .contains("contains")
        );
    }
}
