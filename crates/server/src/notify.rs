//! Lockbox events posted to a tenant's guardian webhook: JSON over HTTPS (plain HTTP only where
//! configured), signed with the tenant's secret, retried with back-off, in the background so a
//! slow or dead webhook never holds up the request that caused the event. The transparency
//! log, not the webhook, is the record.
//!
//! Targets are checked twice: when a tenant sets its webhook (scheme, literal addresses) and
//! before every attempt, on the addresses the name resolves to then; the connection goes to
//! the address that was checked, so a name cannot be re-pointed at an internal address
//! between the check and the connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use vallum_core::iam::{Delivery, Notifier};

use crate::config::WebhooksConfig;

/// Pause before the second attempt; doubled for each further one.
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Longest response body read from a webhook (the answer is not used beyond its status).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "x-vallum-signature";

/// Posts events for one gateway.
pub struct WebhookNotifier {
    config: WebhooksConfig,
    /// The gateway's own listen address, never a webhook target.
    own: SocketAddr,
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
}

/// Why a target is refused.
fn internal(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some("a loopback address"),
        IpAddr::V4(v4) if v4.is_link_local() => {
            Some("a link-local address (where cloud metadata services live)")
        }
        IpAddr::V4(v4) if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() => {
            Some("an unspecified, broadcast or multicast address")
        }
        IpAddr::V6(v6) if v6.is_loopback() => Some("a loopback address"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("a link-local address"),
        IpAddr::V6(v6) if v6.is_unspecified() || v6.is_multicast() => {
            Some("an unspecified or multicast address")
        }
        _ => None,
    }
}

/// Why a webhook target is refused or a delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The text is not a URL.
    #[error("not a URL: {0}")]
    NotAUrl(String),
    /// Neither https nor http.
    #[error("the scheme must be https (or http where allowed)")]
    Scheme,
    /// No host in the URL.
    #[error("the URL names no host")]
    NoHost,
    /// http:// while only https:// is allowed.
    #[error("webhooks are https:// only (set [webhooks] allow_http to allow http://)")]
    HttpNotAllowed,
    /// `localhost` while internal targets are refused.
    #[error("localhost is a loopback name (set [webhooks] allow_internal to allow it)")]
    Localhost,
    /// The gateway itself.
    #[error("{0} is this gateway's own endpoint")]
    OwnEndpoint(SocketAddr),
    /// An internal address while internal targets are refused.
    #[error("{ip} is {why} (set [webhooks] allow_internal to allow it)")]
    Internal {
        /// The address.
        ip: IpAddr,
        /// What kind of internal address.
        why: &'static str,
    },
    /// The host name does not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        source: std::io::Error,
    },
    /// The host name resolves to nothing.
    #[error("{0} resolves to no address")]
    NoAddress(String),
    /// Connecting or the TLS handshake failed.
    #[error("{addr}: {source}")]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The host is not a valid TLS server name.
    #[error("{0}: not a TLS server name")]
    ServerName(String),
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// No answer in time.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The configured CA file cannot be used.
    #[error("webhooks.ca_file: {0}")]
    CaFile(String),
}

/// The parts of a webhook URL a connection needs.
#[derive(Debug)]
struct Target {
    https: bool,
    host: String,
    port: u16,
    path_and_query: String,
}

fn parse(url: &str) -> Result<Target, WebhookError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| WebhookError::NotAUrl(e.to_string()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(WebhookError::Scheme),
    };
    let host = uri
        .host()
        .ok_or(WebhookError::NoHost)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path_and_query = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    Ok(Target {
        https,
        host,
        port,
        path_and_query,
    })
}

impl WebhookNotifier {
    /// A notifier under `config`, for a gateway listening on `own`.
    pub fn new(config: WebhooksConfig, own: SocketAddr) -> Result<Self, WebhookError> {
        let ca = (!config.ca_file.is_empty()).then(|| std::path::Path::new(&config.ca_file));
        let tls = vallum_xks::tls::client_config(ca)
            .map(Arc::new)
            .map_err(|e| WebhookError::CaFile(e.to_string()))?;
        Ok(Self { config, own, tls })
    }

    /// Refuses `addr` as a target: the gateway itself always, internal addresses unless
    /// allowed.
    fn check_addr(&self, addr: SocketAddr) -> Result<(), WebhookError> {
        let own_ip = self.own.ip();
        let is_own = addr.port() == self.own.port()
            && (addr.ip() == own_ip
                || (own_ip.is_unspecified()
                    && (addr.ip().is_loopback() || addr.ip().is_unspecified())));
        if is_own {
            return Err(WebhookError::OwnEndpoint(addr));
        }
        if !self.config.allow_internal
            && let Some(why) = internal(addr.ip())
        {
            return Err(WebhookError::Internal { ip: addr.ip(), why });
        }
        Ok(())
    }

