//! Digests computed while data streams through: MD5 (the ETag), the S3 additional checksums,
//! and a verifying stream that refuses to end cleanly when a digest or the length is wrong —
//! so a blob store never commits data that failed verification.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use md5::Digest as _;
use sha2::Digest as _;

use crate::blob::ByteStream;
use crate::error::Error;
use crate::meta::{ChecksumAlgorithm, Checksums};

/// Lower-case hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    hex_simd::encode_to_string(bytes, hex_simd::AsciiCase::Lower)
}

/// Standard base64.
#[must_use]
pub fn base64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

/// Decodes standard base64.
pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    base64_simd::STANDARD.decode_to_vec(text).ok()
}

/// Which additional checksums to compute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChecksumSet {
    /// CRC32.
    pub crc32: bool,
    /// CRC32C.
    pub crc32c: bool,
    /// SHA-1.
    pub sha1: bool,
    /// SHA-256.
    pub sha256: bool,
}

impl ChecksumSet {
    /// The set holding one algorithm.
    #[must_use]
    pub fn only(algorithm: ChecksumAlgorithm) -> Self {
        let mut set = Self::default();
        set.insert(algorithm);
        set
    }

    /// Adds an algorithm.
    pub fn insert(&mut self, algorithm: ChecksumAlgorithm) {
        match algorithm {
            ChecksumAlgorithm::Crc32 => self.crc32 = true,
            ChecksumAlgorithm::Crc32c => self.crc32c = true,
            ChecksumAlgorithm::Sha1 => self.sha1 = true,
            ChecksumAlgorithm::Sha256 => self.sha256 = true,
        }
    }

    /// The algorithms whose values `checksums` carries.
    #[must_use]
    pub fn of(checksums: &Checksums) -> Self {
        Self {
            crc32: checksums.crc32.is_some(),
            crc32c: checksums.crc32c.is_some(),
            sha1: checksums.sha1.is_some(),
            sha256: checksums.sha256.is_some(),
        }
    }

    /// Union of two sets.
    #[must_use]
    pub fn union(self, other: Self) -> Self {
        Self {
            crc32: self.crc32 || other.crc32,
            crc32c: self.crc32c || other.crc32c,
            sha1: self.sha1 || other.sha1,
            sha256: self.sha256 || other.sha256,
        }
    }
}

/// Incremental MD5 plus the chosen additional checksums.
pub struct Hasher {
    md5: md5::Md5,
    crc32: Option<crc32fast::Hasher>,
    crc32c: Option<u32>,
    sha1: Option<sha1::Sha1>,
    sha256: Option<sha2::Sha256>,
    len_bytes: u64,
}

/// What a [`Hasher`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// MD5 of the data.
    pub md5: [u8; 16],
    /// Bytes hashed.
    pub len_bytes: u64,
    /// The additional checksums computed.
    pub checksums: Checksums,
}

impl Hasher {
    /// A hasher computing MD5 and the checksums in `set`.
    #[must_use]
    pub fn new(set: ChecksumSet) -> Self {
        Self {
            md5: md5::Md5::new(),
            crc32: set.crc32.then(crc32fast::Hasher::new),
            crc32c: set.crc32c.then_some(0),
            sha1: set.sha1.then(sha1::Sha1::new),
            sha256: set.sha256.then(sha2::Sha256::new),
            len_bytes: 0,
        }
    }

    /// Feeds data.
    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        if let Some(h) = &mut self.crc32 {
            h.update(data);
        }
        if let Some(c) = &mut self.crc32c {
            *c = crc32c::crc32c_append(*c, data);
        }
        if let Some(h) = &mut self.sha1 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
        self.len_bytes += data.len() as u64;
    }

    /// Bytes fed so far.
    #[must_use]
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// The digests.
    #[must_use]
    pub fn finish(self) -> Digests {
        let md5: [u8; 16] = self.md5.finalize().into();
        Digests {
            md5,
            len_bytes: self.len_bytes,
            checksums: Checksums {
                crc32: self.crc32.map(|h| base64(&h.finalize().to_be_bytes())),
                crc32c: self.crc32c.map(|c| base64(&c.to_be_bytes())),
                sha1: self.sha1.map(|h| base64(&h.finalize())),
                sha256: self.sha256.map(|h| base64(&h.finalize())),
            },
        }
    }
}

/// Checksums that arrive only after the body (aws-chunked trailers).
pub type LateChecksums = Box<dyn FnOnce() -> Checksums + Send>;

