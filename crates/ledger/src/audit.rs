//! The boundary audit: replays a bucket's boundary-policy history and every event that put
//! its data somewhere (stored, read, key used) from verified log entries, and answers "was
//! any object of this bucket ever stored, read or decrypted outside its approved boundary,
//! and by whom?".

use serde::Serialize;
use vallum_types::jurisdiction;

use crate::entry::{BoundaryRecord, Entry, Event, KeyRef, SiteRef};

/// The audit's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every data event happened inside the boundary in force at the time.
    WithinBoundary,
    /// At least one data event happened outside it.
    Violations,
    /// Some data events happened while no boundary was known, so they cannot be judged.
    NoPolicy,
}

/// One data event outside the boundary.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Log index of the entry.
    pub index: u64,
    /// When, ms since the epoch.
    pub time_ms: i64,
    /// Who.
    pub actor: String,
    /// Entry type (`object_stored`, `object_read`, `key_used`).
    pub event: String,
    /// Object key (or its keyed hash), when the event has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The site or location involved.
    pub site: String,
    /// Why it is outside the boundary.
    pub reason: String,
}

/// A boundary policy and where it took effect.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyPeriod {
    /// The log index of the entry that set it; `None` for the policy the auditor supplied
    /// for the time before the log's first policy entry.
    pub from_index: Option<u64>,
    /// The policy.
    pub policy: BoundaryRecord,
}

/// The audit report.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// The bucket audited.
    pub bucket: String,
    /// The answer.
    pub verdict: Verdict,
    /// Tree size of the verified checkpoint the entries come from.
    pub checkpoint_size: u64,
    /// Policies in force over time, in order.
    pub policies: Vec<PolicyPeriod>,
    /// Data events examined.
    pub events_checked: u64,
    /// Data events that happened with no policy known.
    pub events_without_policy: u64,
    /// The offending entries.
    pub findings: Vec<Finding>,
}

fn key_text(key: &KeyRef) -> String {
    match key {
        KeyRef::Plain(k) => k.clone(),
        KeyRef::Hmac(h) => format!("hmac:{h}"),
    }
}

/// Why `site` is outside `policy`, if it is.
#[must_use]
pub fn site_outside(site: &SiteRef, policy: &BoundaryRecord) -> Option<String> {
    if site.jurisdiction.is_empty() {
        return Some(format!(
            "site {} declares no jurisdiction, so it cannot be shown to be inside the boundary",
            site.id
        ));
    }
    if !policy
        .allowed
        .iter()
        .any(|a| jurisdiction::within(&site.jurisdiction, a))
    {
        return Some(format!(
            "site {} is in {}, outside the allowed [{}]",
            site.id,
            site.jurisdiction,
            policy.allowed.join(", ")
        ));
    }
    if let Some(x) = site
        .exposures
        .iter()
        .find(|x| policy.forbidden_exposures.contains(x))
    {
        return Some(format!(
            "site {}'s operator is exposed to {x}, which the policy forbids",
            site.id
        ));
    }
    None
}

/// Audits `bucket` over `entries` (verified, in index order). `initial` is the policy the
/// auditor holds for the time before the log's first `boundary_policy_changed` entry.
#[must_use]
pub fn boundary_audit(
    bucket: &str,
    entries: &[(u64, Entry)],
    initial: Option<BoundaryRecord>,
    checkpoint_size: u64,
) -> AuditReport {
    let mut policies = Vec::new();
    let mut current = initial;
    if let Some(p) = &current {
        policies.push(PolicyPeriod {
            from_index: None,
            policy: p.clone(),
        });
    }
    let mut findings = Vec::new();
    let (mut checked, mut unjudged) = (0u64, 0u64);
    for (index, entry) in entries {
        if entry.event.bucket() != Some(bucket) {
            continue;
        }
        let (sites, key): (Vec<&SiteRef>, Option<String>) = match &entry.event {
            Event::BoundaryPolicyChanged { policy, .. } => {
                current = Some(policy.clone());
                policies.push(PolicyPeriod {
                    from_index: Some(*index),
                    policy: policy.clone(),
                });
                continue;
            }
            Event::ObjectStored { sites, key, .. } => (sites.iter().collect(), Some(key_text(key))),
            Event::ObjectRead { site, key, .. } => (vec![site], Some(key_text(key))),
            Event::KeyUsed { location, .. } => (location.iter().collect(), None),
            _ => continue,
        };
        checked += 1;
        let Some(policy) = &current else {
            unjudged += 1;
            continue;
        };
        for site in sites {
            if let Some(reason) = site_outside(site, policy) {
                findings.push(Finding {
                    index: *index,
                    time_ms: entry.time_ms,
                    actor: entry.actor.clone(),
                    event: entry.event.type_name().to_owned(),
                    key: key.clone(),
                    site: site.id.clone(),
                    reason,
                });
            }
        }
    }
    let verdict = if !findings.is_empty() {
        Verdict::Violations
    } else if unjudged > 0 {
        Verdict::NoPolicy
    } else {
        Verdict::WithinBoundary
    };
    AuditReport {
        bucket: bucket.to_owned(),
        verdict,
        checkpoint_size,
        policies,
        events_checked: checked,
        events_without_policy: unjudged,
        findings,
    }
}

