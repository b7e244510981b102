//! Vallum's transparency log, implementing the public C2SP specifications so that any generic
//! client can read and verify it:
//!
//! * [`merkle`] — RFC 6962 hashing, inclusion and consistency proofs (RFC 9162 §2.1).
//! * [`tile`] — tile coordinates and paths of *tlog-tiles* ("Merkle Tree", "Log entries").
//! * [`note`] — *signed-note*: note format, Ed25519 note signatures, key IDs, verifier keys.
//! * [`checkpoint`] — *tlog-checkpoint*: origin, tree size, root hash.
//! * [`cosignature`] — *tlog-cosignature*: timestamped Ed25519 witness cosignatures (type 0x04).
//! * [`entry`] — Vallum's log entries: a versioned, canonical JSON encoding.
//! * [`seal`] — sealed entries (format v2): public leaves are salted commitments, the
//!   openings stay private to the entry's tenant and the auditors it chooses.
//! * [`client`] — a generic tlog-tiles reader over any source of tiles (directory, HTTP).
//! * [`store`] — a durable, append-only tile store on a local directory whose layout is the
//!   tlog-tiles URL space, so the files can be served as they are.
//!
//! * [`verify`] — offline verification of a whole log or of a proof bundle.
//! * [`audit`] — the boundary audit over verified entries, with Markdown/JSON reports.
//! * [`witness`] — a *tlog-witness* that cosigns only consistent checkpoints.
//!
//! Synchronous by design: no async runtime inside (callers batch and run it on a blocking
//! thread).

pub mod audit;
pub mod checkpoint;
pub mod client;
pub mod cosignature;
pub mod entry;
pub mod fuzzing;
pub mod merkle;
pub mod note;
pub mod report;
pub mod seal;
pub mod store;
pub mod tile;
pub mod verify;
pub mod witness;

/// Everything the ledger can fail with.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A leaf index or tree size outside the tree.
    #[error("index {index} is outside a tree of size {size}")]
    OutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A hash the computation needs is not available.
    #[error("no stored hash at height {height}, index {index}")]
    MissingHash {
        /// Subtree height.
        height: u8,
        /// Subtree index.
        index: u64,
    },
    /// A proof does not verify.
    #[error("proof does not verify: {0}")]
    BadProof(String),
    /// A note, checkpoint, key or tile path is malformed.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// Why it was refused.
        why: String,
    },
    /// A signature does not verify, or no trusted key signed.
    #[error("signature: {0}")]
    Signature(String),
    /// Stored data disagrees with itself (a tampered or damaged tile, bundle or state).
    #[error("corrupt log data: {0}")]
    Corrupt(String),
    /// A stored entry, tile or bundle was altered, lost or damaged.
    #[error("entry {index}: {why}")]
    Tampered {
        /// The first leaf index affected.
        index: u64,
        /// What is wrong.
        why: String,
    },
    /// An entry is larger than an entry bundle can hold.
    #[error("entry of {0} bytes exceeds the 65535-byte limit")]
    EntryTooLarge(usize),
    /// File system failure.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) fn malformed(what: &'static str, why: impl Into<String>) -> LedgerError {
    LedgerError::Malformed {
        what,
        why: why.into(),
    }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

pub(crate) fn unb64(text: &str) -> Option<Vec<u8>> {
    base64_simd::STANDARD.decode_to_vec(text).ok()
}
