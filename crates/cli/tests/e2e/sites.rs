//! Remote storage sites: the `BlobStore` contract against real S3 endpoints (a second
//! `vallum serve`, standing in for a provider's S3, and moto's AWS emulator) and against Azure
//! Blob Storage (Azurite),
//! and gateways whose site is such an endpoint: real clients read and write through them, the
//! provider holds only opaque names and ciphertext, and the provider going away is an error,
//! not a hang or a half-written object.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{KillOnDrop, Server, data, free_port, run, run_failing, tool, wait_for_port};
use vallum_blob::{AzureSite, RemoteBlobStore, S3Site};
use vallum_core::conformance::blob as contract;

/// Uploads `len` bytes of pattern `seed` through `gateway` with aws-cli as `bucket/key`,
/// downloads them again and checks they are the same; returns them.
fn round_trip(
    gateway: &Server,
    dir: &std::path::Path,
    path: &str,
    len: usize,
    seed: u64,
) -> Vec<u8> {
    let bytes = data(len, seed);
    let (up, back) = (dir.join("up.bin"), dir.join("back.bin"));
    std::fs::write(&up, &bytes).unwrap();
    run(gateway
        .aws()
        .args(["s3", "cp"])
        .arg(&up)
        .arg(format!("s3://{path}")));
    run(gateway
        .aws()
        .args(["s3", "cp", &format!("s3://{path}")])
        .arg(&back));
    assert!(
        std::fs::read(&back).unwrap() == bytes,
        "{path} came back different"
    );
    bytes
}

/// Writes `toml` as `dir/vallum.toml` and starts a gateway on it (data in `dir/gw`) with
/// `env`; the gateway and the configuration's path.
fn gateway_on(
    dir: &std::path::Path,
    toml: &str,
    env: &[(&str, &str)],
) -> (Server, std::path::PathBuf) {
    let cfg = dir.join("vallum.toml");
    std::fs::write(&cfg, toml).unwrap();
    let server = Server::start_in(
        &dir.join("gw"),
        "127.0.0.1:0",
        &["--config", cfg.to_str().unwrap()],
        env,
    );
    (server, cfg)
}

/// A provider: a Vallum serving S3 with one bucket for the site's blobs.
fn provider(bucket: &str) -> Server {
    let provider = Server::start();
    run(provider.aws().args(["s3", "mb", &format!("s3://{bucket}")]));
    provider
}

