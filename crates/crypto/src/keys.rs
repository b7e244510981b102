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
    /// Under a lockbox grant: the guardians' signed approvals of it (a signed note over the
    /// approval statement, `crate::approval`), which a key service can check itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<String>,
}

/// Refuses key use by platform staff that does not carry a lockbox grant: an operator
/// (`operator:…` actor) may use a customer key only with a `lockbox:<grant id>` reason, which
/// the decision point sets only while the grant is live. Providers do not call it themselves:
/// whoever uses one wraps it once in [`crate::justified::Justified`], which calls it first.
pub fn ensure_justified(why: &Justification) -> Result<(), CryptoError> {
    if why.actor.starts_with("operator:") && !why.reason.starts_with("lockbox:lb-") {
        return Err(CryptoError::Refused(format!(
            "{} has no lockbox grant: operators use customer keys only under an approved grant",
            why.actor
        )));
    }
    Ok(())
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

impl std::fmt::Display for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyState::Enabled => f.write_str("enabled"),
            KeyState::Disabled => f.write_str("disabled"),
            KeyState::PendingDeletion { delete_at_ms } => {
                let when = time::OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(*delete_at_ms) * 1_000_000,
                )
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| format!("{delete_at_ms} ms after the Unix epoch"));
                write!(
                    f,
                    "pending deletion (destroyed at {when} unless the deletion is cancelled)"
                )
            }
            KeyState::Destroyed => f.write_str("destroyed"),
        }
    }
}

#[cfg(test)]
mod state_text {
    use super::KeyState;

    #[test]
    fn states_read_as_words_not_debug_output() {
        assert_eq!(KeyState::Disabled.to_string(), "disabled");
        assert_eq!(
            KeyState::PendingDeletion {
                delete_at_ms: 1_800_000_000_000
            }
            .to_string(),
            "pending deletion (destroyed at 2027-01-15T08:00:00Z unless the deletion is cancelled)"
        );
        let err = crate::CryptoError::KeyUnavailable {
            key_id: "k1".into(),
            state: KeyState::Disabled,
        };
        assert_eq!(err.to_string(), "key k1 is disabled");
    }
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

    /// Raw AES-256-GCM of `plaintext` (at most [`MAX_SEAL_BYTES`]) under the current version of
    /// `key_id` with associated data `aad`: what an XKS proxy (`vallum keyd`) fronting this
    /// provider needs. Providers that cannot (an external key store, double-key) refuse.
    async fn seal(
        &self,
        key_id: &str,
        plaintext: &[u8],
        aad: &[u8],
        why: &Justification,
    ) -> Result<SealedData, CryptoError> {
        let _ = (key_id, plaintext, aad, why);
        Err(CryptoError::Unsupported(format!(
            "provider {} does not seal raw data",
            self.name()
        )))
    }

    /// Opens what [`KeyProvider::seal`] sealed, with the same `aad`.
    async fn open(
        &self,
        key_id: &str,
        sealed: &SealedData,
        aad: &[u8],
        why: &Justification,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let _ = (key_id, sealed, aad, why);
        Err(CryptoError::Unsupported(format!(
            "provider {} does not open raw data",
            self.name()
        )))
    }
}

/// Largest plaintext [`KeyProvider::seal`] takes (the XKS API's minimum is 4300 bytes).
pub const MAX_SEAL_BYTES: usize = 8192;

/// AES-256-GCM output of [`KeyProvider::seal`]: which key version, the 96-bit nonce, and the
/// ciphertext followed by its 16-byte tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedData {
    /// Key version that sealed it.
    pub version: u32,
    /// Nonce (random per seal).
    pub nonce: [u8; 12],
    /// Ciphertext, then the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl SealedData {
    /// Nonce, then ciphertext and tag: the wrapped-key bytes of the keyring and PKCS#11
    /// providers.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.nonce.to_vec();
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// The wrapped data key of the keyring and PKCS#11 providers: this, Base64, under
    /// `provider`'s `key_id` at the version that sealed it.
    #[must_use]
    pub fn to_wrapped(&self, provider: &str, key_id: &str) -> WrappedKey {
        WrappedKey {
            provider: provider.to_owned(),
            key_id: key_id.to_owned(),
            key_version: self.version,
            wrapped: base64_simd::STANDARD.encode_to_string(self.to_bytes()),
        }
    }

    /// The sealed form of a wrapped data key (nonce, 32 key bytes, tag).
    pub fn from_wrapped(w: &WrappedKey) -> Result<Self, CryptoError> {
        let raw = base64_simd::STANDARD
            .decode_to_vec(&w.wrapped)
            .map_err(|_| CryptoError::Integrity("wrapped key is not base64".into()))?;
        if raw.len() != 12 + DATA_KEY_BYTES + 16 {
            return Err(CryptoError::Integrity(
                "wrapped key has the wrong length".into(),
            ));
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&raw[..12]);
        Ok(Self {
            version: w.key_version,
            nonce,
            ciphertext: raw[12..].to_vec(),
        })
    }
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
pub fn wrap_aad(key_id: &str, version: u32, context: &[u8]) -> Vec<u8> {
    let mut a = b"vallum-wrap-v1".to_vec();
    a.extend_from_slice(&(key_id.len() as u32).to_be_bytes());
    a.extend_from_slice(key_id.as_bytes());
    a.extend_from_slice(&version.to_be_bytes());
    a.extend_from_slice(context);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_need_a_lockbox_grant_to_use_keys() {
        let why = |actor: &str, reason: &str| Justification {
            actor: actor.into(),
            reason: reason.into(),
            approvals: None,
        };
        assert!(ensure_justified(&why("key:VAX user:acme/bob", "customer-request")).is_ok());
        assert!(ensure_justified(&why("system:gc", "replication")).is_ok());
        let e = ensure_justified(&why("operator:olga key:VAX", "customer-request")).unwrap_err();
        assert!(
            matches!(e, CryptoError::Refused(ref m) if m.contains("operator:olga")),
            "{e}"
        );
        assert!(ensure_justified(&why("operator:olga key:VAX", "lockbox:")).is_err());
        assert!(ensure_justified(&why("operator:olga grant:lb-1 key:VG", "lockbox:lb-1")).is_ok());
    }
}
