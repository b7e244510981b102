//! The XKS provider against `vallum keyd` (in process, over TLS), keyd against curl's own SigV4
//! signer, the spec's error cases, and the faults a key service can have.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vallum_crypto::CryptoError;
use vallum_crypto::keyring::{LocalKeyring, RootKey};
use vallum_crypto::keys::{DataKey, Justification, KeyProvider, KeyState};
use vallum_xks::client::{XksConfig, XksProvider};
use vallum_xks::proxy::{Policy, Proxy, Rule};
use zeroize::Zeroizing;

/// A private CA and a certificate for `localhost` signed by it (scripts/make-test-ca.sh):
/// `(ca, cert, key)`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-test-ca.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

struct Keyd {
    url: String,
    ca: PathBuf,
    ring: Arc<LocalKeyring>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn keyd(policy: Policy) -> Keyd {
    keyd_over(policy, None).await
}

/// keyd over a fresh keyring, or over a copy of `existing` (keyring file, root key file).
async fn keyd_over(policy: Policy, existing: Option<(&Path, &Path)>) -> Keyd {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificate(dir.path());
    let root = match existing {
        Some((keyring, root)) => {
            std::fs::copy(keyring, dir.path().join("keyring")).unwrap();
            root.to_path_buf()
        }
        None => dir.path().join("root.key"),
    };
    let ring =
        Arc::new(LocalKeyring::open(&dir.path().join("keyring"), &RootKey::File(root)).unwrap());
    let proxy = Arc::new(Proxy::new(
        ring.clone(),
        vec![
            ("AKIDKEYDONE".into(), Zeroizing::new("secret-one".into())),
            ("AKIDKEYDTWO".into(), Zeroizing::new("secret-two".into())),
        ],
        "/tenant-a",
        policy,
    ));
    proxy.prepare().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = vallum_xks::tls::server_config(&cert, &key).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(vallum_xks::proxy::serve(
        proxy,
        listener,
        Some(tls),
        async {
            let _ = rx.await;
        },
    ));
    Keyd {
        url: format!("https://localhost:{port}/tenant-a"),
        ca,
        ring,
        _stop: tx,
        _dir: dir,
    }
}

fn client(url: &str, ca: Option<&Path>, secret: &str, timeout: Duration) -> XksProvider {
    XksProvider::new(XksConfig {
        endpoint: url.into(),
        access_key: if secret == "secret-two" {
            "AKIDKEYDTWO"
        } else {
            "AKIDKEYDONE"
        }
        .into(),
        secret: Zeroizing::new(secret.into()),
        region: "eu-west-3".into(),
        ca_file: ca.map(Path::to_path_buf),
        timeout,
        retries: 2,
        keys: vec!["conf-a".into()],
    })
    .unwrap()
}

fn why(reason: &str) -> Justification {
    Justification {
        actor: "key:AKIAEXAMPLE".into(),
        reason: reason.into(),
        approvals: None,
    }
}

#[tokio::test]
async fn xks_provider_passes_the_conformance_suite_against_keyd_over_tls() {
    let k = keyd(Policy::default()).await;
    let xks = client(&k.url, Some(&k.ca), "secret-one", Duration::from_secs(5));
    vallum_crypto::conformance::run_with(&xks, k.ring.as_ref()).await;

    let health = xks.health().await.unwrap();
    assert_eq!(health.ekm_fleet_details[0].health_status, "ACTIVE");
    assert_eq!(health.xks_proxy_vendor, "Vallum");

    // The second credential works too (rotation of SigV4 credentials).
    k.ring.create_key("k2", 1).await.unwrap();
    let two = client(&k.url, Some(&k.ca), "secret-two", Duration::from_secs(5));
    let dek = DataKey::generate().unwrap();
    let w = two
        .wrap("k2", &dek, b"ctx", &why("customer-request"))
        .await
        .unwrap();
    assert_eq!(
        xks.unwrap(&w, b"ctx", &why("customer-request"))
            .await
            .unwrap()
            .expose(),
        dek.expose()
    );
    // Lifecycle belongs to the store.
    assert!(matches!(
        xks.rotate("k2", 1).await,
        Err(CryptoError::Unsupported(_))
    ));
    assert!(matches!(
        xks.create_key("k3", 1).await,
        Err(CryptoError::Unsupported(_))
    ));

    // A wrong secret, an untrusted certificate: refused, clearly.
    let wrong = client(
        &k.url,
        Some(&k.ca),
        "not-the-secret",
        Duration::from_secs(5),
    );
    let e = wrong
        .wrap("k2", &dek, b"ctx", &why("customer-request"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, CryptoError::Refused(ref m) if m.contains("SigV4")),
        "{e}"
    );
    let untrusted = client(&k.url, None, "secret-one", Duration::from_secs(5));
    let e = untrusted.describe("k2").await.unwrap_err();
    assert!(matches!(e, CryptoError::Unavailable(_)), "{e}");
    // Unknown key, disabled key.
    assert!(matches!(
        xks.describe("nope").await,
        Err(CryptoError::NoSuchKey(_))
    ));
    k.ring.set_state("k2", KeyState::Disabled).await.unwrap();
    assert_eq!(xks.describe("k2").await.unwrap().state, KeyState::Disabled);
    assert!(matches!(
        xks.unwrap(&w, b"ctx", &why("customer-request")).await,
        Err(CryptoError::KeyUnavailable { .. })
    ));
}

#[tokio::test]
async fn keyd_policy_refuses_unjustified_use() {
    let policy = Policy {
        rules: vec![Rule {
            key: "records-*".into(),
            principals: vec!["key:*".into(), "system:*".into()],
            reasons: vec![
                "customer-request".into(),
                "replication".into(),
                "lockbox:*".into(),
            ],
        }],
        ..Policy::default()
    };
    let k = keyd(policy).await;
    k.ring.create_key("records-1", 1).await.unwrap();
    k.ring.create_key("other", 1).await.unwrap();
    let xks = client(&k.url, Some(&k.ca), "secret-one", Duration::from_secs(5));
    let dek = DataKey::generate().unwrap();
    let w = xks
        .wrap("records-1", &dek, b"c", &why("customer-request"))
        .await
        .unwrap();
    let operator = Justification {
        actor: "operator:alice".into(),
        reason: "debugging".into(),
        approvals: None,
    };
    let e = xks.unwrap(&w, b"c", &operator).await.unwrap_err();
    assert!(
        matches!(e, CryptoError::Refused(ref m) if m.contains("operator:alice")),
        "{e}"
    );
    let granted = Justification {
        actor: "key:AKIAOPS".into(),
        reason: "lockbox:grant-17".into(),
        approvals: None,
    };
    assert!(xks.unwrap(&w, b"c", &granted).await.is_ok());
    let e = xks
        .wrap("other", &dek, b"c", &why("customer-request"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, CryptoError::Refused(ref m) if m.contains("no rule")),
        "{e}"
    );
}

fn curl(k: &Keyd, path: &str, body: &str, user: &str, method: &str) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--aws-sigv4",
            "aws:amz:us-east-1:kms-xks-proxy",
        ])
        .args(["--user", user, "--cacert"])
        .arg(&k.ca)
        .args([
            "-X",
            method,
            "-H",
            "Content-Type: application/json",
            "--data",
            body,
        ])
        .arg(format!("{}/kms/xks/v1{path}", k.url))
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (json, status) = text.rsplit_once('\n').unwrap();
    (
        status.trim().parse().unwrap(),
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    )
}

