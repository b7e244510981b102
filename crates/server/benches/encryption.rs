//! What encryption costs: 64 MiB PUT and GET through the object service by segment size
//! (interleaved, so disk drift hits every case alike; the service cannot be built without
//! encryption, so there is no plaintext case any more), and a 1 MiB GET whose key is held by an XKS proxy (`vallum keyd` in process, over
//! TLS) against one held by the local keyring, with and without the data-key cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vallum_blob::LocalBlobStore;
use vallum_core::clock::SystemClock;
use vallum_core::crypt::KeyService;
use vallum_core::service::ObjectService;
use vallum_crypto::keyring::{LocalKeyring, RootKey};
use vallum_crypto::keys::KeyProvider;
use vallum_meta::SqliteMetaStore;
use zeroize::Zeroizing;

mod common;

use common::{EMPTY_TRASH, runtime};

const MIB: usize = 1 << 20;

struct Env {
    _dir: tempfile::TempDir,
    service: ObjectService,
}

fn keyring(dir: &std::path::Path) -> Arc<LocalKeyring> {
    Arc::new(
        LocalKeyring::open(&dir.join("keyring"), &RootKey::File(dir.join("root.key"))).unwrap(),
    )
}

/// A service on a fresh directory, its data keys from `keys`.
fn env(rt: &tokio::runtime::Runtime, keys: impl FnOnce(&std::path::Path) -> KeyService) -> Env {
    let ctx = &vallum_core::context::RequestContext::system("test");
    let dir = tempfile::tempdir().unwrap();
    let meta = rt
        .block_on(SqliteMetaStore::open(&dir.path().join("meta.db")))
        .unwrap();
    let blobs = Arc::new(LocalBlobStore::open(dir.path().join("blobs")).unwrap());
    let service = ObjectService::new(
        Arc::new(meta),
        blobs,
        Arc::new(SystemClock),
        "us-east-1",
        Arc::new(vallum_core::journal::MemoryJournal::default()),
        Arc::new(keys(dir.path())),
    );
    rt.block_on(service.create_bucket(ctx, "bench")).unwrap();
    Env { _dir: dir, service }
}

fn with_keyring(segment: u32) -> impl FnOnce(&std::path::Path) -> KeyService {
    move |dir| {
        let ring = keyring(dir);
        futures::executor::block_on(ring.create_key("k", 1)).unwrap();
        KeyService::new(ring, "k".into(), segment)
    }
}

async fn put(env: &Env, key: &str, data: &Bytes) {
    common::put(&env.service, "bench", key.into(), data).await;
}

async fn get(env: &Env, key: &str) -> usize {
    common::get(&env.service, "bench", key).await
}

/// PUT or GET of 64 MiB, each case timed while the others run in the same iterations.
fn large_objects(c: &mut Criterion) {
    let rt = runtime();
    let data = Bytes::from(
        (0..64 * MIB)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let cases: Vec<(&str, Env)> = vec![
        (
            "encrypted_64KiB_segments",
            env(&rt, with_keyring(64 * 1024)),
        ),
        (
            "encrypted_16KiB_segments",
            env(&rt, with_keyring(16 * 1024)),
        ),
        (
            "encrypted_1MiB_segments",
            env(&rt, with_keyring(1024 * 1024)),
        ),
    ];
    for (_, e) in &cases {
        rt.block_on(put(e, "read-me", &data));
    }
    let mut g = c.benchmark_group("object_64MiB");
    g.sample_size(10);
    g.sampling_mode(criterion::SamplingMode::Flat);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(10));
    let mut n = 0u64;
    for timed in 0..cases.len() {
        let name = format!("put/{}", cases[timed].0);
        g.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (cases, data) = (&cases, &data);
                let first = n;
                n += iters;
                async move {
                    let mut total = Duration::ZERO;
                    for _ in first..first + iters {
                        for (j, (_, e)) in cases.iter().enumerate() {
                            let started = Instant::now();
                            put(e, "overwritten", data).await;
                            if j == timed {
                                total += started.elapsed();
                            }
                            // The replaced blob is trashed; empty the trash (untimed) so the
                            // disk does not fill.
                            e.service.collect_garbage(&EMPTY_TRASH).await.unwrap();
                        }
                    }
                    total
                }
            })
        });
    }
    for timed in 0..cases.len() {
        let name = format!("get/{}", cases[timed].0);
        g.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let cases = &cases;
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        for (j, (_, e)) in cases.iter().enumerate() {
                            let started = Instant::now();
                            assert_eq!(get(e, "read-me").await, 64 * MIB);
                            if j == timed {
                                total += started.elapsed();
                            }
                        }
                    }
                    total
                }
            })
        });
    }
    g.finish();
}

/// A 1 MiB GET with the key in the keyring vs in `vallum keyd` (XKS over TLS, loopback).
fn xks_reads(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-test-ca.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .arg(dir.path().join("tls"))
        .status()
        .unwrap();
    assert!(status.success());
    let ring = keyring(dir.path());
    rt.block_on(ring.create_key("k", 1)).unwrap();
    let proxy = Arc::new(vallum_xks::proxy::Proxy::new(
        ring.clone(),
        vec![("AKBENCH".into(), Zeroizing::new("bench-secret".into()))],
        "",
        vallum_xks::proxy::Policy::default(),
    ));
    rt.block_on(proxy.prepare()).unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = vallum_xks::tls::server_config(
        &dir.path().join("tls/cert.pem"),
        &dir.path().join("tls/key.pem"),
    )
    .unwrap();
    rt.spawn(vallum_xks::proxy::serve(
        proxy,
        listener,
        Some(tls),
        std::future::pending(),
    ));
    let xks = || -> Arc<dyn KeyProvider> {
        Arc::new(
            vallum_xks::client::XksProvider::new(vallum_xks::client::XksConfig {
                endpoint: format!("https://localhost:{port}"),
                access_key: "AKBENCH".into(),
                secret: Zeroizing::new("bench-secret".into()),
                region: "us-east-1".into(),
                ca_file: Some(dir.path().join("tls/ca.pem")),
                timeout: Duration::from_secs(5),
                retries: 0,
                keys: vec!["k".into()],
            })
            .unwrap(),
        )
    };
    let data = Bytes::from(vec![7u8; MIB]);
    let ring2 = ring.clone();
    let cases: Vec<(&str, Env)> = vec![
        (
            "keyring",
            env(&rt, move |_| {
                KeyService::new(ring2, "k".into(), 65536)
                    .with_dek_cache(10_000, Duration::from_secs(60))
            }),
        ),
        (
            "xks_cached",
            env(&rt, |_| {
                KeyService::new(xks(), "k".into(), 65536)
                    .with_dek_cache(10_000, Duration::from_secs(60))
            }),
        ),
        (
            "xks_uncached",
            env(&rt, |_| KeyService::new(xks(), "k".into(), 65536)),
        ),
    ];
    for (_, e) in &cases {
        rt.block_on(put(e, "one", &data));
    }
    let mut g = c.benchmark_group("get_1MiB_key_held_by");
    g.sample_size(50);
    g.throughput(Throughput::Bytes(MIB as u64));
    for (name, e) in &cases {
        g.bench_function(*name, |b| b.to_async(&rt).iter(|| get(e, "one")));
    }
    g.finish();
}

criterion_group!(benches, large_objects, xks_reads);
criterion_main!(benches);
