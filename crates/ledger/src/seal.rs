//! Sealed entries (log format v2): what is public proves integrity without disclosing content.
//!
//! The log stores each entry privately as an *opening*: a random 32-byte salt, the tenant the
//! entry belongs to (empty for the platform) and the entry's canonical v1 bytes. The public
//! leaf — what the tiles hash and the public entry bundles hold — is only a commitment to the
//! opening:
//!
//! ```text
//! leaf       = {"v":2,"c":"<hex SHA-256(COMMITMENT_DOMAIN || salt || len(owner) || owner || entry)>"}
//! opening    = OPENING_MAGIC || salt (32) || len(owner) (1) || owner || entry
//! ```
//!
//! Anyone can verify the tree, checkpoints and consistency from the public tiles; nobody learns
//! a bucket, key, size, digest, actor or purpose from them (the salt makes guessing a low-
//! entropy entry useless). The tenant, and the auditors it hands a proof bundle to, get the
//! openings: they recompute each leaf from its opening and check its inclusion.
//!
//! Entries written before sealing (format v1) are their own leaves; both kinds verify.

use sha2::{Digest, Sha256};

use crate::LedgerError;
use crate::entry::Entry;

/// Prefix of a stored opening.
pub const OPENING_MAGIC: &[u8] = b"vallum-opening 2\n";
/// Domain separation of the commitment hash.
pub const COMMITMENT_DOMAIN: &[u8] = b"vallum-log-commitment 2\n";
/// Bytes of an opening's salt.
pub const SALT_BYTES: usize = 32;
/// Longest owner (tenant id) an opening names.
pub const MAX_OWNER_BYTES: usize = 255;

/// An opened entry: the private form of a sealed leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    /// The random salt.
    pub salt: [u8; SALT_BYTES],
    /// The tenant the entry belongs to; empty for the platform.
    pub owner: String,
    /// The entry's canonical (v1) bytes.
    pub entry: Vec<u8>,
}

impl Opening {
    /// Seals `entry` for `owner` with a fresh random salt.
    pub fn seal(entry: Vec<u8>, owner: &str) -> Result<Self, LedgerError> {
        if owner.len() > MAX_OWNER_BYTES {
            return Err(crate::malformed("opening", "owner too long"));
        }
        let mut salt = [0u8; SALT_BYTES];
        getrandom::fill(&mut salt)
            .map_err(|e| LedgerError::Io(std::io::Error::other(e.to_string())))?;
        Ok(Self {
            salt,
            owner: owner.to_owned(),
            entry,
        })
    }

    /// The stored (private) bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            OPENING_MAGIC.len() + SALT_BYTES + 1 + self.owner.len() + self.entry.len(),
        );
        out.extend_from_slice(OPENING_MAGIC);
        out.extend_from_slice(&self.salt);
        out.push(u8::try_from(self.owner.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.owner.as_bytes());
        out.extend_from_slice(&self.entry);
        out
    }

    /// Parses stored bytes that are an opening (`None` for a legacy v1 entry).
    pub fn decode(stored: &[u8]) -> Result<Option<Self>, LedgerError> {
        let Some(rest) = stored.strip_prefix(OPENING_MAGIC) else {
            return Ok(None);
        };
        if rest.len() < SALT_BYTES + 1 {
            return Err(crate::malformed("opening", "truncated"));
        }
        let (salt, rest) = rest.split_at(SALT_BYTES);
        let n = usize::from(rest[0]);
        let rest = &rest[1..];
        if rest.len() < n {
            return Err(crate::malformed("opening", "truncated owner"));
        }
        let owner = std::str::from_utf8(&rest[..n])
            .map_err(|_| crate::malformed("opening", "owner is not UTF-8"))?
            .to_owned();
        Ok(Some(Self {
            salt: salt.try_into().unwrap_or([0; SALT_BYTES]),
            owner,
            entry: rest[n..].to_vec(),
        }))
    }

    /// The commitment hash.
    #[must_use]
    pub fn commitment(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(COMMITMENT_DOMAIN);
        h.update(self.salt);
        h.update([u8::try_from(self.owner.len()).unwrap_or(u8::MAX)]);
        h.update(self.owner.as_bytes());
        h.update(&self.entry);
        h.finalize().into()
    }

    /// The public leaf.
    #[must_use]
    pub fn leaf(&self) -> Vec<u8> {
        commitment_leaf(&self.commitment())
    }

    /// The entry, parsed.
    pub fn parsed(&self) -> Result<Entry, LedgerError> {
        Entry::parse(&self.entry)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The canonical v2 leaf for a commitment.
#[must_use]
pub fn commitment_leaf(c: &[u8; 32]) -> Vec<u8> {
    format!("{{\"v\":2,\"c\":\"{}\"}}", hex(c)).into_bytes()
}

/// A public leaf: a sealed entry's commitment, or a legacy v1 entry in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    /// A v1 entry, written before sealing.
    Entry(Box<Entry>),
    /// A commitment to a private opening.
    Commitment([u8; 32]),
}

