//! Several sites per deployment: replicas placed by the boundary policy across sites of
//! different jurisdictions and operators (local disks, a second Vallum serving S3, moto),
//! reads that fail over when a site is killed, writes that stay within policy meanwhile, the
//! repair converging when it comes back, and migration when a policy tightens or a site is
//! drained, checked by listing every site's contents.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Server, data, free_port, json, local_blobs, run, run_failing, vallum_admin as vallum,
};

/// The blob ids an S3 bucket holds as a site.
fn s3_blobs(endpoint: &str, access: &str, secret: &str, bucket: &str) -> BTreeSet<String> {
    common::remote_blobs(&vallum_blob::S3Site {
        endpoint: endpoint.into(),
        bucket: bucket.into(),
        region: common::REGION.into(),
        access_key: access.into(),
        secret_key: zeroize::Zeroizing::new(secret.into()),
        ca_pem: None,
    })
}

/// Writes `count` files of different sizes under `dir` and uploads them with `aws s3 sync`.
fn upload_set(gateway: &Server, dir: &Path, bucket: &str, prefix: &str, count: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        let len = 1000 + i * 7919;
        std::fs::write(
            dir.join(format!("{prefix}-{i:03}.bin")),
            data(len, i as u64 + 1),
        )
        .unwrap();
    }
    run(gateway
        .aws()
        .args(["s3", "sync"])
        .arg(dir)
        .arg(format!("s3://{bucket}/{prefix}/")));
}

/// Downloads `bucket/prefix` and compares every file with the originals in `dir`.
fn check_set(gateway: &Server, dir: &Path, bucket: &str, prefix: &str, scratch: &Path) {
    let out = scratch.join(format!("check-{prefix}-{}", rand_suffix()));
    run(gateway
        .aws()
        .args(["s3", "sync"])
        .arg(format!("s3://{bucket}/{prefix}/"))
        .arg(&out));
    let mut n = 0;
    for f in std::fs::read_dir(dir).unwrap().flatten() {
        let got = std::fs::read(out.join(f.file_name()))
            .unwrap_or_else(|e| panic!("{:?} not read back: {e}", f.file_name()));
        assert_eq!(got, std::fs::read(f.path()).unwrap(), "{:?}", f.file_name());
        n += 1;
    }
    assert!(n > 0);
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Polls `check` every 250 ms until it returns true, for at most `secs`.
fn wait_until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What the metadata says each site holds of `bucket`, from the compliance report.
/// `placement check` exits 3 while the bucket is outside its policy; both are answers.
fn holdings(gateway: &Server, bucket: &str) -> serde_json::Value {
    let out = vallum(gateway, "placement")
        .args(["check", bucket, "--json"])
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 3)), "{out:?}");
    json(&String::from_utf8_lossy(&out.stdout))
}

fn held_on(report: &serde_json::Value, site: &str) -> u64 {
    report["sites"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["site"] == site)
        .map_or(0, |h| h["blobs"].as_u64().unwrap())
}

fn start_gateway(dir: &Path, toml: &str, env: &[(&str, &str)]) -> Server {
    let cfg = dir.join("vallum.toml");
    std::fs::write(&cfg, toml).unwrap();
    Server::start_in(
        &dir.join("gw"),
        "127.0.0.1:0",
        &["--config", cfg.to_str().unwrap()],
        env,
    )
}

fn local_sites_toml(tmp: &Path) -> String {
    format!(
        r#"[site]
id = "par-1"
jurisdiction = "FR"
operator = "Alpha Cloud SAS"

[[sites]]
id = "fra-1"
jurisdiction = "DE"
operator = "Beta Rechenzentrum GmbH"
path = "{fra}"

[[sites]]
id = "dub-1"
jurisdiction = "IE"
operator = "Hyperscale Ireland Ltd"
parent = "Hyperscale Inc"
parent_country = "US"
path = "{dub}"

[replication]
repair_interval_secs = 1
site_refresh_secs = 1
"#,
        fra = tmp.join("fra-1").display(),
        dub = tmp.join("dub-1").display(),
    )
}

