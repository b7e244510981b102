//! A durable, append-only tile store in a local directory. Its layout *is* the tlog-tiles URL
//! space (`tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`, `checkpoint`), so a web server
//! can serve the files as they are; a small `state` file records the committed tree size and
//! root.
//!
//! Durability: [`TileStore::append`] writes every new full and partial tile and bundle (temp
//! file, fsync, rename, directory fsync) and only then the new `state`; it returns after that,
//! so appended entries survive a crash. A crash in between leaves files beyond the committed
//! size, which no published checkpoint covers and which the next append overwrites.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::checkpoint::Checkpoint;
use crate::merkle::{self, Hash, HashSource, leaf_hash, node_hash};
use crate::note::{Note, Signer};
use crate::tile::{TILE_WIDTH, TileId, tiles_at};
use crate::{LedgerError, b64, unb64};

/// Largest entry an entry bundle can hold (uint16 length prefix).
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;
/// Full tiles kept in memory for proofs (32 MiB).
const TILE_CACHE_TILES: usize = 4096;
const STATE_FILE: &str = "state";
const STATE_MAGIC: &str = "vallum-log-state 1";

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
    cache: Mutex<TileCache>,
}

/// Full tiles by (level, index).
type TileCache = HashMap<(u8, u64), Arc<Vec<Hash>>>;

fn io_err(path: &Path, e: std::io::Error) -> LedgerError {
    LedgerError::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

/// Writes `bytes` to `path` atomically and durably (the directory is fsynced by the caller).
fn write_atomic(
    path: &Path,
    bytes: &[u8],
    dirs: &mut BTreeSet<PathBuf>,
) -> Result<(), LedgerError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("tile")
    ));
    let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    // New directories must reach the disk too: fsync every ancestor we may have created.
    let mut d = Some(dir);
    while let Some(x) = d {
        if !dirs.insert(x.to_path_buf()) {
            break;
        }
        d = x.parent();
    }
    Ok(())
}

fn sync_dirs(dirs: &BTreeSet<PathBuf>) -> Result<(), LedgerError> {
    for d in dirs.iter().rev() {
        if let Ok(f) = File::open(d) {
            f.sync_all().map_err(|e| io_err(d, e))?;
        }
    }
    Ok(())
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
            cache: Mutex::new(HashMap::new()),
        };
        let state_path = dir.join(STATE_FILE);
        let state = match fs::read_to_string(&state_path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(e) => return Err(io_err(&state_path, e)),
        };
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
            let path = dir.join(id.path());
            let bytes = fs::read(&path).map_err(|e| io_err(&path, e))?;
            store.bundle = decode_bundle(&bytes)?;
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
        Ok(store)
    }

    /// The committed tree size.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
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

    fn push_hash(
        &mut self,
        level: usize,
        hash: Hash,
        dirs: &mut BTreeSet<PathBuf>,
    ) -> Result<(), LedgerError> {
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
            write_atomic(&self.dir.join(id.path()), &bytes, dirs)?;
            self.full[level] += 1;
            let root = fold(hashes.clone());
            self.cache_tile(level as u8, index, Arc::new(hashes));
            self.push_hash(level + 1, root, dirs)?;
        }
        Ok(())
    }

    fn cache_tile(&self, level: u8, index: u64, hashes: Arc<Vec<Hash>>) {
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= TILE_CACHE_TILES {
                c.clear();
            }
            c.insert((level, index), hashes);
        }
    }

    /// Appends `entries` and makes them durable; returns the index of the first.
    pub fn append(&mut self, entries: &[Vec<u8>]) -> Result<u64, LedgerError> {
        if let Some(big) = entries.iter().find(|e| e.len() > MAX_ENTRY_BYTES) {
            return Err(LedgerError::EntryTooLarge(big.len()));
        }
        let first = self.size;
        let mut dirs = BTreeSet::new();
        for entry in entries {
            let index = self.size;
            self.bundle.push(entry.clone());
            if self.bundle.len() as u64 == TILE_WIDTH {
                let id = TileId {
                    level: None,
                    index: index / TILE_WIDTH,
                    width: 256,
                };
                let bundle = std::mem::take(&mut self.bundle);
                write_atomic(
                    &self.dir.join(id.path()),
                    &encode_bundle(&bundle),
                    &mut dirs,
                )?;
            }
            self.push_hash(0, leaf_hash(entry), &mut dirs)?;
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
                write_atomic(&self.dir.join(id.path()), &bytes, &mut dirs)?;
            }
        }
        if !self.bundle.is_empty() {
            let id = TileId {
                level: None,
                index: self.size / TILE_WIDTH,
                width: self.bundle.len() as u16,
            };
            write_atomic(
                &self.dir.join(id.path()),
                &encode_bundle(&self.bundle),
                &mut dirs,
            )?;
        }
        sync_dirs(&dirs)?;
        // Commit: the new size and root.
        let root = self.root()?;
        let state = format!("{STATE_MAGIC}\n{}\n{}\n", self.size, b64(&root));
        let mut dirs = BTreeSet::new();
        write_atomic(&self.dir.join(STATE_FILE), state.as_bytes(), &mut dirs)?;
        sync_dirs(&dirs)?;
        Ok(first)
    }

    /// Signs a checkpoint of the committed tree and publishes it as `checkpoint`.
    pub fn publish_checkpoint(&self, origin: &str, signer: &Signer) -> Result<Note, LedgerError> {
        let cp = Checkpoint {
            origin: origin.to_owned(),
            size: self.size,
            root: self.root()?,
            extensions: Vec::new(),
        };
        let note = cp.sign(signer);
        let mut dirs = BTreeSet::new();
        write_atomic(
            &self.dir.join("checkpoint"),
            note.to_text().as_bytes(),
            &mut dirs,
        )?;
        sync_dirs(&dirs)?;
        Ok(note)
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
        if path != "checkpoint" {
            let id = TileId::parse(path)?;
            let level = id.level.unwrap_or(0);
            let (full, width) = tiles_at(level, self.size);
            let published =
                id.index < full || (id.index == full && id.width <= width && id.width < 256);
            if !published {
                return Ok(None);
            }
        }
        let file = self.dir.join(path);
        match fs::read(&file) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&file, e)),
        }
    }

    /// The entry at `index`.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, LedgerError> {
        if index >= self.size {
            return Err(LedgerError::OutOfRange {
                index,
                size: self.size,
            });
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
        let path = self.dir.join(id.path());
        let bytes = fs::read(&path).map_err(|e| io_err(&path, e))?;
        let entries = decode_bundle(&bytes)?;
        entries
            .get(pos)
            .cloned()
            .ok_or_else(|| LedgerError::Corrupt(format!("{} is short", id.path())))
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
        }
        for (i, e) in self.bundle.iter().enumerate() {
            let index = full0 * TILE_WIDTH + i as u64;
            if self.edges[0].get(i) != Some(&leaf_hash(e)) {
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
    fn appends_match_the_memory_tree_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TileStore::open(dir.path()).unwrap();
        let mut mem = MemoryTree::new();
        let mut next = 0u64;
        for batch in [1usize, 254, 1, 1, 300, 65_536 - 557, 700] {
            let entries: Vec<Vec<u8>> = (0..batch as u64).map(|i| entry(next + i)).collect();
            let first = store.append(&entries).unwrap();
            assert_eq!(first, next);
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
