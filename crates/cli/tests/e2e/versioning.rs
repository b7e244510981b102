//! Versioning, object lock, tagging and lifecycle end to end with the real boto3 and aws-cli
//! (installed by scripts/test.sh), and a kill -9 in the middle of lifecycle processing.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use common::{Server, data, json, run, tool};

/// A data directory whose server runs the lifecycle worker every second.
fn fast_lifecycle_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("vallum.toml");
    std::fs::write(&config, "[lifecycle]\ninterval_secs = 1\n").unwrap();
    config
}

#[test]
fn boto3_versioning_lock_tagging_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let config = fast_lifecycle_config(dir.path());
    let server = Server::start_in(
        &dir.path().join("data"),
        "127.0.0.1:0",
        &["--config", config.to_str().unwrap()],
        &[],
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/boto3_versioning.py");
    let out = run(Command::new(tool("python3"))
        .arg(script)
        .envs(server.tool_env())
        .env("VALLUM_ENDPOINT", &server.endpoint));
    assert!(out.contains("boto3 versioning ok"), "{out}");
}

/// The same S3 semantics with the metadata in PostgreSQL.
#[test]
fn boto3_versioning_lock_tagging_lifecycle_on_postgres() {
    let url = common::fresh_pg_database();
    let dir = tempfile::tempdir().unwrap();
    let config = fast_lifecycle_config(dir.path());
    let server = Server::start_in(
        &dir.path().join("data"),
        "127.0.0.1:0",
        &["--config", config.to_str().unwrap()],
        &[("VALLUM_META_URL", url.as_str())],
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/boto3_versioning.py");
    let out = run(Command::new(tool("python3"))
        .arg(script)
        .envs(server.tool_env())
        .env("VALLUM_ENDPOINT", &server.endpoint));
    assert!(out.contains("boto3 versioning ok"), "{out}");
}

fn aws(server: &Server) -> Command {
    let mut cmd = Command::new(tool("aws"));
    cmd.envs(server.tool_env())
        .arg("--endpoint-url")
        .arg(&server.endpoint)
        .arg("--output")
        .arg("json");
    cmd
}

#[test]
fn aws_cli_versioning_and_retention() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f.bin");
    std::fs::write(&file, data(1000, 7)).unwrap();
    run(aws(&server).args([
        "s3api",
        "create-bucket",
        "--bucket",
        "cli-worm",
        "--object-lock-enabled-for-bucket",
    ]));
    let status = json(&run(aws(&server).args([
        "s3api",
        "get-bucket-versioning",
        "--bucket",
        "cli-worm",
    ])));
    assert_eq!(status["Status"], "Enabled");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let put = json(&run(aws(&server).args([
            "s3api",
            "put-object",
            "--bucket",
            "cli-worm",
            "--key",
            "report.pdf",
            "--body",
            file.to_str().unwrap(),
        ])));
        ids.push(put["VersionId"].as_str().unwrap().to_owned());
    }
    let listing = json(&run(aws(&server).args([
        "s3api",
        "list-object-versions",
        "--bucket",
        "cli-worm",
    ])));
    let listed: Vec<&str> = listing["Versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["VersionId"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    // COMPLIANCE retention through the CLI: the version cannot be deleted, even with bypass.
    run(aws(&server).args([
        "s3api",
        "put-object-retention",
        "--bucket",
        "cli-worm",
        "--key",
        "report.pdf",
        "--version-id",
        &ids[0],
        "--retention",
        "Mode=COMPLIANCE,RetainUntilDate=2099-01-01T00:00:00Z",
    ]));
    let retention = json(&run(aws(&server).args([
        "s3api",
        "get-object-retention",
        "--bucket",
        "cli-worm",
        "--key",
        "report.pdf",
        "--version-id",
        &ids[0],
    ])));
    assert_eq!(retention["Retention"]["Mode"], "COMPLIANCE");
    let refused = common::run_failing(aws(&server).args([
        "s3api",
        "delete-object",
        "--bucket",
        "cli-worm",
        "--key",
        "report.pdf",
        "--version-id",
        &ids[0],
        "--bypass-governance-retention",
    ]));
    assert!(refused.contains("AccessDenied"), "{refused}");
    run(aws(&server).args([
        "s3api",
        "put-object-legal-hold",
        "--bucket",
        "cli-worm",
        "--key",
        "report.pdf",
        "--version-id",
        &ids[1],
        "--legal-hold",
        "Status=ON",
    ]));
    let hold = json(&run(aws(&server).args([
        "s3api",
        "get-object-legal-hold",
        "--bucket",
        "cli-worm",
        "--key",
        "report.pdf",
        "--version-id",
        &ids[1],
    ])));
    assert_eq!(hold["LegalHold"]["Status"], "ON");
    // The unprotected newest version can be deleted for good.
    run(aws(&server).args([
        "s3api",
        "delete-object",
        "--bucket",
        "cli-worm",
        "--key",
        "report.pdf",
        "--version-id",
        &ids[2],
    ]));
    let head = json(&run(aws(&server).args([
        "s3api",
        "head-object",
        "--bucket",
        "cli-worm",
        "--key",
        "report.pdf",
    ])));
    assert_eq!(head["VersionId"], ids[1].as_str());
    assert_eq!(head["ObjectLockLegalHoldStatus"], "ON");
}

