//! AWS Signature Version 4 for JSON APIs that are not S3: signing requests (Vallum as an XKS
//! client, the admin CLI) and verifying them (`vallum keyd`, the admin API).
//!
//! S3 requests are verified by `s3s`; this module exists because the XKS proxy API and the
//! admin API are plain HTTP+JSON services whose servers must verify signatures themselves.
//! Canonicalisation follows the AWS General Reference: each path segment URI-encoded (the
//! caller passes the path as sent, which for these APIs holds unreserved characters only),
//! query parameters sorted, header values trimmed with inner runs of spaces collapsed, and
//! the hex SHA-256 of the payload.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Largest accepted clock difference between signer and verifier (the XKS spec: 5 minutes).
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// The signing algorithm.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// No or malformed Authorization header.
    #[error("malformed or missing Authorization header: {0}")]
    Malformed(String),
    /// The access key id is not known.
    #[error("unknown access key id")]
    UnknownAccessKey,
    /// The credential scope names another service (or region, when one is required).
    #[error("credential scope {0:?} is not accepted here")]
    WrongScope(String),
    /// The request time is too far from now.
    #[error("request time {0} is more than {MAX_CLOCK_SKEW_SECS} s from the server's clock")]
    Skewed(String),
    /// A header the scheme requires is not signed.
    #[error("header {0} must be signed")]
    Unsigned(&'static str),
    /// The signature does not match.
    #[error("the signature does not match")]
    Mismatch,
}

/// A request as the signer or verifier sees it.
#[derive(Debug, Clone)]
pub struct CanonicalInput<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path as sent (already percent-encoded where needed).
    pub path: &'a str,
    /// The raw query string (without `?`), possibly empty.
    pub query: &'a str,
    /// All request headers (any case); only the signed ones are used.
    pub headers: &'a [(String, String)],
    /// Hex SHA-256 of the body.
    pub payload_sha256: &'a str,
}

/// Hex SHA-256 of `body`.
#[must_use]
pub fn payload_hash(body: &[u8]) -> String {
    hex(&Sha256::digest(body))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 of `data` under `key`.
#[must_use]
pub fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Percent-encodes everything but unreserved characters (`A-Za-z0-9-._~`, and `/` when
/// `keep_slash`), as SigV4 canonicalisation and AWS paths need.
#[must_use]
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(k, false), uri_encode(v, false))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn normalize_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical request over `signed` (lower-case header names, sorted).
fn canonical_request(req: &CanonicalInput<'_>, signed: &[String]) -> Result<String, SigV4Error> {
    let mut canonical_headers = String::new();
    for name in signed {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| normalize_value(v))
            .collect();
        if values.is_empty() {
            return Err(SigV4Error::Malformed(format!(
                "signed header {name} is not in the request"
            )));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(req.path, true),
        canonical_query(req.query),
        canonical_headers,
        signed.join(";"),
        req.payload_sha256
    ))
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Zeroizing<Vec<u8>> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    Zeroizing::new(hmac(&k_service, b"aws4_request"))
}

fn signature(
    canonical: &str,
    amz_date: &str,
    scope: &str,
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
) -> String {
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    hex(&hmac(
        &signing_key(secret, date, region, service),
        to_sign.as_bytes(),
    ))
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time in seconds.
#[must_use]
pub fn amz_date(unix_secs: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn parse_amz_date(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, fmt)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

/// Who signs: an access key and its secret, for a region and service.
#[derive(Clone)]
pub struct Signer {
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret: Zeroizing<String>,
    /// Region in the credential scope.
    pub region: String,
    /// Service in the credential scope (`kms-xks-proxy`, `vallum-admin`).
    pub service: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("access_key", &self.access_key)
            .field("secret", &"<redacted>")
            .field("region", &self.region)
            .field("service", &self.service)
            .finish()
    }
}

impl Signer {
    /// The `Authorization` value for a request that carries `host` and `x-amz-date`
    /// (`amz_date`) headers; signs exactly `host;x-amz-date` as the XKS spec describes.
    #[must_use]
    pub fn authorization(
        &self,
        method: &str,
        path: &str,
        query: &str,
        host: &str,
        amz_date: &str,
        payload_sha256: &str,
    ) -> String {
        let headers = vec![
            ("host".to_owned(), host.to_owned()),
            ("x-amz-date".to_owned(), amz_date.to_owned()),
        ];
        let signed = vec!["host".to_owned(), "x-amz-date".to_owned()];
        let input = CanonicalInput {
            method,
            path,
            query,
            headers: &headers,
            payload_sha256,
        };
        let canonical = canonical_request(&input, &signed).expect("both headers are present");
        let date = &amz_date[..8.min(amz_date.len())];
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let sig = signature(
            &canonical,
            amz_date,
            &scope,
            &self.secret,
            date,
            &self.region,
            &self.service,
        );
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders=host;x-amz-date, Signature={sig}",
            self.access_key
        )
    }
}

