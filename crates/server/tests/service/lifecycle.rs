//! The lifecycle worker driven by an injectable clock: expiration by days (rounded to midnight
//! UTC as S3 does), tag and prefix filters, noncurrent-version expiration with
//! NewerNoncurrentVersions, expired delete-marker cleanup, aborting incomplete uploads, locked
//! versions left alone, and a pass that resumes from its saved cursor in a new process.

use std::sync::Arc;

use bytes::Bytes;
use vallum_blob::LocalBlobStore;
use vallum_core::Error;
use vallum_core::clock::ManualClock;
use vallum_core::lifecycle::{LifecycleConfig, LifecycleFilter, LifecycleRule};
use vallum_core::meta::BucketUpdate;
use vallum_core::meta::{ObjectAttrs, VersionStart, WriteCondition};
use vallum_core::service::{BodyCheck, LockRequest, ObjectService, PutObject};
use vallum_core::versioning::{Retention, RetentionMode, Tags, Versioning};
use vallum_meta::SqliteMetaStore;

const DAY_MS: i64 = 86_400_000;
/// 2026-01-10 10:00:00 UTC.
const T0: i64 = 1_768_039_200_000;

async fn service(dir: &std::path::Path, clock: Arc<ManualClock>) -> ObjectService {
    let meta = SqliteMetaStore::open(&dir.join("meta.db")).await.unwrap();
    ObjectService::new(
        Arc::new(meta),
        Arc::new(LocalBlobStore::open(dir.join("blobs")).unwrap()),
        clock,
        "us-east-1",
        Arc::new(vallum_core::journal::MemoryJournal::default()),
        vallum_server::keys::open_keys(dir, &vallum_server::config::KeysConfig::default())
            .await
            .unwrap(),
    )
}

async fn put(
    s: &ObjectService,
    bucket: &str,
    key: &str,
    tags: &[(&str, &str)],
    lock: LockRequest,
) -> String {
    let ctx = &vallum_core::context::RequestContext::system("test");
    let req = PutObject {
        bucket: bucket.into(),
        key: key.into(),
        attrs: ObjectAttrs::default(),
        check: BodyCheck::default(),
        condition: WriteCondition::None,
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Tags>(),
        lock,
        sse: Default::default(),
    };
    let body = Box::pin(futures::stream::iter([Ok(Bytes::from_static(b"data"))]));
    s.put_object(ctx, req, body).await.unwrap().version_id
}

async fn version_ids(s: &ObjectService, bucket: &str, key: &str) -> Vec<(String, bool)> {
    s.meta()
        .list_versions(bucket, key, VersionStart::Beginning, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|v| v.key == key)
        .map(|v| (v.version_id, v.delete_marker))
        .collect()
}

