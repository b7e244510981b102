//! Boundary policies: where a bucket's data may live, and on how many independent operators.

use crate::error::Invalid;
use serde::{Deserialize, Serialize};
use vallum_ledger::entry::BoundaryRecord;
use vallum_types::jurisdiction::{is_known_name, within};
use vallum_types::limits::{MAX_REPLICAS, MAX_RESIDENCY_LIST_ENTRIES, MAX_RESIDENCY_NAME_BYTES};

use super::profile::{ExposureRules, is_residency_id};

/// A boundary policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundaryPolicy {
    /// Its name, quoted in every refusal (e.g. `eu-strict`).
    pub name: String,
    /// Jurisdictions a site may be in: countries (`FR`) or groups (`EU`, `EEA`).
    pub allowed: Vec<String>,
    /// Exposures a site must not have (ids of the exposure rules, e.g. `us-cloud-act`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forbidden_exposures: Vec<String>,
    /// Certifications every site must hold, valid on the day: `scheme` or `scheme:level`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_certifications: Vec<String>,
    /// Replicas of every object.
    #[serde(default = "one")]
    pub min_replicas: u32,
    /// Legally independent operators (distinct ultimate parents) the replicas must span.
    #[serde(default = "one")]
    pub min_operators: u32,
    /// Replicas that must be durable before a write is acknowledged (none: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_quorum: Option<u32>,
}

fn one() -> u32 {
    1
}

impl BoundaryPolicy {
    /// A policy allowing `allowed`, one replica, no other constraint.
    #[must_use]
    pub fn allowing(name: &str, allowed: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            allowed: allowed.iter().map(|s| (*s).to_owned()).collect(),
            forbidden_exposures: Vec::new(),
            required_certifications: Vec::new(),
            min_replicas: 1,
            min_operators: 1,
            write_quorum: None,
        }
    }

    /// Replicas that must be durable before a write is acknowledged.
    #[must_use]
    pub fn quorum(&self) -> u32 {
        self.write_quorum.unwrap_or(self.min_replicas)
    }

    /// Checks the policy on its own terms (names, ranges, contradictions); whether sites exist
    /// to satisfy it is the placement engine's question.
    pub fn validate(&self, rules: &ExposureRules) -> Result<(), Invalid> {
        let name = &self.name;
        if !is_residency_id(name) {
            return Err(Invalid(format!(
                "policy name {name:?} must be 1-{MAX_RESIDENCY_NAME_BYTES} characters of a-z, 0-9, '-', '_', '.'"
            )));
        }
        if self.allowed.is_empty() {
            return Err(Invalid(format!(
                "policy {name}: allowed must name at least one jurisdiction"
            )));
        }
        for list in [
            &self.allowed,
            &self.forbidden_exposures,
            &self.required_certifications,
        ] {
            if list.len() > MAX_RESIDENCY_LIST_ENTRIES {
                return Err(Invalid(format!(
                    "policy {name}: at most {MAX_RESIDENCY_LIST_ENTRIES} entries in a list"
                )));
            }
        }
        if let Some(bad) = self.allowed.iter().find(|a| !is_known_name(a)) {
            return Err(Invalid(format!(
                "policy {name}: unknown jurisdiction {bad:?} (an ISO 3166-1 alpha-2 country code, EU or EEA)"
            )));
        }
        if let Some(bad) = self
            .forbidden_exposures
            .iter()
            .find(|x| rules.rule(x).is_none())
        {
            let known: Vec<&str> = rules.rules.iter().map(|r| r.id.as_str()).collect();
            return Err(Invalid(format!(
                "policy {name}: unknown exposure {bad:?} (known: {})",
                known.join(", ")
            )));
        }
        if let Some(bad) = self.required_certifications.iter().find(|c| {
            let (scheme, level) = c.split_once(':').unwrap_or((c, "x"));
            scheme.is_empty() || level.is_empty() || level.contains(':') || c.len() > 128
        }) {
            return Err(Invalid(format!(
                "policy {name}: certification {bad:?} must be `scheme` or `scheme:level`"
            )));
        }
        if !(1..=MAX_REPLICAS).contains(&self.min_replicas) {
            return Err(Invalid(format!(
                "policy {name}: min_replicas must be between 1 and {MAX_REPLICAS}"
            )));
        }
        if self.min_operators == 0 || self.min_operators > self.min_replicas {
            return Err(Invalid(format!(
                "policy {name}: min_operators ({}) must be between 1 and min_replicas ({}): each replica sits with one operator",
                self.min_operators, self.min_replicas
            )));
        }
        if let Some(q) = self.write_quorum
            && (q == 0 || q > self.min_replicas)
        {
            return Err(Invalid(format!(
                "policy {name}: write_quorum ({q}) must be between 1 and min_replicas ({})",
                self.min_replicas
            )));
        }
        Ok(())
    }

    /// Whether a site in `country` is inside the allowed jurisdictions.
    #[must_use]
    pub fn allows_country(&self, country: &str) -> bool {
        self.allowed.iter().any(|a| within(country, a))
    }

    /// The part of the policy the transparency log records for offline audits.
    #[must_use]
    pub fn record(&self) -> BoundaryRecord {
        BoundaryRecord {
            allowed: self.allowed.clone(),
            forbidden_exposures: self.forbidden_exposures.clone(),
        }
    }
}

