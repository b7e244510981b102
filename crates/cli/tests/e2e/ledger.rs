//! The transparency log end to end: real aws-cli traffic, then `vallum log bundle` and
//! `vallum verify` (with the boundary audit) on the result; an independent Python tlog-tiles
//! client reading the log over HTTP; tampering and a fork detected by `vallum verify` and by
//! `vallum witness`; acknowledged writes still logged after kill -9.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Server, bundle_entries, run, tool};

fn vallum() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vallum"))
}

fn exit_code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A config for a French site with fast checkpoints (and optional extra TOML).
fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("vallum.toml");
    std::fs::write(
        &path,
        format!("[site]\njurisdiction = \"FR\"\n\n[ledger]\ncheckpoint_interval_ms = 50\n{extra}"),
    )
    .unwrap();
    path
}

fn start(dir: &Path, data: &Path, extra: &str) -> Server {
    let cfg = config(dir, extra);
    Server::start_in(
        data,
        "127.0.0.1:0",
        &["--config", cfg.to_str().unwrap()],
        &[],
    )
}

fn log_url(server: &Server) -> String {
    format!("{}/log", server.endpoint)
}

/// The published checkpoint's tree size.
fn checkpoint_size(server: &Server) -> u64 {
    let body = ureq::get(format!("{}/checkpoint", log_url(server)))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    body.lines().nth(1).unwrap().parse().unwrap()
}

