//! The object encryption format, version 1 (`docs/formats/object-encryption.md`).
//!
//! A blob is a header followed by segments. Each segment is up to `segment_bytes` of plaintext
//! sealed with AES-256-GCM (16-byte tag). The segment key is derived per blob with HKDF-SHA-256
//! from the object's data key and a random 32-byte salt in the header, so no two blobs — not
//! two parts of one upload, not a part uploaded twice — share a key. Under that key the nonce of
//! segment `i` is `0x00000000 || i` (big-endian), unique by construction. Each segment's
//! associated data binds the object (bucket, key, blob id), the segment index and whether it is
//! the final one, so truncation, reordering, splicing between objects and bit flips all fail
//! authentication.
//!
//! ```text
//! header  = "VLMENC" || version (1) || segment_bytes (u32 BE) || salt (32)
//! segment = AES-256-GCM(key = HKDF(dek, salt, "vallum object segments v1"),
//!                       nonce = 0u32 || i (u64 BE),
//!                       aad = "vallum-aad-v1" || len32(bucket) || bucket || len32(key) || key
//!                             || len32(object_id) || object_id || i (u64 BE) || final (u8))
//! ```

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::keys::DataKey;

/// Magic bytes at the start of every encrypted blob.
pub const MAGIC: &[u8; 6] = b"VLMENC";
/// The format version this build writes (and the only one it reads).
pub const FORMAT_VERSION: u8 = 1;
/// Bytes of the header.
pub const HEADER_BYTES: usize = 6 + 1 + 4 + 32;
/// Bytes of a GCM tag.
pub const TAG_BYTES: usize = 16;
/// Plaintext bytes per segment unless configured otherwise.
pub const DEFAULT_SEGMENT_BYTES: u32 = 64 * 1024;
/// Smallest allowed segment.
pub const MIN_SEGMENT_BYTES: u32 = 4 * 1024;
/// Largest allowed segment.
pub const MAX_SEGMENT_BYTES: u32 = 1024 * 1024;
const KDF_INFO: &[u8] = b"vallum object segments v1";
const AAD_LABEL: &[u8] = b"vallum-aad-v1";

/// Which object a blob belongs to; bound into every segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectContext {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// The blob's unique id (each part of a multipart upload is its own blob).
    pub object_id: String,
}

impl ObjectContext {
    fn aad_prefix(&self) -> Vec<u8> {
        let mut out = AAD_LABEL.to_vec();
        for field in [&self.bucket, &self.key, &self.object_id] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }
}

fn check_segment_bytes(segment_bytes: u32) -> Result<(), CryptoError> {
    if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&segment_bytes)
        || !segment_bytes.is_power_of_two()
    {
        return Err(CryptoError::Format(format!(
            "segment size {segment_bytes} is not a power of two in {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}"
        )));
    }
    Ok(())
}

/// The blob's segment key (AES-256-GCM from aws-lc-rs, which uses the CPU's AES and carry-less
/// multiply instructions).
fn segment_cipher(dek: &DataKey, salt: &[u8; 32]) -> Result<LessSafeKey, CryptoError> {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), dek.expose());
    let mut okm = Zeroizing::new([0u8; 32]);
    hk.expand(KDF_INFO, okm.as_mut_slice())
        .map_err(|_| CryptoError::Format("key derivation failed".into()))?;
    let key = UnboundKey::new(&AES_256_GCM, okm.as_slice())
        .map_err(|_| CryptoError::Format("bad segment key length".into()))?;
    Ok(LessSafeKey::new(key))
}

