//! What the decision point costs. With 1,000 bucket policies (3,000 Cedar statements) and 100
//! identity policies loaded, decisions are timed 200,000 times each (p50, p99, max; target
//! p99 < 20 µs): every request new (a new bucket and key each time, so the policies come from
//! cold caches), and the same 1,000 requests repeated. 4 KiB GETs through the object service
//! are timed without and with the S3 path's identity work (key lookup, decision), alternating
//! one and the other so drift hits both alike (target: < 3% fewer GETs per second).

use vallum_core::meta::Records;
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use vallum_blob::LocalBlobStore;
use vallum_core::clock::SystemClock;
use vallum_core::iam::Iam;
use vallum_core::iam::authz::{Facts, Principal, Resource};
use vallum_core::service::ObjectService;
use vallum_crypto::secretbox::SecretBox;
use vallum_meta::SqliteMetaStore;

/// Bucket policies loaded.
const BUCKET_POLICIES: usize = 1000;
/// Users with an identity policy.
const USERS: usize = 100;
/// Decisions timed.
const DECISIONS: usize = 200_000;
/// GETs per case, in rounds.
const ROUNDS: usize = 20;
const GETS_PER_ROUND: usize = 500;

fn bucket_policy(bucket: &str, user: usize) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Readers", "Effect": "Allow",
             "Principal": {"AWS": [format!("arn:aws:iam::acme:user/user-{user:03}"), "arn:aws:iam::acme:user/bob"]},
             "Action": ["s3:GetObject", "s3:ListBucket"],
             "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")]},
            {"Sid": "NoSecrets", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": format!("arn:aws:s3:::{bucket}/secret/*")},
            {"Sid": "Office", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
             "Resource": format!("arn:aws:s3:::{bucket}/*"),
             "Condition": {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "127.0.0.0/8"]}}}
        ]
    })
    .to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Times `n` GetObject decisions by `principal` on `resource(i)` (built outside the timing),
/// each of which must be allowed; the times, sorted.
fn timed_decisions(
    iam: &Iam,
    principal: &Principal,
    facts: &Facts,
    n: usize,
    resource: impl Fn(usize) -> Resource,
) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let r = resource(i);
        let t = Instant::now();
        let d = iam.authorize(principal, "s3:GetObject", &r, facts);
        times.push(t.elapsed());
        assert!(d.allowed, "decision {i} on {r:?}: {d:?}");
    }
    times.sort();
    times
}

fn main() {
    let ctx = &vallum_core::context::RequestContext::system("test");
    // One thread: background tasks run only inside `block_on`, so nothing competes with the
    // timed decisions for the machine's two cores.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(
        rt.block_on(SqliteMetaStore::open(&dir.path().join("meta.db")))
            .unwrap(),
    );
    let blobs = Arc::new(LocalBlobStore::open(dir.path().join("blobs")).unwrap());
    let service = Arc::new(ObjectService::new(
        meta.clone(),
        blobs,
        Arc::new(SystemClock),
        "us-east-1",
        Arc::new(vallum_core::journal::MemoryJournal::default()),
        rt.block_on(vallum_server::keys::open_keys(
            dir.path(),
            &vallum_server::config::KeysConfig::default(),
        ))
        .unwrap(),
    ));
    let iam = rt
        .block_on(Iam::open(
            vallum_core::iam::IamPorts::of(&service),
            SecretBox::new(zeroize::Zeroizing::new([9u8; 32])),
            "VAROOTBENCH".into(),
            zeroize::Zeroizing::new("root-secret".into()),
            None,
        ))
        .unwrap();
    let (_, admin_key, _) = rt
        .block_on(iam.create_tenant(ctx, "acme", "", None))
        .unwrap();
    let bob = rt
        .block_on(iam.create_user(ctx, "acme", "bob", vec![]))
        .unwrap();
    let (bob_key, _) = rt
        .block_on(iam.create_key(
            ctx,
            vallum_core::iam::model::Owner::User {
                tenant: "acme".into(),
                name: bob.name.clone(),
            },
        ))
        .unwrap();
    // Policies written straight into the store, then loaded once.
    rt.block_on(async {
        for i in 0..BUCKET_POLICIES {
            let bucket = format!("bucket-{i:04}");
            let rec = serde_json::json!({
                "policy": serde_json::from_str::<serde_json::Value>(&bucket_policy(&bucket, i % USERS)).unwrap()
            });
            meta.put_record("bucket-policy", &format!("acme:{bucket}"), &rec.to_string(), None)
                .await
                .unwrap();
        }
        for u in 0..USERS {
            let user = serde_json::json!({
                "tenant": "acme", "name": format!("user-{u:03}"), "roles": [], "created_ms": 0,
                "policy": {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                    "Resource": format!("arn:aws:s3:::home/user-{u:03}/*")}]}
            });
            meta.put_record("user", &format!("acme/user-{u:03}"), &user.to_string(), None)
                .await
                .unwrap();
        }
        iam.refresh().await.unwrap();
    });
    let principal = Principal::User {
        tenant: "acme".into(),
        name: "bob".into(),
        admin: false,
        guardian: false,
    };
    let facts = Facts {
        source_ip: Some("127.0.0.1".parse().unwrap()),
        now_ms: service.now_ms(),
        ..Facts::default()
    };
    let resources: Vec<Resource> = (0..BUCKET_POLICIES)
        .map(|i| Resource::Object {
            tenant: "acme".into(),
            bucket: format!("bucket-{i:04}"),
            key: format!("reports/{i}.csv"),
        })
        .collect();
    // Warm up, and check the decisions are the intended ones.
    for r in &resources {
        assert!(iam.authorize(&principal, "s3:GetObject", r, &facts).allowed);
    }
    // Every decision a new (bucket, key): nothing to reuse, the decision point works in full.
    let times = timed_decisions(&iam, &principal, &facts, DECISIONS, |i| Resource::Object {
        tenant: "acme".into(),
        bucket: format!("bucket-{:04}", i % BUCKET_POLICIES),
        key: format!("reports/{i}.csv"),
    });
    println!(
        "authz decision, {BUCKET_POLICIES} bucket policies + {USERS} identity policies loaded, every request new: p50 {:?}  p99 {:?}  max {:?}",
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
    // The same 1,000 (bucket, key) pairs over and over.
    let again = timed_decisions(&iam, &principal, &facts, DECISIONS, |i| {
        resources[i % resources.len()].clone()
    });
    println!(
        "  the same 1,000 requests repeated: p50 {:?}  p99 {:?}",
        percentile(&again, 0.50),
        percentile(&again, 0.99)
    );
    // The same bucket over and over (its policies stay in the CPU caches), and the baseline
    // alone (a tenant admin on a bucket without a policy).
    let warm = timed_decisions(&iam, &principal, &facts, DECISIONS / 4, |i| {
        Resource::Object {
            tenant: "acme".into(),
            bucket: "bucket-0007".into(),
            key: format!("k/{i}"),
        }
    });
    let admin_p = Principal::User {
        tenant: "acme".into(),
        name: "admin".into(),
        admin: true,
        guardian: false,
    };
    let base = timed_decisions(&iam, &admin_p, &facts, DECISIONS / 4, |i| {
        Resource::Object {
            tenant: "acme".into(),
            bucket: "no-policy".into(),
            key: format!("k/{i}"),
        }
    });
    println!(
        "  same bucket, new keys: p50 {:?}  p99 {:?};  baseline rules only (new keys): p50 {:?}  p99 {:?}",
        percentile(&warm, 0.50),
        percentile(&warm, 0.99),
        percentile(&base, 0.50),
        percentile(&base, 0.99)
    );
    let denied = iam.authorize(
        &principal,
        "s3:GetObject",
        &Resource::Object {
            tenant: "acme".into(),
            bucket: "bucket-0007".into(),
            key: "secret/x".into(),
        },
        &facts,
    );
    assert!(denied.explicit_deny);

    // 4 KiB GETs, without and with the identity work of the S3 path.
    rt.block_on(async {
        service.create_bucket(ctx, "acme:bench").await.unwrap();
        let data = Bytes::from(vec![7u8; 4096]);
        common::put(&service, "acme:bench", "small".into(), &data).await;
        let get = || async {
            assert_eq!(common::get(&service, "acme:bench", "small").await, 4096);
        };
        let bench_resource = Resource::Object {
            tenant: "acme".into(),
            bucket: "bench".into(),
            key: "small".into(),
        };
        let admin = Principal::User {
            tenant: "acme".into(),
            name: "admin".into(),
            admin: true,
            guardian: false,
        };
        let mut auth = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let t = Instant::now();
            let found = iam.authenticate(&admin_key.id).await.unwrap();
            auth.push(t.elapsed());
            assert!(found.is_some());
        }
        auth.sort();
        println!(
            "  access-key lookup (principal and secret): p50 {:?}  p99 {:?}",
            percentile(&auth, 0.50),
            percentile(&auth, 0.99)
        );
        // Alternating one GET without and one with, so drift (fsync latency, the database
        // growing, the machine's noise) hits both alike; compared by medians.
        let (mut plain, mut checked, mut identity) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS * GETS_PER_ROUND {
            let t = Instant::now();
            get().await;
            plain.push(t.elapsed());
            let t = Instant::now();
            let (p, _secret) = iam.authenticate(&admin_key.id).await.unwrap().unwrap();
            assert_eq!(p, admin);
            assert!(iam.authorize(&p, "s3:GetObject", &bench_resource, &facts).allowed);
            identity.push(t.elapsed());
            get().await;
            checked.push(t.elapsed());
        }
        plain.sort();
        checked.sort();
        identity.sort();
        println!(
            "  key lookup + decision between GETs: p50 {:?}  p99 {:?}",
            percentile(&identity, 0.5),
            percentile(&identity, 0.99)
        );
        let (a, b) = (
            1.0 / percentile(&plain, 0.5).as_secs_f64(),
            1.0 / percentile(&checked, 0.5).as_secs_f64(),
        );
        println!(
            "4 KiB GET (object service, medians): {a:.0} ops/s without, {b:.0} ops/s with key lookup + decision: {:+.2}%",
            (b - a) / a * 100.0
        );
        let _ = bob_key;
    });
}
