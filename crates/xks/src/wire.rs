//! Messages of the XKS proxy API v1 (aws-kms-xksproxy-api-spec), field names as the spec spells
//! them. Binary fields are Base64 strings on the wire.

use serde::{Deserialize, Serialize};

/// URI path of the API under the proxy's optional prefix.
pub const API_PATH: &str = "/kms/xks/v1";

/// The SigV4 service name the spec fixes.
pub const SIGV4_SERVICE: &str = "kms-xks-proxy";

/// Largest plaintext a proxy must accept (the spec's minimum).
pub const MAX_PLAINTEXT_BYTES: usize = 4300;

/// Largest additional authenticated data a proxy must accept.
pub const MAX_AAD_BYTES: usize = 8192;

/// Largest ciphertext metadata.
pub const MAX_CIPHERTEXT_METADATA_BYTES: usize = 20;

/// Largest request body keyd reads (Base64 of the largest fields plus metadata, with margin).
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;

/// Largest external key id, and its alphabet (`A-Za-z0-9-._`).
pub const MAX_KEY_ID_CHARS: usize = 128;

/// Longest `errorMessage` (printable ASCII only).
pub const MAX_ERROR_MESSAGE_CHARS: usize = 511;

/// Whether `id` is a valid external key id.
#[must_use]
pub fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// `requestMetadata`: who asks, for which operation. Fields the spec marks optional are
/// skipped when absent; fields this client adds (`vallumReason`) are ignored by other proxies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMetadata {
    /// The principal on whose behalf the key is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_principal_arn: Option<String>,
    /// Source VPC (not used by Vallum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_source_vpc: Option<String>,
    /// Source VPC endpoint (not used by Vallum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_source_vpce: Option<String>,
    /// The key in the calling service's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    /// The calling operation.
    pub kms_operation: String,
    /// Request id, for correlating logs.
    pub kms_request_id: String,
    /// The service the call comes through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_via_service: Option<String>,
    /// Vallum's justification reason (`customer-request`, `replication`, `lockbox:<grant>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vallum_reason: Option<String>,
    /// Under a lockbox grant: the guardians' signed approvals (a signed note over the approval
    /// statement), which keyd checks against the guardian keys it is configured with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vallum_approvals: Option<String>,
}

/// Body of GetHealthStatus and GetKeyMetadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataOnly {
    /// Request metadata.
    pub request_metadata: RequestMetadata,
}

/// GetKeyMetadata response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyMetadata {
    /// Always `AES_256` in v1.
    pub key_spec: String,
    /// `ENCRYPT`, `DECRYPT`.
    pub key_usage: Vec<String>,
    /// `ENABLED` or `DISABLED`.
    pub key_status: String,
}

/// One key manager behind the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EkmDetails {
    /// Identifier.
    pub id: String,
    /// Model.
    pub model: String,
    /// `ACTIVE`, `DEGRADED` or `UNAVAILABLE`.
    pub health_status: String,
}

/// GetHealthStatus response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Proxies in the fleet.
    pub xks_proxy_fleet_size: u32,
    /// Proxy vendor.
    pub xks_proxy_vendor: String,
    /// Proxy model and version.
    pub xks_proxy_model: String,
    /// Key manager vendor.
    pub ekm_vendor: String,
    /// One to ten key managers.
    pub ekm_fleet_details: Vec<EkmDetails>,
}

/// Encrypt request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptRequest {
    /// Request metadata.
    pub request_metadata: RequestMetadata,
    /// Base64 plaintext.
    pub plaintext: String,
    /// `AES_GCM`.
    pub encryption_algorithm: String,
    /// Base64 AAD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_authenticated_data: Option<String>,
    /// `SHA_256` to ask for a ciphertext data integrity value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext_data_integrity_value_algorithm: Option<String>,
}

/// Encrypt response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptResponse {
    /// Base64 ciphertext (as long as the plaintext).
    pub ciphertext: String,
    /// Base64 vendor metadata, at most 20 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext_metadata: Option<String>,
    /// Base64 IV, 12 or 16 bytes.
    pub initialization_vector: String,
    /// Base64 16-byte tag.
    pub authentication_tag: String,
    /// Base64 SHA-256 over AAD ‖ metadata ‖ IV ‖ ciphertext ‖ tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext_data_integrity_value: Option<String>,
}

/// Decrypt request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecryptRequest {
    /// Request metadata.
    pub request_metadata: RequestMetadata,
    /// Base64 ciphertext.
    pub ciphertext: String,
    /// Base64 vendor metadata from the encrypt response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext_metadata: Option<String>,
    /// `AES_GCM`.
    pub encryption_algorithm: String,
    /// Base64 AAD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_authenticated_data: Option<String>,
    /// Base64 IV.
    pub initialization_vector: String,
    /// Base64 tag.
    pub authentication_tag: String,
}

/// Decrypt response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecryptResponse {
    /// Base64 plaintext.
    pub plaintext: String,
}

/// An error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// One of [`ErrorName`].
    pub error_name: String,
    /// Optional detail (printable ASCII, under 512 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// The spec's error names, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorName {
    /// 400: an input parameter is invalid.
    Validation,
    /// 400: the key or key store is disabled.
    InvalidState,
    /// 400: ciphertext, IV, AAD or tag corrupted or invalid.
    InvalidCiphertext,
    /// 400: the key does not support the operation.
    InvalidKeyUsage,
    /// 401: invalid SigV4 signature.
    AuthenticationFailed,
    /// 403: not authorized by request metadata.
    AccessDenied,
    /// 404: no such external key.
    KeyNotFound,
    /// 404: the URI path is not valid.
    InvalidUriPath,
    /// 429: request rate too high.
    Throttling,
    /// 501: operation or parameter size not supported.
    UnsupportedOperation,
    /// 503: a dependency timed out.
    DependencyTimeout,
    /// 500: generic server error.
    Internal,
}

