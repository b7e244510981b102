//! Small blobs packed into append-only files, made durable in groups.
//!
//! A blob of at most [`PACK_MAX_BLOB_BYTES`] is not a file of its own: one writer thread per
//! site appends it, with every other small blob waiting at that moment, to the site's active
//! pack and syncs the pack once for all of them (group commit; a lone write waits for nothing
//! but its own sync). Creating, syncing and renaming a file per blob, and syncing its directory,
//! cost more than the bytes.
//!
//! Format version [`PACK_FORMAT_VERSION`], under `<root>/packs/`, integers little-endian:
//! ```text
//! <pack-id:016x>.pack   header: "VALLUMPK", u32 version, u32 zero, u64 pack id, u64 created (ms)
//!                       then records, each a 40-byte header and its data:
//!                       u8 kind (1 blob, 2 tombstone), 3 zero bytes, u32 data length,
//!                       16-byte blob id, u64 reference (blob: written at, ms since the epoch;
//!                       tombstone: the id of the pack whose copy of the blob it deletes),
//!                       u32 CRC-32C of the data, u32 CRC-32C of the 36 header bytes before it
//! ```
//! A blob is acknowledged only once its record is synced; a crash can leave only an incomplete
//! record at the end of the pack being written, which every scan stops at (no writer appends
//! to a pack again after a restart: each start opens a new one). Deleting appends a tombstone.
//! Packs left less than half live are compacted: their live records are copied into the active
//! pack and synced before the old pack is removed, a bounded amount per step, by the writer
//! thread, so a blob is never absent and never copied from a pack still being written (a pack
//! being written is locked with `flock`; compaction takes the same lock, so two processes over
//! one shared site directory neither compact the other's active pack nor the same pack twice).
//!
//! Where each blob lies: for the pack being written (and another process's pack still being
//! written), a map in memory; for a closed pack (64 MiB, or [`PACK_MAX_WRITES`] writes), its
//! index file (`<pack-id>.idx`, written when it is closed: its blob records sorted by id, then
//! its tombstones), read a page at a time, with a Bloom filter, the first id of each page and a
//! bit per entry (copies deleted since) in memory: about 2 bytes per blob, so memory does not
//! grow with the objects stored. A pack without a usable index file is scanned and indexed
//! once no process holds its lock. The pack created last decides when a blob has copies in
//! several. Another process's packs are read again when a blob is not found: several gateways
//! over one shared site directory each write their own pack and read all.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use vallum_types::BlobId;

/// Version of the pack file format.
pub const PACK_FORMAT_VERSION: u32 = 1;
/// Largest blob written into a pack; longer ones are files of their own.
pub const PACK_MAX_BLOB_BYTES: usize = 128 * 1024;
/// A pack that has grown to this size is closed and a new one started.
pub const PACK_TARGET_BYTES: u64 = 64 * 1024 * 1024;
/// Most bytes appended by one group commit (bounds the writer's buffer).
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;
/// Most writes and deletes answered by one group commit.
const MAX_GROUP_OPS: usize = 4096;
/// Most bytes of a sparse pack a compaction step reads before the writer takes writes again.
const COMPACT_STEP_BYTES: u64 = 4 * 1024 * 1024;
/// How often the writer looks for a pack to compact when idle, and at least how long it
/// leaves between two compaction steps when busy.
const COMPACT_INTERVAL: Duration = Duration::from_millis(200);
/// The writer thread's stack.
const WRITER_STACK_BYTES: usize = 256 * 1024;

const MAGIC: &[u8; 8] = b"VALLUMPK";
/// Bytes of a pack's header.
pub const PACK_HEADER_BYTES: u64 = 32;
/// Bytes of a record's header.
pub const RECORD_HEADER_BYTES: usize = 40;
/// Version of a pack's index file (version 1 files are rebuilt).
pub const PACK_INDEX_VERSION: u32 = 2;
/// A pack holding this many writes is closed too: this bounds the map kept in memory for the
/// pack being written.
pub const PACK_MAX_WRITES: u32 = 65_536;
/// Blob entries per page of a closed pack's index file; memory keeps one id per page.
const INDEX_PAGE_ENTRIES: usize = 64;
/// Bits of a closed pack's Bloom filter per blob.
const BLOOM_BITS_PER_BLOB: usize = 10;
/// Bits each id sets in its filter block.
const BLOOM_PROBES: u32 = 6;
const INDEX_MAGIC: &[u8; 8] = b"VALLUMPI";
const INDEX_HEADER_BYTES: usize = 48;
const INDEX_ENTRY_BYTES: usize = 8 + RECORD_HEADER_BYTES;
const INDEX_SUFFIX: &str = ".idx";
pub(crate) const KIND_BLOB: u8 = 1;
const KIND_TOMBSTONE: u8 = 2;
const PACK_SUFFIX: &str = ".pack";

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A pack's header.
#[must_use]
pub fn encode_pack_header(pack_id: u64, created_ms: u64) -> [u8; PACK_HEADER_BYTES as usize] {
    let mut h = [0u8; PACK_HEADER_BYTES as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&PACK_FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&pack_id.to_le_bytes());
    h[24..32].copy_from_slice(&created_ms.to_le_bytes());
    h
}

/// The pack id and creation time a header holds; refuses another format or version.
fn decode_pack_header(h: &[u8; PACK_HEADER_BYTES as usize], path: &Path) -> io::Result<(u64, u64)> {
    let field = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8 bytes"));
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if &h[..8] != MAGIC || version != PACK_FORMAT_VERSION || h[12..16] != [0; 4] {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a pack of format version {PACK_FORMAT_VERSION}",
                path.display()
            ),
        ));
    }
    Ok((field(16), field(24)))
}

/// One record's header as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) kind: u8,
    pub(crate) len: u32,
    pub(crate) id: BlobId,
    pub(crate) reference: u64,
    pub(crate) data_crc: u32,
}

impl RecordHeader {
    pub(crate) fn blob(id: BlobId, written_ms: u64, data: &[Bytes]) -> Self {
        let len = data.iter().map(Bytes::len).sum::<usize>();
        Self {
            kind: KIND_BLOB,
            len: u32::try_from(len).expect("packed blobs are small"),
            id,
            reference: written_ms,
            data_crc: data.iter().fold(0, |c, b| crc32c::crc32c_append(c, b)),
        }
    }

    pub(crate) fn tombstone(id: BlobId, pack_id: u64) -> Self {
        Self {
            kind: KIND_TOMBSTONE,
            len: 0,
            id,
            reference: pack_id,
            data_crc: 0,
        }
    }

    pub(crate) fn encode(&self) -> [u8; RECORD_HEADER_BYTES] {
        let mut h = [0u8; RECORD_HEADER_BYTES];
        h[0] = self.kind;
        h[4..8].copy_from_slice(&self.len.to_le_bytes());
        h[8..24].copy_from_slice(&self.id.to_bytes());
        h[24..32].copy_from_slice(&self.reference.to_le_bytes());
        h[32..36].copy_from_slice(&self.data_crc.to_le_bytes());
        let crc = crc32c::crc32c(&h[..36]);
        h[36..40].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// `None` for anything but a whole, intact record header (the torn end of a pack).
    fn decode(h: &[u8; RECORD_HEADER_BYTES]) -> Option<Self> {
        let u32_at = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().expect("4 bytes"));
        if crc32c::crc32c(&h[..36]) != u32_at(36) || h[1..4] != [0; 3] {
            return None;
        }
        let header = Self {
            kind: h[0],
            len: u32_at(4),
            id: BlobId::from_bytes(h[8..24].try_into().expect("16 bytes")),
            reference: u64::from_le_bytes(h[24..32].try_into().expect("8 bytes")),
            data_crc: u32_at(32),
        };
        let valid = match header.kind {
            KIND_BLOB => header.len as usize <= PACK_MAX_BLOB_BYTES,
            KIND_TOMBSTONE => header.len == 0,
            _ => false,
        };
        valid.then_some(header)
    }
}

