//! Encryption at rest, end to end: objects written through S3 (single PUT, multipart, copy)
//! read back exactly (ranges included), while nothing the server wrote to disk — sites,
//! metadata, log, keyring — contains the plaintext or any data key; a byte flipped on the site
//! makes the read fail instead of returning corrupted data.

use crate::common;

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use common::Server;
use vallum_crypto::keyring::{LocalKeyring, RootKey};
use vallum_crypto::keys::{Justification, KeyProvider, WrappedKey};

/// Plaintext that is easy to find if it ever reaches the disk.
fn marked(len: usize, tag: &str) -> Vec<u8> {
    let unit = format!("VALLUM-PLAINTEXT-{tag}-");
    unit.as_bytes().iter().copied().cycle().take(len).collect()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every wrapped data key the metadata database holds (found as JSON in its pages).
fn wrapped_keys(db: &[u8]) -> Vec<WrappedKey> {
    let text = String::from_utf8_lossy(db);
    let mut out = Vec::new();
    for (at, _) in text.match_indices("{\"provider\":") {
        // The record ends at one of the next closing braces (a double-key record nests the
        // two halves, escaped, inside its own).
        let found = text[at..]
            .match_indices('}')
            .take(16)
            .find_map(|(end, _)| serde_json::from_str::<WrappedKey>(&text[at..at + end + 1]).ok());
        if let Some(w) = found
            && !out.contains(&w)
        {
            out.push(w);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_on_disk_holds_plaintext_or_a_data_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start_in(&data, "127.0.0.1:0", &[], &[]);
    let s3 = server.client();
    s3.create_bucket().bucket("secret").send().await.unwrap();
    let small = marked(100_000, "SMALL");
    s3.put_object()
        .bucket("secret")
        .key("small")
        .body(ByteStream::from(small.clone()))
        .send()
        .await
        .unwrap();
    // Multipart: two parts encrypted under the upload's key.
    let part1 = marked(5 * 1024 * 1024, "PARTONE");
    let part2 = marked(300_000, "PARTTWO");
    let up = s3
        .create_multipart_upload()
        .bucket("secret")
        .key("big")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let mut etags = Vec::new();
    for (n, body) in [(1, &part1), (2, &part2)] {
        let r = s3
            .upload_part()
            .bucket("secret")
            .key("big")
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
        etags.push((n, r.e_tag().unwrap().to_owned()));
    }
    let parts: Vec<(i32, &str)> = etags.iter().map(|(n, e)| (*n, e.as_str())).collect();
    s3.complete_multipart_upload()
        .bucket("secret")
        .key("big")
        .upload_id(id)
        .multipart_upload(common::completed(&parts))
        .send()
        .await
        .unwrap();
    s3.copy_object()
        .bucket("secret")
        .key("copy")
        .copy_source("secret/small")
        .send()
        .await
        .unwrap();

    // Everything reads back exactly, whole and in ranges that cross segments and parts.
    assert!(common::get_bytes(&s3, "secret", "small").await.as_ref() == small.as_slice());
    assert!(common::get_bytes(&s3, "secret", "copy").await.as_ref() == small.as_slice());
    let mut big = part1.clone();
    big.extend_from_slice(&part2);
    assert!(common::get_bytes(&s3, "secret", "big").await.as_ref() == big.as_slice());
    for (a, b) in [
        (0u64, 0u64),
        (65_535, 65_537),
        (5 * 1024 * 1024 - 10, 5 * 1024 * 1024 + 70_000),
        (100, 99_999),
    ] {
        let (src, whole) = if b < 100_000 {
            ("small", &small)
        } else {
            ("big", &big)
        };
        let got = s3
            .get_object()
            .bucket("secret")
            .key(src)
            .range(format!("bytes={a}-{b}"))
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert!(
            got.as_ref() == &whole[a as usize..=b as usize],
            "{src} {a}-{b}"
        );
    }
    // ETags stay what S3 clients expect: MD5 of the plaintext.
    let head = s3
        .head_object()
        .bucket("secret")
        .key("small")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.e_tag().unwrap().trim_matches('"'),
        common::md5_hex(&small)
    );
    // Reported the way S3 reports keys held by a key service.
    assert_eq!(
        head.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms)
    );
    assert_eq!(head.ssekms_key_id(), Some("vallum-default"));
    server.kill9();

    // Scan every byte the server wrote.
    let all: Vec<(PathBuf, Vec<u8>)> = files(&data)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    for tag in ["SMALL", "PARTONE", "PARTTWO"] {
        let needle = format!("VALLUM-PLAINTEXT-{tag}-");
        for (p, b) in &all {
            assert!(
                !contains(b, needle.as_bytes()),
                "plaintext {tag} found in {}",
                p.display()
            );
        }
    }
    // Recover every data key with the keyring (as only the key holder can) and look for it.
    let db: Vec<u8> = all
        .iter()
        .filter(|(p, _)| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("meta.db")
        })
        .flat_map(|(_, b)| b.clone())
        .collect();
    let wrapped = wrapped_keys(&db);
    assert!(wrapped.len() >= 3, "found {} wrapped keys", wrapped.len());
    let ring = LocalKeyring::open(
        &data.join("keys/keyring"),
        &RootKey::File(data.join("keys/root.key")),
    )
    .unwrap();
    let why = Justification {
        actor: "test".into(),
        reason: "scan".into(),
        approvals: None,
    };
    let mut deks = Vec::new();
    for w in &wrapped {
        for key in ["small", "big", "copy"] {
            if let Ok(dek) = ring
                .unwrap(w, format!("secret\0{key}").as_bytes(), &why)
                .await
            {
                deks.push(dek);
            }
        }
    }
    assert_eq!(
        deks.len(),
        wrapped.len(),
        "every wrapped key opens for its object"
    );
    for dek in &deks {
        for (p, b) in &all {
            assert!(
                !contains(b, dek.expose()),
                "a data key found in {}",
                p.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_blob_fails_the_read_instead_of_returning_bad_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start_in(&data, "127.0.0.1:0", &[], &[]);
    let s3 = server.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    // Longer than a pack takes, so the blob is a file of its own and the object's
    // authentication (not the pack's checksum) is what catches the change.
    let body = marked(200_000, "T");
    s3.put_object()
        .bucket("bkt")
        .key("k")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let blob = files(&data.join("sites/local/blobs"))
        .into_iter()
        .next()
        .expect("one blob on the site");
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();
    let err = s3
        .get_object()
        .bucket("bkt")
        .key("k")
        .send()
        .await
        .unwrap_err();
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(500), "{err:?}");
    // The object's metadata is intact; only its bytes are refused.
    assert!(s3.head_object().bucket("bkt").key("k").send().await.is_ok());
}

/// With `[keys] provider = "pkcs11"` the data keys are wrapped inside a real SoftHSM2 token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_can_be_encrypted_under_a_pkcs11_token() {
    hsm_round_trip("pkcs11").await;
}

/// With `provider = "double"` the token and the keyring each hold half of every data key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_can_need_two_custodians() {
    hsm_round_trip("double").await;
}