/// What a body must satisfy.
#[derive(Default)]
pub struct Expectations {
    /// Declared length, if known.
    pub content_length: Option<u64>,
    /// Largest acceptable length.
    pub max_len_bytes: u64,
    /// Content-MD5, if sent.
    pub md5: Option<[u8; 16]>,
    /// Additional checksums sent in headers.
    pub checksums: Checksums,
    /// Additional algorithms to compute even without an expected value.
    pub compute: ChecksumSet,
    /// Checksums sent as trailers, read when the body ends.
    pub late: Option<LateChecksums>,
    /// Algorithms the trailers will carry.
    pub late_set: ChecksumSet,
    /// The signed payload hash (`x-amz-content-sha256`), when the client sent one.
    pub payload_sha256: Option<[u8; 32]>,
}

/// A body stream's error saying the body is not what its signed `x-amz-content-sha256` says
/// (found by the front end, which checks signed requests' payload hashes as they stream).
#[derive(Debug, Clone, Copy)]
pub struct PayloadHashMismatch;

impl std::fmt::Display for PayloadHashMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the body does not match its x-amz-content-sha256")
    }
}

impl std::error::Error for PayloadHashMismatch {}

/// Where a verifying stream leaves its verdict.
pub type Outcome = Arc<Mutex<Option<Result<Digests, Error>>>>;

/// Takes the verdict out of `outcome`.
#[must_use]
pub fn take_outcome(outcome: &Outcome) -> Option<Result<Digests, Error>> {
    outcome.lock().ok().and_then(|mut slot| slot.take())
}

struct Verifying {
    inner: ByteStream,
    hasher: Option<Hasher>,
    expect: Expectations,
    outcome: Outcome,
    finished: bool,
}

impl Verifying {
    fn fail(&mut self, err: Error) -> Poll<Option<io::Result<Bytes>>> {
        let text = err.to_string();
        if let Ok(mut slot) = self.outcome.lock() {
            *slot = Some(Err(err));
        }
        self.finished = true;
        Poll::Ready(Some(Err(io::Error::other(text))))
    }

    fn verify_end(&mut self) -> Result<Digests, Error> {
        let hasher = self
            .hasher
            .take()
            .ok_or_else(|| Error::InvalidRequest("stream polled after end".into()))?;
        let got = hasher.len_bytes();
        if let Some(expected) = self.expect.content_length
            && got != expected
        {
            return Err(Error::IncompleteBody {
                got_bytes: got,
                expected_bytes: expected,
            });
        }
        let digests = hasher.finish();
        if let Some(want) = self.expect.payload_sha256 {
            let got = digests.checksums.sha256.as_deref().and_then(unbase64);
            if got.as_deref() != Some(want.as_slice()) {
                return Err(Error::ContentSha256Mismatch);
            }
        }
        if let Some(md5) = self.expect.md5
            && md5 != digests.md5
        {
            return Err(Error::BadDigest(
                "The Content-MD5 you specified did not match what we received.".into(),
            ));
        }
        let mut expected = self.expect.checksums.clone();
        if let Some(late) = self.expect.late.take() {
            let trailer = late();
            expected.crc32 = expected.crc32.or(trailer.crc32);
            expected.crc32c = expected.crc32c.or(trailer.crc32c);
            expected.sha1 = expected.sha1.or(trailer.sha1);
            expected.sha256 = expected.sha256.or(trailer.sha256);
        }
        compare_checksums(&expected, &digests.checksums)?;
        Ok(digests)
    }
}

fn compare_checksums(expected: &Checksums, got: &Checksums) -> Result<(), Error> {
    let pairs = [
        ("CRC32", &expected.crc32, &got.crc32),
        ("CRC32C", &expected.crc32c, &got.crc32c),
        ("SHA1", &expected.sha1, &got.sha1),
        ("SHA256", &expected.sha256, &got.sha256),
    ];
    for (name, want, have) in pairs {
        if let Some(want) = want
            && Some(want) != have.as_ref()
        {
            return Err(Error::BadDigest(format!(
                "The {name} you specified did not match the calculated checksum."
            )));
        }
    }
    Ok(())
}

