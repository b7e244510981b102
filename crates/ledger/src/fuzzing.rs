//! The bodies of the fuzz targets (`fuzz/`, run with `cargo fuzz run <target>`), one per
//! parser of untrusted input. Each must never panic, and whatever it accepts must survive a
//! round trip through its encoder. `tests/parsers.rs` runs them over mutated seeds on every
//! test run so the properties hold even where no fuzzer is installed.

use crate::checkpoint::Checkpoint;
use crate::entry::Entry;
use crate::note::{Note, Verifier};
use crate::store::{decode_bundle, encode_bundle};
use crate::tile::TileId;
use crate::verify::ProofBundle;
use crate::witness::AddCheckpoint;

/// Checkpoint texts: accepted ones re-encode to the same bytes.
pub fn checkpoint(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cp) = Checkpoint::parse(text)
    {
        assert_eq!(cp.to_text(), text);
    }
}

/// Signed notes and verifier keys.
pub fn note(data: &[u8]) {
    if let Ok(n) = Note::parse(data) {
        assert_eq!(Note::parse(n.to_text().as_bytes()).ok(), Some(n));
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(v) = Verifier::parse(text)
    {
        assert_eq!(
            Verifier::parse(&v.to_vkey()).map(|w| w.to_vkey()).ok(),
            Some(v.to_vkey())
        );
    }
}

/// Log entries: only canonical encodings are accepted.
pub fn entry(data: &[u8]) {
    if let Ok(e) = Entry::parse(data) {
        assert_eq!(e.encode(), data);
    }
}

/// Proof bundles: parsing and verifying against an arbitrary key never panics.
pub fn bundle(data: &[u8]) {
    if let Ok(b) = ProofBundle::parse(data) {
        let key = Verifier::parse(
            "golden.vallum.test/log+54070e54+ARJs0NpomAeCiAMQwrz6WkcXHj2L1PQCU1E5hLAaGI2s",
        );
        if let Ok(key) = key {
            let _ = b.verify(&key, &[], 0, None);
        }
    }
}

/// Public leaves and stored openings (log format 2): no panic; an accepted commitment leaf
/// re-encodes to the same bytes, an accepted opening too.
pub fn sealed(data: &[u8]) {
    if let Ok(crate::seal::Leaf::Commitment(c)) = crate::seal::parse_leaf(data) {
        assert_eq!(crate::seal::commitment_leaf(&c), data);
    }
    if let Ok(Some(o)) = crate::seal::Opening::decode(data) {
        assert_eq!(o.encode(), data);
        let _ = o.parsed();
    }
    let _ = crate::seal::public_leaf(data);
}

/// Witness add-checkpoint request bodies.
pub fn witness_request(data: &[u8]) {
    if let Ok(r) = AddCheckpoint::parse(data) {
        assert_eq!(AddCheckpoint::parse(&r.to_body()).ok(), Some(r));
    }
}

/// Tile paths and entry bundles.
pub fn tiles(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(id) = TileId::parse(text)
    {
        assert_eq!(id.path(), text);
    }
    if let Ok(entries) = decode_bundle(data) {
        assert_eq!(encode_bundle(&entries), data);
    }
}

/// Deterministic xorshift, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(d.len() + 1);
        match rng.below(7) {
            0 if !d.is_empty() => {
                let i = at.min(d.len() - 1);
                d[i] ^= 1 << rng.below(8);
            }
            1 => d.insert(at, rng.next() as u8),
            2 if at < d.len() => {
                d.remove(at);
            }
            3 => d.truncate(at),
            4 => {
                // Interesting bytes for these formats.
                let b =
                    [b'\n', b' ', b'+', b'/', b'"', b'{', b'}', b'0', 0xe2, 0xff][rng.below(10)];
                d.insert(at, b);
            }
            5 if !d.is_empty() => {
                let from = rng.below(d.len());
                let len = rng.below(16).min(d.len() - from);
                let chunk = d[from..from + len].to_vec();
                let at = at.min(d.len());
                d.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    d
}

/// Runs `target` over each seed, then over `iterations` mutations of them (deterministic
/// for a given `salt`, so a failure reproduces): what a fuzzer does, in miniature, for test
/// runs where no fuzzer is installed.
pub fn run_mutated(target: fn(&[u8]), seeds: &[Vec<u8>], iterations: usize, salt: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ salt);
    for s in seeds {
        target(s);
    }
    for _ in 0..iterations {
        let seed = &seeds[rng.below(seeds.len())];
        target(&mutate(&mut rng, seed));
    }
}
