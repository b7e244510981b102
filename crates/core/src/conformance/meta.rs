//! The `MetaStore` contract, port by port: each check belongs to one port's suite, and the
//! checks that need nothing else take only that port (a store that implements one port alone
//! can run its suite).

use std::sync::Arc;

use vallum_types::{BlobId, UploadId};

use crate::meta::BucketUpdate;
use crate::meta::SiteRecord;
use crate::meta::{
    BucketRecord, DeleteCondition, DeleteRequest, Leases, ListStart, LogSequencing, MetaError,
    MetaStore, ObjectAttrs, ObjectRecord, PartRecord, Records, Segment, UploadRecord, VersionStart,
    WriteCondition,
};
use crate::records::{TypedRecords, kind};
use crate::versioning::{
    NULL_VERSION, ObjectLock, ObjectLockConfig, Retention, RetentionMode, VersionUpdate,
    Versioning, next_seq,
};

fn bucket(name: &str) -> BucketRecord {
    BucketRecord::new(name, 1_700_000_000_000, "eu-west-1")
}

/// A plain delete of the current object.
const DELETE: DeleteRequest<'static> = DeleteRequest {
    version_id: None,
    bypass_governance: false,
    condition: DeleteCondition::None,
};

/// What the store returns for `object` put at `now_ms` as the key's first version.
fn stored(mut object: ObjectRecord, version_id: &str, now_ms: i64) -> ObjectRecord {
    object.version_id = version_id.to_owned();
    object.seq = next_seq(None, now_ms);
    object.latest = true;
    object
}

fn object(bucket: &str, key: &str, etag: &str) -> ObjectRecord {
    let mut attrs = ObjectAttrs {
        content_type: Some("text/plain".into()),
        expires_ms: Some(1_800_000_000_000),
        ..ObjectAttrs::default()
    };
    attrs.user_metadata.insert("owner".into(), "alice é".into());
    ObjectRecord {
        bucket: bucket.into(),
        key: key.into(),
        version_id: String::new(),
        seq: 0,
        latest: true,
        delete_marker: false,
        tags: [("class".to_owned(), "x".to_owned())].into(),
        lock: ObjectLock::default(),
        size_bytes: 30,
        etag: etag.into(),
        last_modified_ms: 1_700_000_000_123,
        attrs,
        checksums: crate::meta::Checksums {
            crc32: Some("AAAAAA==".into()),
            ..Default::default()
        },
        parts_count: None,
        segments: vec![
            Segment {
                blob: BlobId::random(),
                size_bytes: 10,
                sites: vec!["site-a".into(), "site-b".into()],
                crc32c: Some(0xdead_beef),
            },
            Segment {
                blob: BlobId::random(),
                size_bytes: 20,
                sites: Vec::new(),
                crc32c: None,
            },
        ],
        encryption: Some(encryption()),
    }
}

/// A wrapped data key as the stores must keep it (opaque to them).
fn encryption() -> crate::meta::Encryption {
    crate::meta::Encryption {
        wrapped: vallum_crypto::keys::WrappedKey {
            provider: "keyring".into(),
            key_id: "kek-1".into(),
            key_version: 3,
            wrapped: "bm90IGEgcmVhbCBrZXk=".into(),
        },
        segment_bytes: 65_536,
        sse_s3: true,
    }
}

fn upload(bucket: &str, key: &str, initiated_ms: i64) -> UploadRecord {
    UploadRecord {
        upload_id: UploadId::random(),
        bucket: bucket.into(),
        key: key.into(),
        initiated_ms,
        attrs: ObjectAttrs::default(),
        checksum_algorithm: None,
        tags: Default::default(),
        lock: ObjectLock::default(),
        encryption: Some(encryption()),
    }
}

fn part(n: u32, size: u64) -> PartRecord {
    PartRecord {
        part_number: n,
        blob: BlobId::random(),
        size_bytes: size,
        sites: vec![format!("site-{n}")],
        crc32c: Some(n),
        etag: format!("{n:032x}"),
        checksums: Default::default(),
        last_modified_ms: 1,
    }
}

/// The ids of the blobs trashed before `before_ms`.
async fn trashed_blobs(store: &dyn MetaStore, before_ms: i64, limit: usize) -> Vec<BlobId> {
    let trash = store.trash_before(before_ms, limit).await.unwrap();
    trash.into_iter().map(|t| t.blob).collect()
}

async fn keys(
    store: &dyn MetaStore,
    b: &str,
    prefix: &str,
    start: ListStart<'_>,
    limit: usize,
) -> Vec<String> {
    store
        .list_objects(b, prefix, start, limit)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Bucket create / get / list / delete, duplicates and missing buckets.
pub async fn bucket_lifecycle(store: Arc<dyn MetaStore>) {
    assert!(store.get_bucket("alpha").await.unwrap().is_none());
    store.create_bucket(&bucket("beta")).await.unwrap();
    store.create_bucket(&bucket("alpha")).await.unwrap();
    assert!(matches!(
        store.create_bucket(&bucket("alpha")).await,
        Err(MetaError::BucketExists)
    ));
    assert_eq!(
        store.get_bucket("alpha").await.unwrap(),
        Some(bucket("alpha"))
    );
    let names: Vec<_> = store
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    store.delete_bucket("alpha", 5).await.unwrap();
    assert!(matches!(
        store.delete_bucket("alpha", 5).await,
        Err(MetaError::NoSuchBucket)
    ));
    assert!(store.get_bucket("alpha").await.unwrap().is_none());
}

/// Objects round-trip exactly; replacing one trashes its blobs; deleting trashes them too.
pub async fn object_round_trip_and_trash(store: Arc<dyn MetaStore>) {
    store.create_bucket(&bucket("b")).await.unwrap();
    let first = object("b", "dir/k", "e1");
    store
        .put_object(&first, &WriteCondition::None, 100)
        .await
        .unwrap();
    assert_eq!(
        store.get_object("b", "dir/k", None).await.unwrap(),
        Some(stored(first.clone(), NULL_VERSION, 100))
    );
    for seg in &first.segments {
        assert!(store.blob_sites(seg.blob).await.unwrap().is_some());
    }
    let second = object("b", "dir/k", "e2");
    store
        .put_object(&second, &WriteCondition::None, 200)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_object("b", "dir/k", None)
            .await
            .unwrap()
            .unwrap()
            .etag,
        "e2"
    );
    let trashed = trashed_blobs(&*store, 201, 100).await;
    for seg in &first.segments {
        assert!(
            trashed.contains(&seg.blob),
            "replaced blobs must be trashed"
        );
    }
    assert!(
        trashed_blobs(&*store, 200, 100).await.is_empty(),
        "trash_before is strict"
    );
    store.forget_trash(&trashed).await.unwrap();
    assert!(trashed_blobs(&*store, i64::MAX, 100).await.is_empty());
    for seg in &first.segments {
        assert!(store.blob_sites(seg.blob).await.unwrap().is_none());
    }
    let removed = store
        .delete_object("b", "dir/k", &DELETE, 300)
        .await
        .unwrap();
    assert!(removed.changed && !removed.delete_marker && removed.version_id.is_none());
    assert!(
        !store
            .delete_object("b", "dir/k", &DELETE, 300)
            .await
            .unwrap()
            .changed
    );
    assert!(
        store
            .get_object("b", "dir/k", None)
            .await
            .unwrap()
            .is_none()
    );
    let trashed = trashed_blobs(&*store, i64::MAX, 100).await;
    assert!(second.segments.iter().all(|s| trashed.contains(&s.blob)));
    for seg in &second.segments {
        assert!(
            store.blob_sites(seg.blob).await.unwrap().is_some(),
            "trashed blobs are still in use until forgotten"
        );
    }
    assert!(matches!(
        store
            .put_object(&object("nope", "k", "e"), &WriteCondition::None, 1)
            .await,
        Err(MetaError::NoSuchBucket)
    ));
    assert!(matches!(
        store.delete_object("nope", "k", &DELETE, 1).await,
        Err(MetaError::NoSuchBucket)
    ));
}

