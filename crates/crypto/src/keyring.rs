//! The local keyring, the embedded default provider: key-encryption keys live in one file
//! sealed by a root key (a 32-byte key file, or a passphrase through Argon2id). The file is
//! written atomically with mode 0600 and is versioned:
//!
//! ```text
//! "VLMKEYRING" || version (1) || kdf (0 key file, 1 argon2id) || m_kib u32 || t u32 || p u32
//!   || salt (16) || nonce (12) || AES-256-GCM(root, nonce, aad = everything before, JSON keys)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::keys::{DataKey, Justification, KeyInfo, KeyProvider, KeyState, SealedData, WrappedKey};

const MAGIC: &[u8; 10] = b"VLMKEYRING";
const VERSION: u8 = 1;
const HEADER_BYTES: usize = 10 + 1 + 1 + 12 + 16 + 12;
/// Argon2id cost for passphrase-sealed keyrings (OWASP's first recommended setting).
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
/// Argon2id passes.
pub const ARGON2_PASSES: u32 = 2;
/// Largest keyring file read.
const MAX_KEYRING_BYTES: u64 = 64 << 20;

/// How the keyring's root key is obtained.
pub enum RootKey {
    /// A 32-byte key file (created, 0600, if absent).
    File(PathBuf),
    /// A passphrase, stretched with Argon2id.
    Passphrase(Zeroizing<String>),
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootKey::File(p) => write!(f, "RootKey::File({})", p.display()),
            RootKey::Passphrase(_) => f.write_str("RootKey::Passphrase(<redacted>)"),
        }
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Sealed {
    keys: BTreeMap<String, StoredKey>,
}

#[derive(Serialize, Deserialize, Clone)]
struct StoredKey {
    created_ms: i64,
    state: KeyState,
    /// Version → base64 key material (empty once destroyed).
    versions: BTreeMap<u32, String>,
    current: u32,
}

impl Drop for StoredKey {
    fn drop(&mut self) {
        for v in self.versions.values_mut() {
            zeroize::Zeroize::zeroize(v);
        }
    }
}

/// The local keyring.
pub struct LocalKeyring {
    path: PathBuf,
    root: Zeroizing<[u8; 32]>,
    kdf_header: [u8; 1 + 12 + 16],
    keys: Mutex<Loaded>,
}

/// The keys as last read, and which version of the file they came from: another process
/// (a second gateway on the same data directory, `vallum keyd key ...` next to a running keyd)
/// may have changed the file since.
struct Loaded {
    keys: Sealed,
    stamp: Option<FileStamp>,
}

/// Identity of one version of the keyring file (every save renames a new file into place).
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp {
        inode,
        len: m.len(),
        modified: m.modified().ok(),
    })
}

impl std::fmt::Debug for LocalKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyring")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn random<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| CryptoError::Random(e.to_string()))?;
    Ok(b)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CryptoError + '_ {
    move |e| CryptoError::Storage(format!("{}: {e}", path.display()))
}

/// Writes a file readable only by its owner, atomically and durably.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), CryptoError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(d) = path.parent() {
        std::fs::File::open(d)
            .and_then(|d| d.sync_all())
            .map_err(io(d))?;
    }
    Ok(())
}

fn derive_root(root: &RootKey, kdf: &[u8; 29]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let mut out = Zeroizing::new([0u8; 32]);
    match root {
        RootKey::File(path) => {
            if !path.exists() {
                let key = Zeroizing::new(random::<32>()?);
                write_secret(path, key.as_slice())?;
            }
            let bytes = Zeroizing::new(std::fs::read(path).map_err(io(path))?);
            if bytes.len() != 32 {
                return Err(CryptoError::Storage(format!(
                    "{} is not a 32-byte root key",
                    path.display()
                )));
            }
            out.copy_from_slice(&bytes);
        }
        RootKey::Passphrase(p) => {
            let m = u32::from_be_bytes([kdf[1], kdf[2], kdf[3], kdf[4]]);
            let t = u32::from_be_bytes([kdf[5], kdf[6], kdf[7], kdf[8]]);
            let par = u32::from_be_bytes([kdf[9], kdf[10], kdf[11], kdf[12]]);
            let params = argon2::Params::new(m, t, par, Some(32))
                .map_err(|e| CryptoError::Format(format!("argon2 parameters: {e}")))?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(p.as_bytes(), &kdf[13..29], out.as_mut_slice())
                .map_err(|e| CryptoError::Format(format!("argon2: {e}")))?;
        }
    }
    Ok(out)
}

