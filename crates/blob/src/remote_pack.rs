//! Small blobs on a remote site, grouped into pack objects.
//!
//! A provider charges per request and keeps a per-object overhead, so a blob of at most
//! [`PACK_MAX_BLOB_BYTES`] is not an object of its own: the small writes and deletes waiting at
//! one moment become one immutable *pack object*, written with one PUT and acknowledged when it
//! returns: a write waits at most [`REMOTE_GROUP_LINGER`] for others to join it, and at most
//! [`REMOTE_PACKS_IN_FLIGHT`] pack objects are written at a time, so that writes queue, and
//! group, while the site is slow. A read is one ranged GET of the pack object.
//!
//! A pack object, `<prefix>/packs/<pack-id:016x>.pack`, is a local pack (header and records,
//! as in [`crate::pack`]) followed by its index (the local index file's format, version
//! [`crate::pack::PACK_INDEX_VERSION`], covering the records) and a 24-byte trailer: u64 the
//! pack's creation time (ms since the epoch), u64 the index's length, `VALLUMPT`. A gateway
//! learns the packs by listing `packs/` and reading each trailer and index (two ranged GETs at
//! most), and lists again when a blob is not found: several gateways over one site each write
//! their own pack objects and read all. Where a blob has copies in several packs, the copy in
//! the pack created last counts; a tombstone deletes the copy in the pack it names.
//!
//! Packs less than half live, and small packs once there are [`REMOTE_MERGE_MIN_PACKS`] of
//! them, are compacted: their live records (and the tombstones still needed) are written to a
//! new pack object before the old ones are deleted, so a blob is never absent. One gateway
//! does not compact while its own deletions are being written; two gateways over one site can
//! race (a deletion written by one while the other copies the blob): the copy left is an
//! orphan, removed by the orphan collector like any blob the metadata does not reference.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::{mpsc, oneshot};
use vallum_core::blob::BlobError;
use vallum_types::BlobId;

use crate::pack::{
    KIND_BLOB, Listed, PACK_HEADER_BYTES, PACK_MAX_BLOB_BYTES, RECORD_HEADER_BYTES, RecordHeader,
    decode_index, encode_index, encode_pack_header, now_ms,
};

/// Pack objects being written to a site at the same time.
pub const REMOTE_PACKS_IN_FLIGHT: usize = 4;
/// Most bytes of records in one pack object written for a group of writes.
const REMOTE_GROUP_BYTES: usize = 8 * 1024 * 1024;
/// Most writes and deletes in one group.
const REMOTE_GROUP_OPS: usize = 4096;
/// How long a write waits for others to share its pack object: a remote PUT takes tens of
/// milliseconds, so a few more cost little and save a request per write that joins.
pub const REMOTE_GROUP_LINGER: Duration = Duration::from_millis(5);
/// A pack object smaller than this is merged with others once there are enough of them.
pub const REMOTE_SMALL_PACK_BYTES: u64 = 1024 * 1024;
/// How many small pack objects make a merge worth its requests.
pub const REMOTE_MERGE_MIN_PACKS: usize = 32;
/// Most bytes of pack objects one compaction step reads.
const REMOTE_COMPACT_STEP_BYTES: u64 = 32 * 1024 * 1024;
/// How often the writer looks for packs to compact.
const REMOTE_COMPACT_INTERVAL: Duration = Duration::from_secs(5);
/// Trailers and indexes read at the same time when a gateway learns the packs.
const REMOTE_INDEX_READS: usize = 16;
/// Bytes read from a pack object's end at first: its trailer and, mostly, its whole index.
const REMOTE_TAIL_GUESS: u64 = 64 * 1024;
const TRAILER_MAGIC: &[u8; 8] = b"VALLUMPT";
const TRAILER_BYTES: u64 = 24;
const PACK_SUFFIX: &str = ".pack";

/// Where a packed blob's data lies in its pack object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RemoteLoc {
    pub(crate) pack: u64,
    /// Offset of the data in the pack object.
    offset: u64,
    pub(crate) len: u32,
    crc: u32,
    written_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct PackMeta {
    created_ms: u64,
    /// Size of the pack object.
    size: u64,
    /// Bytes of its index.
    index_bytes: u64,
    /// Bytes of its tombstone records.
    tombstone_bytes: u64,
    /// Bytes of blob records that count.
    live: u64,
    live_blobs: u64,
    /// The listing it was learnt in (or after): only a pack known before a listing began can
    /// be missing from it because it was removed.
    epoch: u64,
}

