//! A generic tlog-tiles client: reads a log's checkpoint, tiles and entry bundles from any
//! [`TileFetcher`] (a directory, or HTTP in the `vallum` binary) and serves Merkle hashes to
//! the proof functions. Nothing fetched is trusted: every use recomputes hashes up to a signed
//! checkpoint's root.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::merkle::{Hash, HashSource, node_hash};
use crate::store::decode_bundle;
use crate::tile::{TILE_WIDTH, TileId, tiles_at};
use crate::{LedgerError, malformed};

/// Where a log's resources come from: `checkpoint`, `tile/<L>/<N>[.p/<W>]`,
/// `tile/entries/<N>[.p/<W>]`, relative to the log's prefix.
pub trait TileFetcher {
    /// The resource's bytes, or `None` if it does not exist.
    fn fetch(&self, path: &str) -> Result<Option<Vec<u8>>, LedgerError>;
}

/// Reads a log from a directory laid out as tlog-tiles (e.g. a server's `log/` directory or
/// a mirror).
#[derive(Debug, Clone)]
pub struct DirFetcher(pub PathBuf);

impl TileFetcher for DirFetcher {
    fn fetch(&self, path: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        if path.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(malformed("resource path", path.to_owned()));
        }
        match std::fs::read(self.0.join(path)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// A view of a log at one tree size.
pub struct LogClient<'a> {
    fetcher: &'a dyn TileFetcher,
    size: u64,
    tiles: Mutex<crate::store::TileCache>,
}

impl std::fmt::Debug for LogClient<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogClient")
            .field("size", &self.size)
            .finish()
    }
}

/// Tiles kept in memory by a client.
const CLIENT_TILE_CACHE: usize = 8192;

impl<'a> LogClient<'a> {
    /// A client for the tree of `size` leaves.
    pub fn new(fetcher: &'a dyn TileFetcher, size: u64) -> Self {
        Self {
            fetcher,
            size,
            tiles: Mutex::new(HashMap::new()),
        }
    }

    /// A resource's raw bytes, unchecked (`None` if absent or unreadable).
    pub fn fetcher_fetch(&self, path: &str) -> Option<Vec<u8>> {
        self.fetcher.fetch(path).ok().flatten()
    }

    /// The tree size this client reads.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fetches the tile or bundle `(level, index)` as it is at this tree size: full, or the
    /// partial one of the right edge (falling back to the full tile, whose prefix it is, if
    /// the log has grown since).
    fn fetch_tile(&self, level: Option<u8>, index: u64) -> Result<Vec<u8>, LedgerError> {
        let (full, width) = tiles_at(level.unwrap_or(0), self.size);
        let width = if index < full {
            256
        } else if index == full && width > 0 {
            width
        } else {
            return Err(LedgerError::OutOfRange {
                index: index * TILE_WIDTH,
                size: self.size,
            });
        };
        let id = TileId {
            level,
            index,
            width,
        };
        if let Some(bytes) = self.fetcher.fetch(&id.path())? {
            return Ok(bytes);
        }
        if width < 256 {
            let full = TileId { width: 256, ..id };
            if let Some(bytes) = self.fetcher.fetch(&full.path())? {
                return Ok(bytes);
            }
        }
        Err(LedgerError::Corrupt(format!("{} is missing", id.path())))
    }

    /// The hashes of tile `(level, index)` at this tree size.
    pub fn tile(&self, level: u8, index: u64) -> Result<Arc<Vec<Hash>>, LedgerError> {
        if let Some(t) = self
            .tiles
            .lock()
            .ok()
            .and_then(|c| c.get(&(level, index)).cloned())
        {
            return Ok(t);
        }
        let (full, width) = tiles_at(level, self.size);
        let want = if index < full {
            256
        } else {
            usize::from(width)
        };
        let bytes = self.fetch_tile(Some(level), index)?;
        if bytes.len() % 32 != 0 || bytes.len() / 32 < want {
            return Err(LedgerError::Corrupt(format!(
                "tile {level}/{index} has {} bytes, expected {}",
                bytes.len(),
                want * 32
            )));
        }
        let hashes: Arc<Vec<Hash>> = Arc::new(
            bytes
                .chunks_exact(32)
                .take(want)
                .map(|c| c.try_into().unwrap_or([0; 32]))
                .collect(),
        );
        if let Ok(mut c) = self.tiles.lock() {
            if c.len() >= CLIENT_TILE_CACHE {
                c.clear();
            }
            c.insert((level, index), Arc::clone(&hashes));
        }
        Ok(hashes)
    }