/// Appends a blob record to `buf`.
pub fn encode_blob_record(buf: &mut Vec<u8>, id: BlobId, written_ms: u64, data: &[Bytes]) {
    buf.extend_from_slice(&RecordHeader::blob(id, written_ms, data).encode());
    for chunk in data {
        buf.extend_from_slice(chunk);
    }
}

/// Appends a tombstone record to `buf`.
pub fn encode_tombstone(buf: &mut Vec<u8>, id: BlobId, pack_id: u64) {
    buf.extend_from_slice(&RecordHeader::tombstone(id, pack_id).encode());
}

/// Where a packed blob's data lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    /// The pack's slot in the index.
    slot: u32,
    /// Length of the data.
    pub(crate) len: u32,
    /// Offset of the data in the pack (packs close at `PACK_TARGET_BYTES`; a larger one is
    /// refused when scanned).
    offset: u32,
    /// CRC-32C of the data.
    crc: u32,
    /// When it was written (ms since the epoch).
    written_ms: u64,
}

impl Loc {
    /// Where the blob record `h`, at `offset` of pack `slot`, keeps its data.
    fn of(slot: u32, offset: u64, h: &RecordHeader) -> io::Result<Self> {
        Ok(Self {
            slot,
            len: h.len,
            offset: data_offset(offset + RECORD_HEADER_BYTES as u64)?,
            crc: h.data_crc,
            written_ms: h.reference,
        })
    }

    fn record_bytes(&self) -> u64 {
        u64::from(self.len) + RECORD_HEADER_BYTES as u64
    }

    /// The offset of the data in its pack.
    pub(crate) fn offset(&self) -> u64 {
        u64::from(self.offset)
    }
}

/// A data offset as a `Loc` keeps it.
fn data_offset(offset: u64) -> io::Result<u32> {
    u32::try_from(offset).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "a pack larger than 4 GiB (Vallum closes packs at 64 MiB)",
        )
    })
}

/// Reads `buf.len()` bytes of `file` at `at`. With `nowait`, only from the page cache
/// (`RWF_NOWAIT`): `WouldBlock` when they are not all cached, or the kernel cannot say.
fn read_at(file: &File, buf: &mut [u8], at: u64, nowait: bool) -> io::Result<()> {
    if !nowait {
        return file.read_exact_at(buf, at);
    }
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::preadv2(
            file,
            &mut [io::IoSliceMut::new(&mut buf[done..])],
            at + done as u64,
            rustix::io::ReadWriteFlags::NOWAIT,
        ) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "a file ends early",
                ));
            }
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            // Not cached (EAGAIN), or no RWF_NOWAIT here (EOPNOTSUPP, ENOSYS).
            Err(_) => return Err(io::ErrorKind::WouldBlock.into()),
        }
    }
    Ok(())
}

/// splitmix64's finaliser: spreads a blob id's bits over the Bloom filter.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A blocked Bloom filter over a closed pack's blob ids: each id sets [`BLOOM_PROBES`] bits in
/// one 512-bit block, so asking a pack costs one cache line. About 1 % false positives at
/// [`BLOOM_BITS_PER_BLOB`].
#[derive(Debug)]
struct Bloom {
    blocks: Vec<[u64; 8]>,
}

impl Bloom {
    fn with_capacity(blobs: usize) -> Self {
        let blocks = (blobs * BLOOM_BITS_PER_BLOB).div_ceil(512).max(1);
        Self {
            blocks: vec![[0; 8]; blocks],
        }
    }

    /// The block `id` falls in, and its probes: (word, bit mask) within the block.
    fn probes(blocks: usize, id: BlobId) -> (usize, impl Iterator<Item = (usize, u64)>) {
        let bytes = id.to_bytes();
        let a = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        let b = u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes"));
        let h = mix(a ^ mix(b));
        let block = usize::try_from(h % blocks as u64).expect("a block index");
        let bits = mix(h);
        let probes = (0..BLOOM_PROBES).map(move |i| {
            let bit = (bits >> (i * 9)) & 511;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        });
        (block, probes)
    }

    fn insert(&mut self, id: BlobId) {
        let (block, probes) = Self::probes(self.blocks.len(), id);
        for (word, mask) in probes {
            self.blocks[block][word] |= mask;
        }
    }

    fn may_contain(&self, id: BlobId) -> bool {
        let (block, mut probes) = Self::probes(self.blocks.len(), id);
        probes.all(|(word, mask)| self.blocks[block][word] & mask != 0)
    }
}

/// What memory holds of a closed pack: its blob entries stay in its index file, sorted by id,
/// and are read a page at a time; in memory are a Bloom filter, the first id of each page,
/// and one bit per entry for copies that no longer count. About 2 bytes per blob.
#[derive(Debug)]
struct Closed {
    /// The pack's index file (the inode read at open: a rewrite by another process does not
    /// change what this one reads).
    idx: File,
    /// Blob entries in it.
    blobs: usize,
    /// The id of each page's first entry.
    fences: Vec<[u8; 16]>,
    bloom: Bloom,
    /// One bit per entry: set for a copy deleted, or superseded by a newer one.
    dead: Vec<u64>,
}

impl Closed {
    fn is_dead(&self, pos: usize) -> bool {
        self.dead[pos / 64] & (1 << (pos % 64)) != 0
    }

    fn set_dead(&mut self, pos: usize) {
        self.dead[pos / 64] |= 1 << (pos % 64);
    }

    /// `id`'s entry: its position, and its record's offset and header.
    fn find(
        &self,
        id: BlobId,
        end: u64,
        nowait: bool,
    ) -> io::Result<Option<(usize, u64, RecordHeader)>> {
        if !self.bloom.may_contain(id) {
            return Ok(None);
        }
        let key = id.to_bytes();
        let Some(page) = self.fences.partition_point(|f| *f <= key).checked_sub(1) else {
            return Ok(None);
        };
        let first = page * INDEX_PAGE_ENTRIES;
        let n = INDEX_PAGE_ENTRIES.min(self.blobs - first);
        let mut buf = [0u8; INDEX_PAGE_ENTRIES * INDEX_ENTRY_BYTES];
        let buf = &mut buf[..n * INDEX_ENTRY_BYTES];
        let at = INDEX_HEADER_BYTES + first * INDEX_ENTRY_BYTES;
        read_at(&self.idx, buf, at as u64, nowait)?;
        let entry = |i: usize| &buf[i * INDEX_ENTRY_BYTES..(i + 1) * INDEX_ENTRY_BYTES];
        let id_of = |i: usize| -> [u8; 16] { entry(i)[16..32].try_into().expect("16 bytes") };
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = usize::midpoint(lo, hi);
            if id_of(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == n || id_of(lo) != key {
            return Ok(None);
        }
        let damaged = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "a pack's index file has a damaged entry",
            )
        };
        let (offset, header) = decode_entry(entry(lo)).ok_or_else(damaged)?;
        if header.id != id
            || header.kind != KIND_BLOB
            || offset + RECORD_HEADER_BYTES as u64 + u64::from(header.len) > end
        {
            return Err(damaged());
        }
        Ok(Some((first + lo, offset, header)))
    }
}

/// How a pack's records are known.
#[derive(Debug)]
enum Form {
    /// Every blob in memory: the pack being written (by this process or another), or one
    /// without a usable index file. `None`: a copy deleted or superseded.
    Open(HashMap<BlobId, Option<Loc>>),
    /// From its index file.
    Closed(Closed),
}

