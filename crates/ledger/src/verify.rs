//! Offline verification: of a whole log read through a [`TileFetcher`], and of a
//! self-contained proof bundle. Both check the checkpoint's signature (and witness
//! cosignatures), consistency with a previously trusted checkpoint, and that every entry is
//! in the tree and well formed; they name the index of the first entry that is not.
//!
//! Proof bundle format (`vallum-proof-bundle/1`, see `docs/formats/proof-bundle.md`): JSON
//! with the signed checkpoint, an optional consistency proof from an older size, the chosen
//! entries (index and base64 bytes) and one [`multi_proof`] for all of them.

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::client::{LogClient, TileFetcher};
use crate::entry::Entry;
use crate::merkle::{
    self, Hash, MemoryTree, leaf_hash, multi_proof, root_from_multi_proof, verify_consistency,
};
use crate::note::{Note, Verifier, open};
use crate::seal::{Leaf, Opening, parse_leaf};
use crate::tile::{TILE_WIDTH, tiles_at};
use crate::{LedgerError, b64, malformed, unb64};

/// The `format` value of the proof bundles this build writes (version 2: entries may carry
/// their opening, `salt` and `owner`, for sealed leaves).
pub const BUNDLE_FORMAT: &str = "vallum-proof-bundle/2";
/// Version-1 bundles (every entry in the clear) are still read.
pub const BUNDLE_FORMAT_V1: &str = "vallum-proof-bundle/1";
/// Largest proof bundle `vallum verify` reads (bytes).
pub const MAX_BUNDLE_BYTES: usize = 4 << 30;

/// What a checkpoint's signatures established.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The verified checkpoint.
    pub checkpoint: Checkpoint,
    /// The note as read (text and every signature line).
    pub note: Note,
    /// Names of the witnesses whose cosignatures verified.
    pub witnesses: Vec<String>,
}

/// Opens a checkpoint note with the log's key and checks that at least `quorum` of the given
/// witnesses cosigned it.
pub fn open_checkpoint(
    note_bytes: &[u8],
    log_key: &Verifier,
    witnesses: &[Verifier],
    quorum: usize,
) -> Result<Trust, LedgerError> {
    let (checkpoint, note) = Checkpoint::open(note_bytes, log_key, &[])?;
    let mut names = Vec::new();
    for w in witnesses {
        if open(&note, std::slice::from_ref(w)).is_ok() {
            names.push(w.name.clone());
        }
    }
    if names.len() < quorum {
        return Err(LedgerError::Signature(format!(
            "{} of the {} required witness cosignatures",
            names.len(),
            quorum
        )));
    }
    Ok(Trust {
        checkpoint,
        note,
        witnesses: names,
    })
}

fn tampered(index: u64, why: impl Into<String>) -> LedgerError {
    LedgerError::Tampered {
        index,
        why: why.into(),
    }
}

/// Checks that `checkpoint` extends `trusted` (same origin, not smaller, same tree below the
/// trusted size) given the roots of the log at the trusted size.
fn check_extends(
    trusted: &Checkpoint,
    checkpoint: &Checkpoint,
    root_at_trusted: Option<Hash>,
) -> Result<(), LedgerError> {
    if trusted.origin != checkpoint.origin {
        return Err(LedgerError::Signature(format!(
            "trusted checkpoint is of log {:?}, not {:?}",
            trusted.origin, checkpoint.origin
        )));
    }
    if trusted.size > checkpoint.size {
        return Err(LedgerError::BadProof(format!(
            "the log shrank: trusted size {} > current size {}",
            trusted.size, checkpoint.size
        )));
    }
    if let Some(root) = root_at_trusted
        && root != trusted.root
    {
        return Err(LedgerError::BadProof(format!(
            "fork: the log's first {} entries differ from the trusted checkpoint's (the log was rewritten below index {})",
            trusted.size, trusted.size
        )));
    }
    Ok(())
}

/// The outcome of verifying a whole log.
#[derive(Debug)]
pub struct LogVerification {
    /// The verified checkpoint and its cosigners.
    pub trust: Trust,
    /// Entries kept by the caller's filter, with their indexes (entries in the clear only).
    pub entries: Vec<(u64, Entry)>,
    /// Sealed leaves (format v2): verified in the tree, their content private.
    pub sealed: u64,
}

