//! The S3 endpoint over TLS (`tls_cert`/`tls_key`): aws-cli with the CA bundle, a plain-HTTP
//! client refused, an untrusting client refused, and SSE-C answered per transport.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{Server, run, run_failing, tool};

/// A server serving HTTPS with a certificate of a test CA (`<tmp>/tls/ca.pem`).
fn tls_server() -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("tls");
    common::test_ca(&certs);
    let server = Server::start_in(
        &tmp.path().join("data"),
        "127.0.0.1:0",
        &[],
        &[
            ("VALLUM_TLS_CERT", certs.join("cert.pem").to_str().unwrap()),
            ("VALLUM_TLS_KEY", certs.join("key.pem").to_str().unwrap()),
        ],
    );
    (tmp, server)
}

#[test]
fn the_endpoint_serves_https_with_the_configured_certificate() {
    let (tmp, server) = tls_server();
    let certs = tmp.path().join("tls");
    assert!(
        server.endpoint.starts_with("https://127.0.0.1:"),
        "{}",
        server.endpoint
    );
    let aws = |ca: Option<&Path>| {
        let mut cmd = Command::new(tool("aws"));
        cmd.envs(server.tool_env()).env_remove("AWS_CA_BUNDLE");
        if let Some(ca) = ca {
            cmd.arg("--ca-bundle").arg(ca);
        }
        cmd.arg("--endpoint-url").arg(&server.endpoint);
        cmd
    };
    let ca = certs.join("ca.pem");
    run(aws(Some(&ca)).args(["s3", "mb", "s3://secure"]));
    let file = tmp.path().join("f.txt");
    std::fs::write(&file, b"over TLS").unwrap();
    run(aws(Some(&ca))
        .args(["s3", "cp"])
        .arg(&file)
        .arg("s3://secure/f.txt"));
    let got = run(aws(Some(&ca)).args(["s3", "cp", "s3://secure/f.txt", "-"]));
    assert_eq!(got, "over TLS");
    // A client that does not trust the CA refuses the endpoint.
    let e = run_failing(aws(None).args(["s3", "ls", "s3://secure"]));
    assert!(e.contains("SSL") || e.contains("certificate"), "{e}");
    // Plain HTTP to the TLS port gets no S3 answer.
    let plain = server.endpoint.replace("https://", "http://");
    let e = run_failing(Command::new(tool("aws")).envs(server.tool_env()).args([
        "--endpoint-url",
        &plain,
        "s3",
        "ls",
    ]));
    assert!(!e.is_empty());
    // SSE-C over TLS: aws-cli and boto3 with customer-provided keys.
    let key = "0123456789abcdef0123456789abcdef";
    run(aws(Some(&ca))
        .args([
            "s3api",
            "put-object",
            "--bucket",
            "secure",
            "--key",
            "c",
            "--body",
        ])
        .arg(&file)
        .args([
            "--sse-customer-algorithm",
            "AES256",
            "--sse-customer-key",
            key,
        ]));
    let out_file = tmp.path().join("c.out");
    run(aws(Some(&ca))
        .args(["s3api", "get-object", "--bucket", "secure", "--key", "c"])
        .args([
            "--sse-customer-algorithm",
            "AES256",
            "--sse-customer-key",
            key,
        ])
        .arg(&out_file));
    assert_eq!(std::fs::read(&out_file).unwrap(), b"over TLS");
    let e = run_failing(
        aws(Some(&ca))
            .args(["s3api", "get-object", "--bucket", "secure", "--key", "c"])
            .arg(&out_file),
    );
    assert!(e.contains("InvalidRequest"), "{e}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/boto3_ssec.py");
    let out = run(Command::new(tool("python3"))
        .arg(script)
        .envs(server.tool_env())
        .env_remove("AWS_CA_BUNDLE")
        .env("VALLUM_ENDPOINT", &server.endpoint)
        .env("VALLUM_CA", &ca));
    assert!(out.contains("boto3 ssec ok"), "{out}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/boto3_early_answers.py");
    let out = run(Command::new(tool("python3"))
        .arg(script)
        .envs(server.tool_env())
        .env_remove("AWS_CA_BUNDLE")
        .env("VALLUM_ENDPOINT", &server.endpoint)
        .env("VALLUM_CA", &ca));
    assert!(out.contains("boto3 early answers ok"), "{out}");
    // Neither customer key is stored: only a salted HMAC of each.
    let meta: Vec<u8> = ["meta.db", "meta.db-wal"]
        .iter()
        .flat_map(|f| std::fs::read(tmp.path().join("data").join(f)).unwrap_or_default())
        .collect();
    assert!(meta.len() > 4096);
    let raw: Vec<u8> = (0u8..32).collect();
    for needle in [key.as_bytes(), raw.as_slice()] {
        assert!(
            !meta.windows(needle.len()).any(|w| w == needle),
            "a customer key is in the metadata"
        );
    }
    // The log is served over the same TLS endpoint.
    let out = run(Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&ca)
        .arg(format!("{}/log/checkpoint", server.endpoint)));
    assert!(out.starts_with("vallum.local/"), "{out}");
}

#[test]
fn the_admin_cli_reaches_a_tls_endpoint_trusting_only_the_given_ca() {
    let (tmp, server) = tls_server();
    let certs = tmp.path().join("tls");
    let admin = |ca: Option<&Path>| {
        let mut cmd = common::vallum_admin(&server, "key");
        cmd.env_remove("AWS_CA_BUNDLE");
        if let Some(ca) = ca {
            cmd.env("AWS_CA_BUNDLE", ca);
        }
        cmd
    };
    // With the deployment's CA: the call goes through TLS and is answered.
    let created = run(admin(Some(&certs.join("ca.pem"))).args(["create", "over-tls"]));
    assert!(created.contains("over-tls"), "{created}");
    let listed = run(admin(Some(&certs.join("ca.pem"))).arg("list"));
    assert!(listed.contains("over-tls"), "{listed}");
    // Without it (the system's roots), the certificate is refused: no call is made.
    let e = run_failing(admin(None).arg("list"));
    assert!(
        e.contains("certificate") || e.contains("UnknownIssuer"),
        "{e}"
    );
    // A file that is not PEM is named.
    let bogus = tmp.path().join("bogus.pem");
    std::fs::write(&bogus, b"not a certificate").unwrap();
    let e = run_failing(admin(Some(&bogus)).arg("list"));
    assert!(e.contains("bogus.pem"), "{e}");
}
