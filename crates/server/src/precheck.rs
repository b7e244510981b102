//! Checks made on an S3 request's head before it reaches `s3s`, for what `s3s` leaves out:
//! SigV2 header-signed requests must carry a date within S3's 15-minute skew (a captured
//! request cannot be replayed later), SigV4 presigned URLs may not outlive S3's 7-day maximum,
//! and a request document (XML or a JSON policy) larger than its limit is refused from its
//! `Content-Length`, before a byte of it is read.

use http::HeaderMap;
use time::OffsetDateTime;
use vallum_core::iam::policy::MAX_POLICY_BYTES;
use vallum_types::limits::MAX_XML_BODY_BYTES;

/// Largest difference between a SigV2 request's date and the server's clock (S3's).
pub const MAX_SIGV2_SKEW_SECS: i64 = 15 * 60;
/// Longest validity of a SigV4 presigned URL, `X-Amz-Expires` (S3's: 7 days).
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 604_800;

/// Why a request was refused before its signature was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: http::StatusCode,
    /// S3 error code.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

fn refuse(status: http::StatusCode, code: &'static str, message: String) -> Refusal {
    Refusal {
        status,
        code,
        message,
    }
}

/// A date as SigV2 clients send it: RFC 1123 (or the other HTTP date forms), or the ISO 8601
/// basic form `20130524T000000Z` some clients put in `x-amz-date`.
fn parse_date(text: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = httpdate::parse_http_date(text) {
        return Some(OffsetDateTime::from(t));
    }
    let basic = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(text, basic)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

/// Query parameters naming a subresource whose PUT or POST body is an XML document (or, for
/// `policy`, JSON) rather than object data.
const DOCUMENT_SUBRESOURCES: &[&str] = &[
    "acl",
    "accelerate",
    "analytics",
    "cors",
    "delete",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "tagging",
    "versioning",
    "website",
];

/// The largest body a request may send, when it sends a document: `MAX_POLICY_BYTES` for a
/// bucket policy, `MAX_XML_BODY_BYTES` for other documents (CompleteMultipartUpload included).
fn document_limit(method: &http::Method, query: &str) -> Option<(usize, &'static str)> {
    if method != http::Method::PUT && method != http::Method::POST {
        return None;
    }
    let mut upload_id = false;
    let mut part_number = false;
    let mut document = None;
    for (name, _) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "policy" => document = Some((MAX_POLICY_BYTES, "MalformedPolicy")),
            "uploadId" => upload_id = true,
            "partNumber" => part_number = true,
            other if DOCUMENT_SUBRESOURCES.contains(&other) && document.is_none() => {
                document = Some((MAX_XML_BODY_BYTES, "MaxMessageLengthExceeded"));
            }
            _ => {}
        }
    }
    // POST ?uploadId= completes an upload with an XML part list; PUT ?partNumber&uploadId is
    // object data.
    if document.is_none() && upload_id && !part_number && method == http::Method::POST {
        document = Some((MAX_XML_BODY_BYTES, "MaxMessageLengthExceeded"));
    }
    document
}

