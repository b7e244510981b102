//! Encryption in the data path: every blob written to a site is ciphertext in the
//! `vallum-crypto` format, under a per-object data key wrapped by a key provider; reads decrypt
//! only the segments they need. Streams hold at most one segment of plaintext.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use vallum_crypto::CryptoError;
use vallum_crypto::format::{Decryptor, Encryptor, HEADER_BYTES, ObjectContext, SegmentSpan};
use vallum_crypto::keys::{DataKey, Justification, KeyProvider};

use crate::blob::ByteStream;
use crate::error::{Error, Result};
use crate::meta::Encryption;

/// The keys of a deployment: which provider wraps data keys, under which key by default, and
/// the segment size of new blobs.
pub struct KeyService {
    provider: Arc<dyn KeyProvider>,
    default_key_id: String,
    segment_bytes: u32,
    cache: DekCache,
}

/// Unwrapped data keys kept for a while, so repeated reads of an object do not each call the
/// provider (for an external key store, a network round trip). Bounded in entries and age;
/// an entry is found only by the same wrapped key, object and justification, so a cached key
/// never lets a different actor or reason skip the provider's policy. Evicted keys are
/// zeroized (`DataKey` zeroizes on drop).
struct DekCache {
    capacity: usize,
    ttl: std::time::Duration,
    inner: std::sync::Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    map: std::collections::HashMap<[u8; 32], (DataKey, std::time::Instant, String)>,
    order: std::collections::VecDeque<[u8; 32]>,
}

impl DekCache {
    fn id(enc: &Encryption, context: &[u8], why: &Justification) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            enc.wrapped.provider.as_bytes(),
            enc.wrapped.key_id.as_bytes(),
            &enc.wrapped.key_version.to_be_bytes(),
            enc.wrapped.wrapped.as_bytes(),
            context,
            why.actor.as_bytes(),
            why.reason.as_bytes(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    fn get(&self, id: &[u8; 32]) -> Option<DataKey> {
        let mut inner = self.inner.lock().ok()?;
        match inner.map.get(id) {
            Some((dek, at, _)) if at.elapsed() < self.ttl => Some(dek.clone()),
            Some(_) => {
                inner.map.remove(id);
                None
            }
            None => None,
        }
    }

    fn put(&self, id: [u8; 32], dek: &DataKey, key_id: &str) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        while inner.map.len() >= self.capacity {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            inner.map.remove(&old);
        }
        if inner
            .map
            .insert(
                id,
                (dek.clone(), std::time::Instant::now(), key_id.to_owned()),
            )
            .is_none()
        {
            inner.order.push_back(id);
        }
        // Ids whose entries expired or were dropped are skipped when they reach the front.
        if inner.order.len() > 2 * self.capacity {
            let CacheInner { map, order } = &mut *inner;
            order.retain(|k| map.contains_key(k));
        }
    }

    fn forget(&self, key_id: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.map.retain(|_, (_, _, k)| k != key_id);
        }
    }
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService")
            .field("provider", &self.provider.name())
            .field("default_key_id", &self.default_key_id)
            .field("segment_bytes", &self.segment_bytes)
            .finish()
    }
}

impl KeyService {
    /// Data keys wrapped by `provider` under `default_key_id`; blobs in segments of
    /// `segment_bytes`.
    #[must_use]
    pub fn new(provider: Arc<dyn KeyProvider>, default_key_id: String, segment_bytes: u32) -> Self {
        Self {
            // Every key use of the data path is justified, whatever the provider.
            provider: Arc::new(vallum_crypto::justified::Justified::new(provider)),
            default_key_id,
            segment_bytes,
            cache: DekCache {
                capacity: 0,
                ttl: std::time::Duration::ZERO,
                inner: std::sync::Mutex::default(),
            },
        }
    }

    /// Keeps up to `entries` unwrapped data keys for at most `ttl`.
    #[must_use]
    pub fn with_dek_cache(mut self, entries: usize, ttl: std::time::Duration) -> Self {
        self.cache.capacity = entries;
        self.cache.ttl = ttl;
        self
    }

    /// Drops cached data keys of `key_id`: after a key is disabled, rotated away or
    /// destroyed, this gateway asks the provider again at once.
    pub fn forget_cached(&self, key_id: &str) {
        self.cache.forget(key_id);
    }

