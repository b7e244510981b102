//! C2SP *signed-note*: a text signed by one or more keys ("Format", "Signatures"), with
//! Ed25519 note signatures ("Ed25519 signatures", type 0x01), key IDs, and the verifier-key /
//! signer-key string forms used by the Go `note` package and the witness ecosystem
//! (`<name>+<hex key id>+<base64(type || public key)>`).

use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::{LedgerError, b64, malformed, unb64};

/// Signature type of Ed25519 note signatures.
pub const TYPE_ED25519: u8 = 0x01;
/// Signature type of timestamped Ed25519 witness cosignatures (c2sp.org/tlog-cosignature).
pub const TYPE_COSIGNATURE_V1: u8 = 0x04;
/// Most signature lines a note may carry (the spec requires accepting at least 16).
pub const MAX_NOTE_SIGNATURES: usize = 100;
/// Largest note accepted, in bytes.
pub const MAX_NOTE_BYTES: usize = 1 << 20;

/// `key ID = SHA-256(key name || 0x0A || signature type || public key)[:4]`, big-endian.
#[must_use]
pub fn key_id(name: &str, kind: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', kind]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Key names are non-empty and contain no Unicode spaces or `+`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// One signature line: `— <name> base64(key id || signature)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID.
    pub key_id: u32,
    /// Signature bytes (after the key ID).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line, with its final newline.
    #[must_use]
    pub fn line(&self) -> String {
        let mut raw = self.key_id.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.signature);
        format!("\u{2014} {} {}\n", self.name, b64(&raw))
    }
}

/// A signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The text, ending in a newline.
    pub text: String,
    /// Its signatures, in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a note, strictly: valid UTF-8, no control characters but newline, text ending in
    /// a newline, a blank line, then one or more well-formed signature lines.
    pub fn parse(bytes: &[u8]) -> Result<Self, LedgerError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(malformed("note", "larger than the maximum note size"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| malformed("note", "not UTF-8"))?;
        if text.chars().any(|c| c < ' ' && c != '\n') {
            return Err(malformed("note", "contains control characters"));
        }
        // The text is separated from the signatures by the last empty line.
        let split = text
            .rfind("\n\n")
            .ok_or_else(|| malformed("note", "no blank line before the signatures"))?;
        let body = &text[..=split];
        let sigs = &text[split + 2..];
        if !sigs.ends_with('\n') || sigs.is_empty() {
            return Err(malformed("note", "signature lines must end in a newline"));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_NOTE_SIGNATURES {
                return Err(malformed("note", "too many signatures"));
            }
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| malformed("note", "signature line must start with an em dash"))?;
            let (name, sig) = rest
                .split_once(' ')
                .ok_or_else(|| malformed("note", "signature line needs a name and a signature"))?;
            if !valid_name(name) {
                return Err(malformed("note", "invalid key name"));
            }
            let raw = unb64(sig).ok_or_else(|| malformed("note", "signature is not base64"))?;
            if raw.len() < 5 {
                return Err(malformed("note", "signature too short"));
            }
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
                signature: raw[4..].to_vec(),
            });
        }
        Ok(Self {
            text: body.to_owned(),
            signatures,
        })
    }

    /// The note as served: text, blank line, signature lines.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.line());
        }
        out
    }
}

/// An Ed25519 note signer (the log's checkpoint key).
pub struct Signer {
    name: String,
    key: SigningKey,
    id: u32,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} {:08x})", self.name, self.id)
    }
}

