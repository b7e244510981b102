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
    const SIZE: u64 = 1 << 22; // 4,194,304 leaves
    let dir = tempfile::tempdir().unwrap();
    let mut store = TileStore::open(dir.path()).unwrap();
    let mut next = 0u64;
    while next < SIZE {
        let n = (SIZE - next).min(65_536);
        let entries: Vec<Vec<u8>> = (next..next + n).map(entry).collect();
        store.append(&entries).unwrap();
        store.integrate().unwrap();
        next += n;
    }
    // Reopen so tiles come from disk, not from the writer's cache.
    drop(store);
    let store = TileStore::open(dir.path()).unwrap();
    let root = store.root().unwrap();
    let mut i = 0u64;
    c.bench_function("inclusion_proof_from_disk_tiles/4Mi_leaves", |b| {
        b.iter(|| {
            i = (i + 1_000_003) % SIZE;
            let proof = inclusion_proof(&store, i, SIZE).unwrap();
            verify_inclusion(&leaf_hash(&entry(i)), i, SIZE, &proof, &root).unwrap();
        })
    });
}

criterion_group!(benches, appends, proofs);
criterion_main!(benches);