/// Parses a public leaf (canonical bytes only).
pub fn parse_leaf(bytes: &[u8]) -> Result<Leaf, LedgerError> {
    if bytes.starts_with(b"{\"v\":2,") {
        let text = std::str::from_utf8(bytes).map_err(|_| crate::malformed("leaf", "not UTF-8"))?;
        let c = text
            .strip_prefix("{\"v\":2,\"c\":\"")
            .and_then(|r| r.strip_suffix("\"}"))
            .filter(|h| {
                h.len() == 64
                    && h.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
            .ok_or_else(|| crate::malformed("leaf", "not a canonical v2 commitment"))?;
        let mut out = [0u8; 32];
        for (i, chunk) in c.as_bytes().chunks_exact(2).enumerate() {
            let s = std::str::from_utf8(chunk).unwrap_or("00");
            out[i] = u8::from_str_radix(s, 16).unwrap_or(0);
        }
        return Ok(Leaf::Commitment(out));
    }
    Entry::parse(bytes).map(|e| Leaf::Entry(Box::new(e)))
}

/// The public leaf of stored bytes: the commitment of an opening, or the bytes themselves for
/// a legacy entry.
pub fn public_leaf(stored: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, LedgerError> {
    Ok(match Opening::decode(stored)? {
        Some(o) => std::borrow::Cow::Owned(o.leaf()),
        None => std::borrow::Cow::Borrowed(stored),
    })
}

/// The entry stored bytes hold (opened if sealed), with its owner if sealed.
pub fn stored_entry(stored: &[u8]) -> Result<(Entry, Option<String>), LedgerError> {
    match Opening::decode(stored)? {
        Some(o) => Ok((o.parsed()?, Some(o.owner))),
        None => Ok((Entry::parse(stored)?, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Event;

    fn entry() -> Vec<u8> {
        Entry::new(
            1_795_500_000_000,
            "key:VAEXAMPLE",
            Event::BucketDeleted {
                bucket: "acme:patients".into(),
            },
        )
        .encode()
    }

    #[test]
    fn a_leaf_discloses_nothing_and_its_opening_verifies() {
        let o = Opening::seal(entry(), "acme").unwrap();
        let leaf = o.leaf();
        let text = String::from_utf8(leaf.clone()).unwrap();
        assert!(text.starts_with("{\"v\":2,\"c\":\""), "{text}");
        assert!(!text.contains("patients") && !text.contains("acme"));
        assert_eq!(parse_leaf(&leaf).unwrap(), Leaf::Commitment(o.commitment()));
        // The stored form round-trips and reproduces the leaf.
        let stored = o.encode();
        assert_eq!(Opening::decode(&stored).unwrap().unwrap(), o);
        assert_eq!(public_leaf(&stored).unwrap().as_ref(), leaf.as_slice());
        // The same entry sealed twice gives unrelated leaves (the salt).
        assert_ne!(Opening::seal(entry(), "acme").unwrap().leaf(), leaf);
        // Any change to the opening changes the commitment.
        let mut other = o.clone();
        other.owner = "globex".into();
        assert_ne!(other.leaf(), leaf);
        let mut other = o.clone();
        other.entry[10] ^= 1;
        assert_ne!(other.leaf(), leaf);
        // Legacy entries are their own leaves.
        let legacy = entry();
        assert_eq!(public_leaf(&legacy).unwrap().as_ref(), legacy.as_slice());
        assert!(matches!(parse_leaf(&legacy).unwrap(), Leaf::Entry(_)));
        // Non-canonical v2 leaves are refused.
        assert!(parse_leaf(b"{\"v\":2,\"c\":\"AB\"}").is_err());
        assert!(parse_leaf(b"{\"v\":2, \"c\":\"00\"}").is_err());
    }

    #[test]
    fn the_commitment_is_stable() {
        // Golden: the commitment of a fixed opening never changes (format v2).
        let o = Opening {
            salt: [7; SALT_BYTES],
            owner: "acme".into(),
            entry: b"{\"v\":1}".to_vec(),
        };
        let mut h = Sha256::new();
        h.update(b"vallum-log-commitment 2\n");
        h.update([7u8; 32]);
        h.update([4u8]);
        h.update(b"acme");
        h.update(b"{\"v\":1}");
        let want: [u8; 32] = h.finalize().into();
        assert_eq!(o.commitment(), want);
        assert_eq!(o.encode()[..OPENING_MAGIC.len()], *b"vallum-opening 2\n");
    }
}