impl LocalKeyring {
    /// Opens the keyring at `path` (creating an empty one if absent) with `root`.
    pub fn open(path: &Path, root: &RootKey) -> Result<Self, CryptoError> {
        if path.exists() {
            let meta = std::fs::metadata(path).map_err(io(path))?;
            if meta.len() > MAX_KEYRING_BYTES {
                return Err(CryptoError::Storage("keyring file too large".into()));
            }
            let stamp = stamp(path);
            let bytes = std::fs::read(path).map_err(io(path))?;
            let kdf = kdf_of(&bytes)?;
            match (kdf[0], root) {
                (0, RootKey::File(_)) | (1, RootKey::Passphrase(_)) => {}
                _ => {
                    return Err(CryptoError::Format(
                        "the keyring is sealed by another kind of root key".into(),
                    ));
                }
            }
            let root_key = derive_root(root, &kdf)?;
            let keys = unseal(&bytes, &root_key)?;
            return Ok(Self {
                path: path.to_owned(),
                root: root_key,
                kdf_header: kdf,
                keys: Mutex::new(Loaded { keys, stamp }),
            });
        }
        let mut kdf = [0u8; 29];
        if let RootKey::Passphrase(_) = root {
            kdf[0] = 1;
            kdf[1..5].copy_from_slice(&ARGON2_MEMORY_KIB.to_be_bytes());
            kdf[5..9].copy_from_slice(&ARGON2_PASSES.to_be_bytes());
            kdf[9..13].copy_from_slice(&1u32.to_be_bytes());
            kdf[13..29].copy_from_slice(&random::<16>()?);
        }
        let ring = Self {
            path: path.to_owned(),
            root: derive_root(root, &kdf)?,
            kdf_header: kdf,
            keys: Mutex::new(Loaded {
                keys: Sealed::default(),
                stamp: None,
            }),
        };
        ring.save(&Sealed::default())?;
        if let Ok(mut l) = ring.keys.lock() {
            l.stamp = stamp(path);
        }
        Ok(ring)
    }

    fn save(&self, keys: &Sealed) -> Result<(), CryptoError> {
        let mut out = MAGIC.to_vec();
        out.push(VERSION);
        out.extend_from_slice(&self.kdf_header);
        let nonce_bytes = random::<12>()?;
        out.extend_from_slice(&nonce_bytes);
        let mut body = Zeroizing::new(
            serde_json::to_vec(keys).map_err(|e| CryptoError::Format(e.to_string()))?,
        );
        let cipher = Aes256Gcm::new_from_slice(self.root.as_slice())
            .map_err(|_| CryptoError::Format("root key".into()))?;
        let mut sealed = body.to_vec();
        cipher
            .encrypt_in_place(&Nonce::from(nonce_bytes), &out, &mut sealed)
            .map_err(|_| CryptoError::Format("sealing the keyring failed".into()))?;
        zeroize::Zeroize::zeroize(&mut *body);
        out.extend_from_slice(&sealed);
        write_secret(&self.path, &out)
    }

    /// Re-reads the file when another process replaced it since it was loaded.
    fn refresh(&self, loaded: &mut Loaded) -> Result<(), CryptoError> {
        let now = stamp(&self.path);
        if now.is_some() && now != loaded.stamp {
            let bytes = std::fs::read(&self.path).map_err(io(&self.path))?;
            if kdf_of(&bytes)? != self.kdf_header {
                return Err(CryptoError::Format(
                    "the keyring file was replaced by one sealed differently".into(),
                ));
            }
            loaded.keys = unseal(&bytes, &self.root)?;
            loaded.stamp = now;
        }
        Ok(())
    }