/// curl signs with its own SigV4 implementation: keyd must accept it (another client than
/// Vallum), and answer the spec's errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyd_serves_curl_signed_requests_and_the_spec_errors() {
    let k = keyd(Policy::default()).await;
    k.ring.create_key("curl-key", 1).await.unwrap();
    let user = "AKIDKEYDONE:secret-one";
    let meta = r#""requestMetadata":{"awsPrincipalArn":"arn:aws:iam::123456789012:user/Alice","kmsKeyArn":"arn:aws:kms:eu-west-3:1:key/x","kmsOperation":"Encrypt","kmsRequestId":"4112f4d6"}"#;
    let (s, health) = curl(
        &k,
        "/health",
        r#"{"requestMetadata":{"kmsRequestId":"1","kmsOperation":"KmsHealthCheck"}}"#,
        user,
        "POST",
    );
    assert_eq!(s, 200, "{health}");
    assert_eq!(health["ekmFleetDetails"][0]["healthStatus"], "ACTIVE");

    let enc_body = format!(
        r#"{{{meta},"plaintext":"SGVsbG8gV29ybGQh","additionalAuthenticatedData":"cHJvamVjdD1uaWxl","encryptionAlgorithm":"AES_GCM","ciphertextDataIntegrityValueAlgorithm":"SHA_256"}}"#
    );
    let (s, enc) = curl(&k, "/keys/curl-key/encrypt", &enc_body, user, "POST");
    assert_eq!(s, 200, "{enc}");
    let field = |v: &serde_json::Value, f: &str| v[f].as_str().unwrap().to_owned();
    let b = |s: String| base64_simd::STANDARD.decode_to_vec(s).unwrap();
    assert_eq!(b(field(&enc, "ciphertext")).len(), 12);
    let cdiv = vallum_xks::wire::cdiv(
        b"project=nile",
        &b(field(&enc, "ciphertextMetadata")),
        &b(field(&enc, "initializationVector")),
        &b(field(&enc, "ciphertext")),
        &b(field(&enc, "authenticationTag")),
    );
    assert_eq!(field(&enc, "ciphertextDataIntegrityValue"), cdiv);

    let dec_body = |tag: &str, aad: &str| {
        format!(
            r#"{{{meta},"ciphertext":"{}","ciphertextMetadata":"{}","initializationVector":"{}","authenticationTag":"{tag}","additionalAuthenticatedData":"{aad}","encryptionAlgorithm":"AES_GCM"}}"#,
            field(&enc, "ciphertext"),
            field(&enc, "ciphertextMetadata"),
            field(&enc, "initializationVector"),
        )
    };
    let tag = field(&enc, "authenticationTag");
    let (s, dec) = curl(
        &k,
        "/keys/curl-key/decrypt",
        &dec_body(&tag, "cHJvamVjdD1uaWxl"),
        user,
        "POST",
    );
    assert_eq!(
        (s, dec["plaintext"].as_str()),
        (200, Some("SGVsbG8gV29ybGQh"))
    );

    let err = |v: &serde_json::Value| v["errorName"].as_str().unwrap_or("").to_owned();
    // Another AAD, a flipped tag.
    let (s, e) = curl(
        &k,
        "/keys/curl-key/decrypt",
        &dec_body(&tag, "b3RoZXI="),
        user,
        "POST",
    );
    assert_eq!((s, err(&e)), (400, "InvalidCiphertextException".into()));
    let mut t = b(tag.clone());
    t[0] ^= 1;
    let flipped = base64_simd::STANDARD.encode_to_string(&t);
    let (s, e) = curl(
        &k,
        "/keys/curl-key/decrypt",
        &dec_body(&flipped, "cHJvamVjdD1uaWxl"),
        user,
        "POST",
    );
    assert_eq!((s, err(&e)), (400, "InvalidCiphertextException".into()));
    // Wrong secret, unknown key, bad path, GET, malformed JSON, wrong algorithm, disabled key.
    let (s, e) = curl(
        &k,
        "/keys/curl-key/encrypt",
        &enc_body,
        "AKIDKEYDONE:wrong",
        "POST",
    );
    assert_eq!((s, err(&e)), (401, "AuthenticationFailedException".into()));
    let (s, e) = curl(&k, "/keys/missing/encrypt", &enc_body, user, "POST");
    assert_eq!((s, err(&e)), (404, "KeyNotFoundException".into()));
    let (s, e) = curl(&k, "/keys/curl-key/sign", &enc_body, user, "POST");
    assert_eq!((s, err(&e)), (404, "InvalidUriPathException".into()));
    let (s, _) = curl(&k, "/keys/curl-key/encrypt", &enc_body, user, "GET");
    assert_eq!(s, 405);
    let (s, e) = curl(&k, "/keys/curl-key/encrypt", "{not json", user, "POST");
    assert_eq!((s, err(&e)), (400, "ValidationException".into()));
    let (s, e) = curl(
        &k,
        "/keys/curl-key/encrypt",
        &enc_body.replace("AES_GCM", "AES_CBC"),
        user,
        "POST",
    );
    assert_eq!((s, err(&e)), (400, "ValidationException".into()));
    k.ring
        .set_state("curl-key", KeyState::Disabled)
        .await
        .unwrap();
    let (s, e) = curl(&k, "/keys/curl-key/encrypt", &enc_body, user, "POST");
    assert_eq!((s, err(&e)), (400, "InvalidStateException".into()));
    let (s, m) = curl(
        &k,
        "/keys/curl-key/metadata",
        &format!("{{{meta}}}"),
        user,
        "POST",
    );
    assert_eq!((s, m["keyStatus"].as_str()), (200, Some("DISABLED")));
}

