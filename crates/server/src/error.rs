//! The one place a domain error becomes an S3 error code and HTTP status.

use s3s::{S3Error, S3ErrorCode};
use vallum_core::Error;
use vallum_types::NameError;

/// Maps a domain error to the S3 error a client expects. Internal details are logged, not sent.
pub fn to_s3(err: Error) -> S3Error {
    let code = match &err {
        Error::NoSuchBucket => S3ErrorCode::NoSuchBucket,
        Error::BucketAlreadyOwnedByYou => S3ErrorCode::BucketAlreadyOwnedByYou,
        Error::BucketNotEmpty => S3ErrorCode::BucketNotEmpty,
        Error::TooManyBuckets => S3ErrorCode::TooManyBuckets,
        Error::NoSuchKey => S3ErrorCode::NoSuchKey,
        Error::NoSuchUpload => S3ErrorCode::NoSuchUpload,
        Error::NoSuchVersion => S3ErrorCode::NoSuchVersion,
        Error::DeleteMarker { named: false, .. } => S3ErrorCode::NoSuchKey,
        Error::DeleteMarker { named: true, .. } | Error::MethodNotAllowed => {
            S3ErrorCode::MethodNotAllowed
        }
        Error::AccessDenied(_) => S3ErrorCode::AccessDenied,
        Error::InvalidBucketState(_) => S3ErrorCode::InvalidBucketState,
        Error::InvalidTag(_) => S3ErrorCode::InvalidTag,
        Error::ObjectLockConfigurationNotFound => S3ErrorCode::ObjectLockConfigurationNotFoundError,
        Error::NoSuchLifecycleConfiguration => S3ErrorCode::NoSuchLifecycleConfiguration,
        Error::NoSuchObjectLockConfiguration => S3ErrorCode::NoSuchObjectLockConfiguration,
        Error::InvalidName(NameError::InvalidBucketName(..)) => S3ErrorCode::InvalidBucketName,
        Error::InvalidName(NameError::KeyTooLong(_)) => S3ErrorCode::KeyTooLongError,
        Error::InvalidName(_) | Error::InvalidArgument(_) | Error::NoSuchKmsKey(_) => {
            S3ErrorCode::InvalidArgument
        }
        Error::InvalidRequest(_) => S3ErrorCode::InvalidRequest,
        Error::MalformedXml(_) => S3ErrorCode::MalformedXML,
        Error::InvalidPart(_) => S3ErrorCode::InvalidPart,
        Error::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
        Error::EntityTooSmall { .. } => S3ErrorCode::EntityTooSmall,
        Error::EntityTooLarge(_) => S3ErrorCode::EntityTooLarge,
        Error::BadDigest(_) => S3ErrorCode::BadDigest,
        Error::InvalidDigest(_) => S3ErrorCode::InvalidDigest,
        Error::ContentSha256Mismatch => S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
        Error::IncompleteBody { .. } | Error::ClientStream(_) => S3ErrorCode::IncompleteBody,
        Error::RequestTimeout => S3ErrorCode::RequestTimeout,
        Error::MetadataTooLarge(_) => S3ErrorCode::MetadataTooLarge,
        Error::PreconditionFailed => S3ErrorCode::PreconditionFailed,
        Error::NotModified { .. } => S3ErrorCode::NotModified,
        Error::InvalidRange => S3ErrorCode::InvalidRange,
        Error::Unavailable(_) => S3ErrorCode::ServiceUnavailable,
        Error::StorageFull(_) => S3ErrorCode::Custom("XVallumStorageFull".into()),
        Error::Blob(_) | Error::Meta(_) | Error::Integrity(_) => S3ErrorCode::InternalError,
        // What S3 answers for a disabled or pending-deletion KMS key.
        Error::KeyUnavailable(_) => S3ErrorCode::Custom("KMS.DisabledException".into()),
        // What S3 answers for a KMS key that does not exist.
        Error::KeyNotFound(_) => S3ErrorCode::Custom("KMS.NotFoundException".into()),
        Error::KeyProviderMismatch { .. } => {
            S3ErrorCode::Custom("XVallumKeyProviderMismatch".into())
        }
        Error::KeyServiceUnavailable(_) => S3ErrorCode::ServiceUnavailable,
        Error::KeyRefused(_) => S3ErrorCode::AccessDenied,
        Error::NoCompliantPlacement(_) => S3ErrorCode::Custom("XVallumNoCompliantPlacement".into()),
    };
    match &err {
        Error::Blob(_)
        | Error::Meta(_)
        | Error::Unavailable(_)
        | Error::KeyServiceUnavailable(_)
        | Error::StorageFull(_)
        | Error::Integrity(_)
        | Error::KeyProviderMismatch { .. } => {
            tracing::error!(error = %err, "request failed on the server side");
            let mut e = S3Error::with_message(code, public_message(&err));
            match err {
                Error::StorageFull(_) => e.set_status_code(http::StatusCode::INSUFFICIENT_STORAGE),
                Error::KeyProviderMismatch { .. } => {
                    e.set_status_code(http::StatusCode::INTERNAL_SERVER_ERROR);
                }
                _ => {}
            }
            e
        }
        Error::ContentSha256Mismatch | Error::KeyUnavailable(_) | Error::KeyNotFound(_) => {
            let mut e = S3Error::with_message(code, err.to_string());
            e.set_status_code(http::StatusCode::BAD_REQUEST);
            e
        }
        // A refusal by policy, not a fault: retrying cannot help, so not a 5xx.
        Error::NoCompliantPlacement(_) => {
            let mut e = S3Error::with_message(code, err.to_string());
            e.set_status_code(http::StatusCode::FORBIDDEN);
            e
        }
        Error::DeleteMarker {
            version_id,
            last_modified_ms,
            named,
        } => {
            // S3 tells the client what it hit: a delete marker, and which version.
            let message = if *named {
                "The specified method is not allowed against this resource."
            } else {
                "The specified key does not exist."
            };
            let mut e = S3Error::with_message(code, message);
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "x-amz-delete-marker",
                http::HeaderValue::from_static("true"),
            );
            if let Ok(v) = http::HeaderValue::from_str(version_id) {
                headers.insert("x-amz-version-id", v);
            }
            if *named {
                let when = crate::s3::http_date(*last_modified_ms);
                if let Ok(v) = http::HeaderValue::from_str(&when) {
                    headers.insert("last-modified", v);
                }
            }
            e.set_headers(headers);
            e
        }
        // A 304 still names the representation: its ETag and Last-Modified (RFC 9110).
        Error::NotModified {
            etag,
            last_modified_ms,
        } => {
            let mut e = S3Error::with_message(code, err.to_string());
            let mut headers = http::HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_str(&format!("\"{etag}\"")) {
                headers.insert(http::header::ETAG, v);
            }
            if let Ok(v) = http::HeaderValue::from_str(&crate::s3::http_date(*last_modified_ms)) {
                headers.insert(http::header::LAST_MODIFIED, v);
            }
            e.set_headers(headers);
            e
        }
        _ => S3Error::with_message(code, err.to_string()),
    }
}

