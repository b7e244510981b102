//! End to end with the Rust aws-sdk-s3 against the real `vallum` binary.

use crate::common;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, Delete,
    MetadataDirective, ObjectIdentifier,
};
use common::{Server, data, md5_hex};

const MIB: usize = 1024 * 1024;

fn code<E: ProvideErrorMetadata>(err: &E) -> String {
    err.code().unwrap_or("<none>").to_owned()
}

/// Completes upload `id` of bkt/big with `parts`, which must fail; returns the error code.
async fn complete_fails(s3: &aws_sdk_s3::Client, id: &str, parts: &[(i32, &str)]) -> String {
    let err = s3
        .complete_multipart_upload()
        .bucket("bkt")
        .key("big")
        .upload_id(id)
        .multipart_upload(common::completed(parts))
        .send()
        .await
        .unwrap_err();
    code(&err.into_service_error())
}

async fn body(out: aws_sdk_s3::operation::get_object::GetObjectOutput) -> Vec<u8> {
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

#[tokio::test]
async fn bucket_lifecycle_and_errors() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("alpha").send().await.unwrap();
    s3.create_bucket().bucket("beta").send().await.unwrap();
    // us-east-1's legacy answer to re-creating one's own bucket: 200, and nothing changes.
    s3.put_object()
        .bucket("alpha")
        .key("kept")
        .body(ByteStream::from_static(b"still here"))
        .send()
        .await
        .unwrap();
    s3.create_bucket().bucket("alpha").send().await.unwrap();
    assert_eq!(
        common::get_bytes(&s3, "alpha", "kept").await.as_ref(),
        b"still here"
    );
    s3.delete_object()
        .bucket("alpha")
        .key("kept")
        .send()
        .await
        .unwrap();
    let err = s3
        .create_bucket()
        .bucket("Bad_Name")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err.into_service_error()), "InvalidBucketName");
    let names: Vec<_> = s3
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    s3.head_bucket().bucket("alpha").send().await.unwrap();
    let err = s3.head_bucket().bucket("missing").send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(404));
    let loc = s3
        .get_bucket_location()
        .bucket("alpha")
        .send()
        .await
        .unwrap();
    assert!(
        matches!(
            loc.location_constraint().map(|c| c.as_str()),
            None | Some("")
        ),
        "us-east-1 is reported as an empty constraint"
    );
    s3.put_object()
        .bucket("alpha")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let err = s3
        .delete_bucket()
        .bucket("alpha")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code(&err), "BucketNotEmpty");
    s3.delete_object()
        .bucket("alpha")
        .key("k")
        .send()
        .await
        .unwrap();
    s3.delete_bucket().bucket("alpha").send().await.unwrap();
    let err = s3
        .delete_bucket()
        .bucket("alpha")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code(&err), "NoSuchBucket");
    let err = s3
        .put_object()
        .bucket("alpha")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code(&err), "NoSuchBucket");
}

