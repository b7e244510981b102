//! The deployment's storage sites and the blob operations over replicas: a write is fanned out
//! to the sites the placement engine chose and acknowledged once the write quorum of copies is
//! durable; a read takes the best healthy copy and fails over to the next one, even in the
//! middle of a body (copies are byte-identical, and every encrypted segment is authenticated).

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use vallum_types::BlobId;

use crate::blob::{BlobError, BlobStore, ByteStream, SiteHealth};
use crate::journal::SiteRef;
use crate::residency::Residency;

/// Chunks buffered per replica while a write is fanned out: the slowest copy paces the write,
/// and memory stays bounded whatever the object's size.
pub const FANOUT_BUFFER_CHUNKS: usize = 4;

/// One storage site of the deployment.
#[derive(Clone)]
pub struct SiteHandle {
    /// Its id.
    pub id: String,
    /// Where its bytes are: written only through a placement decision, so only the residency
    /// module holds it; others read, delete and sweep through [`SiteHandle::store`].
    pub(in crate::residency) store: Arc<dyn BlobStore>,
    /// Its profile as log entries record it.
    pub site_ref: SiteRef,
}

impl SiteHandle {
    /// Site `id` over `store`, recorded in log entries as `site_ref`.
    pub(in crate::residency) fn new(
        id: String,
        store: Arc<dyn BlobStore>,
        site_ref: SiteRef,
    ) -> Self {
        Self {
            id,
            store,
            site_ref,
        }
    }

    /// The site's store for all but writing.
    #[must_use]
    pub fn store(&self) -> SiteStore<'_> {
        SiteStore(self.store.as_ref())
    }
}

/// A site's store for all but writing: reads, deletes and sweeps. A write takes a placement
/// decision (`Placed`), or is the repair's copy to where placement wants it.
#[derive(Clone, Copy)]
pub struct SiteStore<'a>(&'a dyn BlobStore);

impl SiteStore<'_> {
    /// Bytes `range` of blob `id`.
    ///
    /// # Errors
    /// As [`BlobStore::get`].
    pub async fn get(&self, id: BlobId, range: Range<u64>) -> Result<ByteStream, BlobError> {
        self.0.get(id, range).await
    }

    /// The size of blob `id`.
    ///
    /// # Errors
    /// As [`BlobStore::size`].
    pub async fn size(&self, id: BlobId) -> Result<u64, BlobError> {
        self.0.size(id).await
    }

    /// Deletes blob `id`.
    ///
    /// # Errors
    /// As [`BlobStore::delete`].
    pub async fn delete(&self, id: BlobId) -> Result<(), BlobError> {
        self.0.delete(id).await
    }

    /// Blobs older than `age`.
    ///
    /// # Errors
    /// As [`BlobStore::list_older_than`].
    pub async fn list_older_than(&self, age: Duration) -> Result<Vec<BlobId>, BlobError> {
        self.0.list_older_than(age).await
    }

    /// Removes temporary files older than `age`; how many.
    ///
    /// # Errors
    /// As [`BlobStore::sweep_temp`].
    pub async fn sweep_temp(&self, age: Duration) -> Result<u64, BlobError> {
        self.0.sweep_temp(age).await
    }
}

/// The sites in force (in the residency registry's order) and the facts placement judges them
/// by. Replaced as a whole when a site is added, drained or removed at run time.
#[derive(Clone)]
pub struct Topology {
    pub(crate) residency: Option<Arc<Residency>>,
    pub(crate) sites: Vec<SiteHandle>,
    /// The site this gateway prefers to read from (its local one), and where blobs recorded
    /// without a site list (written before replicas were recorded) are.
    pub(crate) primary: usize,
}

/// What a replicated write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Indices of the sites holding a durable copy, in the order the write targeted them.
    pub sites: Vec<usize>,
    /// CRC32C of the bytes stored.
    pub crc32c: u32,
}

/// The CRC32C of a stream's bytes, computed as they pass through.
pub(crate) struct CrcTap(
    Arc<std::sync::atomic::AtomicU32>,
    Arc<std::sync::atomic::AtomicU64>,
);

