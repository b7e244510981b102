//! `vallum keyd`: an XKS proxy (API v1) in front of a key provider that can seal raw data (the
//! local keyring or a PKCS#11 token), so a customer runs their keys on their own premises and
//! any XKS client (Vallum, or AWS KMS itself) uses them.
//!
//! What it does, as the spec says: POST only (405 otherwise); `…/kms/xks/v1/health`,
//! `…/keys/<id>/metadata|encrypt|decrypt` under an optional path prefix (anything else is
//! `InvalidUriPathException`); SigV4 verification with service `kms-xks-proxy`, several
//! credentials at once (rotation), 5-minute clock skew; AES-GCM with AAD inside the provider;
//! ciphertext metadata (format byte and key version) bound into the key manager's AAD with the
//! spec's length prefixes; CDIV computed before a verification decrypt; the spec's error names
//! and statuses; secondary authorization on request metadata ([`Policy`]); a deep health check
//! on a dedicated test key; request metadata logged, plaintext never.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use vallum_crypto::CryptoError;
use vallum_crypto::keys::{Justification, KeyProvider, KeyState, MAX_SEAL_BYTES, SealedData};
use vallum_crypto::sigv4;
use zeroize::Zeroizing;

use crate::wire::{
    self, DecryptRequest, DecryptResponse, EkmDetails, EncryptRequest, EncryptResponse, ErrorBody,
    ErrorName, Health, KeyMetadata, MetadataOnly, RequestMetadata,
};

/// The key keyd uses for its deep health check (created on start).
pub const HEALTH_KEY_ID: &str = "keyd-health-check";

/// Format byte of keyd's ciphertext metadata (followed by the 4-byte key version).
const METADATA_FORMAT_V1: u8 = 1;

/// Secondary authorization: a request for a key is allowed when some rule names the key and
/// matches the principal and the reason. No rules: everything signed is allowed. Patterns are
/// exact, or a prefix followed by `*`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The rules.
    pub rules: Vec<Rule>,
    /// The tenant's guardians' approval keys (signed-note verifier keys). When set, a key use
    /// under a lockbox grant (`lockbox:<id>` reason) needs `approvals_required` distinct valid
    /// signatures by them over that grant's approval statement.
    pub approvers: Vec<vallum_ledger::note::Verifier>,
    /// How many of `approvers` must have signed.
    pub approvals_required: usize,
}

/// One authorization rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Key id pattern.
    pub key: String,
    /// `awsPrincipalArn` patterns.
    pub principals: Vec<String>,
    /// Justification reason patterns (`vallumReason`, or the KMS operation when absent).
    pub reasons: Vec<String>,
}

fn matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

impl Policy {
    /// For a key use under a lockbox grant: whether the guardians' signed `approvals` name
    /// that grant and carry enough distinct valid signatures by the configured approvers.
    pub fn check_approvals(
        &self,
        reason: &str,
        approvals: Option<&str>,
    ) -> Result<(), CryptoError> {
        let Some(grant) = reason.strip_prefix("lockbox:") else {
            return Ok(());
        };
        if self.approvers.is_empty() {
            return Ok(());
        }
        let text = approvals.ok_or_else(|| {
            CryptoError::Refused(format!(
                "grant {grant} carries no signed approvals of the tenant's guardians"
            ))
        })?;
        let note = vallum_ledger::note::Note::parse(text.as_bytes()).map_err(|e| {
            CryptoError::Refused(format!(
                "grant {grant}: the approvals are not a signed note: {e}"
            ))
        })?;
        if vallum_crypto::approval::request_of(&note.text) != Some(grant) {
            return Err(CryptoError::Refused(format!(
                "the signed approvals are not about grant {grant}"
            )));
        }
        let mut signers: Vec<u32> = Vec::new();
        for sig in &note.signatures {
            if let Some(v) = self
                .approvers
                .iter()
                .find(|v| v.name == sig.name && v.id == sig.key_id)
                && v.verify(&note.text, sig).is_ok()
                && !signers.contains(&v.id)
            {
                signers.push(v.id);
            }
        }
        if signers.len() < self.approvals_required {
            return Err(CryptoError::Refused(format!(
                "grant {grant} is signed by {} of the tenant's guardians; {} required",
                signers.len(),
                self.approvals_required
            )));
        }
        Ok(())
    }