#[derive(Debug)]
struct PackInfo {
    id: u64,
    path: PathBuf,
    /// A read-only handle, shared by reads (a removed pack stays readable through it).
    file: Arc<File>,
    created_ms: u64,
    /// How far the pack has been scanned or written (the end of its last whole record).
    end: u64,
    /// Bytes of records in it that count (not deleted, not superseded).
    live: u64,
    /// Blobs in it that count.
    live_blobs: u64,
    /// This process writes it (it is not scanned again).
    active: bool,
    form: Form,
}

impl PackInfo {
    /// Less than half of its records are live: worth compacting.
    fn sparse(&self) -> bool {
        !self.active && self.live.saturating_mul(2) < self.end - PACK_HEADER_BYTES
    }

    /// Created after `other`: its copy of a blob counts over `other`'s.
    fn newer_than(&self, other: &Self) -> bool {
        (self.created_ms, self.id) > (other.created_ms, other.id)
    }

    /// Bytes of memory its index takes (approximately).
    fn index_bytes(&self) -> usize {
        match &self.form {
            Form::Open(map) => map.capacity() * (std::mem::size_of::<(BlobId, Option<Loc>)>() + 1),
            Form::Closed(c) => c.bloom.blocks.len() * 64 + c.fences.len() * 16 + c.dead.len() * 8,
        }
    }
}

/// One pack's copy of a blob.
#[derive(Debug, Clone, Copy)]
struct Copy {
    slot: u32,
    /// Its entry's position, in a closed pack.
    pos: usize,
    /// Where its data lies; `None` if it no longer counts.
    loc: Option<Loc>,
}

/// Where every packed blob lies.
#[derive(Debug, Default)]
struct Index {
    packs: Vec<Option<PackInfo>>,
    slots: HashMap<u64, u32>,
    /// Slots, the pack created last first: a blob's copy there is the one that counts.
    newest_first: Vec<u32>,
}

impl Index {
    fn pack(&self, slot: u32) -> &PackInfo {
        self.packs[slot as usize].as_ref().expect("a slot in use")
    }

    fn pack_mut(&mut self, slot: u32) -> &mut PackInfo {
        self.packs[slot as usize].as_mut().expect("a slot in use")
    }

    fn add_pack(&mut self, info: PackInfo) -> u32 {
        let slot = u32::try_from(self.packs.len()).expect("fewer than 2^32 packs");
        self.slots.insert(info.id, slot);
        self.packs.push(Some(info));
        self.reorder();
        slot
    }

    fn remove_pack(&mut self, slot: u32) -> PackInfo {
        let info = self.packs[slot as usize].take().expect("a slot in use");
        self.slots.remove(&info.id);
        self.reorder();
        info
    }

    fn reorder(&mut self) {
        let mut order: Vec<u32> = self.slots.values().copied().collect();
        order.sort_by_key(|slot| {
            let p = self.pack(*slot);
            std::cmp::Reverse((p.created_ms, p.id))
        });
        self.newest_first = order;
    }

    /// Pack `slot`'s copy of `id`, if it has one.
    fn copy_in(&self, slot: u32, id: BlobId, nowait: bool) -> io::Result<Option<Copy>> {
        let p = self.pack(slot);
        Ok(match &p.form {
            Form::Open(map) => map.get(&id).map(|loc| Copy {
                slot,
                pos: 0,
                loc: *loc,
            }),
            Form::Closed(c) => match c.find(id, p.end, nowait)? {
                Some((pos, offset, h)) => Some(Copy {
                    slot,
                    pos,
                    loc: if c.is_dead(pos) {
                        None
                    } else {
                        Some(Loc::of(slot, offset, &h)?)
                    },
                }),
                None => None,
            },
        })
    }

    /// The copy of `id` that counts: the one in the pack created last (even if deleted there).
    fn newest_copy(&self, id: BlobId, nowait: bool) -> io::Result<Option<Copy>> {
        for &slot in &self.newest_first {
            if let Some(copy) = self.copy_in(slot, id, nowait)? {
                return Ok(Some(copy));
            }
        }
        Ok(None)
    }

    /// Where `id`'s data lies, if it is packed and not deleted.
    fn locate(&self, id: BlobId, nowait: bool) -> io::Result<Option<(Arc<File>, Loc)>> {
        Ok(self
            .newest_copy(id, nowait)?
            .and_then(|c| c.loc)
            .map(|loc| (Arc::clone(&self.pack(loc.slot).file), loc)))
    }

    /// Makes `copy` no longer count.
    fn kill(&mut self, id: BlobId, copy: Copy) {
        let Some(loc) = copy.loc else {
            return;
        };
        let p = self.pack_mut(copy.slot);
        match &mut p.form {
            Form::Open(map) => {
                map.insert(id, None);
            }
            Form::Closed(c) => c.set_dead(copy.pos),
        }
        p.live -= loc.record_bytes();
        p.live_blobs -= 1;
    }

    /// Records blob `id` at `loc` in the open pack `loc.slot`: it supersedes a copy in an
    /// older pack, and is superseded by one in a newer pack.
    fn insert(&mut self, id: BlobId, loc: Loc) {
        // Only for accounting: lookups go newest first whatever this finds.
        let newest = self.newest_copy(id, false).ok().flatten();
        let counts = match newest {
            Some(c) if c.slot != loc.slot => {
                if self.pack(loc.slot).newer_than(self.pack(c.slot)) {
                    self.kill(id, c);
                    true
                } else {
                    false
                }
            }
            _ => true,
        };
        let p = self.pack_mut(loc.slot);
        let Form::Open(map) = &mut p.form else {
            unreachable!("records are added only to open packs");
        };
        let old = map.insert(id, counts.then_some(loc));
        if let Some(Some(old)) = old {
            p.live -= old.record_bytes();
            p.live_blobs -= 1;
        }
        if counts {
            p.live += loc.record_bytes();
            p.live_blobs += 1;
        }
    }

