//! Golden files for the log's versioned formats: one canonical entry of every type
//! (`golden/entries.jsonl`), and a whole small log — tiles, entry bundles, a signed checkpoint
//! — (`golden/log/`). A change to any encoding fails here; a deliberate one bumps the format
//! version and regenerates with `VALLUM_REGENERATE_GOLDEN=1`.

use std::path::{Path, PathBuf};

use vallum_ledger::checkpoint::Checkpoint;
use vallum_ledger::client::DirFetcher;
use vallum_ledger::entry::{BoundaryRecord, Entry, Event, KeyRef, SiteRef};
use vallum_ledger::note::{Signer, Verifier};
use vallum_ledger::store::TileStore;
use vallum_ledger::verify::verify_log;

/// A key used only for these golden files.
const SKEY: &str =
    "PRIVATE+KEY+golden.vallum.test/log+54070e54+AQPrzwzMQG0TsNMmTfjRhjtQpa1mN+HzS4+9i/aY6hVF";
const VKEY: &str = "golden.vallum.test/log+54070e54+ARJs0NpomAeCiAMQwrz6WkcXHj2L1PQCU1E5hLAaGI2s";

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn regenerate() -> bool {
    std::env::var_os("VALLUM_REGENERATE_GOLDEN").is_some()
}

fn site() -> SiteRef {
    SiteRef {
        id: "paris-1".into(),
        jurisdiction: "FR".into(),
        exposures: vec!["us-cloud-act".into()],
    }
}

/// One entry of every type, with every optional field present somewhere.
fn samples() -> Vec<Entry> {
    let key = KeyRef::Plain("2026/q3/report.pdf".into());
    let events = vec![
        Event::LogStarted {
            origin: "golden.vallum.test/log".into(),
            vkey: VKEY.into(),
            sites: vec![site()],
        },
        Event::BucketCreated {
            bucket: "records".into(),
            object_lock: true,
        },
        Event::BucketDeleted {
            bucket: "scratch".into(),
        },
        Event::BucketChanged {
            bucket: "records".into(),
            setting: "versioning".into(),
            value: "Enabled".into(),
        },
        Event::BoundaryPolicyChanged {
            bucket: "records".into(),
            policy: BoundaryRecord {
                allowed: vec!["EU".into(), "NO".into()],
                forbidden_exposures: vec!["us-cloud-act".into()],
            },
        },
        Event::EncryptionPolicyChanged {
            bucket: "records".into(),
            key_id: Some("kek-1".into()),
        },
        Event::ObjectStored {
            bucket: "records".into(),
            key: key.clone(),
            version_id: "0000000000000001a1b2c3d4e5f60718".into(),
            size: 1_048_576,
            etag: "9e107d9d372bb6826bd81d3542a419d6".into(),
            sha256: Some("d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592".into()),
            via: "put".into(),
            sites: vec![site()],
            key_id: Some("kek-1".into()),
        },
        Event::ObjectRead {
            bucket: "records".into(),
            key: KeyRef::Hmac(
                "5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592".into(),
            ),
            version_id: "null".into(),
            first: 100,
            length: 200,
            site: site(),
        },
        Event::ObjectDeleted {
            bucket: "records".into(),
            key: key.clone(),
            version_id: Some("0000000000000001a1b2c3d4e5f60718".into()),
            delete_marker: None,
            bypass_governance: true,
        },
        Event::ObjectDeleted {
            bucket: "records".into(),
            key: key.clone(),
            version_id: None,
            delete_marker: Some("0000000000000002a1b2c3d4e5f60718".into()),
            bypass_governance: false,
        },
        Event::ObjectLockChanged {
            bucket: "records".into(),
            key,
            version_id: "0000000000000001a1b2c3d4e5f60718".into(),
            setting: "retention".into(),
            value: "COMPLIANCE until 1798761600000".into(),
            bypass_governance: false,
        },
        Event::KeyUsed {
            operation: "unwrap".into(),
            key_id: "kek-1".into(),
            provider: "pkcs11".into(),
            justification: "lockbox grant g-17".into(),
            bucket: Some("records".into()),
            location: Some(site()),
        },
        Event::KeyLifecycle {
            key_id: "kek-1".into(),
            action: "rotate".into(),
        },
        Event::Admin {
            action: "root_credentials_created".into(),
            target: "VAEXAMPLE".into(),
        },
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let mut e = Entry::new(1_795_500_000_000 + i as i64, "key:VAEXAMPLE", event);
            if i % 2 == 0 {
                e.request_id = Some(format!("{i:016X}"));
            }
            e
        })
        .collect()
}

#[test]
fn entries_keep_their_encoding() {
    let encoded: String = samples()
        .iter()
        .map(|e| String::from_utf8(e.encode()).unwrap() + "\n")
        .collect();
    if regenerate() {
        std::fs::write(golden("entries.jsonl"), &encoded).unwrap();
    }
    let stored = std::fs::read_to_string(golden("entries.jsonl")).unwrap();
    assert_eq!(encoded, stored, "the log entry encoding changed");
    for (line, want) in stored.lines().zip(samples()) {
        assert_eq!(Entry::parse(line.as_bytes()).unwrap(), want);
    }
}

