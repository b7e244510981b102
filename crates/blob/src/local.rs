//! A directory on a local filesystem.
//!
//! Layout (version [`LAYOUT_VERSION`], recorded in `<root>/layout`):
//! ```text
//! <root>/layout            "vallum-blobs 2"
//! <root>/blobs/<ab>/<id>   one file per blob longer than PACK_MAX_BLOB_BYTES;
//!                          <ab> = first two hex digits of the id
//! <root>/packs/<id>.pack   the smaller blobs, appended in groups (see `pack`)
//! <root>/tmp/<id>.<nonce>  writes in progress
//! ```
//! A blob file is written to `tmp/` (with direct I/O where the filesystem allows it: see
//! `direct`), fsynced, renamed into `blobs/`, and the shard directory is fsynced: a blob is
//! either absent or complete, and complete means durable. A packed blob is acknowledged once
//! its pack is synced. Version 1 (no `packs/`) is upgraded at open.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use std::sync::Arc;

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vallum_core::blob::{BlobError, BlobStore, ByteStream};
use vallum_types::BlobId;
use vallum_types::limits::STREAM_CHUNK_BYTES;

use crate::pack::{Loc, PACK_MAX_BLOB_BYTES, PackStats, Packs, read_packed};

/// Version of the on-disk layout.
pub const LAYOUT_VERSION: u32 = 2;
/// Layout versions this build opens (older ones are upgraded in place).
const READABLE_LAYOUTS: [u32; 2] = [1, 2];
const LAYOUT_FILE: &str = "layout";

/// Blobs under one root directory: small ones packed, larger ones as files.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
    packs: Arc<Packs>,
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
            Ok(found)
                if READABLE_LAYOUTS
                    .iter()
                    .any(|v| found == format!("vallum-blobs {v}\n")) =>
            {
                // An older layout is a subset of this one: record the new version (an older
                // build would not see packed blobs, so it must refuse the directory).
                let tmp = root.join("tmp").join(LAYOUT_FILE);
                std::fs::write(&tmp, &expected)?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, &layout)?;
            }
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
        let packs = Packs::open(root.join("packs"))?;
        sync_dir(&root)?;
        Ok(Self {
            root,
            packs: Arc::new(packs),
        })
    }

    /// How many packs and packed bytes the site holds, as far as this process knows.
    #[must_use]
    pub fn pack_stats(&self) -> PackStats {
        self.packs.stats()
    }

    /// Every blob the site holds, packed or not (blocking: for tools and tests).
    pub fn blob_ids(&self) -> io::Result<Vec<BlobId>> {
        let mut out = self.packs.written_before(u64::MAX)?;
        out.extend(blob_files(&self.root.join("blobs"), None)?);
        Ok(out)
    }

    fn shard_dir(&self, id: BlobId) -> PathBuf {
        let text = id.to_string();
        self.root.join("blobs").join(&text[..2])
    }

    fn blob_path(&self, id: BlobId) -> PathBuf {
        self.shard_dir(id).join(id.to_string())
    }

    async fn write_temp(&self, tmp: &Path, mut data: ByteStream) -> Result<u64, BlobError> {
        if let Some(written) = crate::direct::write_direct(tmp, &mut data).await? {
            return Ok(written);
        }
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

impl LocalBlobStore {
    /// Where `id` lies packed, as far as this process knows: from memory and the page cache
    /// on the runtime, else off it.
    async fn locate(&self, id: BlobId) -> Result<Option<(Arc<std::fs::File>, Loc)>, BlobError> {
        match self.packs.locate(id) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let packs = Arc::clone(&self.packs);
                tokio::task::spawn_blocking(move || packs.locate_blocking(id))
                    .await
                    .map_err(|e| BlobError::Io(io::Error::other(e)))?
                    .map_err(BlobError::Io)
            }
            found => found.map_err(BlobError::Io),
        }
    }

    /// Where `id` lies packed, after reading what other processes packed (off the runtime).
    async fn locate_fresh(
        &self,
        id: BlobId,
    ) -> Result<Option<(Arc<std::fs::File>, Loc)>, BlobError> {
        let packs = Arc::clone(&self.packs);
        tokio::task::spawn_blocking(move || packs.locate_fresh(id))
            .await
            .map_err(|e| BlobError::Io(io::Error::other(e)))?
            .map_err(BlobError::Io)
    }
}