impl ErrorName {
    /// Every error name.
    pub const ALL: [ErrorName; 12] = [
        Self::Validation,
        Self::InvalidState,
        Self::InvalidCiphertext,
        Self::InvalidKeyUsage,
        Self::AuthenticationFailed,
        Self::AccessDenied,
        Self::KeyNotFound,
        Self::InvalidUriPath,
        Self::Throttling,
        Self::UnsupportedOperation,
        Self::DependencyTimeout,
        Self::Internal,
    ];

    /// The name on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validation => "ValidationException",
            Self::InvalidState => "InvalidStateException",
            Self::InvalidCiphertext => "InvalidCiphertextException",
            Self::InvalidKeyUsage => "InvalidKeyUsageException",
            Self::AuthenticationFailed => "AuthenticationFailedException",
            Self::AccessDenied => "AccessDeniedException",
            Self::KeyNotFound => "KeyNotFoundException",
            Self::InvalidUriPath => "InvalidUriPathException",
            Self::Throttling => "ThrottlingException",
            Self::UnsupportedOperation => "UnsupportedOperationException",
            Self::DependencyTimeout => "DependencyTimeoutException",
            Self::Internal => "InternalException",
        }
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::Validation
            | Self::InvalidState
            | Self::InvalidCiphertext
            | Self::InvalidKeyUsage => 400,
            Self::AuthenticationFailed => 401,
            Self::AccessDenied => 403,
            Self::KeyNotFound | Self::InvalidUriPath => 404,
            Self::Throttling => 429,
            Self::UnsupportedOperation => 501,
            Self::DependencyTimeout => 503,
            Self::Internal => 500,
        }
    }

    /// The error with this wire name.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// Whether a client may retry (the proxy was busy or a dependency was slow).
    #[must_use]
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::Throttling | Self::DependencyTimeout | Self::Internal
        )
    }
}

/// The ciphertext data integrity value: Base64 SHA-256 over the decoded AAD (if any) ‖
/// ciphertext metadata (if any) ‖ IV ‖ ciphertext ‖ tag.
#[must_use]
pub fn cdiv(aad: &[u8], metadata: &[u8], iv: &[u8], ciphertext: &[u8], tag: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [aad, metadata, iv, ciphertext, tag] {
        h.update(part);
    }
    base64_simd::STANDARD.encode_to_string(h.finalize())
}

/// The AAD handed to the key manager for a proxy AAD and ciphertext metadata, as the spec
/// requires: 2-byte big-endian length ‖ AAD ‖ 1-byte length ‖ metadata.
#[must_use]
pub fn ekm_aad(aad: &[u8], metadata: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(aad.len() + metadata.len() + 3);
    out.extend_from_slice(&(aad.len() as u16).to_be_bytes());
    out.extend_from_slice(aad);
    out.push(metadata.len() as u8);
    out.extend_from_slice(metadata);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appendix C of the spec: its worked CDIV example must come out.
    #[test]
    fn cdiv_matches_the_spec_example() {
        let b = |s: &str| base64_simd::STANDARD.decode_to_vec(s).unwrap();
        let value = cdiv(
            b"project=nile,department=marketing",
            b"key_version=1",
            &b("HMrlRw85cAJUd5Ax"),
            &b("ghxkK1txeDNn3q8Y"),
            &b("vBxN2ncH1oEkR8WVXpmyYQ=="),
        );
        assert_eq!(value, "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc=");
    }

    #[test]
    fn error_names_round_trip_with_the_spec_statuses() {
        let table = [
            ("ValidationException", 400),
            ("InvalidStateException", 400),
            ("InvalidCiphertextException", 400),
            ("InvalidKeyUsageException", 400),
            ("AuthenticationFailedException", 401),
            ("AccessDeniedException", 403),
            ("KeyNotFoundException", 404),
            ("InvalidUriPathException", 404),
            ("ThrottlingException", 429),
            ("UnsupportedOperationException", 501),
            ("DependencyTimeoutException", 503),
            ("InternalException", 500),
        ];
        for (name, status) in table {
            let e = ErrorName::parse(name).unwrap();
            assert_eq!((e.as_str(), e.status()), (name, status));
        }
        assert_eq!(ErrorName::parse("Nope"), None);
    }

    #[test]
    fn the_spec_request_example_parses() {
        let req: EncryptRequest = serde_json::from_str(
            r#"{
            "requestMetadata": {
                "awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice",
                "kmsKeyArn": "arn:aws:kms:us-east-2:123456789012:/key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "kmsOperation": "Encrypt",
                "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
                "kmsViaService": "ebs"
            },
            "additionalAuthenticatedData": "cHJvamVjdD1uaWxlLGRlcGFydG1lbnQ9bWFya2V0aW5n",
            "plaintext": "SGVsbG8gV29ybGQh",
            "encryptionAlgorithm": "AES_GCM",
            "ciphertextDataIntegrityValueAlgorithm": "SHA_256"
        }"#,
        )
        .unwrap();
        assert_eq!(req.request_metadata.kms_operation, "Encrypt");
        assert_eq!(req.request_metadata.kms_via_service.as_deref(), Some("ebs"));
        assert_eq!(req.plaintext, "SGVsbG8gV29ybGQh");
        assert!(valid_key_id("b42c7fbf-de61-441c-ae24-123456789012"));
        assert!(!valid_key_id("a/b"));
        assert_eq!(ekm_aad(b"ab", b"m"), vec![0, 2, b'a', b'b', 1, b'm']);
    }
}
