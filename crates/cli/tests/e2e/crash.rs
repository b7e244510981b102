//! Crash safety: kill -9 the server repeatedly during concurrent uploads, restart, and check that
//! every acknowledged object reads back byte-identical, nothing partial is listed, and the
//! collector leaves no orphaned data behind.

use crate::common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::{Server, data};

const ROUNDS: u64 = 5;
const WRITERS: u64 = 6;
const MIB: usize = 1024 * 1024;

/// Payload of a key: determined by the key alone, so any listed object can be checked.
fn payload_for(key: &str) -> Vec<u8> {
    let seed = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let len = if key.contains("/mp-") {
        5 * MIB + (seed % 4096) as usize
    } else {
        1 + (seed % (3 * MIB as u64)) as usize
    };
    data(len, seed)
}

async fn writer(
    server_client: aws_sdk_s3::Client,
    round: u64,
    writer: u64,
    acked: Arc<Mutex<HashMap<String, ()>>>,
) {
    for i in 0.. {
        let key = if i % 5 == 4 {
            format!("r{round}/w{writer}/mp-{i}")
        } else {
            format!("r{round}/w{writer}/o-{i}")
        };
        let body = payload_for(&key);
        let ok = if key.contains("/mp-") {
            async {
                let up = server_client
                    .create_multipart_upload()
                    .bucket("crash")
                    .key(&key)
                    .send()
                    .await
                    .ok()?;
                let id = up.upload_id()?.to_owned();
                let mut parts = CompletedMultipartUpload::builder();
                for (n, chunk) in body.chunks(5 * MIB).enumerate() {
                    let n = i32::try_from(n + 1).ok()?;
                    let r = server_client
                        .upload_part()
                        .bucket("crash")
                        .key(&key)
                        .upload_id(&id)
                        .part_number(n)
                        .body(ByteStream::from(chunk.to_vec()))
                        .send()
                        .await
                        .ok()?;
                    parts = parts.parts(
                        CompletedPart::builder()
                            .part_number(n)
                            .e_tag(r.e_tag()?)
                            .build(),
                    );
                }
                server_client
                    .complete_multipart_upload()
                    .bucket("crash")
                    .key(&key)
                    .upload_id(&id)
                    .multipart_upload(parts.build())
                    .send()
                    .await
                    .ok()
            }
            .await
            .is_some()
        } else {
            server_client
                .put_object()
                .bucket("crash")
                .key(&key)
                .body(ByteStream::from(body))
                .send()
                .await
                .is_ok()
        };
        if !ok {
            return; // the server is gone
        }
        acked.lock().unwrap().insert(key, ());
    }
}

async fn verify(server: &Server, acked: &HashMap<String, ()>) {
    let s3 = server.client();
    let mut listed = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("crash")
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        listed.extend(
            page.contents()
                .iter()
                .map(|o| (o.key().unwrap().to_owned(), o.size().unwrap())),
        );
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
    let listed_keys: std::collections::HashSet<_> = listed.iter().map(|(k, _)| k.clone()).collect();
    for key in acked.keys() {
        assert!(
            listed_keys.contains(key),
            "acknowledged object {key} was lost"
        );
    }
    for (key, size) in &listed {
        let expected = payload_for(key);
        assert_eq!(
            *size as usize,
            expected.len(),
            "{key} is listed with a partial size"
        );
        let got = common::get_bytes(&s3, "crash", key).await;
        assert!(
            got.as_ref() == expected.as_slice(),
            "{key} does not read back byte-identical"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_concurrent_uploads_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let acked: Arc<Mutex<HashMap<String, ()>>> = Arc::default();
    {
        let server = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
        server
            .client()
            .create_bucket()
            .bucket("crash")
            .send()
            .await
            .unwrap();
    }
    for round in 0..ROUNDS {
        let mut server = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
        let snapshot = acked.lock().unwrap().clone();
        verify(&server, &snapshot).await;
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(server.client(), round, w, Arc::clone(&acked))))
            .collect();
        tokio::time::sleep(Duration::from_millis(400 + 150 * round)).await;
        server.kill9();
        for t in tasks {
            t.await.unwrap();
        }
    }
    assert!(
        acked.lock().unwrap().len() > 20,
        "the test must have acknowledged writes to check"
    );

    // Restart with an aggressive collector: crash leftovers (temp files, orphan blobs, the
    // unfinished multipart uploads) must all be removed, and nothing referenced.
    let config = dir.path().join("vallum.toml");
    std::fs::write(&config, "[gc]\ninterval_secs = 1\ntrash_grace_secs = 0\nmultipart_expiry_secs = 0\norphan_age_secs = 0\n").unwrap();
    let server = Server::start_in(
        &data_dir,
        "127.0.0.1:0",
        &["--config", config.to_str().unwrap()],
        &[],
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let snapshot = acked.lock().unwrap().clone();
    verify(&server, &snapshot).await;
    let tmp_left = std::fs::read_dir(data_dir.join("sites/local/tmp"))
        .unwrap()
        .count();
    assert_eq!(
        tmp_left, 0,
        "temporary files of interrupted writes are swept"
    );
    let blobs: usize = common::local_blobs(&data_dir.join("sites/local")).len();
    let uploads = server
        .client()
        .list_multipart_uploads()
        .bucket("crash")
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "expired uploads are aborted");
    let s3 = server.client();
    let mut segments = 0usize;
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("crash")
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        for o in page.contents() {
            let head = s3
                .head_object()
                .bucket("crash")
                .key(o.key().unwrap())
                .send()
                .await
                .unwrap();
            segments += usize::try_from(head.parts_count().unwrap_or(1)).unwrap();
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
    assert_eq!(
        blobs, segments,
        "exactly the referenced blobs remain on the site"
    );
}

/// What one write on a full disk answered.
#[derive(Debug)]
enum Outcome {
    Acked,
    Refused(String),
}

fn outcome<T, E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, aws_sdk_s3::error::SdkError<E>>,
) -> Outcome {
    match r {
        Ok(_) => Outcome::Acked,
        Err(e) => Outcome::Refused(
            e.as_service_error()
                .and_then(|s| s.code())
                .map_or_else(|| format!("{e:?}"), str::to_owned),
        ),
    }
}

