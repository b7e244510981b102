//! Validated bucket names and object keys.

use std::fmt;

use crate::limits::{MAX_BUCKET_NAME_BYTES, MAX_KEY_BYTES, MIN_BUCKET_NAME_BYTES};

/// Why a name or identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The bucket name breaks the S3 naming rules.
    #[error("invalid bucket name {0:?}: {1}")]
    InvalidBucketName(String, &'static str),
    /// The key is longer than [`MAX_KEY_BYTES`].
    #[error("object key is {0} bytes long; the limit is {MAX_KEY_BYTES}")]
    KeyTooLong(usize),
    /// The key is empty or contains a character Vallum refuses.
    #[error("invalid object key: {0}")]
    InvalidKey(&'static str),
    /// An identifier is not in its canonical form.
    #[error("invalid identifier {0:?}")]
    InvalidId(String),
}

/// A bucket name that follows the S3 general-purpose bucket naming rules.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketName(String);

impl BucketName {
    /// Checks `name` against the S3 naming rules.
    pub fn new(name: &str) -> Result<Self, NameError> {
        // A tenant's bucket is stored as `tenant:bucket`; each part follows its own rules.
        if let Some((tenant, bucket)) = name.split_once(':') {
            let tenant_ok = (3..=32).contains(&tenant.len())
                && tenant
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && tenant.as_bytes()[0].is_ascii_alphanumeric();
            if !tenant_ok {
                return Err(NameError::InvalidBucketName(
                    name.chars().take(80).collect(),
                    "the tenant part is 3 to 32 lowercase letters, digits or hyphens",
                ));
            }
            Self::new(bucket)?;
            return Ok(Self(name.to_owned()));
        }
        let bad = |why| {
            Err(NameError::InvalidBucketName(
                name.chars().take(80).collect(),
                why,
            ))
        };
        if name.len() < MIN_BUCKET_NAME_BYTES || name.len() > MAX_BUCKET_NAME_BYTES {
            return bad("must be 3 to 63 characters long");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            return bad("only lowercase letters, digits, dots and hyphens are allowed");
        }
        let first = name.as_bytes()[0];
        let last = name.as_bytes()[name.len() - 1];
        if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
            return bad("must begin and end with a letter or digit");
        }
        if name.contains("..") || name.contains(".-") || name.contains("-.") {
            return bad("dots may not be adjacent to dots or hyphens");
        }
        if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
            return bad("must not be formatted as an IP address");
        }
        if name.starts_with("xn--") || name.starts_with("sthree-") || name.ends_with("-s3alias") {
            return bad("uses a reserved prefix or suffix");
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BucketName({:?})", self.0)
    }
}

/// An object key: 1 to [`MAX_KEY_BYTES`] bytes of UTF-8 without NUL.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates `key`.
    pub fn new(key: &str) -> Result<Self, NameError> {
        if key.is_empty() {
            return Err(NameError::InvalidKey("the key is empty"));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(NameError::KeyTooLong(key.len()));
        }
        if key.contains('\0') {
            // NUL cannot be carried by XML listings and is refused by most S3 implementations.
            return Err(NameError::InvalidKey("the key contains a NUL character"));
        }
        Ok(Self(key.to_owned()))
    }

    /// The key as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "my-bucket.logs", "a1b2c3", &"a".repeat(63)] {
            assert!(BucketName::new(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "Upper",
            "-lead",
            "trail-",
            "a..b",
            "a.-b",
            "192.168.1.1",
            "xn--abc",
            "under_score",
            "bucket-s3alias",
        ] {
            assert!(BucketName::new(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn keys_are_bounded_and_nul_free() {
        assert!(ObjectKey::new("a/b/c.txt").is_ok());
        assert!(ObjectKey::new(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert_eq!(
            ObjectKey::new(&"k".repeat(MAX_KEY_BYTES + 1)),
            Err(NameError::KeyTooLong(MAX_KEY_BYTES + 1))
        );
        assert!(ObjectKey::new("").is_err());
        assert!(ObjectKey::new("a\0b").is_err());
        // Multi-byte characters count in bytes, not characters.
        assert!(ObjectKey::new(&"é".repeat(513)).is_err());
    }
}