#[test]
fn tightening_a_policy_migrates_replicas_and_sites_drain_and_leave_without_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mut gateway = start_gateway(t, &local_sites_toml(t), &[]);
    let par = t.join("gw").join("sites").join("local");
    let (fra, dub) = (t.join("fra-1"), t.join("dub-1"));

    run(gateway.aws().args(["s3", "mb", "s3://records"]));
    run(vallum(&gateway, "policy").args([
        "set",
        "records",
        "--name",
        "eu-two",
        "--allow",
        "EU",
        "--replicas",
        "2",
    ]));
    let files = t.join("files");
    upload_set(&gateway, &files, "records", "a", 24);
    // A 12 MiB object: aws-cli uploads it in parts, each part a blob with its own replicas.
    let big = t.join("big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(big.join("scan.bin"), data(12 << 20, 77)).unwrap();
    run(gateway
        .aws()
        .args(["s3", "sync"])
        .arg(&big)
        .arg("s3://records/big/"));

    // Every blob has exactly two copies, spread over all three EU sites.
    let (p, f, d) = (local_blobs(&par), local_blobs(&fra), local_blobs(&dub));
    let all: BTreeSet<&String> = p.iter().chain(&f).chain(&d).collect();
    assert!(
        all.len() >= 26,
        "24 objects and a multipart one: {}",
        all.len()
    );
    assert_eq!(
        p.len() + f.len() + d.len(),
        2 * all.len(),
        "two copies of each blob"
    );
    assert!(
        !d.is_empty() && !f.is_empty() && !p.is_empty(),
        "{} {} {}",
        p.len(),
        f.len(),
        d.len()
    );
    let report = holdings(&gateway, "records");
    assert_eq!(held_on(&report, "dub-1"), d.len() as u64, "{report}");
    assert_eq!(held_on(&report, "fra-1"), f.len() as u64, "{report}");

    // Tightening: the Irish site's US parent exposes it to the CLOUD Act. The repair moves
    // its copies to the two remaining sites, then deletes them; nothing is lost.
    run(vallum(&gateway, "policy").args([
        "set",
        "records",
        "--name",
        "eu-strict",
        "--allow",
        "EU",
        "--forbid-exposure",
        "us-cloud-act",
        "--replicas",
        "2",
    ]));
    wait_until(60, "the Irish copies to move", || {
        local_blobs(&dub).is_empty()
    });
    let (p, f) = (local_blobs(&par), local_blobs(&fra));
    assert_eq!(p.len(), all.len(), "every blob on par-1");
    assert_eq!(f.len(), all.len(), "every blob on fra-1");
    check_set(&gateway, &files, "records", "a", t);
    check_set(&gateway, &big, "records", "big", t);
    let report = holdings(&gateway, "records");
    assert_eq!(report["compliant"], true, "{report}");
    assert_eq!(held_on(&report, "dub-1"), 0);
    let repair = json(&run(vallum(&gateway, "site").args(["repair", "--json"])));
    let passes = repair["repair"]["passes"].as_u64().unwrap();
    assert!(passes >= 1, "{repair}");
    // `--start --wait` returns once the pass it started has finished.
    let waited = json(&run(
        vallum(&gateway, "site").args(["repair", "--start", "--wait", "--json"])
    ));
    assert!(
        waited["repair"]["passes"].as_u64().unwrap() > passes,
        "{waited}"
    );

    // Bad input, refused with the reason and nothing lost: the primary cannot go, a site
    // holding data cannot go, and draining fra-1 would leave eu-strict one site short.
    let err = run_failing(vallum(&gateway, "site").args(["remove", "par-1"]));
    assert!(err.contains("primary site"), "{err}");
    let err = run_failing(vallum(&gateway, "site").args(["remove", "fra-1"]));
    assert!(
        err.contains("still holds") && err.contains("drain it"),
        "{err}"
    );
    let err = run_failing(vallum(&gateway, "site").args(["drain", "fra-1"]));
    assert!(
        err.contains("would leave buckets without a compliant placement")
            && err.contains("records: no compliant placement under policy eu-strict"),
        "{err}"
    );
    let bad = t.join("bad-site.toml");
    std::fs::write(
        &bad,
        "id = \"xx-1\"\njurisdiction = \"XX\"\noperator = \"Nobody\"\n",
    )
    .unwrap();
    let err = run_failing(vallum(&gateway, "site").args(["add"]).arg(&bad));
    assert!(err.contains("\"XX\" is not an ISO 3166-1"), "{err}");
    let err = run_failing(vallum(&gateway, "site").args(["show", "nowhere"]));
    assert!(err.contains("NoSuchSite"), "{err}");

    // The Irish site holds nothing now: it leaves. A Spanish site joins at run time, and
    // then fra-1 can be drained (its copies go to mad-1) and removed.
    let out = run(vallum(&gateway, "site").args(["remove", "dub-1"]));
    assert!(out.contains("site removed"), "{out}");
    let mad = t.join("mad-1");
    let add = t.join("mad-1.toml");
    std::fs::write(
        &add,
        format!(
            "id = \"mad-1\"\njurisdiction = \"ES\"\noperator = \"Delta Datos SL\"\nbackend = \"local\"\npath = \"{}\"\n",
            mad.display()
        ),
    )
    .unwrap();
    let out = run(vallum(&gateway, "site").args(["add"]).arg(&add));
    assert!(out.contains("site added"), "{out}");
    let err = run_failing(vallum(&gateway, "site").args(["add"]).arg(&add));
    assert!(err.contains("SiteExists"), "{err}");
    // A Portuguese site of a US group: eu-strict never places anything there, so it stays
    // empty; yet while a bucket only it can hold exists, it cannot go.
    let lis = t.join("lis-1.toml");
    std::fs::write(
        &lis,
        "id = \"lis-1\"\njurisdiction = \"PT\"\noperator = \"Hyperscale Portugal Lda\"\nparent = \"Hyperscale Inc\"\nparent_country = \"US\"\n",
    )
    .unwrap();
    run(vallum(&gateway, "site").args(["add"]).arg(&lis));
    run(gateway.aws().args(["s3", "mb", "s3://lisbon"]));
    run(vallum(&gateway, "policy").args(["set", "lisbon", "--name", "pt-only", "--allow", "PT"]));
    let err = run_failing(vallum(&gateway, "site").args(["remove", "lis-1"]));
    assert!(
        err.contains("removing site lis-1 would leave buckets without a compliant placement")
            && err.contains("lisbon: no compliant placement under policy pt-only"),
        "{err}"
    );
    assert!(
        local_blobs(&t.join("gw").join("sites").join("lis-1")).is_empty(),
        "nothing of eu-strict ever lands on the US-owned site"
    );
    run(gateway.aws().args(["s3", "rb", "s3://lisbon"]));
    run(vallum(&gateway, "site").args(["remove", "lis-1"]));
    let out = run(vallum(&gateway, "site").args(["drain", "fra-1"]));
    assert!(out.contains("state draining"), "{out}");
    wait_until(60, "fra-1 to drain", || local_blobs(&fra).is_empty());
    assert_eq!(
        local_blobs(&mad).len(),
        all.len(),
        "every blob moved to mad-1"
    );
    run(vallum(&gateway, "site").args(["remove", "fra-1"]));
    let list = json(&run(vallum(&gateway, "site").args(["list", "--json"])));
    let ids: Vec<&str> = list["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["profile"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["par-1", "mad-1"]);

    // The run-time changes survive a restart; every object still reads back.
    gateway.kill9();
    let gateway = start_gateway(t, &local_sites_toml(t), &[]);
    let list = json(&run(vallum(&gateway, "site").args(["list", "--json"])));
    assert_eq!(list["sites"].as_array().unwrap().len(), 2, "{list}");
    check_set(&gateway, &files, "records", "a", t);
    check_set(&gateway, &big, "records", "big", t);
    let report = holdings(&gateway, "records");
    assert_eq!(report["compliant"], true, "{report}");
    assert_eq!(held_on(&report, "mad-1"), all.len() as u64);
}

#[test]
fn three_sites_survive_the_loss_of_one_and_the_repair_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // fra-1: a second Vallum serving S3 on a fixed port, so it can be restarted there.
    let provider_dir: PathBuf = t.join("provider");
    let provider_port = free_port();
    let listen = format!("127.0.0.1:{provider_port}");
    let mut provider = Server::start_in(&provider_dir, &listen, &[], &[]);
    run(provider.aws().args(["s3", "mb", "s3://fra-blobs"]));
    // ams-1: moto, AWS's S3 emulator.
    let (_moto, moto) = common::moto("ams-blobs");

    let toml = format!(
        r#"[site]
id = "par-1"
jurisdiction = "FR"
operator = "Alpha Cloud SAS"

[[sites]]
id = "fra-1"
jurisdiction = "DE"
operator = "Beta Rechenzentrum GmbH"
backend = "s3"
[sites.s3]
endpoint = "{}"
bucket = "fra-blobs"
access_key = "{}"
secret_env = "FRA_SECRET"

[[sites]]
id = "ams-1"
jurisdiction = "NL"
operator = "Gamma Hosting BV"
backend = "s3"
[sites.s3]
endpoint = "{moto}"
bucket = "ams-blobs"
access_key = "testing"
secret_env = "AMS_SECRET"

[replication]
repair_interval_secs = 1
site_refresh_secs = 1
"#,
        provider.endpoint, provider.access_key
    );
    let secret = provider.secret_key.clone();
    let gateway = start_gateway(
        t,
        &toml,
        &[("FRA_SECRET", secret.as_str()), ("AMS_SECRET", "testing")],
    );
    let par = t.join("gw").join("sites").join("local");
    let (fra_endpoint, fra_access) = (provider.endpoint.clone(), provider.access_key.clone());
    let list_all = |provider_up: bool| {
        let fra = if provider_up {
            s3_blobs(&fra_endpoint, &fra_access, &secret, "fra-blobs")
        } else {
            BTreeSet::new()
        };
        (
            local_blobs(&par),
            fra,
            s3_blobs(&moto, "testing", "testing", "ams-blobs"),
        )
    };

    run(gateway.aws().args(["s3", "mb", "s3://ledger"]));
    // Two copies with two legally independent operators, both durable before a write is
    // acknowledged.
    run(vallum(&gateway, "policy").args([
        "set",
        "ledger",
        "--name",
        "eu-two-operators",
        "--allow",
        "EU",
        "--replicas",
        "2",
        "--operators",
        "2",
    ]));
    let first = t.join("first");
    upload_set(&gateway, &first, "ledger", "first", 20);
    let (p, f, a) = list_all(true);
    let blobs: BTreeSet<&String> = p.iter().chain(&f).chain(&a).collect();
    assert_eq!(blobs.len(), 20);
    assert_eq!(
        p.len() + f.len() + a.len(),
        40,
        "two copies each: {} {} {}",
        p.len(),
        f.len(),
        a.len()
    );
    assert!(
        !f.is_empty() && !a.is_empty(),
        "the remote sites hold copies"
    );

    // fra-1's process dies. Every object still reads (from the other copy), the gateway
    // reports itself degraded, and new writes go to the two sites left, within policy.
    provider.kill9();
    check_set(&gateway, &first, "ledger", "first", t);
    let health = |gw: &Server| {
        let out = run(Command::new("curl").args(["-s", &format!("{}/health", gw.endpoint)]));
        json(&out)
    };
    wait_until(30, "fra-1 to be marked down", || {
        // Reads that fail over count as failures of fra-1.
        check_set(&gateway, &first, "ledger", "first", t);
        health(&gateway)["status"] == "degraded"
    });
    assert_eq!(health(&gateway)["sites"]["fra-1"]["down"], true);
    let second = t.join("second");
    upload_set(&gateway, &second, "ledger", "second", 10);
    check_set(&gateway, &second, "ledger", "second", t);
    let (p, _, a) = list_all(false);
    let written: BTreeSet<&String> = p.iter().chain(&a).collect();
    assert_eq!(
        written.len(),
        30,
        "every object has a copy on the sites left"
    );

    // fra-1 comes back: the repair copies what it missed and moves the stand-in copies back
    // to where placement puts them, until every blob has exactly its two copies again.
    let provider = Server::start_in(&provider_dir, &listen, &[], &[]);
    wait_until(90, "the repair to converge", || {
        let (p, f, a) = list_all(true);
        let report = holdings(&gateway, "ledger");
        p.len() + f.len() + a.len() == 60
            && held_on(&report, "fra-1") == f.len() as u64
            && held_on(&report, "ams-1") == a.len() as u64
            && held_on(&report, "par-1") == p.len() as u64
            && health(&gateway)["status"] == "ok"
    });
    let (p, f, a) = list_all(true);
    assert!(!f.is_empty(), "fra-1 holds copies again");
    let union: BTreeSet<&String> = p.iter().chain(&f).chain(&a).collect();
    assert_eq!(union.len(), 30);
    check_set(&gateway, &first, "ledger", "first", t);
    check_set(&gateway, &second, "ledger", "second", t);
    let repair = json(&run(vallum(&gateway, "site").args(["repair", "--json"])));
    assert!(
        repair["repair"]["passes"].as_u64().unwrap() >= 1,
        "{repair}"
    );
    drop(provider);
}
