//! The PKCS#11 provider (`cryptoki`): key-encryption keys are AES-256 secret keys generated
//! *inside* the token (sensitive, not extractable); wrap and unwrap are `C_Encrypt` /
//! `C_Decrypt` with AES-GCM in the token, so the KEK never leaves it. Tested against SoftHSM2.
//!
//! Objects: each key version is a secret key labelled `<key id>#v<N>`; each key's state
//! (current version, state, creation time) is a private data object with application
//! `vallum-key-meta` and label `<key id>`.

use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use serde::{Deserialize, Serialize};

use crate::CryptoError;
use crate::keys::{DataKey, Justification, KeyInfo, KeyProvider, KeyState, SealedData, WrappedKey};
use zeroize::Zeroizing;

const META_APPLICATION: &[u8] = b"vallum-key-meta";

fn hsm(e: impl std::fmt::Display) -> CryptoError {
    CryptoError::Storage(format!("PKCS#11: {e}"))
}

#[derive(Serialize, Deserialize, Clone)]
struct Meta {
    created_ms: i64,
    state: KeyState,
    current: u32,
}

/// A PKCS#11 token holding Vallum's key-encryption keys.
pub struct Pkcs11Provider {
    // The session is used from one thread at a time; PKCS#11 sessions are not reentrant.
    session: Mutex<Session>,
    _context: Pkcs11,
}

impl std::fmt::Debug for Pkcs11Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pkcs11Provider")
    }
}

impl Pkcs11Provider {
    /// Loads the PKCS#11 `module`, finds the token labelled `token_label` and logs in as the
    /// user with `pin`.
    pub fn open(
        module: &std::path::Path,
        token_label: &str,
        pin: &str,
    ) -> Result<Self, CryptoError> {
        let context = shared_context(module)?;
        let slot = context
            .get_slots_with_token()
            .map_err(hsm)?
            .into_iter()
            .find(|s| {
                context
                    .get_token_info(*s)
                    .is_ok_and(|t| t.label() == token_label)
            })
            .ok_or_else(|| hsm(format!("no token labelled {token_label:?}")))?;
        let session = context.open_rw_session(slot).map_err(hsm)?;
        session
            .login(UserType::User, Some(&AuthPin::new(pin.into())))
            .map_err(hsm)?;
        Ok(Self {
            session: Mutex::new(session),
            _context: context,
        })
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&Session) -> Result<R, CryptoError>,
    ) -> Result<R, CryptoError> {
        let s = self
            .session
            .lock()
            .map_err(|_| hsm("session lock poisoned"))?;
        f(&s)
    }
}

/// One initialised context per module for the life of the process: a PKCS#11 library is
/// process-global, and finalising it (what dropping the last handle of a context does) would
/// pull the token away from every other user in the process.
fn shared_context(module: &std::path::Path) -> Result<Pkcs11, CryptoError> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static CONTEXTS: OnceLock<Mutex<HashMap<std::path::PathBuf, Pkcs11>>> = OnceLock::new();
    let mut map = CONTEXTS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .map_err(|_| hsm("context registry poisoned"))?;
    if let Some(c) = map.get(module) {
        return Ok(c.clone());
    }
    let context = Pkcs11::new(module).map_err(hsm)?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(
            cryptoki::error::RvError::CryptokiAlreadyInitialized,
            _,
        )) => {}
        Err(e) => return Err(hsm(e)),
    }
    map.insert(module.to_path_buf(), context.clone());
    Ok(context)
}

fn meta_template(key_id: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Application(META_APPLICATION.to_vec()),
        Attribute::Label(key_id.as_bytes().to_vec()),
    ]
}

fn find_meta(s: &Session, key_id: &str) -> Result<Option<(ObjectHandle, Meta)>, CryptoError> {
    let Some(h) = s
        .find_objects(&meta_template(key_id))
        .map_err(hsm)?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let attrs = s.get_attributes(h, &[AttributeType::Value]).map_err(hsm)?;
    let value = attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        })
        .ok_or_else(|| hsm("key metadata without a value"))?;
    let meta = serde_json::from_slice(&value).map_err(|e| CryptoError::Format(e.to_string()))?;
    Ok(Some((h, meta)))
}