impl PackMeta {
    fn records_bytes(&self) -> u64 {
        self.size - self.index_bytes - TRAILER_BYTES - PACK_HEADER_BYTES
    }

    /// Blob records that no longer count fill more than half of it: worth compacting.
    fn sparse(&self) -> bool {
        let dead = self.records_bytes() - self.tombstone_bytes - self.live;
        dead.saturating_mul(2) > self.records_bytes()
    }
}

/// Every packed blob the gateway knows of, and the packs.
#[derive(Debug, Default)]
struct Index {
    packs: HashMap<u64, PackMeta>,
    blobs: HashMap<BlobId, RemoteLoc>,
    /// Listings begun.
    epoch: u64,
}

impl Index {
    fn newer(&self, a: u64, b: u64) -> bool {
        let key = |p: u64| (self.packs[&p].created_ms, p);
        key(a) > key(b)
    }

    fn count(&mut self, pack: u64, loc: &RemoteLoc, sign: bool) {
        let meta = self.packs.get_mut(&pack).expect("a known pack");
        let bytes = u64::from(loc.len) + RECORD_HEADER_BYTES as u64;
        if sign {
            meta.live += bytes;
            meta.live_blobs += 1;
        } else {
            meta.live -= bytes;
            meta.live_blobs -= 1;
        }
    }

    /// Adds pack `pack` (once: a pack already known is skipped) with what its index lists;
    /// its copies count over those of older packs. Returns its tombstones, for the caller to
    /// apply once every pack it adds is in.
    fn add(
        &mut self,
        pack: u64,
        created_ms: u64,
        size: u64,
        index_bytes: u64,
        listed: &Listed,
    ) -> Vec<(BlobId, u64)> {
        if self.packs.contains_key(&pack) {
            return Vec::new();
        }
        let meta = PackMeta {
            created_ms,
            size,
            index_bytes,
            tombstone_bytes: (listed.tombstones.len() * RECORD_HEADER_BYTES) as u64,
            live: 0,
            live_blobs: 0,
            epoch: self.epoch,
        };
        self.packs.insert(pack, meta);
        for (offset, h) in &listed.blobs {
            let loc = RemoteLoc {
                pack,
                offset: offset + RECORD_HEADER_BYTES as u64,
                len: h.len,
                crc: h.data_crc,
                written_ms: h.reference,
            };
            match self.blobs.get(&h.id).copied() {
                Some(old) if self.newer(old.pack, pack) => {}
                Some(old) => {
                    self.count(old.pack, &old, false);
                    self.count(pack, &loc, true);
                    self.blobs.insert(h.id, loc);
                }
                None => {
                    self.count(pack, &loc, true);
                    self.blobs.insert(h.id, loc);
                }
            }
        }
        listed
            .tombstones
            .iter()
            .map(|(_, h)| (h.id, h.reference))
            .collect()
    }

    /// Deletes pack `pack`'s copy of `id`, if that is the copy that counts.
    fn remove_in(&mut self, id: BlobId, pack: u64) {
        if let Some(loc) = self.blobs.get(&id).copied()
            && loc.pack == pack
        {
            self.blobs.remove(&id);
            self.count(pack, &loc, false);
        }
    }

    /// Forgets pack `pack` (deleted by a compaction): its blobs that still point at it too.
    fn drop_pack(&mut self, pack: u64) {
        if self.packs.remove(&pack).is_some_and(|m| m.live_blobs > 0) {
            self.blobs.retain(|_, loc| loc.pack != pack);
        }
    }
}

enum Op {
    Put {
        id: BlobId,
        data: Vec<Bytes>,
        reply: oneshot::Sender<Result<(), BlobError>>,
    },
    Delete {
        id: BlobId,
        reply: oneshot::Sender<Result<(), BlobError>>,
    },
}

