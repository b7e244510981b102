//! The one shape of Vallum's reports: what was checked, against which policy, the outcome,
//! the findings, and the signed log checkpoint the report refers to, rendered as JSON (for
//! programs, format [`REPORT_FORMAT`]) and Markdown (for people). The boundary drift check, the
//! crypto-shred report and the boundary audit each build one; compliance evidence comes next.
//!
//! The checkpoint is the log's signed note as published: a reader checks it with the log's
//! verifier key (`vallum verify`) and knows the report speaks of that state of the log.

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::note::Note;

/// The report format (JSON field `format`); a change to the shape bumps it.
pub const REPORT_FORMAT: &str = "vallum-report/1";

/// Which check produced a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// Whether stored data is inside its bucket's boundary policy today.
    BoundaryDrift,
    /// What destroying a key made unrecoverable.
    CryptoShred,
    /// Whether a bucket's data events in the log stayed inside its boundary over time.
    BoundaryAudit,
}

/// The answer of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing found against the policy.
    Pass,
    /// At least one finding breaks the policy.
    Fail,
    /// The check could not judge everything (e.g. no policy known).
    Undetermined,
    /// A record of what happened, with no policy to pass or fail (a shred report).
    Recorded,
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Needs a look (e.g. cannot be judged).
    Warning,
    /// Breaks the policy.
    Violation,
}

/// One thing a check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// What it is about: a bucket, a site, an object, a key.
    pub subject: String,
    /// What was found, as a sentence.
    pub message: String,
    /// The log entry it comes from, when it comes from the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
    /// When it happened (ms since the epoch), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<i64>,
}

/// The signed log checkpoint a report refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRef {
    /// The log's origin line.
    pub origin: String,
    /// Its tree size.
    pub size: u64,
    /// Its root hash, base64 (as in the checkpoint).
    pub root_hash: String,
    /// The signed note as published (checkable with the log's verifier key).
    pub signed_note: String,
}

impl CheckpointRef {
    /// The reference for a published signed checkpoint note; `None` if it does not parse.
    #[must_use]
    pub fn from_note(note: &[u8]) -> Option<Self> {
        let parsed = Note::parse(note).ok()?;
        let cp = Checkpoint::parse(&parsed.text).ok()?;
        let root_hash = cp.to_text().lines().nth(2)?.to_owned();
        Some(Self {
            origin: cp.origin,
            size: cp.size,
            root_hash,
            signed_note: String::from_utf8(note.to_vec()).ok()?,
        })
    }
}

/// A report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub format: String,
    /// Which check.
    pub kind: ReportKind,
    /// A title for people.
    pub title: String,
    /// What was checked: the platform, a bucket, a key.
    pub subject: String,
    /// Against which policy, in words (none: the check has no policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// When the report was made (ms since the epoch).
    pub generated_ms: i64,
    /// The signed log checkpoint the report refers to, when there is a log to refer to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointRef>,
    /// The answer.
    pub outcome: Outcome,
    /// The answer in one sentence.
    pub summary: String,
    /// What the check found, most severe first.
    pub findings: Vec<Finding>,
    /// The check's own data (its family's fields), for programs.
    #[serde(default)]
    pub details: serde_json::Value,
}

