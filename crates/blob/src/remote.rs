//! A `BlobStore` over a remote object store — any S3-compatible endpoint or Azure Blob
//! Storage — through the `object_store` crate.
//!
//! The site sees only `<prefix>/blobs/<xx>/<blob-id>` objects holding what the service writes
//! (ciphertext): no bucket or object name. A blob smaller than [`REMOTE_PART_BYTES`] is one
//! PUT; a larger one streams as a multipart upload of that part size, at most
//! [`REMOTE_PARTS_IN_FLIGHT`] parts at a time, and becomes visible only when the upload
//! completes (it is aborted if the input fails). Retries and timeouts are bounded, so a site
//! that is down is an error within [`REMOTE_RETRY_TIMEOUT`], not a hang; after
//! [`SITE_FAILURES_BEFORE_DOWN`] failures in a row the site is marked down and requests fail
//! at once (`Unavailable`, a 503 to clients) until a next attempt is let through, after a
//! backoff doubling from [`SITE_BACKOFF_MIN`] to [`SITE_BACKOFF_MAX`]; one success clears it.

use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig, WriteMultipart,
};
use vallum_core::blob::{BlobError, BlobStore, ByteStream, SiteHealth};
use vallum_types::BlobId;

/// Part size of multipart uploads to a remote site (S3 needs at least 5 MiB but the last).
pub const REMOTE_PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts of one blob uploaded at the same time (memory per write: this many parts).
pub const REMOTE_PARTS_IN_FLIGHT: usize = 2;
/// Time limit of one request to a remote site.
pub const REMOTE_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time limit to connect to a remote site.
pub const REMOTE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of a failed request (server errors, timeouts), with backoff.
pub const REMOTE_RETRIES: usize = 3;
/// No retry is started this long after the first attempt.
pub const REMOTE_RETRY_TIMEOUT: Duration = Duration::from_secs(15);

/// Failures in a row (unreachable, timing out, server errors) that mark a site down.
pub const SITE_FAILURES_BEFORE_DOWN: u32 = 3;
/// First wait before a down site gets another attempt.
pub const SITE_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait before a down site gets another attempt.
pub const SITE_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the store has seen of the site lately.
#[derive(Debug, Default)]
struct HealthState {
    failures: u32,
    down_until: Option<Instant>,
    last_error: Option<String>,
}

/// Where an S3-compatible site is and how to sign for it.
#[derive(Clone)]
pub struct S3Site {
    /// Endpoint URL, e.g. `https://s3.fr-par.example` (path-style requests are used).
    pub endpoint: String,
    /// The bucket holding the site's blobs.
    pub bucket: String,
    /// Region of the signature scope.
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: zeroize::Zeroizing<String>,
    /// PEM CA bundle to trust for the endpoint, besides the system roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for S3Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Site")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// Where an Azure Blob Storage site is and how to sign for it.
#[derive(Clone)]
pub struct AzureSite {
    /// Storage account.
    pub account: String,
    /// Container holding the site's blobs.
    pub container: String,
    /// Account access key.
    pub access_key: zeroize::Zeroizing<String>,
    /// Endpoint URL (for sovereign clouds or an emulator); empty: the public endpoint.
    pub endpoint: String,
    /// PEM CA bundle to trust for the endpoint, besides the system roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for AzureSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureSite")
            .field("account", &self.account)
            .field("container", &self.container)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Blobs on a remote object store.
#[derive(Clone)]
pub struct RemoteBlobStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    label: String,
    health: Arc<Mutex<HealthState>>,
}

impl std::fmt::Debug for RemoteBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBlobStore")
            .field("site", &self.label)
            .field("prefix", &self.prefix.as_ref())
            .finish_non_exhaustive()
    }
}