impl Op {
    fn bytes(&self) -> usize {
        RECORD_HEADER_BYTES
            + match self {
                Self::Put { data, .. } => data.iter().map(Bytes::len).sum(),
                Self::Delete { .. } => 0,
            }
    }
}

/// What the writer and the readers share.
struct Shared {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    label: String,
    index: Mutex<Index>,
    /// Set once the packs were listed and read.
    loaded: tokio::sync::OnceCell<()>,
    /// One listing at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// Groups with deletions hold it shared; a compaction step holds it alone, so a deletion
    /// never names a pack whose copy is being moved.
    deletions: tokio::sync::RwLock<()>,
    compacting: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemotePacks")
            .field("site", &self.label)
            .field("dir", &self.dir.as_ref())
            .finish_non_exhaustive()
    }
}

/// A remote site's pack objects: the index of where each small blob lies, and the writer
/// task that groups small writes.
#[derive(Debug)]
pub(crate) struct RemotePacks {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::UnboundedSender<Op>>>,
}

/// How many pack objects and packed blobs a remote site holds, as far as the gateway knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemotePackStats {
    /// Pack objects.
    pub packs: usize,
    /// Live packed blobs.
    pub blobs: u64,
    /// Bytes of all pack objects.
    pub pack_bytes: u64,
    /// Bytes of live records in them.
    pub live_bytes: u64,
}

/// Transport failures, timeouts and server errors (after retries) are outages; refusals
/// (credentials, permissions, bad configuration) are the site answering: plain errors.
pub(crate) fn site_error(label: &str, e: object_store::Error) -> BlobError {
    let text = format!("site {label}: {e}");
    match e {
        object_store::Error::Generic { .. } | object_store::Error::JoinError { .. } => {
            BlobError::Unavailable(text)
        }
        _ => BlobError::Io(std::io::Error::other(text)),
    }
}

fn damaged(label: &str, what: impl std::fmt::Display) -> BlobError {
    BlobError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("site {label}: {what}"),
    ))
}

/// A copy of a group's outcome for each of its requests.
fn copy_outcome(outcome: &Result<(), BlobError>) -> Result<(), BlobError> {
    match outcome {
        Ok(()) => Ok(()),
        Err(BlobError::Unavailable(why)) => Err(BlobError::Unavailable(why.clone())),
        Err(e) => Err(BlobError::Io(std::io::Error::other(e.to_string()))),
    }
}