#[tokio::test]
async fn put_get_head_with_headers_metadata_and_ranges() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let payload = data(300_000, 1);
    let put = s3
        .put_object()
        .bucket("bkt")
        .key("docs/report é.bin")
        .body(ByteStream::from(payload.clone()))
        .content_type("application/x-report")
        .content_encoding("identity")
        .content_disposition("attachment; filename=r.bin")
        .cache_control("max-age=60")
        .content_language("fr")
        .metadata("owner", "Alice")
        .metadata("case-id", "42")
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.e_tag(),
        Some(format!("\"{}\"", md5_hex(&payload)).as_str())
    );
    let got = s3
        .get_object()
        .bucket("bkt")
        .key("docs/report é.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("application/x-report"));
    assert_eq!(
        got.content_disposition(),
        Some("attachment; filename=r.bin")
    );
    assert_eq!(got.cache_control(), Some("max-age=60"));
    assert_eq!(got.content_language(), Some("fr"));
    assert_eq!(
        got.metadata().unwrap().get("owner").map(String::as_str),
        Some("Alice")
    );
    assert_eq!(got.content_length(), Some(300_000));
    assert_eq!(body(got).await, payload);

    let head = s3
        .head_object()
        .bucket("bkt")
        .key("docs/report é.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(300_000));
    assert_eq!(
        head.metadata().unwrap().get("case-id").map(String::as_str),
        Some("42")
    );

    let part = s3
        .get_object()
        .bucket("bkt")
        .key("docs/report é.bin")
        .range("bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.content_range(), Some("bytes 100-199/300000"));
    assert_eq!(body(part).await, payload[100..200]);
    let suffix = s3
        .get_object()
        .bucket("bkt")
        .key("docs/report é.bin")
        .range("bytes=-50")
        .send()
        .await
        .unwrap();
    assert_eq!(body(suffix).await, payload[299_950..]);
    let open = s3
        .get_object()
        .bucket("bkt")
        .key("docs/report é.bin")
        .range("bytes=299990-")
        .send()
        .await
        .unwrap();
    assert_eq!(body(open).await, payload[299_990..]);
    let err = s3
        .get_object()
        .bucket("bkt")
        .key("docs/report é.bin")
        .range("bytes=300000-")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(416));
    assert_eq!(code(&err.into_service_error()), "InvalidRange");

    let err = s3
        .get_object()
        .bucket("bkt")
        .key("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_no_such_key());
    let empty = s3
        .put_object()
        .bucket("bkt")
        .key("empty")
        .body(ByteStream::from_static(b""))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.e_tag(), Some("\"d41d8cd98f00b204e9800998ecf8427e\""));
    assert!(
        body(
            s3.get_object()
                .bucket("bkt")
                .key("empty")
                .send()
                .await
                .unwrap()
        )
        .await
        .is_empty()
    );
}

#[tokio::test]
async fn conditional_requests() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let etag = s3
        .put_object()
        .bucket("bkt")
        .key("k")
        .body(ByteStream::from_static(b"v1"))
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    s3.get_object()
        .bucket("bkt")
        .key("k")
        .if_match(&etag)
        .send()
        .await
        .unwrap();
    let err = s3
        .get_object()
        .bucket("bkt")
        .key("k")
        .if_match("\"0000\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(412));
    let err = s3
        .get_object()
        .bucket("bkt")
        .key("k")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(304));
    let future = aws_smithy_types::DateTime::from_secs(4_000_000_000);
    let past = aws_smithy_types::DateTime::from_secs(1_000_000_000);
    let err = s3
        .get_object()
        .bucket("bkt")
        .key("k")
        .if_modified_since(future)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(304));
    s3.get_object()
        .bucket("bkt")
        .key("k")
        .if_modified_since(past)
        .send()
        .await
        .unwrap();
    let err = s3
        .get_object()
        .bucket("bkt")
        .key("k")
        .if_unmodified_since(past)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(412));
    let err = s3
        .head_object()
        .bucket("bkt")
        .key("k")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(304));

    // Conditional writes.
    let err = s3
        .put_object()
        .bucket("bkt")
        .key("k")
        .if_none_match("*")
        .body(ByteStream::from_static(b"v2"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err.into_service_error()), "PreconditionFailed");
    s3.put_object()
        .bucket("bkt")
        .key("new")
        .if_none_match("*")
        .body(ByteStream::from_static(b"n"))
        .send()
        .await
        .unwrap();
    let err = s3
        .put_object()
        .bucket("bkt")
        .key("k")
        .if_match("\"0000\"")
        .body(ByteStream::from_static(b"v2"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err.into_service_error()), "PreconditionFailed");
    s3.put_object()
        .bucket("bkt")
        .key("k")
        .if_match(&etag)
        .body(ByteStream::from_static(b"v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        body(s3.get_object().bucket("bkt").key("k").send().await.unwrap()).await,
        b"v2"
    );
}