    /// Applies a tombstone: deletes pack `pack_id`'s copy of `id`. `true` if it counted.
    fn remove_in(&mut self, id: BlobId, pack_id: u64) -> io::Result<bool> {
        let Some(&slot) = self.slots.get(&pack_id) else {
            return Ok(false);
        };
        match self.copy_in(slot, id, false)? {
            Some(copy) if copy.loc.is_some() => {
                self.kill(id, copy);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Scans the open pack `slot` from its end so far to `size`: indexes its blobs, and
    /// returns its tombstones for the caller to apply once every pack of the pass is read.
    fn scan(&mut self, slot: u32, size: u64) -> io::Result<Vec<(BlobId, u64)>> {
        let (file, from) = {
            let p = self.pack(slot);
            (Arc::clone(&p.file), p.end)
        };
        let mut blobs = Vec::new();
        let mut tombstones = Vec::new();
        let end = scan_records(&file, from, size, |offset, h| {
            match h.kind {
                KIND_BLOB => blobs.push((h.id, Loc::of(slot, offset, &h)?)),
                _ => tombstones.push((h.id, h.reference)),
            }
            Ok(())
        })?;
        for (id, loc) in blobs {
            self.insert(id, loc);
        }
        self.pack_mut(slot).end = end;
        Ok(tombstones)
    }

    /// Closes the open pack `slot` from its index file, if that is intact and covers `size`:
    /// its map is replaced by the filter and fences. A copy the map had dropped stays dead; a
    /// record past what the map had seen counts. Returns the tombstones past that point.
    fn close(&mut self, slot: u32, size: u64) -> io::Result<Option<Vec<(BlobId, u64)>>> {
        let (pack_id, path) = {
            let p = self.pack(slot);
            (p.id, p.path.clone())
        };
        let mut idx = match File::open(index_path(&path)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut raw = Vec::new();
        idx.read_to_end(&mut raw)?;
        let Some(listed) = decode_index(&raw, pack_id, size) else {
            return Ok(None);
        };
        drop(raw);
        let p = self.pack_mut(slot);
        let seen = p.end;
        let empty = HashMap::new();
        let map = match &p.form {
            Form::Open(map) => map,
            Form::Closed(_) => &empty,
        };
        let mut closed = Closed {
            idx,
            blobs: listed.blobs.len(),
            fences: Vec::with_capacity(listed.blobs.len().div_ceil(INDEX_PAGE_ENTRIES)),
            bloom: Bloom::with_capacity(listed.blobs.len()),
            dead: vec![0; listed.blobs.len().div_ceil(64)],
        };
        let (mut live, mut live_blobs) = (0, 0);
        for (pos, (offset, h)) in listed.blobs.iter().enumerate() {
            closed.bloom.insert(h.id);
            if pos % INDEX_PAGE_ENTRIES == 0 {
                closed.fences.push(h.id.to_bytes());
            }
            let data_at = offset + RECORD_HEADER_BYTES as u64;
            let counts = *offset >= seen
                || matches!(map.get(&h.id), Some(Some(loc)) if loc.offset() == data_at);
            if counts {
                live += u64::from(h.len) + RECORD_HEADER_BYTES as u64;
                live_blobs += 1;
            } else {
                closed.set_dead(pos);
            }
        }
        p.form = Form::Closed(closed);
        p.end = size;
        p.live = live;
        p.live_blobs = live_blobs;
        Ok(Some(
            listed
                .tombstones
                .into_iter()
                .filter(|(offset, _)| *offset >= seen)
                .map(|(_, h)| (h.id, h.reference))
                .collect(),
        ))
    }

    /// Brings the open pack `slot` up to date (from its index file if it has a usable one,
    /// else by scanning what it gained) and closes it if no one writes it any longer.
    /// Returns its new tombstones.
    fn load(&mut self, slot: u32) -> io::Result<Vec<(BlobId, u64)>> {
        let (file, path, pack_id) = {
            let p = self.pack(slot);
            (Arc::clone(&p.file), p.path.clone(), p.id)
        };
        let size = file.metadata()?.len();
        if let Some(tombstones) = self.close(slot, size)? {
            return Ok(tombstones);
        }
        let mut tombstones = if size > self.pack(slot).end {
            self.scan(slot, size)?
        } else {
            Vec::new()
        };
        // No writer holds it (a writer that stopped without writing the index file, or a
        // pack of index version 1): index it, and keep only its filter in memory.
        if unlocked(&path)? {
            match write_index(&path, pack_id, &file, size) {
                Ok(()) => tombstones.extend(self.close(slot, size)?.unwrap_or_default()),
                Err(e) => {
                    tracing::debug!(pack = %path.display(), error = %e, "could not write a pack's index file");
                }
            }
        }
        Ok(tombstones)
    }

    /// Reads the packs in `dir` this index does not know, and what the open ones it knows
    /// (other than this process's own) gained since; drops packs another process removed.
    fn refresh(&mut self, dir: &Path) -> io::Result<()> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(PACK_SUFFIX))
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            else {
                continue;
            };
            found.push((id, entry.path()));
        }
        let present: std::collections::HashSet<u64> = found.iter().map(|(id, _)| *id).collect();
        let gone: Vec<u32> = self
            .slots
            .iter()
            .filter(|(id, slot)| !present.contains(id) && !self.pack(**slot).active)
            .map(|(_, slot)| *slot)
            .collect();
        // Compacted by another process: its blobs are in a newer pack, read below.
        for slot in gone {
            self.remove_pack(slot);
        }
        let mut fresh = Vec::new();
        for (id, path) in found {
            if let Some(&slot) = self.slots.get(&id) {
                let p = self.pack(slot);
                if !p.active && matches!(p.form, Form::Open(_)) {
                    fresh.push(slot);
                }
                continue;
            }
            let file = match File::open(&path) {
                Ok(f) => f,
                // Removed since the directory was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut header = [0u8; PACK_HEADER_BYTES as usize];
            match file.read_exact_at(&mut header, 0) {
                Ok(()) => {}
                // Created by a writer that has not written its header yet, or that crashed
                // before its header was synced: nothing in it was ever acknowledged.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => continue,
                Err(e) => return Err(e),
            }
            let (pack_id, created_ms) = decode_pack_header(&header, &path)?;
            if pack_id != id {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} holds pack {pack_id:016x}", path.display()),
                ));
            }
            fresh.push(self.add_pack(PackInfo {
                id,
                path,
                file: Arc::new(file),
                created_ms,
                end: PACK_HEADER_BYTES,
                live: 0,
                live_blobs: 0,
                active: false,
                form: Form::Open(HashMap::new()),
            }));
        }
        // Oldest first, so that a newer copy is read after the one it supersedes.
        fresh.sort_by_key(|slot| (self.pack(*slot).created_ms, self.pack(*slot).id));
        let mut tombstones = Vec::new();
        for slot in fresh {
            tombstones.extend(self.load(slot)?);
        }
        for (id, pack_id) in tombstones {
            self.remove_in(id, pack_id)?;
        }
        Ok(())
    }

    /// Every blob whose copy counts and that was written before `cutoff_ms`.
    fn written_before(&self, cutoff_ms: u64) -> io::Result<Vec<BlobId>> {
        // Every copy, with its pack's rank (0: newest) and whether it counts; then per id
        // the newest copy decides.
        let mut copies: Vec<(BlobId, usize, bool)> = Vec::new();
        for (rank, &slot) in self.newest_first.iter().enumerate() {
            let p = self.pack(slot);
            match &p.form {
                Form::Open(map) => {
                    copies.extend(map.iter().map(|(id, loc)| {
                        (*id, rank, loc.is_some_and(|l| l.written_ms < cutoff_ms))
                    }))
                }
                Form::Closed(c) => {
                    let mut raw = vec![0u8; c.blobs * INDEX_ENTRY_BYTES];
                    c.idx.read_exact_at(&mut raw, INDEX_HEADER_BYTES as u64)?;
                    for (pos, e) in raw.chunks_exact(INDEX_ENTRY_BYTES).enumerate() {
                        let (_, h) = decode_entry(e).ok_or_else(|| {
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("pack {:016x}'s index file has a damaged entry", p.id),
                            )
                        })?;
                        copies.push((h.id, rank, !c.is_dead(pos) && h.reference < cutoff_ms));
                    }
                }
            }
        }
        copies.sort_unstable_by_key(|(id, rank, _)| (*id, *rank));
        copies.dedup_by_key(|(id, _, _)| *id);
        Ok(copies
            .into_iter()
            .filter_map(|(id, _, counts)| counts.then_some(id))
            .collect())
    }
}

/// No process holds pack `path`'s lock (no one writes or compacts it).
fn unlocked(path: &Path) -> io::Result<bool> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared).is_ok())
}

/// What a pack's index file lists.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Blob records, sorted by id, one per id.
    pub(crate) blobs: Vec<(u64, RecordHeader)>,
    /// Tombstone records, in pack order.
    pub(crate) tombstones: Vec<(u64, RecordHeader)>,
}