/// The nonce of segment `index`: unique per segment under a blob's key, never reused.
fn nonce(index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad(prefix: &[u8], index: u64, last: bool) -> Vec<u8> {
    let mut a = Vec::with_capacity(prefix.len() + 9);
    a.extend_from_slice(prefix);
    a.extend_from_slice(&index.to_be_bytes());
    a.push(u8::from(last));
    a
}

/// Segments a plaintext of `len` bytes occupies (an empty plaintext still has one, final,
/// segment, so an empty object cannot be confused with a truncated one).
#[must_use]
pub fn segment_count(len: u64, segment_bytes: u32) -> u64 {
    len.div_ceil(u64::from(segment_bytes)).max(1)
}

/// Bytes of the encrypted blob of a `len`-byte plaintext.
#[must_use]
pub fn ciphertext_len(len: u64, segment_bytes: u32) -> u64 {
    HEADER_BYTES as u64 + len + segment_count(len, segment_bytes) * TAG_BYTES as u64
}

/// Encrypts a stream, segment by segment, holding at most one segment in memory.
pub struct Encryptor {
    cipher: LessSafeKey,
    aad_prefix: Vec<u8>,
    segment_bytes: usize,
    index: u64,
    /// Plaintext of the segment being filled (object data, not key material: reused, not
    /// zeroized).
    pending: Vec<u8>,
    header: Vec<u8>,
}

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryptor")
            .field("segment_bytes", &self.segment_bytes)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Encryptor {
    /// An encryptor for one blob of `ctx`, under `dek`, with a fresh random salt.
    pub fn new(
        dek: &DataKey,
        ctx: &ObjectContext,
        segment_bytes: u32,
    ) -> Result<Self, CryptoError> {
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt).map_err(|e| CryptoError::Random(e.to_string()))?;
        Self::with_salt(dek, ctx, segment_bytes, salt)
    }

    /// As [`Encryptor::new`] with a given salt (golden files and tests only need this).
    pub fn with_salt(
        dek: &DataKey,
        ctx: &ObjectContext,
        segment_bytes: u32,
        salt: [u8; 32],
    ) -> Result<Self, CryptoError> {
        check_segment_bytes(segment_bytes)?;
        let mut header = MAGIC.to_vec();
        header.push(FORMAT_VERSION);
        header.extend_from_slice(&segment_bytes.to_be_bytes());
        header.extend_from_slice(&salt);
        Ok(Self {
            cipher: segment_cipher(dek, &salt)?,
            aad_prefix: ctx.aad_prefix(),
            segment_bytes: segment_bytes as usize,
            index: 0,
            pending: Vec::with_capacity(segment_bytes as usize),
            header,
        })
    }

    /// The header; it must precede the segments.
    #[must_use]
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    fn seal(&mut self, plain: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .cipher
            .seal_in_place_separate_tag(
                nonce(self.index),
                Aad::from(aad(&self.aad_prefix, self.index, last)),
                &mut out[start..],
            )
            .map_err(|_| CryptoError::Format("encryption failed".into()))?;
        out.extend_from_slice(tag.as_ref());
        self.index += 1;
        Ok(())
    }

    /// Adds plaintext; appends every segment known not to be the last to `out`.
    pub fn update(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        while !data.is_empty() {
            if self.pending.len() == self.segment_bytes {
                // More data follows, so the held segment is not the last one.
                let full = std::mem::take(&mut self.pending);
                self.seal(&full, false, out)?;
                self.pending = full;
                self.pending.clear();
            }
            if self.pending.is_empty() && data.len() > self.segment_bytes {
                // A whole segment with more after it: sealed straight from the input.
                let (segment, rest) = data.split_at(self.segment_bytes);
                self.seal(segment, false, out)?;
                data = rest;
                continue;
            }
            let room = self.segment_bytes - self.pending.len();
            let n = room.min(data.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        Ok(())
    }

    /// Seals the final segment and appends it to `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let last = std::mem::take(&mut self.pending);
        self.seal(&last, true, out)
    }
}

/// The parsed header of an encrypted blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Plaintext bytes per segment.
    pub segment_bytes: u32,
    /// Key-derivation salt.
    pub salt: [u8; 32],
}

impl Header {
    /// Parses the first [`HEADER_BYTES`] of a blob.
    pub fn parse(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() < HEADER_BYTES {
            return Err(CryptoError::Integrity("the header is truncated".into()));
        }
        if &bytes[..6] != MAGIC {
            return Err(CryptoError::Format("not an encrypted Vallum blob".into()));
        }
        if bytes[6] != FORMAT_VERSION {
            return Err(CryptoError::Format(format!(
                "encryption format version {} is not supported",
                bytes[6]
            )));
        }
        let segment_bytes = u32::from_be_bytes([bytes[7], bytes[8], bytes[9], bytes[10]]);
        check_segment_bytes(segment_bytes)?;
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&bytes[11..43]);
        Ok(Self {
            segment_bytes,
            salt,
        })
    }
}

/// Decrypts segments of one blob whose plaintext length comes from trusted metadata (so a
/// shortened blob cannot pass for a shorter object).
pub struct Decryptor {
    cipher: LessSafeKey,
    aad_prefix: Vec<u8>,
    header: Header,
    plaintext_len: u64,
}

impl std::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("header", &self.header.segment_bytes)
            .field("plaintext_len", &self.plaintext_len)
            .finish_non_exhaustive()
    }
}

/// Where the segments covering a plaintext range are in the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSpan {
    /// First segment index.
    pub first: u64,
    /// Last segment index (inclusive).
    pub last: u64,
    /// Byte offset of the first segment in the blob.
    pub offset: u64,
    /// Bytes to read from `offset`.
    pub len: u64,
    /// Plaintext bytes to skip at the start of the first segment.
    pub skip: u64,
}