/// If-None-Match: * and If-Match are enforced by the store itself.
pub async fn conditional_writes(store: Arc<dyn MetaStore>) {
    store.create_bucket(&bucket("b")).await.unwrap();
    store
        .put_object(&object("b", "k", "e1"), &WriteCondition::IfAbsent, 1)
        .await
        .unwrap();
    assert!(matches!(
        store
            .put_object(&object("b", "k", "e2"), &WriteCondition::IfAbsent, 1)
            .await,
        Err(MetaError::PreconditionFailed)
    ));
    assert!(matches!(
        store
            .put_object(
                &object("b", "k", "e2"),
                &WriteCondition::IfMatch("zz".into()),
                1
            )
            .await,
        Err(MetaError::PreconditionFailed)
    ));
    assert!(matches!(
        store
            .put_object(
                &object("b", "new", "e2"),
                &WriteCondition::IfMatch("*".into()),
                1
            )
            .await,
        Err(MetaError::PreconditionFailed)
    ));
    assert!(matches!(
        store
            .put_object(
                &object("b", "k", "e2"),
                &WriteCondition::IfNoneMatch("e1".into()),
                1
            )
            .await,
        Err(MetaError::PreconditionFailed)
    ));
    store
        .put_object(
            &object("b", "k", "e2"),
            &WriteCondition::IfMatch("e1".into()),
            1,
        )
        .await
        .unwrap();
    store
        .put_object(
            &object("b", "k", "e2"),
            &WriteCondition::IfNoneMatch("e1".into()),
            1,
        )
        .await
        .unwrap();
    store
        .put_object(
            &object("b", "k", "e3"),
            &WriteCondition::IfMatch("*".into()),
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .get_object("b", "k", None)
            .await
            .unwrap()
            .unwrap()
            .etag,
        "e3"
    );
}

/// Concurrent If-None-Match: * writers of one key: exactly one wins.
pub async fn conditional_race_has_one_winner(store: Arc<dyn MetaStore>) {
    store.create_bucket(&bucket("b")).await.unwrap();
    let attempts = (0..16).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .put_object(
                    &object("b", "race", &format!("e{i}")),
                    &WriteCondition::IfAbsent,
                    1,
                )
                .await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let wins = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let losses = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(MetaError::PreconditionFailed))))
        .count();
    assert_eq!((wins, losses), (1, 15));
}

/// Concurrent writes that a store may commit together: the refused ones (a failed condition, a
/// missing bucket) change nothing, every other one is stored whole.
pub async fn concurrent_writes_with_refusals_commit_the_rest(store: Arc<dyn MetaStore>) {
    store.create_bucket(&bucket("b")).await.unwrap();
    let attempts = (0..48).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let (target, condition) = match i % 3 {
                0 => (
                    object("b", &format!("k{i}"), &format!("e{i}")),
                    WriteCondition::None,
                ),
                1 => (
                    object("b", &format!("k{i}"), &format!("e{i}")),
                    WriteCondition::IfMatch("nothing-there".into()),
                ),
                _ => (
                    object("missing", &format!("k{i}"), "e"),
                    WriteCondition::None,
                ),
            };
            store.put_object(&target, &condition, 1).await
        })
    });
    let results = futures::future::join_all(attempts).await;
    for (i, r) in results.into_iter().enumerate() {
        let r = r.unwrap();
        match i % 3 {
            0 => assert!(r.is_ok(), "{i}: {r:?}"),
            1 => assert!(
                matches!(r, Err(MetaError::PreconditionFailed)),
                "{i}: {r:?}"
            ),
            _ => assert!(matches!(r, Err(MetaError::NoSuchBucket)), "{i}: {r:?}"),
        }
        let stored = store.get_object("b", &format!("k{i}"), None).await.unwrap();
        match i % 3 {
            0 => assert_eq!(stored.map(|o| o.etag), Some(format!("e{i}"))),
            _ => assert!(stored.is_none(), "{i} was refused but stored"),
        }
    }
    assert!(store.get_bucket("missing").await.unwrap().is_none());
}

/// Listing: byte order, prefix, exclusive and inclusive starts, limits, bucket isolation.
pub async fn listing_order_and_bounds(store: Arc<dyn MetaStore>) {
    store.create_bucket(&bucket("b")).await.unwrap();
    store.create_bucket(&bucket("other")).await.unwrap();
    let names = ["a", "a/b", "a/c", "ab", "b", "Z", "é", "a0", "a%"];
    for k in names {
        store
            .put_object(&object("b", k, "e"), &WriteCondition::None, 1)
            .await
            .unwrap();
    }
    store
        .put_object(&object("other", "a/x", "e"), &WriteCondition::None, 1)
        .await
        .unwrap();
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    assert_eq!(
        keys(&*store, "b", "", ListStart::Beginning, 100).await,
        sorted
    );
    assert_eq!(
        keys(&*store, "b", "a/", ListStart::Beginning, 100).await,
        ["a/b", "a/c"]
    );
    assert_eq!(
        keys(&*store, "b", "a%", ListStart::Beginning, 100).await,
        ["a%"],
        "LIKE wildcards in prefixes are literal"
    );
    assert_eq!(
        keys(&*store, "b", "", ListStart::After("a/b"), 2).await,
        ["a/c", "a0"]
    );
    assert_eq!(
        keys(&*store, "b", "", ListStart::AtOrAfter("a/b"), 2).await,
        ["a/b", "a/c"]
    );
    assert_eq!(
        keys(&*store, "b", "a", ListStart::AtOrAfter("a0"), 100).await,
        ["a0", "ab"]
    );
    assert!(
        keys(&*store, "b", "", ListStart::After("é"), 100)
            .await
            .is_empty()
    );
    let summary = &store
        .list_objects("b", "ab", ListStart::Beginning, 1)
        .await
        .unwrap()[0];
    assert_eq!(
        (
            summary.size_bytes,
            summary.etag.as_str(),
            summary.last_modified_ms
        ),
        (30, "e", 1_700_000_000_123)
    );
}