/// The index file of a closed pack, version [`PACK_INDEX_VERSION`]: the pack's records, blob
/// records sorted by id (the one at the highest offset if an id appears twice) then tombstones
/// in pack order, so that a blob is found by reading one page of it. Layout (integers
/// little-endian): `VALLUMPI`, u32 version, u32 zero, u64 pack id, u64 the pack's size it
/// covers, u64 blob records, u64 tombstones, then per record its u64 offset and its 40-byte
/// header, then the CRC-32C of all before. It is a cache: a missing, damaged or stale one (or
/// one of version 1, whose records are in pack order) only means the pack is scanned.
pub(crate) fn encode_index(pack_id: u64, size: u64, records: &[(u64, RecordHeader)]) -> Vec<u8> {
    let mut blobs: Vec<&(u64, RecordHeader)> = records
        .iter()
        .filter(|(_, h)| h.kind == KIND_BLOB)
        .collect();
    // Stable: of two records of one id, the later stays last, and is kept.
    blobs.sort_by_key(|(_, h)| h.id.to_bytes());
    let mut unique: Vec<&(u64, RecordHeader)> = Vec::with_capacity(blobs.len());
    for record in blobs {
        match unique.last_mut() {
            Some(last) if last.1.id == record.1.id => *last = record,
            _ => unique.push(record),
        }
    }
    let tombstones: Vec<_> = records
        .iter()
        .filter(|(_, h)| h.kind != KIND_BLOB)
        .collect();
    let count = unique.len() + tombstones.len();
    let mut out = Vec::with_capacity(INDEX_HEADER_BYTES + count * INDEX_ENTRY_BYTES + 4);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&PACK_INDEX_VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&pack_id.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&(unique.len() as u64).to_le_bytes());
    out.extend_from_slice(&(tombstones.len() as u64).to_le_bytes());
    for (offset, header) in unique.into_iter().chain(tombstones) {
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&header.encode());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// An index entry's offset and record header, if the header is intact.
fn decode_entry(e: &[u8]) -> Option<(u64, RecordHeader)> {
    let offset = u64::from_le_bytes(e[..8].try_into().expect("8 bytes"));
    let header = RecordHeader::decode(e[8..INDEX_ENTRY_BYTES].try_into().expect("a header"))?;
    Some((offset, header))
}

/// What an index file lists, if it is intact, of this version, and covers exactly `pack_id`
/// up to `size`.
pub(crate) fn decode_index(raw: &[u8], pack_id: u64, size: u64) -> Option<Listed> {
    let body_len = raw.len().checked_sub(4)?;
    let (body, crc) = raw.split_at(body_len);
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    if body.len() < INDEX_HEADER_BYTES
        || crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?)
        || &body[..8] != INDEX_MAGIC
        || body[8..12] != PACK_INDEX_VERSION.to_le_bytes()
        || body[12..16] != [0; 4]
        || u64_at(16) != pack_id
        || u64_at(24) != size
    {
        return None;
    }
    let blobs = usize::try_from(u64_at(32)).ok()?;
    let tombstones = usize::try_from(u64_at(40)).ok()?;
    let entries = &body[INDEX_HEADER_BYTES..];
    if entries.len()
        != blobs
            .checked_add(tombstones)?
            .checked_mul(INDEX_ENTRY_BYTES)?
    {
        return None;
    }
    let mut listed = Listed {
        blobs: Vec::with_capacity(blobs),
        tombstones: Vec::with_capacity(tombstones),
    };
    for (i, e) in entries.chunks_exact(INDEX_ENTRY_BYTES).enumerate() {
        let (offset, header) = decode_entry(e)?;
        let end = offset.checked_add(RECORD_HEADER_BYTES as u64 + u64::from(header.len))?;
        if offset < PACK_HEADER_BYTES || end > size || (header.kind == KIND_BLOB) != (i < blobs) {
            return None;
        }
        if i < blobs {
            // Strictly increasing ids: what a page lookup relies on.
            if listed
                .blobs
                .last()
                .is_some_and(|(_, last)| last.id.to_bytes() >= header.id.to_bytes())
            {
                return None;
            }
            listed.blobs.push((offset, header));
        } else {
            listed.tombstones.push((offset, header));
        }
    }
    Some(listed)
}

fn index_path(pack: &Path) -> PathBuf {
    pack.with_extension(&INDEX_SUFFIX[1..])
}

/// Writes the index file of the closed pack `path`, covering its whole records up to `size`
/// (a torn end past them, left by a crash, is never appended to): written aside, synced and
/// renamed into place. Failing only costs a scan at the next open.
fn write_index(path: &Path, pack_id: u64, file: &File, size: u64) -> io::Result<()> {
    let mut records = Vec::new();
    scan_records(file, PACK_HEADER_BYTES, size, |offset, h| {
        records.push((offset, h));
        Ok(())
    })?;
    let target = index_path(path);
    let tmp = target.with_extension("idx.tmp");
    let mut out = File::create(&tmp)?;
    std::io::Write::write_all(&mut out, &encode_index(pack_id, size, &records))?;
    out.sync_all()?;
    std::fs::rename(&tmp, &target)
}

/// Calls `each(offset, header)` for every whole record of `file` from `from` up to `size`;
/// returns the end of the last whole one.
fn scan_records(
    file: &File,
    from: u64,
    size: u64,
    mut each: impl FnMut(u64, RecordHeader) -> io::Result<()>,
) -> io::Result<u64> {
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    reader.seek(SeekFrom::Start(from))?;
    let mut at = from;
    let mut h = [0u8; RECORD_HEADER_BYTES];
    while at + RECORD_HEADER_BYTES as u64 <= size {
        reader.read_exact(&mut h)?;
        let Some(header) = RecordHeader::decode(&h) else {
            break;
        };
        let next = at + RECORD_HEADER_BYTES as u64 + u64::from(header.len);
        if next > size {
            break;
        }
        each(at, header)?;
        reader.seek_relative(i64::from(header.len))?;
        at = next;
    }
    Ok(at)
}

enum Op {
    Put {
        id: BlobId,
        data: Vec<Bytes>,
        reply: tokio::sync::oneshot::Sender<io::Result<()>>,
    },
    Delete {
        id: BlobId,
        reply: tokio::sync::oneshot::Sender<io::Result<()>>,
    },
}

impl Op {
    fn bytes(&self) -> usize {
        match self {
            Self::Put { data, .. } => {
                RECORD_HEADER_BYTES + data.iter().map(Bytes::len).sum::<usize>()
            }
            Self::Delete { .. } => RECORD_HEADER_BYTES,
        }
    }
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    index: RwLock<Index>,
}

impl Shared {
    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A site's packs: the index, and the writer thread that appends to them.
#[derive(Debug)]
pub(crate) struct Packs {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// A copy of an io::Error for every request of a failed group (keeping the OS error code, by
/// which a full disk is told apart).
fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

impl Packs {
    /// Opens the packs under `dir` (creating it), scanning them into the index.
    pub(crate) fn open(dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut index = Index::default();
        index.refresh(&dir)?;
        Ok(Self {
            shared: Arc::new(Shared {
                dir,
                index: RwLock::new(index),
            }),
            tx: Mutex::new(None),
            writer: Mutex::new(None),
        })
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.shared.index()
    }

    /// Where `id` lies, if this process knows it packed, from memory and the page cache
    /// only: `WouldBlock` when an index page must be read from the disk (then call
    /// [`locate_blocking`](Self::locate_blocking) off the async runtime).
    pub(crate) fn locate(&self, id: BlobId) -> io::Result<Option<(Arc<File>, Loc)>> {
        self.index().locate(id, true)
    }

    /// As [`locate`](Self::locate), reading from the disk if need be (blocking).
    pub(crate) fn locate_blocking(&self, id: BlobId) -> io::Result<Option<(Arc<File>, Loc)>> {
        self.index().locate(id, false)
    }

    /// As [`locate_blocking`](Self::locate_blocking), after reading what other processes
    /// packed since (blocking).
    pub(crate) fn locate_fresh(&self, id: BlobId) -> io::Result<Option<(Arc<File>, Loc)>> {
        self.shared.index_mut().refresh(&self.shared.dir)?;
        self.locate_blocking(id)
    }

    /// Every packed blob written before `cutoff_ms`, after a refresh (blocking).
    pub(crate) fn written_before(&self, cutoff_ms: u64) -> io::Result<Vec<BlobId>> {
        self.shared.index_mut().refresh(&self.shared.dir)?;
        self.index().written_before(cutoff_ms)
    }