fn save_meta(
    s: &Session,
    key_id: &str,
    meta: &Meta,
    old: Option<ObjectHandle>,
) -> Result<(), CryptoError> {
    let value = serde_json::to_vec(meta).map_err(|e| CryptoError::Format(e.to_string()))?;
    let mut t = meta_template(key_id);
    t.extend([
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Value(value),
    ]);
    s.create_object(&t).map_err(hsm)?;
    if let Some(h) = old {
        s.destroy_object(h).map_err(hsm)?;
    }
    Ok(())
}

fn version_label(key_id: &str, version: u32) -> Vec<u8> {
    format!("{key_id}#v{version}").into_bytes()
}

fn find_version(s: &Session, key_id: &str, version: u32) -> Result<ObjectHandle, CryptoError> {
    s.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Label(version_label(key_id, version)),
    ])
    .map_err(hsm)?
    .into_iter()
    .next()
    .ok_or_else(|| {
        CryptoError::Integrity(format!(
            "key {key_id} version {version} is not in the token"
        ))
    })
}

fn generate(s: &Session, key_id: &str, version: u32) -> Result<(), CryptoError> {
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32u64.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Label(version_label(key_id, version)),
        ],
    )
    .map_err(hsm)?;
    Ok(())
}

fn info(key_id: &str, m: &Meta) -> KeyInfo {
    KeyInfo {
        key_id: key_id.to_owned(),
        current_version: m.current,
        state: m.state,
        created_ms: m.created_ms,
    }
}

fn meta_of(s: &Session, key_id: &str) -> Result<(ObjectHandle, Meta), CryptoError> {
    find_meta(s, key_id)?.ok_or_else(|| CryptoError::NoSuchKey(key_id.to_owned()))
}

/// AES-GCM in the token under the current version of `key_id`; `aad` gets that version.
fn seal_in(
    s: &Session,
    key_id: &str,
    plaintext: &[u8],
    aad: impl FnOnce(u32) -> Vec<u8>,
) -> Result<SealedData, CryptoError> {
    let (_, meta) = meta_of(s, key_id)?;
    crate::keys::ensure_usable(key_id, meta.state)?;
    let key = find_version(s, key_id, meta.current)?;
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|e| CryptoError::Random(e.to_string()))?;
    let aad = aad(meta.current);
    let mut iv = nonce;
    let params = GcmParams::new(&mut iv, &aad, 128u64.into()).map_err(hsm)?;
    let ciphertext = s
        .encrypt(&Mechanism::AesGcm(params), key, plaintext)
        .map_err(hsm)?;
    Ok(SealedData {
        version: meta.current,
        nonce,
        ciphertext,
    })
}

/// Opens in the token what [`seal_in`] sealed.
fn open_in(
    s: &Session,
    key_id: &str,
    sealed: &SealedData,
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let (_, meta) = meta_of(s, key_id)?;
    crate::keys::ensure_usable(key_id, meta.state)?;
    let key = find_version(s, key_id, sealed.version)?;
    let mut iv = sealed.nonce;
    let params = GcmParams::new(&mut iv, aad, 128u64.into()).map_err(hsm)?;
    s.decrypt(&Mechanism::AesGcm(params), key, &sealed.ciphertext)
        .map(Zeroizing::new)
        .map_err(|_| {
            CryptoError::Integrity("the ciphertext does not open under this key and context".into())
        })
}

#[async_trait::async_trait]
impl KeyProvider for Pkcs11Provider {
    fn name(&self) -> &str {
        "pkcs11"
    }

