//! Key lifecycle end to end: boto3 and aws-cli for the data, `vallum key` (the admin API) for
//! the keys — bucket default encryption, rotation with its re-wrap job, disable/enable,
//! scheduled deletion, and crypto-shredding with its report.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{Server, json, run, run_failing, tool};

fn key_cli(server: &Server) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vallum"));
    cmd.arg("key")
        .envs(server.tool_env())
        .env("VALLUM_ENDPOINT", &server.endpoint)
        .env("VALLUM_JSON", "1");
    cmd
}

#[test]
fn keys_are_chosen_rotated_disabled_and_shredded_through_real_clients() {
    let server = Server::start();
    for id in ["records", "hr"] {
        let out = json(&run(key_cli(&server).args(["create", id])));
        assert_eq!(
            (out["key_id"].as_str(), out["current_version"].as_u64()),
            (Some(id), Some(1))
        );
    }
    // Readable unless asked for JSON: a table of the keys, the JSON's fields as columns.
    let listed = json(&run(key_cli(&server).arg("list")));
    let text = run(key_cli(&server).arg("list").env("VALLUM_JSON", "0"));
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_err(),
        "{text}"
    );
    let header = text.lines().find(|l| l.contains("KEY_ID")).expect(&text);
    assert!(header.contains("STATE"), "{text}");
    for key in listed["keys"].as_array().expect("keys") {
        let id = key["key_id"].as_str().unwrap();
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(id)),
            "{id} missing:\n{text}"
        );
    }
    let flagged = json(&run(key_cli(&server)
        .args(["list", "--json"])
        .env("VALLUM_JSON", "0")));
    assert_eq!(flagged, listed);
    let e = run_failing(key_cli(&server).args(["create", "records"]));
    assert!(e.contains("already exists"), "{e}");
    let e = run_failing(
        key_cli(&server)
            .args(["create", "records"])
            .env("AWS_SECRET_ACCESS_KEY", "wrong"),
    );
    assert!(e.contains("AccessDenied"), "{e}");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/boto3_keys.py");
    let out = run(Command::new(tool("python3"))
        .arg(script)
        .envs(server.tool_env())
        .env("VALLUM_ENDPOINT", &server.endpoint));
    assert!(out.contains("boto3 keys ok"), "{out}");

    // aws-cli writes more under `records`; then `records` is rotated and re-wrapped.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    std::fs::write(&file, common::data(200_000, 3)).unwrap();
    run(server
        .aws()
        .args(["s3api", "create-bucket", "--bucket", "ledgers"]));
    for i in 0..7 {
        run(server
            .aws()
            .args([
                "s3api",
                "put-object",
                "--bucket",
                "ledgers",
                "--key",
                &format!("l{i}"),
            ])
            .args([
                "--server-side-encryption",
                "aws:kms",
                "--ssekms-key-id",
                "records",
                "--body",
            ])
            .arg(&file));
    }
    let before = json(&run(key_cli(&server).args(["describe", "records"])));
    // default, copied, bucket-key (boto3) + 7 (aws-cli)
    assert_eq!(before["usage"]["versions"], 10, "{before}");
    let out = key_cli(&server)
        .args(["rotate", "records", "--wait"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        (
            done["rewrapped"].as_u64(),
            done["failed"].as_u64(),
            done["done"].as_bool()
        ),
        (Some(10), Some(0), Some(true)),
        "{done}"
    );
    // Progress on stderr with the total, the rate and the time left.
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(
        progress.contains("re-wrap records: ") && progress.contains("/10 scanned ("),
        "{progress}"
    );
    let after = json(&run(key_cli(&server).args(["describe", "records"])));
    assert_eq!(after["key"]["current_version"], 2, "{after}");
    assert_eq!(after["usage"]["stale_versions"], 0, "{after}");
    let got = dir.path().join("got.bin");
    run(server
        .aws()
        .args(["s3api", "get-object", "--bucket", "ledgers", "--key", "l3"])
        .arg(&got));
    assert!(std::fs::read(&got).unwrap() == std::fs::read(&file).unwrap());

    // Disabled: reads fail with the error S3 gives for a disabled KMS key; enabled again: fine.
    run(key_cli(&server).args(["disable", "records"]));
    let e = run_failing(
        server
            .aws()
            .args(["s3api", "get-object", "--bucket", "ledgers", "--key", "l3"])
            .arg(&got),
    );
    assert!(e.contains("KMS.DisabledException"), "{e}");
    run(key_cli(&server).args(["enable", "records"]));
    run(server
        .aws()
        .args(["s3api", "get-object", "--bucket", "ledgers", "--key", "l3"])
        .arg(&got));

    // Scheduled deletion: bounds checked, reads refused while pending, cancellable.
    let e = run_failing(key_cli(&server).args(["schedule-deletion", "hr", "--days", "3"]));
    assert!(e.contains("7 to 30 days"), "{e}");
    let pending = json(&run(key_cli(&server).args([
        "schedule-deletion",
        "hr",
        "--days",
        "7",
    ])));
    assert!(
        pending["state"]["pending_deletion"]["delete_at_ms"]
            .as_i64()
            .is_some(),
        "{pending}"
    );
    let e = run_failing(
        server
            .aws()
            .args(["s3api", "get-object", "--bucket", "enc", "--key", "hr-file"])
            .arg(&got),
    );
    assert!(e.contains("KMS.DisabledException"), "{e}");
    run(key_cli(&server).args(["cancel-deletion", "hr"]));
    run(server
        .aws()
        .args(["s3api", "get-object", "--bucket", "enc", "--key", "hr-file"])
        .arg(&got));

    // Crypto-shredding: confirmation required; the report names what was lost; it is lost.
    let e = run_failing(key_cli(&server).args(["destroy", "hr"]));
    assert!(e.contains("--yes"), "{e}");
    let report = json(&run(key_cli(&server).args(["destroy", "hr", "--yes"])));
    // hr-file, hr-arn, mp and explicit-kms (boto3)
    assert_eq!(report["unrecoverable"]["versions"], 4, "{report}");
    assert_eq!(report["key"]["state"], "destroyed", "{report}");
    let sample: Vec<&str> = report["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        sample.iter().any(|s| s.starts_with("enc/hr-file@")),
        "{sample:?}"
    );
    let e = run_failing(
        server
            .aws()
            .args(["s3api", "get-object", "--bucket", "enc", "--key", "hr-file"])
            .arg(&got),
    );
    assert!(e.contains("KMS.DisabledException"), "{e}");
    let e = run_failing(key_cli(&server).args(["enable", "hr"]));
    assert!(e.contains("InvalidRequest"), "{e}");
    let listed = json(&run(key_cli(&server).args(["list"])));
    let ids: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["hr", "records", "vallum-default"]);
    // Objects under other keys are untouched.
    run(server
        .aws()
        .args(["s3api", "get-object", "--bucket", "enc", "--key", "default"])
        .arg(&got));
}