    /// Hands `op` to the writer thread (started on first use).
    fn send(&self, op: Op) -> io::Result<()> {
        let mut tx = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tx.is_none() {
            let (sender, rx) = mpsc::channel();
            let shared = Arc::clone(&self.shared);
            let handle = std::thread::Builder::new()
                .name("vallum-packs".into())
                .stack_size(WRITER_STACK_BYTES)
                .spawn(move || Writer::new(shared).run(&rx))?;
            *self
                .writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handle);
            *tx = Some(sender);
        }
        tx.as_ref()
            .expect("started above")
            .send(op)
            .map_err(|_| io::Error::other("the pack writer has stopped"))
    }

    /// Appends blob `id` holding `data`; returns once it is durable.
    pub(crate) async fn put(&self, id: BlobId, data: Vec<Bytes>) -> io::Result<()> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.send(Op::Put { id, data, reply })?;
        done.await
            .map_err(|_| io::Error::other("the pack writer has stopped"))?
    }

    /// Deletes packed blob `id`; returns once the deletion is durable.
    pub(crate) async fn delete(&self, id: BlobId) -> io::Result<()> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.send(Op::Delete { id, reply })?;
        done.await
            .map_err(|_| io::Error::other("the pack writer has stopped"))?
    }

    /// Packed blobs and the packs holding them, for reports and tests.
    pub(crate) fn stats(&self) -> PackStats {
        let index = self.index();
        let packs: Vec<_> = index.packs.iter().flatten().collect();
        PackStats {
            packs: packs.len(),
            blobs: packs.iter().map(|p| p.live_blobs).sum(),
            pack_bytes: packs.iter().map(|p| p.end).sum(),
            live_bytes: packs.iter().map(|p| p.live).sum(),
            index_bytes: packs.iter().map(|p| p.index_bytes()).sum(),
            open_packs: packs
                .iter()
                .filter(|p| matches!(p.form, Form::Open(_)))
                .count(),
        }
    }
}

impl Drop for Packs {
    fn drop(&mut self) {
        // Closing the channel stops the writer once it has answered what it holds; it then
        // closes its pack (writing the pack's index file) before the store is gone.
        self.tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(writer) = writer
            && writer.join().is_err()
        {
            tracing::error!("the pack writer thread panicked");
        }
    }
}

/// How many packs and bytes a site's packs hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackStats {
    /// Pack files.
    pub packs: usize,
    /// Live packed blobs.
    pub blobs: u64,
    /// Bytes of all packs.
    pub pack_bytes: u64,
    /// Bytes of live records in them.
    pub live_bytes: u64,
    /// Bytes of memory the index of where they lie takes (approximately).
    pub index_bytes: usize,
    /// Packs indexed in memory in full: being written, or without a usable index file.
    pub open_packs: usize,
}

/// The pack this process appends to.
struct Active {
    slot: u32,
    id: u64,
    /// Opened for writing; holds the pack's `flock` while open.
    file: File,
    end: u64,
    /// Writes and deletes it has taken (it closes at [`PACK_MAX_WRITES`]).
    writes: u32,
}

/// A sparse pack being compacted.
struct Compaction {
    slot: u32,
    /// Holds the pack's `flock` until it is removed.
    _lock: File,
    cursor: u64,
    end: u64,
}

/// What a group commit does to the index once its bytes are durable.
enum Effect {
    Insert(BlobId, Loc),
    Remove(BlobId, u64),
    Nothing,
}

/// Appends blob record `h` with its `data` to `buf`; the index entry it makes once `buf` is
/// written (its offset relative to `buf`'s start, its slot the active pack's).
fn push_blob(buf: &mut Vec<u8>, h: &RecordHeader, data: &[impl AsRef<[u8]>]) -> Effect {
    let loc = Loc {
        slot: 0,
        len: h.len,
        // A group is at most MAX_GROUP_BYTES plus one small blob.
        offset: u32::try_from(buf.len() + RECORD_HEADER_BYTES).expect("a group under 4 GiB"),
        written_ms: h.reference,
        crc: h.data_crc,
    };
    buf.extend_from_slice(&h.encode());
    for chunk in data {
        buf.extend_from_slice(chunk.as_ref());
    }
    Effect::Insert(h.id, loc)
}

struct Writer {
    shared: Arc<Shared>,
    active: Option<Active>,
    compaction: Option<Compaction>,
    last_compaction: Instant,
}

