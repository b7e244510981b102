//! C2SP *tlog-cosignature*, the Ed25519 type (0x04): a witness's timestamped statement that a
//! checkpoint is the largest consistent tree head it has observed ("Ed25519 signed message").

use ed25519_dalek::{Signer as _, Verifier as _, VerifyingKey};

use crate::LedgerError;
use crate::note::{NoteSignature, Signer, TYPE_COSIGNATURE_V1, Verifier, key_id};

/// The message a v1 cosignature signs.
#[must_use]
pub fn message(timestamp: u64, checkpoint_text: &str) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}")
}

/// A witness's cosigning key: an Ed25519 key used with signature type 0x04.
pub struct Cosigner {
    signer: Signer,
    id: u32,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cosigner({} {:08x})", self.signer.name(), self.id)
    }
}

impl Cosigner {
    /// Wraps an Ed25519 key (generated or loaded like a note signer) as a cosigner.
    #[must_use]
    pub fn new(signer: Signer) -> Self {
        let id = key_id(
            signer.name(),
            TYPE_COSIGNATURE_V1,
            signer.signing_key().verifying_key().as_bytes(),
        );
        Self { signer, id }
    }

    /// The cosigner's verifier key (type 0x04).
    #[must_use]
    pub fn verifier(&self) -> Verifier {
        Verifier::new(
            self.signer.name(),
            TYPE_COSIGNATURE_V1,
            self.signer.signing_key().verifying_key(),
        )
    }

    /// The underlying key (to store it).
    #[must_use]
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Cosigns a checkpoint's note text at `timestamp` (POSIX seconds).
    #[must_use]
    pub fn cosign(&self, checkpoint_text: &str, timestamp: u64) -> NoteSignature {
        let sig = self
            .signer
            .signing_key()
            .sign(message(timestamp, checkpoint_text).as_bytes());
        let mut bytes = timestamp.to_be_bytes().to_vec();
        bytes.extend_from_slice(&sig.to_bytes());
        debug_assert_ne!(self.id, self.signer.id());
        NoteSignature {
            name: self.signer.name().to_owned(),
            key_id: self.id,
            signature: bytes,
        }
    }
}

/// Verifies a `timestamped_signature` over `checkpoint_text`; returns the timestamp.
pub fn verify(
    key: &VerifyingKey,
    name: &str,
    checkpoint_text: &str,
    signature: &[u8],
) -> Result<u64, LedgerError> {
    if signature.len() != 8 + 64 {
        return Err(LedgerError::Signature(format!(
            "cosignature by {name} is not 72 bytes"
        )));
    }
    let timestamp = u64::from_be_bytes(signature[..8].try_into().unwrap_or([0; 8]));
    if timestamp > i64::MAX as u64 {
        return Err(LedgerError::Signature(
            "cosignature timestamp too large".into(),
        ));
    }
    let sig = ed25519_dalek::Signature::from_slice(&signature[8..])
        .map_err(|_| LedgerError::Signature("malformed cosignature".into()))?;
    key.verify(message(timestamp, checkpoint_text).as_bytes(), &sig)
        .map_err(|_| LedgerError::Signature(format!("bad cosignature by {name}")))?;
    Ok(timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{Note, open};

    #[test]
    fn cosignatures_verify_and_bind_the_checkpoint_and_time() {
        let w = Cosigner::new(Signer::generate("witness.test/w1").unwrap());
        let text = "vallum.test/log\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let sig = w.cosign(text, 1_679_315_147);
        let v = Verifier::parse(&w.verifier().to_vkey()).unwrap();
        assert_eq!(v.kind, TYPE_COSIGNATURE_V1);
        let note = Note {
            text: text.into(),
            signatures: vec![sig.clone()],
        };
        open(&note, std::slice::from_ref(&v)).unwrap();
        // The spec's signed message layout.
        assert_eq!(
            message(1_679_315_147, text),
            "cosignature/v1\ntime 1679315147\nvallum.test/log\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
        let mut other_time = sig.clone();
        other_time.signature[7] ^= 1;
        let forged = Note {
            text: text.into(),
            signatures: vec![other_time],
        };
        assert!(open(&forged, std::slice::from_ref(&v)).is_err());
        let other_text = Note {
            text: text.replace("\n3\n", "\n4\n"),
            signatures: vec![sig],
        };
        assert!(open(&other_text, &[v]).is_err());
    }
}
