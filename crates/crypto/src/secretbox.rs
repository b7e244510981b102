//! Sealing small secrets at rest (access-key secrets, grant credentials) under a 256-bit
//! deployment key, so the metadata store holds ciphertext only. SigV4 needs the secret itself
//! to check a signature, so it cannot be hashed: it is encrypted, and opened only to verify.
//!
//! Sealed form (version 1): the text `v1:` followed by Base64 of
//! `nonce (12) ‖ AES-256-GCM(secret) ‖ tag (16)`, the associated data being `vallum-secret-v1`
//! and the record the secret belongs to (so a sealed secret moved to another record fails).

use std::io::Write;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::CryptoError;

/// Prefix of the current sealed format.
const VERSION_PREFIX: &str = "v1:";
const NONCE: usize = 12;
const TAG: usize = 16;
const KEY_BYTES: usize = 32;

/// A key that seals and opens secrets at rest. Zeroized on drop; never printed.
pub struct SecretBox {
    key: Zeroizing<[u8; KEY_BYTES]>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<redacted>)")
    }
}

fn aad(record: &str) -> Vec<u8> {
    let mut a = b"vallum-secret-v1\0".to_vec();
    a.extend_from_slice(record.as_bytes());
    a
}

impl SecretBox {
    /// A box over these key bytes.
    #[must_use]
    pub fn new(key: Zeroizing<[u8; KEY_BYTES]>) -> Self {
        Self { key }
    }

    /// Loads the key file at `path`, creating it (32 random bytes, mode 0600, fsynced) on
    /// first use.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        let storage = |e: std::io::Error| CryptoError::Storage(format!("{}: {e}", path.display()));
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
                    CryptoError::Format(format!("{} must hold 32 bytes", path.display()))
                })?;
                Ok(Self::new(Zeroizing::new(key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; KEY_BYTES]);
                getrandom::fill(key.as_mut_slice())
                    .map_err(|e| CryptoError::Random(e.to_string()))?;
                let tmp = path.with_extension("tmp");
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&tmp).map_err(storage)?;
                file.write_all(key.as_slice()).map_err(storage)?;
                file.sync_all().map_err(storage)?;
                std::fs::rename(&tmp, path).map_err(storage)?;
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir)
                        .and_then(|d| d.sync_all())
                        .map_err(storage)?;
                }
                Ok(Self::new(key))
            }
            Err(e) => Err(storage(e)),
        }
    }

    fn cipher(&self) -> Result<LessSafeKey, CryptoError> {
        UnboundKey::new(&AES_256_GCM, self.key.as_slice())
            .map(LessSafeKey::new)
            .map_err(|_| CryptoError::Format("secret box key".into()))
    }

    /// Seals `secret` for `record` (the id of what holds it).
    pub fn seal(&self, secret: &str, record: &str) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).map_err(|e| CryptoError::Random(e.to_string()))?;
        let mut out = nonce.to_vec();
        let mut body = secret.as_bytes().to_vec();
        let tag = self
            .cipher()?
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(record)),
                &mut body,
            )
            .map_err(|_| CryptoError::Integrity("sealing a secret".into()))?;
        out.extend_from_slice(&body);
        out.extend_from_slice(tag.as_ref());
        Ok(format!(
            "{VERSION_PREFIX}{}",
            base64_simd::STANDARD.encode_to_string(&out)
        ))
    }

    /// Opens a secret sealed for `record`.
    pub fn open(&self, sealed: &str, record: &str) -> Result<Zeroizing<String>, CryptoError> {
        let b64 = sealed
            .strip_prefix(VERSION_PREFIX)
            .ok_or_else(|| CryptoError::Format("sealed secret: unknown format version".into()))?;
        let mut raw = base64_simd::STANDARD
            .decode_to_vec(b64)
            .map_err(|_| CryptoError::Format("sealed secret: bad base64".into()))?;
        if raw.len() < NONCE + TAG {
            return Err(CryptoError::Format("sealed secret: too short".into()));
        }
        let nonce: [u8; NONCE] = raw[..NONCE].try_into().expect("length checked");
        let plain = self
            .cipher()?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(record)),
                &mut raw[NONCE..],
            )
            .map_err(|_| CryptoError::Integrity("sealed secret does not open".into()))?;
        let text = std::str::from_utf8(plain)
            .map_err(|_| CryptoError::Format("sealed secret is not text".into()))?
            .to_owned();
        raw.iter_mut().for_each(|b| *b = 0);
        Ok(Zeroizing::new(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> SecretBox {
        SecretBox::new(Zeroizing::new([7u8; 32]))
    }

    #[test]
    fn seals_and_opens_bound_to_its_record() {
        let b = fixed();
        let sealed = b.seal("s3cr3t-value", "access-key/VAKEY").unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("s3cr3t"));
        assert_eq!(
            b.open(&sealed, "access-key/VAKEY").unwrap().as_str(),
            "s3cr3t-value"
        );
        assert!(matches!(
            b.open(&sealed, "access-key/OTHER"),
            Err(CryptoError::Integrity(_))
        ));
        let other = SecretBox::new(Zeroizing::new([8u8; 32]));
        assert!(other.open(&sealed, "access-key/VAKEY").is_err());
        assert!(matches!(
            b.open("v2:AAAA", "x"),
            Err(CryptoError::Format(_))
        ));
        assert!(matches!(
            b.open("v1:AAAA", "x"),
            Err(CryptoError::Format(_))
        ));
    }

    /// A secret sealed by an earlier build still opens (format v1 golden value).
    #[test]
    fn golden_v1_opens() {
        let golden = include_str!("../tests/golden/secret-v1.txt").trim();
        assert_eq!(
            fixed()
                .open(golden, "access-key/VAGOLDEN")
                .unwrap()
                .as_str(),
            "golden-secret"
        );
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iam.key");
        let a = SecretBox::load_or_create(&path).unwrap();
        let sealed = a.seal("x", "r").unwrap();
        let b = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(b.open(&sealed, "r").unwrap().as_str(), "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(SecretBox::load_or_create(&path).is_err());
    }
}

#[cfg(test)]
mod make_golden {
    /// A fresh value opens under the fixed key; with `VALLUM_REGENERATE_GOLDEN` set it also
    /// rewrites the golden file.
    #[test]
    fn fresh_value_opens_like_the_golden_one() {
        let b = super::SecretBox::new(zeroize::Zeroizing::new([7u8; 32]));
        let s = b.seal("golden-secret", "access-key/VAGOLDEN").unwrap();
        if std::env::var_os("VALLUM_REGENERATE_GOLDEN").is_some() {
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/secret-v1.txt"),
                format!("{s}\n"),
            )
            .unwrap();
        }
        assert_eq!(
            b.open(&s, "access-key/VAGOLDEN").unwrap().as_str(),
            "golden-secret"
        );
    }
}