#[tokio::test]
async fn racing_if_none_match_writers_have_one_winner() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s3 = s3.clone();
            tokio::spawn(async move {
                s3.put_object()
                    .bucket("bkt")
                    .key("lock")
                    .if_none_match("*")
                    .body(ByteStream::from(vec![i as u8; 1000]))
                    .send()
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(e) => assert_eq!(code(&e.into_service_error()), "PreconditionFailed"),
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn checksums_and_digests_are_verified() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let payload = data(100_000, 2);
    for alg in [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ] {
        let key = format!("sum-{}", alg.as_str());
        let put = s3
            .put_object()
            .bucket("bkt")
            .key(&key)
            .checksum_algorithm(alg.clone())
            .body(ByteStream::from(payload.clone()))
            .send()
            .await
            .unwrap();
        let head = s3
            .head_object()
            .bucket("bkt")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        let (sent, stored) = match alg {
            ChecksumAlgorithm::Crc32 => (put.checksum_crc32(), head.checksum_crc32()),
            ChecksumAlgorithm::Crc32C => (put.checksum_crc32_c(), head.checksum_crc32_c()),
            ChecksumAlgorithm::Sha1 => (put.checksum_sha1(), head.checksum_sha1()),
            _ => (put.checksum_sha256(), head.checksum_sha256()),
        };
        assert!(
            sent.is_some(),
            "{key}: the server returns the checksum it verified"
        );
        assert_eq!(sent, stored, "{key}");
        // The SDK validates the returned checksum against the body on GET.
        let got = s3
            .get_object()
            .bucket("bkt")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(body(got).await, payload);
    }
    let err = s3
        .put_object()
        .bucket("bkt")
        .key("bad-md5")
        .content_md5("AAAAAAAAAAAAAAAAAAAAAA==")
        .body(ByteStream::from_static(b"data"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err.into_service_error()), "BadDigest");
    let err = s3
        .put_object()
        .bucket("bkt")
        .key("bad-crc")
        .checksum_crc32("AAAAAA==")
        .body(ByteStream::from_static(b"data"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err.into_service_error()), "BadDigest");
    let err = s3
        .head_object()
        .bucket("bkt")
        .key("bad-crc")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(404),
        "a failed upload leaves nothing"
    );
}

#[tokio::test]
async fn copy_object_with_metadata_directives() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("src").send().await.unwrap();
    s3.create_bucket().bucket("dst").send().await.unwrap();
    let payload = data(70_000, 3);
    s3.put_object()
        .bucket("src")
        .key("a")
        .content_type("text/x-a")
        .metadata("m", "1")
        .body(ByteStream::from(payload.clone()))
        .send()
        .await
        .unwrap();
    let copied = s3
        .copy_object()
        .bucket("dst")
        .key("copy")
        .copy_source("src/a")
        .send()
        .await
        .unwrap();
    assert_eq!(
        copied.copy_object_result().and_then(|r| r.e_tag()),
        Some(format!("\"{}\"", md5_hex(&payload)).as_str())
    );
    let got = s3
        .get_object()
        .bucket("dst")
        .key("copy")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("text/x-a"));
    assert_eq!(
        got.metadata().unwrap().get("m").map(String::as_str),
        Some("1")
    );
    assert_eq!(body(got).await, payload);
    s3.copy_object()
        .bucket("dst")
        .key("replaced")
        .copy_source("src/a")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("text/x-b")
        .metadata("n", "2")
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("dst")
        .key("replaced")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/x-b"));
    assert!(head.metadata().unwrap().get("m").is_none());
    assert_eq!(
        head.metadata().unwrap().get("n").map(String::as_str),
        Some("2")
    );
    let err = s3
        .copy_object()
        .bucket("src")
        .key("a")
        .copy_source("src/a")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err.into_service_error()), "InvalidRequest");
    let err = s3
        .copy_object()
        .bucket("dst")
        .key("x")
        .copy_source("src/missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err.into_service_error()), "NoSuchKey");
    let err = s3
        .copy_object()
        .bucket("dst")
        .key("x")
        .copy_source("src/a")
        .copy_source_if_match("\"nope\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err.into_service_error()), "PreconditionFailed");
}

#[tokio::test]
async fn batch_delete() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    for i in 0..10 {
        s3.put_object()
            .bucket("bkt")
            .key(format!("k{i}"))
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
    }
    let ids: Vec<_> = (0..5)
        .map(|i| {
            ObjectIdentifier::builder()
                .key(format!("k{i}"))
                .build()
                .unwrap()
        })
        .chain([ObjectIdentifier::builder()
            .key("never-existed")
            .build()
            .unwrap()])
        .collect();
    let out = s3
        .delete_objects()
        .bucket("bkt")
        .delete(Delete::builder().set_objects(Some(ids)).build().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(out.deleted().len(), 6);
    assert!(out.errors().is_empty());
    let left = s3.list_objects_v2().bucket("bkt").send().await.unwrap();
    let keys: Vec<_> = left.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["k5", "k6", "k7", "k8", "k9"]);
}