fn build_log(dir: &Path) {
    let signer = Signer::from_skey(SKEY).unwrap();
    let mut store = TileStore::open(dir).unwrap();
    let samples = samples();
    let entries: Vec<Vec<u8>> = (0..600)
        .map(|i| samples[i % samples.len()].encode())
        .collect();
    store.append(&entries[..300]).unwrap();
    store.integrate().unwrap();
    store.append(&entries[300..]).unwrap();
    store.integrate().unwrap();
    store
        .publish_checkpoint("golden.vallum.test/log", &signer)
        .unwrap();
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                // The write-ahead file is not part of the published log.
                if rel != "wal" {
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn tiles_bundles_and_checkpoint_keep_their_layout_and_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    build_log(tmp.path());
    let dir = golden("log");
    if regenerate() {
        let _ = std::fs::remove_dir_all(&dir);
        build_log(&dir);
        let _ = std::fs::remove_file(dir.join("wal"));
    }
    let built = files(tmp.path());
    let stored = files(&dir);
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&built), names(&stored));
    for ((name, a), (_, b)) in built.iter().zip(&stored) {
        assert!(a == b, "{name} changed");
    }
    // The committed log still verifies, and its checkpoint is what a C2SP checkpoint says.
    let key = Verifier::parse(VKEY).unwrap();
    let v = verify_log(&DirFetcher(dir.clone()), &key, &[], 0, None, &|_| true).unwrap();
    assert_eq!(v.trust.checkpoint.size, 600);
    assert_eq!(v.entries.len(), 600);
    let note = std::fs::read_to_string(dir.join("checkpoint")).unwrap();
    let text = format!("{}\n", note.split("\n\n").next().unwrap());
    let cp = Checkpoint::parse(&text).unwrap();
    assert_eq!(cp.size, 600);
    assert!(note.starts_with("golden.vallum.test/log\n600\n"), "{note}");
    assert!(
        note.contains("\n\n\u{2014} golden.vallum.test/log "),
        "{note}"
    );
}

#[test]
fn proof_bundles_keep_their_format() {
    use vallum_ledger::note::Note;
    use vallum_ledger::verify::{BundleFilter, ProofBundle};
    let dir = golden("log");
    let note = Note::parse(&std::fs::read(dir.join("checkpoint")).unwrap()).unwrap();
    let bundle = ProofBundle::export(
        &DirFetcher(dir),
        &note,
        &[0, 5, 299, 599],
        BundleFilter {
            bucket: Some("records".into()),
            from_ms: Some(1_795_500_000_000),
            to_ms: None,
        },
        Some(300),
    )
    .unwrap()
    .to_json();
    if regenerate() {
        std::fs::write(golden("bundle.json"), &bundle).unwrap();
    }
    let stored = std::fs::read(golden("bundle.json")).unwrap();
    assert!(bundle == stored, "the proof bundle format changed");
    let key = Verifier::parse(VKEY).unwrap();
    let trusted_at_300 = Checkpoint {
        origin: "golden.vallum.test/log".into(),
        size: 300,
        root: {
            let mut t = vallum_ledger::merkle::MemoryTree::new();
            let s = samples();
            (0..300).for_each(|i| t.push(&s[i % s.len()].encode()));
            vallum_ledger::merkle::root(&t, 300).unwrap()
        },
        extensions: vec![],
    };
    let (trust, entries) = ProofBundle::parse(&stored)
        .unwrap()
        .verify(&key, &[], 0, Some(&trusted_at_300))
        .unwrap();
    assert_eq!(trust.checkpoint.size, 600);
    assert_eq!(
        entries.iter().map(|e| e.0).collect::<Vec<_>>(),
        [0, 5, 299, 599]
    );
}

/// A bundle of sealed entries (format v2): fixed salts and the golden key make it byte-stable;
/// it verifies, and a changed opening does not.
#[test]
fn sealed_entry_bundles_keep_their_format() {
    use vallum_ledger::seal::Opening;
    use vallum_ledger::store::TileStore;
    use vallum_ledger::verify::{BundleFilter, ProofBundle};
    let tmp = tempfile::tempdir().unwrap();
    let mut store = TileStore::open(tmp.path()).unwrap();
    let openings: Vec<Opening> = samples()
        .iter()
        .enumerate()
        .map(|(i, e)| Opening {
            salt: [u8::try_from(i).unwrap(); 32],
            owner: if i % 2 == 0 {
                "acme".into()
            } else {
                String::new()
            },
            entry: e.encode(),
        })
        .collect();
    let stored: Vec<Vec<u8>> = openings.iter().map(Opening::encode).collect();
    store.append(&stored).unwrap();
    store.integrate().unwrap();
    let signer = Signer::from_skey(SKEY).unwrap();
    let note = store
        .publish_checkpoint("golden.vallum.test/log", &signer)
        .unwrap();
    // The public tiles hold commitments, never the entries.
    let public = std::fs::read_to_string(
        tmp.path()
            .join("tile/entries/000.p")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap_or_default();
    assert!(!public.contains("records") && public.contains("{\"v\":2,\"c\":"));
    let chosen: Vec<(u64, Opening)> = openings
        .iter()
        .enumerate()
        .filter(|(_, o)| o.owner == "acme")
        .map(|(i, o)| (i as u64, o.clone()))
        .collect();
    let bundle = ProofBundle::export_openings(
        &DirFetcher(tmp.path().to_owned()),
        &note,
        &chosen,
        BundleFilter::default(),
        None,
    )
    .unwrap()
    .to_json();
    if regenerate() {
        std::fs::write(golden("bundle-v2.json"), &bundle).unwrap();
    }
    let stored_golden = std::fs::read(golden("bundle-v2.json")).unwrap();
    assert!(
        bundle == stored_golden,
        "the sealed proof bundle format changed"
    );
    let key = Verifier::parse(VKEY).unwrap();
    let parsed = ProofBundle::parse(&stored_golden).unwrap();
    let (_, entries) = parsed.verify(&key, &[], 0, None).unwrap();
    assert_eq!(entries.len(), chosen.len());
    // An opening that does not match its leaf fails verification.
    let mut forged = parsed.clone();
    forged.entries[0].owner = Some("globex".into());
    assert!(forged.verify(&key, &[], 0, None).is_err());
}
