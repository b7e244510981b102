//! A fault-injecting wrapper around any blob store, for tests of the faults a test cannot cause
//! on a real disk or network on demand: I/O errors, short writes that the store reports as
//! complete, a full disk at a chosen moment, latency, and connection loss mid-stream. The
//! faults are queued in a shared plan; each operation takes the next one of its kind.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use vallum_core::blob::{BlobError, BlobStore, ByteStream, SiteHealth};
use vallum_types::BlobId;

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with ENOSPC, writing nothing.
    NoSpace,
    /// The operation fails with EIO.
    Io,
    /// A put stores only the first `n` bytes and reports success with that count.
    ShortWrite(u64),
    /// The site cannot be reached.
    Unavailable,
    /// A read's stream breaks (connection lost) after `n` bytes.
    CutAfter(u64),
    /// The operation waits this long first.
    Latency(Duration),
}

/// The faults waiting for puts and gets.
#[derive(Debug, Default)]
pub struct FaultPlan {
    puts: Mutex<VecDeque<Fault>>,
    gets: Mutex<VecDeque<Fault>>,
}

impl FaultPlan {
    /// The next put meets `fault`.
    pub fn on_put(&self, fault: Fault) {
        self.puts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(fault);
    }

    /// The next get meets `fault`.
    pub fn on_get(&self, fault: Fault) {
        self.gets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(fault);
    }

    fn next(queue: &Mutex<VecDeque<Fault>>) -> Option<Fault> {
        queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
    }
}

/// `inner`, with the faults of `plan` injected.
pub struct FaultInjectingBlobStore {
    inner: Arc<dyn BlobStore>,
    plan: Arc<FaultPlan>,
}

impl FaultInjectingBlobStore {
    /// Wraps `inner`; faults are queued on the returned plan.
    pub fn new(inner: Arc<dyn BlobStore>) -> (Self, Arc<FaultPlan>) {
        let plan = Arc::new(FaultPlan::default());
        (
            Self {
                inner,
                plan: Arc::clone(&plan),
            },
            plan,
        )
    }
}

fn errno(code: i32) -> BlobError {
    BlobError::Io(io::Error::from_raw_os_error(code))
}

/// ENOSPC and EIO on Linux.
const ENOSPC: i32 = 28;
const EIO: i32 = 5;

/// The faults every operation meets alike: an error at once (ENOSPC, EIO, unreachable) or a
/// delay. What is left (`None`, or a fault the operation shapes itself) is returned.
async fn before(fault: Option<Fault>) -> Result<Option<Fault>, BlobError> {
    match fault {
        Some(Fault::NoSpace) => Err(errno(ENOSPC)),
        Some(Fault::Io) => Err(errno(EIO)),
        Some(Fault::Unavailable) => {
            Err(BlobError::Unavailable("injected: site unreachable".into()))
        }
        Some(Fault::Latency(d)) => {
            tokio::time::sleep(d).await;
            Ok(None)
        }
        other => Ok(other),
    }
}

#[async_trait::async_trait]
impl BlobStore for FaultInjectingBlobStore {
    async fn put(&self, id: BlobId, data: ByteStream) -> Result<u64, BlobError> {
        match before(FaultPlan::next(&self.plan.puts)).await? {
            Some(Fault::CutAfter(n)) => Err(BlobError::Unavailable(format!(
                "injected: connection lost after {n} bytes"
            ))),
            Some(Fault::ShortWrite(n)) => {
                // Stores a prefix and claims success for it, as a lying disk would.
                let mut left = n;
                let prefix: ByteStream = Box::pin(data.filter_map(move |item| {
                    let out = match item {
                        Ok(mut chunk) if left > 0 => {
                            let keep = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
                            left -= keep as u64;
                            chunk.truncate(keep);
                            Some(Ok(chunk))
                        }
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    };
                    futures::future::ready(out)
                }));
                self.inner.put(id, prefix).await
            }
            _ => self.inner.put(id, data).await,
        }
    }

    async fn get(&self, id: BlobId, range: Range<u64>) -> Result<ByteStream, BlobError> {
        match before(FaultPlan::next(&self.plan.gets)).await? {
            Some(Fault::CutAfter(n)) => {
                let stream = self.inner.get(id, range).await?;
                let mut left = n;
                let mut done = false;
                Ok(Box::pin(stream.flat_map(move |item| {
                    let mut out = Vec::new();
                    if !done {
                        match item {
                            Ok(chunk) if (chunk.len() as u64) < left => {
                                left -= chunk.len() as u64;
                                out.push(Ok(chunk));
                            }
                            Ok(chunk) => {
                                let keep = usize::try_from(left).unwrap_or(0);
                                if keep > 0 {
                                    out.push(Ok(chunk.slice(..keep)));
                                }
                                done = true;
                                out.push(Err(io::Error::new(
                                    io::ErrorKind::ConnectionReset,
                                    "injected: connection lost",
                                )));
                            }
                            Err(e) => out.push(Err(e)),
                        }
                    }
                    futures::stream::iter(out)
                })))
            }
            _ => self.inner.get(id, range).await,
        }
    }

    async fn size(&self, id: BlobId) -> Result<u64, BlobError> {
        self.inner.size(id).await
    }

    async fn delete(&self, id: BlobId) -> Result<(), BlobError> {
        self.inner.delete(id).await
    }

    async fn list_older_than(&self, age: Duration) -> Result<Vec<BlobId>, BlobError> {
        self.inner.list_older_than(age).await
    }

    async fn sweep_temp(&self, age: Duration) -> Result<u64, BlobError> {
        self.inner.sweep_temp(age).await
    }

    fn health(&self) -> SiteHealth {
        self.inner.health()
    }

    fn free_bytes(&self) -> Option<u64> {
        self.inner.free_bytes()
    }
}
