//! Root credentials: generated on first start, stored with mode 0600 in the data directory,
//! and never regenerated. The secret never appears in logs or `Debug` output.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the credentials file inside the data directory.
pub const CREDENTIALS_FILE: &str = "credentials.toml";
/// File name of the key that seals access-key secrets in the metadata store (mode 0600).
pub const SECRET_BOX_FILE: &str = "iam.key";
const ACCESS_KEY_LEN: usize = 20;
const SECRET_KEY_LEN: usize = 40;

/// An access key id and its secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The access key id (public).
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

fn random_string(len: usize, alphabet: &[u8]) -> std::io::Result<String> {
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut raw = [0u8; 64];
        getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
        for b in raw {
            if usize::from(b) < limit && out.len() < len {
                out.push(char::from(alphabet[usize::from(b) % alphabet.len()]));
            }
        }
    }
    Ok(out)
}

impl Credentials {
    /// Fresh random credentials.
    pub fn generate() -> std::io::Result<Self> {
        Ok(Self {
            access_key: format!(
                "VA{}",
                random_string(ACCESS_KEY_LEN - 2, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")?
            ),
            secret_key: random_string(
                SECRET_KEY_LEN,
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            )?,
        })
    }

    /// The credentials file path under `data_dir`.
    #[must_use]
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(CREDENTIALS_FILE)
    }

    /// Loads the stored credentials, generating and storing them (mode 0600) on first use.
    /// Returns them and whether they were just created.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<(Self, bool)> {
        let path = Self::path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let creds: Credentials = toml::from_str(&text).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                Ok((creds, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let creds = Self::generate()?;
                let text = toml::to_string(&creds).map_err(std::io::Error::other)?;
                let tmp = path.with_extension("tmp");
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&tmp)?;
                file.write_all(text.as_bytes())?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(data_dir)?.sync_all()?;
                Ok((creds, true))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = Credentials::load_or_create(dir.path()).unwrap();
        assert!(created);
        assert_eq!(first.access_key.len(), ACCESS_KEY_LEN);
        assert_eq!(first.secret_key.len(), SECRET_KEY_LEN);
        let (again, created) = Credentials::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(Credentials::path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{first:?}").contains(&first.secret_key));
        assert_ne!(
            Credentials::generate().unwrap(),
            Credentials::generate().unwrap()
        );
    }
}