/// The field report: with the data directory on a full filesystem, one failed DELETE or
/// CreateBucket made every later write answer 200 and never persist. Now a write that cannot
/// commit fails with the S3 error, nothing acknowledged is lost across a restart, the log
/// records nothing that did not commit, /health says degraded while the disk is full, and
/// writes work again once space returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_metadata_disk_never_acknowledges_a_lost_write() {
    let fs = common::SmallFs::mount("24m");
    let data_dir = fs.path().join("data");
    let mut server = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
    let s3 = server.client();
    s3.create_bucket().bucket("full").send().await.unwrap();
    for i in 0..20 {
        s3.put_object()
            .bucket("full")
            .key(format!("seed-{i}"))
            .body(ByteStream::from(data(1000, i)))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(common::health(&server)["status"], "ok");

    let filler = fs.fill();
    let mut buckets_acked = vec!["full".to_owned()];
    let mut buckets_refused = Vec::new();
    let mut puts_acked = Vec::new();
    let mut deletes_acked = Vec::new();
    let mut codes = std::collections::BTreeSet::new();
    for i in 0..40u64 {
        let bucket = format!("b{i:02}");
        match outcome(s3.create_bucket().bucket(&bucket).send().await) {
            Outcome::Acked => buckets_acked.push(bucket),
            Outcome::Refused(code) => {
                codes.insert(code);
                buckets_refused.push(bucket);
            }
        }
        let key = format!("new-{i}");
        let put = s3
            .put_object()
            .bucket("full")
            .key(&key)
            .body(ByteStream::from(data(1000, 100 + i)))
            .send()
            .await;
        match outcome(put) {
            Outcome::Acked => puts_acked.push(key),
            Outcome::Refused(code) => {
                codes.insert(code);
            }
        }
        if i < 20 {
            let key = format!("seed-{i}");
            match outcome(s3.delete_object().bucket("full").key(&key).send().await) {
                Outcome::Acked => deletes_acked.push(key),
                Outcome::Refused(code) => {
                    codes.insert(code);
                }
            }
        }
    }
    assert!(
        !buckets_refused.is_empty(),
        "every CreateBucket on a full disk was acknowledged: {buckets_acked:?}"
    );
    assert!(
        codes
            .iter()
            .all(|c| c == "XVallumStorageFull" || c == "ServiceUnavailable"),
        "a full disk must answer 507 XVallumStorageFull (or 503 when the log cannot be written): {codes:?}"
    );
    assert!(codes.contains("XVallumStorageFull"), "{codes:?}");
    let health = common::health(&server);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["data_dir"]["full"], true, "{health}");

    // Space returns: writes work again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    s3.create_bucket().bucket("after").send().await.unwrap();
    buckets_acked.push("after".into());
    assert_eq!(common::health(&server)["status"], "ok");

    // Everything acknowledged survives a crash.
    server.kill9();
    let server = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
    let s3 = server.client();
    let listed: Vec<String> = s3
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    for b in &buckets_acked {
        assert!(
            listed.contains(b),
            "acknowledged bucket {b} was lost: {listed:?}"
        );
    }
    for (i, key) in puts_acked.iter().enumerate() {
        let got = common::get_bytes(&s3, "full", key).await;
        assert_eq!(
            got.len(),
            1000,
            "acknowledged object {key} ({i}) was lost or torn"
        );
    }
    for key in &deletes_acked {
        assert!(
            s3.head_object()
                .bucket("full")
                .key(key)
                .send()
                .await
                .is_err(),
            "acknowledged delete of {key} was lost"
        );
    }

    // The log never records a bucket that was not created.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let bundle = fs.path().join("all.bundle.json");
    let out = common::vallum_admin(&server, "log")
        .args([
            "bundle",
            "--from-server",
            "--key",
            &server.log_vkey,
            "--out",
        ])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Vec<String> = common::bundle_entries(&bundle)
        .iter()
        .filter(|e| e["event"]["type"] == "bucket_created")
        .filter_map(|e| e["event"]["bucket"].as_str().map(str::to_owned))
        .collect();
    for b in &created {
        assert!(
            listed.contains(b),
            "the log records bucket {b} as created, but it was never stored"
        );
    }
    drop(server);
}

