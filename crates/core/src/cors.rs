//! A bucket's CORS configuration (Put/Get/DeleteBucketCors) and how a browser's request is
//! matched against it, as S3 does: the first rule whose origin, method and requested headers
//! all match answers, `*` standing for any run of characters (at most one per origin).

use serde::{Deserialize, Serialize};
use vallum_types::limits::MAX_CORS_RULES;

/// Methods a rule may allow.
pub const CORS_METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "HEAD"];

/// One rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsRule {
    /// Its id, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Origins (`*` wildcards allowed, one per origin).
    pub allowed_origins: Vec<String>,
    /// Methods (GET, PUT, POST, DELETE, HEAD).
    pub allowed_methods: Vec<String>,
    /// Headers a preflight may ask for (`*` wildcards allowed), compared without case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    /// Response headers the browser may show the script.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// How long a browser may cache the preflight's answer, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<i32>,
}

/// A bucket's CORS configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// The rules, in order.
    pub rules: Vec<CorsRule>,
}

/// `pattern` (with at most one `*`, for any run of characters) matches `text`.
fn wildcard(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.len() >= head.len() + tail.len() && text.starts_with(head) && text.ends_with(tail)
        }
    }
}

impl CorsRule {
    /// Whether the rule allows `origin` to use `method` with `headers` (lower-cased names).
    #[must_use]
    pub fn allows(&self, origin: &str, method: &str, headers: &[String]) -> bool {
        self.allowed_origins.iter().any(|o| wildcard(o, origin))
            && self.allowed_methods.iter().any(|m| m == method)
            && headers.iter().all(|h| {
                self.allowed_headers
                    .iter()
                    .any(|a| wildcard(&a.to_ascii_lowercase(), h))
            })
    }

    /// What `Access-Control-Allow-Origin` says for `origin`: `*` for a rule open to every
    /// origin, else the origin itself.
    #[must_use]
    pub fn allow_origin<'a>(&'a self, origin: &'a str) -> &'a str {
        if self.allowed_origins.iter().any(|o| o == "*") {
            "*"
        } else {
            origin
        }
    }
}

impl CorsConfig {
    /// Checks the configuration as S3 does; the error is the message for `MalformedXML` (or
    /// `InvalidRequest`).
    pub fn validate(&self) -> Result<(), String> {
        if self.rules.is_empty() || self.rules.len() > MAX_CORS_RULES {
            return Err(format!(
                "a CORS configuration has 1 to {MAX_CORS_RULES} rules"
            ));
        }
        for rule in &self.rules {
            if rule.allowed_origins.is_empty() || rule.allowed_methods.is_empty() {
                return Err("every CORSRule needs an AllowedOrigin and an AllowedMethod".into());
            }
            if let Some(m) = rule
                .allowed_methods
                .iter()
                .find(|m| !CORS_METHODS.contains(&m.as_str()))
            {
                return Err(format!(
                    "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
                ));
            }
            if let Some(o) = rule
                .allowed_origins
                .iter()
                .chain(&rule.allowed_headers)
                .find(|o| o.matches('*').count() > 1)
            {
                return Err(format!(
                    "AllowedOrigin and AllowedHeader hold at most one wildcard: {o:?}"
                ));
            }
        }
        Ok(())
    }

    /// The first rule that allows the request.
    #[must_use]
    pub fn find(&self, origin: &str, method: &str, headers: &[String]) -> Option<&CorsRule> {
        self.rules
            .iter()
            .find(|r| r.allows(origin, method, headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        CorsRule {
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            allowed_methods: methods.iter().map(|s| (*s).to_owned()).collect(),
            allowed_headers: headers.iter().map(|s| (*s).to_owned()).collect(),
            ..CorsRule::default()
        }
    }

    #[test]
    fn origins_match_with_one_wildcard_anywhere() {
        let c = CorsConfig {
            rules: vec![
                rule(&["*suffix"], &["GET"], &[]),
                rule(&["start*end"], &["GET"], &[]),
                rule(&["prefix*"], &["GET"], &[]),
                rule(&["*.put"], &["PUT"], &[]),
            ],
        };
        for (origin, method, hit) in [
            ("foo.suffix", "GET", true),
            ("foo.bar", "GET", false),
            ("foo.suffix.get", "GET", false),
            ("startend", "GET", true),
            ("start12end", "GET", true),
            ("0start12end", "GET", false),
            ("prefix", "GET", true),
            ("prefix.suffix", "GET", true),
            ("bla.prefix", "GET", false),
            ("foo.suffix", "PUT", false),
            ("foo.put", "PUT", true),
        ] {
            assert_eq!(
                c.find(origin, method, &[]).is_some(),
                hit,
                "{origin} {method}"
            );
        }
    }

    #[test]
    fn requested_headers_must_all_be_allowed() {
        let c = CorsConfig {
            rules: vec![rule(&["*"], &["GET"], &["x-amz-meta-*", "Content-Type"])],
        };
        let h = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(
            c.find("a", "GET", &h(&["x-amz-meta-a", "content-type"]))
                .is_some()
        );
        assert!(c.find("a", "GET", &h(&["x-amz-date"])).is_none());
        assert_eq!(c.rules[0].allow_origin("https://a.example"), "*");
        let exact = rule(&["https://a.example"], &["GET"], &[]);
        assert_eq!(exact.allow_origin("https://a.example"), "https://a.example");
    }

    #[test]
    fn configurations_are_checked() {
        assert!(CorsConfig::default().validate().is_err());
        let ok = CorsConfig {
            rules: vec![rule(&["*.example"], &["GET", "HEAD"], &[])],
        };
        assert!(ok.validate().is_ok());
        for bad in [
            rule(&["*"], &["PATCH"], &[]),
            rule(&["*.*"], &["GET"], &[]),
            rule(&[], &["GET"], &[]),
        ] {
            assert!(CorsConfig { rules: vec![bad] }.validate().is_err());
        }
    }
}
