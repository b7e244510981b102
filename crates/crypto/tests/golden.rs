//! Golden files: an object encrypted in format v1 and a keyring file with a wrapped key, both
//! committed, must keep opening with every later build. Regenerate (only with a new format
//! version) with `VALLUM_REGENERATE_GOLDEN=1`.

use std::path::{Path, PathBuf};

use vallum_crypto::format::{Decryptor, Encryptor, HEADER_BYTES, ObjectContext};
use vallum_crypto::keyring::{LocalKeyring, RootKey};
use vallum_crypto::keys::{DataKey, Justification, KeyProvider, WrappedKey};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn regenerate() -> bool {
    std::env::var_os("VALLUM_REGENERATE_GOLDEN").is_some()
}

fn plaintext() -> Vec<u8> {
    (0..10_000u32).map(|i| (i % 251) as u8).collect()
}

fn ctx() -> ObjectContext {
    ObjectContext {
        bucket: "records".into(),
        key: "2026/q3/report.pdf".into(),
        object_id: "5f0c6a2e3b1d4c8e9a7f6b5d4c3b2a19".into(),
    }
}

fn dek() -> DataKey {
    DataKey::from_bytes(&[0x42; 32]).unwrap()
}

#[test]
fn an_object_encrypted_by_format_v1_still_decrypts() {
    let mut e = Encryptor::with_salt(&dek(), &ctx(), 4096, [0x17; 32]).unwrap();
    let mut blob = e.header().to_vec();
    e.update(&plaintext(), &mut blob).unwrap();
    e.finish(&mut blob).unwrap();
    if regenerate() {
        std::fs::write(golden("object-v1.bin"), &blob).unwrap();
    }
    let stored = std::fs::read(golden("object-v1.bin")).unwrap();
    assert!(stored == blob, "format v1 output changed");
    let d = Decryptor::new(&dek(), &ctx(), &stored[..HEADER_BYTES], 10_000).unwrap();
    let span = d.span(0, 10_000).unwrap();
    let got = d
        .open_span(&span, &stored[span.offset as usize..], 0, 10_000)
        .unwrap();
    assert_eq!(got, plaintext());
}

#[tokio::test]
async fn a_keyring_file_v1_still_opens_and_unwraps() {
    let why = Justification {
        actor: "key:GOLDEN".into(),
        reason: "customer-request".into(),
        approvals: None,
    };
    let root = RootKey::File(golden("keyring-root.key"));
    if regenerate() {
        let _ = std::fs::remove_file(golden("keyring-v1"));
        std::fs::write(golden("keyring-root.key"), [0x24u8; 32]).unwrap();
        let ring = LocalKeyring::open(&golden("keyring-v1"), &root).unwrap();
        ring.create_key("kek-golden", 1_795_500_000_000)
            .await
            .unwrap();
        let w = ring
            .wrap("kek-golden", &dek(), b"golden", &why)
            .await
            .unwrap();
        std::fs::write(
            golden("wrapped-v1.json"),
            serde_json::to_vec_pretty(&w).unwrap(),
        )
        .unwrap();
    }
    // Opened from a copy, so the test never rewrites the committed file.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(golden("keyring-v1"), tmp.path().join("keyring")).unwrap();
    let ring = LocalKeyring::open(&tmp.path().join("keyring"), &root).unwrap();
    let w: WrappedKey =
        serde_json::from_slice(&std::fs::read(golden("wrapped-v1.json")).unwrap()).unwrap();
    assert_eq!(
        ring.unwrap(&w, b"golden", &why).await.unwrap().expose(),
        dek().expose()
    );
}

#[test]
fn an_sse_c_wrapped_key_v1_still_opens_with_its_customer_key() {
    use vallum_crypto::customer::CustomerKey;
    let customer = CustomerKey::from_bytes(&[0x5a; 32]).unwrap();
    if regenerate() || !golden("sse-c-wrapped-v1.json").exists() {
        let w = customer.wrap(&dek(), b"golden").unwrap();
        std::fs::write(
            golden("sse-c-wrapped-v1.json"),
            serde_json::to_vec_pretty(&w).unwrap(),
        )
        .unwrap();
    }
    let w: WrappedKey =
        serde_json::from_slice(&std::fs::read(golden("sse-c-wrapped-v1.json")).unwrap()).unwrap();
    assert_eq!((w.provider.as_str(), w.key_version), ("sse-c", 0));
    assert_eq!(
        customer.unwrap(&w, b"golden").unwrap().expose(),
        dek().expose()
    );
    assert!(
        !CustomerKey::from_bytes(&[0x5b; 32])
            .unwrap()
            .matches(&w)
            .unwrap()
    );
}