/// Lifecycle deletions are atomic metadata transactions: a kill -9 in the middle of a pass
/// leaves every object either intact or gone, and the restarted worker finishes the job
/// (the garbage collector then leaves exactly the referenced blobs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_lifecycle_leaves_nothing_half_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut server = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
    let s3 = server.client();
    s3.create_bucket().bucket("crashlife").send().await.unwrap();
    const OBJECTS: usize = 400;
    let body = |i: usize| data(2000 + i, i as u64);
    for i in 0..OBJECTS {
        s3.put_object()
            .bucket("crashlife")
            .key(format!("exp/{i:04}"))
            .body(body(i).into())
            .send()
            .await
            .unwrap();
    }
    s3.put_object()
        .bucket("crashlife")
        .key("stay")
        .body(b"stay".to_vec().into())
        .send()
        .await
        .unwrap();
    server.kill9();

    // Restart with a fast worker, give it the rule, and kill it mid-pass.
    let config = dir.path().join("vallum.toml");
    std::fs::write(
        &config,
        "[lifecycle]\ninterval_secs = 1\n[gc]\ninterval_secs = 1\ntrash_grace_secs = 0\norphan_age_secs = 0\n",
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let mut server = Server::start_in(&data_dir, "127.0.0.1:0", &args, &[]);
    let s3 = server.client();
    let rule = aws_sdk_s3::types::LifecycleRule::builder()
        .id("expire")
        .status(aws_sdk_s3::types::ExpirationStatus::Enabled)
        .filter(
            aws_sdk_s3::types::LifecycleRuleFilter::builder()
                .prefix("exp/")
                .build(),
        )
        .expiration(
            aws_sdk_s3::types::LifecycleExpiration::builder()
                .date(aws_sdk_s3::primitives::DateTime::from_secs(1_577_836_800))
                .build(),
        )
        .build()
        .unwrap();
    s3.put_bucket_lifecycle_configuration()
        .bucket("crashlife")
        .lifecycle_configuration(
            aws_sdk_s3::types::BucketLifecycleConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let count = |s3: aws_sdk_s3::Client| async move {
        let mut n = 0;
        let mut token = None;
        loop {
            let page = s3
                .list_objects_v2()
                .bucket("crashlife")
                .set_continuation_token(token)
                .send()
                .await
                .unwrap();
            n += page.contents().len();
            if page.is_truncated() != Some(true) {
                return n;
            }
            token = page.next_continuation_token().map(str::to_owned);
        }
    };
    // Kill as soon as the worker has removed some, but not all, of the objects.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = count(s3.clone()).await;
        if n < OBJECTS + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lifecycle worker never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();

    let server = Server::start_in(&data_dir, "127.0.0.1:0", &args, &[]);
    let s3 = server.client();
    // Whatever is still listed reads back whole and correct.
    let remaining = count(s3.clone()).await;
    let mut intact = 0;
    for i in 0..OBJECTS {
        let key = format!("exp/{i:04}");
        match s3.get_object().bucket("crashlife").key(&key).send().await {
            Ok(out) => {
                let bytes = out.body.collect().await.unwrap().into_bytes();
                assert_eq!(bytes.as_ref(), body(i).as_slice(), "{key} is intact");
                intact += 1;
            }
            Err(err) => {
                let code = err.into_service_error().code().map(str::to_owned);
                assert_eq!(code.as_deref(), Some("NoSuchKey"), "{key}");
            }
        }
    }
    assert!(intact <= remaining, "{intact} {remaining}");
    assert!(remaining > 1, "the kill must land before the pass ends");
    eprintln!("after the kill: {remaining} objects listed, {intact} of them under the rule");
    // The restarted worker finishes: only the object outside the rule's prefix stays.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(s3.clone()).await != 1 {
        assert!(
            Instant::now() < deadline,
            "the lifecycle pass did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        common::get_bytes(&s3, "crashlife", "stay").await.as_ref(),
        b"stay"
    );
    // And the collector leaves exactly the one referenced blob.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let blobs: usize = common::local_blobs(&data_dir.join("sites/local")).len();
        if blobs == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{blobs} blobs left, 1 referenced"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// GOVERNANCE yields to the bypass header only when the caller holds the permission: a
/// deployment that withdraws it (`object_lock.allow_governance_bypass = false`) keeps every
/// GOVERNANCE version as strictly as COMPLIANCE, header or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_bypass_needs_the_permission() {
    use aws_sdk_s3::types::{
        DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetention,
        ObjectLockRetentionMode, ObjectLockRule,
    };

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vallum.toml");
    std::fs::write(&config, "[object_lock]\nallow_governance_bypass = false\n").unwrap();
    let server = Server::start_in(
        &dir.path().join("data"),
        "127.0.0.1:0",
        &["--config", config.to_str().unwrap()],
        &[],
    );
    let s3 = server.client();
    s3.create_bucket()
        .bucket("gov")
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    s3.put_object_lock_configuration()
        .bucket("gov")
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(
                    ObjectLockRule::builder()
                        .default_retention(
                            DefaultRetention::builder()
                                .mode(ObjectLockRetentionMode::Governance)
                                .days(1)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let version = s3
        .put_object()
        .bucket("gov")
        .key("k")
        .body(b"governed".to_vec().into())
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();
    let refused = s3
        .delete_object()
        .bucket("gov")
        .key("k")
        .version_id(&version)
        .bypass_governance_retention(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(refused.into_service_error().code(), Some("AccessDenied"));
    let shorten = s3
        .put_object_retention()
        .bucket("gov")
        .key("k")
        .version_id(&version)
        .bypass_governance_retention(true)
        .retention(
            ObjectLockRetention::builder()
                .mode(ObjectLockRetentionMode::Governance)
                .retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                    (std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs()
                        + 60) as i64,
                ))
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(shorten.into_service_error().code(), Some("AccessDenied"));
    // The version is still there and readable.
    let got = s3
        .get_object()
        .bucket("gov")
        .key("k")
        .version_id(&version)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"governed"
    );
}