/// A bucket with objects cannot be deleted; one with only uploads can, and the parts are trashed.
pub async fn delete_bucket_rules(store: Arc<dyn MetaStore>) {
    store.create_bucket(&bucket("b")).await.unwrap();
    store
        .put_object(&object("b", "k", "e"), &WriteCondition::None, 1)
        .await
        .unwrap();
    assert!(matches!(
        store.delete_bucket("b", 1).await,
        Err(MetaError::BucketNotEmpty)
    ));
    store.delete_object("b", "k", &DELETE, 1).await.unwrap();
    let up = upload("b", "k", 1);
    store.create_upload(&up).await.unwrap();
    let p = part(1, 10);
    store.put_part(up.upload_id, &p, 1).await.unwrap();
    store.delete_bucket("b", 2).await.unwrap();
    assert!(store.get_upload(up.upload_id).await.unwrap().is_none());
    assert!(
        trashed_blobs(&*store, i64::MAX, 100)
            .await
            .contains(&p.blob)
    );
    assert!(matches!(
        store.create_upload(&upload("b", "k", 1)).await,
        Err(MetaError::NoSuchBucket)
    ));
}

/// Parts: replace trashes the old blob; listing is ordered and paged; missing uploads refused.
pub async fn parts_and_uploads(store: Arc<dyn MetaStore>) {
    store.create_bucket(&bucket("b")).await.unwrap();
    let up = upload("b", "k", 10);
    store.create_upload(&up).await.unwrap();
    assert_eq!(
        store.get_upload(up.upload_id).await.unwrap(),
        Some(up.clone())
    );
    let p2 = part(2, 20);
    let p1 = part(1, 10);
    store.put_part(up.upload_id, &p2, 1).await.unwrap();
    store.put_part(up.upload_id, &p1, 1).await.unwrap();
    let p1b = part(1, 11);
    store.put_part(up.upload_id, &p1b, 5).await.unwrap();
    assert!(
        trashed_blobs(&*store, i64::MAX, 10)
            .await
            .contains(&p1.blob)
    );
    let listed = store.list_parts(up.upload_id, 0, 10).await.unwrap();
    assert_eq!(listed, vec![p1b.clone(), p2.clone()]);
    assert_eq!(
        store.list_parts(up.upload_id, 1, 10).await.unwrap(),
        vec![p2.clone()]
    );
    assert!(matches!(
        store.put_part(UploadId::random(), &part(1, 1), 1).await,
        Err(MetaError::NoSuchUpload)
    ));
    let later = upload("b", "a-first", 20);
    store.create_upload(&later).await.unwrap();
    let listed: Vec<_> = store
        .list_uploads("b", "", "", None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.key)
        .collect();
    assert_eq!(listed, ["a-first", "k"]);
    let after: Vec<_> = store
        .list_uploads("b", "", "a-first", None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.key)
        .collect();
    assert_eq!(after, ["k"]);
    assert_eq!(
        store
            .list_uploads("b", "k", "", None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let stale: Vec<_> = store
        .stale_uploads(15, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.upload_id)
        .collect();
    assert_eq!(stale, vec![up.upload_id]);
    store.abort_upload(later.upload_id, 30).await.unwrap();
    assert!(matches!(
        store.abort_upload(later.upload_id, 30).await,
        Err(MetaError::NoSuchUpload)
    ));
}

/// Completing commits the object, trashes unused parts, removes the upload, and refuses
/// parts that changed underneath.
pub async fn complete_upload_is_atomic(store: Arc<dyn MetaStore>) {
    store.create_bucket(&bucket("b")).await.unwrap();
    let up = upload("b", "k", 10);
    store.create_upload(&up).await.unwrap();
    let (p1, p2, p3) = (part(1, 10), part(2, 20), part(3, 5));
    for p in [&p1, &p2, &p3] {
        store.put_part(up.upload_id, p, 1).await.unwrap();
    }
    let mut obj = object("b", "k", "abc-2");
    obj.parts_count = Some(2);
    obj.size_bytes = 15;
    obj.segments = vec![
        Segment {
            blob: p1.blob,
            size_bytes: 10,
            sites: p1.sites.clone(),
            crc32c: p1.crc32c,
        },
        Segment {
            blob: p3.blob,
            size_bytes: 5,
            sites: p3.sites.clone(),
            crc32c: p3.crc32c,
        },
    ];
    // A stale view of part 3 is refused.
    let p3b = part(3, 5);
    store.put_part(up.upload_id, &p3b, 2).await.unwrap();
    assert!(matches!(
        store
            .complete_upload(up.upload_id, &obj, &[1, 3], &WriteCondition::None, 3)
            .await,
        Err(MetaError::PartChanged(3))
    ));
    obj.segments[1].blob = p3b.blob;
    assert!(matches!(
        store
            .complete_upload(
                up.upload_id,
                &obj,
                &[1, 3],
                &WriteCondition::IfMatch("x".into()),
                3
            )
            .await,
        Err(MetaError::PreconditionFailed)
    ));
    store
        .complete_upload(up.upload_id, &obj, &[1, 3], &WriteCondition::None, 3)
        .await
        .unwrap();
    assert_eq!(
        store.get_object("b", "k", None).await.unwrap(),
        Some(stored(obj.clone(), NULL_VERSION, 3))
    );
    assert!(store.get_upload(up.upload_id).await.unwrap().is_none());
    let trash = trashed_blobs(&*store, i64::MAX, 100).await;
    assert!(
        trash.contains(&p2.blob) && trash.contains(&p3.blob),
        "unused parts are trashed"
    );
    assert!(
        !trash.contains(&p1.blob) && !trash.contains(&p3b.blob),
        "used parts are not"
    );
    assert!(matches!(
        store
            .complete_upload(up.upload_id, &obj, &[1, 3], &WriteCondition::None, 3)
            .await,
        Err(MetaError::NoSuchUpload)
    ));
}

/// Leases: one holder at a time, renewable by the holder, free again after expiry or release.
pub async fn leases_have_one_holder(store: Arc<dyn Leases>) {
    assert!(store.acquire_lease("gc", "gw-a", 1_000, 100).await.unwrap());
    assert!(
        !store.acquire_lease("gc", "gw-b", 1_050, 100).await.unwrap(),
        "held by gw-a until 1100"
    );
    assert!(
        store.acquire_lease("gc", "gw-a", 1_090, 100).await.unwrap(),
        "the holder renews"
    );
    assert!(
        !store.acquire_lease("gc", "gw-b", 1_150, 100).await.unwrap(),
        "renewed until 1190"
    );
    assert!(
        store
            .acquire_lease("other-job", "gw-b", 1_150, 100)
            .await
            .unwrap(),
        "leases are per name"
    );
    assert!(
        store.acquire_lease("gc", "gw-b", 1_191, 100).await.unwrap(),
        "expired leases can be taken"
    );
    assert!(!store.acquire_lease("gc", "gw-a", 1_200, 100).await.unwrap());
    store.release_lease("gc", "gw-a").await.unwrap();
    assert!(
        !store.acquire_lease("gc", "gw-a", 1_200, 100).await.unwrap(),
        "only the holder releases"
    );
    store.release_lease("gc", "gw-b").await.unwrap();
    assert!(store.acquire_lease("gc", "gw-a", 1_200, 100).await.unwrap());
    // Concurrent takers of a free lease: exactly one wins.
    let takers = (0..8).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .acquire_lease("race", &format!("gw-{i}"), 5_000, 1_000)
                .await
                .unwrap()
        })
    });
    let won = futures::future::join_all(takers)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(won, 1);
}

