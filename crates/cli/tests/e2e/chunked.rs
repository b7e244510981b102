//! Streaming `aws-chunked` uploads, signed by an independent SigV4 implementation in this test:
//! per-chunk signatures (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), unsigned chunks with a checksum
//! trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER), and the failures of each.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Server, data};
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac(key: &[u8], msg: &str) -> Vec<u8> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap();
    mac.update(msg.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

struct Signer {
    access_key: String,
    signing_key: Vec<u8>,
    amz_date: String,
    scope: String,
}

impl Signer {
    fn new(server: &Server) -> Self {
        let now = time::OffsetDateTime::now_utc();
        let date = format!(
            "{:04}{:02}{:02}",
            now.year(),
            u8::from(now.month()),
            now.day()
        );
        let amz_date = format!(
            "{date}T{:02}{:02}{:02}Z",
            now.hour(),
            now.minute(),
            now.second()
        );
        let mut key = hmac(format!("AWS4{}", server.secret_key).as_bytes(), &date);
        for part in [common::REGION, "s3", "aws4_request"] {
            key = hmac(&key, part);
        }
        Signer {
            access_key: server.access_key.clone(),
            signing_key: key,
            amz_date,
            scope: format!("{date}/{}/s3/aws4_request", common::REGION),
        }
    }

    /// Signs a request; `headers` must be lower-case names. Returns (Authorization, seed signature).
    fn sign(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        payload_hash: &str,
    ) -> (String, String) {
        let mut sorted: Vec<_> = headers.to_vec();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let canonical_headers: String = sorted
            .iter()
            .map(|(k, v)| format!("{k}:{}\n", v.trim()))
            .collect();
        let signed: Vec<&str> = sorted.iter().map(|(k, _)| *k).collect();
        let signed = signed.join(";");
        let canonical =
            format!("{method}\n{path}\n\n{canonical_headers}\n{signed}\n{payload_hash}");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            sha256_hex(canonical.as_bytes())
        );
        let signature = hex(&hmac(&self.signing_key, &to_sign));
        (
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={signed}, Signature={signature}",
                self.access_key, self.scope
            ),
            signature,
        )
    }

    fn chunk_signature(&self, previous: &str, chunk: &[u8]) -> String {
        let to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{previous}\n{EMPTY_SHA256}\n{}",
            self.amz_date,
            self.scope,
            sha256_hex(chunk)
        );
        hex(&hmac(&self.signing_key, &to_sign))
    }
}

