//! The listing engine against a naive model: every prefix/delimiter/page-size combination,
//! paged to the end with continuation markers, must yield exactly the model's entries, in
//! order, with no page larger than asked.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use vallum_blob::LocalBlobStore;
use vallum_core::clock::SystemClock;
use vallum_core::list::Marker;
use vallum_core::meta::{ObjectAttrs, WriteCondition};
use vallum_core::service::{BodyCheck, ObjectService, PutObject};
use vallum_meta::SqliteMetaStore;

fn keys() -> Vec<String> {
    let alphabet = ["a", "b", "/", "é", "-", "ab"];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut out = BTreeSet::new();
    while out.len() < 300 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = 1 + (state % 6) as usize;
        let key: String = (0..len)
            .map(|i| alphabet[((state >> (i * 5)) % alphabet.len() as u64) as usize])
            .collect();
        out.insert(key);
    }
    out.into_iter().collect()
}

/// What S3 returns for the whole listing, as (is_prefix, text) in order.
fn model(keys: &[String], prefix: &str, delimiter: Option<&str>) -> Vec<(bool, String)> {
    let mut sorted: Vec<&String> = keys.iter().filter(|k| k.starts_with(prefix)).collect();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut out: Vec<(bool, String)> = Vec::new();
    for k in sorted {
        match delimiter.and_then(|d| {
            k[prefix.len()..]
                .find(d)
                .map(|p| k[..prefix.len() + p + d.len()].to_owned())
        }) {
            Some(cp) => {
                if out.last() != Some(&(true, cp.clone())) {
                    out.push((true, cp));
                }
            }
            None => out.push((false, k.clone())),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_matches_the_model() {
    let ctx = &vallum_core::context::RequestContext::system("test");
    let dir = tempfile::tempdir().unwrap();
    let meta = SqliteMetaStore::open(&dir.path().join("meta.db"))
        .await
        .unwrap();
    let blobs = LocalBlobStore::open(dir.path().join("blobs")).unwrap();
    let service = ObjectService::new(
        Arc::new(meta),
        Arc::new(blobs),
        Arc::new(SystemClock),
        "us-east-1",
        Arc::new(vallum_core::journal::MemoryJournal::default()),
        vallum_server::keys::open_keys(dir.path(), &vallum_server::config::KeysConfig::default())
            .await
            .unwrap(),
    );
    service.create_bucket(ctx, "model").await.unwrap();
    let keys = keys();
    for k in &keys {
        let req = PutObject {
            bucket: "model".into(),
            key: k.clone(),
            attrs: ObjectAttrs::default(),
            check: BodyCheck::default(),
            condition: WriteCondition::None,
            tags: Default::default(),
            lock: Default::default(),
            sse: Default::default(),
        };
        service
            .put_object(
                ctx,
                req,
                Box::pin(futures::stream::iter([Ok(Bytes::from_static(b"x"))])),
            )
            .await
            .unwrap();
    }
    let mut checked = 0;
    for prefix in ["", "a", "a/", "é", "ab", "/", "zz"] {
        for delimiter in [None, Some("/"), Some("é"), Some("ab")] {
            for max_keys in [1, 2, 7, 1000] {
                let expected = model(&keys, prefix, delimiter);
                let mut got = Vec::new();
                let mut start: Option<Marker> = None;
                loop {
                    let page = service
                        .list_objects("model", prefix, delimiter, start.clone(), max_keys)
                        .await
                        .unwrap();
                    assert!(page.objects.len() + page.common_prefixes.len() <= max_keys);
                    let mut entries: Vec<(bool, String)> = page
                        .objects
                        .iter()
                        .map(|o| (false, o.key.clone()))
                        .chain(page.common_prefixes.iter().map(|p| (true, p.clone())))
                        .collect();
                    entries.sort_by(|a, b| a.1.as_bytes().cmp(b.1.as_bytes()));
                    got.extend(entries);
                    if !page.truncated {
                        break;
                    }
                    // Continue through the opaque token, as a v2 client does.
                    start = Some(Marker::from_token(&page.next.unwrap().to_token()).unwrap());
                }
                assert_eq!(
                    got, expected,
                    "prefix {prefix:?} delimiter {delimiter:?} max_keys {max_keys}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 7 * 4 * 4);
}

/// What ListObjectVersions returns for the whole listing: (is_prefix, key or prefix, version).
fn version_model(
    versions: &[(String, Vec<String>)],
    prefix: &str,
    delimiter: Option<&str>,
) -> Vec<(bool, String, String)> {
    let mut out: Vec<(bool, String, String)> = Vec::new();
    for (k, ids) in versions.iter().filter(|(k, _)| k.starts_with(prefix)) {
        match delimiter.and_then(|d| {
            k[prefix.len()..]
                .find(d)
                .map(|p| k[..prefix.len() + p + d.len()].to_owned())
        }) {
            Some(cp) => {
                if out.last().map(|e| (e.0, e.1.as_str())) != Some((true, cp.as_str())) {
                    out.push((true, cp, String::new()));
                }
            }
            None => {
                for id in ids {
                    out.push((false, k.clone(), id.clone()));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_listing_matches_the_model() {
    let ctx = &vallum_core::context::RequestContext::system("test");
    use vallum_core::meta::BucketUpdate;
    use vallum_core::versioning::Versioning;

    let dir = tempfile::tempdir().unwrap();
    let meta = SqliteMetaStore::open(&dir.path().join("meta.db"))
        .await
        .unwrap();
    let service = ObjectService::new(
        Arc::new(meta),
        Arc::new(LocalBlobStore::open(dir.path().join("blobs")).unwrap()),
        Arc::new(SystemClock),
        "us-east-1",
        Arc::new(vallum_core::journal::MemoryJournal::default()),
        vallum_server::keys::open_keys(dir.path(), &vallum_server::config::KeysConfig::default())
            .await
            .unwrap(),
    );
    service.create_bucket(ctx, "model").await.unwrap();
    // Some keys get a null version written before versioning is enabled.
    let mut keys = keys();
    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let put = |key: String| PutObject {
        bucket: "model".into(),
        key,
        attrs: ObjectAttrs::default(),
        check: BodyCheck::default(),
        condition: WriteCondition::None,
        tags: Default::default(),
        lock: Default::default(),
        sse: Default::default(),
    };
    let body = || -> vallum_core::blob::ByteStream {
        Box::pin(futures::stream::iter([Ok(Bytes::from_static(b"x"))]))
    };
    let mut versions: Vec<(String, Vec<String>)> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let mut ids = Vec::new();
        if i % 4 == 0 {
            ids.push(
                service
                    .put_object(ctx, put(k.clone()), body())
                    .await
                    .unwrap()
                    .version_id,
            );
        }
        versions.push((k.clone(), ids));
    }
    service
        .update_bucket(ctx, "model", BucketUpdate::Versioning(Versioning::Enabled))
        .await
        .unwrap();
    for (i, (k, ids)) in versions.iter_mut().enumerate() {
        for _ in 0..(i % 3) {
            ids.push(
                service
                    .put_object(ctx, put(k.clone()), body())
                    .await
                    .unwrap()
                    .version_id,
            );
        }
        if i % 5 == 0 {
            let marker = service
                .delete_object(ctx, "model", k, None, false)
                .await
                .unwrap();
            ids.push(marker.version_id.unwrap());
        }
        ids.reverse();
    }
    versions.retain(|(_, ids)| !ids.is_empty());
    let mut checked = 0;
    for prefix in ["", "a", "a/", "é", "zz"] {
        for delimiter in [None, Some("/"), Some("ab")] {
            for max_keys in [1, 3, 1000] {
                let expected = version_model(&versions, prefix, delimiter);
                let mut got = Vec::new();
                let (mut key_marker, mut id_marker): (Option<String>, Option<String>) =
                    (None, None);
                loop {
                    let page = service
                        .list_versions(
                            "model",
                            prefix,
                            delimiter,
                            key_marker.as_deref(),
                            id_marker.as_deref(),
                            max_keys,
                        )
                        .await
                        .unwrap();
                    assert!(page.versions.len() + page.common_prefixes.len() <= max_keys);
                    let mut entries: Vec<(bool, String, String)> = page
                        .versions
                        .iter()
                        .map(|v| (false, v.key.clone(), v.version_id.clone()))
                        .chain(
                            page.common_prefixes
                                .iter()
                                .map(|p| (true, p.clone(), String::new())),
                        )
                        .collect();
                    entries.sort_by(|a, b| a.1.as_bytes().cmp(b.1.as_bytes()));
                    got.extend(entries);
                    if !page.truncated {
                        break;
                    }
                    key_marker = page.next_key_marker;
                    id_marker = page.next_version_id_marker;
                }
                assert_eq!(
                    got, expected,
                    "prefix {prefix:?} delimiter {delimiter:?} max_keys {max_keys}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 5 * 3 * 3);
}
