//! Cross-origin requests from browsers, by each bucket's CORS configuration: the preflight
//! (`OPTIONS`, unauthenticated, answered here) and the `Access-Control-*` headers of the
//! actual request's answer, as S3 gives them.
//!
//! A browser's preflight carries no credentials, so its bucket is the one its name means
//! without them: `tenant:bucket`, else with global bucket names that name's owner's, else the
//! `default` tenant's. An actual request's bucket is the one the decision point resolved.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::http_service::xml_error;
use s3s::Body;
use s3s::host::S3Host;
use vallum_core::cors::CorsRule;
use vallum_core::iam::Iam;
use vallum_core::iam::model::{DEFAULT_TENANT, TENANT_SEPARATOR, internal_bucket};

/// Browser requests against buckets' CORS configurations.
pub struct Cors {
    iam: Arc<Iam>,
    names: Option<Arc<crate::bucket_names::BucketNames>>,
    host: Option<crate::host::VallumHost>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// The `Access-Control-*` headers of an answer under `rule` to `origin`.
fn allow(headers: &mut HeaderMap, rule: &CorsRule, origin: &str) {
    let allow_origin = rule.allow_origin(origin);
    set(headers, "access-control-allow-origin", allow_origin);
    set(
        headers,
        "access-control-allow-methods",
        &rule.allowed_methods.join(", "),
    );
    if !rule.expose_headers.is_empty() {
        set(
            headers,
            "access-control-expose-headers",
            &rule.expose_headers.join(", "),
        );
    }
    if allow_origin != "*" {
        set(headers, "access-control-allow-credentials", "true");
    }
    set(
        headers,
        "vary",
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    );
}

/// The headers a preflight asks for, lower-cased.
fn requested_headers(headers: &HeaderMap) -> Vec<String> {
    header(headers, "access-control-request-headers")
        .map(|v| {
            v.split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

impl Cors {
    /// Over the identity service (which holds the configurations), the deployment's global
    /// bucket names if any, and its virtual-host domains.
    #[must_use]
    pub fn new(
        iam: Arc<Iam>,
        names: Option<Arc<crate::bucket_names::BucketNames>>,
        domains: &[String],
    ) -> Self {
        Self {
            iam,
            names,
            host: (!domains.is_empty()).then(|| crate::host::VallumHost::new(domains)),
        }
    }

    /// The bucket name a request's Host and path give (virtual-hosted or path style).
    fn wire_bucket(&self, headers: &HeaderMap, path: &str) -> Option<String> {
        if let Some(host) = &self.host
            && let Some(h) = header(headers, "host")
            && let Ok(vh) = host.parse_host_header(h)
            && let Some(bucket) = vh.bucket()
        {
            return Some(bucket.to_owned());
        }
        let first = path.trim_start_matches('/').split('/').next()?;
        let decoded = crate::admin::percent_decode(first).unwrap_or_else(|| first.to_owned());
        (!decoded.is_empty()).then_some(decoded)
    }

    /// The internal name of the bucket a credential-less request names.
    async fn bucket_without_credentials(&self, wire: &str) -> String {
        if wire.contains(TENANT_SEPARATOR) {
            let (tenant, bucket) = wire.split_once(TENANT_SEPARATOR).unwrap_or(("", wire));
            return internal_bucket(tenant, bucket);
        }
        if let Some(names) = &self.names
            && let Ok(Some(owner)) = names.owner(wire).await
        {
            return internal_bucket(&owner, wire);
        }
        internal_bucket(DEFAULT_TENANT, wire)
    }

    /// Answers a preflight request.
    pub async fn preflight(
        &self,
        headers: &HeaderMap,
        path: &str,
        request_id: &str,
    ) -> Response<Body> {
        let (Some(origin), Some(method)) = (
            header(headers, "origin"),
            header(headers, "access-control-request-method"),
        ) else {
            return xml_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Insufficient information. Origin request header and Access-Control-Request-Method needed.",
                request_id,
            );
        };
        let Some(wire) = self.wire_bucket(headers, path) else {
            return xml_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "A CORS preflight names a bucket.",
                request_id,
            );
        };
        let internal = self.bucket_without_credentials(&wire).await;
        let Some(config) = self.iam.bucket_cors(&internal) else {
            return xml_error(
                StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: CORS is not enabled for this bucket.",
                request_id,
            );
        };
        let asked = requested_headers(headers);
        let Some(rule) = config.find(origin, method, &asked) else {
            return xml_error(
                StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
                request_id,
            );
        };
        let mut resp = Response::new(Body::empty());
        let h = resp.headers_mut();
        allow(h, rule, origin);
        if !asked.is_empty() {
            set(h, "access-control-allow-headers", &asked.join(", "));
        }
        if let Some(age) = rule.max_age_secs {
            set(h, "access-control-max-age", &age.to_string());
        }
        resp
    }

    /// Adds the `Access-Control-*` headers to the answer of a browser's actual request (one
    /// with `Origin`) when the bucket's configuration allows it; `resolved` is the bucket the
    /// decision point resolved, if it got that far. The method matched is the request's, or
    /// the one `Access-Control-Request-Method` names.
    pub async fn decorate(
        &self,
        request: &HeaderMap,
        method: &Method,
        path: &str,
        resolved: Option<String>,
        resp: &mut Response<Body>,
    ) {
        let Some(origin) = header(request, "origin") else {
            return;
        };
        let internal = match resolved {
            Some(b) => b,
            None => match self.wire_bucket(request, path) {
                Some(wire) => self.bucket_without_credentials(&wire).await,
                None => return,
            },
        };
        let Some(config) = self.iam.bucket_cors(&internal) else {
            return;
        };
        let method = header(request, "access-control-request-method").unwrap_or(method.as_str());
        if let Some(rule) = config.find(origin, method, &[]) {
            allow(resp.headers_mut(), rule, origin);
        }
    }
}