async fn hsm_round_trip(provider: &str) {
    let module = common::softhsm_module();
    let label = format!("vallum-{provider}-{}", std::process::id());
    common::softhsm_token(&label, "9876", "5432");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("vallum.toml");
    std::fs::write(
        &cfg,
        format!(
            "[keys]\nprovider = \"{provider}\"\npkcs11_module = \"{module}\"\npkcs11_token = \"{label}\"\npkcs11_pin_env = \"TEST_HSM_PIN\"\n"
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let server = Server::start_in(
        &data,
        "127.0.0.1:0",
        &["--config", cfg.to_str().unwrap()],
        &[("TEST_HSM_PIN", "9876")],
    );
    let s3 = server.client();
    s3.create_bucket().bucket("hsm").send().await.unwrap();
    let body = marked(200_000, "HSM");
    s3.put_object()
        .bucket("hsm")
        .key("k")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    assert!(common::get_bytes(&s3, "hsm", "k").await.as_ref() == body.as_slice());
    let db: Vec<u8> = files(&data)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("meta.db")
        })
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    let wrapped = wrapped_keys(&db);
    assert!(
        !wrapped.is_empty() && wrapped.iter().all(|w| w.provider == provider),
        "{wrapped:?}"
    );
    // A keyring exists only when it holds one of the two halves.
    assert_eq!(data.join("keys/keyring").exists(), provider == "double");
}
