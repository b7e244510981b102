//! Vallum as an XKS client: [`XksProvider`] wraps and unwraps data keys through any proxy that
//! implements the XKS proxy API v1 (`vallum keyd`, or a vendor's proxy in front of an HSM).
//!
//! Every call is SigV4-signed (service `kms-xks-proxy`), carries `requestMetadata` built from
//! the justification (principal, reason, a fresh request id), is bounded by a timeout, and is
//! retried a bounded number of times when the connection fails or the proxy answers with a
//! retryable error (throttling, dependency timeout, internal error). Encrypt asks for the
//! ciphertext data integrity value and checks it. The proxy owns key lifecycle (the API has
//! no create/rotate/disable): those operations are refused here with a pointer to the store.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use vallum_crypto::CryptoError;
use vallum_crypto::keys::{DataKey, Justification, KeyInfo, KeyProvider, KeyState, WrappedKey};
use vallum_crypto::sigv4::{self, Signer};
use zeroize::Zeroizing;

use crate::wire::{
    self, DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse, ErrorBody, ErrorName,
    Health, KeyMetadata, MetadataOnly, RequestMetadata,
};

/// Default time one XKS call may take (connect, request and response).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Default retries after the first attempt.
pub const DEFAULT_RETRIES: u32 = 2;

/// First back-off between attempts; doubled each retry.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// Largest response body accepted from a proxy.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Format byte of an XKS-wrapped data key.
const WRAPPED_FORMAT_V1: u8 = 1;

/// Where and how to reach an XKS proxy.
#[derive(Clone)]
pub struct XksConfig {
    /// `https://host[:port][/prefix]`; `/kms/xks/v1/...` is appended.
    pub endpoint: String,
    /// SigV4 access key id configured at the proxy.
    pub access_key: String,
    /// SigV4 secret.
    pub secret: Zeroizing<String>,
    /// Region in the credential scope.
    pub region: String,
    /// PEM file of the CA that signed the proxy's certificate (default: the system roots).
    pub ca_file: Option<PathBuf>,
    /// Time limit of one call.
    pub timeout: Duration,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// External key ids this deployment uses (what `list` reports).
    pub keys: Vec<String>,
}

impl std::fmt::Debug for XksConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XksConfig")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field("secret", &"<redacted>")
            .field("region", &self.region)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

/// The XKS key provider.
pub struct XksProvider {
    config: XksConfig,
    signer: Signer,
    base: http::Uri,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for XksProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XksProvider")
            .field("config", &self.config)
            .finish()
    }
}

/// One failed attempt: whether to try again, and the error if not.
enum Attempt {
    Retry(CryptoError),
    Fail(CryptoError),
}

impl XksProvider {
    /// A provider for the proxy `config` names.
    pub fn new(config: XksConfig) -> Result<Self, CryptoError> {
        let base: http::Uri =
            config.endpoint.trim_end_matches('/').parse().map_err(|e| {
                CryptoError::Format(format!("XKS endpoint {:?}: {e}", config.endpoint))
            })?;
        match base.scheme_str() {
            Some("https") => {}
            Some("http") => tracing::warn!(
                endpoint = %config.endpoint,
                "the XKS endpoint is plain HTTP; the XKS spec requires HTTPS outside tests"
            ),
            _ => {
                return Err(CryptoError::Format(format!(
                    "XKS endpoint {:?} must be an https:// URL",
                    config.endpoint
                )));
            }
        }
        if base.host().is_none() {
            return Err(CryptoError::Format(format!(
                "XKS endpoint {:?} has no host",
                config.endpoint
            )));
        }
        let tls = crate::tls::client_config(config.ca_file.as_deref())
            .map_err(|e| CryptoError::Format(e.to_string()))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        let signer = Signer {
            access_key: config.access_key.clone(),
            secret: config.secret.clone(),
            region: config.region.clone(),
            service: wire::SIGV4_SERVICE.into(),
        };
        Ok(Self {
            config,
            signer,
            base,
            client,
        })
    }

    fn metadata(&self, operation: &str, key_id: &str, why: &Justification) -> RequestMetadata {
        RequestMetadata {
            aws_principal_arn: Some(why.actor.clone()),
            kms_key_arn: Some(format!("vallum:xks:{key_id}")),
            kms_operation: operation.into(),
            kms_request_id: uuid::Uuid::new_v4().to_string(),
            kms_via_service: Some("vallum".into()),
            vallum_reason: Some(why.reason.clone()),
            vallum_approvals: why.approvals.clone(),
            ..RequestMetadata::default()
        }
    }