/// Faults no real proxy can be made to show on demand: a peer that accepts connections and
/// never answers (a hung proxy), and a mock that always throttles. Both end in a clear error
/// within the configured time, never a hang; a closed port fails after the bounded retries.
#[tokio::test]
async fn a_dead_hung_or_throttling_proxy_fails_fast_and_clearly() {
    let dek = DataKey::generate().unwrap();
    // Nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = client(
        &format!("http://127.0.0.1:{closed}"),
        None,
        "s",
        Duration::from_millis(500),
    );
    let t = Instant::now();
    let e = p
        .wrap("k", &dek, b"c", &why("customer-request"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, CryptoError::Unavailable(ref m) if m.contains("cannot reach")),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(3));

    // Hung peer (fault: accepts, reads, never answers).
    let hung_peer_fault = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = hung_peer_fault.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hung_peer_fault.accept().await {
            held.push(s);
        }
    });
    let p = client(
        &format!("http://127.0.0.1:{port}"),
        None,
        "s",
        Duration::from_millis(300),
    );
    let t = Instant::now();
    let e = p
        .wrap("k", &dek, b"c", &why("customer-request"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, CryptoError::Unavailable(ref m) if m.contains("did not answer")),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // Mock proxy that always answers 429 ThrottlingException: retried, then reported.
    let mock_throttling_proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = mock_throttling_proxy.local_addr().unwrap().port();
    let hits = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = mock_throttling_proxy.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = vec![0u8; 65536];
            let _ = s.read(&mut buf).await;
            let body = r#"{"errorName":"ThrottlingException","errorMessage":"slow down"}"#;
            let resp = format!(
                "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    let p = client(
        &format!("http://127.0.0.1:{port}"),
        None,
        "s",
        Duration::from_secs(2),
    );
    let e = p
        .wrap("k", &dek, b"c", &why("customer-request"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, CryptoError::Unavailable(ref m) if m.contains("ThrottlingException")),
        "{e}"
    );
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "one try and two retries"
    );
}