impl Writer {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            active: None,
            compaction: None,
            last_compaction: Instant::now(),
        }
    }

    fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.shared.index_mut()
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.shared.index()
    }

    fn run(mut self, rx: &mpsc::Receiver<Op>) {
        loop {
            let first = match rx.recv_timeout(COMPACT_INTERVAL) {
                Ok(op) => op,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.compact_step();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut bytes = first.bytes();
            let mut batch = vec![first];
            while bytes < MAX_GROUP_BYTES && batch.len() < MAX_GROUP_OPS {
                match rx.try_recv() {
                    Ok(op) => {
                        bytes += op.bytes();
                        batch.push(op);
                    }
                    Err(_) => break,
                }
            }
            self.commit(batch);
            if self.last_compaction.elapsed() >= COMPACT_INTERVAL {
                self.compact_step();
            }
        }
        self.retire();
    }

    /// The active pack, created if there is none.
    fn active(&mut self) -> io::Result<&mut Active> {
        if self.active.is_none() {
            self.active = Some(self.create_pack()?);
        }
        Ok(self.active.as_mut().expect("created above"))
    }

    fn create_pack(&self) -> io::Result<Active> {
        let id = u64::from_le_bytes(
            BlobId::random().to_bytes()[..8]
                .try_into()
                .expect("8 bytes"),
        );
        let path = self.shared.dir.join(format!("{id:016x}{PACK_SUFFIX}"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
        // Created after every pack known: its copies (compaction's) count over theirs.
        let created_ms = {
            let index = self.index();
            index
                .packs
                .iter()
                .flatten()
                .map(|p| p.created_ms + 1)
                .fold(now_ms(), u64::max)
        };
        let setup = || -> io::Result<()> {
            file.write_all_at(&encode_pack_header(id, created_ms), 0)?;
            file.sync_all()?;
            sync_dir(&self.shared.dir)
        };
        if let Err(e) = setup() {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let reader = File::open(&path)?;
        let slot = self.index_mut().add_pack(PackInfo {
            id,
            path,
            file: Arc::new(reader),
            created_ms,
            end: PACK_HEADER_BYTES,
            live: 0,
            live_blobs: 0,
            active: true,
            form: Form::Open(HashMap::new()),
        });
        Ok(Active {
            slot,
            id,
            file,
            end: PACK_HEADER_BYTES,
            writes: 0,
        })
    }

    /// Stops writing the active pack: it is closed (its lock released) and may be compacted;
    /// its index file is written, and memory keeps only its filter.
    fn retire(&mut self) {
        let Some(active) = self.active.take() else {
            return;
        };
        let path = {
            let mut index = self.index_mut();
            let pack = index.pack_mut(active.slot);
            pack.active = false;
            pack.path.clone()
        };
        let closed = active.file.metadata().and_then(|m| {
            write_index(&path, active.id, &active.file, m.len())?;
            let mut index = self.index_mut();
            // Nothing past what this writer appended and indexed, unless a failed group
            // could not be cut back: its records are indexed, never acknowledged.
            for (id, pack_id) in index.close(active.slot, m.len())?.unwrap_or_default() {
                index.remove_in(id, pack_id)?;
            }
            Ok(())
        });
        if let Err(e) = closed {
            tracing::warn!(pack = %path.display(), error = %e, "could not write a pack's index file; its index stays in memory, and the pack will be scanned at the next open");
        }
    }

    /// Appends `buf` to the active pack and syncs it; on success applies `effects` (whose
    /// offsets are relative to `buf`'s start) to the index. On failure the pack is cut back to
    /// where it was, or given up if that fails too.
    fn append(&mut self, buf: &[u8], effects: Vec<Effect>) -> io::Result<()> {
        let active = self.active()?;
        let (slot, start) = (active.slot, active.end);
        let written = active
            .file
            .write_all_at(buf, start)
            .and_then(|()| active.file.sync_data());
        if let Err(e) = written {
            let restored = active
                .file
                .set_len(start)
                .and_then(|()| active.file.sync_data());
            if restored.is_err() {
                self.retire();
            }
            return Err(e);
        }
        active.end += buf.len() as u64;
        active.writes = active
            .writes
            .saturating_add(u32::try_from(effects.len()).unwrap_or(u32::MAX));
        let (end, full) = (
            active.end,
            active.end >= PACK_TARGET_BYTES || active.writes >= PACK_MAX_WRITES,
        );
        {
            let mut index = self.index_mut();
            index.pack_mut(slot).end = end;
            for effect in effects {
                match effect {
                    Effect::Insert(id, mut loc) => {
                        loc.slot = slot;
                        // The active pack is below PACK_TARGET_BYTES where a group starts.
                        loc.offset += u32::try_from(start).expect("a pack under 4 GiB");
                        index.insert(id, loc);
                    }
                    Effect::Remove(id, pack_id) => {
                        // Durable: a failure here only leaves it to be applied at the next open.
                        if let Err(e) = index.remove_in(id, pack_id) {
                            tracing::warn!(error = %e, "a pack's index could not apply a deletion");
                        }
                    }
                    Effect::Nothing => {}
                }
            }
        }
        if full {
            self.retire();
        }
        Ok(())
    }

    /// One group commit: every op's record in one write and one sync.
    fn commit(&mut self, batch: Vec<Op>) {
        let mut buf = Vec::with_capacity(batch.iter().map(Op::bytes).sum());
        let mut effects = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let written_ms = now_ms();
        // Deletes of blobs put in this same group: the put's copy is in the active pack.
        let mut pending = std::collections::HashSet::new();
        for op in batch {
            match op {
                Op::Put { id, data, reply } => {
                    let header = RecordHeader::blob(id, written_ms, &data);
                    effects.push(push_blob(&mut buf, &header, &data));
                    pending.insert(id);
                    replies.push(reply);
                }
                Op::Delete { id, reply } => {
                    let in_pack = if pending.contains(&id) {
                        match self.active() {
                            Ok(a) => Some(a.id),
                            Err(_) => None,
                        }
                    } else {
                        let index = self.index();
                        match index.newest_copy(id, false) {
                            Ok(copy) => copy
                                .filter(|c| c.loc.is_some())
                                .map(|c| index.pack(c.slot).id),
                            Err(e) => {
                                drop(index);
                                let _ = reply.send(Err(e));
                                continue;
                            }
                        }
                    };
                    match in_pack {
                        Some(pack_id) => {
                            encode_tombstone(&mut buf, id, pack_id);
                            effects.push(Effect::Remove(id, pack_id));
                        }
                        None => effects.push(Effect::Nothing),
                    }
                    replies.push(reply);
                }
            }
        }
        let outcome = self.append(&buf, effects);
        for reply in replies {
            // A request that stopped waiting does not stop the others.
            let _ = reply.send(match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(copy_error(e)),
            });
        }
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "a group commit to the site's pack failed");
        }
    }

    /// Moves up to [`COMPACT_STEP_BYTES`] of a sparse pack's live records to the active pack;
    /// removes the pack once all are moved. Failures are logged and retried later.
    fn compact_step(&mut self) {
        self.last_compaction = Instant::now();
        if let Err(e) = self.try_compact_step() {
            tracing::warn!(error = %e, "compacting a pack failed; it will be tried again");
            self.compaction = None;
        }
    }

    fn try_compact_step(&mut self) -> io::Result<()> {
        if self.compaction.is_none() {
            self.compaction = self.pick_sparse()?;
        }
        let Some(c) = &self.compaction else {
            return Ok(());
        };
        let (slot, from, end) = (c.slot, c.cursor, c.end);
        let (file, pack_id) = {
            let index = self.index();
            let p = index.pack(slot);
            (Arc::clone(&p.file), p.id)
        };
        let stop = from.saturating_add(COMPACT_STEP_BYTES).min(end);
        let mut next = from;
        let mut live = Vec::new();
        let mut carried = Vec::new();
        // Copies that count here but are superseded by a newer pack's (left by a compaction
        // a crash cut short): not moved, and no longer counted.
        let mut superseded = Vec::new();
        let scanned = {
            let index = self.index();
            scan_records(&file, from, end, |at, h| {
                if at >= stop {
                    return Err(io::Error::new(io::ErrorKind::Interrupted, "step done"));
                }
                next = at + RECORD_HEADER_BYTES as u64 + u64::from(h.len);
                match h.kind {
                    KIND_BLOB => {
                        let data_at = at + RECORD_HEADER_BYTES as u64;
                        let here = index
                            .copy_in(slot, h.id, false)?
                            .filter(|c| c.loc.is_some_and(|l| l.offset() == data_at));
                        if let Some(here) = here {
                            let newest = index.newest_copy(h.id, false)?;
                            if newest.is_some_and(|c| c.slot == slot) {
                                live.push((h, data_at));
                            } else {
                                superseded.push((h.id, here));
                            }
                        }
                    }
                    // A tombstone is kept while the pack whose copy it deletes is there.
                    _ if h.reference != pack_id && index.slots.contains_key(&h.reference) => {
                        carried.push(h);
                    }
                    _ => {}
                }
                Ok(())
            })
        };
        match scanned {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
            // The index scanned this far before: the pack changed under its lock.
            _ if next < stop => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("pack {pack_id:016x} has no whole record at offset {next}"),
                ));
            }
            _ => {}
        }
        {
            let mut index = self.index_mut();
            for (id, copy) in superseded {
                index.kill(id, copy);
            }
        }
        let mut buf = Vec::new();
        let mut effects = Vec::new();
        for (h, data_at) in live {
            let mut data = vec![0u8; h.len as usize];
            file.read_exact_at(&mut data, data_at)?;
            // The header is copied as it was: a copy of damaged data stays detectable.
            effects.push(push_blob(&mut buf, &h, &[data]));
        }
        for h in carried {
            buf.extend_from_slice(&h.encode());
            effects.push(Effect::Nothing);
        }
        if !buf.is_empty() {
            // The copies must go to a pack created after this one, or theirs would not count.
            let older = self.active.as_ref().is_some_and(|a| {
                let index = self.index();
                !index.pack(a.slot).newer_than(index.pack(slot))
            });
            if older {
                self.retire();
            }
            self.append(&buf, effects)?;
        }
        let c = self.compaction.as_mut().expect("checked above");
        c.cursor = next;
        if next >= end {
            let path = {
                let mut index = self.index_mut();
                if index.pack(slot).live_blobs > 0 {
                    // Not every live record was moved: keep the pack.
                    return Err(io::Error::other(format!(
                        "pack {pack_id:016x} still holds live blobs after compaction"
                    )));
                }
                let info = index.remove_pack(slot);
                std::fs::remove_file(&info.path)?;
                match std::fs::remove_file(index_path(&info.path)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                info.path
            };
            sync_dir(&self.shared.dir)?;
            tracing::debug!(pack = %path.display(), "compacted pack removed");
            self.compaction = None;
        }
        Ok(())
    }

    /// The sparsest pack no writer holds, locked for compaction.
    fn pick_sparse(&mut self) -> io::Result<Option<Compaction>> {
        let mut candidates: Vec<(u32, f64)> = {
            let index = self.index();
            index
                .packs
                .iter()
                .enumerate()
                .filter_map(|(slot, p)| {
                    let p = p.as_ref()?;
                    #[allow(clippy::cast_precision_loss)]
                    let ratio = p.live as f64 / (p.end - PACK_HEADER_BYTES).max(1) as f64;
                    p.sparse()
                        .then(|| (u32::try_from(slot).expect("fewer than 2^32 packs"), ratio))
                })
                .collect()
        };
        if candidates.is_empty() {
            return Ok(None);
        }
        // What other processes wrote counts: their tombstones make blobs dead, their packs
        // keep tombstones needed.
        self.index_mut().refresh(&self.shared.dir)?;
        candidates.sort_by(|a, b| a.1.total_cmp(&b.1));
        for (slot, _) in candidates {
            let (path, sparse) = {
                let index = self.index();
                match index.packs.get(slot as usize).and_then(Option::as_ref) {
                    Some(p) => (p.path.clone(), p.sparse()),
                    None => continue,
                }
            };
            if !sparse {
                continue;
            }
            let lock = match std::fs::OpenOptions::new().read(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .is_err()
            {
                // Another process writes or compacts it.
                continue;
            }
            // An open one is read again under the lock: its writer may have appended until it
            // let go. (A closed one does not change.)
            {
                let mut index = self.index_mut();
                if matches!(index.pack(slot).form, Form::Open(_)) {
                    for (id, pack_id) in index.load(slot)? {
                        index.remove_in(id, pack_id)?;
                    }
                }
            }
            let end = self.index().pack(slot).end;
            return Ok(Some(Compaction {
                slot,
                _lock: lock,
                cursor: PACK_HEADER_BYTES,
                end,
            }));
        }
        Ok(None)
    }
}