    async fn attempt(&self, path: &str, body: &Bytes) -> Result<Bytes, Attempt> {
        let authority = self.base.authority().map(|a| a.as_str()).unwrap_or("");
        let full_path = format!(
            "{}{}{}",
            self.base.path().trim_end_matches('/'),
            wire::API_PATH,
            path
        );
        let uri = format!(
            "{}://{authority}{full_path}",
            self.base.scheme_str().unwrap_or("https")
        );
        let date = sigv4::amz_date(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        );
        let auth = self.signer.authorization(
            "POST",
            &full_path,
            "",
            authority,
            &date,
            &sigv4::payload_hash(body),
        );
        let req = http::Request::post(uri)
            .header(http::header::HOST, authority)
            .header("x-amz-date", &date)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::AUTHORIZATION, auth)
            .body(Full::new(body.clone()))
            .map_err(|e| Attempt::Fail(CryptoError::Format(e.to_string())))?;
        let call = async {
            let resp = self.client.request(req).await.map_err(|e| {
                Attempt::Retry(CryptoError::Unavailable(format!(
                    "cannot reach the XKS proxy at {}: {}",
                    self.config.endpoint,
                    chain(&e)
                )))
            })?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    Attempt::Retry(CryptoError::Unavailable(format!(
                        "the XKS proxy's response broke off: {e}"
                    )))
                })?
                .to_bytes();
            Ok::<_, Attempt>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.config.timeout, call)
            .await
            .map_err(|_| {
                Attempt::Fail(CryptoError::Unavailable(format!(
                    "the XKS proxy at {} did not answer within {} ms",
                    self.config.endpoint,
                    self.config.timeout.as_millis()
                )))
            })??;
        if status.is_success() {
            return Ok(bytes);
        }
        let Ok(err) = serde_json::from_slice::<ErrorBody>(&bytes) else {
            return Err(Attempt::Fail(CryptoError::Unavailable(format!(
                "cannot interpret the XKS proxy's HTTP {status} response"
            ))));
        };
        let msg = err.error_message.unwrap_or_default();
        let Some(name) = ErrorName::parse(&err.error_name) else {
            return Err(Attempt::Fail(CryptoError::Unavailable(format!(
                "the XKS proxy answered an unknown error {:?}: {msg}",
                err.error_name
            ))));
        };
        let e = map_error(name, &msg);
        Err(if name.retryable() {
            Attempt::Retry(e)
        } else {
            Attempt::Fail(e)
        })
    }

    /// One API call with bounded retries.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, CryptoError> {
        let body =
            Bytes::from(serde_json::to_vec(body).map_err(|e| CryptoError::Format(e.to_string()))?);
        let mut backoff = RETRY_BACKOFF;
        let mut tries = 0;
        loop {
            match self.attempt(path, &body).await {
                Ok(bytes) => {
                    return serde_json::from_slice(&bytes).map_err(|e| {
                        CryptoError::Unavailable(format!(
                            "cannot interpret the XKS proxy's response: {e}"
                        ))
                    });
                }
                Err(Attempt::Retry(e)) if tries < self.config.retries => {
                    tracing::warn!(error = %e, attempt = tries + 1, "XKS call failed; retrying");
                    tries += 1;
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(Attempt::Retry(e) | Attempt::Fail(e)) => return Err(e),
            }
        }
    }

    /// The proxy's GetHealthStatus answer.
    pub async fn health(&self) -> Result<Health, CryptoError> {
        self.call(
            "/health",
            &MetadataOnly {
                request_metadata: RequestMetadata {
                    kms_operation: "KmsHealthCheck".into(),
                    kms_request_id: uuid::Uuid::new_v4().to_string(),
                    ..RequestMetadata::default()
                },
            },
        )
        .await
    }
}