impl Signer {
    /// A fresh key for `name`.
    pub fn generate(name: &str) -> Result<Self, LedgerError> {
        if !valid_name(name) {
            return Err(malformed("key name", name));
        }
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *seed)
            .map_err(|e| LedgerError::Io(std::io::Error::other(e.to_string())))?;
        Ok(Self::from_seed(name, &seed))
    }

    fn from_seed(name: &str, seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let id = key_id(name, TYPE_ED25519, key.verifying_key().as_bytes());
        Self {
            name: name.to_owned(),
            key,
            id,
        }
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
    pub fn from_skey(text: &str) -> Result<Self, LedgerError> {
        let bad = |why: &str| malformed("signer key", why.to_owned());
        let rest = text
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("missing PRIVATE+KEY+ prefix"))?;
        // The name and id contain no '+'; the base64 key may.
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected name+id+key"));
        };
        let raw = zeroize::Zeroizing::new(unb64(key).ok_or_else(|| bad("key is not base64"))?);
        if raw.len() != 33 || raw[0] != TYPE_ED25519 {
            return Err(bad("not an Ed25519 key"));
        }
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&raw[1..]);
        let signer = Self::from_seed(name, &seed);
        if format!("{:08x}", signer.id) != id {
            return Err(bad("key id does not match the key"));
        }
        Ok(signer)
    }

    /// The signer-key string (secret: store with 0600 permissions, never log it).
    #[must_use]
    pub fn to_skey(&self) -> zeroize::Zeroizing<String> {
        let mut raw = zeroize::Zeroizing::new(vec![TYPE_ED25519]);
        raw.extend_from_slice(&self.key.to_bytes());
        zeroize::Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            b64(&raw)
        ))
    }

    /// The verifier-key string anyone can use to check this signer's notes.
    #[must_use]
    pub fn vkey(&self) -> String {
        let mut raw = vec![TYPE_ED25519];
        raw.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, b64(&raw))
    }

    /// Key name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Signs a note text.
    #[must_use]
    pub fn sign(&self, text: &str) -> NoteSignature {
        NoteSignature {
            name: self.name.clone(),
            key_id: self.id,
            signature: self.key.sign(text.as_bytes()).to_bytes().to_vec(),
        }
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }
}

/// A trusted public key: an Ed25519 note key or an Ed25519 cosigner key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    /// Key name.
    pub name: String,
    /// Key ID.
    pub id: u32,
    /// Signature type (`TYPE_ED25519` or `TYPE_COSIGNATURE_V1`).
    pub kind: u8,
    key: VerifyingKey,
}

impl Verifier {
    /// Parses a verifier key `<name>+<hex id>+<base64(type || public key)>`.
    pub fn parse(vkey: &str) -> Result<Self, LedgerError> {
        let bad = |why: &str| malformed("verifier key", why.to_owned());
        // The name and id contain no '+'; the base64 key may.
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected name+id+key"));
        };
        if !valid_name(name) {
            return Err(bad("invalid name"));
        }
        let raw = unb64(key).ok_or_else(|| bad("key is not base64"))?;
        let (&kind, public) = raw.split_first().ok_or_else(|| bad("empty key"))?;
        if kind != TYPE_ED25519 && kind != TYPE_COSIGNATURE_V1 {
            return Err(bad("unsupported signature type"));
        }
        let bytes: [u8; 32] = public.try_into().map_err(|_| bad("not a 32-byte key"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not an Ed25519 key"))?;
        let computed = key_id(name, kind, &bytes);
        if format!("{computed:08x}") != id {
            return Err(bad("key id does not match the key"));
        }
        Ok(Self {
            name: name.to_owned(),
            id: computed,
            kind,
            key,
        })
    }

    /// The verifier-key string.
    #[must_use]
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![self.kind];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, b64(&raw))
    }

    pub(crate) fn new(name: &str, kind: u8, key: VerifyingKey) -> Self {
        Self {
            name: name.to_owned(),
            id: key_id(name, kind, key.as_bytes()),
            kind,
            key,
        }
    }

    /// Verifies one signature of `text` made by this key.
    pub fn verify(&self, text: &str, sig: &NoteSignature) -> Result<(), LedgerError> {
        match self.kind {
            TYPE_ED25519 => {
                let s = ed25519_dalek::Signature::from_slice(&sig.signature)
                    .map_err(|_| LedgerError::Signature("malformed Ed25519 signature".into()))?;
                self.key
                    .verify(text.as_bytes(), &s)
                    .map_err(|_| LedgerError::Signature(format!("bad signature by {}", self.name)))
            }
            _ => {
                crate::cosignature::verify(&self.key, &self.name, text, &sig.signature).map(|_| ())
            }
        }
    }
}

