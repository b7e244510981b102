//! TLS for the server's and the CLI's outgoing HTTPS calls through `ureq` (the admin API,
//! witnesses): rustls with aws-lc-rs, trusting a given PEM bundle (a private CA) or the
//! system's roots. No process-wide default is needed or set.

use std::path::Path;
use std::sync::Arc;

/// Why no TLS configuration could be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsClientError {
    /// The bundle could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The bundle.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The bundle holds no usable certificate.
    #[error("no certificate to trust {0}")]
    NoCertificate(String),
    /// The bundle is not PEM.
    #[error("{0} is not PEM: {1}")]
    NotPem(String, String),
}

/// The TLS configuration of an HTTPS client: certificates must chain to `ca_file`'s, or to
/// the system's roots when `ca_file` is `None`.
pub fn tls_config(ca_file: Option<&Path>) -> Result<ureq::tls::TlsConfig, TlsClientError> {
    let certs: Vec<ureq::tls::Certificate<'static>> = match ca_file {
        Some(path) => {
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|source| TlsClientError::Read {
                path: shown.clone(),
                source,
            })?;
            ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c.to_owned())),
                    Ok(_) => None,
                    Err(e) => Some(Err(TlsClientError::NotPem(shown.clone(), e.to_string()))),
                })
                .collect::<Result<_, _>>()?
        }
        None => rustls_native_certs::load_native_certs()
            .certs
            .iter()
            .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
            .collect(),
    };
    if certs.is_empty() {
        return Err(TlsClientError::NoCertificate(ca_file.map_or_else(
            || "among the system's roots".to_owned(),
            |p| format!("in {}", p.display()),
        )));
    }
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .build())
}
