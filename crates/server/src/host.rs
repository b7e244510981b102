//! Virtual-hosted-style addressing. s3s's `MultiDomain` compares the Host header including its
//! port and treats any other host name as a bucket (CNAME style), which breaks path-style
//! requests to `localhost:9000` as soon as a domain is configured. Vallum matches the host
//! name without the port and falls back to path style.

use s3s::S3Result;
use s3s::host::{S3Host, VirtualHost};

/// `<bucket>.<domain>` for each configured domain; anything else is path style.
pub struct VallumHost {
    domains: Vec<String>,
}

impl VallumHost {
    /// Accepts `domains` (lower-cased, without port).
    #[must_use]
    pub fn new(domains: &[String]) -> Self {
        Self {
            domains: domains
                .iter()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }
}

/// The host name without a trailing `:port` (IPv6 literals keep their brackets).
fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (name.ends_with(']') || !name.contains(':')) =>
        {
            name
        }
        _ => host,
    }
}

impl S3Host for VallumHost {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = host_name(host).trim_end_matches('.');
        for domain in &self.domains {
            if name.eq_ignore_ascii_case(domain) {
                return Ok(VirtualHost::new(host));
            }
            if name.len() > domain.len() + 1
                && name[name.len() - domain.len()..].eq_ignore_ascii_case(domain)
                && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
            {
                let bucket = &name[..name.len() - domain.len() - 1];
                return Ok(VirtualHost::new(host).with_bucket(bucket));
            }
        }
        Ok(VirtualHost::new(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_come_from_subdomains_and_other_hosts_are_path_style() {
        let h = VallumHost::new(&["s3.example.eu".into(), "localhost".into()]);
        assert_eq!(
            h.parse_host_header("photos.s3.example.eu")
                .unwrap()
                .bucket(),
            Some("photos")
        );
        assert_eq!(
            h.parse_host_header("my.dotted.bucket.s3.example.eu:9000")
                .unwrap()
                .bucket(),
            Some("my.dotted.bucket")
        );
        assert_eq!(
            h.parse_host_header("vhost.localhost:9320")
                .unwrap()
                .bucket(),
            Some("vhost")
        );
        assert_eq!(
            h.parse_host_header("localhost:9320").unwrap().bucket(),
            None
        );
        assert_eq!(h.parse_host_header("S3.Example.EU").unwrap().bucket(), None);
        assert_eq!(
            h.parse_host_header("other.host:9000").unwrap().bucket(),
            None
        );
        assert_eq!(
            h.parse_host_header("xs3.example.eu").unwrap().bucket(),
            None
        );
        assert_eq!(h.parse_host_header("[::1]:9000").unwrap().bucket(), None);
    }
}