/// An error with its sources ("client error (Connect): tls handshake: invalid certificate").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// A proxy error as the provider reports it.
fn map_error(name: ErrorName, msg: &str) -> CryptoError {
    let detail = format!("{}: {msg}", name.as_str());
    match name {
        ErrorName::KeyNotFound => CryptoError::NoSuchKey(detail),
        ErrorName::InvalidState => CryptoError::KeyUnavailable {
            key_id: detail,
            state: KeyState::Disabled,
        },
        ErrorName::InvalidCiphertext => CryptoError::Integrity(detail),
        ErrorName::AuthenticationFailed => CryptoError::Refused(format!(
            "the XKS proxy rejected Vallum's SigV4 credentials ({detail})"
        )),
        ErrorName::AccessDenied => CryptoError::Refused(detail),
        ErrorName::UnsupportedOperation => CryptoError::Unsupported(detail),
        ErrorName::Validation | ErrorName::InvalidKeyUsage | ErrorName::InvalidUriPath => {
            CryptoError::Format(detail)
        }
        ErrorName::Throttling | ErrorName::DependencyTimeout | ErrorName::Internal => {
            CryptoError::Unavailable(detail)
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

fn unb64(s: &str) -> Result<Vec<u8>, CryptoError> {
    base64_simd::STANDARD
        .decode_to_vec(s)
        .map_err(|_| CryptoError::Unavailable("the XKS proxy returned invalid Base64".into()))
}

fn lifecycle_refused(op: &str) -> CryptoError {
    CryptoError::Unsupported(format!(
        "{op}: keys of an external key store are managed in the store itself \
         (for vallum keyd: `vallum keyd key {op} ...`); the XKS API carries no lifecycle operations"
    ))
}

/// Wrapped-key bytes: format ‖ IV length ‖ IV ‖ metadata length ‖ metadata ‖ ciphertext ‖ tag.
fn encode_wrapped(iv: &[u8], metadata: &[u8], ct: &[u8], tag: &[u8]) -> Vec<u8> {
    let mut out = vec![WRAPPED_FORMAT_V1, iv.len() as u8];
    out.extend_from_slice(iv);
    out.push(metadata.len() as u8);
    out.extend_from_slice(metadata);
    out.extend_from_slice(ct);
    out.extend_from_slice(tag);
    out
}

struct Parsed {
    iv: Vec<u8>,
    metadata: Vec<u8>,
    ct: Vec<u8>,
    tag: Vec<u8>,
}

fn decode_wrapped(w: &WrappedKey) -> Result<Parsed, CryptoError> {
    let bad = || CryptoError::Integrity("XKS-wrapped key is malformed".into());
    let raw = base64_simd::STANDARD
        .decode_to_vec(&w.wrapped)
        .map_err(|_| bad())?;
    let (&format, rest) = raw.split_first().ok_or_else(bad)?;
    if format != WRAPPED_FORMAT_V1 {
        return Err(bad());
    }
    let (&iv_len, rest) = rest.split_first().ok_or_else(bad)?;
    let iv_len = iv_len as usize;
    if !(iv_len == 12 || iv_len == 16) || rest.len() < iv_len + 1 {
        return Err(bad());
    }
    let (iv, rest) = rest.split_at(iv_len);
    let (&md_len, rest) = rest.split_first().ok_or_else(bad)?;
    let md_len = md_len as usize;
    if md_len > wire::MAX_CIPHERTEXT_METADATA_BYTES || rest.len() < md_len + 16 {
        return Err(bad());
    }
    let (metadata, rest) = rest.split_at(md_len);
    let (ct, tag) = rest.split_at(rest.len() - 16);
    Ok(Parsed {
        iv: iv.to_vec(),
        metadata: metadata.to_vec(),
        ct: ct.to_vec(),
        tag: tag.to_vec(),
    })
}

#[async_trait::async_trait]
impl KeyProvider for XksProvider {
    fn name(&self) -> &str {
        "xks"
    }

    async fn create_key(&self, _key_id: &str, _now_ms: i64) -> Result<KeyInfo, CryptoError> {
        Err(lifecycle_refused("create"))
    }

    async fn describe(&self, key_id: &str) -> Result<KeyInfo, CryptoError> {
        if !wire::valid_key_id(key_id) {
            return Err(CryptoError::Format(format!(
                "{key_id:?} is not a valid external key id"
            )));
        }
        let why = Justification {
            actor: "system:vallum".into(),
            reason: "describe-key".into(),
            approvals: None,
        };
        let m: KeyMetadata = self
            .call(
                &format!("/keys/{key_id}/metadata"),
                &MetadataOnly {
                    request_metadata: self.metadata("DescribeKey", key_id, &why),
                },
            )
            .await
            .map_err(|e| match e {
                CryptoError::NoSuchKey(_) => CryptoError::NoSuchKey(key_id.to_owned()),
                other => other,
            })?;
        Ok(KeyInfo {
            key_id: key_id.to_owned(),
            current_version: 0,
            state: if m.key_status == "ENABLED" {
                KeyState::Enabled
            } else {
                KeyState::Disabled
            },
            created_ms: 0,
        })
    }

    async fn list(&self) -> Result<Vec<KeyInfo>, CryptoError> {
        let mut out = Vec::new();
        for k in &self.config.keys {
            out.push(self.describe(k).await?);
        }
        Ok(out)
    }

    async fn wrap(
        &self,
        key_id: &str,
        dek: &DataKey,
        context: &[u8],
        why: &Justification,
    ) -> Result<WrappedKey, CryptoError> {
        if !wire::valid_key_id(key_id) {
            return Err(CryptoError::Format(format!(
                "{key_id:?} is not a valid external key id"
            )));
        }
        let aad = vallum_crypto::keys::wrap_aad(key_id, 0, context);
        let resp: EncryptResponse = self
            .call(
                &format!("/keys/{key_id}/encrypt"),
                &EncryptRequest {
                    request_metadata: self.metadata("Encrypt", key_id, why),
                    plaintext: b64(dek.expose()),
                    encryption_algorithm: "AES_GCM".into(),
                    additional_authenticated_data: Some(b64(&aad)),
                    ciphertext_data_integrity_value_algorithm: Some("SHA_256".into()),
                },
            )
            .await?;
        let ct = unb64(&resp.ciphertext)?;
        let iv = unb64(&resp.initialization_vector)?;
        let tag = unb64(&resp.authentication_tag)?;
        let metadata = match &resp.ciphertext_metadata {
            Some(m) => unb64(m)?,
            None => Vec::new(),
        };
        if ct.len() != dek.expose().len()
            || !(iv.len() == 12 || iv.len() == 16)
            || tag.len() != 16
            || metadata.len() > wire::MAX_CIPHERTEXT_METADATA_BYTES
        {
            return Err(CryptoError::Unavailable(
                "the XKS proxy's encrypt response has fields of the wrong size".into(),
            ));
        }
        let expected = wire::cdiv(&aad, &metadata, &iv, &ct, &tag);
        if resp.ciphertext_data_integrity_value.as_deref() != Some(expected.as_str()) {
            return Err(CryptoError::Integrity(
                "the XKS proxy's ciphertext data integrity value does not match".into(),
            ));
        }
        Ok(WrappedKey {
            provider: self.name().to_owned(),
            key_id: key_id.to_owned(),
            key_version: 0,
            wrapped: b64(&encode_wrapped(&iv, &metadata, &ct, &tag)),
        })
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &[u8],
        why: &Justification,
    ) -> Result<DataKey, CryptoError> {
        let p = decode_wrapped(wrapped)?;
        let key_id = &wrapped.key_id;
        let aad = vallum_crypto::keys::wrap_aad(key_id, 0, context);
        let resp: DecryptResponse = self
            .call(
                &format!("/keys/{key_id}/decrypt"),
                &DecryptRequest {
                    request_metadata: self.metadata("Decrypt", key_id, why),
                    ciphertext: b64(&p.ct),
                    ciphertext_metadata: (!p.metadata.is_empty()).then(|| b64(&p.metadata)),
                    encryption_algorithm: "AES_GCM".into(),
                    additional_authenticated_data: Some(b64(&aad)),
                    initialization_vector: b64(&p.iv),
                    authentication_tag: b64(&p.tag),
                },
            )
            .await?;
        let plain = Zeroizing::new(unb64(&resp.plaintext)?);
        DataKey::from_bytes(&plain)
    }

    async fn rotate(&self, _key_id: &str, _now_ms: i64) -> Result<KeyInfo, CryptoError> {
        Err(lifecycle_refused("rotate"))
    }

    async fn set_state(&self, _key_id: &str, _state: KeyState) -> Result<KeyInfo, CryptoError> {
        Err(lifecycle_refused("disable"))
    }

    async fn destroy(&self, _key_id: &str) -> Result<KeyInfo, CryptoError> {
        Err(lifecycle_refused("destroy"))
    }
}
