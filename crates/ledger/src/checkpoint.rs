//! C2SP *tlog-checkpoint* ("Note text"): origin, tree size, base64 root hash, optional
//! extension lines; signed as a note.

use crate::merkle::Hash;
use crate::note::{Note, Signer, Verifier, open};
use crate::{LedgerError, b64, malformed, unb64};

/// A log's tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity (its origin line).
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 6962 root hash.
    pub root: Hash,
    /// Extension lines (opaque; Vallum writes none).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: origin, size, root, extensions, each ending in a newline.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n{}\n{}\n", self.origin, self.size, b64(&self.root));
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        out
    }

    /// Parses a note text, strictly.
    pub fn parse(text: &str) -> Result<Self, LedgerError> {
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| malformed("checkpoint", "must end in a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 {
            return Err(malformed("checkpoint", "needs origin, size and root lines"));
        }
        if lines.iter().any(|l| l.is_empty()) {
            return Err(malformed("checkpoint", "lines must be non-empty"));
        }
        let size_text = lines[1];
        if !size_text.bytes().all(|b| b.is_ascii_digit())
            || (size_text.len() > 1 && size_text.starts_with('0'))
        {
            return Err(malformed(
                "checkpoint",
                "tree size is not a canonical decimal",
            ));
        }
        let size = size_text
            .parse()
            .map_err(|_| malformed("checkpoint", "tree size out of range"))?;
        let root: Hash = unb64(lines[2])
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| malformed("checkpoint", "root hash is not 32 bytes of base64"))?;
        let cp = Self {
            origin: lines[0].to_owned(),
            size,
            root,
            extensions: lines[3..].iter().map(|s| (*s).to_owned()).collect(),
        };
        if cp.to_text() != text {
            return Err(malformed("checkpoint", "not in canonical form"));
        }
        Ok(cp)
    }

    /// Signs the checkpoint as a note.
    #[must_use]
    pub fn sign(&self, signer: &Signer) -> Note {
        let text = self.to_text();
        let sig = signer.sign(&text);
        Note {
            text,
            signatures: vec![sig],
        }
    }

    /// Opens a signed checkpoint with the log's key (other signatures, e.g. cosignatures, are
    /// checked if their keys are given and ignored otherwise). The log's key name must be the
    /// origin.
    pub fn open(
        note_text: &[u8],
        log_key: &Verifier,
        others: &[Verifier],
    ) -> Result<(Self, Note), LedgerError> {
        let note = Note::parse(note_text)?;
        let cp = Self::parse(&note.text)?;
        if log_key.name != cp.origin {
            return Err(LedgerError::Signature(format!(
                "checkpoint origin {:?} is not the log key's name {:?}",
                cp.origin, log_key.name
            )));
        }
        let mut keys = vec![log_key.clone()];
        keys.extend_from_slice(others);
        let signed_by = open(&note, &keys)?;
        if !signed_by
            .iter()
            .any(|v| v.id == log_key.id && v.name == log_key.name)
        {
            return Err(LedgerError::Signature("not signed by the log".into()));
        }
        Ok((cp, note))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_parses_and_round_trips() {
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let cp = Checkpoint::parse(text).unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20_852_163);
        assert_eq!(cp.to_text(), text);
        for bad in [
            "o\n1\n",
            "o\n01\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "o\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "o\n1\nAAAA\n",
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n",
            "\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signed_checkpoints_open_only_with_the_log_key() {
        let log = Signer::generate("vallum.test/log").unwrap();
        let cp = Checkpoint {
            origin: "vallum.test/log".into(),
            size: 7,
            root: [9; 32],
            extensions: vec![],
        };
        let note = cp.sign(&log).to_text();
        let key = Verifier::parse(&log.vkey()).unwrap();
        let (opened, _) = Checkpoint::open(note.as_bytes(), &key, &[]).unwrap();
        assert_eq!(opened, cp);
        let other = Signer::generate("vallum.test/log").unwrap();
        let wrong = Verifier::parse(&other.vkey()).unwrap();
        assert!(Checkpoint::open(note.as_bytes(), &wrong, &[]).is_err());
        let forged = note.replace("\n7\n", "\n8\n");
        assert!(Checkpoint::open(forged.as_bytes(), &key, &[]).is_err());
    }
}