pub(crate) fn time_text(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl AuditReport {
    /// The report as Markdown, for people.
    #[must_use]
    pub fn to_markdown(&self) -> String {
        let verdict = match self.verdict {
            Verdict::WithinBoundary => {
                "**WITHIN BOUNDARY** — no object of this bucket was stored, read or decrypted outside its approved boundary."
            }
            Verdict::Violations => {
                "**VIOLATIONS** — data of this bucket was stored, read or decrypted outside its approved boundary."
            }
            Verdict::NoPolicy => {
                "**NO POLICY** — some data events happened while no boundary policy was known; they cannot be judged."
            }
        };
        let mut out = format!(
            "# Boundary audit: bucket `{}`\n\nVerdict: {verdict}\n\nVerified log size: {} entries. Data events checked: {} ({} without a policy).\n\n## Policies in force\n\n",
            self.bucket, self.checkpoint_size, self.events_checked, self.events_without_policy
        );
        if self.policies.is_empty() {
            out.push_str("None recorded and none given.\n");
        }
        for PolicyPeriod {
            from_index: index,
            policy: p,
        } in &self.policies
        {
            let from = index.map_or_else(
                || "given by the auditor".to_owned(),
                |i| format!("from entry {i}"),
            );
            out.push_str(&format!(
                "- {from}: allowed [{}]{}\n",
                p.allowed.join(", "),
                if p.forbidden_exposures.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", forbidden exposures [{}]",
                        p.forbidden_exposures.join(", ")
                    )
                }
            ));
        }
        if !self.findings.is_empty() {
            out.push_str("\n## Findings\n\n| entry | time (UTC) | who | event | object | site | reason |\n|---|---|---|---|---|---|---|\n");
            for f in &self.findings {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} |\n",
                    f.index,
                    time_text(f.time_ms),
                    f.actor.replace('|', "\\|"),
                    f.event,
                    f.key.as_deref().unwrap_or("").replace('|', "\\|"),
                    f.site.replace('|', "\\|"),
                    f.reason.replace('|', "\\|")
                ));
            }
        }
        out
    }

    /// The report as JSON, for programs.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The audit in the common report shape, referring to `checkpoint` (the verified one the
    /// entries come from).
    #[must_use]
    pub fn to_report(
        &self,
        generated_ms: i64,
        checkpoint: Option<crate::report::CheckpointRef>,
    ) -> crate::report::Report {
        use crate::report::{Finding as F, Outcome, Report, ReportKind, Severity};
        let mut r = Report::new(
            ReportKind::BoundaryAudit,
            format!("Boundary audit: bucket `{}`", self.bucket),
            format!("bucket {}", self.bucket),
        );
        r.generated_ms = generated_ms;
        r.checkpoint = checkpoint;
        let periods: Vec<String> = self
            .policies
            .iter()
            .map(|p| {
                let from = p.from_index.map_or_else(
                    || "before the log".to_owned(),
                    |i| format!("from entry {i}"),
                );
                format!("{from}: allowed [{}]", p.policy.allowed.join(", "))
            })
            .collect();
        r.policy = (!periods.is_empty()).then(|| periods.join("; "));
        (r.outcome, r.summary) = match self.verdict {
            Verdict::WithinBoundary => (
                Outcome::Pass,
                format!(
                    "all {} data events stayed inside the boundary in force at the time",
                    self.events_checked
                ),
            ),
            Verdict::Violations => (
                Outcome::Fail,
                format!(
                    "{} of {} data events happened outside the boundary",
                    self.findings.len(),
                    self.events_checked
                ),
            ),
            Verdict::NoPolicy => (
                Outcome::Undetermined,
                format!(
                    "{} of {} data events happened with no boundary known",
                    self.events_without_policy, self.events_checked
                ),
            ),
        };
        for f in &self.findings {
            r.push(F {
                severity: Severity::Violation,
                subject: f.key.clone().unwrap_or_else(|| f.site.clone()),
                message: format!("{} by {}: {}", f.event, f.actor, f.reason),
                log_index: Some(f.index),
                time_ms: Some(f.time_ms),
            });
        }
        if self.events_without_policy > 0 {
            r.push(F {
                severity: Severity::Warning,
                subject: format!("bucket {}", self.bucket),
                message: format!(
                    "{} data events happened while no boundary policy was known",
                    self.events_without_policy
                ),
                log_index: None,
                time_ms: None,
            });
        }
        r.details = serde_json::to_value(self).unwrap_or_default();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(id: &str, j: &str, x: &[&str]) -> SiteRef {
        SiteRef {
            id: id.into(),
            jurisdiction: j.into(),
            exposures: x.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn stored(bucket: &str, s: SiteRef) -> Event {
        Event::ObjectStored {
            bucket: bucket.into(),
            key: KeyRef::Plain("k".into()),
            version_id: "null".into(),
            size: 1,
            etag: "e".into(),
            sha256: None,
            via: "put".into(),
            sites: vec![s],
            key_id: None,
        }
    }

    #[test]
    fn policies_are_replayed_in_log_order() {
        let eu = BoundaryRecord {
            allowed: vec!["EU".into()],
            forbidden_exposures: vec!["us-cloud-act".into()],
        };
        let entries = vec![
            (
                0,
                Entry::new(1, "key:A", stored("b", site("fr-1", "FR", &[]))),
            ),
            (
                1,
                Entry::new(
                    2,
                    "root",
                    Event::BoundaryPolicyChanged {
                        bucket: "b".into(),
                        policy: eu.clone(),
                    },
                ),
            ),
            (
                2,
                Entry::new(3, "key:A", stored("b", site("fr-1", "FR", &[]))),
            ),
            (
                3,
                Entry::new(4, "key:B", stored("b", site("us-1", "US", &[]))),
            ),
            (
                4,
                Entry::new(
                    5,
                    "key:C",
                    stored("b", site("de-h", "DE", &["us-cloud-act"])),
                ),
            ),
            (
                5,
                Entry::new(6, "key:D", stored("other", site("us-1", "US", &[]))),
            ),
            (
                6,
                Entry::new(
                    7,
                    "key:E",
                    Event::ObjectRead {
                        bucket: "b".into(),
                        key: KeyRef::Hmac("ab".into()),
                        version_id: "v".into(),
                        first: 0,
                        length: 1,
                        site: site("nowhere", "", &[]),
                    },
                ),
            ),
        ];
        let r = boundary_audit("b", &entries, None, 7);
        assert_eq!(r.verdict, Verdict::Violations);
        assert_eq!(r.events_checked, 5);
        assert_eq!(r.events_without_policy, 1);
        let idx: Vec<u64> = r.findings.iter().map(|f| f.index).collect();
        assert_eq!(idx, [3, 4, 6]);
        assert!(
            r.findings[0]
                .reason
                .contains("in US, outside the allowed [EU]")
        );
        assert_eq!(r.findings[0].actor, "key:B");
        assert!(r.findings[1].reason.contains("us-cloud-act"));
        assert!(r.findings[2].reason.contains("declares no jurisdiction"));
        let md = r.to_markdown();
        assert!(
            md.contains("VIOLATIONS") && md.contains("| 3 | 1970-01-01T00:00:00Z | key:B |"),
            "{md}"
        );
        assert!(r.to_json().contains("\"verdict\": \"violations\""));
        // Inside the boundary from the start (the auditor supplies the initial policy).
        let clean: Vec<_> = entries[..3].to_vec();
        let r = boundary_audit("b", &clean, Some(eu.clone()), 3);
        assert_eq!(r.verdict, Verdict::WithinBoundary);
        // Without any policy nothing can be judged.
        let r = boundary_audit("b", &entries[..1], None, 1);
        assert_eq!(r.verdict, Verdict::NoPolicy);
        assert_eq!(time_text(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn the_audit_in_the_common_report_shape() {
        use crate::report::{Outcome, ReportKind, Severity};
        let eu = BoundaryRecord {
            allowed: vec!["EU".into()],
            forbidden_exposures: vec![],
        };
        let entries = vec![
            (
                0,
                Entry::new(1, "key:A", stored("b", site("fr-1", "FR", &[]))),
            ),
            (
                1,
                Entry::new(2, "key:B", stored("b", site("us-1", "US", &[]))),
            ),
        ];
        let r = boundary_audit("b", &entries, Some(eu.clone()), 2).to_report(9, None);
        assert_eq!(
            (r.kind, r.outcome),
            (ReportKind::BoundaryAudit, Outcome::Fail)
        );
        assert_eq!(r.policy.as_deref(), Some("before the log: allowed [EU]"));
        assert_eq!(
            r.summary,
            "1 of 2 data events happened outside the boundary"
        );
        assert_eq!(r.findings.len(), 1);
        let f = &r.findings[0];
        assert_eq!(
            (f.severity, f.log_index, f.time_ms),
            (Severity::Violation, Some(1), Some(2))
        );
        assert_eq!(f.subject, "k");
        assert!(
            f.message
                .starts_with("object_stored by key:B: site us-1 is in US"),
            "{}",
            f.message
        );
        assert_eq!(r.details["verdict"], "violations");
        let r = boundary_audit("b", &entries[..1], None, 1).to_report(9, None);
        assert_eq!(r.outcome, Outcome::Undetermined);
        assert_eq!(r.findings[0].severity, Severity::Warning);
        let r = boundary_audit("b", &entries[..1], Some(eu), 1).to_report(9, None);
        assert_eq!((r.outcome, r.findings.len()), (Outcome::Pass, 0));
    }
}
