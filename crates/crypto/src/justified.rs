//! The one place key use is justified: [`Justified`] wraps any [`KeyProvider`] and refuses
//! a wrap, unwrap, seal or open that [`ensure_justified`] refuses (platform staff without a
//! lockbox grant) before the provider is asked. The data path's key service and the XKS proxy
//! (`vallum keyd`) each wrap their provider once, so no provider re-implements the check.

use std::ops::Deref;

use zeroize::Zeroizing;

use crate::CryptoError;
use crate::keys::{
    DataKey, Justification, KeyInfo, KeyProvider, KeyState, SealedData, WrappedKey,
    ensure_justified,
};

/// A provider whose every key use is checked against its justification first.
#[derive(Debug, Clone)]
pub struct Justified<P>(P);

impl<P> Justified<P> {
    /// Wraps `provider`.
    #[must_use]
    pub fn new(provider: P) -> Self {
        Self(provider)
    }

    /// The wrapped provider.
    #[must_use]
    pub fn inner(&self) -> &P {
        &self.0
    }
}

#[async_trait::async_trait]
impl<P> KeyProvider for Justified<P>
where
    P: Deref + Send + Sync,
    P::Target: KeyProvider,
{
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn create_key(&self, key_id: &str, now_ms: i64) -> Result<KeyInfo, CryptoError> {
        self.0.create_key(key_id, now_ms).await
    }
    async fn describe(&self, key_id: &str) -> Result<KeyInfo, CryptoError> {
        self.0.describe(key_id).await
    }
    async fn list(&self) -> Result<Vec<KeyInfo>, CryptoError> {
        self.0.list().await
    }
    async fn wrap(
        &self,
        key_id: &str,
        dek: &DataKey,
        context: &[u8],
        why: &Justification,
    ) -> Result<WrappedKey, CryptoError> {
        ensure_justified(why)?;
        self.0.wrap(key_id, dek, context, why).await
    }
    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &[u8],
        why: &Justification,
    ) -> Result<DataKey, CryptoError> {
        ensure_justified(why)?;
        self.0.unwrap(wrapped, context, why).await
    }
    async fn rotate(&self, key_id: &str, now_ms: i64) -> Result<KeyInfo, CryptoError> {
        self.0.rotate(key_id, now_ms).await
    }
    async fn set_state(&self, key_id: &str, state: KeyState) -> Result<KeyInfo, CryptoError> {
        self.0.set_state(key_id, state).await
    }
    async fn destroy(&self, key_id: &str) -> Result<KeyInfo, CryptoError> {
        self.0.destroy(key_id).await
    }
    async fn seal(
        &self,
        key_id: &str,
        plaintext: &[u8],
        aad: &[u8],
        why: &Justification,
    ) -> Result<SealedData, CryptoError> {
        ensure_justified(why)?;
        self.0.seal(key_id, plaintext, aad, why).await
    }
    async fn open(
        &self,
        key_id: &str,
        sealed: &SealedData,
        aad: &[u8],
        why: &Justification,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        ensure_justified(why)?;
        self.0.open(key_id, sealed, aad, why).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{LocalKeyring, RootKey};

    fn why(actor: &str, reason: &str) -> Justification {
        Justification {
            actor: actor.into(),
            reason: reason.into(),
            approvals: None,
        }
    }

    #[tokio::test]
    async fn staff_without_a_grant_are_refused_before_the_provider_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootKey::File(dir.path().join("root.key"));
        let ring =
            std::sync::Arc::new(LocalKeyring::open(&dir.path().join("keyring"), &root).unwrap());
        let p = Justified::new(std::sync::Arc::clone(&ring));
        assert_eq!(p.name(), ring.name());
        p.create_key("k", 1).await.unwrap();
        let dek = DataKey::generate().unwrap();
        let customer = why("key:AKIA1", "customer-request");
        let w = p.wrap("k", &dek, b"ctx", &customer).await.unwrap();
        let staff = why("operator:olga key:AKIAOPS", "customer-request");
        for refused in [
            p.wrap("k", &dek, b"ctx", &staff).await.err(),
            p.unwrap(&w, b"ctx", &staff).await.err(),
            p.seal("k", b"x", b"aad", &staff).await.err(),
        ] {
            assert!(
                matches!(refused, Some(CryptoError::Refused(ref m)) if m.contains("operator:olga")),
                "{refused:?}"
            );
        }
        // Under a live grant the provider is asked, and answers as it would for anyone.
        let granted = why("operator:olga grant:lb-1 key:AKIAG", "lockbox:lb-1");
        assert_eq!(
            p.unwrap(&w, b"ctx", &granted).await.unwrap().expose(),
            dek.expose()
        );
        let sealed = p.seal("k", b"x", b"aad", &granted).await.unwrap();
        assert_eq!(
            p.open("k", &sealed, b"aad", &granted)
                .await
                .unwrap()
                .as_slice(),
            b"x"
        );
        // The provider itself does not check: the decorator is the one place that does.
        assert!(ring.unwrap(&w, b"ctx", &staff).await.is_ok());
    }
}
