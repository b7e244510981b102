//! The `BlobStore` contract.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use vallum_types::BlobId;

use crate::blob::{BlobError, BlobStore, ByteStream};

fn stream_of(chunks: Vec<Vec<u8>>) -> ByteStream {
    Box::pin(futures::stream::iter(
        chunks.into_iter().map(|c| Ok(Bytes::from(c))),
    ))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn read_all(store: &dyn BlobStore, id: BlobId, range: std::ops::Range<u64>) -> Vec<u8> {
    let mut s = store.get(id, range).await.expect("get");
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

/// Written bytes read back whole and by range; size is reported.
pub async fn put_get_ranges(store: &dyn BlobStore) {
    let data = pattern(300_000, 7);
    let id = BlobId::random();
    let chunks = data.chunks(65_536).map(<[u8]>::to_vec).collect();
    assert_eq!(
        store.put(id, stream_of(chunks)).await.unwrap(),
        data.len() as u64
    );
    assert_eq!(store.size(id).await.unwrap(), data.len() as u64);
    assert_eq!(read_all(store, id, 0..data.len() as u64).await, data);
    assert_eq!(read_all(store, id, 1000..1010).await, data[1000..1010]);
    assert_eq!(read_all(store, id, 299_990..300_000).await, data[299_990..]);
    // Ranges on either side of one stream chunk (256 KiB), away from the start.
    assert_eq!(read_all(store, id, 10..290_000).await, data[10..290_000]);
    assert_eq!(
        read_all(store, id, 7..7 + 262_144).await,
        data[7..7 + 262_144]
    );
    assert!(read_all(store, id, 5..5).await.is_empty());
    assert!(matches!(
        store.get(id, 0..300_001).await,
        Err(BlobError::OutOfRange { .. })
    ));
}

/// An empty blob is a blob.
pub async fn empty_blob(store: &dyn BlobStore) {
    let id = BlobId::random();
    assert_eq!(store.put(id, stream_of(vec![])).await.unwrap(), 0);
    assert_eq!(store.size(id).await.unwrap(), 0);
    assert!(read_all(store, id, 0..0).await.is_empty());
}

/// A failing input stream leaves no blob behind.
pub async fn failed_stream_leaves_nothing(store: &dyn BlobStore) {
    let id = BlobId::random();
    let failing: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from_static(b"partial data")),
        Err(io::Error::other("client went away")),
    ]));
    assert!(matches!(
        store.put(id, failing).await,
        Err(BlobError::Source(_))
    ));
    assert!(matches!(store.size(id).await, Err(BlobError::NotFound(_))));
    assert!(matches!(
        store.get(id, 0..1).await,
        Err(BlobError::NotFound(_))
    ));
    assert_eq!(
        store.sweep_temp(Duration::ZERO).await.unwrap(),
        0,
        "temp data of a failed write must be removed at once"
    );
}

/// Missing blobs are `NotFound`; delete is idempotent.
pub async fn delete_is_idempotent(store: &dyn BlobStore) {
    let id = BlobId::random();
    assert!(matches!(store.size(id).await, Err(BlobError::NotFound(_))));
    store.delete(id).await.unwrap();
    store.put(id, stream_of(vec![b"x".to_vec()])).await.unwrap();
    store.delete(id).await.unwrap();
    store.delete(id).await.unwrap();
    assert!(matches!(store.size(id).await, Err(BlobError::NotFound(_))));
}

/// `list_older_than` sees written blobs once they are old enough, and not before.
pub async fn lists_by_age(store: &dyn BlobStore) {
    let id = BlobId::random();
    store
        .put(id, stream_of(vec![b"abc".to_vec()]))
        .await
        .unwrap();
    assert!(
        !store
            .list_older_than(Duration::from_secs(3600))
            .await
            .unwrap()
            .contains(&id)
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        store
            .list_older_than(Duration::ZERO)
            .await
            .unwrap()
            .contains(&id)
    );
}

/// Concurrent writers of different blobs do not interfere.
pub async fn concurrent_puts(store: &dyn BlobStore) {
    let ids: Vec<BlobId> = (0..16).map(|_| BlobId::random()).collect();
    let writes = ids.iter().enumerate().map(|(i, id)| {
        let data = pattern(10_000 + i * 100, i as u8);
        async move { store.put(*id, stream_of(vec![data])).await }
    });
    for r in futures::future::join_all(writes).await {
        r.unwrap();
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            read_all(store, *id, 0..(10_000 + i * 100) as u64).await,
            pattern(10_000 + i * 100, i as u8)
        );
    }
}

/// Every check above, in order, on one store (for stores that are costly to set up, such as
/// a remote site started for the test).
pub async fn all(store: &dyn BlobStore) {
    put_get_ranges(store).await;
    empty_blob(store).await;
    failed_stream_leaves_nothing(store).await;
    delete_is_idempotent(store).await;
    lists_by_age(store).await;
    concurrent_puts(store).await;
}

/// Generates one `#[tokio::test]` per blob check; `$make` is an async expression returning
/// something that derefs to a `BlobStore` (kept alive for the test).
#[macro_export]
macro_rules! blob_conformance_tests {
    ($make:expr) => {
        $crate::blob_conformance_tests!(@each $make; put_get_ranges, empty_blob, failed_stream_leaves_nothing, delete_is_idempotent, lists_by_age, concurrent_puts);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let store = $make;
                $crate::conformance::blob::$name(&*store).await;
            }
        )*
    };
}
