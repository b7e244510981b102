//! Offline verification of a whole log and of proof bundles, and the tamper cases: a flipped
//! byte in a bundle or a tile, a deleted entry, a forked log. Each is detected and the first
//! affected index is named.

use std::fs;
use std::path::Path;

use vallum_ledger::LedgerError;
use vallum_ledger::checkpoint::Checkpoint;
use vallum_ledger::client::DirFetcher;
use vallum_ledger::entry::{Entry, Event, KeyRef, SiteRef};
use vallum_ledger::note::{Signer, Verifier};
use vallum_ledger::store::TileStore;
use vallum_ledger::verify::{BundleFilter, ProofBundle, verify_log};

const ORIGIN: &str = "vallum.test/log";

fn entry(i: u64) -> Vec<u8> {
    let bucket = if i.is_multiple_of(3) {
        "records"
    } else {
        "other"
    };
    Entry::new(
        1_700_000_000_000 + i as i64,
        "key:AKIATEST",
        Event::ObjectStored {
            bucket: bucket.into(),
            key: KeyRef::Plain(format!("obj/{i}")),
            version_id: "null".into(),
            size: i,
            etag: format!("{i:032x}"),
            sha256: None,
            via: "put".into(),
            sites: vec![SiteRef {
                id: "local".into(),
                jurisdiction: "FR".into(),
                exposures: vec![],
            }],
            key_id: None,
        },
    )
    .encode()
}

fn build(dir: &Path, n: u64, signer: &Signer) -> Checkpoint {
    let mut store = TileStore::open(dir).unwrap();
    let entries: Vec<Vec<u8>> = (store.size()..n).map(entry).collect();
    store.append(&entries).unwrap();
    store.integrate().unwrap();
    let note = store.publish_checkpoint(ORIGIN, signer).unwrap();
    Checkpoint::parse(&note.text).unwrap()
}

fn tampered_index(r: Result<impl std::fmt::Debug, LedgerError>) -> u64 {
    match r {
        Err(LedgerError::Tampered { index, .. }) => index,
        Err(other) => panic!("expected a tampered entry, got {other}"),
        Ok(_) => panic!("expected a tampered entry, the log verified"),
    }
}