/// A version of a bucket's boundary policy, with who set it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketBoundary {
    /// 1 for the first policy a bucket had, then one more per change (removals included).
    pub version: u64,
    /// The policy in force from this version on; none: the deployment default again.
    pub policy: Option<BoundaryPolicy>,
    /// Who changed it (the request's actor).
    pub set_by: String,
    /// When, ms since the epoch.
    pub set_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_validated_with_a_reason() {
        let rules = ExposureRules::builtin();
        let mut ok = BoundaryPolicy::allowing("eu-strict", &["EU", "NO"]);
        ok.forbidden_exposures = vec!["us-cloud-act".into()];
        ok.required_certifications = vec!["SecNumCloud".into(), "EUCS:high".into()];
        ok.min_replicas = 3;
        ok.min_operators = 2;
        ok.write_quorum = Some(2);
        ok.validate(&rules).unwrap();
        assert_eq!(ok.quorum(), 2);
        assert!(ok.allows_country("DE") && ok.allows_country("NO") && !ok.allows_country("CH"));

        type Breaker = fn(&mut BoundaryPolicy);
        let cases: [(Breaker, &str); 9] = [
            (|p| p.name = "EU Strict".into(), "policy name"),
            (|p| p.allowed.clear(), "at least one jurisdiction"),
            (
                |p| p.allowed.push("Europe".into()),
                "unknown jurisdiction \"Europe\"",
            ),
            (
                |p| p.allowed.push("XK".into()),
                "unknown jurisdiction \"XK\"",
            ),
            (
                |p| p.forbidden_exposures.push("cloud-act".into()),
                "unknown exposure \"cloud-act\"",
            ),
            (
                |p| p.required_certifications.push("EUCS:".into()),
                "scheme:level",
            ),
            (|p| p.min_replicas = 17, "min_replicas"),
            (
                |p| p.min_operators = 4,
                "min_operators (4) must be between 1 and min_replicas (3)",
            ),
            (|p| p.write_quorum = Some(4), "write_quorum (4)"),
        ];
        for (break_it, why) in cases {
            let mut p = ok.clone();
            break_it(&mut p);
            let err = p.validate(&rules).unwrap_err();
            assert!(err.contains(why), "{err} (wanted {why})");
        }
    }

    #[test]
    fn documents_reject_unknown_fields_and_default_counts() {
        let p: BoundaryPolicy = serde_json::from_str(r#"{"name":"fr","allowed":["FR"]}"#).unwrap();
        assert_eq!((p.min_replicas, p.min_operators, p.quorum()), (1, 1, 1));
        let err = serde_json::from_str::<BoundaryPolicy>(
            r#"{"name":"fr","allowed":["FR"],"min_replica":2}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `min_replica`"),
            "{err}"
        );
    }
}