/// Reads every entry of the log up to its signed checkpoint, rebuilds the tree and checks it
/// against the checkpoint (and `trusted`, if given). Entries for which `keep` is true are
/// returned. A damaged or altered entry, tile or bundle is reported with its index.
pub fn verify_log(
    fetcher: &dyn TileFetcher,
    log_key: &Verifier,
    witnesses: &[Verifier],
    quorum: usize,
    trusted: Option<&Checkpoint>,
    keep: &dyn Fn(&Entry) -> bool,
) -> Result<LogVerification, LedgerError> {
    let note = fetcher
        .fetch("checkpoint")?
        .ok_or_else(|| LedgerError::Corrupt("the log has no checkpoint".into()))?;
    let trust = open_checkpoint(&note, log_key, witnesses, quorum)?;
    let size = trust.checkpoint.size;
    let client = LogClient::new(fetcher, size);
    let mut tree = MemoryTree::new();
    let mut kept = Vec::new();
    let mut sealed = 0u64;
    let bundles = size.div_ceil(TILE_WIDTH);
    for b in 0..bundles {
        let first = b * TILE_WIDTH;
        let tile = client.tile(0, b)?;
        let entries = match client.bundle(b) {
            Ok(e) => e,
            Err(e) => return Err(locate_in_short_bundle(&client, b, &tile).unwrap_or(e)),
        };
        for (i, bytes) in entries.iter().enumerate() {
            let index = first + i as u64;
            let h = leaf_hash(bytes);
            if tile.get(i) != Some(&h) {
                return Err(tampered(
                    index,
                    "the entry does not match its hash in the level-0 tile",
                ));
            }
            match parse_leaf(bytes).map_err(|e| tampered(index, e.to_string()))? {
                Leaf::Entry(entry) => {
                    if keep(&entry) {
                        kept.push((index, *entry));
                    }
                }
                Leaf::Commitment(_) => sealed += 1,
            }
            tree.push_hash(h);
        }
    }
    // Tiles above level 0 serve every client's proofs: they must agree with the entries.
    if let Some(bad) = locate_bad_tile(&client, &tree, size) {
        return Err(bad);
    }
    let root = merkle::root(&tree, size)?;
    if root != trust.checkpoint.root {
        return Err(LedgerError::BadProof(
            "the entries do not reproduce the checkpoint's root (the checkpoint was signed over another tree)".into(),
        ));
    }
    if let Some(t) = trusted {
        let at = (t.size <= size)
            .then(|| merkle::root(&tree, t.size))
            .transpose()?;
        check_extends(t, &trust.checkpoint, at)?;
    }
    Ok(LogVerification {
        trust,
        entries: kept,
        sealed,
    })
}

/// Names the entry a short or undecodable bundle lost: the first whose hash does not match.
fn locate_in_short_bundle(client: &LogClient<'_>, b: u64, tile: &[Hash]) -> Option<LedgerError> {
    let bytes = client_bundle_bytes(client, b)?;
    let present = crate::store::decode_bundle(&bytes).unwrap_or_default();
    let index = tile
        .iter()
        .enumerate()
        .find(|(i, h)| present.get(*i).map(|e| leaf_hash(e)) != Some(**h))
        .map_or(present.len(), |(i, _)| i);
    Some(tampered(
        b * TILE_WIDTH + index as u64,
        "the entry is missing from its bundle (deleted or cut)",
    ))
}

fn client_bundle_bytes(client: &LogClient<'_>, b: u64) -> Option<Vec<u8>> {
    // Re-read the raw bundle; the client refused it as a whole.
    let (full, width) = tiles_at(0, client.size());
    let id = crate::tile::TileId {
        level: None,
        index: b,
        width: if b < full { 256 } else { width },
    };
    client.fetcher_fetch(&id.path())
}

/// Compares every stored tile above level 0 with the hashes recomputed from the entries, and
/// names the first leaf of the first tile that disagrees.
fn locate_bad_tile(client: &LogClient<'_>, tree: &MemoryTree, size: u64) -> Option<LedgerError> {
    use crate::merkle::HashSource;
    let mut level = 1u8;
    while level < 8 && (size >> (8 * u32::from(level))) > 0 {
        let (full, width) = tiles_at(level, size);
        let count = full + u64::from(width > 0);
        for t in 0..count {
            let stored = client.tile(level, t).ok()?;
            for (i, h) in stored.iter().enumerate() {
                let index = t * TILE_WIDTH + i as u64;
                if tree.perfect(level * 8, index).ok().as_ref() != Some(h) {
                    let first_leaf = index << (8 * u32::from(level));
                    return Some(tampered(
                        first_leaf,
                        format!(
                            "tile {level}/{t} holds a wrong hash for the subtree starting here"
                        ),
                    ));
                }
            }
        }
        level += 1;
    }
    None
}