/// Waits until a checkpoint covers at least `size` entries.
fn wait_for_size(server: &Server, size: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = checkpoint_size(server);
        if got >= size {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "checkpoint stuck at {got} < {size}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn aws_cli_traffic_is_logged_and_a_bundle_proves_the_boundary_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), &tmp.path().join("data"), "");
    let file = tmp.path().join("report.pdf");
    std::fs::write(&file, b"quarterly figures").unwrap();
    run(server.aws().args(["s3", "mb", "s3://records"]));
    run(server.aws().args(["s3", "mb", "s3://other"]));
    run(server
        .aws()
        .args(["s3", "cp"])
        .arg(&file)
        .arg("s3://records/2026/report.pdf"));
    run(server
        .aws()
        .args(["s3", "cp"])
        .arg(&file)
        .arg("s3://other/x"));
    run(server
        .aws()
        .args(["s3", "cp", "s3://records/2026/report.pdf"])
        .arg(tmp.path().join("back.pdf")));
    run(server
        .aws()
        .args([
            "s3api",
            "get-object",
            "--bucket",
            "records",
            "--key",
            "2026/report.pdf",
            "--range",
            "bytes=0-8",
        ])
        .arg(tmp.path().join("part")));
    run(server
        .aws()
        .args(["s3", "rm", "s3://records/2026/report.pdf"]));
    // log_started, credentials, 2 buckets, 2 stores (each with its key wrap), 2 reads (each with
    // its key unwrap), 1 delete. Every one was durable before its reply, so the checkpoint must
    // reach exactly this size and stop there (waiting for less races the next checkpoint).
    let expected = 1 + 1 + 2 + 2 * 2 + 2 * 2 + 1;
    let size = wait_for_size(&server, expected);
    assert_eq!(size, expected, "unexpected entries in the log");
    let key = server.log_vkey.clone();

    // The whole log, over HTTP.
    let out = vallum()
        .args(["verify", "--key", &key, "--log", &log_url(&server)])
        .arg("--save-checkpoint")
        .arg(tmp.path().join("trusted.cp"))
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    assert!(
        text(&out).contains(&format!("at size {size}")),
        "{}",
        text(&out)
    );
    // Every leaf is a sealed commitment: verified, its content not disclosed.
    assert!(
        text(&out).contains(&format!("{size} sealed entries verified in the tree")),
        "{}",
        text(&out)
    );

    // A single entry's inclusion proof and a consistency proof, checked here independently.
    let out = run(vallum()
        .args(["log", "prove", "--key", &key, "--log", &log_url(&server)])
        .args(["--index", "3", "--old-size", "2"]));
    let p: serde_json::Value = serde_json::from_str(&out).unwrap();
    let hash = |v: &serde_json::Value| -> [u8; 32] {
        base64_simd::STANDARD
            .decode_to_vec(v.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    };
    let hashes = |v: &serde_json::Value| -> Vec<[u8; 32]> {
        v.as_array().unwrap().iter().map(hash).collect()
    };
    let tree = p["tree_size"].as_u64().unwrap();
    assert_eq!(
        vallum_ledger::merkle::leaf_hash(p["entry"].as_str().unwrap().as_bytes()),
        hash(&p["leaf_hash"])
    );
    vallum_ledger::merkle::verify_inclusion(
        &hash(&p["leaf_hash"]),
        3,
        tree,
        &hashes(&p["inclusion_proof"]),
        &hash(&p["root"]),
    )
    .unwrap();
    vallum_ledger::merkle::verify_consistency(
        2,
        tree,
        &hash(&p["old_root"]),
        &hash(&p["root"]),
        &hashes(&p["consistency_proof"]),
    )
    .unwrap();

    // An independent tlog-tiles client agrees.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/tlog_client.py");
    let report = run(Command::new(tool("python3"))
        .arg(&script)
        .arg(log_url(&server))
        .arg(&key));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert!(report["size"].as_u64().unwrap() >= size, "{report}");

    // A bundle of the bucket's entries, verified offline with the boundary audit.
    let bundle = tmp.path().join("records.bundle.json");
    let out = common::vallum_admin(&server, "log")
        .args(["bundle", "--from-server", "--key", &key])
        .args(["--bucket", "records", "--out"])
        .arg(&bundle)
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    let entries = bundle_entries(&bundle);
    // The public log proves all of it and discloses none of it: its entry bundles hold
    // commitments, and a bundle from the public tiles alone has no sealed entry.
    let public = std::fs::read(
        server
            .data_dir
            .join("ledger/log/tile/entries/000.p")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    let public = String::from_utf8_lossy(&public);
    for secret in ["records", "FR", &server.access_key, "object_stored"] {
        assert!(
            !public.contains(secret),
            "the public tiles disclose {secret:?}"
        );
    }
    assert!(public.contains("{\"v\":2,\"c\":\""), "{public}");
    let public_bundle = tmp.path().join("public.bundle.json");
    let out = vallum()
        .args(["log", "bundle", "--key", &key, "--log", &log_url(&server)])
        .args(["--bucket", "records", "--out"])
        .arg(&public_bundle)
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    assert!(bundle_entries(&public_bundle).is_empty());
    assert!(text(&out).contains("sealed entries"), "{}", text(&out));
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "bucket_created",
            "key_used",
            "object_stored",
            "key_used",
            "object_read",
            "key_used",
            "object_read",
            "object_deleted"
        ],
        "{entries:?}"
    );
    let ops: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["event"]["operation"].as_str())
        .collect();
    assert_eq!(ops, ["wrap", "unwrap", "unwrap"]);
    let actor = format!("key:{}", server.access_key);
    assert!(entries.iter().all(|e| e["actor"] == actor.as_str()));
    assert_eq!(entries[2]["event"]["size"], 17);
    assert_eq!(entries[2]["event"]["sites"][0]["jurisdiction"], "FR");
    assert_eq!(entries[6]["event"]["first"], 0);
    assert_eq!(entries[6]["event"]["length"], 9);
    assert!(entries.iter().all(|e| e["event"]["bucket"] == "records"));

    let audit = |allow: &str, report: &Path| {
        vallum()
            .args(["verify", "--key", &key, "--bundle"])
            .arg(&bundle)
            .args(["--boundary", "--bucket", "records", "--allow", allow])
            .args(["--format", "json", "--report"])
            .arg(report)
            .output()
            .unwrap()
    };
    let inside = tmp.path().join("eu.json");
    let out = audit("EU", &inside);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&inside).unwrap()).unwrap();
    assert_eq!(r["verdict"], "within_boundary");
    // Stored, read twice, and the data key wrapped once and unwrapped twice.
    assert_eq!(r["events_checked"], 6);
    // The same traffic judged against a German-only boundary: every data event is named.
    let outside = tmp.path().join("de.json");
    let out = audit("DE", &outside);
    assert_eq!(exit_code(&out), 3, "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&outside).unwrap()).unwrap();
    assert_eq!(r["verdict"], "violations");
    let findings = r["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 6);
    assert!(findings.iter().all(|f| {
        f["actor"] == actor.as_str()
            && f["reason"]
                .as_str()
                .unwrap()
                .contains("in FR, outside the allowed [DE]")
    }));
    // No boundary known at all: undetermined, not a pass.
    let out = vallum()
        .args(["verify", "--key", &key, "--bundle"])
        .arg(&bundle)
        .args(["--boundary", "--bucket", "records"])
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 5, "{}", text(&out));

    // More traffic; the log stays consistent with the checkpoint trusted earlier.
    run(server
        .aws()
        .args(["s3", "cp"])
        .arg(&file)
        .arg("s3://records/later"));
    wait_for_size(&server, size + 1);
    let out = vallum()
        .args([
            "verify",
            "--key",
            &key,
            "--log",
            &log_url(&server),
            "--trusted",
        ])
        .arg(tmp.path().join("trusted.cp"))
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    // Another log's key is refused.
    let out = vallum()
        .args(["verify", "--log", &log_url(&server), "--key"])
        .arg("vallum.local/other+00000000+AcuWjeMgxkljAnPcuFRb0Q6jTcW7s3W4tQfQpoBhzgUA")
        .output()
        .unwrap();
    assert_ne!(exit_code(&out), 0, "{}", text(&out));
}