    /// Read-modify-write under an exclusive file lock, so processes sharing the keyring do
    /// not lose each other's changes.
    fn update<R>(
        &self,
        f: impl FnOnce(&mut Sealed) -> Result<R, CryptoError>,
    ) -> Result<R, CryptoError> {
        let mut loaded = self
            .keys
            .lock()
            .map_err(|_| CryptoError::Storage("keyring lock poisoned".into()))?;
        let lock_path = self.path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        self.refresh(&mut loaded)?;
        let r = f(&mut loaded.keys)?;
        self.save(&loaded.keys)?;
        loaded.stamp = stamp(&self.path);
        Ok(r)
    }

    fn read<R>(&self, f: impl FnOnce(&Sealed) -> Result<R, CryptoError>) -> Result<R, CryptoError> {
        let mut loaded = self
            .keys
            .lock()
            .map_err(|_| CryptoError::Storage("keyring lock poisoned".into()))?;
        self.refresh(&mut loaded)?;
        f(&loaded.keys)
    }
}

/// The KDF header of a keyring file (after checking magic and version).
fn kdf_of(bytes: &[u8]) -> Result<[u8; 29], CryptoError> {
    if bytes.len() < HEADER_BYTES + 16 || &bytes[..10] != MAGIC {
        return Err(CryptoError::Format("not a Vallum keyring".into()));
    }
    if bytes[10] != VERSION {
        return Err(CryptoError::Format(format!(
            "keyring version {} not supported",
            bytes[10]
        )));
    }
    let mut kdf = [0u8; 29];
    kdf.copy_from_slice(&bytes[11..40]);
    Ok(kdf)
}

/// Opens a keyring file's sealed body with the root key.
fn unseal(bytes: &[u8], root_key: &[u8; 32]) -> Result<Sealed, CryptoError> {
    let cipher = Aes256Gcm::new_from_slice(root_key.as_slice())
        .map_err(|_| CryptoError::Format("root key".into()))?;
    let nonce = Nonce::from(<[u8; 12]>::try_from(&bytes[40..52]).unwrap_or([0; 12]));
    let mut body = Zeroizing::new(bytes[HEADER_BYTES..].to_vec());
    cipher
        .decrypt_in_place(&nonce, &bytes[..HEADER_BYTES], &mut *body)
        .map_err(|_| CryptoError::WrongRootKey)?;
    serde_json::from_slice(&body).map_err(|e| CryptoError::Format(format!("keyring contents: {e}")))
}

fn info(id: &str, k: &StoredKey) -> KeyInfo {
    KeyInfo {
        key_id: id.to_owned(),
        current_version: k.current,
        state: k.state,
        created_ms: k.created_ms,
    }
}

fn material(k: &StoredKey, version: u32) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let text = k
        .versions
        .get(&version)
        .ok_or_else(|| CryptoError::Integrity(format!("key version {version} does not exist")))?;
    base64_simd::STANDARD
        .decode_to_vec(text)
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Format("damaged key material".into()))
}

impl LocalKeyring {
    /// AES-256-GCM under the current version of `key_id`; `aad` gets that version.
    fn seal_current(
        &self,
        key_id: &str,
        plaintext: &[u8],
        aad: impl FnOnce(u32) -> Vec<u8>,
    ) -> Result<SealedData, CryptoError> {
        let (version, kek) = self.read(|keys| {
            let k = keys
                .keys
                .get(key_id)
                .ok_or_else(|| CryptoError::NoSuchKey(key_id.to_owned()))?;
            crate::keys::ensure_usable(key_id, k.state)?;
            Ok((k.current, material(k, k.current)?))
        })?;
        let cipher =
            Aes256Gcm::new_from_slice(&kek).map_err(|_| CryptoError::Format("kek".into()))?;
        let nonce = random::<12>()?;
        let mut buf = plaintext.to_vec();
        cipher
            .encrypt_in_place(&Nonce::from(nonce), &aad(version), &mut buf)
            .map_err(|_| CryptoError::Format("seal failed".into()))?;
        Ok(SealedData {
            version,
            nonce,
            ciphertext: buf,
        })
    }