/// What a verified request was signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id.
    pub access_key: String,
    /// The region of the credential scope.
    pub region: String,
}

/// The `Credential`, `SignedHeaders` and `Signature` of a SigV4 `Authorization` header.
fn split_authorization(auth: &str) -> Result<(&str, &str, &str), SigV4Error> {
    let rest = auth
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| SigV4Error::Malformed(format!("algorithm is not {ALGORITHM}")))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut sig = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = Some(v);
        }
    }
    match (credential, signed_headers, sig) {
        (Some(c), Some(h), Some(s)) => Ok((c, h, s)),
        _ => Err(SigV4Error::Malformed(
            "Credential, SignedHeaders and Signature are required".into(),
        )),
    }
}

/// The access key id a SigV4 `Authorization` header names (to look its secret up before
/// [`verify`] checks the signature), if the header is well formed.
#[must_use]
pub fn access_key_of(authorization: &str) -> Option<&str> {
    let (credential, _, _) = split_authorization(authorization).ok()?;
    credential.split('/').next().filter(|ak| !ak.is_empty())
}

/// Verifies the SigV4 `Authorization` header of `req` for `service` at `now_unix`; `secret_of`
/// looks up the secret of an access key id. The signature is compared in constant time; the
/// request time must be within [`MAX_CLOCK_SKEW_SECS`]; `host` and `x-amz-date` must be signed.
pub fn verify(
    req: &CanonicalInput<'_>,
    service: &str,
    now_unix: i64,
    secret_of: impl Fn(&str) -> Option<Zeroizing<String>>,
) -> Result<Verified, SigV4Error> {
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let auth = header("authorization")
        .ok_or_else(|| SigV4Error::Malformed("no Authorization header".into()))?;
    let (credential, signed_headers, sig) = split_authorization(auth)?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, scope_service, terminator] = parts[..] else {
        return Err(SigV4Error::Malformed("credential scope".into()));
    };
    if scope_service != service || terminator != "aws4_request" {
        return Err(SigV4Error::WrongScope(credential.to_owned()));
    }
    let signed: Vec<String> = signed_headers
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    let mut sorted = signed.clone();
    sorted.sort();
    if sorted != signed {
        return Err(SigV4Error::Malformed("SignedHeaders must be sorted".into()));
    }
    for required in ["host", "x-amz-date"] {
        if !signed.iter().any(|h| h == required) {
            return Err(SigV4Error::Unsigned(if required == "host" {
                "host"
            } else {
                "x-amz-date"
            }));
        }
    }
    let amz_date =
        header("x-amz-date").ok_or_else(|| SigV4Error::Malformed("no x-amz-date header".into()))?;
    let when = parse_amz_date(amz_date)
        .ok_or_else(|| SigV4Error::Malformed(format!("x-amz-date {amz_date:?}")))?;
    if (when - now_unix).abs() > MAX_CLOCK_SKEW_SECS {
        return Err(SigV4Error::Skewed(amz_date.to_owned()));
    }
    if !amz_date.starts_with(date) {
        return Err(SigV4Error::WrongScope(credential.to_owned()));
    }
    let secret = secret_of(access_key).ok_or(SigV4Error::UnknownAccessKey)?;
    let canonical = canonical_request(req, &signed)?;
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let expected = signature(&canonical, amz_date, &scope, &secret, date, region, service);
    if expected.as_bytes().ct_eq(sig.as_bytes()).into() {
        Ok(Verified {
            access_key: access_key.to_owned(),
            region: region.to_owned(),
        })
    } else {
        Err(SigV4Error::Mismatch)
    }
}