/// Opens a note: every signature by a known key (same name and ID) must verify, and at least
/// one must. Returns the names of the keys that signed. Unknown signatures are ignored.
pub fn open<'a>(note: &Note, known: &'a [Verifier]) -> Result<Vec<&'a Verifier>, LedgerError> {
    let mut verified = Vec::new();
    for sig in &note.signatures {
        if let Some(v) = known
            .iter()
            .find(|v| v.name == sig.name && v.id == sig.key_id)
        {
            v.verify(&note.text, sig)?;
            verified.push(v);
        }
    }
    if verified.is_empty() {
        return Err(LedgerError::Signature(
            "no signature by a trusted key".into(),
        ));
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_note_test_vector_verifies() {
        // From golang.org/x/mod/sumdb/note (PeterNeumann): a published verifier key and a
        // note it signed. Interoperability check against the reference implementation.
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n\
                    \n\
                    \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let v = Verifier::parse(vkey).unwrap();
        let note = Note::parse(text.as_bytes()).unwrap();
        assert_eq!(open(&note, std::slice::from_ref(&v)).unwrap().len(), 1);
        assert_eq!(note.to_text(), text);
        // Ed25519 is deterministic: the published signer key reproduces the published note.
        let signer = Signer::from_skey(
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        )
        .unwrap();
        assert_eq!(signer.vkey(), vkey);
        let signed = Note {
            text: note.text.clone(),
            signatures: vec![signer.sign(&note.text)],
        };
        assert_eq!(signed.to_text(), text);
        // A verifier key whose base64 contains '+' (transparency-dev/formats tests).
        Verifier::parse("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6").unwrap();
        let cosigner =
            Verifier::parse("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2")
                .unwrap();
        assert_eq!(cosigner.kind, TYPE_COSIGNATURE_V1);
        let mut tampered = note.clone();
        tampered.text = tampered.text.replace("answer", "Answer");
        assert!(open(&tampered, &[v]).is_err());
    }

    #[test]
    fn sign_round_trip_keys_and_unknown_signatures() {
        let s = Signer::generate("vallum.example/log").unwrap();
        let again = Signer::from_skey(&s.to_skey()).unwrap();
        assert_eq!(again.vkey(), s.vkey());
        let v = Verifier::parse(&s.vkey()).unwrap();
        assert_eq!(v.to_vkey(), s.vkey());
        let text = "vallum.example/log\n3\nAAAA\n".to_owned();
        let other = Signer::generate("someone.else/key").unwrap();
        let note = Note {
            text: text.clone(),
            signatures: vec![other.sign(&text), s.sign(&text)],
        };
        let parsed = Note::parse(note.to_text().as_bytes()).unwrap();
        assert_eq!(parsed, note);
        assert_eq!(
            open(&parsed, std::slice::from_ref(&v)).unwrap()[0].name,
            "vallum.example/log"
        );
        // Only an unknown key signed: rejected.
        let lonely = Note {
            text,
            signatures: vec![other.sign("x")],
        };
        assert!(open(&lonely, &[v]).is_err());
    }

    #[test]
    fn malformed_notes_are_refused() {
        for bad in [
            "no blank line\n\u{2014} a AAAAAAA=\n",
            "text\n\n",
            "text\n\n\u{2014} a AAAAAAA=",
            "text\n\n- a AAAAAAA=\n",
            "text\n\n\u{2014} a+b AAAAAAA=\n",
            "text\n\n\u{2014} a !!!\n",
            "text\n\n\u{2014} a AAAA\n",
            "te\u{7}xt\n\n\u{2014} a AAAAAAA=\n",
        ] {
            assert!(Note::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(Note::parse(&[0xff, b'\n', b'\n']).is_err());
        for bad in [
            "",
            "name+1234+AAAA",
            "name+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ] {
            assert!(Verifier::parse(bad).is_err(), "{bad}");
        }
    }
}