    /// The provider.
    #[must_use]
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    /// Plaintext bytes per segment of new blobs.
    #[must_use]
    pub fn segment_bytes(&self) -> u32 {
        self.segment_bytes
    }

    /// The key new objects are wrapped under.
    #[must_use]
    pub fn default_key_id(&self) -> &str {
        &self.default_key_id
    }

    /// A fresh data key for an object of `bucket`/`key`, wrapped under `key_id` (the
    /// default key when `None`).
    pub(crate) async fn new_key(
        &self,
        bucket: &str,
        key: &str,
        key_id: Option<&str>,
        why: &Justification,
    ) -> Result<(DataKey, Encryption)> {
        let dek = DataKey::generate().map_err(crypto_error)?;
        let key_id = key_id.unwrap_or(&self.default_key_id);
        let wrapped = self
            .provider
            .wrap(key_id, &dek, &wrap_context(bucket, key), why)
            .await
            .map_err(crypto_error)?;
        Ok((
            dek,
            Encryption {
                wrapped,
                segment_bytes: self.segment_bytes,
                sse_s3: false,
            },
        ))
    }

    /// Unwraps the data key of an object of `bucket`/`key`.
    pub(crate) async fn open_key(
        &self,
        bucket: &str,
        key: &str,
        enc: &Encryption,
        why: &Justification,
    ) -> Result<DataKey> {
        if enc.wrapped.provider != self.provider.name() {
            return Err(Error::KeyProviderMismatch {
                held_by: enc.wrapped.provider.clone(),
                configured: self.provider.name().to_owned(),
            });
        }
        let context = wrap_context(bucket, key);
        let id = DekCache::id(enc, &context, why);
        if let Some(dek) = self.cache.get(&id) {
            return Ok(dek);
        }
        let dek = self
            .provider
            .unwrap(&enc.wrapped, &context, why)
            .await
            .map_err(crypto_error)?;
        self.cache.put(id, &dek, &enc.wrapped.key_id);
        Ok(dek)
    }
}

impl KeyService {
    /// Unwraps an object's data key and wraps it again under the current version of its key.
    pub(crate) async fn rewrap(
        &self,
        bucket: &str,
        key: &str,
        enc: &Encryption,
        why: &Justification,
    ) -> Result<Encryption> {
        let context = wrap_context(bucket, key);
        let dek = self
            .provider
            .unwrap(&enc.wrapped, &context, why)
            .await
            .map_err(crypto_error)?;
        let wrapped = self
            .provider
            .wrap(&enc.wrapped.key_id, &dek, &context, why)
            .await
            .map_err(crypto_error)?;
        Ok(Encryption {
            wrapped,
            segment_bytes: enc.segment_bytes,
            sse_s3: enc.sse_s3,
        })
    }
}

/// What a wrapped data key is bound to: the object's bucket and key.
pub(crate) fn wrap_context(bucket: &str, key: &str) -> Vec<u8> {
    let mut c = Vec::with_capacity(bucket.len() + key.len() + 1);
    c.extend_from_slice(bucket.as_bytes());
    c.push(0);
    c.extend_from_slice(key.as_bytes());
    c
}

/// Maps a crypto failure to the domain error a client sees.
pub(crate) fn crypto_error(e: CryptoError) -> Error {
    match e {
        CryptoError::KeyUnavailable { key_id, state } => {
            Error::KeyUnavailable(format!("key {key_id} is {state}"))
        }
        CryptoError::NoSuchKey(key_id) => Error::KeyNotFound(key_id),
        CryptoError::Integrity(_) => Error::Integrity(e.to_string()),
        CryptoError::Unavailable(_) => Error::KeyServiceUnavailable(e.to_string()),
        CryptoError::Refused(_) => Error::KeyRefused(e.to_string()),
        other => Error::KeyUnavailable(other.to_string()),
    }
}