/// [`verify`] for an HTTP request: its method, path, query and headers (the host taken from
/// the URI authority when HTTP/2 carries it as `:authority`) and the SHA-256 of `body`.
pub fn verify_http(
    parts: &http::request::Parts,
    body: &[u8],
    service: &str,
    now_unix: i64,
    secret_of: impl Fn(&str) -> Option<Zeroizing<String>>,
) -> Result<Verified, SigV4Error> {
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    if !parts.headers.contains_key(http::header::HOST)
        && let Some(a) = parts.uri.authority()
    {
        headers.push(("host".into(), a.to_string()));
    }
    let hash = payload_hash(body);
    verify(
        &CanonicalInput {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers: &headers,
            payload_sha256: &hash,
        },
        service,
        now_unix,
        secret_of,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_key_is_read_from_a_well_formed_header_only() {
        let good = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(access_key_of(good), Some("AKIDEXAMPLE"));
        assert_eq!(access_key_of("AWS4-HMAC-SHA256 Credential=AKID/x"), None);
        assert_eq!(access_key_of("Basic dXNlcjpwYXNz"), None);
        let empty = "AWS4-HMAC-SHA256 Credential=/20150830/us-east-1/s/aws4_request, SignedHeaders=host, Signature=abc";
        assert_eq!(access_key_of(empty), None);
    }

    /// The AWS General Reference's `get-vanilla` example (service `service`, region
    /// `us-east-1`, 2015-08-30 12:36:00 UTC, the documented example secret): its published
    /// signature must come out.
    #[test]
    fn reproduces_the_aws_get_vanilla_example() {
        let signer = Signer {
            access_key: "AKIDEXAMPLE".into(),
            secret: Zeroizing::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            region: "us-east-1".into(),
            service: "service".into(),
        };
        let auth = signer.authorization(
            "GET",
            "/",
            "",
            "example.amazonaws.com",
            "20150830T123600Z",
            &payload_hash(b""),
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    fn signed_request(body: &[u8], when: i64) -> Vec<(String, String)> {
        let signer = Signer {
            access_key: "AK1".into(),
            secret: Zeroizing::new("s3cr3t".into()),
            region: "eu-west-3".into(),
            service: "kms-xks-proxy".into(),
        };
        let date = amz_date(when);
        let auth = signer.authorization(
            "POST",
            "/kms/xks/v1/health",
            "",
            "keys.example:8443",
            &date,
            &payload_hash(body),
        );
        vec![
            ("Host".into(), "keys.example:8443".into()),
            ("X-Amz-Date".into(), date),
            ("Authorization".into(), auth),
            ("Content-Type".into(), "application/json".into()),
        ]
    }

    fn check(headers: &[(String, String)], body: &[u8], now: i64) -> Result<Verified, SigV4Error> {
        let hash = payload_hash(body);
        verify(
            &CanonicalInput {
                method: "POST",
                path: "/kms/xks/v1/health",
                query: "",
                headers,
                payload_sha256: &hash,
            },
            "kms-xks-proxy",
            now,
            |ak| (ak == "AK1").then(|| Zeroizing::new("s3cr3t".to_owned())),
        )
    }

    #[test]
    fn verifies_its_own_signature_and_refuses_every_alteration() {
        let now = 1_700_000_000;
        let body = br#"{"requestMetadata":{}}"#;
        let h = signed_request(body, now);
        assert_eq!(check(&h, body, now + 10).unwrap().region, "eu-west-3");
        assert_eq!(
            check(&h, b"{}", now).unwrap_err(),
            SigV4Error::Mismatch,
            "another body"
        );
        assert!(matches!(
            check(&h, body, now + 301),
            Err(SigV4Error::Skewed(_))
        ));
        let mut other_host = h.clone();
        other_host[0].1 = "evil.example".into();
        assert_eq!(check(&other_host, body, now), Err(SigV4Error::Mismatch));
        let mut other_key = h.clone();
        other_key[2].1 = other_key[2].1.replace("AK1/", "AK2/");
        assert_eq!(
            check(&other_key, body, now),
            Err(SigV4Error::UnknownAccessKey)
        );
        let mut other_service = h.clone();
        other_service[2].1 = other_service[2].1.replace("kms-xks-proxy", "s3");
        assert!(matches!(
            check(&other_service, body, now),
            Err(SigV4Error::WrongScope(_))
        ));
        let mut no_auth = h.clone();
        no_auth.remove(2);
        assert!(matches!(
            check(&no_auth, body, now),
            Err(SigV4Error::Malformed(_))
        ));
        let mut flipped = h;
        let sig_at = flipped[2].1.len() - 1;
        let last = flipped[2].1.as_bytes()[sig_at];
        flipped[2]
            .1
            .replace_range(sig_at.., if last == b'0' { "1" } else { "0" });
        assert_eq!(check(&flipped, body, now), Err(SigV4Error::Mismatch));
    }
}