impl Stream for Verifying {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                let Some(hasher) = this.hasher.as_mut() else {
                    return Poll::Ready(None);
                };
                hasher.update(&chunk);
                let got = hasher.len_bytes();
                if got > this.expect.max_len_bytes {
                    return this.fail(Error::EntityTooLarge(this.expect.max_len_bytes));
                }
                if let Some(expected) = this.expect.content_length
                    && got > expected
                {
                    return this.fail(Error::InvalidRequest(format!(
                        "the body is longer than its declared length of {expected} bytes"
                    )));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(err))) => {
                let got = this.hasher.as_ref().map_or(0, Hasher::len_bytes);
                let reason = match this.expect.content_length {
                    _ if err.kind() == std::io::ErrorKind::TimedOut => Error::RequestTimeout,
                    _ if err.get_ref().is_some_and(|e| e.is::<PayloadHashMismatch>()) => {
                        Error::ContentSha256Mismatch
                    }
                    Some(expected) => Error::IncompleteBody {
                        got_bytes: got,
                        expected_bytes: expected,
                    },
                    None => Error::ClientStream(err.to_string()),
                };
                if let Ok(mut slot) = this.outcome.lock() {
                    *slot = Some(Err(reason));
                }
                this.finished = true;
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => match this.verify_end() {
                Ok(digests) => {
                    if let Ok(mut slot) = this.outcome.lock() {
                        *slot = Some(Ok(digests));
                    }
                    this.finished = true;
                    Poll::Ready(None)
                }
                Err(err) => this.fail(err),
            },
        }
    }
}

/// Wraps `input` so that it hashes everything and, at its end, checks length and digests. On a
/// failed check the stream ends with an error instead of ending cleanly, and the reason is left
/// in the returned [`Outcome`]; on success the digests are.
#[must_use]
pub fn verifying_stream(input: ByteStream, expect: Expectations) -> (ByteStream, Outcome) {
    let mut set = expect
        .compute
        .union(ChecksumSet::of(&expect.checksums))
        .union(expect.late_set);
    set.sha256 |= expect.payload_sha256.is_some();
    let outcome: Outcome = Arc::new(Mutex::new(None));
    let stream = Verifying {
        inner: input,
        hasher: Some(Hasher::new(set)),
        expect,
        outcome: Arc::clone(&outcome),
        finished: false,
    };
    (Box::pin(stream), outcome)
}

/// Parses a Content-MD5 header value.
pub fn parse_content_md5(value: &str) -> Result<[u8; 16], Error> {
    unbase64(value)
        .and_then(|raw| <[u8; 16]>::try_from(raw.as_slice()).ok())
        .ok_or_else(|| Error::InvalidDigest("The Content-MD5 you specified was invalid.".into()))
}

/// The multipart ETag: hex MD5 of the concatenated binary part MD5s, then `-<parts>`.
pub fn multipart_etag<'a>(part_etags: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut md5 = md5::Md5::new();
    let mut parts = 0usize;
    for etag in part_etags {
        let raw = hex_simd::decode_to_vec(etag).ok()?;
        md5.update(&raw);
        parts += 1;
    }
    Some(format!("{}-{parts}", hex(&md5.finalize())))
}