impl Report {
    /// A report of `kind` on `subject`, with no findings yet.
    #[must_use]
    pub fn new(kind: ReportKind, title: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            format: REPORT_FORMAT.to_owned(),
            kind,
            title: title.into(),
            subject: subject.into(),
            policy: None,
            generated_ms: 0,
            checkpoint: None,
            outcome: Outcome::Pass,
            summary: String::new(),
            findings: Vec::new(),
            details: serde_json::Value::Null,
        }
    }

    /// Adds `finding`; findings are kept most severe first (stable otherwise).
    pub fn push(&mut self, finding: Finding) {
        let at = self
            .findings
            .iter()
            .position(|f| rank(f.severity) < rank(finding.severity))
            .unwrap_or(self.findings.len());
        self.findings.insert(at, finding);
    }

    /// The report as JSON, for programs.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The report as Markdown, for people.
    #[must_use]
    pub fn to_markdown(&self) -> String {
        let outcome = match self.outcome {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Undetermined => "UNDETERMINED",
            Outcome::Recorded => "RECORDED",
        };
        let mut out = format!(
            "# {}\n\n**{outcome}**: {}\n\n- Subject: {}\n",
            self.title,
            self.summary,
            cell(&self.subject)
        );
        if let Some(p) = &self.policy {
            out.push_str(&format!("- Policy: {}\n", cell(p)));
        }
        out.push_str(&format!(
            "- Generated: {}\n",
            crate::audit::time_text(self.generated_ms)
        ));
        match &self.checkpoint {
            Some(c) => out.push_str(&format!(
                "- Log checkpoint: `{}` at size {}, root `{}`\n",
                c.origin, c.size, c.root_hash
            )),
            None => out.push_str("- Log checkpoint: none\n"),
        }
        out.push_str(&format!("\n## Findings ({})\n\n", self.findings.len()));
        if self.findings.is_empty() {
            out.push_str("None.\n");
        } else {
            out.push_str("| severity | subject | finding | log entry | time (UTC) |\n|---|---|---|---|---|\n");
            for f in &self.findings {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    match f.severity {
                        Severity::Info => "info",
                        Severity::Warning => "warning",
                        Severity::Violation => "violation",
                    },
                    cell(&f.subject),
                    cell(&f.message),
                    f.log_index.map(|i| i.to_string()).unwrap_or_default(),
                    f.time_ms.map(crate::audit::time_text).unwrap_or_default(),
                ));
            }
        }
        if let Some(c) = &self.checkpoint {
            out.push_str(&format!(
                "\n## Signed checkpoint\n\n```\n{}```\n",
                c.signed_note
            ));
        }
        out
    }
}

fn rank(s: Severity) -> u8 {
    match s {
        Severity::Violation => 2,
        Severity::Warning => 1,
        Severity::Info => 0,
    }
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::Signer;

    #[test]
    fn a_report_keeps_its_worst_findings_first_and_names_its_checkpoint() {
        let signer = Signer::generate("example.test/log").unwrap();
        let cp = Checkpoint {
            origin: "example.test/log".into(),
            size: 7,
            root: [3; 32],
            extensions: vec![],
        };
        let note = cp.sign(&signer).to_text();
        let c = CheckpointRef::from_note(note.as_bytes()).unwrap();
        assert_eq!((c.origin.as_str(), c.size), ("example.test/log", 7));
        assert_eq!(c.root_hash, "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=");
        assert!(CheckpointRef::from_note(b"not a note").is_none());

        let mut r = Report::new(ReportKind::BoundaryDrift, "Boundary drift", "platform");
        r.checkpoint = Some(c);
        r.policy = Some("eu: allowed [EU]".into());
        r.outcome = Outcome::Fail;
        r.summary = "1 bucket outside".into();
        let info = |m: &str| Finding {
            severity: Severity::Info,
            subject: "b".into(),
            message: m.into(),
            log_index: None,
            time_ms: None,
        };
        r.push(info("first"));
        r.push(Finding {
            severity: Severity::Violation,
            subject: "records | eu".into(),
            message: "site x is in US".into(),
            log_index: Some(4),
            time_ms: Some(0),
        });
        r.push(info("second"));
        let order: Vec<&str> = r.findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(order, ["site x is in US", "first", "second"]);
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["format"], "vallum-report/1");
        assert_eq!(json["kind"], "boundary_drift");
        assert_eq!(json["outcome"], "fail");
        assert_eq!(json["checkpoint"]["size"], 7);
        assert_eq!(json["findings"][0]["log_index"], 4);
        assert!(json["findings"][1].get("log_index").is_none());
        let back: Report = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
        let md = r.to_markdown();
        assert!(
            md.starts_with("# Boundary drift\n\n**FAIL**: 1 bucket outside"),
            "{md}"
        );
        assert!(
            md.contains(
                "| violation | records \\| eu | site x is in US | 4 | 1970-01-01T00:00:00Z |"
            ),
            "{md}"
        );
        assert!(
            md.contains("root `AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=`"),
            "{md}"
        );
        assert!(md.contains("— example.test/log "), "{md}");
    }
}