    /// Whether `principal` may use `key` for `reason`; the refusal says why.
    pub fn check(&self, key: &str, principal: &str, reason: &str) -> Result<(), CryptoError> {
        if self.rules.is_empty() {
            return Ok(());
        }
        let for_key: Vec<&Rule> = self.rules.iter().filter(|r| matches(&r.key, key)).collect();
        if for_key.is_empty() {
            return Err(CryptoError::Refused(format!("no rule allows key {key}")));
        }
        if for_key.iter().any(|r| {
            r.principals.iter().any(|p| matches(p, principal))
                && r.reasons.iter().any(|p| matches(p, reason))
        }) {
            Ok(())
        } else {
            Err(CryptoError::Refused(format!(
                "principal {principal:?} with reason {reason:?} is not allowed to use key {key}"
            )))
        }
    }
}

/// The proxy: its provider, credentials and policy.
pub struct Proxy {
    provider: Arc<dyn KeyProvider>,
    credentials: HashMap<String, Zeroizing<String>>,
    prefix: String,
    policy: Policy,
    vendor: String,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("provider", &self.provider.name())
            .field("access_keys", &self.credentials.keys().collect::<Vec<_>>())
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// An API failure: the spec's error name and a message.
#[derive(Debug)]
struct ApiError(ErrorName, String);

impl ApiError {
    /// The policy's refusal, its reason as the message (without the provider's prefix).
    fn refusal(e: CryptoError) -> Self {
        match e {
            CryptoError::Refused(why) => Self::new(ErrorName::AccessDenied, why),
            other => other.into(),
        }
    }

    fn new(name: ErrorName, msg: impl Into<String>) -> Self {
        Self(name, msg.into())
    }
}

impl From<CryptoError> for ApiError {
    fn from(e: CryptoError) -> Self {
        let name = match &e {
            CryptoError::NoSuchKey(_) => ErrorName::KeyNotFound,
            CryptoError::KeyUnavailable { .. } => ErrorName::InvalidState,
            CryptoError::Integrity(_) => ErrorName::InvalidCiphertext,
            CryptoError::Refused(_) => ErrorName::AccessDenied,
            CryptoError::Unavailable(_) => ErrorName::DependencyTimeout,
            CryptoError::Unsupported(_) => ErrorName::UnsupportedOperation,
            CryptoError::Format(_) => ErrorName::Validation,
            _ => ErrorName::Internal,
        };
        Self(name, e.to_string())
    }
}

fn b64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

fn unb64(field: &str, s: &str) -> Result<Vec<u8>, ApiError> {
    base64_simd::STANDARD
        .decode_to_vec(s)
        .map_err(|_| ApiError::new(ErrorName::Validation, format!("{field} is not Base64")))
}

fn json_response(status: u16, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(status: u16, e: &ApiError) -> Response<Full<Bytes>> {
    let message: String =
        e.1.chars()
            .filter(|c| (' '..='~').contains(c))
            .take(wire::MAX_ERROR_MESSAGE_CHARS)
            .collect();
    json_response(
        status,
        &ErrorBody {
            error_name: e.0.as_str().to_owned(),
            error_message: Some(message),
        },
    )
}

/// Which API a path names.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Health,
    Metadata(String),
    Encrypt(String),
    Decrypt(String),
}

impl Proxy {
    /// A proxy over `provider` accepting the `(access key id, secret)` pairs, serving under
    /// `prefix` (empty, or `/something`), applying `policy`.
    pub fn new(
        provider: Arc<dyn KeyProvider>,
        credentials: Vec<(String, Zeroizing<String>)>,
        prefix: &str,
        policy: Policy,
    ) -> Self {
        Self {
            // No key leaves the proxy for platform staff without a lockbox grant.
            provider: Arc::new(vallum_crypto::justified::Justified::new(provider)),
            credentials: credentials.into_iter().collect(),
            prefix: prefix.trim_end_matches('/').to_owned(),
            policy,
            vendor: "Vallum".into(),
        }
    }

    /// Creates the health-check key when missing.
    pub async fn prepare(&self) -> Result<(), CryptoError> {
        match self.provider.describe(HEALTH_KEY_ID).await {
            Ok(_) => Ok(()),
            Err(CryptoError::NoSuchKey(_)) => self
                .provider
                .create_key(HEALTH_KEY_ID, now_ms())
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        }
    }