/// One entry of a proof bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEntry {
    /// Leaf index.
    pub index: u64,
    /// The entry's exact bytes, base64.
    pub entry: String,
    /// For a sealed leaf: the opening's salt, hex (the leaf is the commitment to salt, owner
    /// and entry); absent for an entry that is its own leaf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// For a sealed leaf: the tenant it belongs to (empty: the platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl BundleEntry {
    /// The public leaf this entry stands for, and its parsed content.
    fn leaf(&self) -> Result<(Vec<u8>, Entry), LedgerError> {
        let bytes = unb64(&self.entry).ok_or_else(|| tampered(self.index, "not base64"))?;
        let entry = Entry::parse(&bytes).map_err(|err| tampered(self.index, err.to_string()))?;
        match &self.salt {
            None => Ok((bytes, entry)),
            Some(hex) => {
                let salt = decode_hex32(hex)
                    .ok_or_else(|| tampered(self.index, "the salt is not 32 hex bytes"))?;
                let o = Opening {
                    salt,
                    owner: self.owner.clone().unwrap_or_default(),
                    entry: bytes,
                };
                Ok((o.leaf(), entry))
            }
        }
    }
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// A consistency proof from an older tree size.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleConsistency {
    /// The older size.
    pub old_size: u64,
    /// RFC 6962 consistency proof from `old_size` to the checkpoint's size, base64 hashes.
    pub proof: Vec<String>,
}

/// What the exporter selected (informational; the proofs do not depend on it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFilter {
    /// Bucket, if one was chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Earliest entry time, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    /// Latest entry time, ms (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
}

/// A self-contained proof bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// The signed checkpoint (note text with signature lines, cosignatures included).
    pub checkpoint: String,
    /// Consistency from an older size the auditor trusts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<BundleConsistency>,
    /// What was selected.
    pub filter: BundleFilter,
    /// The entries, by increasing index.
    pub entries: Vec<BundleEntry>,
    /// The multi-proof for all entries, base64 hashes.
    pub proof: Vec<String>,
}

impl ProofBundle {
    /// Builds a bundle of the entries whose indexes are given (sorted), from a log read
    /// through `fetcher` at the checkpoint `note` (already verified by the caller).
    pub fn export(
        fetcher: &dyn TileFetcher,
        note: &Note,
        indexes: &[u64],
        filter: BundleFilter,
        old_size: Option<u64>,
    ) -> Result<Self, LedgerError> {
        let cp = Checkpoint::parse(&note.text)?;
        let client = LogClient::new(fetcher, cp.size);
        let mut entries = Vec::with_capacity(indexes.len());
        let mut cached: Option<(u64, Vec<Vec<u8>>)> = None;
        for &index in indexes {
            let b = index / TILE_WIDTH;
            if cached.as_ref().is_none_or(|c| c.0 != b) {
                cached = Some((b, client.bundle(b)?));
            }
            let bytes = cached
                .as_ref()
                .and_then(|c| c.1.get((index % TILE_WIDTH) as usize))
                .ok_or(LedgerError::OutOfRange {
                    index,
                    size: cp.size,
                })?;
            entries.push(BundleEntry {
                index,
                entry: b64(bytes),
                salt: None,
                owner: None,
            });
        }
        let proof = multi_proof(&client, indexes, cp.size)?;
        let consistency = match old_size {
            Some(old) if old > 0 && old <= cp.size => Some(BundleConsistency {
                old_size: old,
                proof: merkle::consistency_proof(&client, old, cp.size)?
                    .iter()
                    .map(|h| b64(h))
                    .collect(),
            }),
            Some(old) if old > cp.size => {
                return Err(LedgerError::OutOfRange {
                    index: old,
                    size: cp.size,
                });
            }
            _ => None,
        };
        // Entries in the clear only: a version-1 bundle, readable by older verifiers too.
        Ok(Self {
            format: BUNDLE_FORMAT_V1.into(),
            checkpoint: note.to_text(),
            consistency,
            filter,
            entries,
            proof: proof.iter().map(|h| b64(h)).collect(),
        })
    }

