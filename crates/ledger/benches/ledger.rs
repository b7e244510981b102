//! Transparency-log hot paths: durable batched appends (sequencing into the write-ahead file,
//! then hashing, tile and bundle writes, fsync per batch) and inclusion proofs computed from tiles on disk.
//!
//! Run: `cargo bench -p vallum-ledger`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vallum_ledger::merkle::{inclusion_proof, leaf_hash, verify_inclusion};
use vallum_ledger::store::TileStore;

/// A log entry of a realistic size (an object-stored record is ~200 bytes).
fn entry(i: u64) -> Vec<u8> {
    format!(
        "{{\"v\":1,\"type\":\"object.stored\",\"bucket\":\"records\",\"key\":\"tenant/{:04}/incident-{i:010}.json\",\"version\":\"{i:032x}\",\"size\":4096,\"sha256\":\"{:064x}\"}}",
        i % 997,
        u128::from(i) * 7919
    )
    .into_bytes()
}

fn appends(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_durable");
    g.sample_size(20);
    for batch in [100u64, 1000, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TileStore::open(dir.path()).unwrap();
        let mut next = 0u64;
        g.throughput(Throughput::Elements(batch));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                let entries: Vec<Vec<u8>> = (next..next + batch).map(entry).collect();
                next += batch;
                store.append(&entries).unwrap();
                store.integrate().unwrap()
            })
        });
    }
    g.finish();
    // Sequencing alone: what a request waits for (one flush of the write-ahead file per
    // group-committed batch); integration runs after the reply.
    let mut g = c.benchmark_group("sequence_durable");
    g.sample_size(20);
    for batch in [1u64, 16, 256] {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TileStore::open(dir.path()).unwrap();
        let mut next = 0u64;
        g.throughput(Throughput::Elements(batch));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                let entries: Vec<Vec<u8>> = (next..next + batch).map(entry).collect();
                next += batch;
                let first = store.append(&entries).unwrap();
                if store.sequenced() - store.size() >= 4096 {
                    store.integrate().unwrap();
                }
                first
            })
        });
    }
    g.finish();
}

fn proofs(c: &mut Criterion) {
    // 2^24 leaves: four tile levels, as many as a 10^8-leaf log has, so a proof reads the same
    // number of tiles (a few per level). Small entries keep the build quick.
    const SIZE: u64 = 1 << 24;
    let small = |i: u64| i.to_be_bytes().to_vec();
    let dir = tempfile::tempdir().unwrap();
    let mut store = TileStore::open(dir.path()).unwrap();
    let mut next = 0u64;
    while next < SIZE {
        let n = (SIZE - next).min(1 << 18);
        let entries: Vec<Vec<u8>> = (next..next + n).map(small).collect();
        store.integrate_entries(&entries).unwrap();
        next += n;
    }
    let root = store.root().unwrap();
    drop(store);
    let mut i = 0u64;
    c.bench_function(
        "inclusion_proof_from_disk_tiles/16Mi_leaves_cold_store",
        |b| {
            b.iter(|| {
                // A fresh store each time: no tile cached in the process.
                let store = TileStore::open(dir.path()).unwrap();
                i = (i + 1_000_003) % SIZE;
                let proof = inclusion_proof(&store, i, SIZE).unwrap();
                verify_inclusion(&leaf_hash(&small(i)), i, SIZE, &proof, &root).unwrap();
            })
        },
    );
    let store = TileStore::open(dir.path()).unwrap();
    c.bench_function("inclusion_proof_from_disk_tiles/16Mi_leaves", |b| {
        b.iter(|| {
            i = (i + 1_000_003) % SIZE;
            let proof = inclusion_proof(&store, i, SIZE).unwrap();
            verify_inclusion(&leaf_hash(&small(i)), i, SIZE, &proof, &root).unwrap();
        })
    });
}

/// Verifying a proof bundle of 10^6 realistic entries (one bucket's among 1.5 * 10^6): parse,
/// check every entry's canonical form, and recompute the root from the multi-proof.
fn bundle_verification(c: &mut Criterion) {
    use vallum_ledger::note::{Signer, Verifier};
    use vallum_ledger::verify::{BundleFilter, ProofBundle};
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::generate("bench.vallum.test/log").unwrap();
    let key = Verifier::parse(&signer.vkey()).unwrap();
    let mut store = TileStore::open(dir.path()).unwrap();
    let total = 1_500_000u64;
    let mut next = 0u64;
    while next < total {
        let n = (total - next).min(1 << 17);
        let entries: Vec<Vec<u8>> = (next..next + n).map(real_entry).collect();
        store.integrate_entries(&entries).unwrap();
        next += n;
    }
    let note = store
        .publish_checkpoint("bench.vallum.test/log", &signer)
        .unwrap();
    let indexes: Vec<u64> = (0..total).filter(|i| i % 3 != 2).collect();
    assert_eq!(indexes.len(), 1_000_000);
    let fetcher = vallum_ledger::client::DirFetcher(dir.path().to_path_buf());
    let json = ProofBundle::export(&fetcher, &note, &indexes, BundleFilter::default(), None)
        .unwrap()
        .to_json();
    let mut g = c.benchmark_group("verify_bundle");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1_000_000));
    g.bench_function("1M_entries", |b| {
        b.iter(|| {
            let bundle = ProofBundle::parse(&json).unwrap();
            let (_, entries) = bundle.verify(&key, &[], 0, None).unwrap();
            assert_eq!(entries.len(), 1_000_000);
        })
    });
    g.finish();
}

/// A canonical object-stored entry (~300 bytes, like the server writes).
fn real_entry(i: u64) -> Vec<u8> {
    use vallum_ledger::entry::{Entry, Event, KeyRef, SiteRef};
    Entry::new(
        1_795_500_000_000 + i as i64,
        "key:VAVMTGJQMOSJLTBQZ7QS",
        Event::ObjectStored {
            bucket: "records".into(),
            key: KeyRef::Plain(format!("tenant/{:04}/incident-{i:010}.json", i % 997)),
            version_id: format!("{i:016x}a1b2c3d4e5f60718"),
            size: 4096,
            etag: format!("{:032x}", u128::from(i) * 7919),
            sha256: None,
            via: "put".into(),
            sites: vec![SiteRef {
                id: "paris-1".into(),
                jurisdiction: "FR".into(),
                exposures: vec![],
            }],
            key_id: None,
        },
    )
    .encode()
}

criterion_group!(benches, appends, proofs, bundle_verification);
criterion_main!(benches);