    fn route(&self, path: &str) -> Option<Route> {
        let rest = path
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(wire::API_PATH)?;
        if rest == "/health" {
            return Some(Route::Health);
        }
        let rest = rest.strip_prefix("/keys/")?;
        let (id, op) = rest.split_once('/')?;
        if !wire::valid_key_id(id) {
            return None;
        }
        let id = id.to_owned();
        match op {
            "metadata" => Some(Route::Metadata(id)),
            "encrypt" => Some(Route::Encrypt(id)),
            "decrypt" => Some(Route::Decrypt(id)),
            _ => None,
        }
    }

    /// Serves one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, wire::MAX_REQUEST_BODY_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                let e = ApiError::new(
                    ErrorName::UnsupportedOperation,
                    format!(
                        "request body unreadable or over {} bytes: {e}",
                        wire::MAX_REQUEST_BODY_BYTES
                    ),
                );
                return error_response(e.0.status(), &e);
            }
        };
        // The body is read first: answering before it is consumed resets the stream.
        let Some(route) = self.route(parts.uri.path()) else {
            let e = ApiError::new(
                ErrorName::InvalidUriPath,
                format!("{} is not an XKS API path", parts.uri.path()),
            );
            return error_response(e.0.status(), &e);
        };
        if parts.method != Method::POST {
            let e = ApiError::new(ErrorName::Validation, "XKS API calls are POST requests");
            return error_response(405, &e);
        }
        if let Err(e) = self.authenticate(&parts, &body) {
            tracing::warn!(path = parts.uri.path(), error = %e.1, "keyd: authentication failed");
            return error_response(e.0.status(), &e);
        }
        let (op, key, result) = match route {
            Route::Health => ("GetHealthStatus", String::new(), self.health(&body).await),
            Route::Metadata(k) => ("GetKeyMetadata", k.clone(), self.metadata(&k, &body).await),
            Route::Encrypt(k) => ("Encrypt", k.clone(), self.encrypt(&k, &body).await),
            Route::Decrypt(k) => ("Decrypt", k.clone(), self.decrypt(&k, &body).await),
        };
        let meta = serde_json::from_slice::<MetadataOnly>(&body)
            .map(|m| m.request_metadata)
            .unwrap_or_default();
        let elapsed_us = started.elapsed().as_micros() as u64;
        match result {
            Ok(resp) => {
                tracing::info!(
                    operation = op, key, kms_request_id = %meta.kms_request_id,
                    kms_operation = %meta.kms_operation, principal = meta.aws_principal_arn.as_deref().unwrap_or(""),
                    reason = meta.vallum_reason.as_deref().unwrap_or(""), elapsed_us, "keyd: ok"
                );
                resp
            }
            Err(e) => {
                tracing::warn!(
                    operation = op, key, kms_request_id = %meta.kms_request_id,
                    principal = meta.aws_principal_arn.as_deref().unwrap_or(""),
                    error = e.0.as_str(), message = %e.1, elapsed_us, "keyd: refused"
                );
                error_response(e.0.status(), &e)
            }
        }
    }

    fn authenticate(&self, parts: &http::request::Parts, body: &[u8]) -> Result<(), ApiError> {
        sigv4::verify_http(parts, body, wire::SIGV4_SERVICE, now_ms() / 1000, |ak| {
            self.credentials.get(ak).cloned()
        })
        .map(|_| ())
        .map_err(|e| ApiError::new(ErrorName::AuthenticationFailed, e.to_string()))
    }

    /// The only algorithm of the API's v1.
    fn check_algorithm(algorithm: &str) -> Result<(), ApiError> {
        if algorithm == "AES_GCM" {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorName::Validation,
                format!("encryptionAlgorithm {algorithm:?} is not AES_GCM"),
            ))
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::new(ErrorName::Validation, format!("malformed request: {e}")))
    }

    fn authorize(&self, key: &str, meta: &RequestMetadata) -> Result<Justification, ApiError> {
        let principal = meta.aws_principal_arn.clone().ok_or_else(|| {
            ApiError::new(
                ErrorName::Validation,
                "requestMetadata.awsPrincipalArn is required",
            )
        })?;
        let reason = meta
            .vallum_reason
            .clone()
            .unwrap_or_else(|| meta.kms_operation.clone());
        self.policy
            .check(key, &principal, &reason)
            .map_err(ApiError::refusal)?;
        self.policy
            .check_approvals(&reason, meta.vallum_approvals.as_deref())
            .map_err(ApiError::refusal)?;
        Ok(Justification {
            actor: principal,
            reason,
            approvals: None,
        })
    }

    async fn health(&self, body: &[u8]) -> Result<Response<Full<Bytes>>, ApiError> {
        let _: MetadataOnly = Self::parse(body)?;
        let why = Justification {
            actor: "system:keyd".into(),
            reason: "health-check".into(),
            approvals: None,
        };
        let deep = async {
            let sealed = self
                .provider
                .seal(HEALTH_KEY_ID, b"health", b"", &why)
                .await?;
            let plain = self
                .provider
                .open(HEALTH_KEY_ID, &sealed, b"", &why)
                .await?;
            Ok::<bool, CryptoError>(plain.as_slice() == b"health")
        }
        .await;
        let status = match deep {
            Ok(true) => "ACTIVE",
            Ok(false) => "DEGRADED",
            Err(e) => {
                tracing::error!(error = %e, "keyd: health check failed");
                "UNAVAILABLE"
            }
        };
        Ok(json_response(
            200,
            &Health {
                xks_proxy_fleet_size: 1,
                xks_proxy_vendor: self.vendor.clone(),
                xks_proxy_model: format!("Vallum keyd {}", env!("CARGO_PKG_VERSION")),
                ekm_vendor: "Vallum".into(),
                ekm_fleet_details: vec![EkmDetails {
                    id: format!("{}-1", self.provider.name()),
                    model: format!("Vallum {} provider", self.provider.name()),
                    health_status: status.into(),
                }],
            },
        ))
    }

    async fn metadata(&self, key: &str, body: &[u8]) -> Result<Response<Full<Bytes>>, ApiError> {
        let req: MetadataOnly = Self::parse(body)?;
        self.authorize(key, &req.request_metadata)?;
        let info = self.provider.describe(key).await?;
        Ok(json_response(
            200,
            &KeyMetadata {
                key_spec: "AES_256".into(),
                key_usage: vec!["ENCRYPT".into(), "DECRYPT".into()],
                key_status: if info.state == KeyState::Enabled {
                    "ENABLED".into()
                } else {
                    "DISABLED".into()
                },
            },
        ))
    }

    async fn encrypt(&self, key: &str, body: &[u8]) -> Result<Response<Full<Bytes>>, ApiError> {
        let req: EncryptRequest = Self::parse(body)?;
        let why = self.authorize(key, &req.request_metadata)?;
        Self::check_algorithm(&req.encryption_algorithm)?;
        if let Some(a) = &req.ciphertext_data_integrity_value_algorithm
            && a != "SHA_256"
        {
            return Err(ApiError::new(
                ErrorName::Validation,
                format!("ciphertextDataIntegrityValueAlgorithm {a:?} is not SHA_256"),
            ));
        }
        let plaintext = Zeroizing::new(unb64("plaintext", &req.plaintext)?);
        let aad = match &req.additional_authenticated_data {
            Some(a) => unb64("additionalAuthenticatedData", a)?,
            None => Vec::new(),
        };
        if plaintext.len() > MAX_SEAL_BYTES || aad.len() > wire::MAX_AAD_BYTES {
            return Err(ApiError::new(
                ErrorName::UnsupportedOperation,
                format!(
                    "plaintext over {MAX_SEAL_BYTES} bytes or AAD over {} bytes",
                    wire::MAX_AAD_BYTES
                ),
            ));
        }
        // The key version goes into the ciphertext metadata, which is bound into the key
        // manager's AAD; a rotation between describe and seal is caught and retried.
        let mut attempts = 0;
        let (sealed, metadata) = loop {
            let version = self.provider.describe(key).await?.current_version;
            let metadata = metadata_bytes(version);
            let sealed = self
                .provider
                .seal(key, &plaintext, &wire::ekm_aad(&aad, &metadata), &why)
                .await?;
            if sealed.version == version {
                break (sealed, metadata);
            }
            attempts += 1;
            if attempts > 3 {
                return Err(ApiError::new(
                    ErrorName::Internal,
                    "key rotated during encrypt",
                ));
            }
        };
        let split = sealed.ciphertext.len() - 16;
        let (ct, tag) = sealed.ciphertext.split_at(split);
        let cdiv = req
            .ciphertext_data_integrity_value_algorithm
            .as_ref()
            .map(|_| wire::cdiv(&aad, &metadata, &sealed.nonce, ct, tag));
        if cdiv.is_some() {
            // Appendix C: check the output decrypts before vouching for it.
            let back = self
                .provider
                .open(key, &sealed, &wire::ekm_aad(&aad, &metadata), &why)
                .await?;
            if back.as_slice() != plaintext.as_slice() {
                return Err(ApiError::new(
                    ErrorName::Internal,
                    "verification decrypt differs",
                ));
            }
        }
        Ok(json_response(
            200,
            &EncryptResponse {
                ciphertext: b64(ct),
                ciphertext_metadata: Some(b64(&metadata)),
                initialization_vector: b64(&sealed.nonce),
                authentication_tag: b64(tag),
                ciphertext_data_integrity_value: cdiv,
            },
        ))
    }

    async fn decrypt(&self, key: &str, body: &[u8]) -> Result<Response<Full<Bytes>>, ApiError> {
        let req: DecryptRequest = Self::parse(body)?;
        let why = self.authorize(key, &req.request_metadata)?;
        Self::check_algorithm(&req.encryption_algorithm)?;
        let invalid = |m: &str| ApiError::new(ErrorName::InvalidCiphertext, m.to_owned());
        let ct = unb64("ciphertext", &req.ciphertext)?;
        let iv = unb64("initializationVector", &req.initialization_vector)?;
        let tag = unb64("authenticationTag", &req.authentication_tag)?;
        let aad = match &req.additional_authenticated_data {
            Some(a) => unb64("additionalAuthenticatedData", a)?,
            None => Vec::new(),
        };
        let metadata = match &req.ciphertext_metadata {
            Some(m) => unb64("ciphertextMetadata", m)?,
            None => return Err(invalid("ciphertextMetadata is missing")),
        };
        if metadata.len() != 5 || metadata[0] != METADATA_FORMAT_V1 {
            return Err(invalid("ciphertextMetadata was not produced by this proxy"));
        }
        let nonce: [u8; 12] = iv
            .as_slice()
            .try_into()
            .map_err(|_| invalid("initializationVector must be 12 bytes"))?;
        if tag.len() != 16 {
            return Err(invalid("authenticationTag must be 16 bytes"));
        }
        if ct.len() > MAX_SEAL_BYTES || aad.len() > wire::MAX_AAD_BYTES {
            return Err(ApiError::new(
                ErrorName::UnsupportedOperation,
                "ciphertext or AAD too large",
            ));
        }
        let version = u32::from_be_bytes([metadata[1], metadata[2], metadata[3], metadata[4]]);
        let mut ciphertext = ct;
        ciphertext.extend_from_slice(&tag);
        let sealed = SealedData {
            version,
            nonce,
            ciphertext,
        };
        let plain = self
            .provider
            .open(key, &sealed, &wire::ekm_aad(&aad, &metadata), &why)
            .await
            .map_err(|e| match e {
                CryptoError::NoSuchKey(_) | CryptoError::KeyUnavailable { .. } => ApiError::from(e),
                other => ApiError::new(ErrorName::InvalidCiphertext, other.to_string()),
            })?;
        Ok(json_response(
            200,
            &DecryptResponse {
                plaintext: b64(&plain),
            },
        ))
    }
}

fn metadata_bytes(version: u32) -> Vec<u8> {
    let mut m = vec![METADATA_FORMAT_V1];
    m.extend_from_slice(&version.to_be_bytes());
    m
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Serves `proxy` on `listener` (TLS when `tls` is given) until `shutdown` resolves.
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "keyd: accept failed");
                    continue;
                }
            },
        };
        let proxy = proxy.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(proxy.handle(req).await) }
            });
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let result = match acceptor {
                Some(a) => match a.accept(stream).await {
                    Ok(tls) => {
                        builder
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "keyd: TLS handshake failed");
                        return;
                    }
                },
                None => {
                    builder
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "keyd: connection ended");
            }
        });
    }
}
