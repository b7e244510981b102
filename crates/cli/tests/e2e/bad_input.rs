//! Bad input: each gets the S3 error a client expects and leaves no trace.

use crate::common;

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

/// A configuration with short connection timeouts, for the tests that wait for them.
fn short_timeouts(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("vallum.toml");
    std::fs::write(
        &path,
        "[connections]\nidle_timeout_secs = 3\nbody_read_timeout_secs = 2\n",
    )
    .unwrap();
    path
}

/// Raises this test process's own descriptor limit so it can hold the connections it opens.
fn raise_own_descriptor_limit(at_least: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < at_least) {
        limit.current = limit.maximum.map(|m| m.max(at_least)).or(Some(at_least));
        if limit.maximum.is_some_and(|m| m < at_least) {
            limit.maximum = Some(at_least);
        }
        setrlimit(Resource::Nofile, limit).expect("raise the test's descriptor limit");
    }
}

/// The field report: ~1,100 idle TCP connections exhausted a 1,024-descriptor server, whose
/// accept loop then spun, writing hundreds of MB of "accept failed" lines. Now the server
/// serves at most what its descriptors allow, closes idle connections, backs off, and keeps
/// serving real clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_exhaust_the_server() {
    const IDLE: usize = 1100;
    raise_own_descriptor_limit(4096);
    let tmp = tempfile::tempdir().unwrap();
    let config = short_timeouts(tmp.path());
    let log = tmp.path().join("server.log");
    let mut server = Server::start_with_nofile(1024, &log, &["--config", config.to_str().unwrap()]);
    let started = std::time::Instant::now();
    let mut idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).expect("connect"))
        .collect();

    // A real client still gets through (once idle connections make room).
    let listed = tokio::time::timeout(
        Duration::from_secs(30),
        server.client().list_buckets().send(),
    )
    .await;
    assert!(
        matches!(listed, Ok(Ok(_))),
        "a client could not get through {IDLE} idle connections: {listed:?}"
    );

    // Every idle connection is closed by the server, none held forever.
    for (i, stream) in idle.iter_mut().enumerate() {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 16];
        let n = stream.read(&mut buf);
        assert!(
            matches!(n, Ok(0)) || n.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "idle connection {i} was not closed by the server"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "closing idle connections took {:?}",
        started.elapsed()
    );
    drop(idle);
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server died"
    );
    server.client().list_buckets().send().await.unwrap();
    // Bounded logs: no line per failed accept, no flood.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.len() < 256 * 1024,
        "the server wrote {} bytes of log",
        text.len()
    );
    let accept_lines = text.matches("accepting a connection failed").count();
    assert!(accept_lines <= 10, "{accept_lines} accept-failure lines");
}

/// A client that sends part of a body and then nothing gets S3's `RequestTimeout`, and nothing
/// is stored.
#[tokio::test]
async fn a_body_that_stops_arriving_fails_with_request_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let config = short_timeouts(tmp.path());
    let server = Server::start_with(&["--config", config.to_str().unwrap()], &[]);
    let s3 = server.client();
    s3.create_bucket().bucket("bad").send().await.unwrap();
    let url = s3
        .put_object()
        .bucket("bad")
        .key("stalled")
        .presigned(presign_cfg())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 1000\r\n\r\n0123456789",
        path_and_query(url.uri()),
        server.port
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream
        .read(&mut buf)
        .expect("an answer before the client gives up");
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("<Code>RequestTimeout</Code>"), "{resp}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(!exists(&s3, "stalled").await);
}

/// SigV2 signature of a request, as S3's HMAC-SHA1 scheme computes it.
fn sigv2(secret: &str, method: &str, date: &str, resource: &str) -> String {
    use hmac::{KeyInit, Mac};
    let string_to_sign = format!("{method}\n\n\n{date}\n{resource}");
    let mut mac = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(string_to_sign.as_bytes());
    base64_simd::STANDARD.encode_to_string(mac.finalize().into_bytes())
}

fn http_date(t: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    t.format(&time::format_description::well_known::Rfc2822)
        .unwrap()
        .replace("+0000", "GMT")
}

/// The field report: SigV2 requests had no time check, so a captured PUT replayed years later
/// overwrote the object. Now a SigV2 date outside S3's 15 minutes is refused.
#[tokio::test]
async fn sigv2_requests_outside_the_clock_skew_are_refused() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bad").send().await.unwrap();
    let now = std::time::SystemTime::now();
    let put = |date: String, body: &str| {
        let sig = sigv2(&server.secret_key, "PUT", &date, "/bad/replayed");
        let request = format!(
            "PUT /bad/replayed HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nDate: {date}\r\nAuthorization: AWS {}:{sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            server.port,
            server.access_key,
            body.len()
        );
        raw(&server, request.as_bytes(), false)
    };
    // A correctly signed, current request works (so the refusals below are about time).
    let ok = put(http_date(now), "original");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    for when in [
        now - Duration::from_secs(365 * 24 * 3600),
        now - Duration::from_secs(20 * 60),
        now + Duration::from_secs(20 * 60),
    ] {
        let resp = put(http_date(when), "replayed");
        assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
        assert!(resp.contains("<Code>RequestTimeTooSkewed</Code>"), "{resp}");
    }
    let body = common::get_bytes(&s3, "bad", "replayed").await;
    assert_eq!(body.as_ref(), b"original");
}

