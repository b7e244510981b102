//! Double-key: two independent providers (say, the customer's HSM and the operator's keyring)
//! must both agree to recover a data key. The data key is split into two random shares
//! (`share_a` random, `share_b = dek XOR share_a`); each provider wraps one share under its own
//! key. Either share alone is uniformly random, so losing (or refusing) either key makes the
//! data unreadable.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::keys::{
    DATA_KEY_BYTES, DataKey, Justification, KeyInfo, KeyProvider, KeyState, WrappedKey,
};

/// Two providers that must both agree.
pub struct DoubleKeyProvider {
    a: Arc<dyn KeyProvider>,
    b: Arc<dyn KeyProvider>,
}

impl std::fmt::Debug for DoubleKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoubleKeyProvider")
            .field("a", &self.a.name())
            .field("b", &self.b.name())
            .finish()
    }
}

/// The two wrapped shares, as the `wrapped` field of a double-key [`WrappedKey`] (JSON).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Shares {
    a: WrappedKey,
    b: WrappedKey,
}

impl DoubleKeyProvider {
    /// Both `a` and `b` hold a key of the same id; both must unwrap.
    #[must_use]
    pub fn new(a: Arc<dyn KeyProvider>, b: Arc<dyn KeyProvider>) -> Self {
        Self { a, b }
    }
}

/// The combined view of a key held by both providers: usable only if both are.
fn combine(a: KeyInfo, b: &KeyInfo) -> KeyInfo {
    let state = match (a.state, b.state) {
        (KeyState::Destroyed, _) | (_, KeyState::Destroyed) => KeyState::Destroyed,
        (KeyState::Enabled, other) | (other, KeyState::Enabled) => other,
        (x, _) => x,
    };
    KeyInfo {
        state,
        current_version: a.current_version.max(b.current_version),
        ..a
    }
}

#[async_trait::async_trait]
impl KeyProvider for DoubleKeyProvider {
    fn name(&self) -> &str {
        "double"
    }

    async fn create_key(&self, key_id: &str, now_ms: i64) -> Result<KeyInfo, CryptoError> {
        let a = self.a.create_key(key_id, now_ms).await?;
        let b = self.b.create_key(key_id, now_ms).await?;
        Ok(combine(a, &b))
    }

    async fn describe(&self, key_id: &str) -> Result<KeyInfo, CryptoError> {
        let a = self.a.describe(key_id).await?;
        let b = self.b.describe(key_id).await?;
        Ok(combine(a, &b))
    }

    async fn list(&self) -> Result<Vec<KeyInfo>, CryptoError> {
        let b = self.b.list().await?;
        Ok(self
            .a
            .list()
            .await?
            .into_iter()
            .filter_map(|a| {
                b.iter()
                    .find(|x| x.key_id == a.key_id)
                    .map(|x| combine(a.clone(), x))
            })
            .collect())
    }

    async fn wrap(
        &self,
        key_id: &str,
        dek: &DataKey,
        context: &[u8],
        why: &Justification,
    ) -> Result<WrappedKey, CryptoError> {
        let share_a = DataKey::generate()?;
        let mut b_bytes = Zeroizing::new([0u8; DATA_KEY_BYTES]);
        for (i, x) in b_bytes.iter_mut().enumerate() {
            *x = dek.expose()[i] ^ share_a.expose()[i];
        }
        let share_b = DataKey::from_bytes(b_bytes.as_slice())?;
        let a = self.a.wrap(key_id, &share_a, context, why).await?;
        let b = self.b.wrap(key_id, &share_b, context, why).await?;
        let version = a.key_version.max(b.key_version);
        Ok(WrappedKey {
            provider: "double".into(),
            key_id: key_id.to_owned(),
            key_version: version,
            wrapped: serde_json::to_string(&Shares { a, b })
                .map_err(|e| CryptoError::Format(e.to_string()))?,
        })
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &[u8],
        why: &Justification,
    ) -> Result<DataKey, CryptoError> {
        let shares: Shares = serde_json::from_str(&wrapped.wrapped)
            .map_err(|_| CryptoError::Integrity("not a double-key wrapped key".into()))?;
        if shares.a.key_id != wrapped.key_id || shares.b.key_id != wrapped.key_id {
            return Err(CryptoError::Integrity("the shares name another key".into()));
        }
        let a = self.a.unwrap(&shares.a, context, why).await?;
        let b = self.b.unwrap(&shares.b, context, why).await?;
        let mut out = Zeroizing::new([0u8; DATA_KEY_BYTES]);
        for (i, x) in out.iter_mut().enumerate() {
            *x = a.expose()[i] ^ b.expose()[i];
        }
        DataKey::from_bytes(out.as_slice())
    }

    async fn rotate(&self, key_id: &str, now_ms: i64) -> Result<KeyInfo, CryptoError> {
        let a = self.a.rotate(key_id, now_ms).await?;
        let b = self.b.rotate(key_id, now_ms).await?;
        Ok(combine(a, &b))
    }

    async fn set_state(&self, key_id: &str, state: KeyState) -> Result<KeyInfo, CryptoError> {
        let a = self.a.set_state(key_id, state).await?;
        let b = self.b.set_state(key_id, state).await?;
        Ok(combine(a, &b))
    }

    async fn destroy(&self, key_id: &str) -> Result<KeyInfo, CryptoError> {
        // Destroying either half is enough to shred; destroy both.
        let a = self.a.destroy(key_id).await?;
        let b = self.b.destroy(key_id).await?;
        Ok(combine(a, &b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{LocalKeyring, RootKey};

    fn why() -> Justification {
        Justification {
            actor: "key:T".into(),
            reason: "customer-request".into(),
            approvals: None,
        }
    }

    #[tokio::test]
    async fn both_custodians_are_needed_and_either_can_shred() {
        let dir = tempfile::tempdir().unwrap();
        let ring = |n: &str| -> Arc<dyn KeyProvider> {
            Arc::new(
                LocalKeyring::open(
                    &dir.path().join(format!("{n}.ring")),
                    &RootKey::File(dir.path().join(format!("{n}.key"))),
                )
                .unwrap(),
            )
        };
        let (customer, operator) = (ring("customer"), ring("operator"));
        let double = DoubleKeyProvider::new(Arc::clone(&customer), Arc::clone(&operator));
        crate::conformance::run(&double).await;

        double.create_key("k", 1).await.unwrap();
        let dek = DataKey::generate().unwrap();
        let w = double.wrap("k", &dek, b"ctx", &why()).await.unwrap();
        assert_eq!(
            double.unwrap(&w, b"ctx", &why()).await.unwrap().expose(),
            dek.expose()
        );
        // Neither share is the key.
        let shares: Shares = serde_json::from_str(&w.wrapped).unwrap();
        let a = customer.unwrap(&shares.a, b"ctx", &why()).await.unwrap();
        assert_ne!(a.expose(), dek.expose());
        // The customer withdraws consent (disables its half): unreadable; re-enabled: readable.
        customer.set_state("k", KeyState::Disabled).await.unwrap();
        assert!(double.unwrap(&w, b"ctx", &why()).await.is_err());
        assert_eq!(
            double.describe("k").await.unwrap().state,
            KeyState::Disabled
        );
        customer.set_state("k", KeyState::Enabled).await.unwrap();
        assert!(double.unwrap(&w, b"ctx", &why()).await.is_ok());
        // The operator's key is lost: the data is gone for good.
        operator.destroy("k").await.unwrap();
        assert!(double.unwrap(&w, b"ctx", &why()).await.is_err());
        assert_eq!(
            double.describe("k").await.unwrap().state,
            KeyState::Destroyed
        );
    }
}
