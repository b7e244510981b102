//! Several stateless gateways over one PostgreSQL database (and a shared data directory) behave
//! as one store. Needs `VALLUM_TEST_PG_URL` (scripts/test.sh starts PostgreSQL).

use crate::common;

use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use common::{Server, data};

const MIB: usize = 1024 * 1024;

async fn fresh_database() -> String {
    common::fresh_pg_database()
}

fn gateways(dir: &std::path::Path, url: &str, n: usize) -> Vec<Server> {
    // The first gateway creates the shared credentials; the others start after it.
    (0..n)
        .map(|_| Server::start_in(dir, "127.0.0.1:0", &[], &[("VALLUM_META_URL", url)]))
        .collect()
}

fn body_of(v: &[u8]) -> ByteStream {
    ByteStream::from(v.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_behave_as_one_store() {
    let url = fresh_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut gws = gateways(&tmp.path().join("shared"), &url, 3);
    let c: Vec<_> = gws.iter().map(Server::client).collect();
    assert!(
        gws.windows(2).all(|w| w[0].access_key == w[1].access_key),
        "gateways share credentials"
    );

    // Bucket creation race: one bucket, and in us-east-1 every gateway answers 200 (S3's
    // legacy answer to re-creating one's own bucket there).
    let creates = c.iter().map(|s| {
        let s = s.clone();
        tokio::spawn(async move { s.create_bucket().bucket("shared").send().await })
    });
    for r in futures::future::join_all(creates).await {
        r.unwrap().unwrap();
    }
    let listed = c[0].list_buckets().send().await.unwrap();
    assert_eq!(
        listed
            .buckets()
            .iter()
            .filter(|b| b.name() == Some("shared"))
            .count(),
        1
    );

    // Bucket delete racing writes through other gateways resolves one way or the other.
    for round in 0..5 {
        let name = format!("race-{round}");
        c[0].create_bucket().bucket(&name).send().await.unwrap();
        let (deleter, writer) = (c[1].clone(), c[2].clone());
        let (n1, n2) = (name.clone(), name.clone());
        let del = tokio::spawn(async move {
            deleter
                .delete_bucket()
                .bucket(n1)
                .send()
                .await
                .map_err(|e| e.into_service_error().code().map(str::to_owned))
        });
        let put = tokio::spawn(async move {
            writer
                .put_object()
                .bucket(n2)
                .key("k")
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
                .map_err(|e| e.into_service_error().code().map(str::to_owned))
        });
        match (del.await.unwrap(), put.await.unwrap()) {
            (Ok(_), Err(code)) => assert_eq!(code.as_deref(), Some("NoSuchBucket")),
            (Err(code), Ok(_)) => assert_eq!(code.as_deref(), Some("BucketNotEmpty")),
            other => panic!("unclean race outcome: {other:?}"),
        }
    }

    // Read-after-write and list-after-write across gateways.
    for i in 0..30 {
        let writer = &c[i % 3];
        let key = format!("raw/{i:03}");
        writer
            .put_object()
            .bucket("shared")
            .key(&key)
            .body(body_of(&data(1000 + i, i as u64)))
            .send()
            .await
            .unwrap();
        let reader = &c[(i + 1) % 3];
        let got = common::get_bytes(reader, "shared", &key).await;
        assert_eq!(got.as_ref(), data(1000 + i, i as u64).as_slice());
        let listed = c[(i + 2) % 3]
            .list_objects_v2()
            .bucket("shared")
            .prefix("raw/")
            .send()
            .await
            .unwrap();
        assert_eq!(
            listed.key_count(),
            Some(i as i32 + 1),
            "listing on another gateway sees every write"
        );
    }

    // Racing conditional PUTs on one key through all gateways: exactly one wins.
    let racers: Vec<_> = (0..12)
        .map(|i| {
            let s = c[i % 3].clone();
            tokio::spawn(async move {
                s.put_object()
                    .bucket("shared")
                    .key("lock")
                    .if_none_match("*")
                    .body(ByteStream::from(vec![i as u8; 100]))
                    .send()
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(_) => wins += 1,
            Err(e) => assert_eq!(e.into_service_error().code(), Some("PreconditionFailed")),
        }
    }
    assert_eq!(wins, 1);

    // A multipart upload started, continued and completed through different gateways.
    let up = c[0]
        .create_multipart_upload()
        .bucket("shared")
        .key("mp")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let (p1, p2) = (data(5 * MIB, 31), data(1234, 32));
    let e1 = c[1]
        .upload_part()
        .bucket("shared")
        .key("mp")
        .upload_id(id)
        .part_number(1)
        .body(body_of(&p1))
        .send()
        .await
        .unwrap();
    let e2 = c[2]
        .upload_part()
        .bucket("shared")
        .key("mp")
        .upload_id(id)
        .part_number(2)
        .body(body_of(&p2))
        .send()
        .await
        .unwrap();
    let listed = c[0]
        .list_parts()
        .bucket("shared")
        .key("mp")
        .upload_id(id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.parts().len(), 2);
    let parts = common::completed(&[(1, e1.e_tag().unwrap()), (2, e2.e_tag().unwrap())]);
    c[1].complete_multipart_upload()
        .bucket("shared")
        .key("mp")
        .upload_id(id)
        .multipart_upload(parts)
        .send()
        .await
        .unwrap();
    let got = common::get_bytes(&c[2], "shared", "mp").await;
    let mut whole = p1;
    whole.extend(p2);
    assert!(got.as_ref() == whole.as_slice());

    // A gateway killed mid-traffic loses no acknowledged write.
    let victim = c[2].clone();
    let writer = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0.. {
            let key = format!("kill/{i:05}");
            if victim
                .put_object()
                .bucket("shared")
                .key(&key)
                .body(ByteStream::from(vec![7u8; 20_000]))
                .send()
                .await
                .is_err()
            {
                return acked;
            }
            acked.push(key);
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    gws[2].kill9();
    let acked = writer.await.unwrap();
    assert!(!acked.is_empty());
    for key in &acked {
        let got = common::get_bytes(&c[0], "shared", key).await;
        assert_eq!(got.len(), 20_000, "{key}");
    }

    // One transparency log for the deployment, sequenced by PostgreSQL: every acknowledged
    // write through any gateway (the killed one included) is in it, and any gateway serves it.
    assert!(gws.windows(2).all(|w| w[0].log_vkey == w[1].log_vkey));
    let bundle = tmp.path().join("shared.bundle.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = common::vallum_admin(&gws[1], "log")
            .args(["bundle", "--from-server", "--key", &gws[0].log_vkey])
            .args(["--bucket", "shared", "--out"])
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let b: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
        let stored: std::collections::HashSet<String> = b["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| {
                let raw = base64_simd::STANDARD
                    .decode_to_vec(e["entry"].as_str()?)
                    .ok()?;
                let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
                (v["event"]["type"] == "object_stored")
                    .then(|| v["event"]["key"]["plain"].as_str().map(str::to_owned))
                    .flatten()
            })
            .collect();
        if acked.iter().all(|k| stored.contains(k)) && stored.contains("mp") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the shared log lacks acknowledged writes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A PostgreSQL cluster of this test's own (restarting the shared one would disturb others).
struct PrivatePg {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivatePg {
    fn as_pg(&self, program: &str) -> std::process::Command {
        let path = self.bin.join(program);
        // PostgreSQL refuses to run as root; scripts/test.sh runs as root on CI machines.
        if running_as_root() {
            let mut cmd = std::process::Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            std::process::Command::new(path)
        }
    }

    fn start() -> Self {
        let bin = std::path::PathBuf::from(
            std::env::var("VALLUM_TEST_PG_BIN")
                .expect("VALLUM_TEST_PG_BIN (set by scripts/test.sh)"),
        );
        let dir = tempfile::Builder::new()
            .prefix("vallum-pg-restart")
            .tempdir_in("/tmp")
            .unwrap();
        if running_as_root() {
            common::run(
                std::process::Command::new("chown")
                    .arg("postgres")
                    .arg(dir.path()),
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePg {
            bin,
            data: dir.path().join("data"),
            port,
            _dir: dir,
        };
        common::run(
            pg.as_pg("initdb")
                .args(["-A", "trust", "-U", "vallum", "-D"])
                .arg(&pg.data),
        );
        pg.ctl("start");
        pg
    }

    fn ctl(&self, action: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.data.parent().unwrap().display()
        );
        let log = self.data.parent().unwrap().join("log");
        common::run(
            self.as_pg("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(log)
                .args(["-w", "-m", "fast", "-o", &opts, action]),
        );
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self
            .as_pg("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_fails_cleanly_and_recovers_without_restarting_gateways() {
    let pg = PrivatePg::start();
    let url = format!("postgres://vallum@127.0.0.1:{}/postgres", pg.port);
    let tmp = tempfile::tempdir().unwrap();
    let gw = Server::start_in(
        &tmp.path().join("d"),
        "127.0.0.1:0",
        &[],
        &[("VALLUM_META_URL", url.as_str())],
    );
    let creds =
        aws_credential_types::Credentials::new(&gw.access_key, &gw.secret_key, None, None, "t");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new(common::REGION))
        .credentials_provider(creds)
        .endpoint_url(&gw.endpoint)
        .force_path_style(true)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(config);
    s3.create_bucket().bucket("pgr").send().await.unwrap();
    s3.put_object()
        .bucket("pgr")
        .key("before")
        .body(ByteStream::from_static(b"1"))
        .send()
        .await
        .unwrap();

    // Traffic keeps flowing while PostgreSQL goes away and comes back: every answer is a
    // success or a clean 503, never an internal error.
    let traffic_client = s3.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_flag = std::sync::Arc::clone(&stop);
    let traffic = tokio::spawn(async move {
        let mut statuses = Vec::new();
        let mut i = 0u32;
        while !stop_flag.load(std::sync::atomic::Ordering::SeqCst) {
            i += 1;
            let sent = traffic_client
                .put_object()
                .bucket("pgr")
                .key(format!("traffic/{i:05}"))
                .body(ByteStream::from_static(b"t"))
                .send()
                .await;
            let status = match sent {
                Ok(_) => 200,
                Err(e) => e.raw_response().map_or(0, |r| r.status().as_u16()),
            };
            statuses.push((i, status));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        statuses
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.ctl("stop");
    let err = s3
        .put_object()
        .bucket("pgr")
        .key("during")
        .body(ByteStream::from_static(b"2"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503));
    assert_eq!(err.into_service_error().code(), Some("ServiceUnavailable"));
    let err = s3
        .get_object()
        .bucket("pgr")
        .key("before")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503));

    pg.ctl("start");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match s3
            .put_object()
            .bucket("pgr")
            .key("after")
            .body(ByteStream::from_static(b"3"))
            .send()
            .await
        {
            Ok(_) => break,
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "the gateway did not recover: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses = traffic.await.unwrap();
    assert!(
        statuses.iter().all(|(_, st)| *st == 200 || *st == 503),
        "only successes and clean 503s: {statuses:?}"
    );
    assert!(
        statuses.iter().any(|(_, st)| *st == 503),
        "the outage was observed"
    );
    assert!(
        statuses.last().is_some_and(|(_, st)| *st == 200),
        "traffic recovered"
    );
    let listed = s3
        .list_objects_v2()
        .bucket("pgr")
        .prefix("traffic/")
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    let acknowledged: Vec<String> = statuses
        .iter()
        .filter(|(_, st)| *st == 200)
        .map(|(i, _)| format!("traffic/{i:05}"))
        .collect();
    // A 503 means "outcome unknown" (a commit can land as the connection dies): every
    // acknowledged write exists, and nothing exists that was never attempted.
    for key in &acknowledged {
        assert!(keys.contains(key), "acknowledged write {key} is missing");
    }
    let attempted: Vec<String> = statuses
        .iter()
        .map(|(i, _)| format!("traffic/{i:05}"))
        .collect();
    assert!(
        keys.iter().all(|k| attempted.contains(k)),
        "unexpected keys: {keys:?}"
    );
    let listed = s3
        .list_objects_v2()
        .bucket("pgr")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert_eq!(keys, ["after", "before"], "the refused write left no trace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_meta_moves_an_embedded_deployment_to_postgres() {
    let url = fresh_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let fr = ("VALLUM_SITE_JURISDICTION", "FR");
    let mut embedded = Server::start_in(&dir, "127.0.0.1:0", &[], &[fr]);
    let s3 = embedded.client();
    s3.create_bucket().bucket("mig").send().await.unwrap();
    s3.create_bucket().bucket("mig-empty").send().await.unwrap();
    for i in 0..1100 {
        s3.put_object()
            .bucket("mig")
            .key(format!("k/{i:05}"))
            .metadata("n", i.to_string())
            .body(ByteStream::from(data(100 + i, i as u64)))
            .send()
            .await
            .unwrap();
    }
    s3.put_object()
        .bucket("mig")
        .key("gone")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    s3.delete_object()
        .bucket("mig")
        .key("gone")
        .send()
        .await
        .unwrap();
    let up = s3
        .create_multipart_upload()
        .bucket("mig")
        .key("unfinished")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap().to_owned();
    let p1 = data(5 * MIB, 41);
    let e1 = s3
        .upload_part()
        .bucket("mig")
        .key("unfinished")
        .upload_id(&id)
        .part_number(1)
        .body(body_of(&p1))
        .send()
        .await
        .unwrap();
    // A versioned bucket with object lock, tags, a delete marker and a lifecycle rule: every
    // version must arrive verbatim (ids, order, lock state), with the bucket's configuration.
    s3.create_bucket()
        .bucket("mig-worm")
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let mut version_ids = Vec::new();
    for i in 0..3 {
        let put = s3
            .put_object()
            .bucket("mig-worm")
            .key("v")
            .tagging(format!("n={i}"))
            .object_lock_mode(aws_sdk_s3::types::ObjectLockMode::Compliance)
            .object_lock_retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                4_102_444_800,
            ))
            .body(ByteStream::from(data(10 + i, i as u64)))
            .send()
            .await
            .unwrap();
        version_ids.push(put.version_id().unwrap().to_owned());
    }
    s3.put_object()
        .bucket("mig-worm")
        .key("d")
        .body(ByteStream::from_static(b"d"))
        .send()
        .await
        .unwrap();
    s3.delete_object()
        .bucket("mig-worm")
        .key("d")
        .send()
        .await
        .unwrap();
    s3.put_bucket_lifecycle_configuration()
        .bucket("mig-worm")
        .lifecycle_configuration(
            aws_sdk_s3::types::BucketLifecycleConfiguration::builder()
                .rules(
                    aws_sdk_s3::types::LifecycleRule::builder()
                        .id("old")
                        .status(aws_sdk_s3::types::ExpirationStatus::Enabled)
                        .filter(
                            aws_sdk_s3::types::LifecycleRuleFilter::builder()
                                .prefix("")
                                .build(),
                        )
                        .noncurrent_version_expiration(
                            aws_sdk_s3::types::NoncurrentVersionExpiration::builder()
                                .noncurrent_days(3650)
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let versions_before = s3
        .list_object_versions()
        .bucket("mig-worm")
        .send()
        .await
        .unwrap();
    // Two versions of a boundary policy: the history must arrive whole.
    let policy = |server: &Server, args: &[&str]| {
        common::run(
            std::process::Command::new(env!("CARGO_BIN_EXE_vallum"))
                .arg("policy")
                .args(args)
                .envs(server.tool_env())
                .env("VALLUM_ENDPOINT", &server.endpoint),
        )
    };
    policy(
        &embedded,
        &["set", "mig-worm", "--name", "eu", "--allow", "EU"],
    );
    policy(
        &embedded,
        &["set", "mig-worm", "--name", "fr", "--allow", "FR"],
    );
    let history_before = policy(&embedded, &["history", "mig-worm", "--json"]);
    embedded.kill9();

    let migrate = |expect: &[&str]| {
        let out = common::run(
            std::process::Command::new(env!("CARGO_BIN_EXE_vallum"))
                .args(["migrate-meta", "--to", &url, "--data-dir"])
                .arg(&dir),
        );
        for e in expect {
            assert!(out.contains(e), "{out}");
        }
    };
    migrate(&[
        "migrated: 3 buckets, 1105 versions (0 already present), 1 uploads, 1 parts, ",
        "; 1 trashed blobs deleted",
    ]);
    migrate(&[
        "migrated: 0 buckets, 0 versions (1105 already present), 0 uploads, 0 parts, 0 log entries; 0 trashed blobs deleted",
    ]);

    let gw = Server::start_in(
        &dir,
        "127.0.0.1:0",
        &[],
        &[("VALLUM_META_URL", url.as_str()), fr],
    );
    let history_after = policy(&gw, &["history", "mig-worm", "--json"]);
    assert_eq!(history_after, history_before);
    assert!(history_after.contains("\"version\": 2"), "{history_after}");
    // The transparency log continues: same key, the embedded history and the migration in it.
    assert_eq!(gw.log_vkey, embedded.log_vkey);
    let bundle = dir.join("all.bundle.json");
    let out = common::vallum_admin(&gw, "log")
        .args(["bundle", "--from-server", "--key", &gw.log_vkey])
        .arg("--out")
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let types: Vec<String> = common::bundle_entries(&bundle)
        .iter()
        .map(|v| {
            let t = v["event"]["type"].as_str().unwrap().to_owned();
            match v["event"]["action"].as_str() {
                Some(a) => format!("{t}:{a}"),
                None => t,
            }
        })
        .collect();
    let migrated_at = types
        .iter()
        .position(|t| t == "admin:metadata_migrated")
        .unwrap();
    assert!(
        types[..migrated_at]
            .iter()
            .filter(|t| *t == "object_stored")
            .count()
            >= 1105
    );
    assert_eq!(types[migrated_at + 1], "log_started");
    let s3 = gw.client();
    let mut count = 0;
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("mig")
            .prefix("k/")
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        count += page.contents().len();
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
    assert_eq!(count, 1100);
    let got = s3
        .get_object()
        .bucket("mig")
        .key("k/00777")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.metadata().unwrap().get("n").map(String::as_str),
        Some("777")
    );
    assert!(got.body.collect().await.unwrap().into_bytes().as_ref() == data(877, 777).as_slice());
    let e2 = s3
        .upload_part()
        .bucket("mig")
        .key("unfinished")
        .upload_id(&id)
        .part_number(2)
        .body(ByteStream::from_static(b"tail"))
        .send()
        .await
        .unwrap();
    let parts = common::completed(&[(1, e1.e_tag().unwrap()), (2, e2.e_tag().unwrap())]);
    s3.complete_multipart_upload()
        .bucket("mig")
        .key("unfinished")
        .upload_id(&id)
        .multipart_upload(parts)
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("mig")
        .key("unfinished")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some((5 * MIB + 4) as i64));
    s3.head_bucket().bucket("mig-empty").send().await.unwrap();

    let versions_after = s3
        .list_object_versions()
        .bucket("mig-worm")
        .send()
        .await
        .unwrap();
    assert_eq!(versions_after.versions(), versions_before.versions());
    assert_eq!(
        versions_after.delete_markers(),
        versions_before.delete_markers()
    );
    assert_eq!(versions_after.versions().len(), 4);
    let oldest = s3
        .get_object()
        .bucket("mig-worm")
        .key("v")
        .version_id(&version_ids[0])
        .send()
        .await
        .unwrap();
    assert_eq!(
        oldest.object_lock_mode(),
        Some(&aws_sdk_s3::types::ObjectLockMode::Compliance)
    );
    assert_eq!(
        oldest.body.collect().await.unwrap().into_bytes().as_ref(),
        data(10, 0).as_slice()
    );
    let tags = s3
        .get_object_tagging()
        .bucket("mig-worm")
        .key("v")
        .version_id(&version_ids[1])
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set()[0].value(), "1");
    let refused = s3
        .delete_object()
        .bucket("mig-worm")
        .key("v")
        .version_id(&version_ids[0])
        .bypass_governance_retention(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(refused.into_service_error().code(), Some("AccessDenied"));
    let rules = s3
        .get_bucket_lifecycle_configuration()
        .bucket("mig-worm")
        .send()
        .await
        .unwrap();
    assert_eq!(rules.rules()[0].id(), Some("old"));
}

/// Pointing gateways at a database that is not the one their shared log was built from (a
/// fresh database, an unmigrated embedded log) would fork the log: the gateway refuses to start.
#[test]
fn a_log_directory_and_a_foreign_database_do_not_mix() {
    let url = common::fresh_pg_database();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut embedded = Server::start_in(&dir, "127.0.0.1:0", &[], &[]);
    embedded.kill9();
    // Integrate what the killed server left in its write-ahead file, as a restart would.
    let mut store = vallum_ledger::store::TileStore::open(&dir.join("ledger/log")).unwrap();
    store.integrate().unwrap();
    drop(store);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vallum"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("VALLUM_META_URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match"), "{err}");
}
