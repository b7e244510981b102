//! Streaming end to end: a 5 GiB object (the single-PUT maximum) goes in and comes back out
//! while the server's resident memory stays bounded.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use common::Server;
use md5::Digest;

const GIB: u64 = 1024 * 1024 * 1024;
const OBJECT_BYTES: u64 = 5 * GIB;
const CHUNK: usize = 1024 * 1024;
/// The bound the issue sets for a 5 GiB transfer.
const MAX_RSS_KIB: u64 = 256 * 1024;

fn path_and_query(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    rest.find('/')
        .map_or("/".to_owned(), |i| rest[i..].to_owned())
}

fn chunk(i: u64) -> Vec<u8> {
    let mut c = vec![0u8; CHUNK];
    for (j, b) in c.iter_mut().enumerate().step_by(4096) {
        *b = (i as u8).wrapping_add(j as u8);
    }
    c[..8].copy_from_slice(&i.to_le_bytes());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_gib_object_streams_with_bounded_memory() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("huge").send().await.unwrap();
    let cfg = PresigningConfig::expires_in(Duration::from_secs(3600)).unwrap();
    let put = s3
        .put_object()
        .bucket("huge")
        .key("five-gib")
        .presigned(cfg.clone())
        .await
        .unwrap();
    let get = s3
        .get_object()
        .bucket("huge")
        .key("five-gib")
        .presigned(cfg)
        .await
        .unwrap();
    let port = server.port;
    let (put_path, get_path) = (path_and_query(put.uri()), path_and_query(get.uri()));

    let sent_md5 = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(stream, "PUT {put_path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {OBJECT_BYTES}\r\nConnection: close\r\n\r\n").unwrap();
        let mut md5 = md5::Md5::new();
        for i in 0..OBJECT_BYTES / CHUNK as u64 {
            let c = chunk(i);
            md5.update(&c);
            stream.write_all(&c).unwrap();
        }
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        md5.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>()
    })
    .await
    .unwrap();
    let head = s3
        .head_object()
        .bucket("huge")
        .key("five-gib")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(OBJECT_BYTES as i64));
    assert_eq!(head.e_tag(), Some(format!("\"{sent_md5}\"").as_str()));

    let got_md5 = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "GET {get_path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::with_capacity(CHUNK, stream);
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        let mut md5 = md5::Md5::new();
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            md5.update(&buf[..n]);
            total += n as u64;
        }
        assert_eq!(total, OBJECT_BYTES);
        md5.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    })
    .await
    .unwrap();
    assert_eq!(got_md5, sent_md5, "5 GiB read back byte-identical");
    let peak = server.peak_rss_kib();
    assert!(
        peak < MAX_RSS_KIB,
        "server peak RSS {peak} KiB exceeds {MAX_RSS_KIB} KiB"
    );
    println!("peak server RSS for a 5 GiB PUT + GET: {} MiB", peak / 1024);
    // One byte more than the single-PUT limit is refused before any data is read.
    let over = s3
        .put_object()
        .bucket("huge")
        .key("too-big")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "PUT {} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n",
        path_and_query(over.uri()),
        OBJECT_BYTES + 1
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reply = vec![0u8; 4096];
    let n = stream.read(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(
        reply.starts_with("HTTP/1.1 400") && reply.contains("EntityTooLarge"),
        "{reply}"
    );
}
