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