    /// Opens what [`Self::seal_current`] sealed under `sealed.version` of `key_id`.
    fn open_version(
        &self,
        key_id: &str,
        sealed: &SealedData,
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let kek = self.read(|keys| {
            let k = keys
                .keys
                .get(key_id)
                .ok_or_else(|| CryptoError::NoSuchKey(key_id.to_owned()))?;
            crate::keys::ensure_usable(key_id, k.state)?;
            material(k, sealed.version)
        })?;
        let cipher =
            Aes256Gcm::new_from_slice(&kek).map_err(|_| CryptoError::Format("kek".into()))?;
        let mut buf = Zeroizing::new(sealed.ciphertext.clone());
        cipher
            .decrypt_in_place(&Nonce::from(sealed.nonce), aad, &mut *buf)
            .map_err(|_| {
                CryptoError::Integrity(
                    "the ciphertext does not open under this key and context".into(),
                )
            })?;
        Ok(buf)
    }
}

#[async_trait::async_trait]
impl KeyProvider for LocalKeyring {
    fn name(&self) -> &str {
        "keyring"
    }

    async fn create_key(&self, key_id: &str, now_ms: i64) -> Result<KeyInfo, CryptoError> {
        crate::check_key_id(key_id)?;
        let fresh = Zeroizing::new(random::<32>()?);
        self.update(|keys| {
            if keys.keys.contains_key(key_id) {
                return Err(CryptoError::KeyExists(key_id.to_owned()));
            }
            let k = StoredKey {
                created_ms: now_ms,
                state: KeyState::Enabled,
                versions: BTreeMap::from([(
                    1,
                    base64_simd::STANDARD.encode_to_string(fresh.as_slice()),
                )]),
                current: 1,
            };
            let i = info(key_id, &k);
            keys.keys.insert(key_id.to_owned(), k);
            Ok(i)
        })
    }

    async fn describe(&self, key_id: &str) -> Result<KeyInfo, CryptoError> {
        self.read(|keys| {
            keys.keys
                .get(key_id)
                .map(|k| info(key_id, k))
                .ok_or_else(|| CryptoError::NoSuchKey(key_id.to_owned()))
        })
    }

    async fn list(&self) -> Result<Vec<KeyInfo>, CryptoError> {
        self.read(|keys| Ok(keys.keys.iter().map(|(id, k)| info(id, k)).collect()))
    }

    async fn wrap(
        &self,
        key_id: &str,
        dek: &DataKey,
        context: &[u8],
        _why: &Justification,
    ) -> Result<WrappedKey, CryptoError> {
        let sealed = self.seal_current(key_id, dek.expose(), |v| {
            crate::keys::wrap_aad(key_id, v, context)
        })?;
        Ok(sealed.to_wrapped(self.name(), key_id))
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &[u8],
        _why: &Justification,
    ) -> Result<DataKey, CryptoError> {
        let sealed = SealedData::from_wrapped(wrapped)?;
        let plain = self.open_version(
            &wrapped.key_id,
            &sealed,
            &crate::keys::wrap_aad(&wrapped.key_id, wrapped.key_version, context),
        )?;
        DataKey::from_bytes(&plain)
    }

    async fn seal(
        &self,
        key_id: &str,
        plaintext: &[u8],
        aad: &[u8],
        _why: &Justification,
    ) -> Result<SealedData, CryptoError> {
        self.seal_current(key_id, plaintext, |_| aad.to_vec())
    }

    async fn open(
        &self,
        key_id: &str,
        sealed: &SealedData,
        aad: &[u8],
        _why: &Justification,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.open_version(key_id, sealed, aad)
    }

    async fn rotate(&self, key_id: &str, _now_ms: i64) -> Result<KeyInfo, CryptoError> {
        let fresh = Zeroizing::new(random::<32>()?);
        self.update(|keys| {
            let k = keys
                .keys
                .get_mut(key_id)
                .ok_or_else(|| CryptoError::NoSuchKey(key_id.to_owned()))?;
            crate::keys::ensure_usable(key_id, k.state)?;
            k.current += 1;
            k.versions.insert(
                k.current,
                base64_simd::STANDARD.encode_to_string(fresh.as_slice()),
            );
            Ok(info(key_id, k))
        })
    }

