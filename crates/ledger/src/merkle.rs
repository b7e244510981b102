//! RFC 6962 Merkle tree hashing (RFC 6962 §2.1, as restated in RFC 9162 §2.1), inclusion and
//! consistency proofs and their verification (RFC 9162 §2.1.3 and §2.1.4).
//!
//! Trees are read through [`HashSource`], which yields the hash of any *perfect* subtree
//! (2^height leaves, aligned); the tile store and the in-memory tree both implement it, so the
//! same proof code runs over tiles on disk and in tests.

use sha2::{Digest, Sha256};

use crate::LedgerError;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// `MTH({})`: the hash of the empty tree, SHA-256 of the empty string.
#[must_use]
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `MTH({d})` = SHA-256(0x00 || d): the hash of a leaf.
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// SHA-256(0x01 || left || right): the hash of an interior node.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Where hashes of perfect subtrees come from.
pub trait HashSource {
    /// The hash of the perfect subtree of `2^height` leaves starting at leaf
    /// `index * 2^height`. Only subtrees inside the tree the caller works on are asked for.
    fn perfect(&self, height: u8, index: u64) -> Result<Hash, LedgerError>;
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[start:end])` (RFC 9162 §2.1.1), reading perfect subtrees from `src`.
pub fn subtree_root(src: &dyn HashSource, start: u64, end: u64) -> Result<Hash, LedgerError> {
    let n = end - start;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return src.perfect(u8::try_from(n.trailing_zeros()).unwrap_or(63), start / n);
    }
    let k = split(n);
    let left = subtree_root(src, start, start + k)?;
    let right = subtree_root(src, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root of a tree of `size` leaves.
pub fn root(src: &dyn HashSource, size: u64) -> Result<Hash, LedgerError> {
    subtree_root(src, 0, size)
}

/// `PATH(m, D[start:end])` (RFC 9162 §2.1.3.1): the audit path of leaf `start + m`.
fn path(
    src: &dyn HashSource,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), LedgerError> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(src, m, start, start + k, out)?;
        out.push(subtree_root(src, start + k, end)?);
    } else {
        path(src, m - k, start + k, end, out)?;
        out.push(subtree_root(src, start, start + k)?);
    }
    Ok(())
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof(
    src: &dyn HashSource,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, LedgerError> {
    if index >= size {
        return Err(LedgerError::OutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(src, index, 0, size, &mut out)?;
    Ok(out)
}

/// `SUBPROOF(m, D[start:end], b)` (RFC 9162 §2.1.4.1).
fn subproof(
    src: &dyn HashSource,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), LedgerError> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(subtree_root(src, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(src, m, start, start + k, complete, out)?;
        out.push(subtree_root(src, start + k, end)?);
    } else {
        subproof(src, m - k, start + k, end, false, out)?;
        out.push(subtree_root(src, start, start + k)?);
    }
    Ok(())
}

/// The consistency proof between the trees of `old_size` and `new_size` leaves.
pub fn consistency_proof(
    src: &dyn HashSource,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, LedgerError> {
    if old_size > new_size {
        return Err(LedgerError::OutOfRange {
            index: old_size,
            size: new_size,
        });
    }
    let mut out = Vec::new();
    if old_size == 0 || old_size == new_size {
        return Ok(out);
    }
    subproof(src, old_size, 0, new_size, true, &mut out)?;
    Ok(out)
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), LedgerError> {
    if index >= size {
        return Err(LedgerError::OutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(LedgerError::BadProof("inclusion proof is too long".into()));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(LedgerError::BadProof("inclusion proof is too short".into()));
    }
    if r != *root {
        return Err(LedgerError::BadProof(format!(
            "leaf {index} is not included in the tree of size {size} with this root"
        )));
    }
    Ok(())
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), LedgerError> {
    if old_size > new_size {
        return Err(LedgerError::BadProof(
            "the old tree is larger than the new one".into(),
        ));
    }
    if old_size == new_size {
        if proof.is_empty() && old_root == new_root {
            return Ok(());
        }
        return Err(LedgerError::BadProof(
            "trees of equal size must have equal roots and an empty proof".into(),
        ));
    }
    if old_size == 0 {
        // Every tree is consistent with the empty tree.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(LedgerError::BadProof(
                "a proof from the empty tree must be empty".into(),
            ))
        };
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old_size.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let Some((first, rest)) = path.split_first() else {
        return Err(LedgerError::BadProof("empty consistency proof".into()));
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return Err(LedgerError::BadProof(
                "consistency proof is too long".into(),
            ));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(LedgerError::BadProof(
            "consistency proof is too short".into(),
        ));
    }
    if fr != *old_root || sr != *new_root {
        return Err(LedgerError::BadProof(format!(
            "the trees of sizes {old_size} and {new_size} are not consistent"
        )));
    }
    Ok(())
}

/// A whole tree in memory, level by level (tests, and small bundles).
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// `levels[h][i]`: hash of the perfect subtree of height `h` at index `i`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf by its data.
    pub fn push(&mut self, data: &[u8]) {
        self.push_hash(leaf_hash(data));
    }

    /// Appends a leaf by its hash.
    pub fn push_hash(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(h);
            let n = self.levels[level].len();
            if n % 2 == 1 {
                break;
            }
            h = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            level += 1;
        }
    }

    /// Number of leaves.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }
}

impl HashSource for MemoryTree {
    fn perfect(&self, height: u8, index: u64) -> Result<Hash, LedgerError> {
        self.levels
            .get(usize::from(height))
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or(LedgerError::MissingHash { height, index })
    }
}

/// A proof for several leaves at once: the roots of the maximal subtrees of the tree of
/// `size` leaves that contain none of `indexes` (sorted, distinct, `< size`), in depth-first
/// left-to-right order. With the leaves themselves they reproduce the root; shared parts of
/// the paths appear once, so a bundle of many entries stays small and verifies in one pass.
pub fn multi_proof(
    src: &dyn HashSource,
    indexes: &[u64],
    size: u64,
) -> Result<Vec<Hash>, LedgerError> {
    check_indexes(indexes, size)?;
    let mut out = Vec::new();
    multi_proof_at(src, indexes, 0, size, &mut out)?;
    Ok(out)
}

fn check_indexes(indexes: &[u64], size: u64) -> Result<(), LedgerError> {
    if indexes.windows(2).any(|w| w[0] >= w[1]) {
        return Err(LedgerError::BadProof(
            "indexes must be sorted and distinct".into(),
        ));
    }
    if let Some(&last) = indexes.last()
        && last >= size
    {
        return Err(LedgerError::OutOfRange { index: last, size });
    }
    Ok(())
}

fn multi_proof_at(
    src: &dyn HashSource,
    indexes: &[u64],
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), LedgerError> {
    if indexes.is_empty() {
        out.push(subtree_root(src, start, end)?);
        return Ok(());
    }
    if end - start == 1 {
        return Ok(());
    }
    let mid = start + split(end - start);
    let p = indexes.partition_point(|&i| i < mid);
    multi_proof_at(src, &indexes[..p], start, mid, out)?;
    multi_proof_at(src, &indexes[p..], mid, end, out)
}

/// Recomputes the root of a tree of `size` leaves from some of its leaf hashes (sorted by
/// index, distinct) and their [`multi_proof`]; every proof hash must be used.
pub fn root_from_multi_proof(
    leaves: &[(u64, Hash)],
    size: u64,
    proof: &[Hash],
) -> Result<Hash, LedgerError> {
    let indexes: Vec<u64> = leaves.iter().map(|l| l.0).collect();
    check_indexes(&indexes, size)?;
    let mut used = 0usize;
    let root = root_from_multi_proof_at(leaves, 0, size, proof, &mut used)?;
    if used != proof.len() {
        return Err(LedgerError::BadProof(format!(
            "{} unused hashes in the proof",
            proof.len() - used
        )));
    }
    Ok(root)
}

fn root_from_multi_proof_at(
    leaves: &[(u64, Hash)],
    start: u64,
    end: u64,
    proof: &[Hash],
    used: &mut usize,
) -> Result<Hash, LedgerError> {
    if leaves.is_empty() {
        let h = proof
            .get(*used)
            .ok_or_else(|| LedgerError::BadProof("the proof is too short".into()))?;
        *used += 1;
        return Ok(*h);
    }
    if end - start == 1 {
        return Ok(leaves[0].1);
    }
    let mid = start + split(end - start);
    let p = leaves.partition_point(|l| l.0 < mid);
    let left = root_from_multi_proof_at(&leaves[..p], start, mid, proof, used)?;
    let right = root_from_multi_proof_at(&leaves[p..], mid, end, proof, used)?;
    Ok(node_hash(&left, &right))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MTH computed straight from the RFC's recursive definition.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn tree(n: u64) -> (MemoryTree, Vec<Hash>) {
        let mut t = MemoryTree::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let data = format!("entry {i}");
            leaves.push(leaf_hash(data.as_bytes()));
            t.push(data.as_bytes());
        }
        (t, leaves)
    }

    #[test]
    fn known_answers() {
        // RFC 6962 test vectors as used by the Go and Trillian implementations.
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn roots_match_the_definition() {
        let (t, leaves) = tree(300);
        for n in 0..=300u64 {
            assert_eq!(
                root(&t, n).unwrap(),
                reference_root(&leaves[..n as usize]),
                "size {n}"
            );
        }
    }

    #[test]
    fn inclusion_proofs_verify_for_every_leaf_and_size_and_mutations_fail() {
        let (t, leaves) = tree(130);
        for size in 1..=130u64 {
            let r = root(&t, size).unwrap();
            for index in 0..size {
                let proof = inclusion_proof(&t, index, size).unwrap();
                let leaf = leaves[index as usize];
                verify_inclusion(&leaf, index, size, &proof, &r).unwrap();
                // Any single change breaks it.
                let mut wrong_leaf = leaf;
                wrong_leaf[0] ^= 1;
                assert!(verify_inclusion(&wrong_leaf, index, size, &proof, &r).is_err());
                if size > 1 {
                    let other = (index + 1) % size;
                    assert!(verify_inclusion(&leaf, other, size, &proof, &r).is_err());
                }
                for i in 0..proof.len() {
                    let mut p = proof.clone();
                    p[i][31] ^= 0x80;
                    assert!(verify_inclusion(&leaf, index, size, &p, &r).is_err());
                }
                if !proof.is_empty() {
                    assert!(verify_inclusion(&leaf, index, size, &proof[1..], &r).is_err());
                }
                let mut longer = proof.clone();
                longer.push(r);
                assert!(verify_inclusion(&leaf, index, size, &longer, &r).is_err());
            }
        }
    }

    #[test]
    fn consistency_proofs_verify_for_every_pair_and_mutations_fail() {
        let (t, _) = tree(100);
        for new in 0..=100u64 {
            let new_root = root(&t, new).unwrap();
            for old in 0..=new {
                let old_root = root(&t, old).unwrap();
                let proof = consistency_proof(&t, old, new).unwrap();
                verify_consistency(old, new, &old_root, &new_root, &proof).unwrap();
                if old > 0 && old < new {
                    let mut bad = old_root;
                    bad[5] ^= 4;
                    assert!(verify_consistency(old, new, &bad, &new_root, &proof).is_err());
                    assert!(verify_consistency(old, new, &old_root, &bad, &proof).is_err());
                    for i in 0..proof.len() {
                        let mut p = proof.clone();
                        p[i][0] ^= 1;
                        assert!(verify_consistency(old, new, &old_root, &new_root, &p).is_err());
                    }
                    assert!(
                        verify_consistency(old, new, &old_root, &new_root, &proof[1..]).is_err()
                    );
                }
            }
        }
    }

    #[test]
    fn larger_trees_up_to_a_few_thousand() {
        let (t, leaves) = tree(4100);
        for size in [
            255u64, 256, 257, 1000, 1023, 1024, 1025, 4095, 4096, 4097, 4100,
        ] {
            let r = root(&t, size).unwrap();
            assert_eq!(r, reference_root(&leaves[..size as usize]));
            for index in (0..size).step_by(97).chain([size - 1]) {
                let proof = inclusion_proof(&t, index, size).unwrap();
                verify_inclusion(&leaves[index as usize], index, size, &proof, &r).unwrap();
            }
            for old in (1..size).step_by(211) {
                let proof = consistency_proof(&t, old, size).unwrap();
                verify_consistency(old, size, &root(&t, old).unwrap(), &r, &proof).unwrap();
            }
        }
    }

    #[test]
    fn multi_proofs_reproduce_the_root_and_catch_every_change() {
        let (t, leaves) = tree(700);
        let mut seed = 7u64;
        for size in [1u64, 2, 3, 5, 8, 255, 256, 257, 700] {
            let r = root(&t, size).unwrap();
            for pick in 0..6 {
                // A pseudo-random subset of leaves (empty, single, dense, sparse, all).
                let indexes: Vec<u64> = (0..size)
                    .filter(|&i| {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        match pick {
                            0 => false,
                            1 => i == size / 2,
                            2 => true,
                            _ => (seed >> 33).is_multiple_of(pick as u64 * 3),
                        }
                    })
                    .collect();
                let proof = multi_proof(&t, &indexes, size).unwrap();
                let given: Vec<(u64, Hash)> =
                    indexes.iter().map(|&i| (i, leaves[i as usize])).collect();
                assert_eq!(root_from_multi_proof(&given, size, &proof).unwrap(), r);
                // Any changed leaf or proof hash, a dropped or extra hash: another root or an error.
                for k in 0..given.len().min(3) {
                    let mut bad = given.clone();
                    bad[k].1[0] ^= 1;
                    assert_ne!(root_from_multi_proof(&bad, size, &proof).ok(), Some(r));
                }
                for k in 0..proof.len().min(3) {
                    let mut bad = proof.clone();
                    bad[k][31] ^= 1;
                    assert_ne!(root_from_multi_proof(&given, size, &bad).ok(), Some(r));
                }
                if !proof.is_empty() {
                    assert!(root_from_multi_proof(&given, size, &proof[1..]).is_err());
                }
                let mut longer = proof.clone();
                longer.push(r);
                assert!(root_from_multi_proof(&given, size, &longer).is_err());
                // A leaf claimed at another index does not reproduce the root.
                if given.len() == 1 && size > 1 {
                    let moved = [((given[0].0 + 1) % size, given[0].1)];
                    assert_ne!(root_from_multi_proof(&moved, size, &proof).ok(), Some(r));
                }
            }
        }
        assert!(multi_proof(&t, &[3, 3], 10).is_err());
        assert!(multi_proof(&t, &[5, 2], 10).is_err());
        assert!(multi_proof(&t, &[10], 10).is_err());
    }
}