fn io(e: CryptoError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Encrypts `body` into a blob of the encryption format (header, then segments).
pub(crate) fn encrypt_stream(
    body: ByteStream,
    dek: &DataKey,
    ctx: &ObjectContext,
    segment_bytes: u32,
) -> Result<ByteStream> {
    let enc = Encryptor::new(dek, ctx, segment_bytes).map_err(crypto_error)?;
    let header = Bytes::copy_from_slice(enc.header());
    let stream = futures::stream::unfold(
        (body, Some(enc), Some(header)),
        move |(mut body, mut enc, header)| async move {
            if let Some(h) = header {
                return Some((Ok(h), (body, enc, None)));
            }
            let e = enc.as_mut()?;
            loop {
                match body.next().await {
                    Some(Ok(chunk)) => {
                        // Room for the chunk, a held partial segment, and the tags.
                        let mut out = Vec::with_capacity(
                            chunk.len() + segment_bytes as usize + (chunk.len() / 4096 + 2) * 16,
                        );
                        if let Err(err) = e.update(&chunk, &mut out) {
                            return Some((Err(io(err)), (body, None, None)));
                        }
                        if !out.is_empty() {
                            return Some((Ok(Bytes::from(out)), (body, enc, None)));
                        }
                    }
                    Some(Err(err)) => return Some((Err(err), (body, None, None))),
                    None => {
                        let last = enc.take()?;
                        let mut out = Vec::new();
                        return match last.finish(&mut out) {
                            Ok(()) => Some((Ok(Bytes::from(out)), (body, None, None))),
                            Err(err) => Some((Err(io(err)), (body, None, None))),
                        };
                    }
                }
            }
        },
    );
    Ok(Box::pin(stream))
}

/// Sealed bytes one blocking task decrypts in a large read (whole segments, at least one).
const DECRYPT_BATCH_BYTES: u64 = 256 * 1024;
/// Batches of one large read being decrypted at the same time (so a read uses that many
/// cores; memory: this many batches plus one being gathered).
const DECRYPT_BATCHES_IN_FLIGHT: usize = 2;

/// Decrypts the sealed bytes of `span` (as read from the blob) into exactly the plaintext
/// `[start, end)`. A segment that fails authentication ends the stream with an error: no
/// unauthenticated byte is returned. A read of more than one batch of segments decrypts
/// batches on the blocking pool, [`DECRYPT_BATCHES_IN_FLIGHT`] at a time, in order; a smaller
/// one decrypts inline (no thread hand-off for small objects).
pub(crate) fn decrypt_stream(
    raw: ByteStream,
    dec: Decryptor,
    span: SegmentSpan,
    start: u64,
    end: u64,
) -> ByteStream {
    let batch = batch_segments(&dec, &span);
    if span.last - span.first < batch {
        decrypt_inline(raw, dec, span, start, end)
    } else {
        decrypt_parallel(raw, Arc::new(dec), span, start, end, batch)
    }
}

/// Segments per batch: as many whole segments as fit [`DECRYPT_BATCH_BYTES`], at least one.
fn batch_segments(dec: &Decryptor, span: &SegmentSpan) -> u64 {
    (DECRYPT_BATCH_BYTES / dec.sealed_len(span.first).max(1)).max(1)
}

fn cut_short(index: u64) -> std::io::Error {
    let err = CryptoError::Integrity(format!("segment {index} is cut short on the site"));
    tracing::error!(error = %err, "encrypted blob failed its integrity check");
    io(err)
}

/// One batch of sealed segments from the site (index of the first, the segments), and the
/// error that cut the gathering short, if any.
type Sealed = (u64, Vec<bytes::BytesMut>, Option<std::io::Error>);

/// Decrypted segments of a batch, in order, and the error that stopped it, if any.
type Opened = (Vec<Bytes>, Option<std::io::Error>);

fn open_batch(dec: &Decryptor, first: u64, sealed: Vec<bytes::BytesMut>) -> Opened {
    let mut out = Vec::with_capacity(sealed.len());
    for (index, mut seg) in (first..).zip(sealed) {
        match dec.open_in_place(index, &mut seg) {
            Ok(plain_len) => {
                seg.truncate(plain_len);
                out.push(seg.freeze());
            }
            Err(err) => {
                tracing::error!(error = %err, "encrypted blob failed its integrity check");
                return (out, Some(io(err)));
            }
        }
    }
    (out, None)
}

fn decrypt_parallel(
    raw: ByteStream,
    dec: Arc<Decryptor>,
    span: SegmentSpan,
    start: u64,
    end: u64,
    batch: u64,
) -> ByteStream {
    struct Gather {
        raw: ByteStream,
        dec: Arc<Decryptor>,
        buf: bytes::BytesMut,
        next: u64,
        last: u64,
        failed: bool,
    }
    let gather = Gather {
        raw,
        dec: Arc::clone(&dec),
        buf: bytes::BytesMut::new(),
        next: span.first,
        last: span.last,
        failed: false,
    };
    // Gathering only splits site chunks into segments (one copy); opening them is the work.
    let sealed = futures::stream::unfold(gather, move |mut g| async move {
        if g.failed || g.next > g.last {
            return None;
        }
        let first = g.next;
        let upto = (first + batch - 1).min(g.last);
        let mut segs = Vec::with_capacity((upto - first + 1) as usize);
        for index in first..=upto {
            let need = g.dec.sealed_len(index) as usize;
            while g.buf.len() < need {
                match g.raw.next().await {
                    Some(Ok(chunk)) => {
                        if g.buf.is_empty() {
                            g.buf.reserve(need.max(chunk.len()));
                        }
                        g.buf.extend_from_slice(&chunk);
                    }
                    Some(Err(e)) => {
                        g.failed = true;
                        return Some(((first, segs, Some(e)), g));
                    }
                    None => {
                        g.failed = true;
                        return Some(((first, segs, Some(cut_short(index))), g));
                    }
                }
            }
            segs.push(g.buf.split_to(need));
        }
        g.next = upto + 1;
        Some(((first, segs, None), g))
    });
    let opened = sealed
        .map(move |(first, segs, cut): Sealed| {
            let dec = Arc::clone(&dec);
            async move {
                let (plain, bad) =
                    tokio::task::spawn_blocking(move || open_batch(&dec, first, segs))
                        .await
                        .unwrap_or_else(|e| (Vec::new(), Some(std::io::Error::other(e))));
                // What authenticated comes out first, then the first thing that went wrong.
                (plain, bad.or(cut))
            }
        })
        .buffered(DECRYPT_BATCHES_IN_FLIGHT);
    struct Emit {
        opened: std::pin::Pin<Box<dyn futures::Stream<Item = Opened> + Send>>,
        pending: std::collections::VecDeque<Bytes>,
        error: Option<std::io::Error>,
        skip: usize,
        remaining: u64,
        done: bool,
    }
    let emit = Emit {
        opened: Box::pin(opened),
        pending: std::collections::VecDeque::new(),
        error: None,
        skip: span.skip as usize,
        remaining: end - start,
        done: end == start,
    };
    // The range's bounds applied in order: the first segment's skip, then at most `remaining`.
    Box::pin(futures::stream::unfold(emit, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            if let Some(plain) = st.pending.pop_front() {
                let from = std::mem::take(&mut st.skip).min(plain.len());
                let take = ((plain.len() - from) as u64).min(st.remaining) as usize;
                st.remaining -= take as u64;
                if st.remaining == 0 {
                    st.done = true;
                }
                return Some((Ok(plain.slice(from..from + take)), st));
            }
            if let Some(e) = st.error.take() {
                st.done = true;
                return Some((Err(e), st));
            }
            let (segs, error) = st.opened.next().await?;
            st.pending.extend(segs);
            st.error = error;
        }
    }))
}

