//! Tile coordinates and paths (C2SP tlog-tiles, "Merkle Tree" and "Log entries").

use crate::{LedgerError, malformed};

/// Tile height: every tile spans 8 tree levels, i.e. 256 hashes.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes (or entries) in a full tile (or bundle).
pub const TILE_WIDTH: u64 = 256;
/// Bytes of a full hash tile.
pub const FULL_TILE_BYTES: usize = 256 * 32;

/// A hash tile (`level` 0..=63) or an entry bundle (`level` = `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileId {
    /// Tile level; `None` for an entry bundle.
    pub level: Option<u8>,
    /// Index within the level.
    pub index: u64,
    /// Width: 256 for a full tile, 1..=255 for a partial one.
    pub width: u16,
}

/// Encodes a tile index as 3-digit path elements, all but the last prefixed with `x`
/// (index 1234067 → `x001/x234/067`).
#[must_use]
pub fn index_path(index: u64) -> String {
    let mut groups = Vec::new();
    let mut n = index;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    groups.reverse();
    let last = groups.len() - 1;
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if i == last {
                format!("{g:03}")
            } else {
                format!("x{g:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl TileId {
    /// The path under the log prefix: `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`.
    #[must_use]
    pub fn path(&self) -> String {
        let level = self
            .level
            .map_or_else(|| "entries".to_owned(), |l| l.to_string());
        let mut p = format!("tile/{level}/{}", index_path(self.index));
        if u64::from(self.width) < TILE_WIDTH {
            p.push_str(&format!(".p/{}", self.width));
        }
        p
    }

    /// Parses a path made by [`TileId::path`], strictly (no leading zeroes where the spec
    /// forbids them, widths 1..=255).
    pub fn parse(path: &str) -> Result<Self, LedgerError> {
        let bad = |why: &str| malformed("tile path", format!("{path:?}: {why}"));
        let rest = path
            .strip_prefix("tile/")
            .ok_or_else(|| bad("not under tile/"))?;
        let (level_text, rest) = rest.split_once('/').ok_or_else(|| bad("no index"))?;
        let level = if level_text == "entries" {
            None
        } else {
            if level_text.is_empty()
                || (level_text.len() > 1 && level_text.starts_with('0'))
                || !level_text.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(bad("bad level"));
            }
            let l: u8 = level_text.parse().map_err(|_| bad("bad level"))?;
            if l > 63 {
                return Err(bad("level above 63"));
            }
            Some(l)
        };
        let (index_text, width) = match rest.split_once(".p/") {
            Some((i, w)) => {
                if w.is_empty() || w.starts_with('0') || !w.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("bad width"));
                }
                let w: u16 = w.parse().map_err(|_| bad("bad width"))?;
                if !(1..=255).contains(&w) {
                    return Err(bad("width out of range"));
                }
                (i, w)
            }
            None => (rest, 256),
        };
        let elements: Vec<&str> = index_text.split('/').collect();
        let mut index: u64 = 0;
        for (i, e) in elements.iter().enumerate() {
            let digits = if i + 1 < elements.len() {
                e.strip_prefix('x')
                    .ok_or_else(|| bad("inner elements start with x"))?
            } else {
                e
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("index elements are 3 digits"));
            }
            let v: u64 = digits.parse().map_err(|_| bad("bad index"))?;
            index = index
                .checked_mul(1000)
                .and_then(|x| x.checked_add(v))
                .ok_or_else(|| bad("index overflows"))?;
        }
        if elements.len() > 1 && elements[0] == "x000" {
            return Err(bad("leading zero element"));
        }
        let id = Self {
            level,
            index,
            width,
        };
        if id.path() != path {
            return Err(bad("not in canonical form"));
        }
        Ok(id)
    }
}

/// The tiles (full and partial) that exist at `level` for a tree of `size` leaves: the number
/// of full tiles and the width of the partial one (0 if none).
#[must_use]
pub fn tiles_at(level: u8, size: u64) -> (u64, u16) {
    let hashes = size >> (u32::from(level) * u32::from(TILE_HEIGHT));
    (hashes / TILE_WIDTH, (hashes % TILE_WIDTH) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_spec() {
        assert_eq!(index_path(1_234_067), "x001/x234/067");
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(999), "999");
        assert_eq!(index_path(1000), "x001/000");
        let t = TileId {
            level: Some(0),
            index: 1_234_067,
            width: 256,
        };
        assert_eq!(t.path(), "tile/0/x001/x234/067");
        let p = TileId {
            level: None,
            index: 5,
            width: 112,
        };
        assert_eq!(p.path(), "tile/entries/005.p/112");
        for id in [t, p] {
            assert_eq!(TileId::parse(&id.path()).unwrap(), id);
        }
        for bad in [
            "tile/00/000",
            "tile/64/000",
            "tile/0/1",
            "tile/0/001/002",
            "tile/0/x000/001",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/012",
            "tile/entries/",
            "tiles/0/000",
        ] {
            assert!(TileId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tile_counts_match_the_spec_example() {
        // "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial
        // level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of width
        // 17, and one partial level 2 tile of width 1."
        assert_eq!(tiles_at(0, 70_000), (273, 112));
        assert_eq!(tiles_at(1, 70_000), (1, 17));
        assert_eq!(tiles_at(2, 70_000), (0, 1));
        assert_eq!(tiles_at(0, 256), (1, 0));
        assert_eq!(tiles_at(1, 256), (0, 1));
    }
}