async fn versions_of(store: &dyn MetaStore, b: &str, key: &str) -> Vec<(String, bool, bool)> {
    store
        .list_versions(b, key, VersionStart::Beginning, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|v| v.key == key)
        .map(|v| (v.version_id, v.latest, v.delete_marker))
        .collect()
}

fn delete_version(version_id: &str) -> DeleteRequest<'_> {
    DeleteRequest {
        version_id: Some(version_id),
        bypass_governance: false,
        condition: DeleteCondition::None,
    }
}

/// Versioning: Enabled buckets keep every version, newest first; delete markers hide the
/// key; deleting a version for good promotes the next; Suspended buckets replace `null`.
pub async fn versioning_semantics(store: Arc<dyn MetaStore>) {
    store.create_bucket(&bucket("v")).await.unwrap();
    let v0 = store
        .put_object(&object("v", "k", "e0"), &WriteCondition::None, 10)
        .await
        .unwrap();
    assert_eq!(v0, NULL_VERSION, "unversioned writes make the null version");
    assert!(matches!(
        store
            .update_bucket("v", &BucketUpdate::Versioning(Versioning::Unversioned))
            .await,
        Err(MetaError::Invalid(_))
    ));
    let updated = store
        .update_bucket("v", &BucketUpdate::Versioning(Versioning::Enabled))
        .await
        .unwrap();
    assert_eq!(updated.versioning, Versioning::Enabled);
    assert_eq!(store.get_bucket("v").await.unwrap(), Some(updated));
    let v1 = store
        .put_object(&object("v", "k", "e1"), &WriteCondition::None, 20)
        .await
        .unwrap();
    let v2 = store
        .put_object(&object("v", "k", "e2"), &WriteCondition::None, 20)
        .await
        .unwrap();
    assert!(v1 != v2 && v1.len() == 32 && v1 < v2, "{v1} {v2}");
    assert_eq!(
        versions_of(&*store, "v", "k").await,
        [
            (v2.clone(), true, false),
            (v1.clone(), false, false),
            (NULL_VERSION.to_owned(), false, false)
        ]
    );
    let old = store
        .get_object("v", "k", Some(&v1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((old.etag.as_str(), old.latest), ("e1", false));
    assert_eq!(
        store
            .get_object("v", "k", Some(NULL_VERSION))
            .await
            .unwrap()
            .unwrap()
            .etag,
        "e0"
    );
    // A delete without a version adds a marker; the key vanishes from listings.
    let marker = store.delete_object("v", "k", &DELETE, 30).await.unwrap();
    assert!(marker.delete_marker && marker.changed);
    let marker_id = marker.version_id.unwrap();
    let latest = store.get_object("v", "k", None).await.unwrap().unwrap();
    assert!(latest.delete_marker && latest.version_id == marker_id);
    assert!(
        keys(&*store, "v", "", ListStart::Beginning, 10)
            .await
            .is_empty()
    );
    assert!(matches!(
        store
            .put_object(
                &object("v", "k", "x"),
                &WriteCondition::IfMatch("*".into()),
                31
            )
            .await,
        Err(MetaError::PreconditionFailed)
    ));
    // Deleting the marker for good brings v2 back.
    let undone = store
        .delete_object("v", "k", &delete_version(&marker_id), 40)
        .await
        .unwrap();
    assert!(undone.delete_marker && undone.changed);
    assert_eq!(
        store
            .get_object("v", "k", None)
            .await
            .unwrap()
            .unwrap()
            .etag,
        "e2"
    );
    assert_eq!(
        keys(&*store, "v", "", ListStart::Beginning, 10).await,
        ["k"]
    );
    // Deleting a noncurrent version trashes its blobs only.
    let before = store
        .get_object("v", "k", Some(&v1))
        .await
        .unwrap()
        .unwrap();
    store
        .delete_object("v", "k", &delete_version(&v1), 50)
        .await
        .unwrap();
    let trash = trashed_blobs(&*store, i64::MAX, 100).await;
    assert!(before.segments.iter().all(|s| trash.contains(&s.blob)));
    assert!(
        !store
            .delete_object("v", "k", &delete_version(&v1), 50)
            .await
            .unwrap()
            .changed,
        "deleting an absent version succeeds without change"
    );
    // Suspended: writes and deletes replace the null version, other versions stay.
    store
        .update_bucket("v", &BucketUpdate::Versioning(Versioning::Suspended))
        .await
        .unwrap();
    let null_before = store
        .get_object("v", "k", Some(NULL_VERSION))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .put_object(&object("v", "k", "s1"), &WriteCondition::None, 60)
            .await
            .unwrap(),
        NULL_VERSION
    );
    let trash = trashed_blobs(&*store, i64::MAX, 100).await;
    assert!(null_before.segments.iter().all(|s| trash.contains(&s.blob)));
    assert_eq!(
        versions_of(&*store, "v", "k").await,
        [
            (NULL_VERSION.to_owned(), true, false),
            (v2.clone(), false, false)
        ]
    );
    let marker = store.delete_object("v", "k", &DELETE, 70).await.unwrap();
    assert_eq!(
        (marker.version_id.as_deref(), marker.delete_marker),
        (Some(NULL_VERSION), true)
    );
    assert_eq!(
        versions_of(&*store, "v", "k").await,
        [
            (NULL_VERSION.to_owned(), true, true),
            (v2.clone(), false, false)
        ]
    );
    // A bucket holding only versions (or markers) is not empty.
    assert!(matches!(
        store.delete_bucket("v", 80).await,
        Err(MetaError::BucketNotEmpty)
    ));
    // Tags of a named version; markers have none.
    store
        .update_version(
            "v",
            "k",
            Some(&v2),
            &VersionUpdate::Tags([("a".to_owned(), "b".to_owned())].into()),
            90,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .get_object("v", "k", Some(&v2))
            .await
            .unwrap()
            .unwrap()
            .tags["a"],
        "b"
    );
    assert!(matches!(
        store
            .update_version(
                "v",
                "k",
                Some(NULL_VERSION),
                &VersionUpdate::Tags(Default::default()),
                90
            )
            .await,
        Err(MetaError::DeleteMarker)
    ));
    assert!(matches!(
        store
            .update_version("v", "k", None, &VersionUpdate::Tags(Default::default()), 90)
            .await,
        Err(MetaError::NoSuchKey)
    ));
    assert!(matches!(
        store
            .update_version(
                "v",
                "k",
                Some(&v1),
                &VersionUpdate::Tags(Default::default()),
                90
            )
            .await,
        Err(MetaError::NoSuchVersion)
    ));
}

/// Version listing order and resumption.
pub async fn version_listing(store: Arc<dyn MetaStore>) {
    store.create_bucket(&bucket("l")).await.unwrap();
    store
        .update_bucket("l", &BucketUpdate::Versioning(Versioning::Enabled))
        .await
        .unwrap();
    let mut expected = Vec::new();
    for key in ["a", "b/x", "c"] {
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(
                store
                    .put_object(
                        &object("l", key, &format!("e{i}")),
                        &WriteCondition::None,
                        5,
                    )
                    .await
                    .unwrap(),
            );
        }
        ids.reverse();
        for id in ids {
            expected.push((key.to_owned(), id));
        }
    }
    let all: Vec<_> = store
        .list_versions("l", "", VersionStart::Beginning, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.key, v.version_id))
        .collect();
    assert_eq!(all, expected, "by key, newest first");
    let first_b = store
        .list_versions("l", "b", VersionStart::Beginning, 1)
        .await
        .unwrap();
    assert_eq!(first_b[0].key, "b/x");
    let rest: Vec<_> = store
        .list_versions(
            "l",
            "",
            VersionStart::AfterVersion("b/x", first_b[0].seq),
            100,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.version_id)
        .collect();
    assert_eq!(
        rest,
        [expected[4].1.clone(), expected[5].1.clone()],
        "rest of one key only"
    );
    let after_key: Vec<_> = store
        .list_versions("l", "", VersionStart::AfterKey("b/x"), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.key)
        .collect();
    assert_eq!(after_key, ["c", "c", "c"]);
    let prefixed = store
        .list_versions("l", "b/", VersionStart::AtOrAfterKey("a"), 100)
        .await
        .unwrap();
    assert_eq!(prefixed.len(), 3);
    assert!(prefixed.iter().all(|v| v.key == "b/x"));
}

