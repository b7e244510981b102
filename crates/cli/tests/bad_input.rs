//! Bad input: each gets the S3 error a client expects and leaves no trace.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use common::Server;

fn presign_cfg() -> PresigningConfig {
    PresigningConfig::expires_in(Duration::from_secs(300)).unwrap()
}

/// Sends raw bytes and returns the whole response (status line, headers, body).
fn raw(server: &Server, request: &[u8], close_write: bool) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    if close_write {
        stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn path_and_query(uri: &str) -> String {
    let without_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    without_scheme
        .find('/')
        .map_or("/".to_owned(), |i| without_scheme[i..].to_owned())
}

async fn exists(s3: &aws_sdk_s3::Client, key: &str) -> bool {
    s3.head_object().bucket("bad").key(key).send().await.is_ok()
}

#[tokio::test]
async fn truncated_body_and_wrong_content_length_store_nothing() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bad").send().await.unwrap();
    let url = s3
        .put_object()
        .bucket("bad")
        .key("truncated")
        .presigned(presign_cfg())
        .await
        .unwrap();
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 100000\r\n\r\n",
        path_and_query(url.uri()),
        server.port
    );
    let mut request = head.into_bytes();
    request.extend(vec![b'x'; 50_000]);
    let _ = raw(&server, &request, true);
    assert!(
        !exists(&s3, "truncated").await,
        "a truncated upload is never visible"
    );

    // A body longer than its Content-Length: the extra bytes are not part of the object.
    let url = s3
        .put_object()
        .bucket("bad")
        .key("short")
        .presigned(presign_cfg())
        .await
        .unwrap();
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
        path_and_query(url.uri()),
        server.port
    );
    let mut request = head.into_bytes();
    request.extend(b"hello, and some garbage after the declared length");
    let resp = raw(&server, &request, false);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let got = common::get_bytes(&s3, "bad", "short").await;
    assert_eq!(got.as_ref(), b"hello");
    // Nothing half-written is left in the temporary area either.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        std::fs::read_dir(server.data_dir.join("sites/local/tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn malformed_xml_documents_are_refused() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bad").send().await.unwrap();
    let up = s3
        .create_multipart_upload()
        .bucket("bad")
        .key("mp")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let part = s3
        .upload_part()
        .bucket("bad")
        .key("mp")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from_static(b"p"))
        .send()
        .await
        .unwrap();
    let valid = common::completed(&[(1, part.e_tag().unwrap())]);
    for body in [
        "<CompleteMultipartUpload><Part><PartNumber>1</Part>",
        "not xml at all",
        "<CompleteMultipartUpload></CompleteMultipartUpload>",
    ] {
        // The SDK signs whatever body is in place, so the server sees a well-signed request
        // carrying a malformed document.
        let err = s3
            .complete_multipart_upload()
            .bucket("bad")
            .key("mp")
            .upload_id(id)
            .multipart_upload(valid.clone())
            .customize()
            .mutate_request(move |req| {
                *req.body_mut() = aws_smithy_types::body::SdkBody::from(body);
                req.headers_mut()
                    .insert("content-length", body.len().to_string());
            })
            .send()
            .await
            .unwrap_err();
        let status = err.raw_response().map(|r| r.status().as_u16());
        let err = err.into_service_error();
        assert_eq!(status, Some(400), "{body:?}");
        assert_eq!(err.code(), Some("MalformedXML"), "{body:?}");
        assert!(
            err.meta().extra("aws_request_id").is_some(),
            "the error carries a request id"
        );
    }
    assert!(!exists(&s3, "mp").await);
    // The upload is still there and usable after the refusals.
    s3.list_parts()
        .bucket("bad")
        .key("mp")
        .upload_id(id)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn invalid_keys_metadata_and_digests() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bad").send().await.unwrap();
    let long = "k".repeat(1025);
    let err = s3
        .put_object()
        .bucket("bad")
        .key(&long)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("KeyTooLongError"));
    let ok = "k".repeat(1024);
    s3.put_object()
        .bucket("bad")
        .key(&ok)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let err = s3
        .put_object()
        .bucket("bad")
        .key("nul\0key")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidArgument"));
    let err = s3
        .put_object()
        .bucket("bad")
        .key("meta")
        .metadata("big", "v".repeat(2100))
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("MetadataTooLarge"));
    let err = s3
        .put_object()
        .bucket("bad")
        .key("md5")
        .content_md5("not-base64!")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidDigest"));
    let err = s3
        .upload_part()
        .bucket("bad")
        .key("k")
        .upload_id("0123")
        .part_number(10_001)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err.code(), Some("InvalidArgument" | "NoSuchUpload")),
        "{:?}",
        err.code()
    );
    for key in ["meta", "md5", "nul\0key"] {
        assert!(!exists(&s3, key).await, "{key:?} left a trace");
    }
    let listed = s3.list_objects_v2().bucket("bad").send().await.unwrap();
    assert_eq!(
        listed.contents().len(),
        1,
        "only the valid 1024-byte key exists"
    );
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bad").send().await.unwrap();
    let url = s3
        .get_object()
        .bucket("bad")
        .key("k")
        .presigned(presign_cfg())
        .await
        .unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
        path_and_query(url.uri()),
        server.port,
        "p".repeat(20_000)
    );
    let resp = raw(&server, request.as_bytes(), false);
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("RequestHeaderSectionTooLarge"), "{resp}");
    // A header section beyond what the HTTP layer buffers is refused too (431), not buffered.
    let request = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "p".repeat(2 * 1024 * 1024)
    );
    let resp = raw(&server, request.as_bytes(), false);
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 431") || resp.starts_with("HTTP/1.1 400"),
        "{}",
        &resp[..resp.len().min(200)]
    );
    // The server is still healthy.
    s3.list_buckets().send().await.unwrap();
}

#[tokio::test]
async fn garbage_requests_get_errors_not_crashes() {
    let server = Server::start();
    for request in [
        "GARBAGE\r\n\r\n".to_owned(),
        "GET /bad?list-type=2 HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 nonsense\r\nConnection: close\r\n\r\n".to_owned(),
        "PUT /bad/k HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\nConnection: close\r\n\r\n".to_owned(),
    ] {
        let resp = raw(&server, request.as_bytes(), false);
        assert!(resp.is_empty() || resp.starts_with("HTTP/1.1 4"), "{request:?} -> {resp}");
    }
    server.client().list_buckets().send().await.unwrap();
}

#[tokio::test]
async fn slow_header_senders_are_disconnected() {
    let server = Server::start();
    let started = std::time::Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(45),
        "the connection was held for {waited:?}"
    );
    assert!(
        waited >= Duration::from_secs(25),
        "closed after {waited:?}, before the header timeout"
    );
    server.client().list_buckets().send().await.unwrap();
}
