//! Vallum's object encryption: the chunked AES-256-GCM format ([`format`]), data keys and the
//! [`keys::KeyProvider`] trait every key custodian implements, with its shared
//! [`conformance`] suite, and the providers: the local keyring ([`keyring`]) PKCS#11 tokens ([`pkcs11`]) and double-key ([`double`]).
//!
//! Primitives come from RustCrypto (`aes-gcm`, `hkdf`, `argon2`); nothing here implements a
//! cipher.

pub mod approval;
pub mod conformance;
pub mod customer;
pub mod double;
pub mod format;
pub mod justified;
pub mod keyring;
pub mod keys;
pub mod pkcs11;
pub mod secretbox;
pub mod sigv2;
pub mod sigv4;

use keys::KeyState;

/// Everything this crate can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Ciphertext or a wrapped key failed authentication, or does not fit its metadata.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// A format is malformed or unsupported.
    #[error("format: {0}")]
    Format(String),
    /// The key does not exist.
    #[error("no such key: {0}")]
    NoSuchKey(String),
    /// A key with this id exists.
    #[error("key {0} already exists")]
    KeyExists(String),
    /// The key is disabled, pending deletion or destroyed.
    #[error("key {key_id} is {state}")]
    KeyUnavailable {
        /// The key.
        key_id: String,
        /// Its state.
        state: KeyState,
    },
    /// The keyring's root key (key file or passphrase) is not the one it was sealed with.
    #[error("the root key does not open the keyring")]
    WrongRootKey,
    /// Key storage failed.
    #[error("key storage: {0}")]
    Storage(String),
    /// The provider does not support this operation.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The provider refused by policy (justification, principal, key usage).
    #[error("refused by the key provider: {0}")]
    Refused(String),
    /// The provider cannot be reached or did not answer in time.
    #[error("key provider unavailable: {0}")]
    Unavailable(String),
    /// The system random generator failed.
    #[error("random generator: {0}")]
    Random(String),
}

/// Largest key id.
pub const MAX_KEY_ID_BYTES: usize = 128;

/// Key ids: 1–128 characters of `A-Za-z0-9-_./:`.
pub fn check_key_id(id: &str) -> Result<(), CryptoError> {
    if id.is_empty()
        || id.len() > MAX_KEY_ID_BYTES
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:".contains(&b))
    {
        return Err(CryptoError::Format(format!("{id:?} is not a valid key id")));
    }
    Ok(())
}
