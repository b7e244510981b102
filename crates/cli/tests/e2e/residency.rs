//! Residency end to end: a site's legal profile with exposures derived from its parent
//! company, boundary policies set, refused and versioned through `vallum policy`, writes
//! refused through aws-cli and boto3 with the site and rule named, `vallum placement explain`,
//! the policy in the transparency log driving the offline boundary audit, and bad input.

use crate::common;

use std::path::Path;
use std::process::Command;

use aws_sdk_s3::error::ProvideErrorMetadata;
use common::{Server, json, run, run_failing, tool, vallum_admin as vallum};

/// The [site] of a French site run by the French subsidiary of a US group,
/// SecNumCloud-certified until 2030.
const US_OWNED: &str = r#"[site]
jurisdiction = "FR"
facility = "Paris-2"
operator = "Cloud France SAS"
parent = "Hyperscale Inc"
parent_country = "US"
certifications = [{ scheme = "SecNumCloud", expires = "2030-06-30" }]
"#;

/// The same site before its operator was bought: French-owned.
const FRENCH_OWNED: &str = r#"[site]
jurisdiction = "FR"
facility = "Paris-2"
operator = "Cloud France SAS"
"#;

/// A server on `dir/data` (kept across restarts) with `site` and `extra` TOML.
fn start(dir: &Path, site: &str, extra: &str) -> Server {
    let cfg = dir.join("vallum.toml");
    std::fs::write(
        &cfg,
        format!("{site}\n[ledger]\ncheckpoint_interval_ms = 50\n{extra}"),
    )
    .unwrap();
    Server::start_in(
        &dir.join("data"),
        "127.0.0.1:0",
        &["--config", cfg.to_str().unwrap()],
        &[],
    )
}

