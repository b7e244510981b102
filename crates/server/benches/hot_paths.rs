//! Micro-benchmarks of the hot paths, on the real embedded stores:
//! digest computation, body verification, blob writes, metadata commits, list pages, and the
//! whole PutObject/GetObject path of the domain service (no HTTP).
//!
//! Run: `cargo bench -p vallum-server`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use vallum_blob::LocalBlobStore;
use vallum_core::blob::BlobStore;
use vallum_core::clock::SystemClock;
use vallum_core::digest::{self, ChecksumSet, Expectations, Hasher};
use vallum_core::journal::{Entry, Journal, JournalError};
use vallum_core::meta::BucketUpdate;
use vallum_core::service::ObjectService;
use vallum_core::versioning::Versioning;
use vallum_meta::SqliteMetaStore;
use vallum_types::BlobId;

mod common;

use common::{body, runtime};

fn digests(c: &mut Criterion) {
    let data = vec![0xa5u8; 1 << 20];
    let mut g = c.benchmark_group("digest_1MiB");
    g.throughput(Throughput::Bytes(data.len() as u64));
    for (name, set) in [
        ("md5", ChecksumSet::default()),
        (
            "md5+crc32c",
            ChecksumSet {
                crc32c: true,
                ..ChecksumSet::default()
            },
        ),
        (
            "md5+sha256",
            ChecksumSet {
                sha256: true,
                ..ChecksumSet::default()
            },
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut h = Hasher::new(set);
                h.update(&data);
                h.finish()
            })
        });
    }
    g.finish();
}

fn verifying_stream(c: &mut Criterion) {
    let rt = runtime();
    let data = Bytes::from(vec![7u8; 8 << 20]);
    let mut g = c.benchmark_group("verifying_stream_8MiB");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("md5_and_length", |b| {
        b.to_async(&rt).iter(|| async {
            let expect = Expectations {
                content_length: Some(data.len() as u64),
                max_len_bytes: u64::MAX,
                ..Expectations::default()
            };
            let (mut s, outcome) = digest::verifying_stream(body(&data, 256 << 10), expect);
            while let Some(chunk) = s.next().await {
                chunk.unwrap();
            }
            digest::take_outcome(&outcome).unwrap().unwrap()
        })
    });
    g.finish();
}

struct Env {
    _dir: tempfile::TempDir,
    service: ObjectService,
    blobs: Arc<LocalBlobStore>,
}

fn env(rt: &tokio::runtime::Runtime) -> Env {
    env_with(rt, |_| Arc::new(DiscardJournal))
}

/// The baseline journal of these benchmarks: records nothing, costs nothing.
struct DiscardJournal;

#[async_trait::async_trait]
impl Journal for DiscardJournal {
    async fn record(&self, _: Vec<Entry>) -> Result<(), JournalError> {
        Ok(())
    }
}

fn env_with(
    rt: &tokio::runtime::Runtime,
    journal: impl FnOnce(&std::path::Path) -> Arc<dyn Journal>,
) -> Env {
    let ctx = &vallum_core::context::RequestContext::system("test");
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(dir.path());
    let meta = rt
        .block_on(SqliteMetaStore::open(&dir.path().join("meta.db")))
        .unwrap();
    let blobs = Arc::new(LocalBlobStore::open(dir.path().join("blobs")).unwrap());
    let service = ObjectService::new(
        Arc::new(meta),
        blobs.clone(),
        Arc::new(SystemClock),
        "us-east-1",
        journal,
        rt.block_on(vallum_server::keys::open_keys(
            dir.path(),
            &vallum_server::config::KeysConfig::default(),
        ))
        .unwrap(),
    );
    rt.block_on(service.create_bucket(ctx, "bench")).unwrap();
    rt.block_on(service.create_bucket(ctx, "bench-versioned"))
        .unwrap();
    rt.block_on(service.update_bucket(
        ctx,
        "bench-versioned",
        BucketUpdate::Versioning(Versioning::Enabled),
    ))
    .unwrap();
    Env {
        _dir: dir,
        service,
        blobs,
    }
}

async fn put(env: &Env, key: String, data: Bytes) {
    put_in(env, "bench", key, data).await;
}

async fn put_in(env: &Env, bucket: &str, key: String, data: Bytes) {
    common::put(&env.service, bucket, key, &data).await;
}