impl Decryptor {
    /// A decryptor for the blob whose header is `header`.
    pub fn new(
        dek: &DataKey,
        ctx: &ObjectContext,
        header: &[u8],
        plaintext_len: u64,
    ) -> Result<Self, CryptoError> {
        let header = Header::parse(header)?;
        Ok(Self {
            cipher: segment_cipher(dek, &header.salt)?,
            aad_prefix: ctx.aad_prefix(),
            header,
            plaintext_len,
        })
    }

    /// Segments in the blob.
    #[must_use]
    pub fn segments(&self) -> u64 {
        segment_count(self.plaintext_len, self.header.segment_bytes)
    }

    /// Sealed bytes (ciphertext and tag) of segment `index`.
    #[must_use]
    pub fn sealed_len(&self, index: u64) -> u64 {
        let s = u64::from(self.header.segment_bytes);
        if index + 1 >= self.segments() {
            self.plaintext_len.saturating_sub(index * s) + TAG_BYTES as u64
        } else {
            s + TAG_BYTES as u64
        }
    }

    /// The segments a plaintext byte range `[start, end)` needs (a range GET decrypts only these).
    pub fn span(&self, start: u64, end: u64) -> Result<SegmentSpan, CryptoError> {
        if start > end || end > self.plaintext_len {
            return Err(CryptoError::Format(format!(
                "range {start}..{end} outside a {}-byte object",
                self.plaintext_len
            )));
        }
        let s = u64::from(self.header.segment_bytes);
        let first = start / s;
        let last = if end == start { first } else { (end - 1) / s }.min(self.segments() - 1);
        let sealed = s + TAG_BYTES as u64;
        let offset = HEADER_BYTES as u64 + first * sealed;
        let last_len = if last == self.segments() - 1 {
            self.plaintext_len - last * s + TAG_BYTES as u64
        } else {
            sealed
        };
        Ok(SegmentSpan {
            first,
            last,
            offset,
            len: (last - first) * sealed + last_len,
            skip: start - first * s,
        })
    }

    /// Decrypts segment `index` (its sealed bytes); fails with an integrity error if anything
    /// about it was changed, moved, cut or taken from another object.
    pub fn open(&self, index: u64, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut buf = Zeroizing::new(sealed.to_vec());
        let plain_len = self.open_in_place(index, &mut buf)?;
        buf.truncate(plain_len);
        Ok(buf)
    }

    /// [`Self::open`] in place: `sealed` holds segment `index`'s sealed bytes and, on success,
    /// its plaintext in the first returned-count bytes (the data path avoids a copy this way).
    pub fn open_in_place(&self, index: u64, sealed: &mut [u8]) -> Result<usize, CryptoError> {
        let segments = self.segments();
        if index >= segments {
            return Err(CryptoError::Integrity(format!(
                "segment {index} beyond the object's {segments}"
            )));
        }
        let s = u64::from(self.header.segment_bytes);
        let want = if index == segments - 1 {
            self.plaintext_len - index * s
        } else {
            s
        } + TAG_BYTES as u64;
        if sealed.len() as u64 != want {
            return Err(CryptoError::Integrity(format!(
                "segment {index} is {} bytes, expected {want} (truncated or padded)",
                sealed.len()
            )));
        }
        self.cipher
            .open_in_place(
                nonce(index),
                Aad::from(aad(&self.aad_prefix, index, index == segments - 1)),
                sealed,
            )
            .map(|plain| plain.len())
            .map_err(|_| CryptoError::Integrity(format!("segment {index} failed authentication")))
    }

