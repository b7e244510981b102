//! Vallum with its keys in an external key store: `vallum keyd` (over a SoftHSM2 token, TLS,
//! SigV4) as a separate process, `vallum serve` with `[keys] provider = "xks"`, and the key
//! store's holder disabling the key, or the key store going away.

mod common;

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
    let server = Server::start_in(
        &data,
        "127.0.0.1:0",
        &["--config", vallum_toml.to_str().unwrap()],
        &[("KEYD_SECRET", "keyd-shared-secret")],
    );
    let s3 = server.client();
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
