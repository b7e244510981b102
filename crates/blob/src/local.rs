//! A directory on a local filesystem.
//!
//! Layout (version [`LAYOUT_VERSION`], recorded in `<root>/layout`):
//! ```text
//! <root>/layout            "vallum-blobs 1"
//! <root>/blobs/<ab>/<id>   one file per blob; <ab> = first two hex digits of the id
//! <root>/tmp/<id>.<nonce>  writes in progress
//! ```
//! A write goes to `tmp/`, is fsynced, renamed into `blobs/`, and the shard directory is
//! fsynced: a blob is either absent or complete, and complete means durable.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vallum_core::blob::{BlobError, BlobStore, ByteStream};
use vallum_types::BlobId;
use vallum_types::limits::STREAM_CHUNK_BYTES;

/// Version of the on-disk layout.
pub const LAYOUT_VERSION: u32 = 1;
const LAYOUT_FILE: &str = "layout";

/// Blobs as files under one root directory.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
}

fn sync_dir(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

impl LocalBlobStore {
    /// Opens (creating if needed) a store at `root`. Refuses a directory written by an
    /// unknown layout version.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        let layout = root.join(LAYOUT_FILE);
        let expected = format!("vallum-blobs {LAYOUT_VERSION}\n");
        match std::fs::read_to_string(&layout) {
            Ok(found) if found == expected => {}
            Ok(found) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} holds layout {:?}; this build understands {:?}",
                        root.display(),
                        found.trim(),
                        expected.trim()
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::write(&layout, &expected)?;
            }
            Err(e) => return Err(e),
        }
        for shard in 0..=255u8 {
            std::fs::create_dir_all(root.join("blobs").join(format!("{shard:02x}")))?;
        }
        sync_dir(&root.join("blobs"))?;
        sync_dir(&root)?;
        Ok(Self { root })
    }

    fn shard_dir(&self, id: BlobId) -> PathBuf {
        let text = id.to_string();
        self.root.join("blobs").join(&text[..2])
    }

    fn blob_path(&self, id: BlobId) -> PathBuf {
        self.shard_dir(id).join(id.to_string())
    }

    async fn write_temp(&self, tmp: &Path, mut data: ByteStream) -> Result<u64, BlobError> {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
            .await?;
        let mut writer = tokio::io::BufWriter::with_capacity(STREAM_CHUNK_BYTES, file);
        let mut written = 0u64;
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(BlobError::Source)?;
            writer.write_all(&chunk).await?;
            written += chunk.len() as u64;
        }
        writer.flush().await?;
        let file = writer.into_inner();
        file.sync_all().await?;
        Ok(written)
    }
}

/// Bytes an unprivileged writer can still use on the filesystem holding `path`, or `None` if
/// the filesystem cannot say.
#[must_use]
pub fn free_bytes(path: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Writes `chunks` as a new blob at `dest`: into `tmp`, synced, then published; on failure
/// nothing is left. The bytes written.
fn write_whole(tmp: &Path, dest: &Path, shard: &Path, chunks: &[bytes::Bytes]) -> io::Result<u64> {
    let write = || -> io::Result<u64> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)?;
        let mut written = 0u64;
        for chunk in chunks {
            file.write_all(chunk)?;
            written += chunk.len() as u64;
        }
        file.sync_all()?;
        publish(tmp, dest, shard)?;
        Ok(written)
    };
    write().inspect_err(|_| discard_temp(tmp))
}

/// Moves the synced temporary file `tmp` to `dest` and syncs its directory `shard`: from then
/// on the blob is there, complete and durable.
fn publish(tmp: &Path, dest: &Path, shard: &Path) -> io::Result<()> {
    std::fs::rename(tmp, dest)?;
    sync_dir(shard)
}

/// Removes the temporary file of a failed write; one that cannot be removed is the GC's.
fn discard_temp(tmp: &Path) {
    if let Err(rm) = std::fs::remove_file(tmp)
        && rm.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %tmp.display(), %rm, "could not remove temporary file; the GC will");
    }
}

/// A blob opened for a read: out of range (its size), read whole, or positioned at the
/// range's start.
enum Opened {
    OutOfRange(u64),
    Whole(bytes::Bytes),
    Positioned(std::fs::File),
}

fn not_found(id: BlobId) -> impl FnOnce(io::Error) -> BlobError {
    move |e| {
        if e.kind() == io::ErrorKind::NotFound {
            BlobError::NotFound(id)
        } else {
            BlobError::Io(e)
        }
    }
}

#[async_trait::async_trait]
impl BlobStore for LocalBlobStore {
    /// A local disk is never down, but it can be full.
    fn free_bytes(&self) -> Option<u64> {
        free_bytes(&self.root)
    }