impl RemotePacks {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, prefix: &Path, label: String) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                dir: prefix.clone().join("packs"),
                label,
                index: Mutex::default(),
                loaded: tokio::sync::OnceCell::new(),
                refreshing: tokio::sync::Mutex::new(()),
                deletions: tokio::sync::RwLock::new(()),
                compacting: AtomicBool::new(false),
            }),
            tx: Mutex::new(None),
        }
    }

    /// Where `id` lies packed, as far as the gateway knows (the packs are read on first use).
    pub(crate) async fn locate(&self, id: BlobId) -> Result<Option<RemoteLoc>, BlobError> {
        self.shared
            .loaded
            .get_or_try_init(|| self.shared.refresh())
            .await?;
        Ok(self.shared.index().blobs.get(&id).copied())
    }

    /// As [`locate`](Self::locate), after listing the packs again (other gateways' writes).
    pub(crate) async fn locate_fresh(&self, id: BlobId) -> Result<Option<RemoteLoc>, BlobError> {
        self.shared.relist().await?;
        Ok(self.shared.index().blobs.get(&id).copied())
    }

    /// Reads `range` (within `0..loc.len`) of a packed blob: one ranged GET; a whole blob's
    /// checksum is checked. `None` if its pack object is gone (compacted by another gateway:
    /// the caller lists again).
    pub(crate) async fn read(
        &self,
        loc: RemoteLoc,
        range: Range<u64>,
    ) -> Result<Option<Bytes>, BlobError> {
        if range.is_empty() {
            return Ok(Some(Bytes::new()));
        }
        let at = loc.offset + range.start..loc.offset + range.end;
        let Some(bytes) = self.shared.get_range(loc.pack, at).await? else {
            return Ok(None);
        };
        if range.start == 0 && range.end == u64::from(loc.len) && crc32c::crc32c(&bytes) != loc.crc
        {
            return Err(damaged(
                &self.shared.label,
                "a packed blob does not match its checksum",
            ));
        }
        Ok(Some(bytes))
    }

    /// Every packed blob written before `cutoff_ms`, after listing the packs again.
    pub(crate) async fn written_before(&self, cutoff_ms: u64) -> Result<Vec<BlobId>, BlobError> {
        self.shared.relist().await?;
        Ok(self
            .shared
            .index()
            .blobs
            .iter()
            .filter(|(_, loc)| loc.written_ms < cutoff_ms)
            .map(|(id, _)| *id)
            .collect())
    }

    pub(crate) fn stats(&self) -> RemotePackStats {
        let index = self.shared.index();
        RemotePackStats {
            packs: index.packs.len(),
            blobs: index.packs.values().map(|m| m.live_blobs).sum(),
            pack_bytes: index.packs.values().map(|m| m.size).sum(),
            live_bytes: index.packs.values().map(|m| m.live).sum(),
        }
    }

    fn send(&self, op: Op) -> Result<(), BlobError> {
        let mut tx = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let sender = tx.get_or_insert_with(|| {
            let (sender, rx) = mpsc::unbounded_channel();
            tokio::spawn(Arc::clone(&self.shared).run(rx));
            sender
        });
        sender
            .send(op)
            .map_err(|_| BlobError::Io(std::io::Error::other("the pack writer has stopped")))
    }

    /// Writes blob `id` holding `data` (at most [`PACK_MAX_BLOB_BYTES`]) into a pack object
    /// with whatever else is waiting; returns once that object is written.
    pub(crate) async fn put(&self, id: BlobId, data: Vec<Bytes>) -> Result<(), BlobError> {
        debug_assert!(data.iter().map(Bytes::len).sum::<usize>() <= PACK_MAX_BLOB_BYTES);
        let (reply, done) = oneshot::channel();
        self.send(Op::Put { id, data, reply })?;
        done.await
            .map_err(|_| BlobError::Io(std::io::Error::other("the pack writer has stopped")))?
    }

    /// Deletes packed blob `id` (a tombstone in the next pack object).
    pub(crate) async fn delete(&self, id: BlobId) -> Result<(), BlobError> {
        let (reply, done) = oneshot::channel();
        self.send(Op::Delete { id, reply })?;
        done.await
            .map_err(|_| BlobError::Io(std::io::Error::other("the pack writer has stopped")))?
    }

    /// Runs one compaction step now (tests and tools); `true` if it changed something.
    pub(crate) async fn compact_now(&self) -> Result<bool, BlobError> {
        self.shared.compact_step().await
    }
}

impl Shared {
    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn path(&self, pack: u64) -> Path {
        self.dir.clone().join(format!("{pack:016x}{PACK_SUFFIX}"))
    }

    /// Lists the packs now, whether or not they were read before.
    async fn relist(&self) -> Result<(), BlobError> {
        self.refresh().await?;
        let _ = self.loaded.set(());
        Ok(())
    }

