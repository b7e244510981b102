//! The HTTP entry point around the s3s service: request ids, the header-size limit, the
//! health and metrics endpoints, per-operation metrics, and a `RequestId` in every error body.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use s3s::Body;
use s3s::service::S3Service;
use vallum_types::limits::{LOW_SPACE_BYTES, MAX_REQUEST_HEADER_BYTES, PREREAD_BODY_BYTES};

use crate::metrics::SharedMetrics;

/// Failures of the S3 service itself, logged at most once per interval.
static SERVICE_ERRORS: std::sync::LazyLock<crate::conn::RateLimited> =
    std::sync::LazyLock::new(crate::conn::RateLimited::default);

/// Largest error body the wrapper will rewrite to add a RequestId.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// The service hyper drives for every connection.
#[derive(Clone)]
pub struct VallumHttp {
    pub s3: S3Service,
    pub metrics: SharedMetrics,
    pub ledger: Arc<crate::ledger::Ledger>,
    pub admin: Arc<crate::admin::Admin>,
    /// The connection is TLS.
    pub secure: bool,
    /// The client's address (for `aws:SourceIp`).
    pub peer: Option<std::net::IpAddr>,
    /// The data directory (the embedded metadata store, the log's tiles), whose free space
    /// `/health` reports.
    pub data_dir: Arc<std::path::Path>,
    /// The connection's activity: requests in progress keep it from being closed as idle.
    pub activity: Arc<crate::conn::Activity>,
    /// How long a request body may go without a byte arriving.
    pub body_timeout: std::time::Duration,
    /// The embedded metadata store, whose guard `/health` reports.
    pub embedded_meta: Option<vallum_meta::SqliteMetaStore>,
    /// Browsers' cross-origin requests.
    pub cors: Arc<crate::cors::Cors>,
    /// The identity service (SigV2 secrets, for [`Self::sigv2_bucket_slash`]).
    pub iam: Arc<vallum_core::iam::Iam>,
}

/// Request extension: whether the request came over TLS (S3 refuses customer-provided keys
/// over plain HTTP).
#[derive(Debug, Clone, Copy)]
pub struct Secure(pub bool);

fn new_request_id() -> String {
    let mut raw = [0u8; 8];
    if getrandom::fill(&mut raw).is_err() {
        return "0000000000000000".into();
    }
    raw.iter().map(|b| format!("{b:02X}")).collect()
}

fn header_bytes(req: &Request<Incoming>) -> usize {
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().to_string().len()
}

fn content_length(headers: &http::HeaderMap) -> u64 {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn is_unsigned(req: &Request<Incoming>) -> bool {
    !req.headers().contains_key(http::header::AUTHORIZATION)
        && !req
            .uri()
            .query()
            .is_some_and(|q| q.contains("X-Amz-Signature") || q.contains("Signature="))
}

pub(crate) fn xml_error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
    );
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp
}

/// Replaces a response's body (read up to `limit` bytes) by what `rewrite` makes of its text;
/// `None` from `rewrite` (or a body that is not UTF-8) keeps it as it was. A body over the
/// limit is dropped: these are short XML documents.
async fn rewrite_body(
    resp: Response<Body>,
    limit: usize,
    rewrite: impl FnOnce(&str) -> Option<String>,
) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    let Ok(collected) = http_body_util::Limited::new(body, limit).collect().await else {
        return Response::from_parts(parts, Body::empty());
    };
    let bytes = collected.to_bytes();
    let Some(rewritten) = std::str::from_utf8(&bytes).ok().and_then(rewrite) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    parts.headers.insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from(rewritten.len()),
    );
    Response::from_parts(parts, Body::from(Bytes::from(rewritten)))
}

/// Adds `<RequestId>` to an XML error body that lacks one.
async fn with_request_id(resp: Response<Body>, request_id: &str) -> Response<Body> {
    let is_xml = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/xml"));
    if !is_xml || resp.status().is_success() {
        return resp;
    }
    rewrite_body(resp, MAX_ERROR_BODY_BYTES, |text| {
        (!text.contains("<RequestId>") && text.contains("</Error>")).then(|| {
            text.replacen(
                "</Error>",
                &format!("<RequestId>{request_id}</RequestId></Error>"),
                1,
            )
        })
    })
    .await
}