impl CrcTap {
    /// `data`, and the tap that holds the CRC32C and the length of what it has yielded so far.
    pub(crate) fn around(data: ByteStream) -> (ByteStream, Self) {
        let crc = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let len = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (seen, counted) = (Arc::clone(&crc), Arc::clone(&len));
        let data: ByteStream = Box::pin(data.inspect(move |item| {
            if let Ok(chunk) = item {
                let now = seen.load(std::sync::atomic::Ordering::Relaxed);
                seen.store(
                    crc32c::crc32c_append(now, chunk),
                    std::sync::atomic::Ordering::Relaxed,
                );
                counted.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }));
        (data, Self(crc, len))
    }

    /// The CRC32C so far.
    pub(crate) fn value(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The bytes yielded so far.
    pub(crate) fn len(&self) -> u64 {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A store that reports having stored other than what it was given (a short write) failed the
/// write: nothing it stored is trusted.
fn short_write(stored: u64, given: u64) -> BlobError {
    BlobError::Io(io::Error::other(format!(
        "short write: the site stored {stored} of {given} bytes"
    )))
}

impl Topology {
    /// One site, no residency: a service for tests of other layers.
    pub(crate) fn single(store: Arc<dyn BlobStore>) -> Self {
        Self {
            residency: None,
            sites: vec![SiteHandle::new(
                "local".into(),
                store,
                SiteRef {
                    id: "local".into(),
                    jurisdiction: String::new(),
                    exposures: Vec::new(),
                },
            )],
            primary: 0,
        }
    }

    /// The sites, in registry order.
    #[must_use]
    pub fn sites(&self) -> &[SiteHandle] {
        &self.sites
    }

    /// The residency facts, when placement is configured.
    #[must_use]
    pub fn residency(&self) -> Option<&Residency> {
        self.residency.as_deref()
    }

    /// The index of site `id`.
    #[must_use]
    pub fn index(&self, id: &str) -> Option<usize> {
        self.sites.iter().position(|s| s.id == id)
    }

    /// The primary (local) site.
    #[must_use]
    pub fn primary(&self) -> &SiteHandle {
        &self.sites[self.primary]
    }

    /// The sites a recorded list names that this topology has (empty list: the primary).
    pub(crate) fn holders(&self, sites: &[String]) -> Vec<usize> {
        if sites.is_empty() {
            return vec![self.primary];
        }
        sites.iter().filter_map(|id| self.index(id)).collect()
    }

    /// The ids of a recorded list as stored (the primary spelled out for legacy rows).
    pub(crate) fn ids_of(&self, indices: &[usize]) -> Vec<String> {
        indices.iter().map(|&i| self.sites[i].id.clone()).collect()
    }

    /// The order to read a blob held on `sites` in: sites that are up before those marked
    /// down, the primary first, then as recorded (best first).
    pub(crate) fn read_order(&self, sites: &[String]) -> Vec<usize> {
        self.best_first(self.holders(sites))
    }

    /// `sites` (indices) reordered as reads try them: up before down, the primary first,
    /// otherwise as given.
    pub(crate) fn best_first(&self, mut sites: Vec<usize>) -> Vec<usize> {
        sites.sort_by_key(|&i| (self.sites[i].store.health().down, i != self.primary));
        sites
    }

    /// The site entries record for a read of a blob held on `sites`: the one tried first.
    pub(crate) fn read_ref(&self, sites: &[String]) -> SiteRef {
        let i = self
            .read_order(sites)
            .first()
            .copied()
            .unwrap_or(self.primary);
        self.sites[i].site_ref.clone()
    }

    /// The health of site `i` as its store sees it.
    #[must_use]
    pub fn health(&self, i: usize) -> SiteHealth {
        self.sites[i].store.health()
    }

    /// Site `i`'s health with its free space, for reports: a system call per local site, so
    /// not for the data path (which asks [`Self::health`]).
    #[must_use]
    pub fn health_report(&self, i: usize) -> SiteHealth {
        let mut h = self.health(i);
        h.free_bytes = self.sites[i].store.free_bytes();
        h.full = h
            .free_bytes
            .is_some_and(|n| n < vallum_types::limits::LOW_SPACE_BYTES);
        h
    }

    /// Streams `data` to every site in `targets` at once; returns once every copy is durable
    /// or failed, with the copies that are durable when at least `quorum` are. With fewer, no
    /// copy is kept. A failing input stream fails every copy (`BlobError::Source`).
    pub(in crate::residency) async fn put_replicas(
        &self,
        blob: BlobId,
        data: ByteStream,
        targets: &[usize],
        quorum: usize,
    ) -> Result<Written, BlobError> {
        let quorum = quorum.clamp(1, targets.len().max(1));
        if let [only] = targets {
            return self.put_one(blob, data, *only).await;
        }
        let mut senders = Vec::with_capacity(targets.len());
        let mut puts = Vec::with_capacity(targets.len());
        for &t in targets {
            let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(FANOUT_BUFFER_CHUNKS);
            senders.push(Some(tx));
            let store = Arc::clone(&self.sites[t].store);
            let stream: ByteStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            }));
            puts.push(async move { store.put(blob, stream).await });
        }
        let feed = fan_out(data, senders, quorum);
        let (fed, results) = futures::join!(feed, futures::future::join_all(puts));
        let given = fed.as_ref().map_or(0, |(_, len)| *len);
        let mut durable = Vec::new();
        let mut failures = Vec::new();
        for (&t, result) in targets.iter().zip(results) {
            match result {
                Ok(stored) if fed.is_ok() && stored != given => {
                    if let Err(e) = self.sites[t].store.delete(blob).await {
                        tracing::warn!(site = %self.sites[t].id, %blob, error = %e, "could not remove a short write; the GC will");
                    }
                    failures.push((t, short_write(stored, given)));
                }
                Ok(_) => durable.push(t),
                Err(e) => failures.push((t, e)),
            }
        }
        let failed = match fed.map(|(crc, _)| crc) {
            Ok(crc32c) if durable.len() >= quorum => {
                for (t, e) in &failures {
                    tracing::warn!(site = %self.sites[*t].id, %blob, error = %e, "a replica could not be written; the repair will complete it");
                }
                return Ok(Written {
                    sites: durable,
                    crc32c,
                });
            }
            Ok(_) | Err(FeedError::QuorumLost) => {
                let why: Vec<String> = failures
                    .iter()
                    .map(|(t, e)| format!("site {}: {e}", self.sites[*t].id))
                    .collect();
                BlobError::Unavailable(format!(
                    "{} of {} replicas written, write quorum {quorum} ({})",
                    durable.len(),
                    targets.len(),
                    why.join("; ")
                ))
            }
            Err(FeedError::Source(e)) => BlobError::Source(e),
        };
        for t in durable {
            if let Err(e) = self.sites[t].store.delete(blob).await {
                tracing::warn!(site = %self.sites[t].id, %blob, error = %e, "could not remove a replica of a failed write; the GC will");
            }
        }
        Err(failed)
    }

    async fn put_one(
        &self,
        blob: BlobId,
        data: ByteStream,
        t: usize,
    ) -> Result<Written, BlobError> {
        let (data, crc) = CrcTap::around(data);
        let stored = self.sites[t].store.put(blob, data).await?;
        if stored != crc.len() {
            if let Err(e) = self.sites[t].store.delete(blob).await {
                tracing::warn!(site = %self.sites[t].id, %blob, error = %e, "could not remove a short write; the GC will");
            }
            return Err(short_write(stored, crc.len()));
        }
        Ok(Written {
            sites: vec![t],
            crc32c: crc.value(),
        })
    }

    /// Opens `range` of `blob`, held on `sites`, from the best copy; if a copy fails, the read
    /// goes on from the next one where the failed one stopped.
    pub(crate) async fn open(
        self: &Arc<Self>,
        sites: &[String],
        blob: BlobId,
        range: Range<u64>,
    ) -> Result<ByteStream, BlobError> {
        let order = self.read_order(sites);
        let (stream, at) = self.open_from(&order, 0, blob, range.clone()).await?;
        Ok(resuming(Resume {
            top: Arc::clone(self),
            order,
            at,
            blob,
            range,
            done: 0,
            stream: Some(stream),
        }))
    }

    async fn open_from(
        &self,
        order: &[usize],
        from: usize,
        blob: BlobId,
        range: Range<u64>,
    ) -> Result<(ByteStream, usize), BlobError> {
        let mut last: Option<BlobError> = None;
        for (k, &i) in order.iter().enumerate().skip(from) {
            match self.sites[i].store.get(blob, range.clone()).await {
                Ok(s) => return Ok((s, k)),
                Err(e) => {
                    if order.len() > 1 {
                        tracing::warn!(site = %self.sites[i].id, %blob, error = %e, "replica unreadable; trying the next");
                    }
                    // An outage says more than a missing copy: the client may retry.
                    if !matches!(last, Some(BlobError::Unavailable(_))) {
                        last = Some(e);
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            BlobError::Unavailable(format!("no configured site holds blob {blob}"))
        }))
    }

    /// Removes `blob` from every site in `sites`; the sites it could not be removed from.
    pub(crate) async fn delete_all(&self, blob: BlobId, sites: &[String]) -> Vec<String> {
        let mut left = Vec::new();
        for i in self.holders(sites) {
            if let Err(e) = self.sites[i].store.delete(blob).await {
                tracing::warn!(site = %self.sites[i].id, %blob, error = %e, "could not delete a replica; will retry");
                left.push(self.sites[i].id.clone());
            }
        }
        left
    }
}

enum FeedError {
    Source(io::Error),
    QuorumLost,
}

/// Sends every chunk of `data` to every live replica; a replica whose write failed stops
/// taking chunks. Returns the CRC32C and the length of what was sent.
async fn fan_out(
    mut data: ByteStream,
    mut senders: Vec<Option<tokio::sync::mpsc::Sender<io::Result<Bytes>>>>,
    quorum: usize,
) -> Result<(u32, u64), FeedError> {
    let mut crc = 0u32;
    let mut len = 0u64;
    while let Some(item) = data.next().await {
        match item {
            Ok(chunk) => {
                crc = crc32c::crc32c_append(crc, &chunk);
                len += chunk.len() as u64;
                let mut live = 0;
                for slot in &mut senders {
                    if let Some(tx) = slot {
                        if tx.send(Ok(chunk.clone())).await.is_ok() {
                            live += 1;
                        } else {
                            *slot = None;
                        }
                    }
                }
                if live < quorum {
                    for tx in senders.iter().flatten() {
                        let _ = tx
                            .send(Err(io::Error::other("the write quorum was lost")))
                            .await;
                    }
                    return Err(FeedError::QuorumLost);
                }
            }
            Err(e) => {
                for tx in senders.iter().flatten() {
                    let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string()))).await;
                }
                return Err(FeedError::Source(e));
            }
        }
    }
    Ok((crc, len))
}

