//! Customer-provided keys (S3 SSE-C): the client sends a 256-bit key with every request; it
//! wraps the object's data key and is never stored. What is stored to recognise it is a salted
//! HMAC: `HMAC-SHA256(key = salt, message = customer key)` with a random 16-byte salt per object.
//!
//! Wrapped form (`provider: "sse-c"`, `key_id: "sse-c"`, `key_version: 0`), Base64 of
//! `salt (16) ‖ HMAC (32) ‖ nonce (12) ‖ AES-256-GCM(customer key, data key) (32) ‖ tag (16)`,
//! the GCM associated data being the wrap AAD of key id `sse-c`, version 0 and the object.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::keys::{DATA_KEY_BYTES, DataKey, WrappedKey, wrap_aad};

/// Provider and key id recorded for SSE-C objects.
pub const SSE_C: &str = "sse-c";

const SALT: usize = 16;
const MAC: usize = 32;
const NONCE: usize = 12;
const WRAPPED_LEN: usize = SALT + MAC + NONCE + DATA_KEY_BYTES + 16;

/// A customer-provided key. Zeroized on drop; never printed.
#[derive(Clone)]
pub struct CustomerKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerKey(<redacted>)")
    }
}

fn mac(salt: &[u8], key: &[u8]) -> [u8; MAC] {
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(salt).expect("any key length");
    m.update(key);
    m.finalize().into_bytes().into()
}

fn cipher(key: &[u8; 32]) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::Format("customer key".into()))
}

impl CustomerKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::Format("a customer key is 256 bits".into()))?;
        Ok(Self(Zeroizing::new(arr)))
    }

    /// Wraps `dek` for the object `context`.
    pub fn wrap(&self, dek: &DataKey, context: &[u8]) -> Result<WrappedKey, CryptoError> {
        let mut salt = [0u8; SALT];
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut salt).map_err(|e| CryptoError::Random(e.to_string()))?;
        getrandom::fill(&mut nonce).map_err(|e| CryptoError::Random(e.to_string()))?;
        let mut out = salt.to_vec();
        out.extend_from_slice(&mac(&salt, self.0.as_slice()));
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(dek.expose());
        let tag = cipher(&self.0)?
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(SSE_C, 0, context)),
                &mut out[start..],
            )
            .map_err(|_| CryptoError::Format("wrap failed".into()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(WrappedKey {
            provider: SSE_C.into(),
            key_id: SSE_C.into(),
            key_version: 0,
            wrapped: base64_simd::STANDARD.encode_to_string(&out),
        })
    }

    fn raw(w: &WrappedKey) -> Result<Vec<u8>, CryptoError> {
        let raw = base64_simd::STANDARD
            .decode_to_vec(&w.wrapped)
            .map_err(|_| CryptoError::Integrity("SSE-C wrapped key is not Base64".into()))?;
        if w.provider != SSE_C || raw.len() != WRAPPED_LEN {
            return Err(CryptoError::Integrity("not an SSE-C wrapped key".into()));
        }
        Ok(raw)
    }

    /// Whether this is the key `w` was wrapped with (salted HMAC, compared in constant time).
    pub fn matches(&self, w: &WrappedKey) -> Result<bool, CryptoError> {
        let raw = Self::raw(w)?;
        let expected = mac(&raw[..SALT], self.0.as_slice());
        Ok(expected.ct_eq(&raw[SALT..SALT + MAC]).into())
    }

    /// Unwraps the data key of `context`; a different key is refused before any decryption.
    pub fn unwrap(&self, w: &WrappedKey, context: &[u8]) -> Result<DataKey, CryptoError> {
        if !self.matches(w)? {
            return Err(CryptoError::Refused(
                "the customer-provided key is not the object's key".into(),
            ));
        }
        let raw = Self::raw(w)?;
        let nonce: [u8; NONCE] = raw[SALT + MAC..SALT + MAC + NONCE]
            .try_into()
            .map_err(|_| CryptoError::Integrity("nonce".into()))?;
        let mut buf = Zeroizing::new(raw[SALT + MAC + NONCE..].to_vec());
        let plain = cipher(&self.0)?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(SSE_C, 0, context)),
                &mut buf[..],
            )
            .map_err(|_| {
                CryptoError::Integrity("the SSE-C wrapped key does not open for this object".into())
            })?;
        DataKey::from_bytes(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_key_and_object_open_the_data_key() {
        let k = CustomerKey::from_bytes(&[9u8; 32]).unwrap();
        let dek = DataKey::generate().unwrap();
        let w = k.wrap(&dek, b"b\0o").unwrap();
        let raw = base64_simd::STANDARD.decode_to_vec(&w.wrapped).unwrap();
        assert!(
            !raw.windows(32).any(|win| win == [9u8; 32]),
            "the key is not stored"
        );
        assert!(
            !raw.windows(32).any(|win| win == dek.expose()),
            "nor the data key"
        );
        assert_eq!(k.unwrap(&w, b"b\0o").unwrap().expose(), dek.expose());
        assert!(matches!(
            k.unwrap(&w, b"b\0other"),
            Err(CryptoError::Integrity(_))
        ));
        let other = CustomerKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(!other.matches(&w).unwrap());
        assert!(matches!(
            other.unwrap(&w, b"b\0o"),
            Err(CryptoError::Refused(_))
        ));
        assert!(CustomerKey::from_bytes(&[1u8; 31]).is_err());
        assert!(format!("{k:?}").contains("redacted"));
        // Two wraps of one key under one customer key differ (fresh salt and nonce).
        assert_ne!(k.wrap(&dek, b"b\0o").unwrap().wrapped, w.wrapped);
    }
}