    /// Builds a bundle of sealed entries from their openings (which the log's owner keeps),
    /// with proofs from the public tiles read through `fetcher` at the checkpoint `note`
    /// (already verified by the caller). `entries` are sorted by index.
    pub fn export_openings(
        fetcher: &dyn TileFetcher,
        note: &Note,
        entries: &[(u64, Opening)],
        filter: BundleFilter,
        old_size: Option<u64>,
    ) -> Result<Self, LedgerError> {
        let cp = Checkpoint::parse(&note.text)?;
        let client = LogClient::new(fetcher, cp.size);
        let indexes: Vec<u64> = entries.iter().map(|(i, _)| *i).collect();
        let proof = multi_proof(&client, &indexes, cp.size)?;
        let consistency = match old_size {
            Some(old) if old > 0 && old <= cp.size => Some(BundleConsistency {
                old_size: old,
                proof: merkle::consistency_proof(&client, old, cp.size)?
                    .iter()
                    .map(|h| b64(h))
                    .collect(),
            }),
            _ => None,
        };
        Ok(Self {
            format: BUNDLE_FORMAT.into(),
            checkpoint: note.to_text(),
            consistency,
            filter,
            entries: entries
                .iter()
                .map(|(index, o)| BundleEntry {
                    index: *index,
                    entry: b64(&o.entry),
                    salt: Some(o.salt.iter().map(|b| format!("{b:02x}")).collect()),
                    owner: Some(o.owner.clone()),
                })
                .collect(),
            proof: proof.iter().map(|h| b64(h)).collect(),
        })
    }

    /// Parses a bundle (JSON), refusing unknown formats.
    pub fn parse(bytes: &[u8]) -> Result<Self, LedgerError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(malformed("proof bundle", "too large"));
        }
        let b: Self =
            serde_json::from_slice(bytes).map_err(|e| malformed("proof bundle", e.to_string()))?;
        if b.format == BUNDLE_FORMAT_V1 && b.entries.iter().any(|e| e.salt.is_some()) {
            return Err(malformed(
                "proof bundle",
                "a version-1 bundle has no openings",
            ));
        }
        if b.format != BUNDLE_FORMAT && b.format != BUNDLE_FORMAT_V1 {
            return Err(malformed(
                "proof bundle",
                format!("unknown format {:?}", b.format),
            ));
        }
        Ok(b)
    }

    /// Serialises the bundle.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Verifies the bundle: signatures, consistency with `trusted`, the inclusion of every
    /// entry, and every entry's format. Returns the trust and the parsed entries.
    pub fn verify(
        &self,
        log_key: &Verifier,
        witnesses: &[Verifier],
        quorum: usize,
        trusted: Option<&Checkpoint>,
    ) -> Result<(Trust, Vec<(u64, Entry)>), LedgerError> {
        let trust = open_checkpoint(self.checkpoint.as_bytes(), log_key, witnesses, quorum)?;
        let cp = &trust.checkpoint;
        let decode_hashes = |list: &[String]| -> Result<Vec<Hash>, LedgerError> {
            list.iter()
                .map(|h| {
                    unb64(h)
                        .and_then(|v| Hash::try_from(v).ok())
                        .ok_or_else(|| malformed("proof bundle", "a proof hash is not 32 bytes"))
                })
                .collect()
        };
        if let Some(t) = trusted {
            check_extends(t, cp, None)?;
            if t.size == cp.size {
                if t.root != cp.root {
                    return Err(LedgerError::BadProof(format!(
                        "fork: two different trees of size {} are signed",
                        cp.size
                    )));
                }
            } else if t.size > 0 {
                let c = self
                    .consistency
                    .as_ref()
                    .filter(|c| c.old_size == t.size)
                    .ok_or_else(|| {
                        LedgerError::BadProof(format!(
                            "the bundle has no consistency proof from the trusted size {}",
                            t.size
                        ))
                    })?;
                verify_consistency(t.size, cp.size, &t.root, &cp.root, &decode_hashes(&c.proof)?)
                    .map_err(|_| {
                        LedgerError::BadProof(format!(
                            "fork: the checkpoint of size {} is not consistent with the trusted checkpoint of size {}",
                            cp.size, t.size
                        ))
                    })?;
            }
        }
        let mut leaves = Vec::with_capacity(self.entries.len());
        let mut parsed = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let (leaf, entry) = e.leaf()?;
            leaves.push((e.index, leaf_hash(&leaf)));
            parsed.push((e.index, entry));
        }
        let root = root_from_multi_proof(&leaves, cp.size, &decode_hashes(&self.proof)?)?;
        if root != cp.root {
            return Err(LedgerError::BadProof(
                "the entries and proof do not reproduce the checkpoint's root: an entry or a proof hash was altered".into(),
            ));
        }
        Ok((trust, parsed))
    }
}
