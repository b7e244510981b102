//! Reports in one shape: the drift check (`vallum placement check --report`), the shred report
//! (`vallum key destroy --report`) and the boundary audit (`vallum verify --boundary --format
//! report`) each say what was checked, the outcome and the findings, and refer to a log
//! checkpoint the log's own key verifies.

use std::path::Path;
use std::process::Command;

use vallum_ledger::checkpoint::Checkpoint;
use vallum_ledger::note::Verifier;

use crate::common::{Server, json, run, vallum_admin};

fn report(path: &Path) -> serde_json::Value {
    json(&std::fs::read_to_string(path).unwrap())
}

/// The report's checkpoint is a real checkpoint of `server`'s log: it opens with the log key.
fn check_checkpoint(server: &Server, r: &serde_json::Value) {
    let note = r["checkpoint"]["signed_note"].as_str().unwrap();
    let key = Verifier::parse(&server.log_vkey).unwrap();
    let (cp, _) = Checkpoint::open(note.as_bytes(), &key, &[]).unwrap();
    assert_eq!(cp.size, r["checkpoint"]["size"].as_u64().unwrap());
    assert!(cp.size >= 1, "{r}");
}

#[test]
fn drift_shred_and_audit_reports_share_one_shape_and_refer_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vallum.toml");
    std::fs::write(&cfg, "[site]\njurisdiction = \"FR\"\n").unwrap();
    let server = Server::start_with(&["--config", cfg.to_str().unwrap()], &[]);
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "patient record").unwrap();
    run(server.aws().args(["s3", "mb", "s3://records"]));
    run(server
        .aws()
        .args(["s3", "cp"])
        .arg(&file)
        .arg("s3://records/a.txt"));

    // Drift: every bucket inside its (absent) boundary; Markdown for people, JSON for programs.
    let md = dir.path().join("drift.md");
    run(vallum_admin(&server, "placement")
        .args(["check", "--report"])
        .arg(&md));
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(
        text.starts_with("# Boundary drift: platform\n\n**PASS**"),
        "{text}"
    );
    assert!(text.contains("## Signed checkpoint"), "{text}");
    let path = dir.path().join("drift.json");
    run(vallum_admin(&server, "placement")
        .args(["check", "records", "--report"])
        .arg(&path));
    let drift = report(&path);
    assert_eq!(drift["format"], "vallum-report/1");
    assert_eq!(drift["kind"], "boundary_drift");
    assert_eq!(drift["subject"], "bucket records");
    assert_eq!(drift["outcome"], "pass");
    assert_eq!(drift["findings"].as_array().unwrap().len(), 0);
    assert_eq!(drift["details"][0]["bucket"], "records");
    check_checkpoint(&server, &drift);

    // Shred: a record of what became unrecoverable, each version named.
    run(vallum_admin(&server, "key").args(["create", "hr"]));
    run(server.aws().args(["s3", "mb", "s3://payroll"]));
    run(server.aws().args([
        "s3api",
        "put-object",
        "--bucket",
        "payroll",
        "--key",
        "payroll.csv",
        "--server-side-encryption",
        "aws:kms",
        "--ssekms-key-id",
        "hr",
    ]));
    let path = dir.path().join("shred.json");
    let out = json(&run(vallum_admin(&server, "key")
        .args(["destroy", "hr", "--yes", "--report"])
        .arg(&path)));
    assert_eq!(out["unrecoverable"]["versions"], 1, "{out}");
    let shred = report(&path);
    assert_eq!(shred["kind"], "crypto_shred");
    assert_eq!(shred["outcome"], "recorded");
    assert_eq!(shred["subject"], "key hr");
    assert_eq!(shred["details"]["unrecoverable"]["versions"], 1);
    let findings = shred["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{shred}");
    assert!(
        findings[0]["subject"]
            .as_str()
            .unwrap()
            .starts_with("payroll/payroll.csv@"),
        "{shred}"
    );
    check_checkpoint(&server, &shred);

    // Audit: offline, from a proof bundle, against an EU boundary (the site is in France).
    let bundle = dir.path().join("records.bundle.json");
    run(vallum_admin(&server, "log")
        .args(["bundle", "--from-server", "--key", &server.log_vkey])
        .args(["--bucket", "records", "--out"])
        .arg(&bundle));
    let verify = |allow: &str, path: &Path| {
        Command::new(env!("CARGO_BIN_EXE_vallum"))
            .args(["verify", "--key", &server.log_vkey, "--bundle"])
            .arg(&bundle)
            .args(["--boundary", "--bucket", "records", "--allow", allow])
            .args(["--format", "report", "--report"])
            .arg(path)
            .output()
            .unwrap()
    };
    let path = dir.path().join("audit.json");
    let out = verify("EU", &path);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let audit = report(&path);
    assert_eq!(audit["kind"], "boundary_audit");
    assert_eq!(audit["outcome"], "pass");
    assert_eq!(audit["policy"], "before the log: allowed [EU]");
    check_checkpoint(&server, &audit);
    // Against Germany only, every data event is a violation with its log entry.
    let out = verify("DE", &path);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let audit = report(&path);
    assert_eq!(audit["outcome"], "fail");
    let findings = audit["findings"].as_array().unwrap();
    assert!(!findings.is_empty());
    assert!(findings.iter().all(|f| {
        f["severity"] == "violation"
            && f["log_index"].is_u64()
            && f["message"]
                .as_str()
                .unwrap()
                .contains("outside the allowed [DE]")
    }));
}