/// Golden: a data key wrapped through keyd (XKS wrapped-key format v1, keyd's ciphertext
/// metadata v1) under the committed golden keyring of vallum-crypto must keep unwrapping.
/// Regenerate (only with a new format version) with `VALLUM_REGENERATE_GOLDEN=1`.
#[tokio::test]
async fn an_xks_wrapped_key_v1_still_unwraps_through_keyd() {
    let crypto_golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crypto/tests/golden");
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/xks-wrapped-v1.json");
    let k = keyd_over(
        Policy::default(),
        Some((
            &crypto_golden.join("keyring-v1"),
            &crypto_golden.join("keyring-root.key"),
        )),
    )
    .await;
    let xks = client(&k.url, Some(&k.ca), "secret-one", Duration::from_secs(5));
    let dek = DataKey::from_bytes(&[0x42; 32]).unwrap();
    if std::env::var_os("VALLUM_REGENERATE_GOLDEN").is_some() || !ours.exists() {
        let w = xks
            .wrap("kek-golden", &dek, b"golden", &why("customer-request"))
            .await
            .unwrap();
        std::fs::write(&ours, serde_json::to_vec_pretty(&w).unwrap()).unwrap();
    }
    let w: vallum_crypto::keys::WrappedKey =
        serde_json::from_slice(&std::fs::read(&ours).unwrap()).unwrap();
    assert_eq!((w.provider.as_str(), w.key_version), ("xks", 0));
    assert_eq!(
        xks.unwrap(&w, b"golden", &why("customer-request"))
            .await
            .unwrap()
            .expose(),
        dek.expose()
    );
    assert!(
        xks.unwrap(&w, b"other", &why("customer-request"))
            .await
            .is_err()
    );
}