/// Object lock: protected versions cannot be removed; COMPLIANCE cannot be shortened by
/// anyone; GOVERNANCE yields only to the bypass; suspension is refused.
pub async fn object_lock_rules(store: Arc<dyn MetaStore>) {
    store.create_bucket(&bucket("w")).await.unwrap();
    assert!(matches!(
        store
            .update_bucket("w", &BucketUpdate::ObjectLock(ObjectLockConfig::default()))
            .await,
        Err(MetaError::InvalidBucketState(_))
    ));
    store
        .update_bucket("w", &BucketUpdate::Versioning(Versioning::Enabled))
        .await
        .unwrap();
    store
        .update_bucket("w", &BucketUpdate::ObjectLock(ObjectLockConfig::default()))
        .await
        .unwrap();
    assert!(matches!(
        store
            .update_bucket("w", &BucketUpdate::Versioning(Versioning::Suspended))
            .await,
        Err(MetaError::InvalidBucketState(_))
    ));
    let mut locked = object("w", "k", "e");
    locked.lock = ObjectLock {
        retention: Some(Retention {
            mode: RetentionMode::Compliance,
            until_ms: 1_000,
        }),
        legal_hold: false,
    };
    let id = store
        .put_object(&locked, &WriteCondition::None, 100)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_object("w", "k", Some(&id))
            .await
            .unwrap()
            .unwrap()
            .lock,
        locked.lock
    );
    let bypass = DeleteRequest {
        version_id: Some(&id),
        bypass_governance: true,
        condition: DeleteCondition::None,
    };
    assert!(matches!(
        store.delete_object("w", "k", &bypass, 500).await,
        Err(MetaError::Locked(_))
    ));
    // A delete marker is allowed: the version itself stays.
    assert!(
        store
            .delete_object("w", "k", &DELETE, 500)
            .await
            .unwrap()
            .delete_marker
    );
    assert!(
        store
            .get_object("w", "k", Some(&id))
            .await
            .unwrap()
            .is_some()
    );
    let shorten = VersionUpdate::Retention {
        retention: Some(Retention {
            mode: RetentionMode::Compliance,
            until_ms: 600,
        }),
        bypass_governance: true,
    };
    assert!(matches!(
        store
            .update_version("w", "k", Some(&id), &shorten, 500)
            .await,
        Err(MetaError::Locked(_))
    ));
    let extend = VersionUpdate::Retention {
        retention: Some(Retention {
            mode: RetentionMode::Compliance,
            until_ms: 2_000,
        }),
        bypass_governance: false,
    };
    store
        .update_version("w", "k", Some(&id), &extend, 500)
        .await
        .unwrap();
    assert!(matches!(
        store.delete_object("w", "k", &bypass, 1_500).await,
        Err(MetaError::Locked(_))
    ));
    // Legal hold protects past the retention date.
    store
        .update_version("w", "k", Some(&id), &VersionUpdate::LegalHold(true), 1_600)
        .await
        .unwrap();
    assert!(matches!(
        store.delete_object("w", "k", &bypass, 2_500).await,
        Err(MetaError::Locked(_))
    ));
    store
        .update_version("w", "k", Some(&id), &VersionUpdate::LegalHold(false), 2_500)
        .await
        .unwrap();
    assert!(
        store
            .delete_object("w", "k", &delete_version(&id), 2_500)
            .await
            .unwrap()
            .changed
    );
    // GOVERNANCE: only the bypass removes it early.
    let mut gov = object("w", "g", "e");
    gov.lock.retention = Some(Retention {
        mode: RetentionMode::Governance,
        until_ms: 10_000,
    });
    let gid = store
        .put_object(&gov, &WriteCondition::None, 3_000)
        .await
        .unwrap();
    assert!(matches!(
        store
            .delete_object("w", "g", &delete_version(&gid), 3_000)
            .await,
        Err(MetaError::Locked(_))
    ));
    let bypass = DeleteRequest {
        version_id: Some(&gid),
        bypass_governance: true,
        condition: DeleteCondition::None,
    };
    assert!(
        store
            .delete_object("w", "g", &bypass, 3_000)
            .await
            .unwrap()
            .changed
    );
    // Retention on a bucket without object lock is refused.
    store.create_bucket(&bucket("plain")).await.unwrap();
    store
        .put_object(&object("plain", "k", "e"), &WriteCondition::None, 1)
        .await
        .unwrap();
    assert!(matches!(
        store
            .update_version("plain", "k", None, &VersionUpdate::LegalHold(true), 1)
            .await,
        Err(MetaError::InvalidBucketState(_))
    ));
}

/// The conditions the lifecycle worker relies on are checked atomically.
pub async fn delete_conditions(store: Arc<dyn MetaStore>) {
    store.create_bucket(&bucket("c")).await.unwrap();
    store
        .update_bucket("c", &BucketUpdate::Versioning(Versioning::Enabled))
        .await
        .unwrap();
    let a = store
        .put_object(&object("c", "k", "a"), &WriteCondition::None, 1)
        .await
        .unwrap();
    let latest = store.get_object("c", "k", None).await.unwrap().unwrap();
    let b = store
        .put_object(&object("c", "k", "b"), &WriteCondition::None, 2)
        .await
        .unwrap();
    let stale = DeleteRequest {
        version_id: None,
        bypass_governance: false,
        condition: DeleteCondition::LatestSeq(latest.seq),
    };
    assert!(matches!(
        store.delete_object("c", "k", &stale, 3).await,
        Err(MetaError::PreconditionFailed)
    ));
    let not_latest = DeleteRequest {
        version_id: Some(&b),
        bypass_governance: false,
        condition: DeleteCondition::NotLatest,
    };
    assert!(matches!(
        store.delete_object("c", "k", &not_latest, 3).await,
        Err(MetaError::PreconditionFailed)
    ));
    let marker = store.delete_object("c", "k", &DELETE, 4).await.unwrap();
    let marker_row = store.get_object("c", "k", None).await.unwrap().unwrap();
    let sole = DeleteRequest {
        version_id: None,
        bypass_governance: false,
        condition: DeleteCondition::SoleMarker(marker_row.seq),
    };
    assert!(
        matches!(
            store.delete_object("c", "k", &sole, 5).await,
            Err(MetaError::PreconditionFailed)
        ),
        "other versions exist"
    );
    for v in [&a, &b] {
        store
            .delete_object("c", "k", &delete_version(v), 5)
            .await
            .unwrap();
    }
    assert!(
        store
            .delete_object("c", "k", &sole, 6)
            .await
            .unwrap()
            .changed
    );
    assert!(store.get_object("c", "k", None).await.unwrap().is_none());
    assert!(marker.delete_marker);
    store.delete_bucket("c", 7).await.unwrap();
}