fn config_error(e: impl std::fmt::Display) -> BlobError {
    BlobError::Io(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}

fn client_options(endpoint: &str, ca_pem: Option<&[u8]>) -> Result<ClientOptions, BlobError> {
    let mut options = ClientOptions::new()
        .with_timeout(REMOTE_REQUEST_TIMEOUT)
        .with_connect_timeout(REMOTE_CONNECT_TIMEOUT)
        .with_allow_http(endpoint.starts_with("http://"));
    if let Some(pem) = ca_pem {
        let cert = object_store::Certificate::from_pem(pem).map_err(config_error)?;
        options = options.with_root_certificate(cert);
    }
    Ok(options)
}

fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: REMOTE_RETRIES,
        retry_timeout: REMOTE_RETRY_TIMEOUT,
    }
}

impl RemoteBlobStore {
    /// A site in an S3-compatible bucket; blobs go under `prefix` (may be empty).
    pub fn s3(site: &S3Site, prefix: &str) -> Result<Self, BlobError> {
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&site.endpoint)
            .with_bucket_name(&site.bucket)
            .with_region(&site.region)
            .with_access_key_id(&site.access_key)
            .with_secret_access_key(site.secret_key.as_str())
            .with_virtual_hosted_style_request(false)
            .with_client_options(client_options(&site.endpoint, site.ca_pem.as_deref())?)
            .with_retry(retry())
            .build()
            .map_err(config_error)?;
        Ok(Self::over(
            Arc::new(store),
            prefix,
            format!("s3 {}/{}", site.endpoint, site.bucket),
        ))
    }

    /// A site in an Azure Blob Storage container; blobs go under `prefix` (may be empty).
    pub fn azure(site: &AzureSite, prefix: &str) -> Result<Self, BlobError> {
        let mut builder = object_store::azure::MicrosoftAzureBuilder::new()
            .with_account(&site.account)
            .with_container_name(&site.container)
            .with_access_key(site.access_key.as_str())
            .with_client_options(client_options(&site.endpoint, site.ca_pem.as_deref())?)
            .with_retry(retry());
        if !site.endpoint.is_empty() {
            builder = builder.with_endpoint(site.endpoint.clone());
        }
        let store = builder.build().map_err(config_error)?;
        Ok(Self::over(
            Arc::new(store),
            prefix,
            format!("azure {}/{}", site.account, site.container),
        ))
    }

    /// Blobs in any object store (the in-memory one in tests), under `prefix`.
    #[must_use]
    pub fn over(store: Arc<dyn ObjectStore>, prefix: &str, label: String) -> Self {
        Self {
            store,
            prefix: Path::from(prefix),
            label,
            health: Arc::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuses at once while the site is marked down.
    fn gate(&self) -> Result<(), BlobError> {
        let st = self.state();
        match st.down_until {
            Some(until) if Instant::now() < until => Err(BlobError::Unavailable(format!(
                "site {} is marked down after {} failures in a row (last: {}); next attempt in {} ms",
                self.label,
                st.failures,
                st.last_error.as_deref().unwrap_or("?"),
                until.saturating_duration_since(Instant::now()).as_millis()
            ))),
            _ => Ok(()),
        }
    }

    /// Counts an outcome: any answer from the site clears its record, an outage adds to it.
    fn record<T>(&self, outcome: Result<T, BlobError>) -> Result<T, BlobError> {
        let mut st = self.state();
        match &outcome {
            Err(BlobError::Unavailable(why)) => {
                st.failures += 1;
                st.last_error = Some(why.clone());
                if st.failures >= SITE_FAILURES_BEFORE_DOWN {
                    let doublings = (st.failures - SITE_FAILURES_BEFORE_DOWN).min(16);
                    let wait = SITE_BACKOFF_MIN
                        .saturating_mul(1 << doublings)
                        .min(SITE_BACKOFF_MAX);
                    if st.down_until.is_none() {
                        tracing::warn!(site = %self.label, error = %why, "storage site marked down");
                    }
                    st.down_until = Some(Instant::now() + wait);
                }
            }
            Err(BlobError::Source(_)) => {}
            _ => {
                if st.down_until.is_some() {
                    tracing::info!(site = %self.label, "storage site answers again");
                }
                *st = HealthState::default();
            }
        }
        outcome
    }

    fn blobs_dir(&self) -> Path {
        self.prefix.clone().join("blobs")
    }

    fn path(&self, id: BlobId) -> Path {
        let name = id.to_string();
        self.blobs_dir().join(&name[..2]).join(name.as_str())
    }

    fn failure(&self, id: BlobId, e: object_store::Error) -> BlobError {
        match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound(id),
            other => self.site_error(other),
        }
    }

    /// Transport failures, timeouts and server errors (after retries) are outages; refusals
    /// (credentials, permissions, bad configuration) are the site answering: plain errors.
    fn site_error(&self, e: object_store::Error) -> BlobError {
        let text = format!("site {}: {e}", self.label);
        match e {
            object_store::Error::Generic { .. } | object_store::Error::JoinError { .. } => {
                BlobError::Unavailable(text)
            }
            _ => BlobError::Io(io::Error::other(text)),
        }
    }

    async fn multipart(
        &self,
        id: BlobId,
        path: &Path,
        first: Bytes,
        mut data: ByteStream,
    ) -> Result<u64, BlobError> {
        let upload = self
            .store
            .put_multipart(path)
            .await
            .map_err(|e| self.failure(id, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, REMOTE_PART_BYTES);
        let mut total = first.len() as u64;
        writer.put(first);
        loop {
            match data.next().await {
                Some(Ok(chunk)) => {
                    if let Err(e) = writer.wait_for_capacity(REMOTE_PARTS_IN_FLIGHT).await {
                        return Err(self.failure(id, e));
                    }
                    total += chunk.len() as u64;
                    writer.put(chunk);
                }
                Some(Err(e)) => {
                    // Nothing becomes visible: the upload is abandoned on the site.
                    if let Err(abort) = writer.abort().await {
                        tracing::warn!(blob = %id, error = %abort, "could not abort a remote multipart upload; the site's lifecycle rules must expire it");
                    }
                    return Err(BlobError::Source(e));
                }
                None => break,
            }
        }
        writer.finish().await.map_err(|e| self.failure(id, e))?;
        Ok(total)
    }
}

#[async_trait::async_trait]
impl BlobStore for RemoteBlobStore {
    async fn put(&self, id: BlobId, data: ByteStream) -> Result<u64, BlobError> {
        self.gate()?;
        self.record(self.put_blob(id, data).await)
    }

    async fn get(&self, id: BlobId, range: Range<u64>) -> Result<ByteStream, BlobError> {
        self.gate()?;
        self.record(self.get_range(id, range).await)
    }

    async fn size(&self, id: BlobId) -> Result<u64, BlobError> {
        self.gate()?;
        self.record(self.head_size(id).await)
    }

    async fn delete(&self, id: BlobId) -> Result<(), BlobError> {
        self.gate()?;
        let outcome = match self.store.delete(&self.path(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failure(id, e)),
        };
        self.record(outcome)
    }

    async fn list_older_than(&self, age: Duration) -> Result<Vec<BlobId>, BlobError> {
        self.gate()?;
        self.record(self.list_before(age).await)
    }

    async fn sweep_temp(&self, _age: Duration) -> Result<u64, BlobError> {
        // A remote site keeps no temporary blobs: small blobs are single PUTs and a failed
        // multipart upload is aborted at once. An upload abandoned by a crash is invisible and
        // is expired by the site bucket's lifecycle rule (AbortIncompleteMultipartUpload),
        // which the object_store API cannot list.
        Ok(0)
    }

    fn health(&self) -> SiteHealth {
        let st = self.state();
        let now = Instant::now();
        let waiting = st.down_until.filter(|until| *until > now);
        SiteHealth {
            down: waiting.is_some(),
            consecutive_failures: st.failures,
            last_error: st.last_error.clone(),
            next_attempt_in_ms: waiting
                .map(|until| u64::try_from((until - now).as_millis()).unwrap_or(u64::MAX)),
            ..SiteHealth::default()
        }
    }
}

impl RemoteBlobStore {
    async fn put_blob(&self, id: BlobId, mut data: ByteStream) -> Result<u64, BlobError> {
        let path = self.path(id);
        // Gather up to one part: a small blob is a single (atomic) PUT.
        let mut head = BytesMut::new();
        while head.len() < REMOTE_PART_BYTES {
            match data.next().await {
                Some(Ok(chunk)) => head.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(BlobError::Source(e)),
                None => {
                    let len = head.len() as u64;
                    self.store
                        .put(&path, PutPayload::from(head.freeze()))
                        .await
                        .map_err(|e| self.failure(id, e))?;
                    return Ok(len);
                }
            }
        }
        self.multipart(id, &path, head.freeze(), data).await
    }

    /// One ranged GET; the answer carries the blob's size, so the range is checked against
    /// it without a HEAD first (a HEAD only tells a missing blob from a bad range when the
    /// GET fails, and answers an empty range).
    async fn get_range(&self, id: BlobId, range: Range<u64>) -> Result<ByteStream, BlobError> {
        let out_of_range = |size_bytes: u64| BlobError::OutOfRange {
            id,
            start: range.start,
            end: range.end,
            size_bytes,
        };
        if range.is_empty() {
            let size = self.head_size(id).await?;
            if range.start > size {
                return Err(out_of_range(size));
            }
            return Ok(Box::pin(futures::stream::empty()));
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&self.path(id), options).await {
            Ok(result) => result,
            Err(e) => {
                // A range past the end is refused by the site (416): say which it was.
                let size = self.head_size(id).await?;
                if range.end > size {
                    return Err(out_of_range(size));
                }
                return Err(self.failure(id, e));
            }
        };
        // Sites clamp a range that runs past the end: a short blob is out of range, not a
        // short read.
        if range.end > result.meta.size || result.range != range {
            return Err(out_of_range(result.meta.size));
        }
        let label = self.label.clone();
        Ok(Box::pin(result.into_stream().map_err(move |e| {
            io::Error::other(format!("site {label}: {e}"))
        })))
    }

    async fn head_size(&self, id: BlobId) -> Result<u64, BlobError> {
        let meta = self
            .store
            .head(&self.path(id))
            .await
            .map_err(|e| self.failure(id, e))?;
        Ok(meta.size)
    }

    async fn list_before(&self, age: Duration) -> Result<Vec<BlobId>, BlobError> {
        let cutoff = chrono_cutoff(age);
        let mut listing = self.store.list(Some(&self.blobs_dir()));
        let mut out = Vec::new();
        while let Some(item) = listing.next().await {
            let meta = item.map_err(|e| self.site_error(e))?;
            if meta.last_modified.timestamp_millis() > cutoff {
                continue;
            }
            // Anything else under blobs/ is not ours to judge; skip it.
            if let Some(id) = meta
                .location
                .filename()
                .and_then(|name| name.parse::<BlobId>().ok())
            {
                out.push(id);
            }
        }
        Ok(out)
    }
}

/// `now - age` in ms since the epoch.
fn chrono_cutoff(age: Duration) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TestStore {
        store: RemoteBlobStore,
    }

    impl std::ops::Deref for TestStore {
        type Target = RemoteBlobStore;
        fn deref(&self) -> &RemoteBlobStore {
            &self.store
        }
    }

    // The contract on object_store's in-memory store (the S3 endpoint itself is tested in
    // the end-to-end suite, against a second Vallum serving S3).
    fn make() -> TestStore {
        TestStore {
            store: RemoteBlobStore::over(
                Arc::new(object_store::memory::InMemory::new()),
                "site-a",
                "memory".into(),
            ),
        }
    }

    vallum_core::blob_conformance_tests!(make());

    #[tokio::test]
    async fn large_blobs_stream_as_multipart_and_names_stay_opaque() {
        let memory = Arc::new(object_store::memory::InMemory::new());
        let store = RemoteBlobStore::over(memory.clone(), "p", "memory".into());
        let id = BlobId::random();
        let data: Vec<u8> = (0..REMOTE_PART_BYTES * 2 + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let chunks: Vec<io::Result<Bytes>> = data
            .chunks(256 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let n = store
            .put(id, Box::pin(futures::stream::iter(chunks)))
            .await
            .unwrap();
        assert_eq!(n, data.len() as u64);
        let got: Vec<u8> = store
            .get(id, 5..data.len() as u64)
            .await
            .unwrap()
            .try_fold(Vec::new(), |mut acc, chunk| async move {
                acc.extend_from_slice(&chunk);
                Ok(acc)
            })
            .await
            .unwrap();
        assert_eq!(got, data[5..]);
        let names: Vec<String> = memory
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        let id_text = id.to_string();
        assert_eq!(names, [format!("p/blobs/{}/{id_text}", &id_text[..2])]);
    }

    #[tokio::test]
    async fn an_unreachable_site_is_marked_down_refused_at_once_then_retried_after_backoff() {
        // A real fault: nothing listens on this loopback port, connections are refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let site = S3Site {
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: "gone".into(),
            region: "us-east-1".into(),
            access_key: "AK".into(),
            secret_key: zeroize::Zeroizing::new("SK".into()),
            ca_pem: None,
        };
        let store = RemoteBlobStore::s3(&site, "").unwrap();
        let id = BlobId::random();
        assert_eq!(store.health(), SiteHealth::default());
        for _ in 0..SITE_FAILURES_BEFORE_DOWN {
            let err = store.size(id).await.unwrap_err();
            assert!(
                matches!(&err, BlobError::Unavailable(m) if !m.contains("marked down")),
                "{err}"
            );
        }
        let h = store.health();
        assert!(h.down, "{h:?}");
        assert_eq!(h.consecutive_failures, SITE_FAILURES_BEFORE_DOWN);
        assert!(
            h.last_error
                .as_deref()
                .unwrap()
                .starts_with("site s3 http://127.0.0.1:"),
            "{h:?}"
        );
        assert!(h.next_attempt_in_ms.unwrap() <= SITE_BACKOFF_MIN.as_millis() as u64);
        // Marked down: every operation is refused without touching the network.
        let started = Instant::now();
        for err in [
            store.size(id).await.unwrap_err(),
            store.get(id, 0..1).await.err().unwrap(),
            store.delete(id).await.unwrap_err(),
            store
                .put(id, Box::pin(futures::stream::empty()))
                .await
                .unwrap_err(),
        ] {
            assert!(
                err.to_string().contains("is marked down after 3 failures"),
                "{err}"
            );
        }
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
        // After the backoff one attempt goes through; it fails again and the wait doubles.
        tokio::time::sleep(SITE_BACKOFF_MIN + Duration::from_millis(50)).await;
        let err = store.size(id).await.unwrap_err();
        assert!(!err.to_string().contains("marked down"), "{err}");
        let h = store.health();
        assert_eq!(h.consecutive_failures, SITE_FAILURES_BEFORE_DOWN + 1);
        assert!(
            h.next_attempt_in_ms.unwrap() > SITE_BACKOFF_MIN.as_millis() as u64,
            "{h:?}"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let site = S3Site {
            endpoint: "https://s3.example".into(),
            bucket: "b".into(),
            region: "eu-west-3".into(),
            access_key: "AK".into(),
            secret_key: zeroize::Zeroizing::new("very-secret".into()),
            ca_pem: None,
        };
        assert!(!format!("{site:?}").contains("very-secret"));
        let az = AzureSite {
            account: "acct".into(),
            container: "c".into(),
            access_key: zeroize::Zeroizing::new("azure-secret".into()),
            endpoint: String::new(),
            ca_pem: None,
        };
        assert!(!format!("{az:?}").contains("azure-secret"));
    }
}