/// An S3 error whose code s3s does not know (`InvalidRetentionPeriod`, ...), with its status.
pub fn custom_error(
    code: &'static str,
    status: http::StatusCode,
    message: impl Into<String>,
) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom(code.into()), message.into());
    e.set_status_code(status);
    e
}

fn public_message(err: &Error) -> String {
    match err {
        Error::Unavailable(_) => "The service is temporarily unavailable; please retry.".into(),
        Error::KeyServiceUnavailable(_) => {
            "The key service holding this object's key is unavailable; please retry.".into()
        }
        Error::StorageFull(_) => {
            "The server has no space left to store this request; nothing was stored.".into()
        }
        Error::KeyProviderMismatch { .. } => {
            "The object's data key is held by a key provider this deployment is not configured with; an operator must restore the key configuration.".into()
        }
        _ => "We encountered an internal error. Please try again.".into(),
    }
}

/// The S3 error for an identity or policy failure.
pub fn iam_to_s3(err: vallum_core::iam::IamError) -> S3Error {
    use vallum_core::iam::IamError;
    let code = match &err {
        IamError::MalformedPolicy(_) | IamError::PolicyTooLarge(_) => S3ErrorCode::MalformedPolicy,
        IamError::Denied(_) => S3ErrorCode::AccessDenied,
        IamError::Invalid(_) | IamError::NotFound(_) | IamError::Exists(_) => {
            S3ErrorCode::InvalidArgument
        }
        IamError::Conflict(_) => S3ErrorCode::OperationAborted,
        IamError::Meta(_) | IamError::Crypto(_) | IamError::Log(_) => {
            tracing::error!(error = %err, "identity store failed");
            return S3Error::with_message(
                S3ErrorCode::InternalError,
                "We encountered an internal error. Please try again.",
            );
        }
    };
    S3Error::with_message(code, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_domain_error_has_its_s3_code_and_status() {
        let cases: Vec<(Error, &str, u16)> = vec![
            (Error::NoSuchBucket, "NoSuchBucket", 404),
            (Error::NoSuchKey, "NoSuchKey", 404),
            (Error::NoSuchUpload, "NoSuchUpload", 404),
            (Error::BucketNotEmpty, "BucketNotEmpty", 409),
            (
                Error::BucketAlreadyOwnedByYou,
                "BucketAlreadyOwnedByYou",
                409,
            ),
            (
                Error::InvalidName(NameError::KeyTooLong(2000)),
                "KeyTooLongError",
                400,
            ),
            (Error::InvalidPart("x".into()), "InvalidPart", 400),
            (Error::InvalidPartOrder, "InvalidPartOrder", 400),
            (
                Error::EntityTooSmall {
                    part: 1,
                    size_bytes: 1,
                },
                "EntityTooSmall",
                400,
            ),
            (Error::EntityTooLarge(5), "EntityTooLarge", 400),
            (Error::BadDigest("x".into()), "BadDigest", 400),
            (Error::PreconditionFailed, "PreconditionFailed", 412),
            (
                Error::NotModified {
                    etag: "abc".into(),
                    last_modified_ms: 0,
                },
                "NotModified",
                304,
            ),
            (Error::InvalidRange, "InvalidRange", 416),
            (
                Error::IncompleteBody {
                    got_bytes: 1,
                    expected_bytes: 2,
                },
                "IncompleteBody",
                400,
            ),
            (
                Error::Unavailable("db down".into()),
                "ServiceUnavailable",
                503,
            ),
            (
                Error::StorageFull("metadata store: disk full".into()),
                "XVallumStorageFull",
                507,
            ),
            (
                Error::NoCompliantPlacement("site x: ...".into()),
                "XVallumNoCompliantPlacement",
                403,
            ),
            (
                Error::ContentSha256Mismatch,
                "XAmzContentSHA256Mismatch",
                400,
            ),
            (
                Error::KeyProviderMismatch {
                    held_by: "keyring".into(),
                    configured: "xks".into(),
                },
                "XVallumKeyProviderMismatch",
                500,
            ),
        ];
        for (err, code, status) in cases {
            let s3 = to_s3(err);
            assert_eq!(s3.code().as_str(), code);
            let got = s3
                .status_code()
                .or_else(|| s3.code().status_code())
                .unwrap()
                .as_u16();
            assert_eq!(got, status, "{code}");
        }
        let not_modified = to_s3(Error::NotModified {
            etag: "abc".into(),
            last_modified_ms: 0,
        });
        let headers = not_modified.headers().unwrap();
        assert_eq!(headers.get("etag").unwrap(), "\"abc\"");
        assert_eq!(
            headers.get("last-modified").unwrap(),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        let hidden = to_s3(Error::Unavailable("password=hunter2 at db".into()));
        assert!(
            !hidden.message().unwrap().contains("hunter2"),
            "internal details must not reach clients"
        );
    }
}