    fn check_url(&self, url: &str) -> Result<Target, WebhookError> {
        let target = parse(url)?;
        if !target.https && !self.config.allow_http {
            return Err(WebhookError::HttpNotAllowed);
        }
        if target.host.eq_ignore_ascii_case("localhost") && !self.config.allow_internal {
            return Err(WebhookError::Localhost);
        }
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            self.check_addr(SocketAddr::new(ip, target.port))?;
        }
        Ok(target)
    }

    /// One attempt: resolve, check every address, connect to the first that works, post.
    async fn attempt(
        &self,
        target: &Target,
        delivery: &Delivery,
        body: &Bytes,
    ) -> Result<u16, WebhookError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|source| WebhookError::Resolve {
                host: target.host.clone(),
                source,
            })?
            .collect();
        if addrs.is_empty() {
            return Err(WebhookError::NoAddress(target.host.clone()));
        }
        for addr in &addrs {
            self.check_addr(*addr)?;
        }
        let mut last = WebhookError::NoAddress(target.host.clone());
        for addr in addrs {
            match self.post(addr, target, delivery, body).await {
                Ok(status) => return Ok(status),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn post(
        &self,
        addr: SocketAddr,
        target: &Target,
        delivery: &Delivery,
        body: &Bytes,
    ) -> Result<u16, WebhookError> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| WebhookError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let ts = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut signed = format!("{ts}.").into_bytes();
        signed.extend_from_slice(body);
        let mac = vallum_crypto::sigv4::hmac(delivery.secret.as_bytes(), &signed);
        let signature = format!(
            "t={ts},v1={}",
            mac.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let authority = if target.host.contains(':') {
            format!("[{}]:{}", target.host, target.port)
        } else {
            format!("{}:{}", target.host, target.port)
        };
        let request = http::Request::post(target.path_and_query.as_str())
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-vallum-event", delivery.event.as_str())
            .header("x-vallum-delivery", delivery.id.as_str())
            .header(SIGNATURE_HEADER, signature)
            .body(Full::new(body.clone()))
            .map_err(|e| WebhookError::Http(e.to_string()))?;
        if target.https {
            let tls = Arc::clone(&self.tls);
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|_| WebhookError::ServerName(target.host.clone()))?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|source| WebhookError::Connect { addr, source })?;
            send(hyper_util::rt::TokioIo::new(stream), request).await
        } else {
            send(hyper_util::rt::TokioIo::new(tcp), request).await
        }
    }

    async fn deliver(self: Arc<Self>, delivery: Delivery) {
        let url = delivery.url.clone();
        let target = match self.check_url(&url) {
            Ok(t) => t,
            Err(why) => {
                tracing::error!(%url, event = %delivery.event, %why, "guardian webhook refused; event not posted");
                return;
            }
        };
        let body = Bytes::from(delivery.body.to_string());
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let mut delay = FIRST_RETRY_DELAY;
        for attempt in 1..=self.config.attempts {
            let outcome = tokio::time::timeout(timeout, self.attempt(&target, &delivery, &body))
                .await
                .unwrap_or(Err(WebhookError::Timeout(self.config.timeout_ms)));
            match outcome {
                Ok(status) if (200..300).contains(&status) => {
                    tracing::debug!(%url, event = %delivery.event, attempt, "guardian webhook notified");
                    return;
                }
                // The receiver refuses this event for good (but for timeouts and throttling).
                Ok(status) if (400..500).contains(&status) && status != 408 && status != 429 => {
                    tracing::warn!(%url, event = %delivery.event, status, "guardian webhook refused the event");
                    return;
                }
                Ok(status) => {
                    tracing::warn!(%url, event = %delivery.event, status, attempt, "guardian webhook failed; will retry");
                }
                Err(err) => {
                    tracing::warn!(%url, event = %delivery.event, %err, attempt, "guardian webhook unreachable; will retry");
                }
            }
            if attempt < self.config.attempts {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
        }
        tracing::error!(%url, event = %delivery.event, delivery = %delivery.id, attempts = self.config.attempts, "guardian webhook: event given up (the transparency log holds it)");
    }
}

async fn send<I>(io: I, request: http::Request<Full<Bytes>>) -> Result<u16, WebhookError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| WebhookError::Http(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| WebhookError::Http(e.to_string()));
    let status = match response {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let _ = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await;
            Ok(status)
        }
        Err(e) => Err(e),
    };
    driver.abort();
    status
}

/// The notifier shared by the identity service: delivery runs on the runtime in the
/// background.
pub struct SharedNotifier(pub Arc<WebhookNotifier>);

impl Notifier for SharedNotifier {
    fn check_target(&self, url: &str) -> Result<(), vallum_core::error::Invalid> {
        self.0
            .check_url(url)
            .map(drop)
            .map_err(|e| vallum_core::error::Invalid(e.to_string()))
    }

    fn notify(&self, delivery: Delivery) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(Arc::clone(&self.0).deliver(delivery));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier(allow_http: bool, allow_internal: bool) -> WebhookNotifier {
        WebhookNotifier::new(
            WebhooksConfig {
                allow_http,
                allow_internal,
                ..WebhooksConfig::default()
            },
            "127.0.0.1:9000".parse().unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn internal_targets_and_plain_http_are_refused_by_default() {
        let n = notifier(false, false);
        assert!(n.check_url("https://guardians.example/hook").is_ok());
        for bad in [
            "http://guardians.example/hook",
            "https://127.0.0.1/hook",
            "https://localhost:8443/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/hook",
            "https://[::ffff:127.0.0.1]/hook",
            "https://[fe80::1]/hook",
            "https://0.0.0.0/hook",
            "https://224.0.0.1/hook",
            "ftp://guardians.example/hook",
        ] {
            assert!(n.check_url(bad).is_err(), "{bad} must be refused");
        }
        let lenient = notifier(true, true);
        assert!(lenient.check_url("http://127.0.0.1:8080/hook").is_ok());
        // The gateway's own endpoint is never a target.
        let err = lenient
            .check_url("http://127.0.0.1:9000/admin/v1/tenants")
            .unwrap_err();
        assert!(matches!(err, WebhookError::OwnEndpoint(_)), "{err}");
        assert!(err.to_string().contains("own endpoint"), "{err}");
    }
}
