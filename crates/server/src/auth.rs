//! Credential lookup for SigV4/SigV2 verification (done by s3s). Access keys are compared in
//! constant time so response timing does not reveal how much of a guessed key was right.

use s3s::auth::{S3Auth, SecretKey};
use s3s::{S3Result, s3_error};
use subtle::ConstantTimeEq;

use crate::credentials::Credentials;

/// The root credentials as the only identity (tenants and users arrive with the IAM work).
pub struct RootAuth {
    credentials: Credentials,
}

impl RootAuth {
    /// Authenticates requests signed with `credentials`.
    #[must_use]
    pub fn new(credentials: Credentials) -> Self {
        Self { credentials }
    }
}

#[async_trait::async_trait]
impl S3Auth for RootAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let known = self.credentials.access_key.as_bytes();
        if bool::from(known.ct_eq(access_key.as_bytes())) {
            Ok(SecretKey::from(self.credentials.secret_key.clone()))
        } else {
            Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn known_key_yields_secret_and_unknown_key_is_invalid() {
        let creds = Credentials {
            access_key: "VAEXAMPLE".into(),
            secret_key: "s3cr3t".into(),
        };
        let auth = RootAuth::new(creds);
        assert_eq!(
            auth.get_secret_key("VAEXAMPLE").await.unwrap().expose(),
            "s3cr3t"
        );
        let err = auth.get_secret_key("VAEXAMPLX").await.unwrap_err();
        assert_eq!(err.code().as_str(), "InvalidAccessKeyId");
        assert!(auth.get_secret_key("").await.is_err());
    }
}
