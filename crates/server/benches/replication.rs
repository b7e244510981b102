//! What replication costs: a 64 MiB PUT (encrypted) to one local site against the same PUT to
//! two local sites at once (policy `min_replicas = 2`), interleaved so disk drift hits both;
//! and the repair's throughput, completing a second copy of every blob after a policy raised
//! the replica count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vallum_blob::LocalBlobStore;
use vallum_core::blob::BlobStore;
use vallum_core::clock::SystemClock;
use vallum_core::crypt::KeyService;
use vallum_core::residency::{BoundaryPolicy, ExposureRules, Residency, SiteProfile};
use vallum_core::service::ObjectService;
use vallum_crypto::keyring::{LocalKeyring, RootKey};
use vallum_crypto::keys::KeyProvider;
use vallum_meta::SqliteMetaStore;

mod common;

use common::{EMPTY_TRASH, put, runtime};

const MIB: usize = 1 << 20;

struct Env {
    _dir: tempfile::TempDir,
    service: ObjectService,
}

/// Two local sites (FR, DE) under one service, encrypted with the keyring; bucket `bench`
/// under a policy of `replicas` copies.
fn env(rt: &tokio::runtime::Runtime, replicas: u32) -> Env {
    let ctx = &vallum_core::context::RequestContext::system("test");
    let dir = tempfile::tempdir().unwrap();
    let meta = rt
        .block_on(SqliteMetaStore::open(&dir.path().join("meta.db")))
        .unwrap();
    let a: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::open(dir.path().join("a")).unwrap());
    let b: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::open(dir.path().join("b")).unwrap());
    let ring = Arc::new(
        LocalKeyring::open(
            &dir.path().join("keyring"),
            &RootKey::File(dir.path().join("root.key")),
        )
        .unwrap(),
    );
    rt.block_on(ring.create_key("k", 1)).unwrap();
    let residency = Residency::new(
        ExposureRules::builtin(),
        vec![
            SiteProfile::new("a", "FR", "Alpha SAS"),
            SiteProfile::new("b", "DE", "Beta GmbH"),
        ],
        None,
    )
    .unwrap();
    let service = ObjectService::new(
        Arc::new(meta),
        Arc::clone(&a),
        Arc::new(SystemClock),
        "us-east-1",
        Arc::new(vallum_core::journal::MemoryJournal::default()),
        Arc::new(KeyService::new(ring, "k".into(), 64 * 1024)),
    )
    .with_sites(residency, vec![("a".into(), a), ("b".into(), b)], "a")
    .unwrap();
    rt.block_on(service.create_bucket(ctx, "bench")).unwrap();
    set_replicas(rt, &service, replicas);
    Env { _dir: dir, service }
}

fn set_replicas(rt: &tokio::runtime::Runtime, service: &ObjectService, replicas: u32) {
    let ctx = &vallum_core::context::RequestContext::system("test");
    let mut policy = BoundaryPolicy::allowing(&format!("eu-{replicas}"), &["EU"]);
    policy.min_replicas = replicas;
    rt.block_on(service.set_boundary(ctx, "bench", Some(policy)))
        .unwrap();
}

fn large_puts(c: &mut Criterion) {
    let rt = runtime();
    let data = Bytes::from(
        (0..64 * MIB)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let cases = [("one_replica", env(&rt, 1)), ("two_replicas", env(&rt, 2))];
    let mut group = c.benchmark_group("replication_put_64MiB");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(data.len() as u64));
    for (name, e) in &cases {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    rt.block_on(put(&e.service, "bench", "big".into(), &data));
                    total += started.elapsed();
                    rt.block_on(e.service.collect_garbage(&EMPTY_TRASH))
                        .unwrap();
                }
                total
            });
        });
    }
    group.finish();
}

/// 32 objects of 2 MiB written with one copy; then the policy asks for two and the repair
/// makes the second copies. Reported as bytes copied per second.
fn repair_throughput(c: &mut Criterion) {
    let rt = runtime();
    let data = Bytes::from(
        (0..2 * MIB)
            .map(|i| (i * 17 % 253) as u8)
            .collect::<Vec<u8>>(),
    );
    let mut group = c.benchmark_group("replication_repair");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(32 * data.len() as u64));
    group.bench_function("second_copies_of_64MiB", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let e = env(&rt, 1);
                for i in 0..32 {
                    rt.block_on(put(&e.service, "bench", format!("o{i}"), &data));
                }
                // The first pass ever also scrubs; get it done before timing.
                while rt
                    .block_on(e.service.repair_step(1000, i64::MAX))
                    .unwrap()
                    .cursor
                    .is_some()
                {}
                set_replicas(&rt, &e.service, 2);
                let started = Instant::now();
                let mut copied = 0;
                loop {
                    let p = rt.block_on(e.service.repair_step(1000, i64::MAX)).unwrap();
                    copied = copied.max(p.current.copied);
                    if p.cursor.is_none() {
                        break;
                    }
                }
                total += started.elapsed();
                assert_eq!(copied, 32, "every blob got its second copy");
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, large_puts, repair_throughput);
criterion_main!(benches);