fn rule(f: impl FnOnce(&mut LifecycleRule)) -> LifecycleRule {
    let mut r = LifecycleRule {
        enabled: true,
        ..LifecycleRule::default()
    };
    f(&mut r);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_rules_follow_the_clock() {
    let ctx = &vallum_core::context::RequestContext::system("test");
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let s = service(dir.path(), Arc::clone(&clock)).await;
    s.create_bucket(ctx, "lcb").await.unwrap();
    s.update_bucket(ctx, "lcb", BucketUpdate::Versioning(Versioning::Enabled))
        .await
        .unwrap();
    let tagged = put(
        &s,
        "lcb",
        "logs/a",
        &[("class", "tmp")],
        LockRequest::default(),
    )
    .await;
    put(&s, "lcb", "logs/b", &[], LockRequest::default()).await;
    let c1 = put(&s, "lcb", "keep/c", &[], LockRequest::default()).await;
    let c2 = put(&s, "lcb", "keep/c", &[], LockRequest::default()).await;
    let c3 = put(&s, "lcb", "keep/c", &[], LockRequest::default()).await;
    let upload = s
        .create_upload(ctx, "lcb", "up/x", Default::default())
        .await
        .unwrap();
    let config = LifecycleConfig {
        rules: vec![
            rule(|r| {
                r.id = Some("tmp-logs".into());
                r.filter = LifecycleFilter {
                    prefix: "logs/".into(),
                    tags: [("class".to_owned(), "tmp".to_owned())].into(),
                    ..LifecycleFilter::default()
                };
                r.expiration_days = Some(1);
            }),
            rule(|r| {
                r.noncurrent_days = Some(1);
                r.newer_noncurrent_versions = Some(1);
            }),
            rule(|r| r.expired_object_delete_marker = true),
            rule(|r| r.abort_incomplete_days = Some(1)),
        ],
    };
    s.update_bucket(ctx, "lcb", BucketUpdate::Lifecycle(Some(config)))
        .await
        .unwrap();

    // One hour later nothing is due.
    clock.advance_ms(3_600_000);
    let p = s.run_lifecycle(ctx, usize::MAX).await.unwrap();
    assert_eq!(p.versions_scanned, 5);
    assert_eq!(
        (
            p.current_expired,
            p.noncurrent_deleted,
            p.delete_markers_removed,
            p.uploads_aborted
        ),
        (0, 0, 0, 0)
    );
    assert!(p.bucket.is_none() && p.last_pass_finished_ms == Some(T0 + 3_600_000));

    // Due is created + 1 day rounded up to midnight UTC: 2026-01-12 00:00. One ms before, still
    // nothing; at midnight, the actions run.
    let due = T0 - T0.rem_euclid(DAY_MS) + 2 * DAY_MS;
    clock.advance_ms(due - 1 - clock_now(&clock));
    let p = s.run_lifecycle(ctx, usize::MAX).await.unwrap();
    assert_eq!(
        p.current_expired + p.noncurrent_deleted + p.uploads_aborted,
        0
    );
    clock.advance_ms(1);
    let p = s.run_lifecycle(ctx, usize::MAX).await.unwrap();
    assert_eq!(p.current_expired, 1, "{p:?}");
    assert_eq!(p.noncurrent_deleted, 1, "{p:?}");
    assert_eq!(p.uploads_aborted, 1, "{p:?}");
    // logs/a: hidden behind a delete marker (versioned bucket), its data kept as noncurrent.
    let a = version_ids(&s, "lcb", "logs/a").await;
    assert_eq!(a.len(), 2);
    assert!(a[0].1 && a[1] == (tagged.clone(), false));
    assert!(matches!(
        s.head_object("lcb", "logs/a", None).await,
        Err(Error::DeleteMarker { .. })
    ));
    // logs/b has no tag: untouched. keep/c: the newest noncurrent version is kept.
    assert_eq!(version_ids(&s, "lcb", "logs/b").await.len(), 1);
    assert_eq!(
        version_ids(&s, "lcb", "keep/c").await,
        [(c3, false), (c2, false)]
    );
    assert!(c1.len() == 32);
    assert!(matches!(
        s.upload("lcb", "up/x", &upload.upload_id.to_string()).await,
        Err(Error::NoSuchUpload)
    ));
    // Running again changes nothing: every action is idempotent.
    let again = s.run_lifecycle(ctx, usize::MAX).await.unwrap();
    assert_eq!(
        (
            again.current_expired,
            again.noncurrent_deleted,
            again.uploads_aborted
        ),
        (0, 0, 0)
    );
    // Once the old data of logs/a is gone, its delete marker is the only version: removed.
    s.delete_object(ctx, "lcb", "logs/a", Some(&tagged), false)
        .await
        .unwrap();
    let p = s.run_lifecycle(ctx, usize::MAX).await.unwrap();
    assert_eq!(p.delete_markers_removed, 1, "{p:?}");
    assert!(version_ids(&s, "lcb", "logs/a").await.is_empty());
}

fn clock_now(clock: &ManualClock) -> i64 {
    use vallum_core::clock::Clock;
    clock.now_ms()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_never_removes_locked_versions() {
    let ctx = &vallum_core::context::RequestContext::system("test");
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let s = service(dir.path(), Arc::clone(&clock)).await;
    s.create_locked_bucket(ctx, "worm").await.unwrap();
    let locked = LockRequest {
        retention: Some(Retention {
            mode: RetentionMode::Compliance,
            until_ms: T0 + 10 * DAY_MS,
        }),
        legal_hold: None,
    };
    let v1 = put(&s, "worm", "rec", &[], locked).await;
    let v2 = put(&s, "worm", "rec", &[], LockRequest::default()).await;
    s.update_bucket(
        ctx,
        "worm",
        BucketUpdate::Lifecycle(Some(LifecycleConfig {
            rules: vec![rule(|r| r.noncurrent_days = Some(1))],
        })),
    )
    .await
    .unwrap();
    clock.advance_ms(3 * DAY_MS);
    let p = s.run_lifecycle(ctx, usize::MAX).await.unwrap();
    assert_eq!((p.noncurrent_deleted, p.skipped_locked), (0, 1), "{p:?}");
    assert_eq!(
        version_ids(&s, "worm", "rec").await,
        [(v2.clone(), false), (v1.clone(), false)]
    );
    // After the retention date, the next pass removes it.
    clock.advance_ms(8 * DAY_MS);
    let p = s.run_lifecycle(ctx, usize::MAX).await.unwrap();
    assert_eq!(p.noncurrent_deleted, 1, "{p:?}");
    assert_eq!(version_ids(&s, "worm", "rec").await, [(v2, false)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_resumes_from_its_cursor_in_a_new_process() {
    let ctx = &vallum_core::context::RequestContext::system("test");
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let s = service(dir.path(), Arc::clone(&clock)).await;
    s.create_bucket(ctx, "many").await.unwrap();
    for i in 0..60 {
        put(&s, "many", &format!("k{i:03}"), &[], LockRequest::default()).await;
    }
    let midnight = T0 - T0.rem_euclid(DAY_MS);
    s.update_bucket(
        ctx,
        "many",
        BucketUpdate::Lifecycle(Some(LifecycleConfig {
            rules: vec![rule(|r| r.expiration_date_ms = Some(midnight))],
        })),
    )
    .await
    .unwrap();
    let first = s.run_lifecycle(ctx, 10).await.unwrap();
    assert_eq!(
        first.bucket.as_deref(),
        Some("many"),
        "a budget of 10 stops mid-pass"
    );
    let done_first = first.current_expired;
    assert!((10..60).contains(&done_first), "{first:?}");
    let cursor = first.after_key.clone().unwrap();
    drop(s);

    // A new process on the same data continues from the saved cursor.
    let s = service(dir.path(), Arc::clone(&clock)).await;
    assert_eq!(
        s.lifecycle_progress().await.unwrap().after_key,
        Some(cursor)
    );
    let mut steps = 0;
    loop {
        let p = s.run_lifecycle(ctx, 10).await.unwrap();
        steps += 1;
        if p.bucket.is_none() {
            assert_eq!(p.current_expired, 60, "{p:?}");
            break;
        }
        assert!(steps < 20, "the pass must finish");
    }
    assert!(
        s.list_objects("many", "", None, None, 1000)
            .await
            .unwrap()
            .objects
            .is_empty()
    );
}