    /// Lists the pack objects: reads those the index does not know, forgets those removed.
    async fn refresh(&self) -> Result<(), BlobError> {
        let _one = self.refreshing.lock().await;
        let epoch = {
            let mut index = self.index();
            index.epoch += 1;
            index.epoch
        };
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.dir))
            .try_collect()
            .await
            .map_err(|e| site_error(&self.label, e))?;
        let present: HashMap<u64, u64> = listed
            .iter()
            .filter_map(|m| {
                let name = m.location.filename()?.strip_suffix(PACK_SUFFIX)?;
                Some((u64::from_str_radix(name, 16).ok()?, m.size))
            })
            .collect();
        let fresh: Vec<(u64, u64)> = {
            let mut index = self.index();
            let gone: Vec<u64> = index
                .packs
                .iter()
                .filter(|(p, m)| m.epoch < epoch && !present.contains_key(p))
                .map(|(p, _)| *p)
                .collect();
            for pack in gone {
                index.drop_pack(pack);
            }
            present
                .iter()
                .filter(|(p, _)| !index.packs.contains_key(p))
                .map(|(p, s)| (*p, *s))
                .collect()
        };
        let mut read: Vec<(u64, u64, u64, u64, Listed)> =
            futures::stream::iter(fresh.into_iter().map(|(pack, size)| async move {
                match self.read_index(pack, size).await {
                    Ok(Some((created, index_bytes, listed))) => {
                        Ok(Some((pack, created, size, index_bytes, listed)))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                }
            }))
            .buffer_unordered(REMOTE_INDEX_READS)
            .try_filter_map(|x| async move { Ok(x) })
            .try_collect()
            .await?;
        // Oldest first: a newer copy is added after the one it supersedes.
        read.sort_by_key(|(pack, created, ..)| (*created, *pack));
        let mut index = self.index();
        let mut tombstones = Vec::new();
        for (pack, created, size, index_bytes, listed) in &read {
            tombstones.extend(index.add(*pack, *created, *size, *index_bytes, listed));
        }
        for (id, pack) in tombstones {
            index.remove_in(id, pack);
        }
        Ok(())
    }

    /// A pack object's creation time, index length and index; `None` if it is gone.
    async fn read_index(
        &self,
        pack: u64,
        size: u64,
    ) -> Result<Option<(u64, u64, Listed)>, BlobError> {
        let bad = |what: &str| damaged(&self.label, format!("pack {pack:016x}: {what}"));
        if size < PACK_HEADER_BYTES + TRAILER_BYTES {
            return Err(bad("too short for a pack object"));
        }
        let tail_start = size.saturating_sub(REMOTE_TAIL_GUESS);
        let Some(mut tail) = self.get_range(pack, tail_start..size).await? else {
            return Ok(None);
        };
        let trailer = &tail[tail.len() - TRAILER_BYTES as usize..];
        if &trailer[16..] != TRAILER_MAGIC {
            return Err(bad("no pack trailer"));
        }
        let created = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
        let index_bytes = u64::from_le_bytes(trailer[8..16].try_into().expect("8 bytes"));
        let index_start = size
            .checked_sub(TRAILER_BYTES)
            .and_then(|s| s.checked_sub(index_bytes))
            .filter(|s| *s >= PACK_HEADER_BYTES)
            .ok_or_else(|| bad("an index longer than the pack"))?;
        if index_start < tail_start {
            let Some(rest) = self.get_range(pack, index_start..tail_start).await? else {
                return Ok(None);
            };
            let mut whole = BytesMut::from(&rest[..]);
            whole.extend_from_slice(&tail);
            tail = whole.freeze();
        }
        // `tail` now starts at the index, or after it.
        let from = usize::try_from(index_start.saturating_sub(tail_start))
            .map_err(|_| bad("an index too large"))?;
        let raw = &tail[from..tail.len() - TRAILER_BYTES as usize];
        let listed = decode_index(raw, pack, index_start).ok_or_else(|| bad("a damaged index"))?;
        Ok(Some((created, index_bytes, listed)))
    }

    async fn get_range(&self, pack: u64, range: Range<u64>) -> Result<Option<Bytes>, BlobError> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        match self.store.get_opts(&self.path(pack), options).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(|e| site_error(&self.label, e))?;
                if bytes.len() as u64 != range.end - range.start {
                    return Err(damaged(&self.label, "a pack object ends early"));
                }
                Ok(Some(bytes))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(site_error(&self.label, e)),
        }
    }

    /// The writer: takes what waits, as one group per pack object, at most
    /// [`REMOTE_PACKS_IN_FLIGHT`] being written; compacts now and then.
    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Op>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(REMOTE_PACKS_IN_FLIGHT));
        let mut last_compaction = tokio::time::Instant::now();
        loop {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                break;
            };
            let first = match tokio::time::timeout(REMOTE_COMPACT_INTERVAL, rx.recv()).await {
                Ok(Some(op)) => Some(op),
                Ok(None) => break,
                Err(_) => None,
            };
            if last_compaction.elapsed() >= REMOTE_COMPACT_INTERVAL {
                last_compaction = tokio::time::Instant::now();
                self.spawn_compaction();
            }
            let Some(first) = first else {
                continue;
            };
            // Whatever else arrives within the linger joins the group.
            let until = tokio::time::Instant::now() + REMOTE_GROUP_LINGER;
            let mut bytes = first.bytes();
            let mut batch = vec![first];
            while bytes < REMOTE_GROUP_BYTES && batch.len() < REMOTE_GROUP_OPS {
                let next = match rx.try_recv() {
                    Ok(op) => Some(op),
                    Err(_) => tokio::time::timeout_at(until, rx.recv())
                        .await
                        .ok()
                        .flatten(),
                };
                let Some(op) = next else {
                    break;
                };
                bytes += op.bytes();
                batch.push(op);
            }
            let me = Arc::clone(&self);
            tokio::spawn(async move {
                me.commit(batch).await;
                drop(slot);
            });
        }
        // Wait for the groups in flight before the writer is gone.
        let _ = slots
            .acquire_many(u32::try_from(REMOTE_PACKS_IN_FLIGHT).expect("a few"))
            .await;
    }

    fn spawn_compaction(self: &Arc<Self>) {
        if self.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = me.compact_step().await {
                tracing::warn!(site = %me.label, error = %e, "compacting pack objects failed; it will be tried again");
            }
            me.compacting.store(false, Ordering::Release);
        });
    }

    /// One group: its records in one new pack object.
    async fn commit(&self, batch: Vec<Op>) {
        let has_deletes = batch.iter().any(|op| matches!(op, Op::Delete { .. }));
        let _guard = if has_deletes {
            Some(self.deletions.read().await)
        } else {
            None
        };
        let pack = pack_id();
        let created = now_ms();
        let mut records = Vec::with_capacity(batch.len());
        let mut body = encode_pack_header(pack, created).to_vec();
        let mut replies = Vec::with_capacity(batch.len());
        let mut pending = HashSet::new();
        for op in batch {
            match op {
                Op::Put { id, data, reply } => {
                    let h = RecordHeader::blob(id, created, &data);
                    records.push((body.len() as u64, h));
                    body.extend_from_slice(&h.encode());
                    for chunk in &data {
                        body.extend_from_slice(chunk);
                    }
                    pending.insert(id);
                    replies.push(reply);
                }
                Op::Delete { id, reply } => {
                    let target = if pending.contains(&id) {
                        Some(pack)
                    } else {
                        self.index().blobs.get(&id).map(|loc| loc.pack)
                    };
                    if let Some(target) = target {
                        let h = RecordHeader::tombstone(id, target);
                        records.push((body.len() as u64, h));
                        body.extend_from_slice(&h.encode());
                    }
                    replies.push(reply);
                }
            }
        }
        let outcome = if records.is_empty() {
            Ok(())
        } else {
            self.write_pack(pack, created, body, &records).await
        };
        for reply in replies {
            let _ = reply.send(copy_outcome(&outcome));
        }
    }

    /// Writes pack object `pack` (`body`: its header and records) with its index and trailer,
    /// then adds it to the index.
    async fn write_pack(
        &self,
        pack: u64,
        created: u64,
        mut body: Vec<u8>,
        records: &[(u64, RecordHeader)],
    ) -> Result<(), BlobError> {
        let end = body.len() as u64;
        let index = encode_index(pack, end, records);
        let index_bytes = index.len() as u64;
        body.extend_from_slice(&index);
        body.extend_from_slice(&created.to_le_bytes());
        body.extend_from_slice(&index_bytes.to_le_bytes());
        body.extend_from_slice(TRAILER_MAGIC);
        let size = body.len() as u64;
        self.store
            .put(&self.path(pack), PutPayload::from(body))
            .await
            .map_err(|e| site_error(&self.label, e))?;
        let listed = decode_index(&index, pack, end).expect("just encoded");
        let mut idx = self.index();
        for (id, target) in idx.add(pack, created, size, index_bytes, &listed) {
            idx.remove_in(id, target);
        }
        Ok(())
    }

    /// Moves the live records of sparse packs, and of small ones once there are enough, into
    /// one new pack object, then deletes them. `true` if it did.
    async fn compact_step(&self) -> Result<bool, BlobError> {
        self.loaded.get_or_try_init(|| self.refresh()).await?;
        let picked = self.pick();
        if picked.is_empty() {
            return Ok(false);
        }
        // Other gateways' deletions count: their tombstones make blobs dead.
        self.refresh().await?;
        let _alone = self.deletions.write().await;
        let mut sources = Vec::new();
        for pack in picked {
            let size = match self.index().packs.get(&pack) {
                Some(meta) => meta.size,
                None => continue,
            };
            if let Some(bytes) = self.get_range(pack, 0..size).await? {
                sources.push((pack, bytes));
            }
        }
        if sources.is_empty() {
            return Ok(false);
        }
        let source_ids: HashSet<u64> = sources.iter().map(|(p, _)| *p).collect();
        let pack = pack_id();
        // Created after every source, or its copies would not count over theirs.
        let created = {
            let index = self.index();
            source_ids
                .iter()
                .filter_map(|p| index.packs.get(p))
                .map(|m| m.created_ms + 1)
                .fold(now_ms(), u64::max)
        };
        let mut body = encode_pack_header(pack, created).to_vec();
        let mut records = Vec::new();
        for (source, bytes) in &sources {
            let size = bytes.len() as u64;
            let index_bytes = self.index().packs[source].index_bytes;
            let end = size - index_bytes - TRAILER_BYTES;
            let raw = &bytes[usize::try_from(end).expect("in memory")
                ..usize::try_from(size - TRAILER_BYTES).expect("in memory")];
            let listed = decode_index(raw, *source, end).ok_or_else(|| {
                damaged(&self.label, format!("pack {source:016x}: a damaged index"))
            })?;
            let index = self.index();
            for (offset, h) in listed.blobs.iter().chain(&listed.tombstones) {
                let keep = if h.kind == KIND_BLOB {
                    index.blobs.get(&h.id).is_some_and(|loc| {
                        loc.pack == *source && loc.offset == offset + RECORD_HEADER_BYTES as u64
                    })
                } else {
                    // A tombstone is kept while the pack whose copy it deletes is there.
                    !source_ids.contains(&h.reference) && index.packs.contains_key(&h.reference)
                };
                if keep {
                    let start = usize::try_from(*offset).expect("in memory");
                    let stop = start + RECORD_HEADER_BYTES + h.len as usize;
                    records.push((body.len() as u64, *h));
                    // Copied as it was: a copy of damaged data stays detectable.
                    body.extend_from_slice(&bytes[start..stop]);
                }
            }
        }
        if !records.is_empty() {
            self.write_pack(pack, created, body, &records).await?;
        }
        for (source, _) in &sources {
            if self
                .index()
                .packs
                .get(source)
                .is_some_and(|m| m.live_blobs > 0)
            {
                return Err(damaged(
                    &self.label,
                    format!("pack {source:016x} still holds live blobs after compaction"),
                ));
            }
            match self.store.delete(&self.path(*source)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(site_error(&self.label, e)),
            }
            self.index().drop_pack(*source);
        }
        tracing::debug!(site = %self.label, packs = sources.len(), "pack objects compacted");
        Ok(true)
    }

    /// The packs worth compacting now, at most [`REMOTE_COMPACT_STEP_BYTES`] of them.
    fn pick(&self) -> Vec<u64> {
        let index = self.index();
        let mut sparse: Vec<(u64, f64)> = Vec::new();
        let mut small: Vec<(u64, u64)> = Vec::new();
        for (pack, meta) in &index.packs {
            if meta.sparse() {
                #[allow(clippy::cast_precision_loss)]
                sparse.push((*pack, meta.live as f64 / meta.records_bytes().max(1) as f64));
            } else if meta.size < REMOTE_SMALL_PACK_BYTES {
                small.push((*pack, meta.created_ms));
            }
        }
        sparse.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut picked: Vec<u64> = sparse.into_iter().map(|(p, _)| p).collect();
        if small.len() >= REMOTE_MERGE_MIN_PACKS {
            small.sort_by_key(|(p, created)| (*created, *p));
            picked.extend(small.into_iter().map(|(p, _)| p));
        }
        let mut total = 0;
        picked
            .into_iter()
            .take_while(|p| {
                let first = total == 0;
                total += index.packs[p].size;
                first || total <= REMOTE_COMPACT_STEP_BYTES
            })
            .collect()
    }
}

fn pack_id() -> u64 {
    u64::from_le_bytes(
        BlobId::random().to_bytes()[..8]
            .try_into()
            .expect("8 bytes"),
    )
}
