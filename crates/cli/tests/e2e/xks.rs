//! Vallum with its keys in an external key store: `vallum keyd` (over a SoftHSM2 token, TLS,
//! SigV4) as a separate process, `vallum serve` with `[keys] provider = "xks"`, and the key
//! store's holder disabling the key, or the key store going away.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use common::{Server, free_port};

fn vallum() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vallum"));
    c.env("KEYD_PIN", "2468")
        .env("KEYD_SECRET", "keyd-shared-secret")
        .env("VALLUM_LOG", "warn");
    c
}

struct Keyd(Child);

impl Drop for Keyd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `vallum keyd serve`, returning once it printed its banner.
fn start_keyd(config: &Path) -> Keyd {
    let mut child = vallum()
        .args(["keyd", "serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("keyd printed nothing").unwrap();
    assert!(line.starts_with("keyd: XKS proxy at https://"), "{line}");
    std::thread::spawn(move || for _ in lines {});
    Keyd(child)
}

fn keyd_key(config: &Path, args: &[&str]) -> String {
    let out = vallum()
        .args(["keyd", "key", "--config"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn error_code<E: aws_sdk_s3::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_encrypted_under_keys_held_by_keyd_and_follow_their_holder() {
    let module = common::softhsm_module();
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("tls");
    common::test_ca(&certs);
    let label = format!("keyd-{}", std::process::id());
    common::softhsm_token(&label, "2468", "1357");

    let port = free_port();
    let keyd_toml = tmp.path().join("keyd.toml");
    std::fs::write(
        &keyd_toml,
        format!(
            r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"
path_prefix = "/bank"
tls_cert = "{cert}"
tls_key = "{key}"

[keys]
provider = "pkcs11"
pkcs11_module = "{module}"
pkcs11_token = "{label}"
pkcs11_pin_env = "KEYD_PIN"

[[credentials]]
access_key = "AKIDVALLUMGATEWAY"
secret_env = "KEYD_SECRET"

[[policy]]
key = "records-*"
principals = ["key:*", "system:*"]
reasons = ["customer-request", "describe-key"]
"#,
            data = tmp.path().join("keyd-data").display(),
            cert = certs.join("cert.pem").display(),
            key = certs.join("key.pem").display(),
        ),
    )
    .unwrap();
    let created = keyd_key(&keyd_toml, &["create", "records-kek"]);
    assert!(
        created.contains("records-kek\tversion 1\tenabled"),
        "{created}"
    );
    let listed = common::json(&keyd_key(&keyd_toml, &["list", "--json"]));
    assert_eq!(listed[0]["key_id"], "records-kek", "{listed}");
    assert_eq!(listed[0]["current_version"], 1, "{listed}");
    assert_eq!(listed[0]["state"], "enabled", "{listed}");
    let bad = vallum()
        .args(["keyd", "key", "--config"])
        .arg(&keyd_toml)
        .args(["create", "not/an-xks-id"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("XKS external key ids"));
    let mut keyd = start_keyd(&keyd_toml);

    let vallum_toml = tmp.path().join("vallum.toml");
    std::fs::write(
        &vallum_toml,
        format!(
            r#"[keys]
provider = "xks"
xks_endpoint = "https://localhost:{port}/bank"
xks_access_key = "AKIDVALLUMGATEWAY"
xks_secret_env = "KEYD_SECRET"
xks_ca_file = "{ca}"
xks_timeout_ms = 1000
xks_retries = 1
default_key_id = "records-kek"
dek_cache_entries = 0
"#,
            ca = certs.join("ca.pem").display()
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    // The quick start came first on this data directory: an object under the local keyring.
    {
        let mut quick_start = Server::start_in(&data, "127.0.0.1:0", &[], &[]);
        let s3 = quick_start.client();
        s3.create_bucket().bucket("early").send().await.unwrap();
        s3.put_object()
            .bucket("early")
            .key("notes.txt")
            .body(ByteStream::from_static(b"written under the keyring"))
            .send()
            .await
            .unwrap();
        quick_start.kill9();
    }
    let server = Server::start_in(
        &data,
        "127.0.0.1:0",
        &["--config", vallum_toml.to_str().unwrap()],
        &[("KEYD_SECRET", "keyd-shared-secret")],
    );
    let s3 = server.client();
    // Its key is the keyring's, which this configuration does not use: an error that says
    // so (the server also says it at start), not a disabled key.
    let e = s3
        .get_object()
        .bucket("early")
        .key("notes.txt")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&e.into_service_error()),
        "XVallumKeyProviderMismatch"
    );
    s3.create_bucket().bucket("xks").send().await.unwrap();
    let body = common::data(300_000, 7);
    let put = s3
        .put_object()
        .bucket("xks")
        .key("statement.pdf")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    assert_eq!(put.ssekms_key_id(), Some("records-kek"));
    assert!(
        common::get_bytes(&s3, "xks", "statement.pdf")
            .await
            .as_ref()
            == body.as_slice()
    );
    let meta: Vec<u8> = ["meta.db", "meta.db-wal"]
        .iter()
        .flat_map(|f| std::fs::read(data.join(f)).unwrap_or_default())
        .collect();
    assert!(
        String::from_utf8_lossy(&meta).contains("\"provider\":\"xks\""),
        "the wrapped key is recorded as held by the XKS provider"
    );

    // The key holder disables the key: reads stop with the error S3 gives for a disabled key.
    keyd_key(&keyd_toml, &["disable", "records-kek"]);
    let e = s3
        .get_object()
        .bucket("xks")
        .key("statement.pdf")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e.into_service_error()), "KMS.DisabledException");
    keyd_key(&keyd_toml, &["enable", "records-kek"]);
    assert!(
        common::get_bytes(&s3, "xks", "statement.pdf")
            .await
            .as_ref()
            == body.as_slice()
    );

    // The key store goes away: a clear, retryable error within the time limit, and a PUT
    // leaves nothing behind.
    drop(keyd);
    let t = Instant::now();
    let e = s3
        .get_object()
        .bucket("xks")
        .key("statement.pdf")
        .send()
        .await
        .unwrap_err();
    let e = e.into_service_error();
    assert_eq!(error_code(&e), "ServiceUnavailable", "{e:?}");
    let e = s3
        .put_object()
        .bucket("xks")
        .key("during-outage")
        .body(ByteStream::from(vec![1u8; 1000]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e.into_service_error()), "ServiceUnavailable");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "{:?}: bounded by timeout and retries (the SDK retries too)",
        t.elapsed()
    );
    assert!(
        s3.head_object()
            .bucket("xks")
            .key("during-outage")
            .send()
            .await
            .is_err()
    );
    // Back, the data is readable again.
    keyd = start_keyd(&keyd_toml);
    assert!(
        common::get_bytes(&s3, "xks", "statement.pdf")
            .await
            .as_ref()
            == body.as_slice()
    );
    drop(keyd);
    let _: PathBuf = data;
}

/// The whole chain with customer-held keys: the tenant's keyd knows the guardians' public
/// approval keys and releases a key to an operator's grant only with two of their signatures.
/// A grant the charter let through with one signature reads nothing; one both guardians signed
/// reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_reads_under_customer_held_keys_only_with_the_guardians_signatures() {
    use common::{json, run, run_failing, vallum_admin, vallum_as};
    let module = common::softhsm_module();
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("tls");
    common::test_ca(&certs);
    let label = format!("keyd-g-{}", std::process::id());
    common::softhsm_token(&label, "2468", "1357");
    // The guardians make their approval keys on their own machines; keyd is given the public
    // halves by the tenant.
    let alice_key = vallum_ledger::note::Signer::generate("acme/alice").unwrap();
    let gina_key = vallum_ledger::note::Signer::generate("acme/gina").unwrap();
    let skey_file = |name: &str, signer: &vallum_ledger::note::Signer| {
        let path = tmp.path().join(format!("{name}.skey"));
        std::fs::write(&path, signer.to_skey().as_bytes()).unwrap();
        path
    };
    let (alice_skey, gina_skey) = (skey_file("alice", &alice_key), skey_file("gina", &gina_key));
    let port = free_port();
    let keyd_toml = tmp.path().join("keyd.toml");
    std::fs::write(
        &keyd_toml,
        format!(
            r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"
tls_cert = "{cert}"
tls_key = "{key}"

[keys]
provider = "pkcs11"
pkcs11_module = "{module}"
pkcs11_token = "{label}"
pkcs11_pin_env = "KEYD_PIN"

[[credentials]]
access_key = "AKIDVALLUMGATEWAY"
secret_env = "KEYD_SECRET"

[approvals]
guardians = ["{alice}", "{gina}"]
required = 2
"#,
            data = tmp.path().join("keyd-data").display(),
            cert = certs.join("cert.pem").display(),
            key = certs.join("key.pem").display(),
            alice = alice_key.vkey(),
            gina = gina_key.vkey(),
        ),
    )
    .unwrap();
    keyd_key(&keyd_toml, &["create", "records-kek"]);
    let _keyd = start_keyd(&keyd_toml);
    let vallum_toml = tmp.path().join("vallum.toml");
    std::fs::write(
        &vallum_toml,
        format!(
            "[keys]\nprovider = \"xks\"\nxks_endpoint = \"https://localhost:{port}\"\nxks_access_key = \"AKIDVALLUMGATEWAY\"\nxks_secret_env = \"KEYD_SECRET\"\nxks_ca_file = \"{ca}\"\ndefault_key_id = \"records-kek\"\ndek_cache_entries = 0\n",
            ca = certs.join("ca.pem").display()
        ),
    )
    .unwrap();
    let s = Server::start_in(
        &tmp.path().join("data"),
        "127.0.0.1:0",
        &["--config", vallum_toml.to_str().unwrap()],
        &[("KEYD_SECRET", "keyd-shared-secret")],
    );
    let who = |v: &serde_json::Value| {
        (
            v["access_key"]["id"].as_str().unwrap().to_owned(),
            v["secret_key"].as_str().unwrap().to_owned(),
        )
    };
    let admin = who(&json(&run(
        vallum_admin(&s, "tenant").args(["create", "acme"])
    )));
    let as_ = |k: &(String, String), sub: &str, args: &[&str]| {
        json(&run(vallum_as(&s, &k.0, &k.1, sub).args(args)))
    };
    let acme = s.client_with(&admin.0, &admin.1);
    acme.create_bucket().bucket("records").send().await.unwrap();
    acme.put_object()
        .bucket("records")
        .key("logs/a.txt")
        .body(ByteStream::from_static(b"payment run log"))
        .send()
        .await
        .unwrap();
    let mut guardians = Vec::new();
    for g in ["alice", "gina"] {
        as_(
            &admin,
            "user",
            &["--tenant", "acme", "create", g, "--role", "guardian"],
        );
        guardians.push(who(&as_(
            &admin,
            "access-key",
            &["create", "--tenant", "acme", "--user", g],
        )));
    }
    let (alice, gina) = (&guardians[0], &guardians[1]);
    as_(
        alice,
        "user",
        &[
            "--tenant",
            "acme",
            "approval-key",
            "alice",
            "--vkey",
            &alice_key.vkey(),
        ],
    );
    let charter = tmp.path().join("charter.json");
    std::fs::write(
        &charter,
        r#"{"roles":["sre"],"access":{"read":{}},"max_grant_secs":3600,"approvals_required":2,"audit_frequency_days":90}"#,
    )
    .unwrap();
    as_(
        &admin,
        "charter",
        &["--tenant", "acme", "propose", charter.to_str().unwrap()],
    );
    for g in [alice, gina] {
        as_(g, "charter", &["--tenant", "acme", "sign", "1"]);
    }
    run(vallum_admin(&s, "operator").args(["create", "olga", "--role", "sre"]));
    let olga = who(&json(&run(vallum_admin(&s, "access-key").args([
        "create",
        "--operator",
        "olga",
    ]))));
    as_(
        alice,
        "operator",
        &[
            "attest-for",
            "olga",
            "--tenant",
            "acme",
            "--access-key",
            &olga.0,
            "--role",
            "sre",
        ],
    );
    let request = || {
        as_(
            &olga,
            "lockbox",
            &[
                "request",
                "--tenant",
                "acme",
                "--bucket",
                "records",
                "--prefix",
                "logs/",
                "--operation",
                "read",
                "--purpose",
                "incident",
                "--ticket",
                "INC-1",
                "--duration-secs",
                "600",
            ],
        )["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let read_with_grant = |id: &str| {
        let grant = who(&as_(&olga, "lockbox", &["credential", id]));
        let client = s.client_with(&grant.0, &grant.1);
        async move {
            client
                .get_object()
                .bucket("records")
                .key("logs/a.txt")
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("{:?}", e.into_service_error()))
        }
    };

    // Gina has no approval key yet: her approval counts for the charter, not for keyd.
    let first = request();
    as_(
        alice,
        "lockbox",
        &[
            "approve",
            &first,
            "--signing-key",
            alice_skey.to_str().unwrap(),
        ],
    );
    let granted = as_(gina, "lockbox", &["approve", &first]);
    assert_eq!(granted["status"], "active");
    let refused = read_with_grant(&first).await;
    assert!(refused.is_err(), "keyd released a key on one signature");
    assert!(
        refused.as_ref().unwrap_err().contains("AccessDenied"),
        "{refused:?}"
    );

    // Both guardians sign: keyd releases the key to the grant.
    as_(
        gina,
        "user",
        &[
            "--tenant",
            "acme",
            "approval-key",
            "gina",
            "--vkey",
            &gina_key.vkey(),
        ],
    );
    let second = request();
    as_(
        alice,
        "lockbox",
        &[
            "approve",
            &second,
            "--signing-key",
            alice_skey.to_str().unwrap(),
        ],
    );
    let e = run_failing(vallum_as(&s, &gina.0, &gina.1, "lockbox").args(["approve", &second]));
    assert!(e.contains("must be signed"), "{e}");
    as_(
        gina,
        "lockbox",
        &[
            "approve",
            &second,
            "--signing-key",
            gina_skey.to_str().unwrap(),
        ],
    );
    assert_eq!(read_with_grant(&second).await, Ok(()));
}