struct Resume {
    top: Arc<Topology>,
    order: Vec<usize>,
    at: usize,
    blob: BlobId,
    range: Range<u64>,
    done: u64,
    stream: Option<ByteStream>,
}

/// The bytes of `state.stream`, continued from the next copy when it fails or ends early.
fn resuming(state: Resume) -> ByteStream {
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            let stream = st.stream.as_mut()?;
            let failure = match stream.next().await {
                Some(Ok(chunk)) => {
                    st.done += chunk.len() as u64;
                    return Some((Ok(chunk), st));
                }
                None if st.done >= st.range.end - st.range.start => return None,
                None => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "blob {} ended after {} of {} bytes",
                        st.blob,
                        st.done,
                        st.range.end - st.range.start
                    ),
                ),
                Some(Err(e)) => e,
            };
            let rest = st.range.start + st.done..st.range.end;
            let failed = st.top.sites[st.order[st.at]].id.clone();
            match st.top.open_from(&st.order, st.at + 1, st.blob, rest).await {
                Ok((next, k)) => {
                    tracing::warn!(site = %failed, next = %st.top.sites[st.order[k]].id, blob = %st.blob, error = %failure, "replica failed mid-read; continuing from the next");
                    st.stream = Some(next);
                    st.at = k;
                }
                Err(_) => {
                    st.stream = None;
                    return Some((Err(failure), st));
                }
            }
        }
    }))
}