#[tokio::test]
async fn listing_pagination_delimiters_and_v1_markers() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let mut expected = Vec::new();
    let puts: Vec<_> = (0..1100)
        .map(|i| {
            let key = format!("logs/{:04}.txt", i);
            expected.push(key.clone());
            let s3 = s3.clone();
            async move {
                s3.put_object()
                    .bucket("bkt")
                    .key(key)
                    .body(ByteStream::from_static(b"l"))
                    .send()
                    .await
                    .unwrap()
            }
        })
        .collect();
    futures::future::join_all(puts).await;
    for k in ["a/1", "a/2", "b/x/1", "c", "d/"] {
        s3.put_object()
            .bucket("bkt")
            .key(k)
            .body(ByteStream::from_static(b"z"))
            .send()
            .await
            .unwrap();
    }
    // Pagination past 1000 keys.
    let mut got = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("bkt")
            .prefix("logs/")
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        got.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
    assert_eq!(pages, 2);
    assert_eq!(got, expected);
    // Delimiter: common prefixes count towards max-keys and page cleanly.
    let page = s3
        .list_objects_v2()
        .bucket("bkt")
        .delimiter("/")
        .max_keys(2)
        .send()
        .await
        .unwrap();
    let prefixes: Vec<_> = page
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["a/", "b/"]);
    assert_eq!(page.key_count(), Some(2));
    assert_eq!(page.is_truncated(), Some(true));
    let rest = s3
        .list_objects_v2()
        .bucket("bkt")
        .delimiter("/")
        .continuation_token(page.next_continuation_token().unwrap())
        .send()
        .await
        .unwrap();
    let prefixes: Vec<_> = rest
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["d/", "logs/"]);
    let keys: Vec<_> = rest.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["c"]);
    // start-after and fetch-owner.
    let after = s3
        .list_objects_v2()
        .bucket("bkt")
        .prefix("logs/")
        .start_after("logs/1097.txt")
        .fetch_owner(true)
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = after.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["logs/1098.txt", "logs/1099.txt"]);
    assert!(after.contents()[0].owner().and_then(|o| o.id()).is_some());
    // ListObjects v1 with marker and NextMarker.
    let v1 = s3
        .list_objects()
        .bucket("bkt")
        .delimiter("/")
        .max_keys(3)
        .send()
        .await
        .unwrap();
    assert_eq!(v1.is_truncated(), Some(true));
    assert_eq!(v1.next_marker(), Some("c"));
    let v1b = s3
        .list_objects()
        .bucket("bkt")
        .delimiter("/")
        .marker("c")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<_> = v1b
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["d/", "logs/"]);
    let nested = s3
        .list_objects_v2()
        .bucket("bkt")
        .prefix("b/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    assert_eq!(nested.common_prefixes()[0].prefix(), Some("b/x/"));
    let err = s3
        .list_objects_v2()
        .bucket("bkt")
        .continuation_token("garbage!")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err.into_service_error()), "InvalidArgument");
}

