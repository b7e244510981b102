//! Opening the key providers a deployment (or `vallum keyd`) is configured with: the local
//! keyring, a PKCS#11 token, an XKS proxy, or two of them as double-key.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vallum_core::crypt::KeyService;
use vallum_crypto::CryptoError;
use vallum_crypto::keyring::{LocalKeyring, RootKey};
use vallum_crypto::keys::KeyProvider;

use crate::config::{KeyProviderConfig, KeysConfig};
use crate::server::{ServerError, data_dir_error};

fn env_secret(field: &str, var: &str) -> Result<zeroize::Zeroizing<String>, ServerError> {
    std::env::var(var)
        .map(zeroize::Zeroizing::new)
        .map_err(|_| ServerError::Keys(format!("keys.{field} names {var:?}, which is not set")))
}

/// Opens `provider` (double-key: both of its providers); a keyring lives in `keys_dir`. XKS
/// calls name `default_key_id` as the key the client expects.
pub fn open_provider(
    provider: &KeyProviderConfig,
    keys_dir: &Path,
    default_key_id: &str,
) -> Result<Arc<dyn KeyProvider>, ServerError> {
    let keys = |e: CryptoError| ServerError::Keys(e.to_string());
    match provider {
        KeyProviderConfig::Keyring(k) => {
            let root = match &k.passphrase_env {
                Some(var) => RootKey::Passphrase(env_secret("passphrase_env", var)?),
                None => RootKey::File(
                    k.root_key_file
                        .clone()
                        .unwrap_or_else(|| keys_dir.join("root.key")),
                ),
            };
            Ok(Arc::new(
                LocalKeyring::open(&keys_dir.join("keyring"), &root).map_err(keys)?,
            ))
        }
        KeyProviderConfig::Pkcs11(p) => {
            let pin = env_secret("pkcs11_pin_env", &p.pin_env)?;
            Ok(Arc::new(
                vallum_crypto::pkcs11::Pkcs11Provider::open(Path::new(&p.module), &p.token, &pin)
                    .map_err(keys)?,
            ))
        }
        KeyProviderConfig::Xks(x) => Ok(Arc::new(
            vallum_xks::client::XksProvider::new(vallum_xks::client::XksConfig {
                endpoint: x.endpoint.clone(),
                access_key: x.access_key.clone(),
                secret: env_secret("xks_secret_env", &x.secret_env)?,
                region: x.region.clone(),
                ca_file: x.ca_file.clone(),
                timeout: Duration::from_millis(x.timeout_ms),
                retries: x.retries,
                keys: vec![default_key_id.to_owned()],
            })
            .map_err(keys)?,
        )),
        // Both holders must agree to open any object.
        KeyProviderConfig::Double(pair) => {
            let [a, b] = pair.as_ref();
            Ok(Arc::new(vallum_crypto::double::DoubleKeyProvider::new(
                open_provider(a, keys_dir, default_key_id)?,
                open_provider(b, keys_dir, default_key_id)?,
            )))
        }
    }
}

/// Opens the configured provider and makes sure the default key exists: created in the
/// keyring or token if absent (under a file lock, so gateways sharing the data directory
/// agree); in an external key store it must already exist, since keys are created there.
pub async fn open_keys(
    data_dir: &Path,
    config: &KeysConfig,
) -> Result<Arc<KeyService>, ServerError> {
    let dir = data_dir.join("keys");
    std::fs::create_dir_all(&dir).map_err(data_dir_error(&dir))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .map_err(data_dir_error(&dir))?;
    lock.lock().map_err(data_dir_error(&dir))?;
    let provider = open_provider(&config.provider, &dir, &config.default_key_id)?;
    let external = config.provider.external();
    match provider.describe(&config.default_key_id).await {
        Ok(_) => {}
        Err(CryptoError::NoSuchKey(_)) if !external => {
            provider
                .create_key(&config.default_key_id, now_ms())
                .await
                .map_err(|e| ServerError::Keys(e.to_string()))?;
            tracing::info!(key_id = %config.default_key_id, provider = provider.name(), "default encryption key created");
        }
        Err(CryptoError::NoSuchKey(_)) => {
            return Err(ServerError::Keys(format!(
                "the default key {:?} does not exist in the external key store; create it there \
                 (for vallum keyd: `vallum keyd key create {}`)",
                config.default_key_id, config.default_key_id
            )));
        }
        Err(e) => {
            return Err(ServerError::Keys(format!(
                "the default key {:?} cannot be used: {e}",
                config.default_key_id
            )));
        }
    }
    drop(lock);
    Ok(Arc::new(
        KeyService::new(
            provider,
            config.default_key_id.clone(),
            config.segment_bytes,
        )
        .with_dek_cache(
            config.dek_cache_entries,
            Duration::from_millis(config.dek_cache_ttl_ms),
        ),
    ))
}

/// The key providers a deployment has run with (record `deployment/key-providers`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct KeyProviders {
    /// Provider names, in the order first used.
    used: Vec<String>,
}

/// Remembers the key provider the deployment starts with, and says at start when it ran with
/// another before: objects written then have data keys that provider holds, and their reads
/// fail (`XVallumKeyProviderMismatch`) until it is configured again. Returns the providers used
/// before that are not `configured`.
pub async fn note_key_provider(
    meta: &Arc<dyn vallum_core::meta::MetaStore>,
    configured: &str,
) -> Result<Vec<String>, ServerError> {
    use vallum_core::records::{TypedRecords, kind};
    const ID: &str = "key-providers";
    let mut providers = meta
        .load_as::<KeyProviders>(kind::DEPLOYMENT, ID)
        .await?
        .map(|v| v.value)
        .unwrap_or_default();
    let earlier: Vec<String> = providers
        .used
        .iter()
        .filter(|p| *p != configured)
        .cloned()
        .collect();
    if !earlier.is_empty() {
        tracing::warn!(
            configured,
            ?earlier,
            "this deployment ran with key provider(s) {earlier:?} before [keys] provider {configured:?}: objects written then cannot be read (XVallumKeyProviderMismatch) until the provider holding their keys is configured again"
        );
    }
    if !providers.used.iter().any(|p| p == configured) {
        providers.used.push(configured.to_owned());
        meta.save_as(kind::DEPLOYMENT, ID, &providers).await?;
    }
    Ok(earlier)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_of_key_provider_is_remembered_and_reported_at_each_start() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn vallum_core::meta::MetaStore> = Arc::new(
            vallum_meta::SqliteMetaStore::open(&dir.path().join("meta.db"))
                .await
                .unwrap(),
        );
        assert!(
            note_key_provider(&store, "keyring")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            note_key_provider(&store, "keyring")
                .await
                .unwrap()
                .is_empty()
        );
        // The quick start's keyring, then an XKS configuration on the same data directory.
        assert_eq!(
            note_key_provider(&store, "xks").await.unwrap(),
            vec!["keyring".to_owned()]
        );
        // Reported again at the next start, and back on the keyring, the other way round.
        assert_eq!(
            note_key_provider(&store, "xks").await.unwrap(),
            vec!["keyring".to_owned()]
        );
        assert_eq!(
            note_key_provider(&store, "keyring").await.unwrap(),
            vec!["xks".to_owned()]
        );
    }
}
