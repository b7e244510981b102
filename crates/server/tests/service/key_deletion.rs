//! Scheduled key deletion driven by an injectable clock: nothing is destroyed before the
//! waiting period ends, cancelling keeps the key, and at the due time the key is destroyed with
//! a report of what became unrecoverable.

use std::sync::Arc;

use bytes::Bytes;
use vallum_blob::LocalBlobStore;
use vallum_core::clock::ManualClock;
use vallum_core::crypt::KeyService;
use vallum_core::keyadmin::KeyAdmin;
use vallum_core::meta::{ObjectAttrs, WriteCondition};
use vallum_core::service::{BodyCheck, ObjectService, PutObject, SseRequest};
use vallum_crypto::keyring::{LocalKeyring, RootKey};
use vallum_crypto::keys::KeyState;
use vallum_meta::SqliteMetaStore;

const DAY_MS: i64 = 86_400_000;
const T0: i64 = 1_768_039_200_000;

#[tokio::test]
async fn a_scheduled_deletion_destroys_the_key_only_when_due_and_reports_it() {
    let ctx = &vallum_core::context::RequestContext::system("test");
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let ring = Arc::new(
        LocalKeyring::open(
            &dir.path().join("keyring"),
            &RootKey::File(dir.path().join("root.key")),
        )
        .unwrap(),
    );
    let keys = KeyService::new(ring, "default".into(), 65536);
    let meta = SqliteMetaStore::open(&dir.path().join("meta.db"))
        .await
        .unwrap();
    let s = ObjectService::new(
        Arc::new(meta),
        Arc::new(LocalBlobStore::open(dir.path().join("blobs")).unwrap()),
        clock.clone(),
        "us-east-1",
        Arc::new(vallum_core::journal::MemoryJournal::default()),
        Arc::new(keys),
    );
    let k = KeyAdmin::of(&s);
    k.create_key(ctx, "default").await.unwrap();
    k.create_key(ctx, "doomed").await.unwrap();
    k.create_key(ctx, "kept").await.unwrap();
    s.create_bucket(ctx, "bkt").await.unwrap();
    for (key, kek) in [("a", "doomed"), ("b", "doomed"), ("c", "kept")] {
        let req = PutObject {
            bucket: "bkt".into(),
            key: key.into(),
            attrs: ObjectAttrs::default(),
            check: BodyCheck::default(),
            condition: WriteCondition::None,
            tags: Default::default(),
            lock: Default::default(),
            sse: SseRequest {
                key_id: Some(kek.into()),
                ..Default::default()
            },
        };
        let body = Box::pin(futures::stream::iter([Ok(Bytes::from_static(b"12345"))]));
        s.put_object(ctx, req, body).await.unwrap();
    }
    assert!(
        k.schedule_key_deletion(ctx, "doomed", 6).await.is_err(),
        "under 7 days"
    );
    assert!(
        k.schedule_key_deletion(ctx, "doomed", 31).await.is_err(),
        "over 30 days"
    );
    let pending = k.schedule_key_deletion(ctx, "doomed", 7).await.unwrap();
    assert_eq!(
        pending.state,
        KeyState::PendingDeletion {
            delete_at_ms: T0 + 7 * DAY_MS
        }
    );
    k.schedule_key_deletion(ctx, "kept", 7).await.unwrap();
    k.set_key_state(ctx, "kept", KeyState::Enabled)
        .await
        .unwrap();

    clock.advance_ms(7 * DAY_MS - 1);
    assert!(k.destroy_due_keys(ctx).await.unwrap().is_empty());
    assert!(matches!(
        k.describe_key("doomed").await.unwrap().state,
        KeyState::PendingDeletion { .. }
    ));
    clock.advance_ms(1);
    let reports = k.destroy_due_keys(ctx).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].key_id, "doomed");
    assert_eq!(
        (
            reports[0].unrecoverable.versions,
            reports[0].unrecoverable.bytes
        ),
        (2, 10)
    );
    assert_eq!(reports[0].key.state, KeyState::Destroyed);
    assert_eq!(
        k.describe_key("kept").await.unwrap().state,
        KeyState::Enabled
    );
    assert!(
        s.get_object(ctx, "bkt", "a", None, None, &Default::default())
            .await
            .is_err()
    );
    assert!(
        s.get_object(ctx, "bkt", "c", None, None, &Default::default())
            .await
            .is_ok()
    );
    assert!(
        k.destroy_due_keys(ctx).await.unwrap().is_empty(),
        "once only"
    );
}
