//! Opening the key providers a deployment (or `vallum keyd`) is configured with: the local
//! keyring, a PKCS#11 token, an XKS proxy, or two of them as double-key.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vallum_core::crypt::KeyService;
use vallum_crypto::CryptoError;
use vallum_crypto::keyring::{LocalKeyring, RootKey};
use vallum_crypto::keys::KeyProvider;

use crate::config::KeysConfig;
use crate::server::{ServerError, data_dir_error};

fn env_secret(field: &str, var: &str) -> Result<zeroize::Zeroizing<String>, ServerError> {
    std::env::var(var)
        .map(zeroize::Zeroizing::new)
        .map_err(|_| ServerError::Keys(format!("keys.{field} names {var:?}, which is not set")))
}

/// Opens one provider (`keyring`, `pkcs11` or `xks`); the keyring lives in `keys_dir`.
pub fn open_provider(
    kind: &str,
    keys_dir: &Path,
    config: &KeysConfig,
) -> Result<Arc<dyn KeyProvider>, ServerError> {
    let keys = |e: CryptoError| ServerError::Keys(e.to_string());
    match kind {
        "keyring" => {
            let root = if config.passphrase_env.is_empty() {
                RootKey::File(if config.root_key_file.is_empty() {
                    keys_dir.join("root.key")
                } else {
                    std::path::PathBuf::from(&config.root_key_file)
                })
            } else {
                RootKey::Passphrase(env_secret("passphrase_env", &config.passphrase_env)?)
            };
            Ok(Arc::new(
                LocalKeyring::open(&keys_dir.join("keyring"), &root).map_err(keys)?,
            ))
        }
        "pkcs11" => {
            let pin = env_secret("pkcs11_pin_env", &config.pkcs11_pin_env)?;
            Ok(Arc::new(
                vallum_crypto::pkcs11::Pkcs11Provider::open(
                    Path::new(&config.pkcs11_module),
                    &config.pkcs11_token,
                    &pin,
                )
                .map_err(keys)?,
            ))
        }
        "xks" => Ok(Arc::new(
            vallum_xks::client::XksProvider::new(vallum_xks::client::XksConfig {
                endpoint: config.xks_endpoint.clone(),
                access_key: config.xks_access_key.clone(),
                secret: env_secret("xks_secret_env", &config.xks_secret_env)?,
                region: config.xks_region.clone(),
                ca_file: (!config.xks_ca_file.is_empty())
                    .then(|| std::path::PathBuf::from(&config.xks_ca_file)),
                timeout: Duration::from_millis(config.xks_timeout_ms),
                retries: config.xks_retries,
                keys: vec![config.default_key_id.clone()],
            })
            .map_err(keys)?,
        )),
        other => Err(ServerError::Keys(format!(
            "{other:?} is not a key provider"
        ))),
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
    let provider: Arc<dyn KeyProvider> = if config.provider == "double" {
        // Both holders must agree to open any object.
        Arc::new(vallum_crypto::double::DoubleKeyProvider::new(
            open_provider(&config.double_of[0], &dir, config)?,
            open_provider(&config.double_of[1], &dir, config)?,
        ))
    } else {
        open_provider(&config.provider, &dir, config)?
    };
    let external = config.provider == "xks"
        || (config.provider == "double" && config.double_of.iter().any(|p| p == "xks"));
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

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