/// The entries of a bundle file in a log directory, and the byte range of each.
fn bundle_layout(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
        out.push(at + 2..at + 2 + n);
        at += 2 + n;
    }
    out
}

fn verify_dir(key: &str, dir: &Path) -> Output {
    vallum()
        .args(["verify", "--key", key, "--log-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn tampered_stored_entries_are_named_by_index() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = start(tmp.path(), &data, "");
    let client = server.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        client.create_bucket().bucket("bkt").send().await.unwrap();
        for i in 0..6 {
            client
                .put_object()
                .bucket("bkt")
                .key(format!("k{i}"))
                .body(vec![i as u8; 10].into())
                .send()
                .await
                .unwrap();
        }
    });
    // log_started, credentials, the bucket, and 6 stores each with its key wrap.
    let expected = 1 + 1 + 1 + 6 * 2;
    let size = wait_for_size(&server, expected);
    assert_eq!(size, expected, "unexpected entries in the log");
    let key = server.log_vkey.clone();
    server.kill9();
    let log = data.join("ledger/log");
    let out = verify_dir(&key, &log);
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    let path = log.join(format!("tile/entries/000.p/{size}"));
    let original = std::fs::read(&path).unwrap();
    let layout = bundle_layout(&original);

    // A flipped byte inside entry 4.
    let mut flipped = original.clone();
    flipped[layout[4].start + 20] ^= 0x01;
    std::fs::write(&path, &flipped).unwrap();
    let out = verify_dir(&key, &log);
    assert_eq!(exit_code(&out), 4, "{}", text(&out));
    assert!(text(&out).contains("entry 4:"), "{}", text(&out));

    // Entry 3 deleted from the bundle.
    let deleted = [&original[..layout[3].start - 2], &original[layout[3].end..]].concat();
    std::fs::write(&path, &deleted).unwrap();
    let out = verify_dir(&key, &log);
    assert_eq!(exit_code(&out), 4, "{}", text(&out));
    assert!(text(&out).contains("entry 3:"), "{}", text(&out));

    // A hash in the level-0 tile replaced.
    std::fs::write(&path, &original).unwrap();
    let tile = log.join(format!("tile/0/000.p/{size}"));
    let mut t = std::fs::read(&tile).unwrap();
    t[32 * 6] ^= 0x80;
    std::fs::write(&tile, &t).unwrap();
    let out = verify_dir(&key, &log);
    assert_eq!(exit_code(&out), 4, "{}", text(&out));
    assert!(text(&out).contains("entry 6:"), "{}", text(&out));
}