/// Job state round-trips and is replaced on save; a state that no longer decodes starts
/// afresh.
pub async fn job_state(store: Arc<dyn Records>) {
    #[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Progress {
        a: u32,
    }
    let fresh: Progress = store.job_state("lifecycle").await.unwrap();
    assert_eq!(fresh, Progress::default());
    store
        .save_job_state("lifecycle", &Progress { a: 1 })
        .await
        .unwrap();
    store
        .save_job_state("lifecycle", &Progress { a: 2 })
        .await
        .unwrap();
    let got: Progress = store.job_state("lifecycle").await.unwrap();
    assert_eq!(got, Progress { a: 2 });
    assert_eq!(
        store
            .record(kind::JOB, "lifecycle")
            .await
            .unwrap()
            .unwrap()
            .body,
        r#"{"a":2}"#,
        "a job's state is stored as its own JSON"
    );
    let rev = store
        .record(kind::JOB, "lifecycle")
        .await
        .unwrap()
        .unwrap()
        .rev;
    store
        .put_record(kind::JOB, "lifecycle", "not json", Some(rev))
        .await
        .unwrap()
        .unwrap();
    let reset: Progress = store.job_state("lifecycle").await.unwrap();
    assert_eq!(reset, Progress::default());
}

/// Run-time site records through the typed layer: saved (the last writer wins), listed by id,
/// removed idempotently; a body that does not decode is reported corrupt, not skipped.
pub async fn site_records(store: Arc<dyn Records>) {
    assert!(store.load_all::<SiteRecord>().await.unwrap().is_empty());
    let mut rec = SiteRecord {
        id: "s2".into(),
        definition: Some("{\"backend\":\"s3\"}".into()),
        state: "active".into(),
        changed_by: "alice".into(),
        changed_ms: 3,
    };
    assert_eq!(store.save(&rec.id, &rec).await.unwrap(), 1);
    rec.state = "draining".into();
    rec.changed_ms = 4;
    assert_eq!(store.save(&rec.id, &rec).await.unwrap(), 2);
    let cfg = SiteRecord {
        id: "a1".into(),
        definition: None,
        state: "draining".into(),
        changed_by: "bob".into(),
        changed_ms: 5,
    };
    store.save(&cfg.id, &cfg).await.unwrap();
    assert_eq!(
        store.load_all::<SiteRecord>().await.unwrap(),
        vec![cfg.clone(), rec.clone()]
    );
    let loaded = store.load::<SiteRecord>("s2").await.unwrap().unwrap();
    assert_eq!(
        (loaded.id.as_str(), loaded.rev, &loaded.value),
        ("s2", 2, &rec)
    );
    assert!(store.remove::<SiteRecord>("s2").await.unwrap());
    assert!(!store.remove::<SiteRecord>("s2").await.unwrap());
    assert_eq!(store.load_all::<SiteRecord>().await.unwrap(), vec![cfg]);
    // Kinds do not see each other's records.
    assert!(store.records(kind::JOB).await.unwrap().is_empty());

    // Concurrent last-writer-wins saves all land, one after another.
    let saves = (0..8).map(|n| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let rec = SiteRecord {
                id: "busy".into(),
                definition: None,
                state: "active".into(),
                changed_by: format!("w{n}"),
                changed_ms: n,
            };
            store.save("busy", &rec).await.unwrap()
        })
    });
    let mut revs: Vec<i64> = futures::future::join_all(saves)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    revs.sort_unstable();
    assert_eq!(revs, (1..=8).collect::<Vec<_>>());

    store
        .put_record(kind::SITE, "broken", "{", None)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        store.load::<SiteRecord>("broken").await,
        Err(crate::meta::MetaError::Corrupt(_))
    ));
}

/// The shared transparency-log sequence: concurrent appends get distinct, gapless indexes and
/// read back in order.
pub async fn ledger_sequence(store: Arc<dyn LogSequencing>) {
    assert!(store.ledger_read(0, 10).await.unwrap().is_empty());
    assert_eq!(store.ledger_append(&[b"a".to_vec()]).await.unwrap(), 0);
    let mut tasks = Vec::new();
    for t in 0..8u8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let batch: Vec<Vec<u8>> = (0..5u8).map(|i| vec![t, i]).collect();
            (t, store.ledger_append(&batch).await.unwrap())
        }));
    }
    let mut firsts = Vec::new();
    for task in tasks {
        firsts.push(task.await.unwrap());
    }
    let all = store.ledger_read(0, 1000).await.unwrap();
    assert_eq!(all.len(), 41);
    for (t, first) in firsts {
        // Each batch is contiguous, in its own order.
        for i in 0..5u8 {
            assert_eq!(all[first as usize + usize::from(i)], vec![t, i]);
        }
    }
    assert_eq!(store.ledger_read(40, 10).await.unwrap().len(), 1);
    assert_eq!(store.ledger_read(3, 2).await.unwrap(), all[3..5].to_vec());
    assert!(store.ledger_read(41, 10).await.unwrap().is_empty());
}

/// Versions listed by the key that wraps their data key, in pages, and re-wrapped only when
/// unchanged (the rotation job's compare-and-set).
pub async fn keyed_versions_and_rewrap(store: Arc<dyn MetaStore>) {
    store.create_bucket(&bucket("kv")).await.unwrap();
    let mut other = object("kv", "other", "e");
    other.encryption.as_mut().unwrap().wrapped.key_id = "kek_1".into();
    store
        .put_object(&other, &WriteCondition::None, 5)
        .await
        .unwrap();
    for i in 0..5 {
        store
            .put_object(
                &object("kv", &format!("k{i}"), "e"),
                &WriteCondition::None,
                10 + i,
            )
            .await
            .unwrap();
    }
    let first = store.keyed_versions("kek-1", None, 3).await.unwrap();
    assert_eq!(
        first.iter().map(|v| v.key.as_str()).collect::<Vec<_>>(),
        ["k0", "k1", "k2"]
    );
    let rest = store
        .keyed_versions("kek-1", first.last(), 3)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|v| v.key.as_str()).collect::<Vec<_>>(),
        ["k3", "k4"],
        "`kek_1` is another key even though `_` is a LIKE wildcard"
    );
    assert_eq!(
        store.keyed_versions("kek_1", None, 10).await.unwrap().len(),
        1
    );
    let mut new = first[0].encryption.clone();
    new.wrapped.key_version = 4;
    new.wrapped.wrapped = "cmV3cmFwcGVk".into();
    assert!(store.rewrap_version(&first[0], &new).await.unwrap());
    // The stale expectation no longer matches: nothing is overwritten.
    assert!(!store.rewrap_version(&first[0], &new).await.unwrap());
    let got = store.get_object("kv", "k0", None).await.unwrap().unwrap();
    assert_eq!(got.encryption, Some(new));
}

