//! A durable, append-only tile store in a local directory. Its layout *is* the tlog-tiles URL
//! space (`tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`, `checkpoint`), so a web server
//! can serve the files as they are; a small `state` file records the committed tree size and
//! root.
//!
//! Two steps, as tlog-tiles logs separate *sequencing* from *integration*:
//!
//! * [`TileStore::append`] sequences entries: it appends them to a write-ahead file (`wal`)
//!   and `fdatasync`s it once per batch, so concurrent requests share one disk flush (group
//!   commit). When it returns, the entries are durable and have their final indexes.
//! * [`TileStore::integrate`] folds the sequenced entries into tiles and entry bundles: every
//!   new file is written to a temporary name, all are fsynced, renamed and their directories
//!   fsynced, and only then the new `state` (tree size and root) is committed and the
//!   write-ahead file emptied. A crash at any point loses nothing: on open, entries still in
//!   the write-ahead file beyond the committed size are integrated again (a torn, never
//!   acknowledged tail is cut off).

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::checkpoint::Checkpoint;
use crate::merkle::{self, Hash, HashSource, leaf_hash, node_hash};
use crate::note::{Note, Signer};
use crate::seal::{OPENING_MAGIC, public_leaf};
use crate::tile::{TILE_WIDTH, TileId, tiles_at};
use crate::{LedgerError, b64, unb64};

/// Largest entry an entry bundle can hold (uint16 length prefix).
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;
/// Full tiles kept in memory for proofs (32 MiB).
const TILE_CACHE_TILES: usize = 4096;
const STATE_FILE: &str = "state";
const STATE_MAGIC: &str = "vallum-log-state 1";
const WAL_FILE: &str = "wal";
/// Bytes of a write-ahead record around its entry: index (8), length (2), check (8).
const WAL_OVERHEAD: usize = 18;
/// The write-ahead file is zero-filled ahead of the writes in steps of this size, so a
/// batch's flush writes data blocks only (no size or allocation change to commit).
const WAL_PREALLOC_BYTES: u64 = 4 << 20;
/// Once integrated and larger than this, the write-ahead file starts over.
const WAL_RESET_BYTES: u64 = 64 << 20;

/// The store.
#[derive(Debug)]
pub struct TileStore {
    dir: PathBuf,
    size: u64,
    /// `edges[l]`: the hashes of the partial tile at level `l` (fewer than 256).
    edges: Vec<Vec<Hash>>,
    /// `full[l]`: how many full tiles level `l` has.
    full: Vec<u64>,
    /// Entries of the partial entry bundle.
    bundle: Vec<Vec<u8>>,
    /// Sequenced (durable in the write-ahead file) but not yet integrated entries.
    pending: Vec<Vec<u8>>,
    wal: Option<File>,
    /// End of the valid records in the write-ahead file.
    wal_len: u64,
    /// Bytes of the write-ahead file that are allocated (zero-filled ahead of `wal_len`).
    wal_cap: u64,
    /// Size above which an integrated write-ahead file starts over.
    wal_reset_bytes: u64,
    cache: Mutex<TileCache>,
}

/// Full tiles by (level, index).
pub(crate) type TileCache = HashMap<(u8, u64), Arc<Vec<Hash>>>;

fn io_err(path: &Path, e: std::io::Error) -> LedgerError {
    LedgerError::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

/// Files to replace atomically and durably, all with one round of fsyncs: every file is
/// written under a temporary name, all are fsynced, then renamed, then their directories
/// (and any directory created on the way) are fsynced.
#[derive(Default)]
struct FileBatch {
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl FileBatch {
    fn add(&mut self, path: PathBuf, bytes: Vec<u8>) {
        self.files.push((path, bytes));
    }

    fn commit(self) -> Result<(), LedgerError> {
        let mut dirs = BTreeSet::new();
        let mut temps = Vec::with_capacity(self.files.len());
        for (path, bytes) in &self.files {
            let dir = path.parent().unwrap_or(Path::new("."));
            dirs.extend(directories_changed(dir));
            if !dir.exists() {
                fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
            }
            let tmp = dir.join(format!(
                ".{}.tmp",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("tile")
            ));
            let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
            f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
            temps.push((tmp, f));
        }
        for (tmp, f) in &temps {
            f.sync_all().map_err(|e| io_err(tmp, e))?;
        }
        for ((tmp, _), (path, _)) in temps.iter().zip(&self.files) {
            fs::rename(tmp, path).map_err(|e| io_err(path, e))?;
        }
        for d in dirs.iter().rev() {
            if let Ok(f) = File::open(d) {
                f.sync_all().map_err(|e| io_err(d, e))?;
            }
        }
        Ok(())
    }
}

/// The directories a new name in `dir` changes, to sync after it is made: `dir`, every
/// directory that does not exist yet (created on the way), and the existing one that gets the
/// first of them as an entry. Not the ancestors above: nothing in them changes.
fn directories_changed(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut x = dir;
    while !x.exists() {
        match x.parent() {
            Some(parent) => {
                out.push(parent.to_path_buf());
                x = parent;
            }
            None => break,
        }
    }
    out
}

/// Writes `bytes` at `offset`.
fn write_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, offset)
}

