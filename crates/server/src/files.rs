//! Start-up checks of the data directory: key files are generated only for a new, empty store
//! (a missing one in a store that holds data is refused, naming the file, instead of being
//! silently replaced), and key, credential and data files must not be open to other users.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::server::ServerError;

/// Mode of every directory Vallum creates for its data.
pub const DIR_MODE: u32 = 0o700;

/// The key and credential files of a deployment, relative to the data directory, and what
/// each holds (for the error naming it).
fn key_files(config: &Config) -> Vec<(PathBuf, &'static str)> {
    let dir = &config.data_dir;
    let mut files = vec![
        (
            dir.join(crate::credentials::CREDENTIALS_FILE),
            "the root credentials",
        ),
        (
            dir.join(crate::credentials::SECRET_BOX_FILE),
            "the key sealing every access key's secret",
        ),
        (
            dir.join("ledger").join(crate::ledger::SIGNER_FILE),
            "the transparency log's signing key",
        ),
        (
            dir.join("ledger").join(crate::ledger::KEY_HASH_FILE),
            "the secret of the log's keyed hashes",
        ),
    ];
    if let Some(keyring) = config.keys.provider.keyring() {
        files.push((
            dir.join("keys").join("keyring"),
            "the keyring holding every bucket's key-encryption keys",
        ));
        if keyring.passphrase_env.is_none() {
            let root = keyring
                .root_key_file
                .clone()
                .unwrap_or_else(|| dir.join("keys").join("root.key"));
            files.push((root, "the keyring's root key"));
        }
    }
    files
}

/// Whether the data directory belongs to a store that has been used: its transparency log has
/// entries (the first start records the root credentials' creation) or its metadata store
/// holds buckets.
pub fn established(data_dir: &Path, has_buckets: bool) -> bool {
    if has_buckets {
        return true;
    }
    let ledger = data_dir.join("ledger");
    vallum_ledger::store::TileStore::committed_size(&ledger).is_ok_and(|n| n > 0)
        || std::fs::metadata(ledger.join("wal")).is_ok_and(|m| m.len() > 0)
}

/// Refuses to start an established store with a key file missing: generating a new one would
/// make every existing object, credential or log checkpoint unusable.
pub fn require_key_files(config: &Config, established: bool) -> Result<(), ServerError> {
    if !established {
        return Ok(());
    }
    for (path, what) in key_files(config) {
        match std::fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ServerError::MissingKeyFile { path, what });
            }
            Err(source) => return Err(ServerError::DataDir { path, source }),
        }
    }
    Ok(())
}

/// A file or directory open to other users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposed {
    /// The path.
    pub path: PathBuf,
    /// Its mode bits.
    pub mode: u32,
    /// What is wrong.
    pub why: &'static str,
}

/// Files and directories whose permissions let other users read secrets or change data: key
/// and credential files readable by group or others, and a data directory (or its key, log or
/// metadata files) writable by them.
#[must_use]
pub fn exposed(config: &Config) -> Vec<Exposed> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mut check = |path: &Path, mask: u32, why: &'static str| {
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & mask != 0 {
                found.push(Exposed {
                    path: path.to_owned(),
                    mode,
                    why,
                });
            }
        }
    };
    let dir = &config.data_dir;
    check(dir, 0o022, "the data directory is writable by other users");
    for sub in ["keys", "ledger"] {
        check(
            &dir.join(sub),
            0o022,
            "a key directory is writable by other users",
        );
    }
    for (path, _) in key_files(config) {
        check(&path, 0o077, "a key file is open to other users");
    }
    for name in ["meta.db", "meta.db-wal", "meta.db-shm"] {
        check(
            &dir.join(name),
            0o077,
            "a metadata file is open to other users",
        );
    }
    found
}

/// Applies `[files] permissions`: refuses to start (`refuse`) or logs each at ERROR (`warn`).
pub fn check_permissions(config: &Config) -> Result<(), ServerError> {
    let found = exposed(config);
    if found.is_empty() {
        return Ok(());
    }
    if config.files.permissions == "warn" {
        for e in &found {
            tracing::error!(path = %e.path.display(), mode = format!("{:o}", e.mode), "{}; fix with chmod (files 600, directories 700)", e.why);
        }
        return Ok(());
    }
    let list = found
        .iter()
        .map(|e| format!("{} (mode {:o}: {})", e.path.display(), e.mode, e.why))
        .collect::<Vec<_>>()
        .join("; ");
    Err(ServerError::Permissions(list))
}

/// Creates `dir` (and its parents) with mode 0700 where it does not exist.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn config(dir: &Path) -> Config {
        Config {
            data_dir: dir.to_owned(),
            ..Config::default()
        }
    }

    #[test]
    fn open_files_and_writable_directories_are_found() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        create_private_dir(&dir.join("ledger")).unwrap();
        let cfg = config(&dir);
        let creds = dir.join("credentials.toml");
        std::fs::write(&creds, "x").unwrap();
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(exposed(&cfg), vec![]);

        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let found = exposed(&cfg);
        let paths: Vec<_> = found.iter().map(|e| e.path.clone()).collect();
        assert_eq!(paths, vec![dir.clone(), creds.clone()]);
        assert!(matches!(
            check_permissions(&cfg),
            Err(ServerError::Permissions(msg)) if msg.contains("credentials.toml") && msg.contains("640")
        ));
        let warn = Config {
            files: crate::config::FilesConfig {
                permissions: "warn".into(),
            },
            ..cfg
        };
        assert!(check_permissions(&warn).is_ok());
    }

    #[test]
    fn a_missing_key_file_is_refused_only_once_the_store_is_established() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        assert!(require_key_files(&cfg, false).is_ok());
        let err = require_key_files(&cfg, true).unwrap_err();
        assert!(
            matches!(&err, ServerError::MissingKeyFile { path, .. } if path.ends_with("credentials.toml")),
            "{err}"
        );
        assert!(
            err.to_string().contains("Restore it from a backup"),
            "{err}"
        );
    }
}