/// Boundary policy versions: each one more than the last, kept in order with who and when,
/// written in one transaction with the bucket, and gone with the bucket.
pub async fn boundary_versions(store: Arc<dyn MetaStore>) {
    use crate::residency::{BoundaryPolicy, BucketBoundary};

    let version = |v: u64, policy: Option<BoundaryPolicy>, who: &str| BucketBoundary {
        version: v,
        policy,
        set_by: who.into(),
        set_ms: 1_700_000_000_000 + i64::try_from(v).unwrap(),
    };
    let mut born_with = bucket("bnd");
    born_with.boundary = Some(version(1, None, "x"));
    assert!(matches!(
        store.create_bucket(&born_with).await,
        Err(MetaError::Invalid(_))
    ));
    assert!(store.get_bucket("bnd").await.unwrap().is_none());
    store.create_bucket(&bucket("bnd")).await.unwrap();
    assert!(store.boundary_history("bnd").await.unwrap().is_empty());
    let eu = BoundaryPolicy::allowing("eu", &["EU"]);
    let fr = BoundaryPolicy::allowing("fr", &["FR"]);

    // Versions must follow on: 2 before 1, or 1 twice, are refused and change nothing.
    for bad in [2, 0] {
        let err = store
            .update_bucket(
                "bnd",
                &BucketUpdate::Boundary(version(bad, Some(eu.clone()), "a")),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, MetaError::PreconditionFailed), "{err:?}");
    }
    let b = store
        .update_bucket(
            "bnd",
            &BucketUpdate::Boundary(version(1, Some(eu.clone()), "alice")),
        )
        .await
        .unwrap();
    assert_eq!(b.boundary, Some(version(1, Some(eu.clone()), "alice")));
    assert!(matches!(
        store
            .update_bucket(
                "bnd",
                &BucketUpdate::Boundary(version(1, Some(fr.clone()), "b"))
            )
            .await,
        Err(MetaError::PreconditionFailed)
    ));
    // Two writers racing for version 2: exactly one wins.
    let racers = ["bob", "carol"].map(|who| {
        let store = Arc::clone(&store);
        let v = version(2, Some(fr.clone()), who);
        tokio::spawn(async move { store.update_bucket("bnd", &BucketUpdate::Boundary(v)).await })
    });
    let mut wins = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(_) => wins += 1,
            Err(MetaError::PreconditionFailed) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(wins, 1);
    // Removing the policy is a version too; other settings keep it.
    store
        .update_bucket("bnd", &BucketUpdate::Boundary(version(3, None, "dave")))
        .await
        .unwrap();
    let b = store
        .update_bucket("bnd", &BucketUpdate::Versioning(Versioning::Enabled))
        .await
        .unwrap();
    assert_eq!(b.boundary, Some(version(3, None, "dave")));
    assert_eq!(
        store.get_bucket("bnd").await.unwrap().unwrap().boundary,
        b.boundary
    );
    let history = store.boundary_history("bnd").await.unwrap();
    let got: Vec<(u64, Option<&str>)> = history
        .iter()
        .map(|h| (h.version, h.policy.as_ref().map(|p| p.name.as_str())))
        .collect();
    assert_eq!(got, [(1, Some("eu")), (2, Some("fr")), (3, None)]);
    assert_eq!(history[0], version(1, Some(eu), "alice"));
    assert!(["bob", "carol"].contains(&history[1].set_by.as_str()));
    assert!(store.boundary_history("other").await.unwrap().is_empty());

    // Deleting the bucket removes its history: a new bucket of that name starts at 1.
    store.delete_bucket("bnd", 1).await.unwrap();
    store.create_bucket(&bucket("bnd")).await.unwrap();
    assert!(store.boundary_history("bnd").await.unwrap().is_empty());
    store
        .update_bucket("bnd", &BucketUpdate::Boundary(version(1, Some(fr), "erin")))
        .await
        .unwrap();
}

/// Replica site lists and checksums are kept with segments, parts and the trash; a site list
/// changes only from the value the caller expects; the repair's scan pages through every
/// blob; usage is counted per bucket and site list; run-time site records are kept.
pub async fn replica_records(store: Arc<dyn MetaStore>) {
    store.create_bucket(&bucket("rep")).await.unwrap();
    let obj = object("rep", "k", "e");
    store
        .put_object(&obj, &WriteCondition::None, 1)
        .await
        .unwrap();
    let got = store.get_object("rep", "k", None).await.unwrap().unwrap();
    assert_eq!(got.segments, obj.segments, "sites and CRC32C round-trip");
    let (a, b) = (&obj.segments[0], &obj.segments[1]);
    assert_eq!(
        store.blob_sites(a.blob).await.unwrap(),
        Some(a.sites.clone())
    );
    assert_eq!(store.blob_sites(b.blob).await.unwrap(), Some(Vec::new()));
    assert_eq!(store.blob_sites(BlobId::random()).await.unwrap(), None);

    // Compare-and-set on the site list.
    let moved = vec!["site-c".to_owned()];
    assert!(
        !store.set_blob_sites(a.blob, &moved, &moved).await.unwrap(),
        "stale expectation"
    );
    assert!(
        store
            .set_blob_sites(a.blob, &a.sites, &moved)
            .await
            .unwrap()
    );
    assert_eq!(store.blob_sites(a.blob).await.unwrap(), Some(moved.clone()));
    assert!(
        !store
            .set_blob_sites(BlobId::random(), &[], &moved)
            .await
            .unwrap()
    );

    // A part's list, and the scan over segments and parts in blob order.
    let up = upload("rep", "up", 5);
    store.create_upload(&up).await.unwrap();
    let p = part(4, 9);
    store.put_part(up.upload_id, &p, 5).await.unwrap();
    assert_eq!(
        store.blob_sites(p.blob).await.unwrap(),
        Some(p.sites.clone())
    );
    assert!(
        store
            .set_blob_sites(p.blob, &p.sites, &moved)
            .await
            .unwrap()
    );
    let parts = store.list_parts(up.upload_id, 0, 10).await.unwrap();
    assert_eq!(parts[0].sites, moved);
    assert_eq!(parts[0].crc32c, Some(4));
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.blob_placements(after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.blob);
        all.extend(page);
    }
    let mut want = vec![a.blob, b.blob, p.blob];
    want.sort_by_key(ToString::to_string);
    assert_eq!(
        all.iter().map(|x| x.blob).collect::<Vec<_>>(),
        want,
        "in blob order"
    );
    let of_part = all.iter().find(|x| x.blob == p.blob).unwrap();
    assert_eq!(
        (of_part.bucket.as_str(), of_part.key.as_str()),
        ("rep", "up")
    );
    assert_eq!((of_part.size_bytes, of_part.crc32c), (9, Some(4)));
    let of_a = all.iter().find(|x| x.blob == a.blob).unwrap();
    assert_eq!(
        (of_a.key.as_str(), of_a.sites.clone(), of_a.crc32c),
        ("k", moved.clone(), a.crc32c)
    );

    // Usage: segment a and the part on site-c, segment b on the primary (empty list).
    let usage = store.site_usage(Some("rep")).await.unwrap();
    let on = |sites: &[String]| {
        usage
            .iter()
            .find(|u| u.sites == sites)
            .map(|u| (u.blobs, u.bytes))
    };
    assert_eq!(on(&moved), Some((2, a.size_bytes + 9)));
    assert_eq!(on(&[]), Some((1, b.size_bytes)));
    assert!(store.site_usage(Some("nothing")).await.unwrap().is_empty());
    assert_eq!(store.site_usage(None).await.unwrap(), usage);

    // The trash keeps the lists, so every copy can be deleted.
    store
        .delete_object(
            "rep",
            "k",
            &DeleteRequest {
                version_id: None,
                bypass_governance: false,
                condition: DeleteCondition::None,
            },
            7,
        )
        .await
        .unwrap();
    store.abort_upload(up.upload_id, 7).await.unwrap();
    let trash = store.trash_before(i64::MAX, 10).await.unwrap();
    let sites_of = |blob: BlobId| {
        trash
            .iter()
            .find(|t| t.blob == blob)
            .map(|t| t.sites.clone())
    };
    assert_eq!(sites_of(a.blob), Some(moved.clone()));
    assert_eq!(sites_of(b.blob), Some(Vec::new()));
    assert_eq!(sites_of(p.blob), Some(moved.clone()));
    assert_eq!(
        store.blob_sites(a.blob).await.unwrap(),
        Some(moved.clone()),
        "trashed blobs are still referenced"
    );
    assert!(
        store.blob_placements(None, 10).await.unwrap().is_empty(),
        "the repair does not scan the trash"
    );
}