#[tokio::test]
async fn multipart_upload_full_cycle() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let source = data(6 * MIB, 4);
    s3.put_object()
        .bucket("bkt")
        .key("source")
        .body(ByteStream::from(source.clone()))
        .send()
        .await
        .unwrap();
    let up = s3
        .create_multipart_upload()
        .bucket("bkt")
        .key("big")
        .content_type("application/x-big")
        .metadata("m", "v")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap().to_owned();
    let p1 = data(5 * MIB, 5);
    let p3 = data(1000, 6);
    let e1 = s3
        .upload_part()
        .bucket("bkt")
        .key("big")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from(p1.clone()))
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    let e2 = s3
        .upload_part_copy()
        .bucket("bkt")
        .key("big")
        .upload_id(&id)
        .part_number(2)
        .copy_source("bkt/source")
        .copy_source_range(format!("bytes=0-{}", 5 * MIB))
        .send()
        .await
        .unwrap()
        .copy_part_result()
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    // A copy range past the source's end is refused, not cut to it.
    let e = s3
        .upload_part_copy()
        .bucket("bkt")
        .key("big")
        .upload_id(&id)
        .part_number(4)
        .copy_source("bkt/source")
        .copy_source_range(format!("bytes=0-{}", 6 * MIB))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "InvalidRange");
    let e3 = s3
        .upload_part()
        .bucket("bkt")
        .key("big")
        .upload_id(&id)
        .part_number(3)
        .body(ByteStream::from(p3.clone()))
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    let parts = s3
        .list_parts()
        .bucket("bkt")
        .key("big")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    let numbers: Vec<_> = parts
        .parts()
        .iter()
        .filter_map(|p| p.part_number())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    let page = s3
        .list_parts()
        .bucket("bkt")
        .key("big")
        .upload_id(&id)
        .max_parts(2)
        .send()
        .await
        .unwrap();
    assert_eq!(page.is_truncated(), Some(true));
    assert_eq!(page.next_part_number_marker(), Some("2"));
    let uploads = s3
        .list_multipart_uploads()
        .bucket("bkt")
        .send()
        .await
        .unwrap();
    assert_eq!(
        uploads
            .uploads()
            .iter()
            .filter_map(|u| u.upload_id())
            .collect::<Vec<_>>(),
        [id.as_str()]
    );
    // Out of order.
    assert_eq!(
        complete_fails(&s3, &id, &[(2, &e2), (1, &e1)]).await,
        "InvalidPartOrder"
    );
    // Wrong ETag.
    assert_eq!(
        complete_fails(&s3, &id, &[(1, "\"00000000000000000000000000000000\"")]).await,
        "InvalidPart"
    );
    // A small part that is not last.
    assert_eq!(
        complete_fails(&s3, &id, &[(3, &e3), (4, &e3)]).await,
        "InvalidPart",
        "part 4 does not exist"
    );
    assert_eq!(
        complete_fails(&s3, &id, &[(1, &e1), (3, &e3), (2, &e2)]).await,
        "InvalidPartOrder"
    );

    let good = common::completed(&[(1, &e1), (2, &e2), (3, &e3)]);
    let done = s3
        .complete_multipart_upload()
        .bucket("bkt")
        .key("big")
        .upload_id(&id)
        .multipart_upload(good)
        .send()
        .await
        .unwrap();
    let expected_etag = {
        let mut raw = Vec::new();
        for e in [&e1, &e2, &e3] {
            let hex = e.trim_matches('"');
            raw.extend((0..16).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()));
        }
        format!("\"{}-3\"", md5_hex(&raw))
    };
    assert_eq!(done.e_tag(), Some(expected_etag.as_str()));
    let mut whole = p1.clone();
    whole.extend_from_slice(&source[..5 * MIB + 1]);
    whole.extend_from_slice(&p3);
    let got = s3
        .get_object()
        .bucket("bkt")
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("application/x-big"));
    assert_eq!(
        got.metadata().unwrap().get("m").map(String::as_str),
        Some("v")
    );
    assert_eq!(body(got).await, whole);
    // A range that spans the part boundary.
    let start = 5 * MIB - 10;
    let r = s3
        .get_object()
        .bucket("bkt")
        .key("big")
        .range(format!("bytes={}-{}", start, start + 19))
        .send()
        .await
        .unwrap();
    assert_eq!(body(r).await, whole[start..start + 20]);
    let err = s3
        .list_parts()
        .bucket("bkt")
        .key("big")
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err.into_service_error()), "NoSuchUpload");

    // Small non-final parts and abort.
    let up = s3
        .create_multipart_upload()
        .bucket("bkt")
        .key("small")
        .send()
        .await
        .unwrap();
    let id2 = up.upload_id().unwrap();
    let a = s3
        .upload_part()
        .bucket("bkt")
        .key("small")
        .upload_id(id2)
        .part_number(1)
        .body(ByteStream::from_static(b"tiny"))
        .send()
        .await
        .unwrap();
    let b = s3
        .upload_part()
        .bucket("bkt")
        .key("small")
        .upload_id(id2)
        .part_number(2)
        .body(ByteStream::from_static(b"tiny"))
        .send()
        .await
        .unwrap();
    let req = common::completed(&[(1, a.e_tag().unwrap()), (2, b.e_tag().unwrap())]);
    let err = s3
        .complete_multipart_upload()
        .bucket("bkt")
        .key("small")
        .upload_id(id2)
        .multipart_upload(req)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err.into_service_error()), "EntityTooSmall");
    s3.abort_multipart_upload()
        .bucket("bkt")
        .key("small")
        .upload_id(id2)
        .send()
        .await
        .unwrap();
    let err = s3
        .upload_part()
        .bucket("bkt")
        .key("small")
        .upload_id(id2)
        .part_number(3)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err.into_service_error()), "NoSuchUpload");
    let err = s3
        .upload_part()
        .bucket("bkt")
        .key("small")
        .upload_id("not-an-id")
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err.into_service_error()), "NoSuchUpload");
}