/// Stops a server the way a service manager does (SIGTERM), waiting for it to exit.
fn stop_gracefully(server: &mut Server) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The field report: deleting the live SQLite write-ahead file and then a crash silently
/// dropped committed data. Now the server notices the deletion within a second, copies what
/// was committed into the database, refuses further writes; a crash after that loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_metadata_write_ahead_file_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut server = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
    let s3 = server.client();
    s3.create_bucket().bucket("wal").send().await.unwrap();
    let put = |key: &'static str| {
        s3.put_object()
            .bucket("wal")
            .key(key)
            .body(ByteStream::from_static(b"committed"))
            .send()
    };
    put("before").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    std::fs::remove_file(data_dir.join("meta.db-wal")).unwrap();
    // Acknowledged while its record lives only in the unlinked file.
    put("after").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let h = common::health(&server);
        if h["metadata"]["write_ahead_file_lost"] == true {
            assert_eq!(h["status"], "degraded");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not noticed: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = put("refused").await.unwrap_err();
    assert_eq!(
        refused.raw_response().map(|r| r.status().as_u16()),
        Some(503),
        "{refused:?}"
    );
    server.kill9();
    let server = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
    let s3 = server.client();
    for key in ["before", "after"] {
        let got = common::get_bytes(&s3, "wal", key).await;
        assert_eq!(got.as_ref(), b"committed", "{key}");
    }
}

/// A metadata database that lost committed state (an older copy, no write-ahead file) is
/// refused at start with what happened and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_store_that_lost_commits_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut server = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
    server
        .client()
        .create_bucket()
        .bucket("first")
        .send()
        .await
        .unwrap();
    stop_gracefully(&mut server);
    let older = dir.path().join("older.db");
    std::fs::copy(data_dir.join("meta.db"), &older).unwrap();
    let mut server = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
    server
        .client()
        .create_bucket()
        .bucket("second")
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_gracefully(&mut server);
    std::fs::copy(&older, data_dir.join("meta.db")).unwrap();
    for stale in ["meta.db-wal", "meta.db-shm"] {
        let _ = std::fs::remove_file(data_dir.join(stale));
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vallum"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lost committed state"), "{stderr}");
    assert!(stderr.contains("meta.db-commits"), "{stderr}");
}

/// What the mixed writers of the hundred-trial test know: objects acknowledged (and not since
/// deleted), deletes acknowledged, and keys whose last request got no answer.
#[derive(Default, Clone)]
struct Known {
    present: std::collections::BTreeSet<String>,
    gone: std::collections::BTreeSet<String>,
    uncertain: std::collections::BTreeSet<String>,
}