/// The record store: create-once, compare-and-set updates and deletes, listing by kind.
pub async fn iam_records(store: Arc<dyn Records>) {
    assert!(store.records("user").await.unwrap().is_empty());
    assert_eq!(store.record("user", "a/b").await.unwrap(), None);
    let put = |id: &'static str, body: &'static str, rev: Option<i64>| {
        let store = Arc::clone(&store);
        async move { store.put_record("user", id, body, rev).await.unwrap() }
    };
    assert_eq!(put("t/bob", r#"{"n":1}"#, None).await, Some(1));
    // Creating it again loses: it exists.
    assert_eq!(put("t/bob", r#"{"n":9}"#, None).await, None);
    put("t/alice", "{}", None).await;
    store.put_record("tenant", "t", "{}", None).await.unwrap();
    // A stale revision loses; the current one wins and bumps it.
    assert_eq!(put("t/bob", r#"{"n":2}"#, Some(7)).await, None);
    assert_eq!(put("t/bob", r#"{"n":2}"#, Some(1)).await, Some(2));
    let bob = store.record("user", "t/bob").await.unwrap().unwrap();
    assert_eq!((bob.body.as_str(), bob.rev), (r#"{"n":2}"#, 2));
    let ids: Vec<String> = store
        .records("user")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["t/alice", "t/bob"]);
    assert!(!store.delete_record("user", "t/bob", 1).await.unwrap());
    assert!(store.delete_record("user", "t/bob", 2).await.unwrap());
    assert!(!store.delete_record("user", "t/bob", 2).await.unwrap());
    assert_eq!(store.records("user").await.unwrap().len(), 1);
    assert_eq!(store.records("tenant").await.unwrap().len(), 1);
}

/// Generates the conformance suites, one module per port with a `#[tokio::test]` per check;
/// `$make` is an async expression returning `(guard, Arc<dyn MetaStore>)`, the guard kept alive
/// for the test.
#[macro_export]
macro_rules! meta_conformance_tests {
    ($make:expr) => {
        mod object_index {
            #[allow(unused_imports)]
            use super::*;
            $crate::meta_conformance_tests!(@each $make; bucket_lifecycle, object_round_trip_and_trash,
                conditional_writes, conditional_race_has_one_winner,
                concurrent_writes_with_refusals_commit_the_rest, listing_order_and_bounds,
                delete_bucket_rules, versioning_semantics, version_listing, object_lock_rules,
                delete_conditions, keyed_versions_and_rewrap, boundary_versions);
        }
        mod uploads {
            #[allow(unused_imports)]
            use super::*;
            $crate::meta_conformance_tests!(@each $make; parts_and_uploads, complete_upload_is_atomic);
        }
        mod replica_index {
            #[allow(unused_imports)]
            use super::*;
            $crate::meta_conformance_tests!(@each $make; replica_records);
        }
        mod records {
            #[allow(unused_imports)]
            use super::*;
            $crate::meta_conformance_tests!(@each $make; iam_records, job_state, site_records);
        }
        mod leases {
            #[allow(unused_imports)]
            use super::*;
            $crate::meta_conformance_tests!(@each $make; leases_have_one_holder);
        }
        mod log_sequencing {
            #[allow(unused_imports)]
            use super::*;
            $crate::meta_conformance_tests!(@each $make; ledger_sequence);
        }
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_guard, store) = $make;
                $crate::conformance::meta::$name(store).await;
            }
        )*
    };
}

/// The rows a pre-record-store (schema v10) database's `sites`, `jobs` and `iam_records` tables
/// are seeded with by the backends' upgrade tests, in the column order those tables had.
pub const V10_ROWS: &[(&str, &str)] = &[
    (
        "sites",
        "'s2', '{\"backend\":\"s3\"}', 'draining', 'alice', 7",
    ),
    ("sites", "'a1', NULL, 'removed', 'bob', 8"),
    ("jobs", "'lifecycle', '{\"bucket\":\"b\"}', 9"),
    ("iam_records", "'tenant', 'acme', '{}', 3"),
];

/// After the upgrade, the [`V10_ROWS`] are records of their kinds: the site records whole,
/// the job state and the identity record with their bodies and revisions.
pub async fn v10_rows_are_records(store: &(impl crate::meta::Records + ?Sized)) {
    assert_eq!(
        store.load_all::<SiteRecord>().await.unwrap(),
        [
            SiteRecord {
                id: "a1".into(),
                definition: None,
                state: "removed".into(),
                changed_by: "bob".into(),
                changed_ms: 8,
            },
            SiteRecord {
                id: "s2".into(),
                definition: Some(r#"{"backend":"s3"}"#.into()),
                state: "draining".into(),
                changed_by: "alice".into(),
                changed_ms: 7,
            },
        ]
    );
    let job = store.record(kind::JOB, "lifecycle").await.unwrap().unwrap();
    assert_eq!(job.body, r#"{"bucket":"b"}"#);
    let tenant = store.record(kind::TENANT, "acme").await.unwrap().unwrap();
    assert_eq!((tenant.body.as_str(), tenant.rev), ("{}", 3));
}