/// Writes `len` zero bytes at `offset` (real blocks, not a hole).
fn write_zeros(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        write_at(file, &zeros[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

/// The check value of a write-ahead record: the first 8 bytes of SHA-256 over its header and
/// entry, so a torn or damaged tail is recognised.
fn wal_check(header: &[u8], entry: &[u8]) -> [u8; 8] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(header);
    h.update(entry);
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

fn encode_wal_record(index: u64, entry: &[u8], out: &mut Vec<u8>) {
    let mut header = [0u8; 10];
    header[..8].copy_from_slice(&index.to_be_bytes());
    header[8..].copy_from_slice(&(entry.len() as u16).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(entry);
    out.extend_from_slice(&wal_check(&header, entry));
}

/// Decodes write-ahead records; returns them and the length of the valid prefix (a torn or
/// damaged record ends it).
fn decode_wal(bytes: &[u8]) -> (Vec<(u64, Vec<u8>)>, usize) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= WAL_OVERHEAD {
        let header = &bytes[at..at + 10];
        let len = usize::from(u16::from_be_bytes([header[8], header[9]]));
        if bytes.len() - at < WAL_OVERHEAD + len {
            break;
        }
        let entry = &bytes[at + 10..at + 10 + len];
        if bytes[at + 10 + len..at + WAL_OVERHEAD + len] != wal_check(header, entry) {
            break;
        }
        let index = u64::from_be_bytes(header[..8].try_into().unwrap_or([0; 8]));
        out.push((index, entry.to_vec()));
        at += WAL_OVERHEAD + len;
    }
    (out, at)
}

fn hashes_of(bytes: &[u8], path: &Path) -> Result<Vec<Hash>, LedgerError> {
    if !bytes.len().is_multiple_of(32) {
        return Err(LedgerError::Corrupt(format!(
            "{} is not a whole number of hashes",
            path.display()
        )));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap_or([0; 32]))
        .collect())
}

/// Encodes entries as an entry bundle (big-endian uint16 length prefixes).
pub fn encode_bundle(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for e in entries {
        out.extend_from_slice(&(e.len() as u16).to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

/// Decodes an entry bundle.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<Vec<u8>>, LedgerError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 2 {
            return Err(crate::malformed("entry bundle", "truncated length prefix"));
        }
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if rest.len() < 2 + n {
            return Err(crate::malformed("entry bundle", "truncated entry"));
        }
        out.push(rest[2..2 + n].to_vec());
        rest = &rest[2 + n..];
    }
    Ok(out)
}

/// Whether the tile or bundle at `path` exists in a tree of `size` leaves: a full tile below
/// the right edge, or a partial one no wider than the edge (older partial tiles stay
/// readable for clients holding older checkpoints). Malformed paths are an error.
pub fn is_published(path: &str, size: u64) -> Result<bool, LedgerError> {
    let id = TileId::parse(path)?;
    let level = id.level.unwrap_or(0);
    let (full, width) = tiles_at(level, size);
    Ok(id.index < full || (id.index == full && id.width <= width && id.width < 256))
}

/// Where sealed entries' openings are kept: the same layout as the public entry bundles, under
/// this directory, which is never served.
pub const PRIVATE_DIR: &str = "private";

/// The stored form of entry bundle `id`: the private bundle where one exists (sealed
/// entries), else the public one (legacy entries, stored as published).
fn read_stored_bundle(dir: &Path, id: &TileId) -> Result<Vec<Vec<u8>>, LedgerError> {
    let private = dir.join(PRIVATE_DIR).join(id.path());
    match fs::read(&private) {
        Ok(bytes) => return decode_bundle(&bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&private, e)),
    }
    let path = dir.join(id.path());
    let bytes = fs::read(&path).map_err(|e| io_err(&path, e))?;
    decode_bundle(&bytes)
}

/// The root of a perfect tree given its leaves (a power of two of them).
fn fold(mut level: Vec<Hash>) -> Hash {
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|p| node_hash(&p[0], &p[1]))
            .collect();
    }
    level.first().copied().unwrap_or_else(merkle::empty_root)
}