/// Largest GetObjectAttributes body the wrapper will rewrite (1000 parts fit well within).
const MAX_ATTRIBUTES_BODY_BYTES: usize = 1024 * 1024;

/// GetObjectAttributes gives the ETag unquoted in its XML (unlike every other S3 document);
/// s3s 0.14 always quotes it, so the answer is corrected here.
async fn unquoted_etag(resp: Response<Body>) -> Response<Body> {
    if !resp.status().is_success() {
        return resp;
    }
    rewrite_body(resp, MAX_ATTRIBUTES_BODY_BYTES, |text| {
        Some(
            text.replacen("<ETag>\"", "<ETag>", 1)
                .replacen("\"</ETag>", "</ETag>", 1),
        )
    })
    .await
}

/// How much of a request body to read whole before handling it (see
/// [`PREREAD_BODY_BYTES`]): its declared length when small, or for an `aws-chunked` body a
/// bound on its encoding when its decoded length is small; `None` to stream it.
fn preread_limit(headers: &http::HeaderMap) -> Option<usize> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let chunked = headers
        .get(http::header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let declared = if chunked {
        // The chunk framing, signatures and trailer add a little to the decoded length.
        number("x-amz-decoded-content-length")
            .filter(|n| *n <= PREREAD_BODY_BYTES)
            .map(|n| n + PREREAD_BODY_BYTES)
    } else {
        number("content-length").filter(|n| *n > 0 && *n <= PREREAD_BODY_BYTES)
    };
    declared.and_then(|n| usize::try_from(n).ok())
}

/// The log resource a request asks for: an unsigned `GET /log/<path>` (a signed request for
/// `/log/...` is S3 for a bucket named `log`) or `GET /_vallum/log/<path>`.
fn log_path(req: &Request<Incoming>) -> Option<String> {
    if req.method() != Method::GET {
        return None;
    }
    let path = req.uri().path();
    let rest = path
        .strip_prefix("/_vallum/log/")
        .or_else(|| path.strip_prefix("/log/").filter(|_| is_unsigned(req)))?;
    Some(rest.to_owned())
}

impl VallumHttp {
    /// SigV2 clients differ on a path-style bucket request (`PUT /bucket`): botocore and the
    /// SDKs modelled on it sign the resource `/bucket/`, others `/bucket`, and s3s checks the
    /// path as sent. When the signature is of the `/bucket/` form, the request gets that path
    /// (the same bucket to s3s's router), so s3s's own check agrees; otherwise it is left as
    /// it came, for s3s to judge.
    async fn sigv2_bucket_slash(&self, req: &mut Request<Incoming>) {
        let Some((access_key, signature)) = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("AWS "))
            .and_then(|v| v.split_once(':'))
            .map(|(k, s)| (k.to_owned(), s.to_owned()))
        else {
            return;
        };
        let path = req.uri().path();
        let Some(bucket) = path.strip_prefix('/') else {
            return;
        };
        if bucket.is_empty() || bucket.contains('/') {
            return;
        }
        let Ok(Some(secret)) = self.iam.signing_secret(&access_key).await else {
            return;
        };
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let slashed = format!("{path}/");
        let sts = vallum_crypto::sigv2::string_to_sign(&vallum_crypto::sigv2::Request {
            method: req.method().as_str(),
            headers: &headers,
            path: &slashed,
            query: &query,
        });
        if !vallum_crypto::sigv2::verify(secret.as_str(), &sts, &signature) {
            return;
        }
        let rewritten = match req.uri().query() {
            Some(q) => format!("{slashed}?{q}"),
            None => slashed,
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = rewritten.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }

    /// Serves the transparency log read-only: tiles are immutable (cacheable forever), the
    /// checkpoint changes (never cached).
    fn log_resource(&self, path: &str) -> Response<Body> {
        let Some(bytes) = self.ledger.resource(path) else {
            return text(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found\n".into(),
            );
        };
        let (content_type, cache) = if path == "checkpoint" {
            ("text/plain; charset=utf-8", "no-cache")
        } else {
            (
                "application/octet-stream",
                "public, max-age=31536000, immutable",
            )
        };
        let mut resp = Response::new(Body::from(Bytes::from(bytes)));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        resp.headers_mut()
            .insert(http::header::CACHE_CONTROL, HeaderValue::from_static(cache));
        resp
    }