/// SigV2 presigned URLs stop working at their `Expires` time.
#[tokio::test]
async fn sigv2_presigned_urls_expire() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bad").send().await.unwrap();
    s3.put_object()
        .bucket("bad")
        .key("k")
        .body(ByteStream::from_static(b"v"))
        .send()
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let get = |expires: u64| {
        let sig = sigv2(&server.secret_key, "GET", &expires.to_string(), "/bad/k");
        let sig = sig
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        let request = format!(
            "GET /bad/k?AWSAccessKeyId={}&Expires={expires}&Signature={sig} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            server.access_key, server.port
        );
        raw(&server, request.as_bytes(), false)
    };
    let ok = get(now + 300);
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let expired = get(now - 60);
    assert!(expired.starts_with("HTTP/1.1 403"), "{expired}");
}

/// SigV4 presigned URLs live at most 7 days, as in S3.
#[tokio::test]
async fn presigned_urls_longer_than_a_week_are_refused() {
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
    let forever = url
        .uri()
        .replace("X-Amz-Expires=300", "X-Amz-Expires=4294967295");
    assert_ne!(forever, url.uri());
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        path_and_query(&forever),
        server.port
    );
    let resp = raw(&server, request.as_bytes(), false);
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(
        resp.contains("<Code>AuthorizationQueryParametersError</Code>"),
        "{resp}"
    );
    // Signed to expire before it was made: expired, as S3 answers.
    let expired = url.uri().replace("X-Amz-Expires=300", "X-Amz-Expires=-1");
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        path_and_query(&expired),
        server.port
    );
    let resp = raw(&server, request.as_bytes(), false);
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(resp.contains("<Code>AccessDenied</Code>"), "{resp}");
}

/// Oversized request documents are refused with a 400 before they are read (a 500 made
/// clients retry a 100 MB upload).
#[tokio::test]
async fn oversized_documents_are_refused_before_they_are_read() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("bad").send().await.unwrap();
    // Over the policy limit, small enough for the client to finish sending it.
    let policy = format!(
        "{{\"Version\":\"2012-10-17\",\"Statement\":[],\"Pad\":\"{}\"}}",
        "x".repeat(64 * 1024)
    );
    let err = s3
        .put_bucket_policy()
        .bucket("bad")
        .policy(policy)
        .send()
        .await
        .unwrap_err();
    let e = err
        .as_service_error()
        .map(|s| s.code().unwrap_or_default().to_owned());
    assert_eq!(e.as_deref(), Some("MalformedPolicy"), "{err:?}");
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 400);

    // 100 MB and 5 MB documents: answered from the declared length, before the body (a
    // client waiting for 100-continue never sends it).
    for (head, code) in [
        (
            "PUT /bad?policy HTTP/1.1\r\nContent-Length: 104857600\r\n",
            "MalformedPolicy",
        ),
        (
            "POST /bad?delete HTTP/1.1\r\nContent-Length: 5242880\r\n",
            "MaxMessageLengthExceeded",
        ),
        (
            "PUT /bad?tagging HTTP/1.1\r\nContent-Length: 5242880\r\n",
            "MaxMessageLengthExceeded",
        ),
    ] {
        let request = format!(
            "{head}Host: 127.0.0.1:{}\r\nExpect: 100-continue\r\n\r\n",
            server.port
        );
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).unwrap();
        let resp = String::from_utf8_lossy(&buf[..n]);
        assert!(resp.starts_with("HTTP/1.1 400"), "{head}: {resp}");
        assert!(
            resp.contains(&format!("<Code>{code}</Code>")),
            "{head}: {resp}"
        );
    }
    server.client().list_buckets().send().await.unwrap();
}

/// The field report: a malformed 3.4 MB request document was logged whole at ERROR, one
/// multi-megabyte line per request. Log lines are bounded now.
#[tokio::test]
async fn a_malformed_multi_megabyte_document_does_not_flood_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("server.log");
    let server = Server::start_with_nofile(1024, &log, &[]);
    server
        .client()
        .create_bucket()
        .bucket("bad")
        .send()
        .await
        .unwrap();
    // A signed DeleteObjects whose 3.4 MB body is not well-formed XML (botocore signs it).
    let script = r#"
import base64, hashlib, os, sys, urllib.request
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
body = ('<Delete><Object><Key>' + 'x' * 3400000 + '</Key>').encode()
headers = {'Content-MD5': base64.b64encode(hashlib.md5(body).digest()).decode(),
           'x-amz-content-sha256': hashlib.sha256(body).hexdigest()}
req = AWSRequest(method='POST', url=sys.argv[1] + '/bad?delete', data=body, headers=headers)
SigV4Auth(Credentials(sys.argv[2], sys.argv[3]), 's3', 'us-east-1').add_auth(req)
try:
    urllib.request.urlopen(urllib.request.Request(req.url, data=body, headers=dict(req.headers), method='POST'))
    print('200')
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
"#;
    let out = common::run(
        std::process::Command::new(common::tool("python3"))
            .arg("-c")
            .arg(script)
            .arg(&server.endpoint)
            .arg(&server.access_key)
            .arg(&server.secret_key),
    );
    assert!(
        out.starts_with("400") && out.contains("MalformedXML"),
        "{out}"
    );
    server.client().list_buckets().send().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest <= vallum_types::limits::MAX_LOG_LINE_BYTES + 64,
        "a {longest}-byte log line"
    );
    assert!(text.len() < 256 * 1024, "{} bytes of log", text.len());
}