/// The composite checksum of a multipart object: the checksum of the concatenated binary part
/// checksums, then `-<parts>`. `None` unless every part carries the algorithm.
#[must_use]
pub fn composite_checksum(algorithm: ChecksumAlgorithm, parts: &[&Checksums]) -> Option<Checksums> {
    let pick = |c: &Checksums| match algorithm {
        ChecksumAlgorithm::Crc32 => c.crc32.clone(),
        ChecksumAlgorithm::Crc32c => c.crc32c.clone(),
        ChecksumAlgorithm::Sha1 => c.sha1.clone(),
        ChecksumAlgorithm::Sha256 => c.sha256.clone(),
    };
    let mut hasher = Hasher::new(ChecksumSet::only(algorithm));
    for part in parts {
        hasher.update(&unbase64(&pick(part)?)?);
    }
    let sums = hasher.finish().checksums;
    let value = format!("{}-{}", pick(&sums)?, parts.len());
    let mut out = Checksums::default();
    match algorithm {
        ChecksumAlgorithm::Crc32 => out.crc32 = Some(value),
        ChecksumAlgorithm::Crc32c => out.crc32c = Some(value),
        ChecksumAlgorithm::Sha1 => out.sha1 = Some(value),
        ChecksumAlgorithm::Sha256 => out.sha256 = Some(value),
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn body(chunks: &[&'static [u8]]) -> ByteStream {
        Box::pin(futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok(Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        ))
    }

    async fn drain(mut s: ByteStream) -> Result<Vec<u8>, io::Error> {
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[test]
    fn known_answer_digests() {
        let mut h = Hasher::new(ChecksumSet {
            crc32: true,
            crc32c: true,
            sha1: true,
            sha256: true,
        });
        h.update(b"hello ");
        h.update(b"world");
        let d = h.finish();
        // Reference values from coreutils md5sum/sha1sum/sha256sum and the CRC catalogue.
        assert_eq!(hex(&d.md5), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(
            d.checksums.sha1.as_deref(),
            Some("Kq5sNclPz7QV2+lfQIuc6R7oRu0=")
        );
        assert_eq!(
            d.checksums.sha256.as_deref(),
            Some("uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=")
        );
        assert_eq!(
            d.checksums.crc32.as_deref(),
            Some(base64(&0x0d4a_1185_u32.to_be_bytes()).as_str())
        );
        assert_eq!(
            d.checksums.crc32c.as_deref(),
            Some(base64(&0xc994_65aa_u32.to_be_bytes()).as_str())
        );
        assert_eq!(d.len_bytes, 11);
    }

    #[tokio::test]
    async fn verifying_stream_accepts_matching_body() {
        let expect = Expectations {
            content_length: Some(11),
            max_len_bytes: 100,
            md5: Some(parse_content_md5("XrY7u+Ae7tCTyyK7j1rNww==").unwrap()),
            ..Expectations::default()
        };
        let (s, outcome) = verifying_stream(body(&[b"hello ", b"world"]), expect);
        assert_eq!(drain(s).await.unwrap(), b"hello world");
        assert_eq!(take_outcome(&outcome).unwrap().unwrap().len_bytes, 11);
    }

    #[tokio::test]
    async fn verifying_stream_fails_bad_md5_short_body_and_oversize() {
        let bad_md5 = Expectations {
            max_len_bytes: 100,
            md5: Some([0; 16]),
            ..Expectations::default()
        };
        let (s, outcome) = verifying_stream(body(&[b"hello"]), bad_md5);
        assert!(drain(s).await.is_err());
        assert!(matches!(
            take_outcome(&outcome),
            Some(Err(Error::BadDigest(_)))
        ));

        let short = Expectations {
            content_length: Some(10),
            max_len_bytes: 100,
            ..Expectations::default()
        };
        let (s, outcome) = verifying_stream(body(&[b"hello"]), short);
        assert!(drain(s).await.is_err());
        assert!(matches!(
            take_outcome(&outcome),
            Some(Err(Error::IncompleteBody {
                got_bytes: 5,
                expected_bytes: 10
            }))
        ));

        let big = Expectations {
            max_len_bytes: 4,
            ..Expectations::default()
        };
        let (s, outcome) = verifying_stream(body(&[b"hello"]), big);
        assert!(drain(s).await.is_err());
        assert!(matches!(
            take_outcome(&outcome),
            Some(Err(Error::EntityTooLarge(4)))
        ));
    }

    #[tokio::test]
    async fn trailer_checksum_is_checked_at_end() {
        let wrong = Checksums {
            crc32: Some(base64(&[0, 0, 0, 0])),
            ..Checksums::default()
        };
        let expect = Expectations {
            max_len_bytes: 100,
            late: Some(Box::new(move || wrong)),
            late_set: ChecksumSet::only(ChecksumAlgorithm::Crc32),
            ..Expectations::default()
        };
        let (s, outcome) = verifying_stream(body(&[b"data"]), expect);
        assert!(drain(s).await.is_err());
        assert!(
            matches!(take_outcome(&outcome), Some(Err(Error::BadDigest(m))) if m.contains("CRC32"))
        );
    }

    #[test]
    fn multipart_etag_matches_s3_definition() {
        // Two parts: md5("a") and md5("b"); the expected value is md5 of their 32 raw bytes.
        let a = "0cc175b9c0f1b6a831c399e269772661";
        let b = "92eb5ffee6ae2fec3ad71c777531578f";
        let mut raw = hex_simd::decode_to_vec(a).unwrap();
        raw.extend(hex_simd::decode_to_vec(b).unwrap());
        let mut h = Hasher::new(ChecksumSet::default());
        h.update(&raw);
        let expected = format!("{}-2", hex(&h.finish().md5));
        assert_eq!(multipart_etag([a, b]).unwrap(), expected);
        assert!(multipart_etag(["zz"]).is_none());
    }
}