#[tokio::test]
async fn multipart_with_checksums() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let up = s3
        .create_multipart_upload()
        .bucket("bkt")
        .key("c")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let p1 = data(5 * MIB, 7);
    let p2 = data(10, 8);
    let r1 = s3
        .upload_part()
        .bucket("bkt")
        .key("c")
        .upload_id(id)
        .part_number(1)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(ByteStream::from(p1.clone()))
        .send()
        .await
        .unwrap();
    let r2 = s3
        .upload_part()
        .bucket("bkt")
        .key("c")
        .upload_id(id)
        .part_number(2)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(ByteStream::from(p2.clone()))
        .send()
        .await
        .unwrap();
    assert!(r1.checksum_crc32().is_some());
    let parts = CompletedMultipartUpload::builder()
        .parts(
            CompletedPart::builder()
                .part_number(1)
                .e_tag(r1.e_tag().unwrap())
                .checksum_crc32(r1.checksum_crc32().unwrap())
                .build(),
        )
        .parts(
            CompletedPart::builder()
                .part_number(2)
                .e_tag(r2.e_tag().unwrap())
                .checksum_crc32(r2.checksum_crc32().unwrap())
                .build(),
        )
        .build();
    let done = s3
        .complete_multipart_upload()
        .bucket("bkt")
        .key("c")
        .upload_id(id)
        .multipart_upload(parts)
        .send()
        .await
        .unwrap();
    assert!(
        done.checksum_crc32().is_some_and(|c| c.ends_with("-2")),
        "composite checksum: {:?}",
        done.checksum_crc32()
    );
    let got = s3
        .get_object()
        .bucket("bkt")
        .key("c")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    let mut whole = p1;
    whole.extend(p2);
    assert_eq!(body(got).await, whole);
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let server = Server::start();
    let good = server.client();
    good.create_bucket().bucket("bkt").send().await.unwrap();
    let wrong_secret = server.client_with(
        &server.access_key,
        "not-the-secret-not-the-secret-not-the-se",
    );
    let err = wrong_secret.list_buckets().send().await.unwrap_err();
    assert_eq!(code(&err.into_service_error()), "SignatureDoesNotMatch");
    let unknown = server.client_with("AKIDUNKNOWN000000000", "whatever");
    let err = unknown.list_buckets().send().await.unwrap_err();
    assert_eq!(code(&err.into_service_error()), "InvalidAccessKeyId");
    let err = wrong_secret
        .put_object()
        .bucket("bkt")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err.into_service_error()), "SignatureDoesNotMatch");
    let keys = good.list_objects_v2().bucket("bkt").send().await.unwrap();
    assert!(
        keys.contents().is_empty(),
        "a refused request leaves no trace"
    );
}