/// With customer-held keys, keyd itself checks that the tenant's guardians approved an
/// operator's key use: m-of-n signatures, by keys keyd was given, over that grant's statement.
#[tokio::test]
async fn keyd_releases_a_key_to_a_grant_only_with_the_guardians_signatures() {
    use vallum_ledger::note::Signer;
    let alice = Signer::generate("acme/alice").unwrap();
    let gina = Signer::generate("acme/gina").unwrap();
    let mallory = Signer::generate("acme/gina").unwrap();
    let policy = Policy {
        approvers: vec![
            vallum_ledger::note::Verifier::parse(&alice.vkey()).unwrap(),
            vallum_ledger::note::Verifier::parse(&gina.vkey()).unwrap(),
        ],
        approvals_required: 2,
        ..Policy::default()
    };
    let k = keyd(policy).await;
    k.ring.create_key("records-1", 1).await.unwrap();
    let xks = client(&k.url, Some(&k.ca), "secret-one", Duration::from_secs(5));
    let dek = DataKey::generate().unwrap();
    let wrapped = xks
        .wrap("records-1", &dek, b"ctx", &why("customer-request"))
        .await
        .unwrap();
    let ops = vec!["read".to_owned()];
    let statement_of = |request: &str| {
        vallum_crypto::approval::statement(&vallum_crypto::approval::ApprovalFacts {
            request,
            tenant: "acme",
            operator: "olga",
            access_key: "VAOLGA",
            bucket: "acme:records",
            prefix: "logs/",
            operations: &ops,
            duration_secs: 600,
            break_glass: false,
        })
    };
    let signed = |request: &str, signers: &[&Signer]| {
        let text = statement_of(request);
        let lines: String = signers.iter().map(|s| s.sign(&text).line()).collect();
        format!("{text}\n{lines}")
    };
    let grant = |approvals: Option<String>| Justification {
        actor: "operator:olga".into(),
        reason: "lockbox:lb-1".into(),
        approvals,
    };
    // Both guardians signed this grant: released.
    let opened = xks
        .unwrap(
            &wrapped,
            b"ctx",
            &grant(Some(signed("lb-1", &[&alice, &gina]))),
        )
        .await
        .unwrap();
    assert_eq!(opened.expose(), dek.expose());
    // One short, a forged second signature, another grant's approvals, or none: refused.
    for approvals in [
        Some(signed("lb-1", &[&alice])),
        Some(signed("lb-1", &[&alice, &mallory])),
        Some(signed("lb-1", &[&alice, &alice])),
        Some(signed("lb-2", &[&alice, &gina])),
        None,
    ] {
        let err = xks
            .unwrap(&wrapped, b"ctx", &grant(approvals.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, vallum_crypto::CryptoError::Refused(_)),
            "{approvals:?}: {err}"
        );
    }
    // Key uses outside a grant are not the guardians' to approve.
    xks.unwrap(&wrapped, b"ctx", &why("customer-request"))
        .await
        .unwrap();
}
