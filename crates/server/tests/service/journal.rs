//! What the object service records, and that a request fails when its record cannot be
//! written: the journal here is the in-memory one, switched to failing — the one fault (the log
//! device refusing writes) a test cannot cause on the real log file once it is open.
//!
//! Also the storage faults a test cannot cause on a real disk on demand (EIO, a short write
//! the disk reports as complete, a connection lost mid-read), injected by
//! `FaultInjectingBlobStore` around the real local store: nothing is acknowledged that is not
//! whole, and nothing half-written becomes visible.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use vallum_blob::LocalBlobStore;
use vallum_core::Error;
use vallum_core::clock::SystemClock;
use vallum_core::context::RequestContext;
use vallum_core::journal::{Event, KeyPrivacy, KeyRef, MemoryJournal, SiteRef, keyed_hash};
use vallum_core::meta::{ObjectAttrs, WriteCondition};
use vallum_core::service::{
    BodyCheck, ByteRange, LockRequest, ObjectService, PutObject, ReadConditions,
};
use vallum_meta::SqliteMetaStore;
use zeroize::Zeroizing;

async fn service(dir: &std::path::Path, journal: Arc<MemoryJournal>) -> ObjectService {
    let meta = SqliteMetaStore::open(&dir.join("meta.db")).await.unwrap();
    ObjectService::new(
        Arc::new(meta),
        Arc::new(LocalBlobStore::open(dir.join("blobs")).unwrap()),
        Arc::new(SystemClock),
        "us-east-1",
        journal,
        vallum_server::keys::open_keys(dir, &vallum_server::config::KeysConfig::default())
            .await
            .unwrap(),
    )
    .with_site(SiteRef {
        id: "paris-1".into(),
        jurisdiction: "FR".into(),
        exposures: vec![],
    })
    .with_key_privacy(KeyPrivacy::new(
        Zeroizing::new([9; 32]),
        vec!["private".into()],
    ))
}

fn put_req(bucket: &str, key: &str) -> PutObject {
    PutObject {
        bucket: bucket.into(),
        key: key.into(),
        attrs: ObjectAttrs::default(),
        check: BodyCheck::default(),
        condition: WriteCondition::None,
        tags: Default::default(),
        lock: LockRequest::default(),
        sse: Default::default(),
    }
}