#[tokio::test]
async fn presigned_get_and_put_work_with_curl() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    s3.put_object()
        .bucket("bkt")
        .key("shared.txt")
        .body(ByteStream::from_static(b"presigned hello"))
        .send()
        .await
        .unwrap();
    let cfg =
        aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(300))
            .unwrap();
    let url = s3
        .get_object()
        .bucket("bkt")
        .key("shared.txt")
        .presigned(cfg.clone())
        .await
        .unwrap();
    let out =
        common::run(std::process::Command::new(common::tool("curl")).args(["-sf", url.uri()]));
    assert_eq!(out, "presigned hello");
    let put = s3
        .put_object()
        .bucket("bkt")
        .key("uploaded.txt")
        .presigned(cfg)
        .await
        .unwrap();
    common::run(std::process::Command::new(common::tool("curl")).args([
        "-sf",
        "-X",
        "PUT",
        "--data-binary",
        "via curl",
        put.uri(),
    ]));
    assert_eq!(
        body(
            s3.get_object()
                .bucket("bkt")
                .key("uploaded.txt")
                .send()
                .await
                .unwrap()
        )
        .await,
        b"via curl"
    );
    // Tampering with the signed URL is detected.
    let tampered = url.uri().replace("shared.txt", "uploaded.txt");
    let out = common::run(std::process::Command::new(common::tool("curl")).args(["-s", &tampered]));
    assert!(out.contains("SignatureDoesNotMatch"), "{out}");
}

#[tokio::test]
async fn health_and_metrics_endpoints() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    s3.put_object()
        .bucket("bkt")
        .key("k")
        .body(ByteStream::from(vec![0u8; 4096]))
        .send()
        .await
        .unwrap();
    let _ = body(s3.get_object().bucket("bkt").key("k").send().await.unwrap()).await;
    let health = common::run(
        std::process::Command::new(common::tool("curl"))
            .args(["-sf", &format!("{}/health", server.endpoint)]),
    );
    assert!(health.contains("\"ok\""));
    let metrics = common::run(
        std::process::Command::new(common::tool("curl"))
            .args(["-sf", &format!("{}/metrics", server.endpoint)]),
    );
    assert!(
        metrics.contains(r#"vallum_s3_requests_total{operation="PutObject",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"vallum_s3_requests_total{operation="GetObject",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("vallum_s3_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vallum_s3_received_bytes_total 4096"),
        "{metrics}"
    );
}

#[tokio::test]
async fn credentials_survive_restart_and_data_too() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("d");
    let mut first = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
    first
        .client()
        .create_bucket()
        .bucket("bkt")
        .send()
        .await
        .unwrap();
    first
        .client()
        .put_object()
        .bucket("bkt")
        .key("k")
        .body(ByteStream::from_static(b"kept"))
        .send()
        .await
        .unwrap();
    let (ak, sk) = (first.access_key.clone(), first.secret_key.clone());
    first.kill9();
    let second = Server::start_in(&data_dir, "127.0.0.1:0", &[], &[]);
    assert_eq!(
        (second.access_key.as_str(), second.secret_key.as_str()),
        (ak.as_str(), sk.as_str())
    );
    assert_eq!(
        body(
            second
                .client()
                .get_object()
                .bucket("bkt")
                .key("k")
                .send()
                .await
                .unwrap()
        )
        .await,
        b"kept"
    );
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let server = Server::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vallum"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another vallum process"),
        "{stderr}"
    );
    server.client().list_buckets().send().await.unwrap();
}