/// A running `vallum witness`.
struct WitnessProcess {
    child: Child,
    url: String,
    vkey: String,
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_witness(dir: &Path, log_key: &str) -> WitnessProcess {
    let mut child = vallum()
        .args(["witness", "--name", "witness.test/w1", "--key-file"])
        .arg(dir.join("witness.key"))
        .arg("--state-dir")
        .arg(dir.join("witness-state"))
        .args(["--log-key", log_key, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut vkey) = (None, None);
    while url.is_none() || vkey.is_none() {
        let line = lines.next().expect("witness exited").unwrap();
        if let Some(v) = line.strip_prefix("Listening on:") {
            url = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("Verifier key:") {
            vkey = Some(v.trim().to_owned());
        }
    }
    WitnessProcess {
        child,
        url: url.unwrap(),
        vkey: vkey.unwrap(),
    }
}

#[test]
fn a_witness_cosigns_the_log_and_refuses_a_rewritten_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // First start creates the log's key; the witness is configured with it.
    let mut server = start(tmp.path(), &data, "");
    let key = server.log_vkey.clone();
    server.kill9();
    let witness = start_witness(tmp.path(), &key);
    let with_witness = format!(
        "\n[[ledger.witnesses]]\nurl = \"{}\"\nvkey = \"{}\"\n",
        witness.url, witness.vkey
    );
    let mut server = start(tmp.path(), &data, &with_witness);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let put = |server: &Server, n: usize, bucket: &'static str| {
        let client = server.client();
        rt.block_on(async {
            let _ = client.create_bucket().bucket(bucket).send().await;
            for i in 0..n {
                client
                    .put_object()
                    .bucket(bucket)
                    .key(format!("k{i}"))
                    .body(vec![1u8; 5].into())
                    .send()
                    .await
                    .unwrap();
            }
        });
    };
    put(&server, 3, "bkt");
    // log_started at each of the two starts, credentials, the bucket, and 3 stores each with
    // its key wrap.
    let expected = 2 + 1 + 1 + 3 * 2;
    let size = wait_for_size(&server, expected);
    assert_eq!(size, expected, "unexpected entries in the log");
    // The published checkpoint carries the witness's cosignature, and verify can require it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = vallum()
            .args(["verify", "--key", &key, "--log", &log_url(&server)])
            .args(["--witness", &witness.vkey, "--save-checkpoint"])
            .arg(tmp.path().join("cosigned.cp"))
            .output()
            .unwrap();
        if exit_code(&out) == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never cosigned: {}", text(&out));
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill9();

    // The operator rewrites history: the log is thrown away and rebuilt under the same key,
    // longer than before, out of the witness's sight; then shown to the witness again.
    std::fs::remove_dir_all(data.join("ledger/log")).unwrap();
    let mut server = start(tmp.path(), &data, "");
    put(&server, 2 * size as usize, "ccc");
    wait_for_size(&server, size + 1);
    server.kill9();
    let server = start(tmp.path(), &data, &with_witness);
    // The rewritten log verifies on its own, but not against the witness or the old checkpoint.
    let alone = vallum()
        .args(["verify", "--key", &key, "--log", &log_url(&server)])
        .output()
        .unwrap();
    assert_eq!(exit_code(&alone), 0, "{}", text(&alone));
    let witnessed = vallum()
        .args(["verify", "--key", &key, "--log", &log_url(&server)])
        .args(["--witness", &witness.vkey])
        .output()
        .unwrap();
    assert_eq!(exit_code(&witnessed), 4, "{}", text(&witnessed));
    let trusted = vallum()
        .args([
            "verify",
            "--key",
            &key,
            "--log",
            &log_url(&server),
            "--trusted",
        ])
        .arg(tmp.path().join("cosigned.cp"))
        .output()
        .unwrap();
    assert_eq!(exit_code(&trusted), 4, "{}", text(&trusted));
    assert!(text(&trusted).contains("fork"), "{}", text(&trusted));
    // The witness kept the log-signed evidence of the inconsistent checkpoint.
    let evidence = tmp.path().join("witness-state/evidence");
    assert!(
        evidence.read_dir().map(|d| d.count()).unwrap_or(0) >= 1,
        "the witness kept no evidence"
    );
}

/// The keys of bucket `bkt`'s `object_stored` entries in a proof bundle fetched from `server`
/// (verified against `key`) into `bundle`.
fn stored_keys_in_log(server: &Server, key: &str, bundle: &Path) -> Vec<String> {
    let out = common::vallum_admin(server, "log")
        .args(["bundle", "--from-server", "--key", key])
        .args(["--bucket", "bkt", "--out"])
        .arg(bundle)
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "{}", text(&out));
    bundle_entries(bundle)
        .iter()
        .filter(|e| e["event"]["type"] == "object_stored")
        .map(|e| e["event"]["key"]["plain"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn acknowledged_writes_are_in_the_log_after_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // A long checkpoint interval: the entries are only in the write-ahead file at the kill.
    let cfg = tmp.path().join("slow.toml");
    std::fs::write(
        &cfg,
        "[site]\njurisdiction = \"FR\"\n\n[ledger]\ncheckpoint_interval_ms = 3600000\n",
    )
    .unwrap();
    let mut server = Server::start_in(
        &data,
        "127.0.0.1:0",
        &["--config", cfg.to_str().unwrap()],
        &[],
    );
    let client = server.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acknowledged: Vec<String> = rt.block_on(async {
        client.create_bucket().bucket("bkt").send().await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("k{i:02}");
                c.put_object()
                    .bucket("bkt")
                    .key(&key)
                    .body(vec![7u8; 100].into())
                    .send()
                    .await
                    .map(|_| key)
            }));
        }
        let mut ok = Vec::new();
        for t in tasks {
            if let Ok(key) = t.await.unwrap() {
                ok.push(key);
            }
        }
        ok
    });
    assert_eq!(acknowledged.len(), 20);
    server.kill9();
    let server = start(tmp.path(), &data, "");
    let key = server.log_vkey.clone();
    let bundle = tmp.path().join("b.json");
    // Integration happens at start-up; wait for the restarted log's own entries too.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = stored_keys_in_log(&server, &key, &bundle);
        if stored.len() == 20 {
            let mut stored = stored;
            stored.sort();
            let mut want = acknowledged.clone();
            want.sort();
            assert_eq!(stored, want);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} stored entries",
            stored.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client that gives up on its PUT (a timeout, a closed connection) cannot leave a write