    async fn set_state(&self, key_id: &str, state: KeyState) -> Result<KeyInfo, CryptoError> {
        self.update(|keys| {
            let k = keys
                .keys
                .get_mut(key_id)
                .ok_or_else(|| CryptoError::NoSuchKey(key_id.to_owned()))?;
            if k.state == KeyState::Destroyed || state == KeyState::Destroyed {
                return Err(CryptoError::KeyUnavailable {
                    key_id: key_id.to_owned(),
                    state: KeyState::Destroyed,
                });
            }
            k.state = state;
            Ok(info(key_id, k))
        })
    }

    async fn destroy(&self, key_id: &str) -> Result<KeyInfo, CryptoError> {
        self.update(|keys| {
            let k = keys
                .keys
                .get_mut(key_id)
                .ok_or_else(|| CryptoError::NoSuchKey(key_id.to_owned()))?;
            for v in k.versions.values_mut() {
                zeroize::Zeroize::zeroize(v);
            }
            k.versions.clear();
            k.state = KeyState::Destroyed;
            Ok(info(key_id, k))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keyring_passes_the_conformance_suite_with_a_key_file_and_a_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootKey::File(dir.path().join("root.key"));
        let ring = LocalKeyring::open(&dir.path().join("keyring"), &root).unwrap();
        crate::conformance::run(&ring).await;
        // Reopened, the keys (and their states) are still there.
        drop(ring);
        let ring = LocalKeyring::open(&dir.path().join("keyring"), &root).unwrap();
        assert!(!ring.list().await.unwrap().is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["root.key", "keyring"] {
                let mode = std::fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
        // The wrong root key is refused, not misread.
        std::fs::write(dir.path().join("other.key"), [7u8; 32]).unwrap();
        assert!(matches!(
            LocalKeyring::open(
                &dir.path().join("keyring"),
                &RootKey::File(dir.path().join("other.key"))
            ),
            Err(CryptoError::WrongRootKey)
        ));
        // No key material in the file in clear.
        let bytes = std::fs::read(dir.path().join("keyring")).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("\"versions\""));

        let pass = RootKey::Passphrase(Zeroizing::new("correct horse battery staple".into()));
        let ring = LocalKeyring::open(&dir.path().join("keyring2"), &pass).unwrap();
        ring.create_key("k", 1).await.unwrap();
        drop(ring);
        let ring = LocalKeyring::open(&dir.path().join("keyring2"), &pass).unwrap();
        assert_eq!(ring.describe("k").await.unwrap().current_version, 1);
        let wrong = RootKey::Passphrase(Zeroizing::new("wrong".into()));
        assert!(matches!(
            LocalKeyring::open(&dir.path().join("keyring2"), &wrong),
            Err(CryptoError::WrongRootKey)
        ));
        assert!(format!("{pass:?}").contains("redacted"));
    }

    /// Two processes (here: two handles) on one keyring file see each other's changes and
    /// do not lose them.
    #[tokio::test]
    async fn handles_on_one_file_see_each_others_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootKey::File(dir.path().join("root.key"));
        let a = LocalKeyring::open(&dir.path().join("keyring"), &root).unwrap();
        let b = LocalKeyring::open(&dir.path().join("keyring"), &root).unwrap();
        a.create_key("shared", 1).await.unwrap();
        let why = Justification {
            actor: "key:T".into(),
            reason: "customer-request".into(),
            approvals: None,
        };
        let dek = DataKey::generate().unwrap();
        let w = b.wrap("shared", &dek, b"c", &why).await.unwrap();
        assert_eq!(
            a.unwrap(&w, b"c", &why).await.unwrap().expose(),
            dek.expose()
        );
        b.create_key("second", 2).await.unwrap();
        a.set_state("shared", KeyState::Disabled).await.unwrap();
        assert!(b.unwrap(&w, b"c", &why).await.is_err());
        let ids: Vec<String> = a
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.key_id)
            .collect();
        assert_eq!(ids, ["second", "shared"]);
    }
}
