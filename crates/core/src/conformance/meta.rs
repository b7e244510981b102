//! The `MetaStore` contract.

use std::sync::Arc;

use vallum_types::{BlobId, UploadId};

use crate::meta::{
    BucketRecord, ListStart, MetaError, MetaStore, ObjectAttrs, ObjectRecord, PartRecord, Segment,
    UploadRecord, WriteCondition,
};

fn bucket(name: &str) -> BucketRecord {
    BucketRecord {
        name: name.into(),
        created_ms: 1_700_000_000_000,
        location: "eu-west-1".into(),
    }
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
            },
            Segment {
                blob: BlobId::random(),
                size_bytes: 20,
            },
        ],
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
    }
}

fn part(n: u32, size: u64) -> PartRecord {
    PartRecord {
        part_number: n,
        blob: BlobId::random(),
        size_bytes: size,
        etag: format!("{n:032x}"),
        checksums: Default::default(),
        last_modified_ms: 1,
    }
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
        store.get_object("b", "dir/k").await.unwrap(),
        Some(first.clone())
    );
    for seg in &first.segments {
        assert!(store.blob_in_use(seg.blob).await.unwrap());
    }
    let second = object("b", "dir/k", "e2");
    store
        .put_object(&second, &WriteCondition::None, 200)
        .await
        .unwrap();
    assert_eq!(
        store.get_object("b", "dir/k").await.unwrap().unwrap().etag,
        "e2"
    );
    let trashed = store.trash_before(201, 100).await.unwrap();
    for seg in &first.segments {
        assert!(
            trashed.contains(&seg.blob),
            "replaced blobs must be trashed"
        );
    }
    assert!(
        store.trash_before(200, 100).await.unwrap().is_empty(),
        "trash_before is strict"
    );
    store.forget_trash(&trashed).await.unwrap();
    assert!(store.trash_before(i64::MAX, 100).await.unwrap().is_empty());
    for seg in &first.segments {
        assert!(!store.blob_in_use(seg.blob).await.unwrap());
    }
    let removed = store.delete_object("b", "dir/k", 300).await.unwrap();
    assert_eq!(removed.map(|o| o.etag), Some("e2".to_owned()));
    assert!(
        store
            .delete_object("b", "dir/k", 300)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.get_object("b", "dir/k").await.unwrap().is_none());
    let trashed = store.trash_before(i64::MAX, 100).await.unwrap();
    assert!(second.segments.iter().all(|s| trashed.contains(&s.blob)));
    for seg in &second.segments {
        assert!(
            store.blob_in_use(seg.blob).await.unwrap(),
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
        store.delete_object("nope", "k", 1).await,
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
            &object("b", "k", "e3"),
            &WriteCondition::IfMatch("*".into()),
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_object("b", "k").await.unwrap().unwrap().etag,
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
    let wins = results.iter().filter(|r| matches!(r, Ok(Ok(())))).count();
    let losses = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(MetaError::PreconditionFailed))))
        .count();
    assert_eq!((wins, losses), (1, 15));
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
    store.delete_object("b", "k", 1).await.unwrap();
    let up = upload("b", "k", 1);
    store.create_upload(&up).await.unwrap();
    let p = part(1, 10);
    store.put_part(up.upload_id, &p, 1).await.unwrap();
    store.delete_bucket("b", 2).await.unwrap();
    assert!(store.get_upload(up.upload_id).await.unwrap().is_none());
    assert!(
        store
            .trash_before(i64::MAX, 100)
            .await
            .unwrap()
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
        store
            .trash_before(i64::MAX, 10)
            .await
            .unwrap()
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
        },
        Segment {
            blob: p3.blob,
            size_bytes: 5,
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
    assert_eq!(store.get_object("b", "k").await.unwrap(), Some(obj.clone()));
    assert!(store.get_upload(up.upload_id).await.unwrap().is_none());
    let trash = store.trash_before(i64::MAX, 100).await.unwrap();
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
pub async fn leases_have_one_holder(store: Arc<dyn MetaStore>) {
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

/// Generates one `#[tokio::test]` per meta check; `$make` is an async expression returning
/// `(guard, Arc<dyn MetaStore>)`, the guard kept alive for the test.
#[macro_export]
macro_rules! meta_conformance_tests {
    ($make:expr) => {
        $crate::meta_conformance_tests!(@each $make; bucket_lifecycle, object_round_trip_and_trash, conditional_writes,
            conditional_race_has_one_winner, listing_order_and_bounds, delete_bucket_rules, parts_and_uploads, complete_upload_is_atomic,
            leases_have_one_holder);
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