    /// The entries of bundle `index` at this tree size.
    pub fn bundle(&self, index: u64) -> Result<Vec<Vec<u8>>, LedgerError> {
        let (full, width) = tiles_at(0, self.size);
        let want = if index < full {
            256
        } else {
            usize::from(width)
        };
        let bytes = self.fetch_tile(None, index)?;
        let mut entries = decode_bundle(&bytes)
            .map_err(|e| LedgerError::Corrupt(format!("entry bundle {index}: {e}")))?;
        if entries.len() < want {
            return Err(LedgerError::Corrupt(format!(
                "entry bundle {index} holds {} entries, expected {want}",
                entries.len()
            )));
        }
        entries.truncate(want);
        Ok(entries)
    }
}

impl HashSource for LogClient<'_> {
    fn perfect(&self, height: u8, index: u64) -> Result<Hash, LedgerError> {
        let level = height / 8;
        let r = u32::from(height % 8);
        let first = index << r;
        let count = 1usize << r;
        let tile = self.tile(level, first / TILE_WIDTH)?;
        let pos = (first % TILE_WIDTH) as usize;
        let mut hashes = tile
            .get(pos..pos + count)
            .ok_or(LedgerError::MissingHash { height, index })?
            .to_vec();
        while hashes.len() > 1 {
            hashes = hashes
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
        }
        Ok(hashes[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{self, MemoryTree, inclusion_proof, leaf_hash, verify_inclusion};
    use crate::store::TileStore;

    #[test]
    fn a_client_reads_what_the_store_wrote_at_any_published_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TileStore::open(dir.path()).unwrap();
        let mut mem = MemoryTree::new();
        let mut sizes = Vec::new();
        for batch in [3u64, 300, 70_000 - 303] {
            let start = store.size();
            let entries: Vec<Vec<u8>> = (start..start + batch)
                .map(|i| format!("e{i}").into_bytes())
                .collect();
            entries.iter().for_each(|e| mem.push(e));
            store.append(&entries).unwrap();
            sizes.push(store.integrate().unwrap());
        }
        let fetcher = DirFetcher(dir.path().to_path_buf());
        // Older sizes stay readable: their partial tiles are still there.
        for &size in &sizes {
            let client = LogClient::new(&fetcher, size);
            assert_eq!(
                merkle::root(&client, size).unwrap(),
                merkle::root(&mem, size).unwrap()
            );
            let i = size - 1;
            let proof = inclusion_proof(&client, i, size).unwrap();
            let root = merkle::root(&mem, size).unwrap();
            verify_inclusion(
                &leaf_hash(format!("e{i}").as_bytes()),
                i,
                size,
                &proof,
                &root,
            )
            .unwrap();
            let last = client.bundle((size - 1) / 256).unwrap();
            assert_eq!(last.last().unwrap(), format!("e{i}").as_bytes());
        }
        // A bundle cut short is refused.
        let path = dir.path().join("tile/entries/000");
        let bytes = std::fs::read(&path).unwrap();
        let first_len = 2 + usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
        std::fs::write(&path, &bytes[first_len..]).unwrap();
        let client = LogClient::new(&fetcher, 70_000);
        let err = client.bundle(0).unwrap_err().to_string();
        assert!(err.contains("holds 255 entries, expected 256"), "{err}");
        assert!(fetcher.fetch("../etc/passwd").is_err());
    }
}