fn body(data: &'static [u8]) -> vallum_core::blob::ByteStream {
    Box::pin(futures::stream::iter([Ok(Bytes::from_static(data))]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_access_is_recorded_by_whom_and_a_failing_log_fails_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(MemoryJournal::default());
    let s = service(dir.path(), Arc::clone(&journal)).await;
    // Who acts is the context every call takes.
    let ctx = &RequestContext::new("key:AKIATEST", Some("req-42".into()));
    {
        s.create_bucket(ctx, "public").await.unwrap();
        s.create_bucket(ctx, "private").await.unwrap();
        s.put_object(ctx, put_req("public", "a.txt"), body(b"hello world"))
            .await
            .unwrap();
        s.put_object(ctx, put_req("private", "patient-123.pdf"), body(b"x"))
            .await
            .unwrap();
        let read = s
            .get_object(
                ctx,
                "public",
                "a.txt",
                None,
                Some(ByteRange::From {
                    first: 6,
                    last: None,
                }),
                &ReadConditions::default(),
            )
            .await
            .unwrap();
        let bytes: Vec<Bytes> = read.body.try_collect().await.unwrap();
        assert_eq!(bytes.concat(), b"world");
        s.delete_object(ctx, "public", "a.txt", None, false)
            .await
            .unwrap();
    }
    let all = journal.entries();
    // Every object is encrypted: each write wraps its data key, each read unwraps it, and
    // each key use is an entry of its own, before the data event.
    let types: Vec<&str> = all.iter().map(|e| e.event.type_name()).collect();
    assert_eq!(
        types,
        [
            "bucket_created",
            "bucket_created",
            "key_used",
            "object_stored",
            "key_used",
            "object_stored",
            "key_used",
            "object_read",
            "object_deleted"
        ]
    );
    assert!(
        all.iter()
            .all(|e| e.actor == "key:AKIATEST" && e.request_id.as_deref() == Some("req-42"))
    );
    let entries: Vec<_> = all
        .into_iter()
        .filter(|e| e.event.type_name() != "key_used")
        .collect();
    assert!(
        entries
            .iter()
            .all(|e| e.actor == "key:AKIATEST" && e.request_id.as_deref() == Some("req-42"))
    );
    let Event::ObjectStored {
        sites, size, key, ..
    } = &entries[2].event
    else {
        panic!("{:?}", entries[2]);
    };
    assert_eq!((sites[0].jurisdiction.as_str(), *size), ("FR", 11));
    assert_eq!(key, &KeyRef::Plain("a.txt".into()));
    // The private bucket's key is only a keyed hash in the log.
    let Event::ObjectStored { key, .. } = &entries[3].event else {
        panic!()
    };
    assert_eq!(
        key,
        &KeyRef::Hmac(keyed_hash(&[9; 32], "private", "patient-123.pdf"))
    );
    let Event::ObjectRead { first, length, .. } = &entries[4].event else {
        panic!()
    };
    assert_eq!((*first, *length), (6, 5));

    // The log stops accepting: writes are refused (and reported as retryable), reads return
    // no bytes.
    journal.fail_from_now_on();
    let err = s
        .put_object(ctx, put_req("public", "b.txt"), body(b"data"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    let err = s
        .get_object(
            ctx,
            "private",
            "patient-123.pdf",
            None,
            None,
            &ReadConditions::default(),
        )
        .await
        .err()
        .expect("a read must not succeed without its log entry");
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
}

async fn faulty_service(dir: &std::path::Path) -> (ObjectService, Arc<vallum_blob::FaultPlan>) {
    let meta = SqliteMetaStore::open(&dir.join("meta.db")).await.unwrap();
    let local: Arc<dyn vallum_core::blob::BlobStore> =
        Arc::new(LocalBlobStore::open(dir.join("blobs")).unwrap());
    let (faulty, plan) = vallum_blob::FaultInjectingBlobStore::new(local);
    let s = ObjectService::new(
        Arc::new(meta),
        Arc::new(faulty),
        Arc::new(SystemClock),
        "us-east-1",
        Arc::new(MemoryJournal::default()),
        vallum_server::keys::open_keys(dir, &vallum_server::config::KeysConfig::default())
            .await
            .unwrap(),
    );
    (s, plan)
}

/// Blobs, packed or not, the store's directory holds (what a failed write must not leave
/// behind), as a fresh open of the directory finds them.
fn blob_files(dir: &std::path::Path) -> usize {
    LocalBlobStore::open(dir.join("blobs"))
        .unwrap()
        .blob_ids()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_storage_faults_never_acknowledge_a_partial_write() {
    let ctx = &vallum_core::context::RequestContext::system("test");
    use vallum_blob::Fault;
    let dir = tempfile::tempdir().unwrap();
    let (s, plan) = faulty_service(dir.path()).await;
    s.create_bucket(ctx, "faults").await.unwrap();
    let payload: &'static [u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    for (fault, want) in [
        (Fault::NoSpace, "StorageFull"),
        (Fault::Io, "Blob"),
        (Fault::ShortWrite(10), "Blob"),
        (Fault::Unavailable, "Unavailable"),
        (Fault::CutAfter(5), "Unavailable"),
    ] {
        plan.on_put(fault);
        let err = s
            .put_object(ctx, put_req("faults", "k"), body(payload))
            .await
            .unwrap_err();
        let kind = format!("{err:?}");
        assert!(kind.starts_with(want), "{fault:?}: {kind}");
        // Nothing visible, nothing left on the disk.
        assert!(matches!(
            s.head_object("faults", "k", None).await,
            Err(Error::NoSuchKey)
        ));
        assert_eq!(blob_files(dir.path()), 0, "{fault:?} left a blob behind");
    }
    // A slow disk is only slow.
    plan.on_put(Fault::Latency(std::time::Duration::from_millis(50)));
    s.put_object(ctx, put_req("faults", "k"), body(payload))
        .await
        .unwrap();

    // A read whose connection is lost mid-body fails; it never ends early as if complete.
    // (The object is encrypted: the cut may fall in the segment header the read opens before
    // answering, or in the body; either way the read fails.)
    plan.on_get(Fault::CutAfter(7));
    let cut = match s
        .get_object(ctx, "faults", "k", None, None, &ReadConditions::default())
        .await
    {
        Ok(read) => read.body.try_collect::<Vec<Bytes>>().await.is_err(),
        Err(e) => matches!(
            e,
            Error::Integrity(_) | Error::Unavailable(_) | Error::Blob(_)
        ),
    };
    assert!(cut, "a cut read completed");
    plan.on_get(Fault::Io);
    assert!(
        s.get_object(ctx, "faults", "k", None, None, &ReadConditions::default())
            .await
            .is_err()
    );
    // And without faults, the object is whole.
    let read = s
        .get_object(ctx, "faults", "k", None, None, &ReadConditions::default())
        .await
        .unwrap();
    let bytes: Vec<Bytes> = read.body.try_collect().await.unwrap();
    assert_eq!(bytes.concat(), payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_metadata_faults_fail_the_request_and_leave_nothing() {
    let ctx = &vallum_core::context::RequestContext::system("test");
    use vallum_meta::MetaFault;
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn vallum_core::meta::MetaStore> = Arc::new(
        SqliteMetaStore::open(&dir.path().join("meta.db"))
            .await
            .unwrap(),
    );
    let (meta, plan) = vallum_meta::FaultInjectingMetaStore::new(sqlite);
    let journal = Arc::new(MemoryJournal::default());
    let s = ObjectService::new(
        Arc::new(meta),
        Arc::new(LocalBlobStore::open(dir.path().join("blobs")).unwrap()),
        Arc::new(SystemClock),
        "us-east-1",
        Arc::clone(&journal) as Arc<dyn vallum_core::journal::Journal>,
        vallum_server::keys::open_keys(dir.path(), &vallum_server::config::KeysConfig::default())
            .await
            .unwrap(),
    );
    s.create_bucket(ctx, "faults").await.unwrap();
    s.put_object(ctx, put_req("faults", "kept"), body(b"kept"))
        .await
        .unwrap();
    for (fault, want) in [
        (MetaFault::StorageFull, "StorageFull"),
        (MetaFault::ConnectionLost, "Unavailable"),
        (MetaFault::Io, "Meta"),
    ] {
        // A write whose commit fails: an error, nothing visible, its blob removed, nothing
        // in the log.
        plan.on_write(fault);
        let err = s
            .put_object(ctx, put_req("faults", "new"), body(b"never acknowledged"))
            .await
            .unwrap_err();
        assert!(format!("{err:?}").starts_with(want), "{fault:?}: {err:?}");
        assert!(matches!(
            s.head_object("faults", "new", None).await,
            Err(Error::NoSuchKey)
        ));
        assert_eq!(blob_files(dir.path()), 1, "{fault:?} left a blob behind");
        // A delete that cannot commit leaves the object.
        plan.on_write(fault);
        assert!(
            s.delete_object(ctx, "faults", "kept", None, false)
                .await
                .is_err()
        );
        assert!(s.head_object("faults", "kept", None).await.is_ok());
    }
    let stored: Vec<_> = journal
        .entries()
        .into_iter()
        .filter(|e| {
            matches!(
                e.event,
                Event::ObjectStored { .. } | Event::ObjectDeleted { .. }
            )
        })
        .collect();
    assert_eq!(
        stored.len(),
        1,
        "the log records writes that did not commit: {stored:?}"
    );
    // A read that cannot reach the store fails as retryable.
    plan.on_read(MetaFault::ConnectionLost);
    let read = s
        .get_object(
            ctx,
            "faults",
            "kept",
            None,
            None,
            &ReadConditions::default(),
        )
        .await;
    assert!(
        matches!(read, Err(Error::Unavailable(_))),
        "{:?}",
        read.err()
    );
}
