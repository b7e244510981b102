//! The AWS KMS External Key Store proxy API (aws-kms-xksproxy-api-spec, v1) in Vallum:
//! [`client::XksProvider`], a key provider that keeps key-encryption keys in any
//! spec-conforming XKS proxy, and [`proxy::Proxy`], `vallum keyd`, an XKS proxy fronting
//! Vallum's local keyring or a PKCS#11 token. [`wire`] holds the messages and error names,
//! [`tls`] the rustls configuration both ends (and the S3 endpoint) use.

pub mod client;
pub mod proxy;
pub mod tls;
pub mod wire;
