//! End to end with the real aws-cli, boto3, rclone and s3cmd (installed by scripts/test.sh).

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{Server, data, run, run_failing, tool};

const MIB: usize = 1024 * 1024;

fn write_tree(root: &Path, files: usize) {
    for i in 0..files {
        let dir = root.join(format!("d{}", i % 7));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("f{i:03}.dat")),
            data(1000 + i * 37, i as u64),
        )
        .unwrap();
    }
}

fn assert_same_tree(a: &Path, b: &Path) {
    let mut count = 0;
    for dir in std::fs::read_dir(a).unwrap() {
        let dir = dir.unwrap().path();
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let rel = file.strip_prefix(a).unwrap();
            let other = b.join(rel);
            assert_eq!(
                std::fs::read(&file).unwrap(),
                std::fs::read(&other).unwrap_or_else(|e| panic!("{}: {e}", other.display())),
                "{}",
                rel.display()
            );
            count += 1;
        }
    }
    assert!(count > 0);
}

#[test]
fn aws_cli_multipart_sync_ranges_and_errors() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.bin");
    std::fs::write(&big, data(64 * MIB, 11)).unwrap();
    run(server.aws().args(["s3", "mb", "s3://cli-bucket"]));
    run(server
        .aws()
        .args(["s3", "cp", "--only-show-errors"])
        .arg(&big)
        .arg("s3://cli-bucket/big.bin"));
    let head = run(server.aws().args([
        "s3api",
        "head-object",
        "--bucket",
        "cli-bucket",
        "--key",
        "big.bin",
    ]));
    let head: serde_json::Value = serde_json::from_str(&head).unwrap();
    assert_eq!(head["ContentLength"], 64 * MIB);
    assert!(
        head["ETag"].as_str().unwrap().contains('-'),
        "uploaded in parts: {head}"
    );
    let back = tmp.path().join("back.bin");
    run(server
        .aws()
        .args(["s3", "cp", "--only-show-errors", "s3://cli-bucket/big.bin"])
        .arg(&back));
    assert!(
        std::fs::read(&big).unwrap() == std::fs::read(&back).unwrap(),
        "64 MiB round trip"
    );

    let part = tmp.path().join("part.bin");
    run(server
        .aws()
        .args([
            "s3api",
            "get-object",
            "--bucket",
            "cli-bucket",
            "--key",
            "big.bin",
            "--range",
            "bytes=1000-1999",
        ])
        .arg(&part));
    assert_eq!(
        std::fs::read(&part).unwrap(),
        data(64 * MIB, 11)[1000..2000]
    );

    let src = tmp.path().join("tree");
    write_tree(&src, 200);
    run(server
        .aws()
        .args(["s3", "sync", "--only-show-errors"])
        .arg(&src)
        .arg("s3://cli-bucket/tree/"));
    let listing = run(server
        .aws()
        .args(["s3", "ls", "--recursive", "s3://cli-bucket/tree/"]));
    assert_eq!(listing.lines().count(), 200);
    let dst = tmp.path().join("tree-back");
    run(server
        .aws()
        .args(["s3", "sync", "--only-show-errors", "s3://cli-bucket/tree/"])
        .arg(&dst));
    assert_same_tree(&src, &dst);

    let url = run(server.aws().args([
        "s3",
        "presign",
        "s3://cli-bucket/tree/d0/f000.dat",
        "--expires-in",
        "300",
    ]));
    let fetched = Command::new(tool("curl"))
        .args(["-sf", url.trim()])
        .output()
        .unwrap();
    assert!(fetched.status.success());
    assert_eq!(
        fetched.stdout,
        std::fs::read(src.join("d0/f000.dat")).unwrap()
    );

    run(server.aws().args([
        "s3",
        "cp",
        "--only-show-errors",
        "s3://cli-bucket/big.bin",
        "s3://cli-bucket/copy.bin",
    ]));
    run(server.aws().args([
        "s3",
        "rm",
        "--recursive",
        "--only-show-errors",
        "s3://cli-bucket/tree/",
    ]));
    let left = run(server
        .aws()
        .args(["s3", "ls", "--recursive", "s3://cli-bucket/"]));
    assert_eq!(left.lines().count(), 2, "{left}");

    let out = run_failing(server.aws().env("AWS_SECRET_ACCESS_KEY", "wrong").args([
        "s3",
        "ls",
        "s3://cli-bucket/",
    ]));
    assert!(out.contains("SignatureDoesNotMatch"), "{out}");
    let out = run_failing(
        server
            .aws()
            .args([
                "s3api",
                "get-object",
                "--bucket",
                "cli-bucket",
                "--key",
                "nope",
            ])
            .arg(tmp.path().join("x")),
    );
    assert!(out.contains("NoSuchKey"), "{out}");
}

#[test]
fn boto3_script() {
    let server = Server::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/boto3_e2e.py");
    let out = run(Command::new(tool("python3"))
        .arg(script)
        .envs(server.tool_env())
        .env("VALLUM_ENDPOINT", &server.endpoint));
    assert!(out.contains("boto3 e2e ok"), "{out}");
}

#[test]
fn boto3_signature_version_2() {
    let server = Server::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/boto3_sigv2.py");
    let out = run(Command::new(tool("python3"))
        .arg(script)
        .envs(server.tool_env())
        .env("VALLUM_ENDPOINT", &server.endpoint));
    assert!(out.contains("boto3 sigv2 ok"), "{out}");
}