    /// Decrypts the bytes of a [`SegmentSpan`] and returns exactly the plaintext range
    /// `[start, end)` it was computed for.
    pub fn open_span(
        &self,
        span: &SegmentSpan,
        bytes: &[u8],
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>, CryptoError> {
        if bytes.len() as u64 != span.len {
            return Err(CryptoError::Integrity(
                "the blob is shorter than its metadata says".into(),
            ));
        }
        let sealed = u64::from(self.header.segment_bytes) + TAG_BYTES as u64;
        let mut out = Vec::with_capacity((end - start) as usize);
        for (n, index) in (span.first..=span.last).enumerate() {
            let from = n as u64 * sealed;
            let to = (from + sealed).min(bytes.len() as u64);
            let plain = self.open(index, &bytes[from as usize..to as usize])?;
            out.extend_from_slice(&plain);
        }
        let skip = span.skip as usize;
        Ok(out[skip..skip + (end - start) as usize].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ObjectContext {
        ObjectContext {
            bucket: "records".into(),
            key: "a/b".into(),
            object_id: "0123456789abcdef0123456789abcdef".into(),
        }
    }

    fn encrypt(dek: &DataKey, c: &ObjectContext, data: &[u8], chunk: usize) -> Vec<u8> {
        let mut e = Encryptor::new(dek, c, MIN_SEGMENT_BYTES).unwrap();
        let mut out = e.header().to_vec();
        for piece in data.chunks(chunk.max(1)) {
            e.update(piece, &mut out).unwrap();
        }
        e.finish(&mut out).unwrap();
        out
    }

    fn decrypt_all(
        dek: &DataKey,
        c: &ObjectContext,
        blob: &[u8],
        len: u64,
    ) -> Result<Vec<u8>, CryptoError> {
        let d = Decryptor::new(dek, c, &blob[..HEADER_BYTES.min(blob.len())], len)?;
        let span = d.span(0, len)?;
        let bytes = blob.get(span.offset as usize..).unwrap_or(&[]);
        d.open_span(&span, &bytes[..bytes.len().min(span.len as usize)], 0, len)
    }

    #[test]
    fn round_trips_ranges_and_every_tampering_fails() {
        let dek = DataKey::generate().unwrap();
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for len in [0usize, 1, 4095, 4096, 4097, 8192, 20_000] {
            let plain = &data[..len];
            let blob = encrypt(&dek, &ctx(), plain, 1000);
            assert_eq!(
                blob.len() as u64,
                ciphertext_len(len as u64, MIN_SEGMENT_BYTES)
            );
            assert_eq!(decrypt_all(&dek, &ctx(), &blob, len as u64).unwrap(), plain);
            // Any range, decrypting only its segments.
            let d = Decryptor::new(&dek, &ctx(), &blob[..HEADER_BYTES], len as u64).unwrap();
            for (s, e) in [(0, len), (len / 3, len / 2), (len.saturating_sub(1), len)] {
                let span = d.span(s as u64, e as u64).unwrap();
                let bytes = &blob[span.offset as usize..(span.offset + span.len) as usize];
                assert_eq!(
                    d.open_span(&span, bytes, s as u64, e as u64).unwrap(),
                    &plain[s..e]
                );
            }
        }
        let blob = encrypt(&dek, &ctx(), &data, 777);
        let n = data.len() as u64;
        // A bit flip anywhere after the header (and in the salt) fails.
        for at in [11, 50, HEADER_BYTES + 4096 + 3, blob.len() - 1] {
            let mut bad = blob.clone();
            bad[at] ^= 0x20;
            assert!(decrypt_all(&dek, &ctx(), &bad, n).is_err(), "flip at {at}");
        }
        // Truncation at a segment boundary: the new last segment is not marked final.
        let sealed = 4096 + TAG_BYTES;
        let cut = &blob[..HEADER_BYTES + 4 * sealed];
        assert!(matches!(
            decrypt_all(&dek, &ctx(), cut, 4 * 4096),
            Err(CryptoError::Integrity(_))
        ));
        // Reordering two segments.
        let mut swapped = blob.clone();
        let (a, b) = (HEADER_BYTES, HEADER_BYTES + sealed);
        let first = swapped[a..b].to_vec();
        let second = swapped[b..b + sealed].to_vec();
        swapped[a..b].copy_from_slice(&second);
        swapped[b..b + sealed].copy_from_slice(&first);
        assert!(decrypt_all(&dek, &ctx(), &swapped, n).is_err());
        // Another object's ciphertext under the same key, or another key, or another context.
        let other_ctx = ObjectContext {
            key: "a/c".into(),
            ..ctx()
        };
        assert!(decrypt_all(&dek, &other_ctx, &blob, n).is_err());
        let other = DataKey::generate().unwrap();
        assert!(decrypt_all(&other, &ctx(), &blob, n).is_err());
        let mut spliced = blob.clone();
        let foreign = encrypt(&dek, &other_ctx, &data, 777);
        spliced[HEADER_BYTES..HEADER_BYTES + sealed]
            .copy_from_slice(&foreign[HEADER_BYTES..HEADER_BYTES + sealed]);
        assert!(decrypt_all(&dek, &ctx(), &spliced, n).is_err());
        // Malformed headers.
        assert!(Header::parse(&blob[..10]).is_err());
        let mut v2 = blob.clone();
        v2[6] = 2;
        assert!(matches!(Header::parse(&v2), Err(CryptoError::Format(_))));
        assert!(Encryptor::new(&dek, &ctx(), 3000).is_err());
    }
}