impl TileStore {
    /// Opens (or creates) the store in `dir`, loading the committed state and checking that
    /// the stored right edge reproduces the committed root.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut store = Self {
            dir: dir.to_path_buf(),
            size: 0,
            edges: Vec::new(),
            full: Vec::new(),
            bundle: Vec::new(),
            pending: Vec::new(),
            wal: None,
            wal_len: 0,
            wal_cap: 0,
            wal_reset_bytes: WAL_RESET_BYTES,
            cache: Mutex::new(HashMap::new()),
        };
        let state_path = dir.join(STATE_FILE);
        match fs::read_to_string(&state_path) {
            Ok(state) => store.load_state(&state)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&state_path, e)),
        }
        store.replay_wal()?;
        Ok(store)
    }

    /// The committed tree size recorded in `dir`'s state file (0 for a new log), without
    /// opening the store: what a reader may serve while another process writes.
    pub fn committed_size(dir: &Path) -> Result<u64, LedgerError> {
        let path = dir.join(STATE_FILE);
        match fs::read_to_string(&path) {
            Ok(state) => match state.lines().collect::<Vec<_>>().as_slice() {
                [magic, size, _] if *magic == STATE_MAGIC => size
                    .parse()
                    .map_err(|_| LedgerError::Corrupt("state: bad size".into())),
                _ => Err(LedgerError::Corrupt("state file is not a v1 state".into())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    /// Re-reads entries that were sequenced but not integrated before a stop or crash, and
    /// cuts off a torn tail (a batch whose flush never completed, so never acknowledged).
    fn replay_wal(&mut self) -> Result<(), LedgerError> {
        let path = self.dir.join(WAL_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(&path, e)),
        };
        let (records, valid) = decode_wal(&bytes);
        for (index, entry) in records {
            if index < self.size {
                continue; // integrated before the write-ahead file was emptied
            }
            if index != self.size + self.pending.len() as u64 {
                return Err(LedgerError::Corrupt(format!(
                    "write-ahead record {index} does not follow entry {}",
                    self.size + self.pending.len() as u64
                )));
            }
            self.pending.push(entry);
        }
        let wal = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        // Whatever follows the valid records (a torn batch, or records of a batch that
        // failed) is zeroed, so no stale record can ever line up behind new ones.
        if bytes[valid..].iter().any(|b| *b != 0) {
            write_zeros(&wal, valid as u64, (bytes.len() - valid) as u64)
                .map_err(|e| io_err(&path, e))?;
            wal.sync_all().map_err(|e| io_err(&path, e))?;
        }
        self.wal_len = valid as u64;
        self.wal_cap = bytes.len() as u64;
        self.wal = Some(wal);
        Ok(())
    }

    fn load_state(&mut self, state: &str) -> Result<(), LedgerError> {
        let dir = self.dir.clone();
        let store = self;
        let lines: Vec<&str> = state.lines().collect();
        let (size, root) = match lines.as_slice() {
            [magic, size, root] if *magic == STATE_MAGIC => (
                size.parse::<u64>()
                    .map_err(|_| LedgerError::Corrupt("state: bad size".into()))?,
                unb64(root)
                    .and_then(|r| <Hash>::try_from(r).ok())
                    .ok_or_else(|| LedgerError::Corrupt("state: bad root".into()))?,
            ),
            _ => return Err(LedgerError::Corrupt("state file is not a v1 state".into())),
        };
        store.size = size;
        let mut level = 0u8;
        while level == 0 || (size >> (u32::from(level) * 8)) > 0 {
            let (full, width) = tiles_at(level, size);
            store.full.push(full);
            let mut edge = Vec::new();
            if width > 0 {
                let id = TileId {
                    level: Some(level),
                    index: full,
                    width,
                };
                let path = dir.join(id.path());
                let bytes = fs::read(&path).map_err(|e| io_err(&path, e))?;
                edge = hashes_of(&bytes, &path)?;
                if edge.len() != usize::from(width) {
                    return Err(LedgerError::Corrupt(format!(
                        "{} has the wrong width",
                        id.path()
                    )));
                }
            }
            store.edges.push(edge);
            level += 1;
            if level > 63 {
                break;
            }
        }
        let (full0, width0) = tiles_at(0, size);
        if width0 > 0 {
            let id = TileId {
                level: None,
                index: full0,
                width: width0,
            };
            store.bundle = read_stored_bundle(&dir, &id)?;
            if store.bundle.len() != usize::from(width0) {
                return Err(LedgerError::Corrupt(format!(
                    "{} has the wrong width",
                    id.path()
                )));
            }
        }
        if store.root()? != root {
            return Err(LedgerError::Corrupt(
                "the stored tiles do not reproduce the committed root".into(),
            ));
        }
        Ok(())
    }

    /// The integrated tree size (what tiles and checkpoints cover).
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Entries sequenced so far: the integrated ones and those waiting in the write-ahead file.
    #[must_use]
    pub fn sequenced(&self) -> u64 {
        self.size + self.pending.len() as u64
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root of the committed tree.
    pub fn root(&self) -> Result<Hash, LedgerError> {
        merkle::root(self, self.size)
    }

    fn ensure_level(&mut self, level: usize) {
        while self.edges.len() <= level {
            self.edges.push(Vec::new());
            self.full.push(0);
        }
    }

    fn push_hash(&mut self, level: usize, hash: Hash, batch: &mut FileBatch) {
        self.ensure_level(level);
        self.edges[level].push(hash);
        if self.edges[level].len() as u64 == TILE_WIDTH {
            let hashes = std::mem::take(&mut self.edges[level]);
            let index = self.full[level];
            let id = TileId {
                level: Some(level as u8),
                index,
                width: 256,
            };
            let bytes: Vec<u8> = hashes.iter().flatten().copied().collect();
            batch.add(self.dir.join(id.path()), bytes);
            self.full[level] += 1;
            let root = fold(hashes.clone());
            self.cache_tile(level as u8, index, Arc::new(hashes));
            self.push_hash(level + 1, root, batch);
        }
    }

    fn cache_tile(&self, level: u8, index: u64, hashes: Arc<Vec<Hash>>) {
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= TILE_CACHE_TILES {
                c.clear();
            }
            c.insert((level, index), hashes);
        }
    }

    /// Sequences `entries`: appends them to the write-ahead file and flushes it, so they are
    /// durable when this returns; returns the index of the first.
    pub fn append(&mut self, entries: &[Vec<u8>]) -> Result<u64, LedgerError> {
        if let Some(big) = entries.iter().find(|e| e.len() > MAX_ENTRY_BYTES) {
            return Err(LedgerError::EntryTooLarge(big.len()));
        }
        let first = self.sequenced();
        let mut bytes = Vec::with_capacity(entries.iter().map(|e| e.len() + WAL_OVERHEAD).sum());
        for (i, e) in entries.iter().enumerate() {
            encode_wal_record(first + i as u64, e, &mut bytes);
        }
        let path = self.dir.join(WAL_FILE);
        let wal = self
            .wal
            .as_ref()
            .ok_or_else(|| LedgerError::Corrupt("write-ahead file not open".into()))?;
        let need = self.wal_len + bytes.len() as u64;
        if need > self.wal_cap {
            let grow = (need - self.wal_cap).max(WAL_PREALLOC_BYTES);
            write_zeros(wal, self.wal_cap, grow)
                .and_then(|()| wal.sync_all())
                .map_err(|e| io_err(&path, e))?;
            self.wal_cap += grow;
        }
        let written = write_at(wal, &bytes, self.wal_len).and_then(|()| wal.sync_data());
        if let Err(e) = written {
            // Not acknowledged: blank what may have reached the file, so these records are
            // never replayed behind a later, shorter batch.
            let _ = write_zeros(wal, self.wal_len, bytes.len() as u64);
            return Err(io_err(&path, e));
        }
        self.wal_len = need;
        self.pending.extend(entries.iter().cloned());
        Ok(first)
    }

    /// Integrates the sequenced entries into tiles and bundles and commits the new tree size;
    /// returns it.
    pub fn integrate(&mut self) -> Result<u64, LedgerError> {
        if self.pending.is_empty() {
            return Ok(self.size);
        }
        let entries = std::mem::take(&mut self.pending);
        if let Err(e) = self.integrate_entries(&entries) {
            self.pending = entries;
            return Err(e);
        }
        // The state now covers every write-ahead record (replay skips them by index); once the
        // file is large, start it over.
        if self.wal_len > self.wal_reset_bytes {
            let path = self.dir.join(WAL_FILE);
            if let Some(wal) = self.wal.as_ref() {
                wal.set_len(0)
                    .and_then(|()| write_zeros(wal, 0, WAL_PREALLOC_BYTES))
                    .and_then(|()| wal.sync_all())
                    .map_err(|e| io_err(&path, e))?;
            }
            self.wal_len = 0;
            self.wal_cap = WAL_PREALLOC_BYTES;
        }
        Ok(self.size)
    }

    /// Integrates entries that an external sequencer (e.g. the metadata database of a
    /// multi-gateway deployment) has already made durable, in its order. Refused while this
    /// store has entries of its own waiting.
    pub fn integrate_entries(&mut self, entries: &[Vec<u8>]) -> Result<u64, LedgerError> {
        if let Some(big) = entries.iter().find(|e| e.len() > MAX_ENTRY_BYTES) {
            return Err(LedgerError::EntryTooLarge(big.len()));
        }
        if !self.pending.is_empty() {
            return Err(LedgerError::Corrupt(
                "entries are waiting in the write-ahead file".into(),
            ));
        }
        let saved = (
            self.size,
            self.edges.clone(),
            self.full.clone(),
            self.bundle.clone(),
        );
        let result = self.integrate_inner(entries);
        if result.is_err() {
            (self.size, self.edges, self.full, self.bundle) = saved;
        }
        result
    }

    /// The public bundle (leaves) and, when any entry is sealed, the private bundle (the
    /// stored openings) of `stored` at `id`.
    fn add_bundle(
        &self,
        id: &TileId,
        stored: &[Vec<u8>],
        batch: &mut FileBatch,
    ) -> Result<(), LedgerError> {
        let leaves = stored
            .iter()
            .map(|e| public_leaf(e).map(std::borrow::Cow::into_owned))
            .collect::<Result<Vec<_>, _>>()?;
        batch.add(self.dir.join(id.path()), encode_bundle(&leaves));
        if stored.iter().any(|e| e.starts_with(OPENING_MAGIC)) {
            batch.add(
                self.dir.join(PRIVATE_DIR).join(id.path()),
                encode_bundle(stored),
            );
        }
        Ok(())
    }

    fn integrate_inner(&mut self, entries: &[Vec<u8>]) -> Result<u64, LedgerError> {
        let mut batch = FileBatch::default();
        for entry in entries {
            let index = self.size;
            let leaf = public_leaf(entry)?.into_owned();
            self.bundle.push(entry.clone());
            if self.bundle.len() as u64 == TILE_WIDTH {
                let id = TileId {
                    level: None,
                    index: index / TILE_WIDTH,
                    width: 256,
                };
                let bundle = std::mem::take(&mut self.bundle);
                self.add_bundle(&id, &bundle, &mut batch)?;
            }
            self.push_hash(0, leaf_hash(&leaf), &mut batch);
            self.size += 1;
        }
        // Partial tiles and bundle for the new size.
        for level in 0..self.edges.len() {
            let width = self.edges[level].len();
            if width > 0 {
                let id = TileId {
                    level: Some(level as u8),
                    index: self.full[level],
                    width: width as u16,
                };
                let bytes: Vec<u8> = self.edges[level].iter().flatten().copied().collect();
                batch.add(self.dir.join(id.path()), bytes);
            }
        }
        if !self.bundle.is_empty() {
            let id = TileId {
                level: None,
                index: self.size / TILE_WIDTH,
                width: self.bundle.len() as u16,
            };
            self.add_bundle(&id, &self.bundle, &mut batch)?;
        }
        batch.commit()?;
        // Commit: the new size and root.
        let root = self.root()?;
        let state = format!("{STATE_MAGIC}\n{}\n{}\n", self.size, b64(&root));
        let mut commit = FileBatch::default();
        commit.add(self.dir.join(STATE_FILE), state.into_bytes());
        commit.commit()?;
        Ok(self.size)
    }

    /// Signs a checkpoint of the integrated tree and publishes it as `checkpoint`; `extra`
    /// signature lines (witness cosignatures of the same text) are appended.
    pub fn publish_checkpoint(&self, origin: &str, signer: &Signer) -> Result<Note, LedgerError> {
        let cp = Checkpoint {
            origin: origin.to_owned(),
            size: self.size,
            root: self.root()?,
            extensions: Vec::new(),
        };
        let note = cp.sign(signer);
        self.publish_note(&note)?;
        Ok(note)
    }

    /// Publishes a signed checkpoint note (e.g. one carrying witness cosignatures) as
    /// `checkpoint`; it must describe the integrated tree.
    pub fn publish_note(&self, note: &Note) -> Result<(), LedgerError> {
        let cp = Checkpoint::parse(&note.text)?;
        if cp.size > self.size || cp.root != merkle::root(self, cp.size)? {
            return Err(LedgerError::BadProof(
                "the checkpoint does not describe this tree".into(),
            ));
        }
        let mut batch = FileBatch::default();
        batch.add(self.dir.join("checkpoint"), note.to_text().into_bytes());
        batch.commit()
    }

    /// A full hash tile, from the cache or disk.
    fn full_tile(&self, level: u8, index: u64) -> Result<Arc<Vec<Hash>>, LedgerError> {
        if let Some(t) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(&(level, index)).cloned())
        {
            return Ok(t);
        }
        let id = TileId {
            level: Some(level),
            index,
            width: 256,
        };
        let path = self.dir.join(id.path());
        let bytes = fs::read(&path).map_err(|e| io_err(&path, e))?;
        if bytes.len() != crate::tile::FULL_TILE_BYTES {
            return Err(LedgerError::Corrupt(format!(
                "{} is not a full tile",
                id.path()
            )));
        }
        let t = Arc::new(hashes_of(&bytes, &path)?);
        self.cache_tile(level, index, Arc::clone(&t));
        Ok(t)
    }

    /// The stored bytes of a resource (`tile/...` or `checkpoint`), if it is published: tiles
    /// only within the committed tree.
    pub fn read_resource(&self, path: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        if path != "checkpoint" && !is_published(path, self.size)? {
            return Ok(None);
        }
        let file = self.dir.join(path);
        match fs::read(&file) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&file, e)),
        }
    }

    /// The entry at `index` (integrated or still in the write-ahead file).
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, LedgerError> {
        if index >= self.sequenced() {
            return Err(LedgerError::OutOfRange {
                index,
                size: self.sequenced(),
            });
        }
        if index >= self.size {
            return Ok(self.pending[(index - self.size) as usize].clone());
        }
        let (full, _) = tiles_at(0, self.size);
        let bundle = index / TILE_WIDTH;
        let pos = (index % TILE_WIDTH) as usize;
        if bundle == full {
            return Ok(self.bundle[pos].clone());
        }
        let id = TileId {
            level: None,
            index: bundle,
            width: 256,
        };
        read_stored_bundle(&self.dir, &id)?
            .get(pos)
            .cloned()
            .ok_or_else(|| LedgerError::Corrupt(format!("{} is short", id.path())))
    }

    /// The stored entries of entry bundle `index` (openings where sealed): what the log's
    /// owner reads, never served publicly.
    pub fn stored_bundle(&self, index: u64) -> Result<Vec<Vec<u8>>, LedgerError> {
        let (full, width) = tiles_at(0, self.size);
        if index == full && width > 0 {
            return Ok(self.bundle.clone());
        }
        if index >= full {
            return Err(LedgerError::OutOfRange {
                index: index * TILE_WIDTH,
                size: self.size,
            });
        }
        read_stored_bundle(
            &self.dir,
            &TileId {
                level: None,
                index,
                width: 256,
            },
        )
    }

    /// Checks every stored full tile and bundle against the level above / the leaf hashes,
    /// and returns the index of the first leaf whose data or hash does not match (a tampered
    /// or damaged log), if any.
    pub fn check_integrity(&self) -> Result<Option<u64>, LedgerError> {
        let (full0, _) = tiles_at(0, self.size);
        for t in 0..full0 {
            let tile = self.full_tile(0, t)?;
            let id = TileId {
                level: None,
                index: t,
                width: 256,
            };
            let path = self.dir.join(id.path());
            let entries = decode_bundle(&fs::read(&path).map_err(|e| io_err(&path, e))?)?;
            for (i, e) in entries.iter().enumerate() {
                if tile.get(i) != Some(&leaf_hash(e)) {
                    return Ok(Some(t * TILE_WIDTH + i as u64));
                }
            }
            if entries.len() != 256 {
                return Ok(Some(t * TILE_WIDTH + entries.len() as u64));
            }
            // The private openings must reproduce the public leaves.
            let private = self.dir.join(PRIVATE_DIR).join(id.path());
            if private.exists() {
                let stored = decode_bundle(&fs::read(&private).map_err(|e| io_err(&private, e))?)?;
                for (i, e) in stored.iter().enumerate() {
                    let ok = public_leaf(e).is_ok_and(|l| tile.get(i) == Some(&leaf_hash(&l)));
                    if !ok {
                        return Ok(Some(t * TILE_WIDTH + i as u64));
                    }
                }
            }
        }
        for (i, e) in self.bundle.iter().enumerate() {
            let index = full0 * TILE_WIDTH + i as u64;
            let ok = public_leaf(e).is_ok_and(|l| self.edges[0].get(i) == Some(&leaf_hash(&l)));
            if !ok {
                return Ok(Some(index));
            }
        }
        for level in 0..self.full.len() {
            for t in 0..self.full[level] {
                let tile = self.full_tile(level as u8, t)?;
                let above = self.perfect(((level + 1) * 8) as u8, t)?;
                if fold(tile.to_vec()) != above {
                    let first_leaf = t << ((level + 1) * 8);
                    return Ok(Some(first_leaf));
                }
            }
        }
        Ok(None)
    }
}

