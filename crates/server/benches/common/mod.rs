//! What the benchmarks share: a two-worker runtime, a body streamed in chunks, a PUT and a GET
//! through the object service, and a collector pass that empties the trash.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use vallum_core::blob::ByteStream;
use vallum_core::meta::{ObjectAttrs, WriteCondition};
use vallum_core::service::{BodyCheck, ObjectService, PutObject, ReadConditions};

/// Deletes trashed blobs at once, touches nothing else.
pub const EMPTY_TRASH: vallum_core::gc::GcPolicy = vallum_core::gc::GcPolicy {
    trash_grace: Duration::ZERO,
    multipart_expiry: Duration::from_secs(86_400),
    orphan_age: Duration::from_secs(86_400),
};

/// A multi-threaded runtime with two workers (the machine's cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `data` as a body of `chunk`-byte pieces.
pub fn body(data: &Bytes, chunk: usize) -> ByteStream {
    let chunks: Vec<std::io::Result<Bytes>> = (0..data.len())
        .step_by(chunk)
        .map(|i| Ok(data.slice(i..(i + chunk).min(data.len()))))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

/// PUTs `data` as `bucket/key`, streamed in 256 KiB pieces.
pub async fn put(service: &ObjectService, bucket: &str, key: String, data: &Bytes) {
    let ctx = &vallum_core::context::RequestContext::system("test");
    let req = PutObject {
        bucket: bucket.into(),
        key,
        attrs: ObjectAttrs::default(),
        check: BodyCheck {
            content_length: Some(data.len() as u64),
            ..BodyCheck::default()
        },
        condition: WriteCondition::None,
        tags: Default::default(),
        lock: Default::default(),
        sse: Default::default(),
    };
    service
        .put_object(ctx, req, body(data, 256 << 10))
        .await
        .unwrap();
}

/// GETs `bucket/key` through the object service, reading the body to its end; its length.
pub async fn get(service: &ObjectService, bucket: &str, key: &str) -> usize {
    let ctx = &vallum_core::context::RequestContext::system("test");
    let read = service
        .get_object(ctx, bucket, key, None, None, &ReadConditions::default())
        .await
        .unwrap();
    let mut n = 0;
    let mut s = read.body;
    while let Some(chunk) = s.next().await {
        n += chunk.unwrap().len();
    }
    n
}