fn send(server: &Server, head: &[(&str, String)], method_path: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut request = format!("{method_path} HTTP/1.1\r\n");
    for (k, v) in head {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

/// The headers every aws-chunked upload signs; `content_sha256` names the chunk scheme.
fn chunked_headers(
    server: &Server,
    signer: &Signer,
    content_sha256: &str,
    decoded_len: usize,
) -> Vec<(&'static str, String)> {
    vec![
        ("host", format!("127.0.0.1:{}", server.port)),
        ("x-amz-date", signer.amz_date.clone()),
        ("x-amz-content-sha256", content_sha256.to_owned()),
        ("content-encoding", "aws-chunked".to_owned()),
        ("x-amz-decoded-content-length", decoded_len.to_string()),
    ]
}

fn signed_chunked_put(
    server: &Server,
    key: &str,
    payload: &[u8],
    chunk_size: usize,
    corrupt_chunk: Option<usize>,
) -> String {
    let signer = Signer::new(server);
    let path = format!("/chunked/{key}");
    let headers = chunked_headers(
        server,
        &signer,
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        payload.len(),
    );
    let (auth, seed) = signer.sign("PUT", &path, &headers, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
    let mut body = Vec::new();
    let mut previous = seed;
    let mut chunks: Vec<&[u8]> = payload.chunks(chunk_size).collect();
    chunks.push(&[]);
    for (i, chunk) in chunks.iter().enumerate() {
        let mut sig = signer.chunk_signature(&previous, chunk);
        previous.clone_from(&sig);
        if corrupt_chunk == Some(i) {
            sig = "0".repeat(64);
        }
        body.extend(format!("{:x};chunk-signature={sig}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend(b"\r\n");
    }
    let mut head = headers;
    head.push(("authorization", auth));
    send(server, &head, &format!("PUT {path}"), &body)
}

fn trailer_put(server: &Server, key: &str, payload: &[u8], crc32: u32) -> String {
    let signer = Signer::new(server);
    let path = format!("/chunked/{key}");
    let mut headers = chunked_headers(
        server,
        &signer,
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        payload.len(),
    );
    headers.push(("x-amz-trailer", "x-amz-checksum-crc32".to_owned()));
    let (auth, _) = signer.sign("PUT", &path, &headers, "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
    let mut body = Vec::new();
    for chunk in payload.chunks(64 * 1024) {
        body.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend(b"\r\n");
    }
    body.extend(
        format!(
            "0\r\nx-amz-checksum-crc32:{}\r\n\r\n",
            base64_simd::STANDARD.encode_to_string(crc32.to_be_bytes())
        )
        .as_bytes(),
    );
    let mut head = headers;
    head.push(("authorization", auth));
    send(server, &head, &format!("PUT {path}"), &body)
}

async fn read(server: &Server, key: &str) -> Option<Vec<u8>> {
    let out = server
        .client()
        .get_object()
        .bucket("chunked")
        .key(key)
        .send()
        .await
        .ok()?;
    Some(out.body.collect().await.unwrap().into_bytes().to_vec())
}

/// A server with the bucket `chunked`.
async fn server_with_bucket() -> Server {
    let server = Server::start();
    server
        .client()
        .create_bucket()
        .bucket("chunked")
        .send()
        .await
        .unwrap();
    server
}

#[tokio::test]
async fn signed_chunks_are_verified_and_stored() {
    let server = server_with_bucket().await;
    let payload = data(200_000, 21);
    let resp = signed_chunked_put(&server, "signed", &payload, 64 * 1024, None);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(read(&server, "signed").await.unwrap(), payload);

    let resp = signed_chunked_put(&server, "forged", &payload, 64 * 1024, Some(1));
    assert!(
        resp.starts_with("HTTP/1.1 4"),
        "a forged chunk signature must be refused: {resp}"
    );
    assert!(
        read(&server, "forged").await.is_none(),
        "nothing from a forged upload is stored"
    );
}

#[tokio::test]
async fn trailer_checksums_are_verified() {
    let server = server_with_bucket().await;
    let payload = data(150_000, 22);
    let crc = crc32fast::hash(&payload);
    let resp = trailer_put(&server, "good", &payload, crc);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(read(&server, "good").await.unwrap(), payload);
    let head = server
        .client()
        .head_object()
        .bucket("chunked")
        .key("good")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.checksum_crc32(),
        Some(
            base64_simd::STANDARD
                .encode_to_string(crc.to_be_bytes())
                .as_str()
        )
    );

    let resp = trailer_put(&server, "bad", &payload, crc ^ 1);
    assert!(
        resp.starts_with("HTTP/1.1 400") && resp.contains("BadDigest"),
        "{resp}"
    );
    assert!(read(&server, "bad").await.is_none());
}

/// A single-chunk PUT whose signed `x-amz-content-sha256` is the hash of other bytes.
fn put_with_payload_hash(server: &Server, key: &str, body: &[u8], claimed: &[u8]) -> String {
    let signer = Signer::new(server);
    let path = format!("/chunked/{key}");
    let hash = sha256_hex(claimed);
    let mut head = vec![
        ("host", format!("127.0.0.1:{}", server.port)),
        ("x-amz-date", signer.amz_date.clone()),
        ("x-amz-content-sha256", hash.clone()),
    ];
    let (auth, _) = signer.sign("PUT", &path, &head, &hash);
    head.push(("authorization", auth));
    send(server, &head, &format!("PUT {path}"), body)
}

#[tokio::test]
async fn a_body_that_does_not_match_its_signed_hash_is_refused_and_not_stored() {
    let server = server_with_bucket().await;
    // A packed (small) and a streamed (large) body, each with one byte changed in transit.
    for (key, len) in [("small", 3_000), ("large", 3 * 1024 * 1024 + 17)] {
        let sent = data(len, 23);
        let mut signed = sent.clone();
        signed[len / 2] ^= 1;
        let resp = put_with_payload_hash(&server, key, &sent, &signed);
        assert!(resp.starts_with("HTTP/1.1 400"), "{key}: {resp}");
        assert!(
            resp.contains("<Code>XAmzContentSHA256Mismatch</Code>"),
            "{key}: {resp}"
        );
        assert!(read(&server, key).await.is_none(), "{key} was stored");

        let resp = put_with_payload_hash(&server, key, &sent, &sent);
        assert!(resp.starts_with("HTTP/1.1 200"), "{key}: {resp}");
        assert_eq!(read(&server, key).await.unwrap(), sent, "{key}");
    }
}