/// Reads `range` (within `0..loc.len`) of a packed blob; a whole blob's CRC is checked.
pub(crate) fn read_packed(
    file: &File,
    loc: Loc,
    range: std::ops::Range<u64>,
) -> io::Result<Vec<u8>> {
    let len = usize::try_from(range.end - range.start).map_err(io::Error::other)?;
    let mut data = vec![0u8; len];
    file.read_exact_at(&mut data, loc.offset() + range.start)?;
    check_packed(data, loc, &range)
}

/// As [`read_packed`], but only from the page cache (`RWF_NOWAIT`), so it can run on the
/// async runtime without blocking it: `None` when the bytes are not all cached (or the
/// kernel cannot say), and the caller reads them off the runtime instead.
pub(crate) fn read_packed_cached(
    file: &File,
    loc: Loc,
    range: std::ops::Range<u64>,
) -> Option<io::Result<Vec<u8>>> {
    let len = usize::try_from(range.end - range.start).ok()?;
    let mut data = vec![0u8; len];
    match read_at(file, &mut data, loc.offset() + range.start, true) {
        Ok(()) => Some(check_packed(data, loc, &range)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Some(Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "a packed blob ends early",
        ))),
        Err(e) => Some(Err(e)),
    }
}

/// `data`, read for `range` of a packed blob, if a whole blob matches its checksum.
fn check_packed(data: Vec<u8>, loc: Loc, range: &std::ops::Range<u64>) -> io::Result<Vec<u8>> {
    if range.start == 0 && range.end == u64::from(loc.len) && crc32c::crc32c(&data) != loc.crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a packed blob does not match its checksum",
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_entry_is_small_and_its_offset_fits() {
        // An entry of the pack being written (the map's only per-blob cost).
        assert_eq!(std::mem::size_of::<(BlobId, Option<Loc>)>(), 48);
        assert_eq!(data_offset(u64::from(u32::MAX)).unwrap(), u32::MAX);
        let err = data_offset(1 << 32).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_failed_group_answers_each_request_with_the_os_error() {
        // A full disk is recognised by its OS error code (ENOSPC), so every copy keeps it.
        let full = io::Error::from_raw_os_error(28);
        assert_eq!(copy_error(&full).raw_os_error(), Some(28));
        let other = io::Error::other("boom");
        let copy = copy_error(&other);
        assert_eq!(
            (copy.kind(), copy.to_string()),
            (io::ErrorKind::Other, "boom".into())
        );
    }

    #[test]
    fn index_files_sort_blobs_by_id_and_refuse_what_does_not_match() {
        let low = BlobId::from_bytes([1; 16]);
        let high = BlobId::from_bytes([9; 16]);
        let data = [Bytes::from_static(b"hello")];
        let record = PACK_HEADER_BYTES;
        let step = RECORD_HEADER_BYTES as u64 + 5;
        // In pack order: high, low, a tombstone, then a later copy of high.
        let records = [
            (record, RecordHeader::blob(high, 7, &data)),
            (record + step, RecordHeader::blob(low, 8, &data)),
            (record + 2 * step, RecordHeader::tombstone(low, 99)),
            (
                record + 2 * step + RECORD_HEADER_BYTES as u64,
                RecordHeader::blob(high, 9, &data),
            ),
        ];
        let size = records[3].0 + step;
        let raw = encode_index(42, size, &records);
        assert_eq!(raw.len(), INDEX_HEADER_BYTES + 3 * INDEX_ENTRY_BYTES + 4);
        // Blobs by id, one per id (the later copy of `high`), then the tombstone.
        assert_eq!(
            decode_index(&raw, 42, size),
            Some(Listed {
                blobs: vec![records[1], records[3]],
                tombstones: vec![records[2]],
            })
        );
        // Another pack, a pack that grew since, any flipped bit, a cut file: not used.
        assert_eq!(decode_index(&raw, 43, size), None);
        assert_eq!(decode_index(&raw, 42, size + 1), None);
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x04;
            assert_eq!(decode_index(&bad, 42, size), None, "byte {i}");
        }
        assert_eq!(decode_index(&raw[..raw.len() - 1], 42, size), None);
        assert_eq!(decode_index(&[], 42, size), None);
        // Version 1 (records in pack order) is not read: the pack is scanned and re-indexed.
        let mut v1 = raw[..raw.len() - 4].to_vec();
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_index(&v1, 42, size), None);
        // Blobs out of order (a page lookup would miss them) are refused.
        let mut swapped = raw[..raw.len() - 4].to_vec();
        let (first, second) = (INDEX_HEADER_BYTES, INDEX_HEADER_BYTES + INDEX_ENTRY_BYTES);
        let entry = swapped[first..second].to_vec();
        swapped.copy_within(second..second + INDEX_ENTRY_BYTES, first);
        swapped[second..second + INDEX_ENTRY_BYTES].copy_from_slice(&entry);
        let crc = crc32c::crc32c(&swapped);
        swapped.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_index(&swapped, 42, size), None);
    }

    #[test]
    fn the_bloom_filter_never_misses_and_rarely_errs() {
        let held: Vec<BlobId> = (0..20_000).map(|_| BlobId::random()).collect();
        let mut bloom = Bloom::with_capacity(held.len());
        for id in &held {
            bloom.insert(*id);
        }
        assert!(held.iter().all(|id| bloom.may_contain(*id)));
        let false_positives = (0..20_000)
            .filter(|_| bloom.may_contain(BlobId::random()))
            .count();
        // About 1 % expected at 10 bits per blob; 3 % would mean a broken hash.
        assert!(false_positives < 600, "{false_positives} of 20000");
        // 10 bits per blob, rounded up to whole blocks.
        assert_eq!(
            bloom.blocks.len(),
            (20_000 * BLOOM_BITS_PER_BLOB).div_ceil(512)
        );
    }

    #[test]
    fn record_headers_round_trip_and_reject_damage() {
        let id = BlobId::random();
        let h = RecordHeader::blob(id, 42, &[Bytes::from_static(b"abc")]);
        let raw = h.encode();
        assert_eq!(RecordHeader::decode(&raw), Some(h));
        for i in 0..RECORD_HEADER_BYTES {
            let mut bad = raw;
            bad[i] ^= 0x10;
            assert_eq!(RecordHeader::decode(&bad), None, "byte {i}");
        }
        assert_eq!(RecordHeader::decode(&[0; RECORD_HEADER_BYTES]), None);
    }
}