    async fn create_key(&self, key_id: &str, now_ms: i64) -> Result<KeyInfo, CryptoError> {
        crate::check_key_id(key_id)?;
        self.with(|s| {
            if find_meta(s, key_id)?.is_some() {
                return Err(CryptoError::KeyExists(key_id.to_owned()));
            }
            generate(s, key_id, 1)?;
            let meta = Meta {
                created_ms: now_ms,
                state: KeyState::Enabled,
                current: 1,
            };
            save_meta(s, key_id, &meta, None)?;
            Ok(info(key_id, &meta))
        })
    }

    async fn describe(&self, key_id: &str) -> Result<KeyInfo, CryptoError> {
        self.with(|s| meta_of(s, key_id).map(|(_, m)| info(key_id, &m)))
    }

    async fn list(&self) -> Result<Vec<KeyInfo>, CryptoError> {
        self.with(|s| {
            let handles = s
                .find_objects(&[
                    Attribute::Class(ObjectClass::DATA),
                    Attribute::Application(META_APPLICATION.to_vec()),
                ])
                .map_err(hsm)?;
            let mut out = Vec::new();
            for h in handles {
                let attrs = s.get_attributes(h, &[AttributeType::Label]).map_err(hsm)?;
                if let Some(Attribute::Label(l)) = attrs.into_iter().next() {
                    let id = String::from_utf8_lossy(&l).into_owned();
                    if let Some((_, m)) = find_meta(s, &id)? {
                        out.push(info(&id, &m));
                    }
                }
            }
            Ok(out)
        })
    }

    async fn wrap(
        &self,
        key_id: &str,
        dek: &DataKey,
        context: &[u8],
        _why: &Justification,
    ) -> Result<WrappedKey, CryptoError> {
        let sealed = self.with(|s| {
            seal_in(s, key_id, dek.expose(), |v| {
                crate::keys::wrap_aad(key_id, v, context)
            })
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
        let aad = crate::keys::wrap_aad(&wrapped.key_id, wrapped.key_version, context);
        let plain = self.with(|s| open_in(s, &wrapped.key_id, &sealed, &aad))?;
        DataKey::from_bytes(&plain)
    }

    async fn seal(
        &self,
        key_id: &str,
        plaintext: &[u8],
        aad: &[u8],
        _why: &Justification,
    ) -> Result<SealedData, CryptoError> {
        self.with(|s| seal_in(s, key_id, plaintext, |_| aad.to_vec()))
    }

    async fn open(
        &self,
        key_id: &str,
        sealed: &SealedData,
        aad: &[u8],
        _why: &Justification,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.with(|s| open_in(s, key_id, sealed, aad))
    }

    async fn rotate(&self, key_id: &str, _now_ms: i64) -> Result<KeyInfo, CryptoError> {
        self.with(|s| {
            let (h, mut meta) = meta_of(s, key_id)?;
            crate::keys::ensure_usable(key_id, meta.state)?;
            generate(s, key_id, meta.current + 1)?;
            meta.current += 1;
            save_meta(s, key_id, &meta, Some(h))?;
            Ok(info(key_id, &meta))
        })
    }

    async fn set_state(&self, key_id: &str, state: KeyState) -> Result<KeyInfo, CryptoError> {
        self.with(|s| {
            let (h, mut meta) = meta_of(s, key_id)?;
            if meta.state == KeyState::Destroyed || state == KeyState::Destroyed {
                return Err(CryptoError::KeyUnavailable {
                    key_id: key_id.to_owned(),
                    state: KeyState::Destroyed,
                });
            }
            meta.state = state;
            save_meta(s, key_id, &meta, Some(h))?;
            Ok(info(key_id, &meta))
        })
    }

    async fn destroy(&self, key_id: &str) -> Result<KeyInfo, CryptoError> {
        self.with(|s| {
            let (h, mut meta) = meta_of(s, key_id)?;
            for v in 1..=meta.current {
                if let Ok(k) = find_version(s, key_id, v) {
                    s.destroy_object(k).map_err(hsm)?;
                }
            }
            meta.state = KeyState::Destroyed;
            save_meta(s, key_id, &meta, Some(h))?;
            Ok(info(key_id, &meta))
        })
    }
}