/// A small payload determined by the key alone (1 B to 16 KiB).
fn small_payload(key: &str) -> Vec<u8> {
    let seed = key.bytes().fold(0x811c_9dc5_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    data(1 + (seed % (16 * 1024)) as usize, seed)
}

async fn mixed_writer(client: aws_sdk_s3::Client, trial: u32, w: u32, known: Arc<Mutex<Known>>) {
    for i in 0u32.. {
        let key = format!("t{trial:03}/w{w}/{i:04}");
        known.lock().unwrap().uncertain.insert(key.clone());
        let put = client
            .put_object()
            .bucket("trials")
            .key(&key)
            .body(ByteStream::from(small_payload(&key)))
            .send()
            .await;
        if put.is_err() {
            return; // the server is gone: this key stays uncertain
        }
        {
            let mut k = known.lock().unwrap();
            k.uncertain.remove(&key);
            k.present.insert(key.clone());
        }
        // Every third write also deletes an earlier object of this writer.
        if i % 3 == 2 {
            let old = format!("t{trial:03}/w{w}/{:04}", i - 2);
            {
                let mut k = known.lock().unwrap();
                if !k.present.remove(&old) {
                    continue;
                }
                k.uncertain.insert(old.clone());
            }
            let del = client
                .delete_object()
                .bucket("trials")
                .key(&old)
                .send()
                .await;
            if del.is_err() {
                return;
            }
            let mut k = known.lock().unwrap();
            k.uncertain.remove(&old);
            k.gone.insert(old);
        }
    }
}

/// Every object listed is whole; every acknowledged object is there and byte-identical (all of
/// them when `full`, else those of `trial`); every acknowledged delete holds.
async fn check_trials(server: &Server, known: &Known, trial: Option<u32>) {
    let s3 = server.client();
    let mut listed = std::collections::BTreeMap::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("trials")
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        for o in page.contents() {
            listed.insert(o.key().unwrap().to_owned(), o.size().unwrap());
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
    for (key, size) in &listed {
        assert_eq!(
            *size as usize,
            small_payload(key).len(),
            "{key} is listed torn"
        );
        assert!(
            !known.gone.contains(key),
            "the acknowledged delete of {key} was lost"
        );
    }
    for key in &known.present {
        assert!(
            listed.contains_key(key),
            "acknowledged object {key} was lost"
        );
        let wanted = trial.is_none_or(|t| key.starts_with(&format!("t{t:03}/")));
        if wanted {
            let got = common::get_bytes(&s3, "trials", key).await;
            assert!(
                got.as_ref() == small_payload(key).as_slice(),
                "{key} reads back different"
            );
        }
    }
}

/// The reliability campaign: a hundred kill -9 trials during mixed writes (new objects and
/// deletes, three writers); after each, every acknowledged write and delete holds and nothing
/// is torn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_kill_9_trials_during_mixed_writes_lose_nothing() {
    const TRIALS: u32 = 100;
    const TRIAL_WRITERS: u32 = 3;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let known: Arc<Mutex<Known>> = Arc::default();
    {
        let server = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
        server
            .client()
            .create_bucket()
            .bucket("trials")
            .send()
            .await
            .unwrap();
    }
    for trial in 0..TRIALS {
        let mut server = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
        let snapshot = known.lock().unwrap().clone();
        check_trials(&server, &snapshot, trial.checked_sub(1)).await;
        // No client retries: a request cut by the kill fails at once.
        let client = aws_sdk_s3::Client::from_conf(
            server
                .client()
                .config()
                .to_builder()
                .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
                .build(),
        );
        let tasks: Vec<_> = (0..TRIAL_WRITERS)
            .map(|w| tokio::spawn(mixed_writer(client.clone(), trial, w, Arc::clone(&known))))
            .collect();
        // Kill at a different moment each trial.
        tokio::time::sleep(Duration::from_millis(60 + u64::from(trial % 7) * 37)).await;
        server.kill9();
        for t in tasks {
            t.await.unwrap();
        }
    }
    let server = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
    let snapshot = known.lock().unwrap().clone();
    assert!(
        snapshot.present.len() > 200 && snapshot.gone.len() > 50,
        "too few acknowledged writes to mean anything: {} present, {} deleted",
        snapshot.present.len(),
        snapshot.gone.len()
    );
    check_trials(&server, &snapshot, None).await;
}

/// Keys are generated only for an empty store: one that holds data and lost a key file refuses
/// to start, naming the file; an altered `iam.key` is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_with_a_missing_key_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut server = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
    server
        .client()
        .create_bucket()
        .bucket("keys")
        .send()
        .await
        .unwrap();
    // A tenant, so that sealed access-key secrets are in the store.
    common::run(common::vallum_admin(&server, "tenant").args(["create", "acme"]));
    stop_gracefully(&mut server);
    let serve = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_vallum"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .output()
            .unwrap()
    };
    let keyring = data_dir.join("keys/keyring");
    let saved = std::fs::read(&keyring).unwrap();
    std::fs::remove_file(&keyring).unwrap();
    let out = serve();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("keys/keyring") && stderr.contains("is missing"),
        "{stderr}"
    );
    assert!(!keyring.exists(), "a new keyring was generated");
    std::fs::write(&keyring, &saved).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o600)).unwrap();

    let iam_key = data_dir.join("iam.key");
    let original = std::fs::read(&iam_key).unwrap();
    std::fs::write(&iam_key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&iam_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = serve();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("iam.key") && stderr.contains("does not open"),
        "{stderr}"
    );
    std::fs::write(&iam_key, &original).unwrap();
    std::fs::set_permissions(&iam_key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Open to other users: refused, naming the file and its mode.
    std::fs::set_permissions(&iam_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = serve();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("iam.key (mode 644"), "{stderr}");
    std::fs::set_permissions(&iam_key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Restored: it serves the same data.
    let server = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
    server
        .client()
        .head_bucket()
        .bucket("keys")
        .send()
        .await
        .unwrap();
}