fn site_of(provider: &Server, bucket: &str) -> S3Site {
    S3Site {
        endpoint: provider.endpoint.clone(),
        bucket: bucket.into(),
        region: common::REGION.into(),
        access_key: provider.access_key.clone(),
        secret_key: zeroize::Zeroizing::new(provider.secret_key.clone()),
        ca_pem: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_site_keeps_the_blob_store_contract() {
    let provider = provider("site-blobs");
    let store = RemoteBlobStore::s3(&site_of(&provider, "site-blobs"), "gw-1").unwrap();
    contract::all(&store).await;
    // A wrong secret is refused by the provider: an error, never a silent success.
    let mut wrong = site_of(&provider, "site-blobs");
    wrong.secret_key = zeroize::Zeroizing::new("not-the-secret".into());
    let wrong = RemoteBlobStore::s3(&wrong, "gw-1").unwrap();
    let err = vallum_core::blob::BlobStore::size(&wrong, vallum_types::BlobId::random())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("site s3 "), "{err}");
}

#[test]
fn a_gateway_over_a_providers_s3_stores_only_ciphertext_under_opaque_names() {
    let provider = provider("provider-bucket");
    let tmp = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"[site]
id = "provider-par"
jurisdiction = "FR"
operator = "Provider SAS"
backend = "s3"

[site.s3]
endpoint = "{}"
bucket = "provider-bucket"
access_key = "{}"
secret_env = "PROVIDER_SECRET"
prefix = "tenant-a"
"#,
        provider.endpoint, provider.access_key
    );
    let mut provider = provider;
    let (gateway, _) = gateway_on(
        tmp.path(),
        &toml,
        &[("PROVIDER_SECRET", provider.secret_key.as_str())],
    );

    // A small record and a 20 MiB scan (aws-cli uploads it in parts; each part is a blob
    // larger than one remote part, so it streams as a multipart upload to the provider).
    let marker = b"PATIENT-RECORD-4711 Jeanne Martin, born 1962";
    let small = tmp.path().join("record.txt");
    std::fs::write(&small, marker.repeat(100)).unwrap();
    run(gateway.aws().args(["s3", "mb", "s3://records"]));
    run(gateway
        .aws()
        .args(["s3", "cp"])
        .arg(&small)
        .arg("s3://records/2026/record.txt"));
    let scan = round_trip(&gateway, tmp.path(), "records/2026/scan.bin", 20 << 20, 9);
    let part = tmp.path().join("part");
    run(gateway
        .aws()
        .args([
            "s3api",
            "get-object",
            "--bucket",
            "records",
            "--key",
            "2026/scan.bin",
        ])
        .args(["--range", "bytes=9000000-9000099"])
        .arg(&part));
    assert_eq!(std::fs::read(&part).unwrap(), scan[9_000_000..9_000_100]);

    // What the provider holds: opaque blob names under the prefix, and no plaintext.
    let listed = run(provider.aws().args([
        "s3api",
        "list-objects-v2",
        "--bucket",
        "provider-bucket",
        "--query",
        "Contents[].Key",
        "--output",
        "text",
    ]));
    let keys: Vec<&str> = listed.split_whitespace().collect();
    assert!(keys.len() >= 3, "{listed}");
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    for key in &keys {
        let parts: Vec<&str> = key.split('/').collect();
        // A blob of its own, or a pack object of small ones: both named by random ids.
        let blob = parts.len() == 4
            && parts[0] == "tenant-a"
            && parts[1] == "blobs"
            && parts[3].len() == 32
            && parts[3].starts_with(parts[2])
            && hex(parts[3]);
        let pack = parts.len() == 3
            && parts[0] == "tenant-a"
            && parts[1] == "packs"
            && parts[2].len() == 21
            && parts[2].strip_suffix(".pack").is_some_and(hex);
        assert!(blob || pack, "not an opaque blob name: {key}");
    }
    assert!(!listed.contains("records") && !listed.contains("scan") && !listed.contains("2026"));
    let needle = &marker[..19];
    let mut bytes_held = 0usize;
    for key in &keys {
        let out = tmp.path().join("held");
        run(provider
            .aws()
            .args([
                "s3api",
                "get-object",
                "--bucket",
                "provider-bucket",
                "--key",
                key,
            ])
            .arg(&out));
        let held = std::fs::read(&out).unwrap();
        bytes_held += held.len();
        assert!(
            !held.windows(needle.len()).any(|w| w == needle),
            "plaintext on the provider's site in {key}"
        );
        assert!(
            !held
                .windows(64)
                .any(|w| w == &scan[1 << 20..(1 << 20) + 64]),
            "scan plaintext on the provider's site in {key}"
        );
    }
    assert!(bytes_held > scan.len(), "{bytes_held}");

    // The provider goes away: reads and writes fail with 503 (clients retry) in bounded time,
    // the site is marked down (requests then fail at once) and /health says so, and a failed
    // write leaves no object behind.
    provider.kill9();
    let started = Instant::now();
    let err = run_failing(
        gateway
            .aws()
            .args(["s3", "cp", "s3://records/2026/record.txt", "-"]),
    );
    assert!(err.contains("ServiceUnavailable"), "{err}");
    let err = run_failing(
        gateway
            .aws()
            .args(["s3", "cp"])
            .arg(&small)
            .arg("s3://records/later.txt"),
    );
    assert!(err.contains("ServiceUnavailable"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );
    let health = |server: &Server| {
        let out = std::process::Command::new(tool("curl"))
            .args([
                "-s",
                "-w",
                "\n%{http_code}",
                &format!("{}/health", server.endpoint),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The site stays marked down for a back-off window after each failure; on a loaded
    // machine the client's retries above can outlast it, so a request that reaches the site
    // (one attempt, no retries) comes just before each look.
    let show = || {
        run(std::process::Command::new(env!("CARGO_BIN_EXE_vallum"))
            .args(["site", "show", "provider-par"])
            .envs(gateway.tool_env())
            .env("VALLUM_ENDPOINT", &gateway.endpoint))
    };
    let (mut down, mut shown) = (String::new(), String::new());
    for _ in 0..5 {
        let _ = gateway
            .aws()
            .env("AWS_MAX_ATTEMPTS", "1")
            .args(["s3api", "get-object", "--bucket", "records", "--key"])
            .args(["2026/record.txt", "/dev/null"])
            .output()
            .unwrap();
        down = health(&gateway);
        shown = show();
        if down.contains("\"site_unavailable\"") && shown.contains("health        DOWN after") {
            break;
        }
    }
    assert!(
        down.ends_with("\n503") && down.contains("\"site_unavailable\""),
        "{down}"
    );
    assert!(shown.contains("health        DOWN after"), "{shown}");
    let listing = run(gateway
        .aws()
        .args(["s3api", "list-objects-v2", "--bucket", "records"]));
    assert!(!listing.contains("later.txt"), "{listing}");

    // The provider comes back on the same address: after the backoff the site answers again.
    let _back = Server::start_in(
        &provider.data_dir,
        &format!("127.0.0.1:{}", provider.port),
        &[],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = gateway
            .aws()
            .args(["s3", "cp", "s3://records/2026/record.txt", "-"])
            .output()
            .unwrap();
        if out.status.success() {
            assert_eq!(out.stdout, marker.repeat(100));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the site never came back: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let up = health(&gateway);
    assert!(
        up.ends_with("\n200") && up.contains("\"status\":\"ok\""),
        "{up}"
    );
    // HEAD answers from metadata alone.
    run(gateway.aws().args([
        "s3api",
        "head-object",
        "--bucket",
        "records",
        "--key",
        "2026/scan.bin",
    ]));
}

/// Azurite's well-known development account and key (public, in Microsoft's documentation).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite blob service with one container.
struct Azurite {
    _child: KillOnDrop,
    endpoint: String,
    _dir: tempfile::TempDir,
}

fn azurite(container: &str) -> Azurite {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = std::process::Command::new(tool("azurite-blob"))
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(dir.path())
        .args(["--silent", "--skipApiVersionCheck"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    wait_for_port(port, "azurite");
    let az = Azurite {
        _child: child,
        endpoint: format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
        _dir: dir,
    };
    let out = azure_tool(&az, container, "create");
    assert!(out.contains("created"), "{out}");
    az
}

/// Microsoft's own client on the container (creates it, or lists what it holds).
fn azure_tool(az: &Azurite, container: &str, action: &str) -> String {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/azure_site.py");
    run(std::process::Command::new(tool("python3"))
        .arg(script)
        .args([
            &az.endpoint,
            AZURITE_ACCOUNT,
            AZURITE_KEY,
            container,
            action,
        ]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_site_keeps_the_blob_store_contract() {
    let az = azurite("site-blobs");
    let site = AzureSite {
        account: AZURITE_ACCOUNT.into(),
        container: "site-blobs".into(),
        access_key: zeroize::Zeroizing::new(AZURITE_KEY.into()),
        endpoint: az.endpoint.clone(),
        ca_pem: None,
    };
    let store = RemoteBlobStore::azure(&site, "gw-1").unwrap();
    contract::all(&store).await;
    // Microsoft's client sees exactly the opaque names under the prefix.
    let listed = azure_tool(&az, "site-blobs", "list");
    let names: Vec<&str> = listed
        .lines()
        .filter(|l| !l.starts_with("bytes "))
        .collect();
    assert!(!names.is_empty(), "{listed}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("gw-1/blobs/") || n.starts_with("gw-1/packs/")),
        "{listed}"
    );
}

#[test]
fn a_gateway_over_azure_blob_storage_round_trips_large_objects() {
    let az = azurite("vallum");
    let tmp = tempfile::tempdir().unwrap();
    let toml = format!(
        "[site]\nid = \"azure-fr\"\njurisdiction = \"FR\"\nbackend = \"azure\"\n\n[site.azure]\naccount = \"{AZURITE_ACCOUNT}\"\ncontainer = \"vallum\"\naccess_key_env = \"AZURE_KEY\"\nendpoint = \"{}\"\n",
        az.endpoint
    );
    let (gateway, _) = gateway_on(tmp.path(), &toml, &[("AZURE_KEY", AZURITE_KEY)]);
    run(gateway.aws().args(["s3", "mb", "s3://records"]));
    let scan = round_trip(&gateway, tmp.path(), "records/scan.bin", 12 << 20, 3);
    let listed = azure_tool(&az, "vallum", "list");
    let total: usize = listed
        .lines()
        .find_map(|l| l.strip_prefix("bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(total > scan.len(), "{listed}");
    assert!(
        listed
            .lines()
            .filter(|l| !l.starts_with("bytes "))
            .all(|n| (n.starts_with("blobs/") || n.starts_with("packs/"))
                && !n.contains("scan")
                && !n.contains("records")),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_site_on_moto_keeps_the_contract_and_streams_large_blobs() {
    use futures::TryStreamExt;
    use vallum_core::blob::BlobStore;

    let (_moto, endpoint) = common::moto("moto-site");
    let store = RemoteBlobStore::s3(
        &S3Site {
            endpoint,
            bucket: "moto-site".into(),
            region: "us-east-1".into(),
            access_key: "testing".into(),
            secret_key: zeroize::Zeroizing::new("testing".into()),
            ca_pem: None,
        },
        "",
    )
    .unwrap();
    contract::all(&store).await;
    // 20 MiB: three multipart parts, read back whole and by range.
    let blob = data(20 << 20, 5);
    let id = vallum_types::BlobId::random();
    let chunks: Vec<std::io::Result<bytes::Bytes>> = blob
        .chunks(1 << 20)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let written = store
        .put(id, Box::pin(futures::stream::iter(chunks)))
        .await
        .unwrap();
    assert_eq!(written, blob.len() as u64);
    let read = |range: std::ops::Range<u64>| {
        let store = store.clone();
        async move {
            store
                .get(id, range)
                .await
                .unwrap()
                .try_fold(Vec::new(), |mut acc, c| async move {
                    acc.extend_from_slice(&c);
                    Ok(acc)
                })
                .await
                .unwrap()
        }
    };
    assert!(read(0..blob.len() as u64).await == blob);
    assert_eq!(read(8_388_600..8_388_700).await, blob[8_388_600..8_388_700]);
}

#[test]
fn migrating_a_deployment_over_a_remote_site_deletes_its_trash_on_that_site() {
    let provider = provider("provider-bucket");
    let tmp = tempfile::tempdir().unwrap();
    let toml = format!(
        "data_dir = \"{}\"\n\n[site]\nbackend = \"s3\"\n\n[site.s3]\nendpoint = \"{}\"\nbucket = \"provider-bucket\"\naccess_key = \"{}\"\nsecret_env = \"PROVIDER_SECRET\"\n",
        tmp.path().join("gw").display(),
        provider.endpoint,
        provider.access_key
    );
    let secret = ("PROVIDER_SECRET", provider.secret_key.as_str());
    let (mut gateway, cfg) = gateway_on(tmp.path(), &toml, &[secret]);
    let file = tmp.path().join("f");
    std::fs::write(&file, b"first").unwrap();
    run(gateway.aws().args(["s3", "mb", "s3://bkt"]));
    run(gateway
        .aws()
        .args(["s3", "cp"])
        .arg(&file)
        .arg("s3://bkt/k"));
    // Overwritten: the first blob goes to the trash (kept for the grace period).
    std::fs::write(&file, b"second").unwrap();
    run(gateway
        .aws()
        .args(["s3", "cp"])
        .arg(&file)
        .arg("s3://bkt/k"));
    let site = site_of(&provider, "provider-bucket");
    let held = || common::remote_blobs(&site).len();
    let keys = |provider: &Server| -> BTreeSet<String> {
        run(provider.aws().args([
            "s3api",
            "list-objects-v2",
            "--bucket",
            "provider-bucket",
            "--query",
            "Contents[].Key",
            "--output",
            "text",
        ]))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
    };
    assert_eq!(held(), 2);
    gateway.kill9();

    let url = common::fresh_pg_database();
    let out = run(std::process::Command::new(env!("CARGO_BIN_EXE_vallum"))
        .args(["migrate-meta", "--config"])
        .arg(&cfg)
        .args(["--to", &url])
        .env("PROVIDER_SECRET", secret.1));
    assert!(out.contains("; 1 trashed blobs deleted"), "{out}");
    // The trashed blob is gone from the provider; the current one stays and still reads.
    assert_eq!(held(), 1);
    // Its bytes leave the provider when its pack object is compacted (the writer does it in
    // the background; here at once): the pack object that held only it is deleted.
    let before = keys(&provider);
    let compacted = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(RemoteBlobStore::s3(&site, "").unwrap().compact_packs())
        .unwrap();
    assert!(compacted);
    let after = keys(&provider);
    assert!(
        after.len() + 1 == before.len() && after.is_subset(&before),
        "{before:?} {after:?}"
    );
    assert_eq!(held(), 1);
    let gateway = Server::start_in(
        &tmp.path().join("gw"),
        "127.0.0.1:0",
        &["--config", cfg.to_str().unwrap()],
        &[secret, ("VALLUM_META_URL", url.as_str())],
    );
    let got = run(gateway.aws().args(["s3", "cp", "s3://bkt/k", "-"]));
    assert_eq!(got, "second");
}
