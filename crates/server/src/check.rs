//! `vallum config check`: what a configuration names, asked whether it works, before a
//! gateway starts on it. Nothing is created or changed: a local site or a keyring that does
//! not exist yet is reported as created at the first start (if its parent directory is
//! writable), a remote site is asked for a random blob (which must be absent), a key service
//! for the default key, TLS files are read and parsed, and PostgreSQL is asked `SELECT 1`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, KeyProviderConfig, SiteConfig};
use crate::server::{connect_store, local_site_dir, probe_store};

/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// One thing checked and how it went.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `site fr-par (s3)`.
    pub what: String,
    /// Whether it works.
    pub ok: bool,
    /// What was found: the answer, or the reason it does not work.
    pub detail: String,
}

fn check(what: impl Into<String>, outcome: Result<String, String>) -> Check {
    let (ok, detail) = match outcome {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    Check {
        what: what.into(),
        ok,
        detail,
    }
}

/// Checks what `config` (already parsed and validated) names.
pub async fn check_config(config: &Config) -> Vec<Check> {
    let mut out = vec![check(
        "data directory",
        writable_or_creatable(&config.data_dir),
    )];
    for (i, site) in config.all_sites().iter().enumerate() {
        let what = format!("site {} ({})", site.id, site.backend);
        let outcome = timed(check_site(site, &config.data_dir, i == 0)).await;
        out.push(check(what, outcome));
    }
    out.push(check(
        format!("key service ({})", config.keys.provider.name()),
        timed(check_keys(config)).await,
    ));
    out.push(check("metadata", timed(check_meta(config)).await));
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        out.push(check("TLS certificate", check_tls(cert, key)));
    }
    out
}

async fn timed(f: impl Future<Output = Result<String, String>>) -> Result<String, String> {
    tokio::time::timeout(CHECK_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())))
}

/// `dir` exists and takes files, or the nearest existing ancestor would let it be created.
fn writable_or_creatable(dir: &Path) -> Result<String, String> {
    if dir.is_dir() {
        let probe = dir.join(format!(".vallum-check-{}", std::process::id()));
        return match std::fs::write(&probe, b"") {
            Ok(()) => {
                let _ = std::fs::remove_file(&probe);
                Ok(format!("{} is writable", dir.display()))
            }
            Err(e) => Err(format!("{} is not writable: {e}", dir.display())),
        };
    }
    if dir.exists() {
        return Err(format!("{} exists and is not a directory", dir.display()));
    }
    let mut parent: PathBuf = dir.to_owned();
    while !parent.exists() {
        if !parent.pop() || parent.as_os_str().is_empty() {
            parent = PathBuf::from(".");
            break;
        }
    }
    match writable_or_creatable(&parent) {
        Ok(_) => Ok(format!(
            "{} will be created at the first start",
            dir.display()
        )),
        Err(e) => Err(format!("{} cannot be created: {e}", dir.display())),
    }
}

async fn check_site(site: &SiteConfig, data_dir: &Path, primary: bool) -> Result<String, String> {
    if site.backend != "s3" && site.backend != "azure" {
        return writable_or_creatable(&local_site_dir(site, data_dir, primary));
    }
    let store = connect_store(site, data_dir, primary)
        .await
        .map_err(|e| e.to_string())?;
    probe_store(&*store)
        .await
        .map(|()| "answers as a blob store (a random blob is absent)".to_owned())
        .map_err(|e| e.to_string())
}

async fn check_keys(config: &Config) -> Result<String, String> {
    let keys = &config.keys;
    let dir = config.data_dir.join("keys");
    if let KeyProviderConfig::Keyring(k) = &keys.provider
        && k.passphrase_env.is_none()
        && !dir.join("keyring").exists()
    {
        // Made with the default key at the first start.
        return writable_or_creatable(&dir)
            .map(|_| format!("a new keyring in {} at the first start", dir.display()));
    }
    let provider = crate::keys::open_provider(&keys.provider, &dir, &keys.default_key_id)
        .map_err(|e| e.to_string())?;
    match provider.describe(&keys.default_key_id).await {
        Ok(info) => Ok(format!(
            "default key {} is {}",
            keys.default_key_id, info.state
        )),
        Err(vallum_crypto::CryptoError::NoSuchKey(_)) if !keys.provider.external() => Ok(format!(
            "default key {} will be created at the first start",
            keys.default_key_id
        )),
        Err(e) => Err(format!("default key {}: {e}", keys.default_key_id)),
    }
}

async fn check_meta(config: &Config) -> Result<String, String> {
    match &config.meta.url {
        None => writable_or_creatable(&config.data_dir).map(|_| {
            format!(
                "embedded SQLite in {}",
                config.data_dir.join("meta.db").display()
            )
        }),
        Some(url) => vallum_meta::PgMetaStore::ping(url)
            .await
            .map(|version| format!("PostgreSQL answers ({version})"))
            .map_err(|e| format!("PostgreSQL: {e}")),
    }
}

fn check_tls(cert: &Path, key: &Path) -> Result<String, String> {
    vallum_xks::tls::server_config(cert, key)
        .map(|_| format!("{} and its key load", cert.display()))
        .map_err(|e| e.to_string())
}