#[test]
fn a_clean_log_verifies_and_bundles_prove_inclusion() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::generate(ORIGIN).unwrap();
    let key = Verifier::parse(&signer.vkey()).unwrap();
    let old = build(dir.path(), 700, &signer);
    let cp = build(dir.path(), 1000, &signer);
    let fetcher = DirFetcher(dir.path().to_path_buf());
    let v = verify_log(&fetcher, &key, &[], 0, Some(&old), &|e| {
        e.event.bucket() == Some("records")
    })
    .unwrap();
    assert_eq!(v.trust.checkpoint, cp);
    assert_eq!(v.entries.len(), 334);
    assert!(v.entries.iter().all(|(i, _)| i.is_multiple_of(3)));
    // Another key, or a quorum of witnesses that did not cosign: refused.
    let other = Verifier::parse(&Signer::generate(ORIGIN).unwrap().vkey()).unwrap();
    assert!(verify_log(&fetcher, &other, &[], 0, None, &|_| true).is_err());
    assert!(verify_log(&fetcher, &key, &[], 1, None, &|_| true).is_err());

    // A bundle of the bucket's entries, with consistency from the trusted size.
    let note = v.trust.note.clone();
    let indexes: Vec<u64> = v.entries.iter().map(|e| e.0).collect();
    let bundle = ProofBundle::export(
        &fetcher,
        &note,
        &indexes,
        BundleFilter {
            bucket: Some("records".into()),
            ..BundleFilter::default()
        },
        Some(old.size),
    )
    .unwrap();
    let parsed = ProofBundle::parse(&bundle.to_json()).unwrap();
    let (trust, entries) = parsed.verify(&key, &[], 0, Some(&old)).unwrap();
    assert_eq!(trust.checkpoint.size, 1000);
    assert_eq!(entries.len(), 334);
    // Without the consistency proof a trusted older checkpoint cannot be linked.
    let mut no_cons = parsed.clone();
    no_cons.consistency = None;
    assert!(no_cons.verify(&key, &[], 0, Some(&old)).is_err());
    // An altered entry (still canonical): the root is not reproduced.
    let mut altered = parsed.clone();
    let original = String::from_utf8(base64_decode(&altered.entries[5].entry)).unwrap();
    let changed = original.replace("\"jurisdiction\":\"FR\"", "\"jurisdiction\":\"DE\"");
    assert_ne!(original, changed);
    altered.entries[5].entry = base64_encode(changed.as_bytes());
    assert!(matches!(
        altered.verify(&key, &[], 0, None),
        Err(LedgerError::BadProof(_))
    ));
    // A non-canonical entry is named.
    let mut broken = parsed.clone();
    broken.entries[7].entry = base64_encode(b"{\"v\":1 }");
    assert_eq!(
        tampered_index(broken.verify(&key, &[], 0, None)),
        indexes[7]
    );
    // A fork seen through a bundle: the trusted checkpoint disagrees.
    let mut fake_old = old.clone();
    fake_old.root[0] ^= 1;
    assert!(parsed.verify(&key, &[], 0, Some(&fake_old)).is_err());
    assert!(ProofBundle::parse(br#"{"format":"other"}"#).is_err());
}

fn base64_decode(s: &str) -> Vec<u8> {
    base64_simd::STANDARD.decode_to_vec(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(b)
}

#[test]
fn tampering_with_the_stored_log_is_detected_and_located() {
    let signer = Signer::generate(ORIGIN).unwrap();
    let key = Verifier::parse(&signer.vkey()).unwrap();
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), 1000, &signer);
        dir
    };
    let all = |d: &Path| verify_log(&DirFetcher(d.to_path_buf()), &key, &[], 0, None, &|_| true);

    // A flipped byte in an entry bundle (entry 300 is the 45th of bundle 1).
    let dir = fresh();
    let path = dir.path().join("tile/entries/001");
    let mut b = fs::read(&path).unwrap();
    let offset: usize = (256..300).map(|i| 2 + entry(i).len()).sum::<usize>() + 2 + 40;
    b[offset] ^= 1;
    fs::write(&path, &b).unwrap();
    assert_eq!(tampered_index(all(dir.path())), 300);

    // A flipped byte in a level-0 tile (hash of entry 10).
    let dir = fresh();
    let path = dir.path().join("tile/0/000");
    let mut t = fs::read(&path).unwrap();
    t[32 * 10 + 5] ^= 1;
    fs::write(&path, &t).unwrap();
    assert_eq!(tampered_index(all(dir.path())), 10);

    // A deleted entry (entry 2 removed from bundle 0).
    let dir = fresh();
    let path = dir.path().join("tile/entries/000");
    let b = fs::read(&path).unwrap();
    let start: usize = (0..2).map(|i| 2 + entry(i).len()).sum();
    let end = start + 2 + entry(2).len();
    fs::write(&path, [&b[..start], &b[end..]].concat()).unwrap();
    assert_eq!(tampered_index(all(dir.path())), 2);

    // A level-1 hash replaced consistently with nothing below: the subtree is named.
    let dir = fresh();
    let path = dir.path().join("tile/1/000.p/3");
    let mut t = fs::read(&path).unwrap();
    t[32 + 1] ^= 1;
    fs::write(&path, &t).unwrap();
    assert_eq!(tampered_index(all(dir.path())), 256);

    // A fork: the operator rewrites entry 500 and re-signs a larger tree. Everything is
    // self-consistent, so only a previously trusted checkpoint reveals it.
    let dir = fresh();
    let trusted = Checkpoint::parse(
        &vallum_ledger::note::Note::parse(&fs::read(dir.path().join("checkpoint")).unwrap())
            .unwrap()
            .text,
    )
    .unwrap();
    let forked = tempfile::tempdir().unwrap();
    let mut store = TileStore::open(forked.path()).unwrap();
    let mut entries: Vec<Vec<u8>> = (0..1200).map(entry).collect();
    entries[500] = entry(501);
    store.append(&entries).unwrap();
    store.integrate().unwrap();
    store.publish_checkpoint(ORIGIN, &signer).unwrap();
    let fetcher = DirFetcher(forked.path().to_path_buf());
    assert!(verify_log(&fetcher, &key, &[], 0, None, &|_| true).is_ok());
    let err = verify_log(&fetcher, &key, &[], 0, Some(&trusted), &|_| true).unwrap_err();
    assert!(err.to_string().contains("fork"), "{err}");
}