/// Reads `range` of a packed blob whole (packed blobs are shorter than a stream chunk).
fn open_packed(file: &std::fs::File, loc: Loc, range: Range<u64>) -> io::Result<Opened> {
    let size = u64::from(loc.len);
    if range.start > range.end || range.end > size {
        return Ok(Opened::OutOfRange(size));
    }
    Ok(Opened::Whole(read_packed(file, loc, range)?.into()))
}

/// As [`open_packed`], from the page cache only (`None`: not all cached).
fn open_packed_cached(
    file: &std::fs::File,
    loc: Loc,
    range: Range<u64>,
) -> Option<io::Result<Opened>> {
    let size = u64::from(loc.len);
    if range.start > range.end || range.end > size {
        return Some(Ok(Opened::OutOfRange(size)));
    }
    crate::pack::read_packed_cached(file, loc, range).map(|r| r.map(|d| Opened::Whole(d.into())))
}

/// The blobs held as files under `blobs` (a site's `blobs/` directory), only those last
/// written before `cutoff` if one is given.
fn blob_files(blobs: &Path, cutoff: Option<SystemTime>) -> io::Result<Vec<BlobId>> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(blobs)? {
        for entry in std::fs::read_dir(shard?.path())? {
            let entry = entry?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<BlobId>().ok())
            else {
                continue;
            };
            let keep = match cutoff {
                Some(cutoff) => entry.metadata()?.modified()? < cutoff,
                None => true,
            };
            if keep {
                out.push(id);
            }
        }
    }
    Ok(out)
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
    /// Switched to direct reads (see `direct`).
    Direct(crate::direct::DirectFile),
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
        if ended && head_bytes <= PACK_MAX_BLOB_BYTES {
            self.packs.put(id, head).await?;
            return Ok(head_bytes as u64);
        }
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
        // not one per open, stat, seek and read); a longer range streams from there. A packed
        // blob is one positioned read.
        let len = range.end.saturating_sub(range.start);
        let (start, end) = (range.start, range.end);
        let opened = if let Some((file, loc)) = self.locate(id).await? {
            // Cached (a recent or often read object): read here, without a hand-off.
            match open_packed_cached(&file, loc, range.clone()) {
                Some(opened) => opened.map_err(BlobError::Io)?,
                None => tokio::task::spawn_blocking(move || open_packed(&file, loc, range))
                    .await
                    .map_err(|e| BlobError::Io(io::Error::other(e)))?
                    .map_err(BlobError::Io)?,
            }
        } else {
            let path = self.blob_path(id);
            let packs = Arc::clone(&self.packs);
            let whole = len <= STREAM_CHUNK_BYTES as u64;
            tokio::task::spawn_blocking(move || -> io::Result<Opened> {
                let mut file = match std::fs::File::open(&path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        // Perhaps packed by another process since this one last looked.
                        return match packs.locate_fresh(id)? {
                            Some((file, loc)) => open_packed(&file, loc, range),
                            None => Err(e),
                        };
                    }
                    Err(e) => return Err(e),
                };
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
                Ok(match crate::direct::direct_reader(file)? {
                    Ok(direct) => Opened::Direct(direct),
                    Err(file) => Opened::Positioned(file),
                })
            })
            .await
            .map_err(|e| BlobError::Io(io::Error::other(e)))?
            .map_err(not_found(id))?
        };
        match opened {
            Opened::OutOfRange(size_bytes) => Err(BlobError::OutOfRange {
                id,
                start,
                end,
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
            Opened::Direct(file) => Ok(crate::direct::read_direct(file, start..end)),
        }
    }

    async fn size(&self, id: BlobId) -> Result<u64, BlobError> {
        if let Some((_, loc)) = self.locate(id).await? {
            return Ok(u64::from(loc.len));
        }
        match tokio::fs::metadata(self.blob_path(id)).await {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match self.locate_fresh(id).await? {
                Some((_, loc)) => Ok(u64::from(loc.len)),
                None => Err(BlobError::NotFound(id)),
            },
            Err(e) => Err(BlobError::Io(e)),
        }
    }

    async fn delete(&self, id: BlobId) -> Result<(), BlobError> {
        if self.locate(id).await?.is_some() {
            return Ok(self.packs.delete(id).await?);
        }
        match tokio::fs::remove_file(self.blob_path(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.locate_fresh(id).await?.is_some() {
                    self.packs.delete(id).await?;
                }
                Ok(())
            }
            Err(e) => Err(BlobError::Io(e)),
        }
    }

    async fn list_older_than(&self, age: Duration) -> Result<Vec<BlobId>, BlobError> {
        let root = self.root.join("blobs");
        let packs = Arc::clone(&self.packs);
        let found = tokio::task::spawn_blocking(move || -> io::Result<Vec<BlobId>> {
            let cutoff = SystemTime::now()
                .checked_sub(age)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let cutoff_ms = cutoff
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let mut out = packs.written_before(cutoff_ms)?;
            out.extend(blob_files(&root, Some(cutoff))?);
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

    fn stream_of(data: Vec<u8>) -> ByteStream {
        Box::pin(futures::stream::iter(vec![Ok(bytes::Bytes::from(data))]))
    }

    async fn read_all(store: &LocalBlobStore, id: BlobId) -> Result<Vec<u8>, BlobError> {
        let size = store.size(id).await?;
        let mut s = store.get(id, 0..size).await?;
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    /// Distinct content per blob, so that a read of the wrong record shows.
    fn content(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
    }

    /// A fresh site under a temporary directory holding `count` blobs of `len` bytes
    /// (`content(i, len)`), written one after the other.
    async fn filled_site(
        count: usize,
        len: usize,
    ) -> (tempfile::TempDir, PathBuf, LocalBlobStore, Vec<BlobId>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        let store = LocalBlobStore::open(&root).unwrap();
        let ids: Vec<BlobId> = (0..count).map(|_| BlobId::random()).collect();
        for (i, id) in ids.iter().enumerate() {
            store.put(*id, stream_of(content(i, len))).await.unwrap();
        }
        (dir, root, store, ids)
    }

    fn pack_files(root: &Path) -> Vec<PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(root.join("packs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pack"))
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn blob_names_are_opaque_ids() {
        let t = make();
        // A small blob is packed: the pack's name is an opaque id, its bytes are there as given.
        let small = BlobId::random();
        t.put(small, stream_of(b"secret-bucket/secret-key".to_vec()))
            .await
            .unwrap();
        let packs = pack_files(&t.root);
        assert_eq!(packs.len(), 1);
        let name = packs[0].file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.len() == 21 && name.ends_with(".pack"), "{name}");
        assert!(name[..16].bytes().all(|b| b.is_ascii_hexdigit()));
        let raw = std::fs::read(&packs[0]).unwrap();
        assert!(raw.windows(24).any(|w| w == b"secret-bucket/secret-key"));
        assert!(!t.blob_path(small).exists());
        // A larger one is a file named by its id.
        let large = BlobId::random();
        let body = content(1, PACK_MAX_BLOB_BYTES + 1);
        t.put(large, stream_of(body.clone())).await.unwrap();
        let path = t.blob_path(large);
        assert!(path.ends_with(large.to_string()));
        assert_eq!(std::fs::read(path).unwrap(), body);
        let mut ids = t.blob_ids().unwrap();
        ids.sort();
        let mut want = vec![small, large];
        want.sort();
        assert_eq!(ids, want);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_small_writes_share_a_pack_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        let store = LocalBlobStore::open(&root).unwrap();
        let ids: Vec<BlobId> = (0..200).map(|_| BlobId::random()).collect();
        let writes = ids.iter().enumerate().map(|(i, id)| {
            let (store, id) = (store.clone(), *id);
            tokio::spawn(async move { store.put(id, stream_of(content(i, 1000 + i))).await })
        });
        for (i, w) in futures::future::join_all(writes)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(w.unwrap().unwrap(), 1000 + i as u64);
        }
        assert_eq!(store.pack_stats().packs, 1);
        assert_eq!(store.pack_stats().blobs, 200);
        // Delete every third, then read everything back through a fresh open.
        for id in ids.iter().step_by(3) {
            store.delete(*id).await.unwrap();
        }
        drop(store);
        let store = LocalBlobStore::open(&root).unwrap();
        for (i, id) in ids.iter().enumerate() {
            let got = read_all(&store, *id).await;
            if i % 3 == 0 {
                assert!(matches!(got, Err(BlobError::NotFound(_))), "{i}: {got:?}");
            } else {
                assert_eq!(got.unwrap(), content(i, 1000 + i), "blob {i}");
            }
        }
        // Ranges of a packed blob, and past its end.
        let mut s = store.get(ids[1], 10..20).await.unwrap();
        assert_eq!(
            s.next().await.unwrap().unwrap().as_ref(),
            &content(1, 1001)[10..20]
        );
        assert!(matches!(
            store.get(ids[1], 10..5000).await,
            Err(BlobError::OutOfRange {
                size_bytes: 1001,
                ..
            })
        ));
        assert_eq!(store.pack_stats().blobs, 133);
    }

    #[tokio::test]
    async fn a_torn_record_at_the_end_of_a_pack_is_ignored() {
        let (_dir, root, store, ids) = filled_site(5, 4096).await;
        drop(store);
        // A crash mid-append: a whole record header whose data never made it, then half a
        // header.
        let pack = pack_files(&root).pop().unwrap();
        let lost = BlobId::random();
        let mut torn = Vec::new();
        crate::pack::encode_blob_record(&mut torn, lost, 1, &[bytes::Bytes::from(vec![7u8; 4096])]);
        torn.truncate(crate::pack::RECORD_HEADER_BYTES + 100);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&pack)
            .unwrap();
        f.write_all(&torn).unwrap();
        drop(f);
        let store = LocalBlobStore::open(&root).unwrap();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(read_all(&store, *id).await.unwrap(), content(i, 4096));
        }
        assert!(matches!(
            store.size(lost).await,
            Err(BlobError::NotFound(_))
        ));
        // Writing goes on in a new pack; the torn one is never appended to.
        let next = BlobId::random();
        store.put(next, stream_of(content(9, 10))).await.unwrap();
        assert_eq!(pack_files(&root).len(), 2);
        drop(store);
        let store = LocalBlobStore::open(&root).unwrap();
        assert_eq!(read_all(&store, next).await.unwrap(), content(9, 10));
        assert_eq!(store.pack_stats().blobs, 6);
    }

    #[tokio::test]
    async fn a_packed_blob_out_of_the_page_cache_is_still_read() {
        let (_dir, root, store, ids) = filled_site(3, 4096).await;
        // Written and synced, so clean: the kernel drops the pages when told to.
        let pack = std::fs::File::open(pack_files(&root).pop().unwrap()).unwrap();
        rustix::fs::fadvise(&pack, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let (file, loc) = store.packs.locate_blocking(ids[0]).unwrap().unwrap();
        assert!(
            crate::pack::read_packed_cached(&file, loc, 0..4096).is_none(),
            "bytes not in the page cache were read without blocking"
        );
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(read_all(&store, *id).await.unwrap(), content(i, 4096));
        }
        // Read once, they are cached: the read without a hand-off returns them.
        let cached = crate::pack::read_packed_cached(&file, loc, 0..4096);
        assert_eq!(cached.unwrap().unwrap(), content(0, 4096));
    }

    #[tokio::test]
    async fn damaged_packed_data_is_an_error_not_wrong_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        let store = LocalBlobStore::open(&root).unwrap();
        let id = BlobId::random();
        store.put(id, stream_of(content(3, 300))).await.unwrap();
        let pack = pack_files(&root).pop().unwrap();
        let mut raw = std::fs::read(&pack).unwrap();
        let at = raw.len() - 10;
        raw[at] ^= 0x40;
        std::fs::write(&pack, &raw).unwrap();
        let err = read_all(&store, id).await.unwrap_err();
        assert!(
            matches!(&err, BlobError::Io(e) if e.kind() == io::ErrorKind::InvalidData),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn sparse_packs_are_compacted_without_losing_a_live_blob() {
        let (_dir, root, store, ids) = filled_site(100, 2000).await;
        // Four in five deleted: the pack is sparse once no one writes it.
        for (i, id) in ids.iter().enumerate() {
            if i % 5 != 0 {
                store.delete(*id).await.unwrap();
            }
        }
        drop(store);
        let old = pack_files(&root);
        assert_eq!(old.len(), 1);
        let store = LocalBlobStore::open(&root).unwrap();
        let stats = store.pack_stats();
        assert!(stats.live_bytes * 2 < stats.pack_bytes, "{stats:?}");
        // The writer compacts when idle, once it runs.
        let trigger = BlobId::random();
        store.put(trigger, stream_of(content(7, 10))).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while old[0].exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the sparse pack was not compacted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        async fn check(store: LocalBlobStore, ids: &[BlobId], trigger: BlobId) -> LocalBlobStore {
            for (i, id) in ids.iter().enumerate() {
                let got = read_all(&store, *id).await;
                if i % 5 == 0 {
                    assert_eq!(got.unwrap(), content(i, 2000), "blob {i}");
                } else {
                    assert!(matches!(got, Err(BlobError::NotFound(_))), "{i}: {got:?}");
                }
            }
            assert_eq!(read_all(&store, trigger).await.unwrap(), content(7, 10));
            store
        }
        let store = check(store, &ids, trigger).await;
        assert_eq!(store.pack_stats().packs, 1);
        assert_eq!(store.pack_stats().blobs, 21);
        drop(store);
        // And after reopening: nothing deleted comes back, nothing live is gone.
        let store = check(LocalBlobStore::open(&root).unwrap(), &ids, trigger).await;
        assert_eq!(
            store.pack_stats().live_bytes,
            store.pack_stats().pack_bytes - crate::pack::PACK_HEADER_BYTES
        );
    }

    #[tokio::test]
    async fn two_stores_over_one_directory_read_each_others_packs() {
        // Two gateways over one shared site directory: each writes its own pack.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        let a = LocalBlobStore::open(&root).unwrap();
        let b = LocalBlobStore::open(&root).unwrap();
        let (x, y) = (BlobId::random(), BlobId::random());
        a.put(x, stream_of(content(1, 500))).await.unwrap();
        b.put(y, stream_of(content(2, 600))).await.unwrap();
        assert_eq!(pack_files(&root).len(), 2);
        assert_eq!(read_all(&b, x).await.unwrap(), content(1, 500));
        assert_eq!(read_all(&a, y).await.unwrap(), content(2, 600));
        // B deletes what A wrote; a third store sees it gone, and neither compacts the other's
        // pack while it is being written.
        b.delete(x).await.unwrap();
        let c = LocalBlobStore::open(&root).unwrap();
        assert!(matches!(c.size(x).await, Err(BlobError::NotFound(_))));
        assert_eq!(read_all(&c, y).await.unwrap(), content(2, 600));
        let mut listed = c.list_older_than(Duration::ZERO).await.unwrap();
        listed.sort();
        assert_eq!(listed, vec![y]);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(pack_files(&root).len(), 2);
    }

    #[tokio::test]
    async fn a_closed_pack_reopens_from_its_index_file() {
        let (_dir, root, store, ids) = filled_site(10, 3000).await;
        store.delete(ids[9]).await.unwrap();
        drop(store);
        // Closing the pack wrote its index file beside it.
        let pack = pack_files(&root).pop().unwrap();
        let idx = pack.with_extension("idx");
        assert!(idx.exists());
        // A closed pack without one (written by a process that crashed) gets it when scanned.
        let written = std::fs::read(&idx).unwrap();
        std::fs::remove_file(&idx).unwrap();
        drop(LocalBlobStore::open(&root).unwrap());
        assert_eq!(std::fs::read(&idx).unwrap(), written);
        // Damage the second record's header in the pack itself: a scan would stop there, the
        // index still lists every record, so every blob but the damaged one's reads.
        let mut raw = std::fs::read(&pack).unwrap();
        let second =
            crate::pack::PACK_HEADER_BYTES as usize + crate::pack::RECORD_HEADER_BYTES + 3000;
        raw[second + 2] ^= 0xff;
        std::fs::write(&pack, &raw).unwrap();
        let store = LocalBlobStore::open(&root).unwrap();
        for (i, id) in ids.iter().enumerate().skip(2).take(7) {
            assert_eq!(
                read_all(&store, *id).await.unwrap(),
                content(i, 3000),
                "blob {i}"
            );
        }
        assert!(matches!(
            store.size(ids[9]).await,
            Err(BlobError::NotFound(_))
        ));
        drop(store);
        // A damaged index file is ignored: the pack is scanned, up to the damaged record.
        let mut bad = std::fs::read(&idx).unwrap();
        bad[50] ^= 0x01;
        std::fs::write(&idx, &bad).unwrap();
        let store = LocalBlobStore::open(&root).unwrap();
        assert_eq!(read_all(&store, ids[0]).await.unwrap(), content(0, 3000));
        assert!(matches!(
            store.size(ids[5]).await,
            Err(BlobError::NotFound(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_pack_keeps_two_bytes_per_blob_in_memory_and_still_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        let store = LocalBlobStore::open(&root).unwrap();
        let ids: Vec<BlobId> = (0..3000).map(|_| BlobId::random()).collect();
        let writes = futures::stream::iter(ids.iter().enumerate().map(|(i, id)| {
            let (store, id) = (store.clone(), *id);
            async move { store.put(id, stream_of(content(i, 100))).await }
        }))
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
        assert!(writes.iter().all(Result::is_ok));
        let open = store.pack_stats().index_bytes;
        assert!(
            open > 3000 * 40,
            "the pack being written is indexed in a map: {open}"
        );
        drop(store);
        // Reopened, the pack is closed: a filter and a fence per page, not a map.
        let store = LocalBlobStore::open(&root).unwrap();
        let stats = store.pack_stats();
        assert_eq!(stats.blobs, 3000);
        assert!(stats.index_bytes <= 2 * 3000, "{stats:?}");
        for (i, id) in ids.iter().enumerate().step_by(7) {
            assert_eq!(read_all(&store, *id).await.unwrap(), content(i, 100));
        }
        assert!(matches!(
            store.size(BlobId::random()).await,
            Err(BlobError::NotFound(_))
        ));
        // Deleting from a closed pack, then reopening: gone, and the rest still there.
        for id in ids.iter().step_by(2) {
            store.delete(*id).await.unwrap();
        }
        assert!(matches!(
            store.size(ids[0]).await,
            Err(BlobError::NotFound(_))
        ));
        drop(store);
        let store = LocalBlobStore::open(&root).unwrap();
        for (i, id) in ids.iter().enumerate() {
            let got = store.size(*id).await;
            if i % 2 == 0 {
                assert!(matches!(got, Err(BlobError::NotFound(_))), "{i}: {got:?}");
            } else {
                assert_eq!(got.unwrap(), 100, "blob {i}");
            }
        }
        let mut listed = store.blob_ids().unwrap();
        listed.sort();
        let mut want: Vec<BlobId> = ids.iter().skip(1).step_by(2).copied().collect();
        want.sort();
        assert_eq!(listed, want);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pack_is_closed_at_its_write_limit_so_its_map_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path().join("site")).unwrap();
        let n = crate::pack::PACK_MAX_WRITES as usize + 10;
        let ids: Vec<BlobId> = (0..n).map(|_| BlobId::random()).collect();
        let writes = futures::stream::iter(ids.iter().map(|id| {
            let (store, id) = (store.clone(), *id);
            async move { store.put(id, stream_of(vec![1])).await }
        }))
        .buffer_unordered(512)
        .collect::<Vec<_>>()
        .await;
        assert!(writes.iter().all(Result::is_ok));
        // Far below 64 MiB, yet closed at the write limit: its index is out of memory.
        let stats = store.pack_stats();
        assert_eq!((stats.packs, stats.open_packs), (1, 0), "{stats:?}");
        assert!(stats.pack_bytes < crate::pack::PACK_TARGET_BYTES / 16);
        assert!(stats.index_bytes <= 2 * n, "{stats:?}");
        assert_eq!(stats.blobs, n as u64);
        // The next write starts a new pack.
        store
            .put(BlobId::random(), stream_of(vec![2]))
            .await
            .unwrap();
        let stats = store.pack_stats();
        assert_eq!((stats.packs, stats.open_packs), (2, 1), "{stats:?}");
        for id in [ids[0], ids[n / 2], ids[n - 1]] {
            assert_eq!(read_all(&store, id).await.unwrap(), vec![1]);
        }
    }

    #[tokio::test]
    async fn another_stores_pack_is_closed_once_its_writer_stops() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        let a = LocalBlobStore::open(&root).unwrap();
        let b = LocalBlobStore::open(&root).unwrap();
        let (x, z) = (BlobId::random(), BlobId::random());
        a.put(x, stream_of(content(1, 500))).await.unwrap();
        a.put(z, stream_of(content(2, 500))).await.unwrap();
        // B reads A's pack while A writes it (kept in a map), and deletes one of its blobs.
        assert_eq!(read_all(&b, x).await.unwrap(), content(1, 500));
        b.delete(z).await.unwrap();
        // A's pack and B's own (holding the tombstone) are in maps.
        assert_eq!(b.pack_stats().open_packs, 2);
        // A stops: its pack is closed and indexed. B closes it too when it next looks.
        drop(a);
        assert!(matches!(
            b.size(BlobId::random()).await,
            Err(BlobError::NotFound(_))
        ));
        assert_eq!(b.pack_stats().open_packs, 1, "{:?}", b.pack_stats());
        let c = LocalBlobStore::open(&root).unwrap();
        let w = BlobId::random();
        c.put(w, stream_of(content(3, 10))).await.unwrap();
        assert_eq!(read_all(&b, w).await.unwrap(), content(3, 10));
        assert_eq!(read_all(&b, x).await.unwrap(), content(1, 500));
        assert!(matches!(b.size(z).await, Err(BlobError::NotFound(_))));
        // Written before now (to the millisecond).
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut listed = b.list_older_than(Duration::ZERO).await.unwrap();
        listed.sort();
        let mut want = vec![x, w];
        want.sort();
        assert_eq!(listed, want);
    }

    #[test]
    fn a_layout_1_site_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("blobs")).unwrap();
        std::fs::write(dir.path().join(LAYOUT_FILE), "vallum-blobs 1\n").unwrap();
        LocalBlobStore::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LAYOUT_FILE)).unwrap(),
            format!("vallum-blobs {LAYOUT_VERSION}\n")
        );
        assert!(dir.path().join("packs").is_dir());
    }
}