impl HashSource for TileStore {
    fn perfect(&self, height: u8, index: u64) -> Result<Hash, LedgerError> {
        let level = height / 8;
        let r = u32::from(height % 8);
        let first = index << r;
        let count = 1usize << r;
        let tile = first / TILE_WIDTH;
        let pos = (first % TILE_WIDTH) as usize;
        let missing = LedgerError::MissingHash { height, index };
        let Some(&full) = self.full.get(usize::from(level)) else {
            return Err(missing);
        };
        let hashes: Vec<Hash> = if tile < full {
            self.full_tile(level, tile)?[pos..pos + count].to_vec()
        } else if tile == full && pos + count <= self.edges[usize::from(level)].len() {
            self.edges[usize::from(level)][pos..pos + count].to_vec()
        } else {
            return Err(missing);
        };
        Ok(fold(hashes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{
        MemoryTree, consistency_proof, inclusion_proof, verify_consistency, verify_inclusion,
    };

    fn entry(i: u64) -> Vec<u8> {
        format!("{{\"v\":1,\"i\":{i}}}").into_bytes()
    }

    #[test]
    fn a_new_name_syncs_its_directory_and_the_ones_created_not_every_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("tile");
        fs::create_dir_all(&existing).unwrap();
        assert_eq!(directories_changed(&existing), vec![existing.clone()]);
        let deep = existing.join("0").join("x001");
        assert_eq!(
            directories_changed(&deep),
            vec![deep.clone(), existing.join("0"), existing.clone()]
        );
    }

    #[test]
    fn appends_match_the_memory_tree_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TileStore::open(dir.path()).unwrap();
        let mut mem = MemoryTree::new();
        let mut next = 0u64;
        for batch in [1usize, 254, 1, 1, 300, 65_536 - 557, 700] {
            let entries: Vec<Vec<u8>> = (0..batch as u64).map(|i| entry(next + i)).collect();
            let first = store.append(&entries).unwrap();
            assert_eq!(first, next);
            assert_eq!(store.integrate().unwrap(), next + batch as u64);
            for e in &entries {
                mem.push(e);
            }
            next += batch as u64;
            assert_eq!(store.root().unwrap(), merkle::root(&mem, next).unwrap());
            // Reopen: the committed state comes back and reproduces the root.
            drop(store);
            store = TileStore::open(dir.path()).unwrap();
            assert_eq!(store.size(), next);
        }
        assert_eq!(store.entry(0).unwrap(), entry(0));
        assert_eq!(store.entry(next - 1).unwrap(), entry(next - 1));
        assert_eq!(store.entry(66_000).unwrap(), entry(66_000));
        // Proofs computed from tiles verify against the memory tree's roots.
        let size = store.size();
        let root = store.root().unwrap();
        for index in [0, 255, 256, 65_535, 65_536, size - 1] {
            let proof = inclusion_proof(&store, index, size).unwrap();
            verify_inclusion(&leaf_hash(&entry(index)), index, size, &proof, &root).unwrap();
        }
        for old in [1, 256, 257, 65_536, 66_000] {
            let proof = consistency_proof(&store, old, size).unwrap();
            verify_consistency(old, size, &merkle::root(&mem, old).unwrap(), &root, &proof)
                .unwrap();
        }
        assert_eq!(store.check_integrity().unwrap(), None);
        // The layout is the tlog-tiles URL space.
        assert!(dir.path().join("tile/0/000").exists());
        assert!(dir.path().join("tile/1/000").exists());
        assert!(dir.path().join("tile/entries/000").exists());
        assert!(store.read_resource("tile/0/000").unwrap().is_some());
        let (full0, w0) = tiles_at(0, size);
        let partial = TileId {
            level: Some(0),
            index: full0,
            width: w0,
        };
        assert!(store.read_resource(&partial.path()).unwrap().is_some());
        let beyond = TileId {
            level: Some(0),
            index: full0 + 1,
            width: 256,
        };
        assert!(store.read_resource(&beyond.path()).unwrap().is_none());
    }

    #[test]
    fn tampering_is_detected_and_located() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TileStore::open(dir.path()).unwrap();
        let entries: Vec<Vec<u8>> = (0..600).map(entry).collect();
        store.append(&entries).unwrap();
        store.integrate().unwrap();
        drop(store);
        // Flip a byte of entry 300 in its bundle (bundle 1, second entry 44).
        let path = dir.path().join("tile/entries/001");
        let mut bytes = fs::read(&path).unwrap();
        let offset: usize = (0..44).map(|i| 2 + entry(256 + i).len()).sum::<usize>() + 2 + 3;
        bytes[offset] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let store = TileStore::open(dir.path()).unwrap();
        assert_eq!(store.check_integrity().unwrap(), Some(300));
        // A flipped hash in a level-0 tile is caught against level 1.
        fs::write(&path, {
            bytes[offset] ^= 1;
            &bytes
        })
        .unwrap();
        let tile0 = dir.path().join("tile/0/000");
        let mut t = fs::read(&tile0).unwrap();
        t[32 * 10] ^= 0x40;
        fs::write(&tile0, &t).unwrap();
        let store = TileStore::open(dir.path()).unwrap();
        assert_eq!(store.check_integrity().unwrap(), Some(10));
        // A damaged right edge no longer reproduces the committed root: refused on open.
        let partial = dir.path().join("tile/0/002.p/88");
        let mut p = fs::read(&partial).unwrap();
        p[0] ^= 1;
        fs::write(&partial, &p).unwrap();
        assert!(matches!(
            TileStore::open(dir.path()),
            Err(LedgerError::Corrupt(_))
        ));
    }