/// that is stored but not logged: once the metadata commit has started, the request runs to
/// its log entry whether anyone waits for the answer or not. Requests are abandoned at
/// spread-out moments so that some fall inside the commit.
#[test]
fn abandoned_writes_that_were_stored_are_logged() {
    const REQUESTS: u64 = 240;
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), &tmp.path().join("data"), "");
    let client = server.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listed: Vec<String> = rt.block_on(async {
        client.create_bucket().bucket("bkt").send().await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..REQUESTS {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                // 0.2 to 6 ms, spread over the requests.
                let patience = Duration::from_micros(200 + (i * 5_800) / REQUESTS);
                let put = c
                    .put_object()
                    .bucket("bkt")
                    .key(format!("k{i:03}"))
                    .body(vec![7u8; 4096].into())
                    .send();
                let _ = tokio::time::timeout(patience, put).await;
            }));
            if i % 8 == 7 {
                for t in tasks.drain(..) {
                    t.await.unwrap();
                }
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Whatever was still running server-side finishes.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let out = client.list_objects_v2().bucket("bkt").send().await.unwrap();
        out.contents()
            .iter()
            .map(|o| o.key().unwrap().to_owned())
            .collect()
    });
    assert!(
        !listed.is_empty() && (listed.len() as u64) < REQUESTS,
        "the requests were not abandoned at spread-out moments ({} of {REQUESTS} stored)",
        listed.len()
    );
    let key = server.log_vkey.clone();
    let bundle = tmp.path().join("b.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logged = stored_keys_in_log(&server, &key, &bundle);
        let unlogged: Vec<&String> = listed.iter().filter(|k| !logged.contains(*k)).collect();
        if unlogged.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} stored objects are not in the log: {unlogged:?}",
            unlogged.len(),
            listed.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