/// Checks `headers` and `query` of an S3 request at time `now`.
pub fn check(
    method: &http::Method,
    headers: &HeaderMap,
    query: Option<&str>,
    now: OffsetDateTime,
) -> Result<(), Refusal> {
    if let Some((limit, code)) = query.and_then(|q| document_limit(method, q)) {
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(refuse(
                http::StatusCode::BAD_REQUEST,
                code,
                format!("The request document is larger than the {limit} bytes allowed."),
            ));
        }
    }
    let sigv2_header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS "));
    if sigv2_header {
        // x-amz-date takes precedence over Date, as in SigV2's string to sign.
        let when = headers
            .get("x-amz-date")
            .or_else(|| headers.get(http::header::DATE))
            .and_then(|v| v.to_str().ok())
            .and_then(parse_date);
        let Some(when) = when else {
            return Err(refuse(
                http::StatusCode::FORBIDDEN,
                "AccessDenied",
                "AWS authentication requires a valid Date or x-amz-date header".into(),
            ));
        };
        if (now - when).whole_seconds().abs() > MAX_SIGV2_SKEW_SECS {
            return Err(refuse(
                http::StatusCode::FORBIDDEN,
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.".into(),
            ));
        }
    }
    if let Some(query) = query {
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            // A presigned URL that never was, or no longer is, valid: 403, as S3 answers.
            if name == "X-Amz-Expires" {
                match value.parse::<i64>() {
                    Ok(secs) if secs < 0 => {
                        return Err(refuse(
                            http::StatusCode::FORBIDDEN,
                            "AccessDenied",
                            "Request has expired".into(),
                        ));
                    }
                    Ok(secs) if secs.unsigned_abs() <= MAX_PRESIGNED_EXPIRES_SECS => {}
                    _ => {
                        return Err(refuse(
                            http::StatusCode::FORBIDDEN,
                            "AuthorizationQueryParametersError",
                            format!(
                                "X-Amz-Expires must be a number of seconds no larger than {MAX_PRESIGNED_EXPIRES_SECS} (one week)"
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(date_header: &str, date: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            "AWS AKID:c2lnbmF0dXJl".parse().unwrap(),
        );
        h.insert(
            http::HeaderName::from_bytes(date_header.as_bytes()).unwrap(),
            date.parse().unwrap(),
        );
        h
    }

    #[test]
    fn sigv2_dates_outside_the_skew_are_refused() {
        let now = time::macros::datetime!(2026-12-07 12:00:00 UTC);
        assert!(
            check(
                &http::Method::GET,
                &v2("date", "Mon, 07 Dec 2026 12:14:00 GMT"),
                None,
                now
            )
            .is_ok()
        );
        assert!(
            check(
                &http::Method::GET,
                &v2("date", "Mon, 07 Dec 2026 11:46:00 GMT"),
                None,
                now
            )
            .is_ok()
        );
        assert!(
            check(
                &http::Method::GET,
                &v2("x-amz-date", "20261207T115000Z"),
                None,
                now
            )
            .is_ok()
        );
        for (header, date) in [
            ("date", "Mon, 07 Dec 2026 12:16:00 GMT"),
            ("date", "Sat, 07 Dec 2019 12:00:00 GMT"),
            ("x-amz-date", "20361207T120000Z"),
        ] {
            let err = check(&http::Method::GET, &v2(header, date), None, now).unwrap_err();
            assert_eq!(err.code, "RequestTimeTooSkewed", "{date}");
            assert_eq!(err.status, http::StatusCode::FORBIDDEN);
        }
        let mut no_date = v2("date", "x");
        no_date.remove(http::header::DATE);
        assert_eq!(
            check(&http::Method::GET, &no_date, None, now)
                .unwrap_err()
                .code,
            "AccessDenied"
        );
        assert_eq!(
            check(&http::Method::GET, &v2("date", "yesterday"), None, now)
                .unwrap_err()
                .code,
            "AccessDenied"
        );
        // SigV4 requests are s3s's to check.
        assert!(check(&http::Method::GET, &HeaderMap::new(), None, now).is_ok());
    }

    #[test]
    fn oversized_documents_are_refused_from_their_declared_length() {
        let now = OffsetDateTime::now_utc();
        let len = |n: usize| {
            let mut h = HeaderMap::new();
            h.insert(http::header::CONTENT_LENGTH, n.into());
            h
        };
        let put = http::Method::PUT;
        let post = http::Method::POST;
        let cases: &[(&http::Method, &str, usize, Option<&str>)] = &[
            (
                &put,
                "policy",
                MAX_POLICY_BYTES + 1,
                Some("MalformedPolicy"),
            ),
            (&put, "policy", MAX_POLICY_BYTES, None),
            (
                &put,
                "tagging",
                MAX_XML_BODY_BYTES + 1,
                Some("MaxMessageLengthExceeded"),
            ),
            (&post, "delete", 5 << 20, Some("MaxMessageLengthExceeded")),
            (
                &post,
                "uploadId=abc",
                5 << 20,
                Some("MaxMessageLengthExceeded"),
            ),
            (&put, "lifecycle", 1000, None),
            // Object data is not a document.
            (&put, "partNumber=1&uploadId=abc", 100 << 20, None),
            (&put, "x-id=PutObject", 100 << 20, None),
            (&post, "uploads", 0, None),
        ];
        for (method, query, n, code) in cases {
            let got = check(method, &len(*n), Some(query), now)
                .err()
                .map(|r| r.code);
            assert_eq!(got, *code, "{method} ?{query} with {n} bytes");
        }
    }

    #[test]
    fn presigned_expiry_is_at_most_a_week() {
        let now = OffsetDateTime::now_utc();
        let h = HeaderMap::new();
        assert!(
            check(
                &http::Method::GET,
                &h,
                Some("X-Amz-Expires=604800&X-Amz-Signature=x"),
                now
            )
            .is_ok()
        );
        for (bad, code) in [
            ("604801", "AuthorizationQueryParametersError"),
            ("4294967295", "AuthorizationQueryParametersError"),
            ("soon", "AuthorizationQueryParametersError"),
            ("-1", "AccessDenied"),
        ] {
            let err = check(
                &http::Method::GET,
                &h,
                Some(&format!("X-Amz-Expires={bad}")),
                now,
            )
            .unwrap_err();
            assert_eq!(err.code, code, "{bad}");
            assert_eq!(err.status, http::StatusCode::FORBIDDEN);
        }
    }
}