    async fn handle(self, mut req: Request<Incoming>) -> Response<Body> {
        let _in_flight = self.activity.request();
        let started = Instant::now();
        let request_id = new_request_id();
        let bytes_in = content_length(req.headers());
        let path = req.uri().path().to_owned();
        let (op, mut resp) = if req.method() == Method::GET
            && (path == "/_vallum/health" || (path == "/health" && is_unsigned(&req)))
        {
            // Ready unless every storage site is marked down (then 503, so a load balancer
            // sends requests elsewhere); some sites down is `degraded`: reads fail over and
            // writes go to the sites that are up, within policy.
            // A full disk (a local site, or the data directory holding the metadata and the
            // log) is `degraded` too: writes there fail with 507 until space returns.
            let sites = self.admin.site_health();
            let down = sites.iter().filter(|(_, h)| h.down).count();
            let full = sites.iter().filter(|(_, h)| h.full).count();
            let data_free = vallum_blob::free_bytes(&self.data_dir);
            let data_full = data_free.is_some_and(|n| n < LOW_SPACE_BYTES);
            let wal_lost = self
                .embedded_meta
                .as_ref()
                .is_some_and(vallum_meta::SqliteMetaStore::wal_lost);
            let (status, word) = if down == sites.len() {
                (StatusCode::SERVICE_UNAVAILABLE, "site_unavailable")
            } else if down > 0 || full > 0 || data_full || wal_lost {
                (StatusCode::OK, "degraded")
            } else {
                (StatusCode::OK, "ok")
            };
            let primary = sites.first().map(|(_, h)| h.clone()).unwrap_or_default();
            let by_id: serde_json::Map<String, serde_json::Value> = sites
                .iter()
                .map(|(id, h)| (id.clone(), serde_json::to_value(h).unwrap_or_default()))
                .collect();
            let body = serde_json::json!({
                "status": word,
                "site": primary,
                "sites": by_id,
                "data_dir": { "free_bytes": data_free, "full": data_full },
                "metadata": { "write_ahead_file_lost": wal_lost },
            })
            .to_string();
            ("Health".to_owned(), text(status, "application/json", body))
        } else if req.method() == Method::GET
            && (path == "/_vallum/metrics" || (path == "/metrics" && is_unsigned(&req)))
        {
            (
                "Metrics".to_owned(),
                text(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    self.metrics.render(),
                ),
            )
        } else if req.method() == Method::OPTIONS && !path.starts_with(crate::admin::ADMIN_PREFIX) {
            (
                "PreflightCors".to_owned(),
                self.cors.preflight(req.headers(), &path, &request_id).await,
            )
        } else if let Some(log_path) = log_path(&req) {
            ("Log".to_owned(), self.log_resource(&log_path))
        } else if path.starts_with(crate::admin::ADMIN_PREFIX) {
            (
                "Admin".to_owned(),
                self.admin
                    .handle(req, &request_id, self.secure, self.peer)
                    .await,
            )
        } else if header_bytes(&req) > MAX_REQUEST_HEADER_BYTES {
            let msg = format!(
                "Your request header section exceeds the maximum allowed size of {MAX_REQUEST_HEADER_BYTES} bytes."
            );
            (
                "Unknown".to_owned(),
                xml_error(
                    StatusCode::BAD_REQUEST,
                    "RequestHeaderSectionTooLarge",
                    &msg,
                    &request_id,
                ),
            )
        } else if let Err(refusal) = crate::precheck::check(
            req.method(),
            req.headers(),
            req.uri().query(),
            time::OffsetDateTime::now_utc(),
        ) {
            (
                "Unknown".to_owned(),
                xml_error(refusal.status, refusal.code, &refusal.message, &request_id),
            )
        } else {
            's3: {
                self.sigv2_bucket_slash(&mut req).await;
                let slot = crate::authz::OperationSlot::default();
                req.extensions_mut().insert(slot.clone());
                let bucket_slot = crate::authz::BucketSlot::default();
                req.extensions_mut().insert(bucket_slot.clone());
                // A browser's request (with Origin) gets its CORS headers after the answer.
                let browser = req
                    .headers()
                    .contains_key(http::header::ORIGIN)
                    .then(|| (req.headers().clone(), req.method().clone()));
                req.extensions_mut().insert(Secure(self.secure));
                req.extensions_mut()
                    .insert(crate::authz::RequestId(request_id.clone()));
                req.extensions_mut()
                    .insert(crate::authz::PeerAddr(self.peer));
                let timeout = self.body_timeout;
                let req = match preread_limit(req.headers()) {
                    None => req.map(|b| Body::http_body(crate::conn::TimedBody::new(b, timeout))),
                    Some(limit) => {
                        let (parts, body) = req.into_parts();
                        let body = crate::conn::TimedBody::new(body, timeout);
                        match http_body_util::Limited::new(body, limit).collect().await {
                            Ok(whole) => Request::from_parts(parts, Body::from(whole.to_bytes())),
                            Err(err) => {
                                let refusal = if err.is::<crate::conn::BodyTimedOut>() {
                                    (
                                        StatusCode::BAD_REQUEST,
                                        "RequestTimeout",
                                        "Your socket connection to the server was not read from or written to within the timeout period.",
                                    )
                                } else if err.is::<http_body_util::LengthLimitError>() {
                                    (
                                        StatusCode::BAD_REQUEST,
                                        "IncompleteBody",
                                        "The request body is longer than its declared length.",
                                    )
                                } else {
                                    (
                                        StatusCode::BAD_REQUEST,
                                        "IncompleteBody",
                                        "You did not provide the number of bytes specified by the Content-Length HTTP header.",
                                    )
                                };
                                let resp = xml_error(refusal.0, refusal.1, refusal.2, &request_id);
                                break 's3 ("Unknown".to_owned(), resp);
                            }
                        }
                    }
                };
                let resp = match self.s3.call(req).await {
                    Ok(resp) => with_request_id(resp, &request_id).await,
                    Err(err) => {
                        if let Some(suppressed) = SERVICE_ERRORS.admit() {
                            let text = crate::conn::bounded(&format!("{err:?}"));
                            tracing::error!(error = %text, suppressed, "s3 service failed");
                        }
                        xml_error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "InternalError",
                            "We encountered an internal error. Please try again.",
                            &request_id,
                        )
                    }
                };
                let op = slot
                    .0
                    .lock()
                    .ok()
                    .and_then(|s| s.clone())
                    .unwrap_or_else(|| "Unknown".into());
                let mut resp = if op == "GetObjectAttributes" {
                    unquoted_etag(resp).await
                } else {
                    resp
                };
                if let Some((headers, method)) = browser {
                    let resolved = bucket_slot.0.lock().ok().and_then(|s| s.clone());
                    self.cors
                        .decorate(&headers, &method, &path, resolved, &mut resp)
                        .await;
                }
                (op, resp)
            }
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-amz-request-id", v);
        }
        let status = resp.status().as_u16();
        let bytes_out = content_length(resp.headers());
        self.metrics
            .record(&op, status, started.elapsed(), bytes_in, bytes_out);
        tracing::debug!(request_id, operation = %op, status, elapsed_ms = started.elapsed().as_millis() as u64, "request");
        resp
    }
}

impl hyper::service::Service<Request<Incoming>> for VallumHttp {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        // hyper drops a request's future when its client goes away. Run as a task of its own,
        // a request is never stopped halfway through: a write whose metadata commit has begun
        // always goes on to its log entry (the log misses no stored change), whether the
        // client still waits for the answer or not. A body the client stops sending still
        // ends the request early, with an error, before anything is stored.
        let task = tokio::spawn(async move { this.handle(req).await });
        Box::pin(async move {
            Ok(task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "a request handler failed");
                xml_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                    &new_request_id(),
                )
            }))
        })
    }
}