/// [`decrypt_stream`] one segment at a time on the calling task.
fn decrypt_inline(
    raw: ByteStream,
    dec: Decryptor,
    span: SegmentSpan,
    start: u64,
    end: u64,
) -> ByteStream {
    struct State {
        raw: ByteStream,
        dec: Decryptor,
        buf: bytes::BytesMut,
        index: u64,
        last: u64,
        skip: usize,
        remaining: u64,
        done: bool,
    }
    let state = State {
        raw,
        dec,
        buf: bytes::BytesMut::new(),
        index: span.first,
        last: span.last,
        skip: span.skip as usize,
        remaining: end - start,
        done: end == start,
    };
    // One copy per byte: site chunks are gathered into `buf`; each segment is split off
    // (no copy), decrypted in place and handed on as a slice of the same memory.
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        if st.done || st.index > st.last {
            return None;
        }
        let need = st.dec.sealed_len(st.index) as usize;
        while st.buf.len() < need {
            match st.raw.next().await {
                Some(Ok(chunk)) => {
                    if st.buf.is_empty() {
                        st.buf.reserve(need.max(chunk.len()));
                    }
                    st.buf.extend_from_slice(&chunk);
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.done = true;
                    return Some((Err(cut_short(st.index)), st));
                }
            }
        }
        let mut sealed = st.buf.split_to(need);
        match st.dec.open_in_place(st.index, &mut sealed) {
            Ok(plain_len) => {
                st.index += 1;
                let plain = sealed.freeze();
                let from = std::mem::take(&mut st.skip).min(plain_len);
                let take = ((plain_len - from) as u64).min(st.remaining) as usize;
                st.remaining -= take as u64;
                if st.remaining == 0 {
                    st.done = true;
                }
                Some((Ok(plain.slice(from..from + take)), st))
            }
            Err(err) => {
                tracing::error!(error = %err, "encrypted blob failed its integrity check");
                st.done = true;
                Some((Err(io(err)), st))
            }
        }
    }))
}