/// ACLs are off, as on a new S3 bucket (BucketOwnerEnforced): the ACL calls answer what is so
/// and refuse to change it; ownership controls and bucket tags work.
#[tokio::test]
async fn acls_are_off_and_bucket_settings_are_kept() {
    use aws_sdk_s3::types::{
        BucketCannedAcl, ObjectCannedAcl, ObjectOwnership, OwnershipControls,
        OwnershipControlsRule, Permission, Tag, Tagging, Type,
    };
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("acl").send().await.unwrap();
    s3.put_object()
        .bucket("acl")
        .key("k")
        .body(ByteStream::from_static(b"v"))
        .send()
        .await
        .unwrap();

    let acl = s3.get_bucket_acl().bucket("acl").send().await.unwrap();
    let owner = acl.owner().unwrap().id().unwrap().to_owned();
    assert_eq!(acl.grants().len(), 1);
    let grant = &acl.grants()[0];
    assert_eq!(grant.permission(), Some(&Permission::FullControl));
    assert_eq!(grant.grantee().unwrap().r#type(), &Type::CanonicalUser);
    assert_eq!(grant.grantee().unwrap().id(), Some(owner.as_str()));
    let object_acl = s3
        .get_object_acl()
        .bucket("acl")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(object_acl.grants(), acl.grants());
    let e = s3
        .get_object_acl()
        .bucket("acl")
        .key("missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "NoSuchKey");
    // What is already so is accepted; anything else refused, as S3 refuses on such buckets.
    s3.put_bucket_acl()
        .bucket("acl")
        .acl(BucketCannedAcl::Private)
        .send()
        .await
        .unwrap();
    s3.put_object_acl()
        .bucket("acl")
        .key("k")
        .acl(ObjectCannedAcl::BucketOwnerFullControl)
        .send()
        .await
        .unwrap();
    let e = s3
        .put_bucket_acl()
        .bucket("acl")
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&e.into_service_error()),
        "AccessControlListNotSupported"
    );
    let e = s3
        .put_object_acl()
        .bucket("acl")
        .key("k")
        .grant_read("uri=http://acs.amazonaws.com/groups/global/AllUsers")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&e.into_service_error()),
        "AccessControlListNotSupported"
    );

    // Ownership controls: BucketOwnerEnforced, the only one; deleted, then none.
    let got = s3
        .get_bucket_ownership_controls()
        .bucket("acl")
        .send()
        .await
        .unwrap();
    let rules = got.ownership_controls().unwrap().rules();
    assert_eq!(
        rules[0].object_ownership(),
        &ObjectOwnership::BucketOwnerEnforced
    );
    let rule = |o: ObjectOwnership| {
        OwnershipControls::builder()
            .rules(
                OwnershipControlsRule::builder()
                    .object_ownership(o)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let e = s3
        .put_bucket_ownership_controls()
        .bucket("acl")
        .ownership_controls(rule(ObjectOwnership::ObjectWriter))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "NotImplemented");
    s3.delete_bucket_ownership_controls()
        .bucket("acl")
        .send()
        .await
        .unwrap();
    let e = s3
        .get_bucket_ownership_controls()
        .bucket("acl")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&e.into_service_error()),
        "OwnershipControlsNotFoundError"
    );
    s3.put_bucket_ownership_controls()
        .bucket("acl")
        .ownership_controls(rule(ObjectOwnership::BucketOwnerEnforced))
        .send()
        .await
        .unwrap();
    assert!(
        s3.get_bucket_ownership_controls()
            .bucket("acl")
            .send()
            .await
            .is_ok()
    );

    // Bucket tags.
    let e = s3
        .get_bucket_tagging()
        .bucket("acl")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "NoSuchTagSet");
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().unwrap();
    s3.put_bucket_tagging()
        .bucket("acl")
        .tagging(
            Tagging::builder()
                .tag_set(tag("cost-centre", "radiology"))
                .tag_set(tag("retention", "10y"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let got = s3.get_bucket_tagging().bucket("acl").send().await.unwrap();
    let mut pairs: Vec<(&str, &str)> = got.tag_set().iter().map(|t| (t.key(), t.value())).collect();
    pairs.sort_unstable();
    assert_eq!(pairs, [("cost-centre", "radiology"), ("retention", "10y")]);
    let too_long = "x".repeat(129);
    let e = s3
        .put_bucket_tagging()
        .bucket("acl")
        .tagging(
            Tagging::builder()
                .tag_set(tag(&too_long, "v"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "InvalidTag");
    s3.delete_bucket_tagging()
        .bucket("acl")
        .send()
        .await
        .unwrap();
    let e = s3
        .get_bucket_tagging()
        .bucket("acl")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "NoSuchTagSet");
}