fn rclone(server: &Server) -> Command {
    let mut cmd = Command::new(tool("rclone"));
    // rclone refuses to start with a custom CA bundle variable it cannot load.
    cmd.env_remove("AWS_CA_BUNDLE")
        .env("RCLONE_CONFIG", "/dev/null")
        .env("RCLONE_CONFIG_VALLUM_TYPE", "s3")
        .env("RCLONE_CONFIG_VALLUM_PROVIDER", "Other")
        .env("RCLONE_CONFIG_VALLUM_ACCESS_KEY_ID", &server.access_key)
        .env("RCLONE_CONFIG_VALLUM_SECRET_ACCESS_KEY", &server.secret_key)
        .env("RCLONE_CONFIG_VALLUM_ENDPOINT", &server.endpoint)
        .env("RCLONE_CONFIG_VALLUM_REGION", common::REGION)
        .env("RCLONE_CONFIG_VALLUM_FORCE_PATH_STYLE", "true");
    cmd
}

#[test]
fn rclone_multipart_and_sync_both_ways() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    run(rclone(&server).args(["mkdir", "vallum:rc-bucket"]));
    let big_dir = tmp.path().join("big");
    std::fs::create_dir(&big_dir).unwrap();
    std::fs::write(big_dir.join("big.bin"), data(64 * MIB, 12)).unwrap();
    run(rclone(&server)
        .args([
            "copy",
            "--s3-upload-cutoff",
            "16M",
            "--s3-chunk-size",
            "16M",
        ])
        .arg(&big_dir)
        .arg("vallum:rc-bucket/big"));
    run(rclone(&server)
        .args(["check"])
        .arg(&big_dir)
        .arg("vallum:rc-bucket/big"));
    let src = tmp.path().join("tree");
    write_tree(&src, 200);
    run(rclone(&server)
        .args(["sync"])
        .arg(&src)
        .arg("vallum:rc-bucket/tree"));
    let files = run(rclone(&server).args(["lsf", "-R", "--files-only", "vallum:rc-bucket/tree"]));
    assert_eq!(files.lines().count(), 200);
    let dst = tmp.path().join("back");
    run(rclone(&server)
        .args(["sync", "vallum:rc-bucket/tree"])
        .arg(&dst));
    assert_same_tree(&src, &dst);
    run(rclone(&server)
        .args(["check"])
        .arg(&src)
        .arg("vallum:rc-bucket/tree"));
    // Deleting locally and syncing deletes remotely.
    std::fs::remove_dir_all(src.join("d3")).unwrap();
    run(rclone(&server)
        .args(["sync"])
        .arg(&src)
        .arg("vallum:rc-bucket/tree"));
    let files = run(rclone(&server).args(["lsf", "-R", "--files-only", "vallum:rc-bucket/tree"]));
    assert_eq!(
        files.lines().count(),
        200 - (0..200).filter(|i| i % 7 == 3).count()
    );
}

fn s3cmd(cfg: &Path) -> Command {
    let mut cmd = Command::new(tool("s3cmd"));
    cmd.arg("-c").arg(cfg);
    cmd
}

#[test]
fn s3cmd_put_get_sync_and_delete() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("s3cfg");
    let host = server.endpoint.trim_start_matches("http://");
    std::fs::write(
        &cfg,
        format!(
            "[default]\naccess_key = {}\nsecret_key = {}\nhost_base = {host}\nhost_bucket = {host}\nuse_https = False\nbucket_location = us-east-1\nsignature_v2 = False\n",
            server.access_key, server.secret_key
        ),
    )
    .unwrap();
    run(s3cmd(&cfg).args(["mb", "s3://cmd-bucket"]));
    let big = tmp.path().join("big.bin");
    std::fs::write(&big, data(64 * MIB, 13)).unwrap();
    run(s3cmd(&cfg)
        .args(["put", "--multipart-chunk-size-mb=16", "--no-progress"])
        .arg(&big)
        .arg("s3://cmd-bucket/big.bin"));
    let back = tmp.path().join("back.bin");
    run(s3cmd(&cfg)
        .args(["get", "--no-progress"])
        .arg("s3://cmd-bucket/big.bin")
        .arg(&back));
    assert!(std::fs::read(&big).unwrap() == std::fs::read(&back).unwrap());
    let src = tmp.path().join("tree");
    write_tree(&src, 50);
    run(s3cmd(&cfg)
        .args(["sync", "--no-progress"])
        .arg(format!("{}/", src.display()))
        .arg("s3://cmd-bucket/tree/"));
    let listing = run(s3cmd(&cfg).args(["ls", "--recursive", "s3://cmd-bucket/tree/"]));
    assert_eq!(listing.lines().count(), 50);
    let info = run(s3cmd(&cfg).args(["info", "s3://cmd-bucket/big.bin"]));
    assert!(info.contains("67108864"), "{info}");
    run(s3cmd(&cfg).args(["del", "--recursive", "--force", "s3://cmd-bucket/tree/"]));
    let listing = run(s3cmd(&cfg).args(["ls", "--recursive", "s3://cmd-bucket/"]));
    assert_eq!(listing.lines().count(), 1, "{listing}");
}
