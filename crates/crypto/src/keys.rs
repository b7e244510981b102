//! Data keys, wrapped keys, and the [`KeyProvider`] trait every key custodian implements.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::CryptoError;

/// Bytes of a data key (AES-256).
pub const DATA_KEY_BYTES: usize = 32;

/// A per-object data key (DEK). Zeroized on drop; never printed.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; DATA_KEY_BYTES]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = Zeroizing::new([0u8; DATA_KEY_BYTES]);
        getrandom::fill(k.as_mut_slice()).map_err(|e| CryptoError::Random(e.to_string()))?;
        Ok(Self(k))
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; DATA_KEY_BYTES] = bytes
            .try_into()
            .map_err(|_| CryptoError::Format("a data key is 32 bytes".into()))?;
        Ok(Self(Zeroizing::new(arr)))
    }

    /// The key bytes (for the cipher; never store or log them).
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// Why a key is used: kept with every wrap/unwrap, passed to the provider (which may refuse)
/// and recorded in the transparency log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Justification {
    /// Who: `key:<access key>`, `system:<job>`, `operator:<id>`.
    pub actor: String,
    /// Why: `customer-request`, `replication`, `lockbox:<grant id>`, …
    pub reason: String,
}

/// A data key wrapped by a key-encryption key; what the metadata store keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// Provider name (`keyring`, `pkcs11`, `xks`, `double`).
    pub provider: String,
    /// The key-encryption key.
    pub key_id: String,
    /// Which version of it.
    pub key_version: u32,
    /// The wrapped bytes, base64 (provider-specific; never the plaintext key).
    pub wrapped: String,
}

/// A key-encryption key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Refuses wrap and unwrap until enabled again.
    Disabled,
    /// Refuses use; destroyed at `delete_at_ms` unless cancelled.
    PendingDeletion {
        /// When the key material is destroyed.
        delete_at_ms: i64,
    },
    /// Material destroyed: everything wrapped under it is unrecoverable.
    Destroyed,
}

/// What a provider tells about a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Key id.
    pub key_id: String,
    /// Current (wrapping) version.
    pub current_version: u32,
    /// State.
    pub state: KeyState,
    /// Creation time, ms.
    pub created_ms: i64,
}

/// A custodian of key-encryption keys. Wrap/unwrap happen where the KEK lives (a file sealed
/// by a root key, an HSM, an external key service); the KEK never leaves it.
#[async_trait::async_trait]
pub trait KeyProvider: Send + Sync {
    /// The provider's name, recorded in wrapped keys.
    fn name(&self) -> &str;
    /// Creates a key-encryption key.
    async fn create_key(&self, key_id: &str, now_ms: i64) -> Result<KeyInfo, CryptoError>;
    /// Describes a key.
    async fn describe(&self, key_id: &str) -> Result<KeyInfo, CryptoError>;
    /// All keys.
    async fn list(&self) -> Result<Vec<KeyInfo>, CryptoError>;
    /// Wraps `dek` under the current version of `key_id`; `context` (the object's identity) is
    /// bound as associated data.
    async fn wrap(
        &self,
        key_id: &str,
        dek: &DataKey,
        context: &[u8],
        why: &Justification,
    ) -> Result<WrappedKey, CryptoError>;
    /// Unwraps a data key wrapped by this provider, with the same `context`.
    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &[u8],
        why: &Justification,
    ) -> Result<DataKey, CryptoError>;
    /// Adds a new version that wraps from now on; older versions still unwrap.
    async fn rotate(&self, key_id: &str, now_ms: i64) -> Result<KeyInfo, CryptoError>;
    /// Disables, enables or schedules deletion of a key.
    async fn set_state(&self, key_id: &str, state: KeyState) -> Result<KeyInfo, CryptoError>;
    /// Destroys the key material of every version (crypto-shredding).
    async fn destroy(&self, key_id: &str) -> Result<KeyInfo, CryptoError>;
}

/// Fails unless the key is enabled.
pub(crate) fn ensure_usable(key_id: &str, state: KeyState) -> Result<(), CryptoError> {
    match state {
        KeyState::Enabled => Ok(()),
        state => Err(CryptoError::KeyUnavailable {
            key_id: key_id.to_owned(),
            state,
        }),
    }
}

/// Associated data of a wrapped data key: what it is (label), which key version wrapped it,
/// and the object it belongs to.
pub(crate) fn wrap_aad(key_id: &str, version: u32, context: &[u8]) -> Vec<u8> {
    let mut a = b"vallum-wrap-v1".to_vec();
    a.extend_from_slice(&(key_id.len() as u32).to_be_bytes());
    a.extend_from_slice(key_id.as_bytes());
    a.extend_from_slice(&version.to_be_bytes());
    a.extend_from_slice(context);
    a
}