/// Bytes of the encryption header at the start of every encrypted blob.
pub(crate) const HEADER_LEN: u64 = HEADER_BYTES as u64;

#[cfg(test)]
mod tests {
    use super::*;
    use vallum_crypto::keyring::{LocalKeyring, RootKey};
    use vallum_crypto::keys::KeyState;

    /// A sealed blob of `len` plaintext bytes in 4 KiB segments (so a few MiB span several
    /// decryption batches of about 255 segments), with its key and context.
    fn sealed_blob(len: usize) -> (Vec<u8>, Vec<u8>, DataKey, ObjectContext) {
        let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let dek = DataKey::generate().unwrap();
        let ctx = ObjectContext {
            bucket: "b".into(),
            key: "k".into(),
            object_id: "0123456789abcdef0123456789abcdef".into(),
        };
        let mut enc = Encryptor::new(&dek, &ctx, 4096).unwrap();
        let mut sealed = enc.header().to_vec();
        for chunk in plain.chunks(10_000) {
            enc.update(chunk, &mut sealed).unwrap();
        }
        enc.finish(&mut sealed).unwrap();
        (plain, sealed, dek, ctx)
    }

    /// Decrypts `[start, end)` of `sealed` through `decrypt_stream`, as the service does
    /// (the site's bytes arrive in `chunk`-sized pieces); the bytes before any error, and it.
    async fn read_range(
        sealed: &[u8],
        dek: &DataKey,
        ctx: &ObjectContext,
        plain_len: u64,
        (start, end): (u64, u64),
        chunk: usize,
    ) -> (Vec<u8>, Option<String>) {
        let dec = Decryptor::new(dek, ctx, &sealed[..HEADER_BYTES], plain_len).unwrap();
        let span = dec.span(start, end).unwrap();
        let window = sealed
            [span.offset as usize..((span.offset + span.len) as usize).min(sealed.len())]
            .to_vec();
        let pieces: Vec<std::io::Result<Bytes>> = window
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut out = decrypt_stream(
            Box::pin(futures::stream::iter(pieces)),
            dec,
            span,
            start,
            end,
        );
        let mut got = Vec::new();
        while let Some(item) = out.next().await {
            match item {
                Ok(b) => got.extend_from_slice(&b),
                Err(e) => return (got, Some(e.to_string())),
            }
        }
        (got, None)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_reads_decrypt_in_parallel_batches_exactly_like_small_ones() {
        // 3 MiB in 4 KiB segments: 769 segments, four batches.
        let len = 3 * 1024 * 1024 + 123;
        let (plain, sealed, dek, ctx) = sealed_blob(len);
        let n = len as u64;
        let seg = 4096u64;
        let dec = Decryptor::new(&dek, &ctx, &sealed[..HEADER_BYTES], n).unwrap();
        let per_batch = batch_segments(&dec, &dec.span(0, n).unwrap());
        assert_eq!(per_batch, DECRYPT_BATCH_BYTES / (4096 + 16));
        let batch = per_batch * seg;
        let ranges = [
            (0, n),
            (1, n - 1),
            (0, batch),
            (batch - 1, batch + 1),
            (batch * 2 + 17, batch * 3 + 4000),
            (seg * 3, seg * 3 + 5),
            (n - 10, n),
            (5, 5),
            (seg * (per_batch + 1) - 3, n),
            (batch * 3 - 1, batch * 3 + 1),
        ];
        for (start, end) in ranges {
            for chunk in [1000, 4096 + 16, 65_536, 1 << 20] {
                let (got, err) = read_range(&sealed, &dek, &ctx, n, (start, end), chunk).await;
                assert_eq!(err, None, "{start}..{end} in {chunk}-byte chunks");
                assert!(
                    got == plain[start as usize..end as usize],
                    "{start}..{end} in {chunk}-byte chunks"
                );
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tampered_or_truncated_large_read_stops_before_the_bad_segment() {
        let len = 3 * 1024 * 1024;
        let (plain, sealed, dek, ctx) = sealed_blob(len);
        let n = len as u64;
        let dec = Decryptor::new(&dek, &ctx, &sealed[..HEADER_BYTES], n).unwrap();
        // Flip a byte inside segment 600 (third batch): segments 0..600 come out, then the
        // error.
        let bad = 600u64;
        let span = dec.span(bad * 4096, bad * 4096 + 1).unwrap();
        let mut tampered = sealed.clone();
        tampered[span.offset as usize + 100] ^= 0x40;
        let (got, err) = read_range(&tampered, &dek, &ctx, n, (0, n), 65_536).await;
        assert!(err.is_some(), "tampering went unnoticed");
        assert_eq!(
            got.len() as u64,
            bad * 4096,
            "bytes beyond the bad segment were returned"
        );
        assert!(got == plain[..got.len()]);
        // Cut short in the middle of segment 700: everything before it, then "cut short".
        let cut = dec.span(700 * 4096, 700 * 4096 + 1).unwrap().offset as usize + 2000;
        let (got, err) = read_range(&sealed[..cut], &dek, &ctx, n, (0, n), 65_536).await;
        assert!(err.as_deref().unwrap().contains("cut short"), "{err:?}");
        assert_eq!(got.len(), 700 * 4096);
        assert!(got == plain[..got.len()]);
    }

    fn who(actor: &str) -> Justification {
        Justification {
            actor: actor.into(),
            reason: "customer-request".into(),
            approvals: None,
        }
    }

    #[tokio::test]
    async fn cached_data_keys_are_bounded_expire_and_never_skip_the_provider_for_another_actor() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Arc::new(
            LocalKeyring::open(
                &dir.path().join("keyring"),
                &RootKey::File(dir.path().join("root.key")),
            )
            .unwrap(),
        );
        ring.create_key("k", 1).await.unwrap();
        let keys = KeyService::new(ring.clone(), "k".into(), 65536)
            .with_dek_cache(2, std::time::Duration::from_millis(300));
        let (dek, enc) = keys.new_key("b", "o", None, &who("key:A")).await.unwrap();
        let (_, enc2) = keys.new_key("b", "o2", None, &who("key:A")).await.unwrap();
        let (_, enc3) = keys.new_key("b", "o3", None, &who("key:A")).await.unwrap();
        assert_eq!(
            keys.open_key("b", "o", &enc, &who("key:A"))
                .await
                .unwrap()
                .expose(),
            dek.expose()
        );
        // The provider now refuses; the cached key still serves the same actor...
        ring.set_state("k", KeyState::Disabled).await.unwrap();
        assert!(keys.open_key("b", "o", &enc, &who("key:A")).await.is_ok());
        // ...but not another actor, nor another object.
        assert!(keys.open_key("b", "o", &enc, &who("key:B")).await.is_err());
        assert!(
            keys.open_key("b", "o2", &enc2, &who("key:A"))
                .await
                .is_err()
        );
        // Forgetting the key's entries sends the next read to the provider.
        keys.forget_cached("k");
        assert!(keys.open_key("b", "o", &enc, &who("key:A")).await.is_err());
        // Expiry, and the bound on entries.
        ring.set_state("k", KeyState::Enabled).await.unwrap();
        keys.open_key("b", "o", &enc, &who("key:A")).await.unwrap();
        keys.open_key("b", "o2", &enc2, &who("key:A"))
            .await
            .unwrap();
        keys.open_key("b", "o3", &enc3, &who("key:A"))
            .await
            .unwrap();
        ring.set_state("k", KeyState::Disabled).await.unwrap();
        assert!(
            keys.open_key("b", "o", &enc, &who("key:A")).await.is_err(),
            "the oldest entry was evicted at capacity 2"
        );
        assert!(keys.open_key("b", "o3", &enc3, &who("key:A")).await.is_ok());
        std::thread::sleep(std::time::Duration::from_millis(350));
        assert!(
            keys.open_key("b", "o3", &enc3, &who("key:A"))
                .await
                .is_err()
        );
    }
}