fn object_paths(c: &mut Criterion) {
    let rt = runtime();
    let env = env(&rt);
    let small = Bytes::from(vec![1u8; 4096]);
    let mut counter = 0u64;
    let mut g = c.benchmark_group("object_service");
    g.sample_size(50);
    g.bench_function("blob_put_4KiB_fsync", |b| {
        b.to_async(&rt).iter(|| async {
            env.blobs
                .put(BlobId::random(), body(&small, 4096))
                .await
                .unwrap()
        })
    });
    g.bench_function("put_object_4KiB", |b| {
        b.to_async(&rt).iter(|| {
            counter += 1;
            put(&env, format!("small/{counter:010}"), small.clone())
        })
    });
    // Versioning's cost on a 4 KiB PUT (the budget: at most 5%). Fsync latency drifts as the
    // database and its WAL grow, so the two cases are interleaved on one database: every
    // iteration writes one object into each bucket and times only its own case.
    let both = self::env(&rt);
    let mut n = 0u64;
    for (name, timed, other) in [
        (
            "put_object_4KiB_interleaved/unversioned",
            "bench",
            "bench-versioned",
        ),
        (
            "put_object_4KiB_interleaved/versioned",
            "bench-versioned",
            "bench",
        ),
        (
            "put_object_4KiB_interleaved/unversioned_again",
            "bench",
            "bench-versioned",
        ),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let both = &both;
                let small = small.clone();
                let first = n;
                n += iters;
                async move {
                    let mut timed_total = Duration::ZERO;
                    for i in first..first + iters {
                        let started = Instant::now();
                        put_in(both, timed, format!("k/{i:010}"), small.clone()).await;
                        timed_total += started.elapsed();
                        put_in(both, other, format!("k/{i:010}"), small.clone()).await;
                    }
                    timed_total
                }
            })
        });
    }
    // Overwriting one key: unversioned replaces (and trashes) the old data, versioned keeps
    // every version; the latest is found by index whatever the number of versions.
    for (name, bucket) in [
        ("put_object_4KiB_same_key/unversioned", "bench"),
        ("put_object_4KiB_same_key/versioned", "bench-versioned"),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| put_in(&both, bucket, "hot".into(), small.clone()))
        });
    }
    g.bench_function("get_object_4KiB", |b| {
        b.to_async(&rt).iter(|| get_4kib(&env))
    });
    g.finish();

    // A list page of 1000 among 20,000 keys, with and without a delimiter.
    let env = self::env(&rt);
    rt.block_on(async {
        for i in 0..20_000u32 {
            put(
                &env,
                format!("dir{:02}/obj{i:06}", i % 20),
                Bytes::from_static(b"x"),
            )
            .await;
        }
    });
    let mut g = c.benchmark_group("list_page_1000_of_20000");
    for delimiter in [None, Some("/")] {
        g.bench_with_input(
            BenchmarkId::from_parameter(delimiter.unwrap_or("none")),
            &delimiter,
            |b, d| {
                b.to_async(&rt).iter(|| async {
                    env.service
                        .list_objects("bench", "", *d, None, 1000)
                        .await
                        .unwrap()
                })
            },
        );
    }
    g.finish();
}

async fn get_4kib(env: &Env) {
    assert_eq!(
        common::get(&env.service, "bench", "small/0000000001").await,
        4096
    );
}

/// What logging a 4 KiB GET durably (before its bytes leave) costs: the same GET with the
/// real transparency log against a journal that records nothing; one client, then 16 at once
/// (group commit shares each flush).
fn logging_cost(c: &mut Criterion) {
    let rt = runtime();
    let data = Bytes::from(vec![7u8; 4096]);
    let plain = env(&rt);
    let logged = env_with(&rt, |dir| {
        let config = vallum_server::config::LedgerConfig::default();
        let ledger =
            vallum_server::ledger::Ledger::start(&dir.join("ledger"), &config, vec![]).unwrap();
        Arc::new(vallum_server::ledger::LedgerJournal(ledger))
    });
    for e in [&plain, &logged] {
        rt.block_on(put(e, "small/0000000001".into(), data.clone()));
    }
    let mut g = c.benchmark_group("get_4KiB_logging_cost");
    for (name, e) in [("no_log", &plain), ("durable_log", &logged)] {
        g.bench_function(format!("1_client/{name}"), |b| {
            b.to_async(&rt).iter(|| get_4kib(e))
        });
    }
    g.throughput(Throughput::Elements(16));
    for (name, e) in [("no_log", &plain), ("durable_log", &logged)] {
        g.bench_function(format!("16_clients/{name}"), |b| {
            b.to_async(&rt)
                .iter(|| futures::future::join_all((0..16).map(|_| get_4kib(e))))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    digests,
    verifying_stream,
    object_paths,
    logging_cost
);
criterion_main!(benches);