#[test]
fn boundary_policies_are_judged_against_the_site_profile_versioned_and_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), US_OWNED, "");

    // The site's exposures follow from its US parent, with the legal basis.
    let site = json(&run(
        vallum(&server, "site").args(["show", "local", "--json"])
    ));
    let ids: Vec<&str> = site["exposures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["us-cloud-act", "us-fisa-702"]);
    assert!(
        site["exposures"][0]["basis"]
            .as_str()
            .unwrap()
            .starts_with("operator parent Hyperscale Inc in US (US CLOUD Act"),
        "{site}"
    );
    let text = run(vallum(&server, "site").arg("list"));
    assert!(
        text.contains("site local")
            && text.contains("exposed to    us-cloud-act: operator parent Hyperscale Inc in US"),
        "{text}"
    );
    assert!(
        text.contains("certified     SecNumCloud until 2030-06-30\n"),
        "{text}"
    );

    let file = tmp.path().join("scan.pdf");
    std::fs::write(&file, b"patient scan").unwrap();
    run(server.aws().args(["s3", "mb", "s3://records"]));
    run(server
        .aws()
        .args(["s3", "cp"])
        .arg(&file)
        .arg("s3://records/before"));

    // A policy the site cannot meet is refused with the site and each rule it breaks, and
    // leaves nothing behind.
    let refused = run_failing(vallum(&server, "policy").args([
        "set",
        "records",
        "--name",
        "eu-strict",
        "--allow",
        "EU",
        "--forbid-exposure",
        "us-cloud-act",
    ]));
    assert!(
        refused.contains("NoCompliantPlacement (409)")
            && refused.contains("site local: operator parent Hyperscale Inc in US (US CLOUD Act (2018), 18 U.S.C. § 2713), exposed to us-cloud-act, forbidden by policy eu-strict"),
        "{refused}"
    );
    let refused = run_failing(vallum(&server, "policy").args([
        "set",
        "records",
        "--name",
        "two-copies",
        "--allow",
        "FR",
        "--replicas",
        "2",
    ]));
    assert!(
        refused.contains("2 replica(s) needed, 1 site(s) permitted"),
        "{refused}"
    );
    let history = json(&run(
        vallum(&server, "policy").args(["history", "records", "--json"])
    ));
    assert_eq!(history["versions"], serde_json::json!([]));

    // Policies the site meets are versions 1 and 2, by the root key.
    let set = json(&run(vallum(&server, "policy")
        .args(["set", "records", "--name", "eu", "--allow", "EU", "--json"])));
    assert_eq!(set["current"]["version"], 1);
    assert_eq!(
        set["current"]["set_by"],
        format!("key:{}", server.access_key)
    );
    let text = run(vallum(&server, "policy").args([
        "set",
        "records",
        "--name",
        "fr-hds",
        "--allow",
        "FR",
        "--require-certification",
        "secnumcloud",
    ]));
    assert!(text.contains("version 2 by key:"), "{text}");
    let text = run(vallum(&server, "policy").args(["show", "records"]));
    assert!(
        text.contains("own policy  version 2: fr-hds: allowed [FR], required certifications [secnumcloud], 1 replica(s) on 1 operator(s)"),
        "{text}"
    );
    run(server
        .aws()
        .args(["s3", "cp"])
        .arg(&file)
        .arg("s3://records/after"));
    let text = run(vallum(&server, "placement").args(["explain", "records", "2026/scan.pdf"]));
    assert!(
        text.contains("records/2026/scan.pdf under policy fr-hds")
            && text.contains("placed on local (write quorum 1)")
            && text.contains("site local: permitted, chosen"),
        "{text}"
    );

    // A bucket under a policy the site breaks: every kind of write is refused (boto3), and
    // `placement explain` says why and exits 3.
    run(server.aws().args(["s3", "mb", "s3://germany"]));
    let germany = tmp.path().join("de.json");
    std::fs::write(&germany, r#"{"name": "de-only", "allowed": ["DE"]}"#).unwrap();
    let refused = run_failing(
        vallum(&server, "policy")
            .args(["set", "germany", "--file"])
            .arg(&germany),
    );
    assert!(
        refused.contains("site local: located in FR, outside [DE] allowed by policy de-only"),
        "{refused}"
    );
    let out = vallum(&server, "placement")
        .args(["explain", "records", "k", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let decision = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(decision["chosen"], serde_json::json!(["local"]));
    assert_eq!(decision["sites"][0]["rejections"], serde_json::json!([]));

    // Bad policy documents: each a clear 400 and no new version.
    for (doc, why) in [
        (
            "{\"name\": \"x\", \"allowed\": [\"XX\"]}",
            "unknown jurisdiction \"XX\"",
        ),
        (
            "{\"name\": \"x\", \"allowed\": [\"EU\"], \"min_replicas\": 1, \"min_operators\": 2}",
            "min_operators (2) must be between 1 and min_replicas (1)",
        ),
        (
            "{\"name\": \"x\", \"allowed\": [\"EU\"], \"forbidden_exposures\": [\"cloud\"]}",
            "unknown exposure \"cloud\"",
        ),
        (
            "{\"name\": \"x\", \"allowed\": [\"EU\"], \"replicas\": 2}",
            "MalformedJSON (400): request body: unknown field `replicas`",
        ),
    ] {
        let path = tmp.path().join("bad.json");
        std::fs::write(&path, doc).unwrap();
        let err = run_failing(
            vallum(&server, "policy")
                .args(["set", "records", "--file"])
                .arg(&path),
        );
        assert!(err.contains("(400)") && err.contains(why), "{doc}: {err}");
    }
    let truncated = tmp.path().join("truncated.json");
    std::fs::write(&truncated, "{\"name\": \"x\", \"allowed\": [\"EU\"").unwrap();
    let err = run_failing(
        vallum(&server, "policy")
            .args(["set", "records", "--file"])
            .arg(&truncated),
    );
    assert!(err.contains("is not a JSON policy document"), "{err}");
    let err = run_failing(vallum(&server, "policy").args(["show", "nosuch"]));
    assert!(err.contains("NoSuchBucket (404)"), "{err}");
    let err = run_failing(vallum(&server, "site").args(["show", "nosuch"]));
    assert!(err.contains("NoSuchSite (404)"), "{err}");

    // Removing the bucket's policy is version 3; the history keeps all three.
    run(vallum(&server, "policy").args(["clear", "records"]));
    let history = json(&run(
        vallum(&server, "policy").args(["history", "records", "--json"])
    ));
    let names: Vec<serde_json::Value> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["policy"]["name"].clone())
        .collect();
    assert_eq!(
        names,
        [
            serde_json::json!("eu"),
            serde_json::json!("fr-hds"),
            serde_json::Value::Null
        ]
    );

    // The log carries the policies, so an auditor needs no --allow: the bucket's traffic was
    // judged against the policy in force at each entry, and was within it.
    // Every entry above was durable before its reply; the next checkpoint (every 50 ms)
    // covers them.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let bundle = tmp.path().join("records.bundle");
    run(common::vallum_admin(&server, "log")
        .args(["bundle", "--from-server", "--key", &server.log_vkey])
        .args(["--bucket", "records", "--out"])
        .arg(&bundle));
    let entries: Vec<String> = common::bundle_entries(&bundle)
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        entries
            .iter()
            .filter(|t| *t == "boundary_policy_changed")
            .count(),
        2,
        "{entries:?}"
    );
    let report = tmp.path().join("audit.json");
    let out = Command::new(env!("CARGO_BIN_EXE_vallum"))
        .args(["verify", "--key", &server.log_vkey, "--bundle"])
        .arg(&bundle)
        .args([
            "--boundary",
            "--bucket",
            "records",
            "--format",
            "json",
            "--report",
        ])
        .arg(&report)
        .output()
        .unwrap();
    let audit = json(&std::fs::read_to_string(&report).unwrap());
    // The object stored before any policy (and its key wrap) could not be judged, so the
    // verdict is "no policy" (exit 5); the object stored under fr-hds (and its key wrap) was
    // judged against it and is within; both policies were replayed from the log.
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert_eq!(audit["findings"], serde_json::json!([]), "{audit}");
    assert_eq!(
        (&audit["events_checked"], &audit["events_without_policy"]),
        (&serde_json::json!(4), &serde_json::json!(2)),
        "{audit}"
    );
    assert_eq!(audit["policies"].as_array().unwrap().len(), 2, "{audit}");
}

#[test]
fn a_default_policy_and_a_changed_site_profile_refuse_writes_through_real_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let default = "\n[residency]\ndefault_policy = { name = \"de-only\", allowed = [\"DE\"] }\n";
    let mut server = start(tmp.path(), FRENCH_OWNED, default);
    // Buckets are created (no byte is placed), but nothing can be written into them.
    run(server.aws().args(["s3", "mb", "s3://blocked"]));
    run(server.aws().args(["s3", "mb", "s3://open"]));
    let file = tmp.path().join("f");
    std::fs::write(&file, b"data").unwrap();
    let err = run_failing(
        server
            .aws()
            .args(["s3", "cp"])
            .arg(&file)
            .arg("s3://blocked/f"),
    );
    assert!(
        err.contains("(XVallumNoCompliantPlacement)")
            && err.contains("no compliant placement under policy de-only: 1 replica(s) needed, 0 site(s) permitted; site local: located in FR, outside [DE] allowed by policy de-only"),
        "{err}"
    );
    let out = vallum(&server, "placement")
        .args(["explain", "blocked", "f"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("REFUSED: no compliant placement"));

    // The open bucket gets a strict policy of its own that the French-owned site meets.
    run(vallum(&server, "policy").args([
        "set",
        "open",
        "--name",
        "eu-strict",
        "--allow",
        "EU",
        "--forbid-exposure",
        "us-cloud-act",
    ]));
    // boto3: put, multipart and copy into the blocked bucket refused, nothing stored.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/boto3_residency.py");
    let out = run(Command::new(tool("python3"))
        .arg(script)
        .args(["blocked", "open"])
        .envs(server.tool_env()));
    assert!(out.contains("boto3 residency ok"), "{out}");

    // Before the change only the blocked bucket is outside (exit 3), open is inside.
    let out = vallum(&server, "placement")
        .args(["check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bucket open: inside policy eu-strict on site local"),
        "{text}"
    );
    let inside = run(vallum(&server, "placement").args(["check", "open"]));
    assert!(
        inside.contains("holds 1 version(s), 12 byte(s)"),
        "{inside}"
    );

    // A multipart upload begins while the site is French-owned.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = server.client();
    let upload = rt.block_on(async {
        let up = client
            .create_multipart_upload()
            .bucket("open")
            .key("big")
            .send()
            .await
            .unwrap();
        client
            .upload_part()
            .bucket("open")
            .key("big")
            .upload_id(up.upload_id().unwrap())
            .part_number(1)
            .body(vec![7u8; 5 << 20].into())
            .send()
            .await
            .unwrap();
        up.upload_id().unwrap().to_owned()
    });

    // The operator is bought by a US group: the site restarts with its new profile. The
    // bucket's policy forbids the exposure that now follows, so the upload's next part and
    // any new object are refused, naming the new parent; reads still work.
    server.kill9();
    let server = start(tmp.path(), US_OWNED, default);
    let client = server.client();
    rt.block_on(async {
        let err = client
            .upload_part()
            .bucket("open")
            .key("big")
            .upload_id(&upload)
            .part_number(2)
            .body(vec![8u8; 100].into())
            .send()
            .await
            .unwrap_err();
        let err = err.into_service_error();
        assert_eq!(err.code(), Some("XVallumNoCompliantPlacement"));
        assert!(
            err.message().unwrap().contains("site local: operator parent Hyperscale Inc in US (US CLOUD Act (2018), 18 U.S.C. § 2713), exposed to us-cloud-act, forbidden by policy eu-strict"),
            "{err:?}"
        );
        let put = client.put_object().bucket("open").key("new").body(b"x".to_vec().into()).send().await;
        assert!(put.is_err());
        let got = client.get_object().bucket("open").key("src").send().await.unwrap();
        assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"source bytes");
    });
    // The drift is reported: both buckets' data now sit outside their policies (blocked's
    // default never admitted the site; open's forbids the exposure its new parent brings),
    // with what they hold, and the gauge operators alert on counts them.
    let out = vallum(&server, "placement")
        .args(["check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bucket open: OUTSIDE policy eu-strict\n  site local: operator parent Hyperscale Inc in US"),
        "{text}"
    );
    assert!(
        text.contains("bucket blocked: OUTSIDE policy de-only"),
        "{text}"
    );
    let open = vallum(&server, "placement")
        .args(["check", "open", "--json"])
        .output()
        .unwrap();
    assert_eq!(open.status.code(), Some(3));
    let open = json(&String::from_utf8_lossy(&open.stdout));
    // src (12 bytes) from boto3; the unfinished upload is not a version.
    assert_eq!(
        open["held"],
        serde_json::json!({"versions": 1, "bytes": 12}),
        "{open}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics =
            run(Command::new(tool("curl")).args(["-sf", &format!("{}/metrics", server.endpoint)]));
        if metrics.contains("vallum_boundary_noncompliant_buckets 2") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Policies survive the restart.
    let shown = json(&run(
        vallum(&server, "policy").args(["show", "open", "--json"])
    ));
    assert_eq!(shown["current"]["version"], 1);
    assert_eq!(shown["effective"]["name"], "eu-strict");
    assert_eq!(shown["default"]["name"], "de-only");
    let listed = run(server
        .aws()
        .args(["s3api", "list-objects-v2", "--bucket", "blocked"]));
    assert!(!listed.contains("\"Key\""), "{listed}");
}