    #[test]
    fn sequenced_entries_survive_a_crash_before_integration() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TileStore::open(dir.path()).unwrap();
        let all: Vec<Vec<u8>> = (0..700).map(entry).collect();
        store.append(&all[..300]).unwrap();
        store.integrate().unwrap();
        // Sequenced, acknowledged, then the process dies before integrating.
        assert_eq!(store.append(&all[300..650]).unwrap(), 300);
        assert_eq!(store.entry(640).unwrap(), all[640]);
        drop(store);
        // A batch whose flush never finished left a torn record behind.
        let wal = dir.path().join(WAL_FILE);
        let mut torn = Vec::new();
        encode_wal_record(650, &all[650], &mut torn);
        let (_, valid) = decode_wal(&fs::read(&wal).unwrap());
        let f = fs::OpenOptions::new().write(true).open(&wal).unwrap();
        write_at(&f, &torn[..torn.len() - 3], valid as u64).unwrap();
        drop(f);
        let mut store = TileStore::open(dir.path()).unwrap();
        assert_eq!((store.size(), store.sequenced()), (300, 650));
        // The torn tail is gone: the next batch gets index 650 and follows cleanly.
        assert_eq!(store.append(&all[650..]).unwrap(), 650);
        // A crash after the state commit but before the write-ahead file is emptied: the
        // stale records are recognised by index and skipped.
        let before = fs::read(&wal).unwrap();
        store.integrate().unwrap();
        drop(store);
        fs::write(&wal, &before).unwrap();
        let store = TileStore::open(dir.path()).unwrap();
        assert_eq!((store.size(), store.sequenced()), (700, 700));
        let mut mem = MemoryTree::new();
        all.iter().for_each(|e| mem.push(e));
        assert_eq!(store.root().unwrap(), merkle::root(&mem, 700).unwrap());
        assert_eq!(store.check_integrity().unwrap(), None);
        // A gap in the write-ahead file is corruption, not something to paper over.
        let mut gap = Vec::new();
        encode_wal_record(702, b"x", &mut gap);
        fs::write(&wal, &gap).unwrap();
        drop(store);
        assert!(matches!(
            TileStore::open(dir.path()),
            Err(LedgerError::Corrupt(_))
        ));
    }

    #[test]
    fn the_write_ahead_file_starts_over_and_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TileStore::open(dir.path()).unwrap();
        store.wal_reset_bytes = 2000;
        let all: Vec<Vec<u8>> = (0..400).map(entry).collect();
        let mut mem = MemoryTree::new();
        for chunk in all.chunks(37) {
            store.append(chunk).unwrap();
            chunk.iter().for_each(|e| mem.push(e));
            if store.sequenced().is_multiple_of(3) {
                store.integrate().unwrap();
            }
        }
        // Some entries are only in the (restarted) write-ahead file when the process stops.
        let sequenced = store.sequenced();
        assert!(store.size() < sequenced);
        drop(store);
        let mut store = TileStore::open(dir.path()).unwrap();
        assert_eq!(store.sequenced(), sequenced);
        store.integrate().unwrap();
        assert_eq!(store.root().unwrap(), merkle::root(&mem, 400).unwrap());
        assert!(fs::metadata(dir.path().join(WAL_FILE)).unwrap().len() <= WAL_PREALLOC_BYTES);
    }

    #[test]
    fn externally_sequenced_entries_integrate_and_checkpoints_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TileStore::open(dir.path()).unwrap();
        let entries: Vec<Vec<u8>> = (0..10).map(entry).collect();
        assert_eq!(store.integrate_entries(&entries).unwrap(), 10);
        let signer = Signer::generate("vallum.test/log").unwrap();
        let note = store
            .publish_checkpoint("vallum.test/log", &signer)
            .unwrap();
        assert_eq!(
            store.read_resource("checkpoint").unwrap().unwrap(),
            note.to_text().into_bytes()
        );
        // A checkpoint of another tree is refused.
        let other = Checkpoint {
            origin: "vallum.test/log".into(),
            size: 10,
            root: [7; 32],
            extensions: Vec::new(),
        };
        assert!(store.publish_note(&other.sign(&signer)).is_err());
        store.append(&entries[..1]).unwrap();
        assert!(store.integrate_entries(&entries[..1]).is_err());
    }

    #[test]
    fn oversized_entries_are_refused_and_bundles_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TileStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.append(&[vec![0; MAX_ENTRY_BYTES + 1]]),
            Err(LedgerError::EntryTooLarge(_))
        ));
        assert_eq!(store.size(), 0);
        let entries = vec![vec![], vec![1, 2, 3], vec![7; 300]];
        assert_eq!(decode_bundle(&encode_bundle(&entries)).unwrap(), entries);
        assert!(decode_bundle(&[0, 5, 1]).is_err());
        assert!(decode_bundle(&[0]).is_err());
    }
}