    async fn put(&self, id: BlobId, mut data: ByteStream) -> Result<u64, BlobError> {
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{id}.{}", BlobId::random()));
        // A blob that ends within one stream chunk is written, synced, renamed and its
        // directory synced in one hand-off to the blocking pool, not one per step.
        let mut head = Vec::new();
        let mut head_bytes = 0;
        let ended = loop {
            if head_bytes >= STREAM_CHUNK_BYTES {
                break false;
            }
            match data.next().await {
                Some(Ok(chunk)) => {
                    head_bytes += chunk.len();
                    head.push(chunk);
                }
                Some(Err(e)) => return Err(BlobError::Source(e)),
                None => break true,
            }
        };
        if ended {
            let (shard, dest) = (self.shard_dir(id), self.blob_path(id));
            return tokio::task::spawn_blocking(move || write_whole(&tmp, &dest, &shard, &head))
                .await
                .map_err(|e| BlobError::Io(io::Error::other(e)))?
                .map_err(BlobError::Io);
        }
        let data: ByteStream =
            Box::pin(futures::stream::iter(head.into_iter().map(Ok)).chain(data));
        let written = match self.write_temp(&tmp, data).await {
            Ok(written) => written,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || discard_temp(&tmp)).await;
                return Err(e);
            }
        };
        let (shard, dest) = (self.shard_dir(id), self.blob_path(id));
        tokio::task::spawn_blocking(move || {
            publish(&tmp, &dest, &shard).inspect_err(|_| discard_temp(&tmp))
        })
        .await
        .map_err(|e| BlobError::Io(io::Error::other(e)))?
        .map_err(BlobError::Io)?;
        Ok(written)
    }

    async fn get(&self, id: BlobId, range: Range<u64>) -> Result<ByteStream, BlobError> {
        // One hand-off to the blocking pool opens, sizes and positions the file, and reads a
        // range of at most one stream chunk whole (a small object's GET then costs one hop,
        // not one per open, stat, seek and read); a longer range streams from there.
        let path = self.blob_path(id);
        let len = range.end.saturating_sub(range.start);
        let whole = len <= STREAM_CHUNK_BYTES as u64;
        let opened = tokio::task::spawn_blocking(move || -> io::Result<Opened> {
            let mut file = std::fs::File::open(&path)?;
            let size = file.metadata()?.len();
            if range.start > range.end || range.end > size {
                return Ok(Opened::OutOfRange(size));
            }
            file.seek(SeekFrom::Start(range.start))?;
            if whole {
                let mut bytes = vec![0; usize::try_from(len).map_err(io::Error::other)?];
                file.read_exact(&mut bytes)?;
                return Ok(Opened::Whole(bytes.into()));
            }
            Ok(Opened::Positioned(file))
        })
        .await
        .map_err(|e| BlobError::Io(io::Error::other(e)))?
        .map_err(not_found(id))?;
        match opened {
            Opened::OutOfRange(size_bytes) => Err(BlobError::OutOfRange {
                id,
                start: range.start,
                end: range.end,
                size_bytes,
            }),
            Opened::Whole(bytes) => Ok(Box::pin(futures::stream::iter(
                (!bytes.is_empty()).then_some(Ok(bytes)),
            ))),
            Opened::Positioned(file) => {
                let limited = tokio::fs::File::from_std(file).take(len);
                Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
                    limited,
                    STREAM_CHUNK_BYTES,
                )))
            }
        }
    }

    async fn size(&self, id: BlobId) -> Result<u64, BlobError> {
        Ok(tokio::fs::metadata(self.blob_path(id))
            .await
            .map_err(not_found(id))?
            .len())
    }

    async fn delete(&self, id: BlobId) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.blob_path(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlobError::Io(e)),
        }
    }

    async fn list_older_than(&self, age: Duration) -> Result<Vec<BlobId>, BlobError> {
        let root = self.root.join("blobs");
        let found = tokio::task::spawn_blocking(move || -> io::Result<Vec<BlobId>> {
            let cutoff = SystemTime::now()
                .checked_sub(age)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let mut out = Vec::new();
            for shard in std::fs::read_dir(&root)? {
                for entry in std::fs::read_dir(shard?.path())? {
                    let entry = entry?;
                    let Some(id) = entry
                        .file_name()
                        .to_str()
                        .and_then(|n| n.parse::<BlobId>().ok())
                    else {
                        continue;
                    };
                    if entry.metadata()?.modified()? < cutoff {
                        out.push(id);
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(found)
    }

    async fn sweep_temp(&self, age: Duration) -> Result<u64, BlobError> {
        let tmp = self.root.join("tmp");
        let removed = tokio::task::spawn_blocking(move || -> io::Result<u64> {
            let cutoff = SystemTime::now()
                .checked_sub(age)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let mut removed = 0;
            for entry in std::fs::read_dir(&tmp)? {
                let entry = entry?;
                if entry.metadata()?.modified()? <= cutoff {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(removed)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TestStore {
        _dir: tempfile::TempDir,
        store: LocalBlobStore,
    }

    impl std::ops::Deref for TestStore {
        type Target = LocalBlobStore;
        fn deref(&self) -> &LocalBlobStore {
            &self.store
        }
    }

    fn make() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path().join("site")).unwrap();
        TestStore { _dir: dir, store }
    }

    vallum_core::blob_conformance_tests!(make());

    #[test]
    fn refuses_unknown_layout() {
        let dir = tempfile::tempdir().unwrap();
        LocalBlobStore::open(dir.path()).unwrap();
        LocalBlobStore::open(dir.path()).unwrap();
        std::fs::write(dir.path().join(LAYOUT_FILE), "vallum-blobs 99\n").unwrap();
        let err = LocalBlobStore::open(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn blob_names_are_opaque_ids() {
        let t = make();
        let id = BlobId::random();
        t.put(
            id,
            Box::pin(futures::stream::iter(vec![Ok(bytes::Bytes::from_static(
                b"secret-bucket/secret-key",
            ))])),
        )
        .await
        .unwrap();
        let path = t.blob_path(id);
        assert!(path.ends_with(id.to_string()));
        assert_eq!(std::fs::read(path).unwrap(), b"secret-bucket/secret-key");
    }
}
