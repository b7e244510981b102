//! The `BlobStore` trait: where object bytes live. A blob is immutable once written and is
//! named by an opaque [`BlobId`], so a site never learns bucket or object names.

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use vallum_types::BlobId;

/// A stream of object bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob has that id.
    #[error("blob {0} not found")]
    NotFound(BlobId),
    /// The requested range lies outside the blob.
    #[error("range {start}..{end} is outside blob {id} of {size_bytes} bytes")]
    OutOfRange {
        /// The blob.
        id: BlobId,
        /// Range start.
        start: u64,
        /// Range end (exclusive).
        end: u64,
        /// The blob's size.
        size_bytes: u64,
    },
    /// The input stream given to `put` failed: the client's fault, not the site's.
    #[error("input stream failed: {0}")]
    Source(io::Error),
    /// The site cannot be reached or keeps failing (refused connections, timeouts, server
    /// errors): the request may succeed later.
    #[error("site unavailable: {0}")]
    Unavailable(String),
    /// The site failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// A site's health as its store sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SiteHealth {
    /// True while the site is marked down: requests fail at once until the backoff lets the
    /// next attempt through (then false again, until that attempt's outcome is known). Repair
    /// and placement skip a site only while this holds, so that a down site is tried again.
    pub down: bool,
    /// Failed requests in a row.
    pub consecutive_failures: u32,
    /// The last failure, if any since the last success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// While down: when the next request will be let through, in ms from now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_in_ms: Option<u64>,
    /// Free space on the site's disk, where the site can tell (local disks); filled in
    /// reports only (`Topology::health_report`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
    /// The site's disk has less than `LOW_SPACE_BYTES` free: writes to it fail.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
}

/// Storage of immutable blobs.
///
/// Contract (checked by `conformance::blob`):
/// * `put` returns only once the blob is durable (fsynced or replicated); if it fails, or the
///   input stream fails, no blob with that id becomes visible.
/// * `get` streams exactly the requested range, never buffering the whole blob.
/// * `delete` is idempotent.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores the whole of `data` as blob `id`; returns the number of bytes written.
    async fn put(&self, id: BlobId, data: ByteStream) -> Result<u64, BlobError>;

    /// Streams bytes `range` of blob `id`.
    async fn get(&self, id: BlobId, range: Range<u64>) -> Result<ByteStream, BlobError>;

    /// The size of blob `id`.
    async fn size(&self, id: BlobId) -> Result<u64, BlobError>;

    /// Removes blob `id`; succeeds if it does not exist.
    async fn delete(&self, id: BlobId) -> Result<(), BlobError>;

    /// Blobs last written more than `age` ago (candidates for orphan collection).
    async fn list_older_than(&self, age: Duration) -> Result<Vec<BlobId>, BlobError>;

    /// Removes temporary data of writes abandoned more than `age` ago; returns how many.
    async fn sweep_temp(&self, age: Duration) -> Result<u64, BlobError>;

    /// The site's health (a local disk is always up: its failures are errors, not outages).
    /// Called on the data path (read order, placement): it must be cheap.
    fn health(&self) -> SiteHealth {
        SiteHealth::default()
    }

    /// Free space on the site's disk, where the site can tell (local disks): a system call,
    /// for reports (`/health`, site views), not for the data path.
    fn free_bytes(&self) -> Option<u64> {
        None
    }
}
