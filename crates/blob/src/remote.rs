//! A `BlobStore` over a remote object store — any S3-compatible endpoint or Azure Blob
//! Storage — through the `object_store` crate.
//!
//! The site sees only `<prefix>/blobs/<xx>/<blob-id>` and `<prefix>/packs/<pack-id>.pack`
//! objects holding what the service writes (ciphertext): no bucket or object name. A blob of
//! at most [`PACK_MAX_BLOB_BYTES`] goes into a pack object with the other small writes of that
//! moment ([`crate::remote_pack`]); one smaller than [`REMOTE_PART_BYTES`] is one PUT; a
//! larger one streams as a multipart upload of that part size, at most
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

use crate::pack::PACK_MAX_BLOB_BYTES;
use crate::remote_pack::{RemoteLoc, RemotePackStats, RemotePacks, site_error};

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
    packs: Arc<RemotePacks>,
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
        let prefix = Path::from(prefix);
        Self {
            packs: Arc::new(RemotePacks::new(Arc::clone(&store), &prefix, label.clone())),
            store,
            prefix,
            label,
            health: Arc::default(),
        }
    }

    /// How many pack objects and packed blobs the site holds, as far as this gateway knows.
    #[must_use]
    pub fn pack_stats(&self) -> RemotePackStats {
        self.packs.stats()
    }

    /// Runs one compaction step of the site's pack objects now (the writer also runs them
    /// every few seconds); `true` if it compacted something.
    pub async fn compact_packs(&self) -> Result<bool, BlobError> {
        self.gate()?;
        self.record(self.packs.compact_now().await)
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
        site_error(&self.label, e)
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
        self.record(self.delete_blob(id).await)
    }

    async fn list_older_than(&self, age: Duration) -> Result<Vec<BlobId>, BlobError> {
        self.gate()?;
        let listed = async {
            let mut out = self.list_before(age).await?;
            let cutoff = u64::try_from(chrono_cutoff(age)).unwrap_or(0);
            out.extend(self.packs.written_before(cutoff).await?);
            Ok(out)
        };
        self.record(listed.await)
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
                None if head.len() <= PACK_MAX_BLOB_BYTES => {
                    let len = head.len() as u64;
                    self.packs.put(id, vec![head.freeze()]).await?;
                    return Ok(len);
                }
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
    /// Where `id` lies packed: as this gateway knows, or after listing the packs again when
    /// `fresh` (another gateway's write, or a pack it compacted away).
    async fn packed(&self, id: BlobId, fresh: bool) -> Result<Option<RemoteLoc>, BlobError> {
        if fresh {
            self.packs.locate_fresh(id).await
        } else {
            self.packs.locate(id).await
        }
    }

    /// Reads `range` of packed blob `id` at `loc`, listing the packs again once if its pack
    /// object is gone; `None` if it is not packed after all.
    async fn read_packed(
        &self,
        id: BlobId,
        mut loc: RemoteLoc,
        range: Range<u64>,
    ) -> Result<Option<Bytes>, BlobError> {
        for fresh in [false, true] {
            if fresh {
                match self.packed(id, true).await? {
                    Some(again) => loc = again,
                    None => return Ok(None),
                }
            }
            if range.start > range.end || range.end > u64::from(loc.len) {
                return Err(BlobError::OutOfRange {
                    id,
                    start: range.start,
                    end: range.end,
                    size_bytes: u64::from(loc.len),
                });
            }
            if let Some(bytes) = self.packs.read(loc, range.clone()).await? {
                return Ok(Some(bytes));
            }
        }
        Err(BlobError::NotFound(id))
    }

    async fn get_range(&self, id: BlobId, range: Range<u64>) -> Result<ByteStream, BlobError> {
        if let Some(loc) = self.packed(id, false).await?
            && let Some(bytes) = self.read_packed(id, loc, range.clone()).await?
        {
            return Ok(Box::pin(futures::stream::iter(
                (!bytes.is_empty()).then_some(Ok(bytes)),
            )));
        }
        match self.get_object(id, range.clone()).await {
            Err(BlobError::NotFound(_)) => match self.packed(id, true).await? {
                Some(loc) => match self.read_packed(id, loc, range).await? {
                    Some(bytes) => Ok(Box::pin(futures::stream::iter(
                        (!bytes.is_empty()).then_some(Ok(bytes)),
                    ))),
                    None => Err(BlobError::NotFound(id)),
                },
                None => Err(BlobError::NotFound(id)),
            },
            other => other,
        }
    }

    /// Deletes `id`: its own object if it has one, else its packed copy (a tombstone).
    async fn delete_blob(&self, id: BlobId) -> Result<(), BlobError> {
        if self.packed(id, false).await?.is_some() {
            return self.packs.delete(id).await;
        }
        match self.store.head(&self.path(id)).await {
            Ok(_) => match self.store.delete(&self.path(id)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.failure(id, e)),
            },
            // Perhaps packed by another gateway.
            Err(object_store::Error::NotFound { .. }) => {
                if self.packed(id, true).await?.is_some() {
                    self.packs.delete(id).await?;
                }
                Ok(())
            }
            Err(e) => Err(self.failure(id, e)),
        }
    }

    async fn get_object(&self, id: BlobId, range: Range<u64>) -> Result<ByteStream, BlobError> {
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
        if let Some(loc) = self.packed(id, false).await? {
            return Ok(u64::from(loc.len));
        }
        match self.store.head(&self.path(id)).await {
            Ok(meta) => Ok(meta.size),
            Err(object_store::Error::NotFound { .. }) => match self.packed(id, true).await? {
                Some(loc) => Ok(u64::from(loc.len)),
                None => Err(BlobError::NotFound(id)),
            },
            Err(e) => Err(self.failure(id, e)),
        }
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
    use crate::pack::{PACK_HEADER_BYTES, RECORD_HEADER_BYTES};
    use crate::remote_pack::REMOTE_MERGE_MIN_PACKS;

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

    fn body(seed: usize, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + seed * 7 + 1) as u8).collect()
    }

    async fn read(
        store: &RemoteBlobStore,
        id: BlobId,
        range: Range<u64>,
    ) -> Result<Vec<u8>, BlobError> {
        let stream = store.get(id, range).await?;
        Ok(stream
            .try_fold(Vec::new(), |mut acc, chunk| async move {
                acc.extend_from_slice(&chunk);
                Ok(acc)
            })
            .await?)
    }

    async fn put(store: &RemoteBlobStore, id: BlobId, data: Vec<u8>) -> u64 {
        store
            .put(id, Box::pin(futures::stream::iter([Ok(Bytes::from(data))])))
            .await
            .unwrap()
    }

    /// Every object on the site: name and bytes.
    async fn objects(memory: &object_store::memory::InMemory) -> Vec<(String, Bytes)> {
        let metas: Vec<_> = memory.list(None).map(|m| m.unwrap()).collect().await;
        let mut out = Vec::new();
        for m in metas {
            let bytes = memory
                .get(&m.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            out.push((m.location.to_string(), bytes));
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_small_blobs_share_pack_objects_read_by_range() {
        let memory = Arc::new(object_store::memory::InMemory::new());
        let store = RemoteBlobStore::over(memory.clone(), "p", "memory".into());
        let ids: Vec<BlobId> = (0..200).map(|_| BlobId::random()).collect();
        let writes = ids.iter().enumerate().map(|(i, id)| {
            let (store, id) = (store.clone(), *id);
            tokio::spawn(async move { put(&store, id, body(i, 1000 + i)).await })
        });
        for (i, w) in futures::future::join_all(writes)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(w.unwrap(), 1000 + i as u64);
        }
        // Fewer provider objects than blobs, all pack objects named by an opaque pack id.
        let names: Vec<String> = objects(&memory).await.into_iter().map(|(n, _)| n).collect();
        assert!(
            names.len() < 200 / 4,
            "{} objects for 200 blobs",
            names.len()
        );
        assert!(
            names.iter().all(|n| n.starts_with("p/packs/")
                && n.len() == "p/packs/".len() + 21
                && n.ends_with(".pack")),
            "{names:?}"
        );
        assert_eq!(store.pack_stats().blobs, 200);
        // Read back whole, by range, and past the end.
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                read(&store, *id, 0..1000).await.unwrap(),
                body(i, 1000 + i)[..1000]
            );
        }
        assert_eq!(
            read(&store, ids[9], 10..20).await.unwrap(),
            body(9, 1009)[10..20]
        );
        assert_eq!(store.size(ids[9]).await.unwrap(), 1009);
        assert!(matches!(
            read(&store, ids[9], 10..5000).await,
            Err(BlobError::OutOfRange {
                size_bytes: 1009,
                ..
            })
        ));
        // A gateway that starts later learns the packs from the site alone.
        let other = RemoteBlobStore::over(memory.clone(), "p", "memory".into());
        assert_eq!(
            read(&other, ids[150], 0..1150).await.unwrap(),
            body(150, 1150)
        );
        let mut listed = other.list_older_than(Duration::ZERO).await.unwrap();
        listed.sort();
        let mut want = ids.clone();
        want.sort();
        // Written before now: what ran in the same millisecond may be left out.
        assert!(listed.len() >= 190 && listed.iter().all(|id| want.binary_search(id).is_ok()));
        // A blob just past the threshold is an object of its own.
        let large = BlobId::random();
        put(&store, large, body(1, PACK_MAX_BLOB_BYTES + 1)).await;
        let id_text = large.to_string();
        assert!(
            objects(&memory)
                .await
                .iter()
                .any(|(n, _)| *n == format!("p/blobs/{}/{id_text}", &id_text[..2]))
        );
        assert_eq!(read(&other, large, 0..5).await.unwrap(), body(1, 5));
    }

    #[tokio::test]
    async fn deleted_packed_blobs_stay_deleted_and_compaction_removes_their_bytes() {
        let memory = Arc::new(object_store::memory::InMemory::new());
        let store = RemoteBlobStore::over(memory.clone(), "p", "memory".into());
        // Distinct markers, to look for in the site's bytes afterwards.
        let marker = |i: usize| format!("marker-{i:04}-").repeat(50).into_bytes();
        let ids: Vec<BlobId> = (0..40).map(|_| BlobId::random()).collect();
        futures::stream::iter(ids.iter().enumerate())
            .for_each_concurrent(40, |(i, id)| {
                let store = &store;
                async move {
                    put(store, *id, marker(i)).await;
                }
            })
            .await;
        for id in ids.iter().skip(8) {
            store.delete(*id).await.unwrap();
        }
        for id in &ids[8..] {
            assert!(matches!(store.size(*id).await, Err(BlobError::NotFound(_))));
        }
        // A new gateway sees the deletions too.
        let other = RemoteBlobStore::over(memory.clone(), "p", "memory".into());
        for (i, id) in ids.iter().enumerate() {
            let got = read(&other, *id, 0..marker(i).len() as u64).await;
            if i < 8 {
                assert_eq!(got.unwrap(), marker(i));
            } else {
                assert!(matches!(got, Err(BlobError::NotFound(_))), "{i}: {got:?}");
            }
        }
        // The deleted bytes are still on the site until a compaction.
        let on_site = |objects: &[(String, Bytes)], i: usize| {
            let m = marker(i);
            objects
                .iter()
                .any(|(_, b)| b.windows(m.len()).any(|w| w == m))
        };
        assert!(on_site(&objects(&memory).await, 30));
        assert!(store.compact_packs().await.unwrap());
        let after = objects(&memory).await;
        for i in 0..40 {
            assert_eq!(on_site(&after, i), i < 8, "blob {i}");
        }
        // Both gateways still read what lives: the first from the pack it wrote, the other
        // after finding its pack gone.
        for (i, id) in ids.iter().enumerate().take(8) {
            assert_eq!(read(&store, *id, 0..10).await.unwrap(), marker(i)[..10]);
            assert_eq!(read(&other, *id, 0..10).await.unwrap(), marker(i)[..10]);
        }
        let fresh = RemoteBlobStore::over(memory.clone(), "p", "memory".into());
        assert_eq!(fresh.size(ids[3]).await.unwrap(), marker(3).len() as u64);
        assert!(matches!(
            fresh.size(ids[30]).await,
            Err(BlobError::NotFound(_))
        ));
        assert_eq!(fresh.pack_stats().blobs, 8);
        assert_eq!(fresh.pack_stats().packs, 1);
    }

    #[tokio::test]
    async fn small_pack_objects_are_merged_once_there_are_enough() {
        let memory = Arc::new(object_store::memory::InMemory::new());
        let store = RemoteBlobStore::over(memory.clone(), "p", "memory".into());
        let n = REMOTE_MERGE_MIN_PACKS + 3;
        let ids: Vec<BlobId> = (0..n).map(|_| BlobId::random()).collect();
        // One at a time: each write is a pack object of its own.
        for (i, id) in ids.iter().enumerate() {
            put(&store, *id, body(i, 500)).await;
        }
        assert_eq!(objects(&memory).await.len(), n);
        assert!(store.compact_packs().await.unwrap());
        assert_eq!(objects(&memory).await.len(), 1);
        // Nothing more to do.
        assert!(!store.compact_packs().await.unwrap());
        let fresh = RemoteBlobStore::over(memory.clone(), "p", "memory".into());
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(read(&fresh, *id, 0..500).await.unwrap(), body(i, 500));
            assert_eq!(read(&store, *id, 0..500).await.unwrap(), body(i, 500));
        }
    }

    /// The in-memory store with every PUT taking 20 ms, as a provider's do: a fault injected
    /// for tests (the in-memory store answers at once, so no race would ever show).
    #[derive(Debug)]
    struct SlowPutsFaultInjection(Arc<object_store::memory::InMemory>);

    impl std::fmt::Display for SlowPutsFaultInjection {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "slow puts over {}", self.0)
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for SlowPutsFaultInjection {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.0.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.0.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
            self.0.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
        {
            self.0.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.0.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.0.copy_opts(from, to, options).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deletions_racing_a_compaction_are_never_undone() {
        let memory = Arc::new(object_store::memory::InMemory::new());
        let slow = Arc::new(SlowPutsFaultInjection(Arc::clone(&memory)));
        let store = RemoteBlobStore::over(slow, "p", "memory".into());
        for round in 0..5 {
            let ids: Vec<BlobId> = (0..60).map(|_| BlobId::random()).collect();
            futures::stream::iter(ids.iter().enumerate())
                .for_each_concurrent(60, |(i, id)| {
                    let store = &store;
                    async move {
                        put(store, *id, body(i, 700)).await;
                    }
                })
                .await;
            // Most of the first half deleted first, so the packs are worth compacting; the
            // rest deleted while compactions run.
            for id in &ids[..25] {
                store.delete(*id).await.unwrap();
            }
            let compacting = {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..3 {
                        store.compact_packs().await.unwrap();
                    }
                })
            };
            futures::stream::iter(&ids[25..50])
                .for_each_concurrent(8, |id| {
                    let store = &store;
                    async move { store.delete(*id).await.unwrap() }
                })
                .await;
            compacting.await.unwrap();
            store.compact_packs().await.unwrap();
            // Seen by a gateway that starts now: the first 50 are gone, the last 10 read.
            let fresh = RemoteBlobStore::over(memory.clone(), "p", "memory".into());
            for (i, id) in ids.iter().enumerate() {
                let got = fresh.size(*id).await;
                if i < 50 {
                    assert!(
                        matches!(got, Err(BlobError::NotFound(_))),
                        "round {round}, {i}: {got:?}"
                    );
                } else {
                    assert_eq!(read(&fresh, *id, 0..700).await.unwrap(), body(i, 700));
                }
            }
        }
    }

    #[tokio::test]
    async fn a_pack_object_that_fails_its_checks_is_an_error_not_wrong_bytes() {
        let memory = Arc::new(object_store::memory::InMemory::new());
        let store = RemoteBlobStore::over(memory.clone(), "p", "memory".into());
        let id = BlobId::random();
        put(&store, id, body(5, 300)).await;
        let (name, bytes) = objects(&memory).await.pop().unwrap();
        // A flipped data byte: the whole blob's checksum catches it.
        let mut bad = bytes.to_vec();
        bad[PACK_HEADER_BYTES as usize + RECORD_HEADER_BYTES + 7] ^= 0x20;
        let path = Path::from(name.as_str());
        memory.put(&path, PutPayload::from(bad)).await.unwrap();
        let fresh = RemoteBlobStore::over(memory.clone(), "p", "memory".into());
        let err = read(&fresh, id, 0..300).await.unwrap_err();
        assert!(
            matches!(&err, BlobError::Io(e) if e.kind() == io::ErrorKind::InvalidData),
            "{err:?}"
        );
        // A damaged index: the pack is refused, not misread.
        let mut bad = bytes.to_vec();
        let at = bad.len() - 30;
        bad[at] ^= 0x01;
        memory.put(&path, PutPayload::from(bad)).await.unwrap();
        let fresh = RemoteBlobStore::over(memory.clone(), "p", "memory".into());
        let err = fresh.size(id).await.unwrap_err();
        assert!(err.to_string().contains("a damaged index"), "{err}");
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
