//! The server's transparency log: one writer thread owns the tile store; requests hand it
//! their entries and wait until they are durable (group commit: everything waiting is
//! flushed together). The thread integrates entries into tiles and signs a checkpoint every
//! `checkpoint_interval_ms`, asks the configured witnesses to cosign it, and publishes it.
//! The `/log/` routes serve the directory read-only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use vallum_core::journal::{Entry, Event, Journal, JournalError, KeyPrivacy, SiteRef};
use vallum_core::meta::MetaStore;
use vallum_ledger::checkpoint::Checkpoint;
use vallum_ledger::entry::MAX_ENCODED_ENTRY_BYTES;
use vallum_ledger::merkle::consistency_proof;
use vallum_ledger::note::{Note, Signer, Verifier};
use vallum_ledger::store::TileStore;
use vallum_ledger::witness::AddCheckpoint;
use zeroize::Zeroizing;

use crate::config::{LedgerConfig, WitnessConfig};

/// Most entries integrated in one go before the writer integrates early (bounds memory).
const MAX_PENDING_ENTRIES: u64 = 65_536;
/// Most requests' entries flushed in one group commit.
const MAX_GROUP_REQUESTS: usize = 4096;
/// Time allowed for one witness exchange (the writer waits for it, so it is short).
const WITNESS_TIMEOUT_MS: u64 = 2000;
/// After a failed exchange, a witness is not asked again for this long.
const WITNESS_BACKOFF_SECS: u64 = 60;
/// The signer key file, under the ledger directory.
pub(crate) const SIGNER_FILE: &str = "signer.key";
/// The secret for keyed hashes of object keys.
pub(crate) const KEY_HASH_FILE: &str = "key-hash.secret";

/// Why the running log could not do something. Cloneable: one failed group commit answers
/// every request waiting in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// The log's files or formats (tile store, bundles, notes, proofs).
    #[error("transparency log: {0}")]
    Store(Arc<vallum_ledger::LedgerError>),
    /// A file of the log directory.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: Arc<std::io::Error>,
    },
    /// The metadata database that sequences the shared log.
    #[error("the log's database sequence: {0}")]
    Sequence(Arc<vallum_core::meta::MetaError>),
    /// The log has published no checkpoint yet.
    #[error("the log has no published checkpoint: {0}")]
    NoCheckpoint(Arc<std::io::Error>),
    /// The writer is gone (shutting down, or its thread or task failed).
    #[error("the log writer has stopped")]
    Stopped,
    /// A witness did not cosign (logged; the checkpoint is published without it).
    #[error("witness: {0}")]
    Witness(String),
}

impl From<vallum_ledger::LedgerError> for LogError {
    fn from(e: vallum_ledger::LedgerError) -> Self {
        Self::Store(Arc::new(e))
    }
}

impl From<vallum_core::meta::MetaError> for LogError {
    fn from(e: vallum_core::meta::MetaError) -> Self {
        Self::Sequence(Arc::new(e))
    }
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |e| LogError::File {
        path: path.to_owned(),
        source: Arc::new(e),
    }
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LedgerStartError {
    /// The tile store or key files could not be read or written.
    #[error("transparency log at {path}: {message}")]
    Storage {
        /// The directory or file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The configured origin differs from the existing signer key's name.
    #[error(
        "ledger.origin {configured:?} differs from the log's signer key name {existing:?}; a log's origin cannot change (rotate the key as docs/transparency-log.md describes)"
    )]
    OriginMismatch {
        /// Configured.
        configured: String,
        /// From the key file.
        existing: String,
    },
}

enum Msg {
    Append(
        Vec<Vec<u8>>,
        tokio::sync::oneshot::Sender<Result<u64, LogError>>,
    ),
    Stop,
}

/// The running log.
pub struct Ledger {
    dir: PathBuf,
    origin: String,
    vkey: String,
    mode: Mode,
}

type Reply = tokio::sync::oneshot::Sender<Result<u64, LogError>>;

enum Mode {
    /// Embedded: this process sequences into the tile store's write-ahead file.
    Local {
        tx: std::sync::Mutex<mpsc::Sender<Msg>>,
        integrated: Arc<AtomicU64>,
        thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    },
    /// Several gateways over one database: the database sequences entries; any gateway may
    /// integrate them into the shared tile directory, one at a time (a file lock).
    Shared {
        meta: Arc<dyn MetaStore>,
        batches: tokio::sync::mpsc::UnboundedSender<(Vec<Vec<u8>>, Reply)>,
        publisher: Arc<std::sync::Mutex<Publisher>>,
    },
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("origin", &self.origin)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn storage(path: &Path) -> impl FnOnce(String) -> LedgerStartError + '_ {
    move |message| LedgerStartError::Storage {
        path: path.to_owned(),
        message,
    }
}

/// Writes a secret file readable only by its owner, durably, if it does not exist.
fn create_secret(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    // A unique temporary name, then a hard link: if another gateway sharing the directory
    // created the file first, its file wins and the caller reads it.
    let tmp = path.with_extension(format!("tmp-{}", vallum_types::UploadId::random()));
    let mut f = opts.open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Loads the log's signer from `dir`, generating it on first start.
pub fn load_or_create_signer(dir: &Path, origin: &str) -> Result<Signer, LedgerStartError> {
    let path = dir.join(SIGNER_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let signer = Signer::from_skey(text.trim()).map_err(|e| LedgerStartError::Storage {
                path: path.clone(),
                message: e.to_string(),
            })?;
            if !origin.is_empty() && signer.name() != origin {
                return Err(LedgerStartError::OriginMismatch {
                    configured: origin.to_owned(),
                    existing: signer.name().to_owned(),
                });
            }
            Ok(signer)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = if origin.is_empty() {
                format!("vallum.local/{}", vallum_types::UploadId::random())
            } else {
                origin.to_owned()
            };
            let signer = Signer::generate(&name).map_err(|e| storage(&path)(e.to_string()))?;
            let skey = signer.to_skey();
            let mut text = Zeroizing::new(skey.as_bytes().to_vec());
            text.push(b'\n');
            create_secret(&path, &text).map_err(|e| storage(&path)(e.to_string()))?;
            // Read back: a gateway starting at the same moment may have won.
            let stored = Zeroizing::new(
                std::fs::read_to_string(&path).map_err(|e| storage(&path)(e.to_string()))?,
            );
            let signer =
                Signer::from_skey(stored.trim()).map_err(|e| storage(&path)(e.to_string()))?;
            tracing::info!(origin = %signer.name(), vkey = %signer.vkey(), "transparency log signer key generated");
            Ok(signer)
        }
        Err(e) => Err(storage(&path)(e.to_string())),
    }
}

/// Loads (or creates) the keyed-hash secret and builds the key privacy settings.
pub fn key_privacy(dir: &Path, buckets: &[String]) -> Result<KeyPrivacy, LedgerStartError> {
    let path = dir.join(KEY_HASH_FILE);
    if !path.exists() {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(secret.as_mut_slice()).map_err(|e| storage(&path)(e.to_string()))?;
        create_secret(&path, secret.as_slice()).map_err(|e| storage(&path)(e.to_string()))?;
    }
    let bytes = Zeroizing::new(std::fs::read(&path).map_err(|e| storage(&path)(e.to_string()))?);
    let secret: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| storage(&path)("the secret is not 32 bytes".into()))?;
    Ok(KeyPrivacy::new(Zeroizing::new(secret), buckets.to_vec()))
}

/// Whether `path` is a resource the log may serve at integrated size `size`.
fn servable(path: &str, size: u64) -> bool {
    if path == "checkpoint" {
        return true;
    }
    vallum_ledger::store::is_published(path, size).unwrap_or(false)
}

impl Ledger {
    /// Opens the log in `dir` (tiles under `dir/log`), records a `log_started` entry and
    /// publishes a first checkpoint, then starts the writer thread.
    pub fn start(
        dir: &Path,
        config: &LedgerConfig,
        sites: Vec<SiteRef>,
    ) -> Result<Arc<Self>, LedgerStartError> {
        std::fs::create_dir_all(dir).map_err(|e| storage(dir)(e.to_string()))?;
        let signer = load_or_create_signer(dir, &config.origin)?;
        let origin = signer.name().to_owned();
        let log_dir = dir.join("log");
        let mut store = TileStore::open(&log_dir).map_err(|e| storage(&log_dir)(e.to_string()))?;
        let started = Entry::new(
            now_ms(),
            "system:server",
            Event::LogStarted {
                origin: origin.clone(),
                vkey: signer.vkey(),
                sites,
            },
        );
        let started =
            seal(&started, started.encode()).map_err(|e| storage(&log_dir)(e.to_string()))?;
        store
            .append(&[started])
            .map_err(|e| storage(&log_dir)(e.to_string()))?;
        store
            .integrate()
            .map_err(|e| storage(&log_dir)(e.to_string()))?;
        let mut writer = Writer {
            store,
            publisher: Publisher::new(signer, &config.witnesses),
            integrated: Arc::new(AtomicU64::new(0)),
        };
        writer
            .checkpoint()
            .map_err(|e| storage(&log_dir)(e.to_string()))?;
        let integrated = Arc::clone(&writer.integrated);
        let vkey = writer.publisher.signer.vkey();
        let (tx, rx) = mpsc::channel();
        let interval = Duration::from_millis(config.checkpoint_interval_ms);
        let thread = std::thread::Builder::new()
            .name("vallum-ledger".into())
            .spawn(move || writer.run(&rx, interval))
            .map_err(|e| storage(dir)(e.to_string()))?;
        tracing::info!(%origin, %vkey, "transparency log open");
        Ok(Arc::new(Self {
            dir: log_dir,
            origin,
            vkey,
            mode: Mode::Local {
                tx: std::sync::Mutex::new(tx),
                integrated,
                thread: std::sync::Mutex::new(Some(thread)),
            },
        }))
    }

    /// The log's origin line.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The log's verifier key.
    #[must_use]
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// A published resource (`checkpoint`, `tile/...`), or `None`.
    pub fn resource(&self, path: &str) -> Option<Vec<u8>> {
        let size = match &self.mode {
            Mode::Local { integrated, .. } => integrated.load(Ordering::Acquire),
            Mode::Shared { .. } => TileStore::committed_size(&self.dir).ok()?,
        };
        if !servable(path, size) {
            return None;
        }
        std::fs::read(self.dir.join(path)).ok()
    }

    /// A proof bundle of the sealed entries `owner` may read (a tenant's, or with `""` the
    /// platform's and the default tenant's), at the published checkpoint: each entry with its
    /// opening, and the proofs from the public tiles. `keep` selects among them.
    pub fn bundle_for(
        &self,
        owner: &str,
        keep: &dyn Fn(&Entry) -> bool,
        filter: vallum_ledger::verify::BundleFilter,
        since_size: Option<u64>,
    ) -> Result<vallum_ledger::verify::ProofBundle, LogError> {
        use vallum_ledger::seal::Opening;
        use vallum_ledger::tile::{TILE_WIDTH, TileId};
        let note_text = std::fs::read(self.dir.join("checkpoint"))
            .map_err(|e| LogError::NoCheckpoint(Arc::new(e)))?;
        let note = Note::parse(&note_text)?;
        let size = Checkpoint::parse(&note.text)?.size;
        let mut chosen: Vec<(u64, Opening)> = Vec::new();
        for b in 0..size.div_ceil(TILE_WIDTH) {
            let width = (size - b * TILE_WIDTH).min(TILE_WIDTH);
            let id = TileId {
                level: None,
                index: b,
                width: u16::try_from(width).unwrap_or(256),
            };
            // Sealed entries live in the private bundles; a bundle without one has none.
            let path = self
                .dir
                .join(vallum_ledger::store::PRIVATE_DIR)
                .join(id.path());
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(file_error(&path)(e)),
            };
            let stored = vallum_ledger::store::decode_bundle(&bytes)?;
            for (i, s) in stored.iter().enumerate() {
                let Some(o) = Opening::decode(s)? else {
                    continue;
                };
                if o.owner != owner {
                    continue;
                }
                let entry = o.parsed()?;
                if keep(&entry) {
                    chosen.push((b * TILE_WIDTH + i as u64, o));
                }
            }
        }
        let fetcher = vallum_ledger::client::DirFetcher(self.dir.clone());
        vallum_ledger::verify::ProofBundle::export_openings(
            &fetcher, &note, &chosen, filter, since_size,
        )
        .map_err(LogError::from)
    }

    /// Appends encoded entries; resolves once durable, with the first index.
    pub async fn append(&self, entries: Vec<Vec<u8>>) -> Result<u64, LogError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stopped = || LogError::Stopped;
        match &self.mode {
            Mode::Local { tx: writer, .. } => writer
                .lock()
                .map_err(|_| LogError::Stopped)?
                .send(Msg::Append(entries, tx))
                .map_err(|_| stopped())?,
            Mode::Shared { batches, .. } => batches.send((entries, tx)).map_err(|_| stopped())?,
        }
        rx.await.map_err(|_| stopped())?
    }

    /// Stops the writer after integrating and publishing what it has.
    pub fn stop(&self) {
        if let Mode::Local { tx, thread, .. } = &self.mode {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(Msg::Stop);
            }
            if let Some(t) = thread.lock().ok().and_then(|mut t| t.take()) {
                let _ = t.join();
            }
        }
    }

    /// Opens the log of a multi-gateway deployment: entries are sequenced by the metadata
    /// database, tiles live in the shared `dir/log`. Records a `log_started` entry and
    /// integrates what is waiting.
    pub async fn start_shared(
        dir: &Path,
        config: &LedgerConfig,
        sites: Vec<SiteRef>,
        meta: Arc<dyn MetaStore>,
    ) -> Result<Arc<Self>, LedgerStartError> {
        std::fs::create_dir_all(dir).map_err(|e| storage(dir)(e.to_string()))?;
        let signer = load_or_create_signer(dir, &config.origin)?;
        let origin = signer.name().to_owned();
        let vkey = signer.vkey();
        let log_dir = dir.join("log");
        std::fs::create_dir_all(&log_dir).map_err(|e| storage(&log_dir)(e.to_string()))?;
        let started = Entry::new(
            now_ms(),
            "system:gateway",
            Event::LogStarted {
                origin: origin.clone(),
                vkey: vkey.clone(),
                sites,
            },
        );
        // The shared tiles must be this database's log: its entry at the tiles' last index
        // must be the same bytes (a wiped or foreign database would silently fork the log).
        let integrated =
            TileStore::committed_size(&log_dir).map_err(|e| storage(&log_dir)(e.to_string()))?;
        if integrated > 0 {
            let ours = meta
                .ledger_read(integrated - 1, 1)
                .await
                .map_err(|e| storage(&log_dir)(e.to_string()))?;
            let client_dir = vallum_ledger::client::DirFetcher(log_dir.clone());
            let client = vallum_ledger::client::LogClient::new(&client_dir, integrated);
            let tiles = client
                .bundle((integrated - 1) / 256)
                .ok()
                .and_then(|b| b.get(((integrated - 1) % 256) as usize).cloned());
            // The database holds the stored form; the tiles, the public leaf.
            let ours = ours
                .first()
                .and_then(|o| vallum_ledger::seal::public_leaf(o).ok())
                .map(std::borrow::Cow::into_owned);
            if ours != tiles {
                return Err(storage(&log_dir)(format!(
                    "the log directory holds {integrated} entries that the database's log sequence does not match; \
                     was the database replaced, or the embedded log not migrated (vallum migrate-meta copies it)?"
                )));
            }
        }
        let started =
            seal(&started, started.encode()).map_err(|e| storage(&log_dir)(e.to_string()))?;
        meta.ledger_append(&[started])
            .await
            .map_err(|e| storage(&log_dir)(e.to_string()))?;
        let (batches, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(sequence_batches(Arc::clone(&meta), rx));
        let ledger = Arc::new(Self {
            dir: log_dir.clone(),
            origin,
            vkey,
            mode: Mode::Shared {
                meta,
                batches,
                publisher: Arc::new(std::sync::Mutex::new(Publisher::new(
                    signer,
                    &config.witnesses,
                ))),
            },
        });
        ledger
            .integrate_shared()
            .await
            .map_err(|e| storage(&log_dir)(e.to_string()))?;
        tracing::info!(origin = %ledger.origin, vkey = %ledger.vkey, "transparency log open (sequenced by the metadata database)");
        Ok(ledger)
    }

    /// In a multi-gateway deployment: integrates what the database has sequenced into the
    /// shared tiles and publishes a checkpoint. Returns whether more is waiting.
    pub async fn integrate_shared(&self) -> Result<bool, LogError> {
        let Mode::Shared {
            meta, publisher, ..
        } = &self.mode
        else {
            return Ok(false);
        };
        let (meta, publisher, dir) = (Arc::clone(meta), Arc::clone(publisher), self.dir.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            // One integrator at a time across gateways sharing the directory.
            let lock_path = dir.join("LOCK");
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(file_error(&lock_path))?;
            lock.lock().map_err(file_error(&lock_path))?;
            let mut store = TileStore::open(&dir)?;
            let had_checkpoint = dir.join("checkpoint").exists();
            let mut changed = false;
            let mut more = false;
            for round in 0..SHARED_ROUNDS_PER_STEP {
                let batch = handle.block_on(meta.ledger_read(store.size(), SHARED_READ_ENTRIES))?;
                if batch.is_empty() {
                    break;
                }
                store.integrate_entries(&batch)?;
                changed = true;
                more = batch.len() == SHARED_READ_ENTRIES && round + 1 == SHARED_ROUNDS_PER_STEP;
            }
            if changed || !had_checkpoint {
                publisher
                    .lock()
                    .map_err(|_| LogError::Stopped)?
                    .publish(&store)?;
            }
            drop(lock);
            Ok(more)
        })
        .await
        .map_err(|_| LogError::Stopped)?
    }
}

/// Entries read from the database per round of shared integration.
const SHARED_READ_ENTRIES: usize = 16_384;
/// Rounds per integration step before yielding.
const SHARED_ROUNDS_PER_STEP: usize = 8;

/// Group commit for the database sequencer: everything waiting goes in one transaction.
async fn sequence_batches(
    meta: Arc<dyn MetaStore>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(Vec<Vec<u8>>, Reply)>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP_REQUESTS {
            match rx.try_recv() {
                Ok(b) => batch.push(b),
                Err(_) => break,
            }
        }
        let all: Vec<Vec<u8>> = batch.iter().flat_map(|(e, _)| e.iter().cloned()).collect();
        match meta.ledger_append(&all).await {
            Ok(first) => {
                let mut at = first;
                for (entries, tx) in batch {
                    let _ = tx.send(Ok(at));
                    at += entries.len() as u64;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "transparency log append failed; the requests fail");
                let err = LogError::from(e);
                for (_, tx) in batch {
                    let _ = tx.send(Err(err.clone()));
                }
            }
        }
    }
}

/// The journal the object service writes to.
#[derive(Debug, Clone)]
pub struct LedgerJournal(pub Arc<Ledger>);

#[async_trait]
impl Journal for LedgerJournal {
    async fn record(&self, entries: Vec<Entry>) -> Result<(), JournalError> {
        let mut sealed = Vec::with_capacity(entries.len());
        for entry in &entries {
            let encoded = entry.encode();
            if encoded.len() > MAX_ENCODED_ENTRY_BYTES {
                return Err(JournalError(format!(
                    "an entry of {} bytes exceeds the {MAX_ENCODED_ENTRY_BYTES}-byte limit",
                    encoded.len()
                )));
            }
            sealed.push(seal(entry, encoded).map_err(|e| JournalError(e.to_string()))?);
        }
        self.0
            .append(sealed)
            .await
            .map(|_| ())
            .map_err(|e| JournalError(e.to_string()))
    }
}

/// The tenant an entry belongs to: its bucket's tenant, or the `tenant=` an administrative
/// entry names; empty for the platform and the default tenant (the root credentials' own).
#[must_use]
pub fn owner_of(entry: &Entry) -> String {
    if let Some(bucket) = entry.event.bucket() {
        return bucket
            .split_once(vallum_core::iam::model::TENANT_SEPARATOR)
            .map(|(t, _)| t.to_owned())
            .unwrap_or_default();
    }
    if let Event::Admin { target, .. } = &entry.event {
        // `tenant=T`, or what names a tenant's user (`user=T/U`, `guardian=T/U`) or bucket
        // (`bucket=T:B`).
        let sep = vallum_core::iam::model::TENANT_SEPARATOR;
        let tenant = target.split_whitespace().find_map(|w| {
            w.strip_prefix("tenant=")
                .or_else(|| {
                    w.strip_prefix("user=")
                        .or_else(|| w.strip_prefix("guardian="))
                        .and_then(|u| u.split_once('/').map(|(t, _)| t))
                })
                .or_else(|| {
                    w.strip_prefix("bucket=")
                        .and_then(|b| b.split_once(sep).map(|(t, _)| t))
                })
        });
        if let Some(t) = tenant
            && t != vallum_core::iam::model::DEFAULT_TENANT
        {
            return t.to_owned();
        }
    }
    String::new()
}

/// The stored (sealed) form of an entry: its public leaf is a commitment; the opening stays
/// in the log's private bundles, for the entry's tenant.
pub(crate) fn seal(entry: &Entry, encoded: Vec<u8>) -> Result<Vec<u8>, LogError> {
    Ok(vallum_ledger::seal::Opening::seal(encoded, &owner_of(entry))?.encode())
}

struct WitnessState {
    config: WitnessConfig,
    key: Verifier,
    /// The size this witness last cosigned, as far as we know.
    size: u64,
    /// Not asked before this instant (after a failure).
    resting_until: Option<Instant>,
}

/// Signs checkpoints, gathers witness cosignatures and publishes them.
struct Publisher {
    signer: Signer,
    origin: String,
    witnesses: Vec<WitnessState>,
}

struct Writer {
    store: TileStore,
    publisher: Publisher,
    integrated: Arc<AtomicU64>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Writer {
    fn run(&mut self, rx: &mpsc::Receiver<Msg>, interval: Duration) {
        let mut next_checkpoint = Instant::now() + interval;
        loop {
            let wait = next_checkpoint.saturating_duration_since(Instant::now());
            let first = match rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => Some(Msg::Stop),
            };
            let mut batch = Vec::new();
            let mut stop = false;
            if let Some(m) = first {
                match m {
                    Msg::Append(e, tx) => batch.push((e, tx)),
                    Msg::Stop => stop = true,
                }
                // Group commit: take everything already waiting.
                while batch.len() < MAX_GROUP_REQUESTS {
                    match rx.try_recv() {
                        Ok(Msg::Append(e, tx)) => batch.push((e, tx)),
                        Ok(Msg::Stop) => stop = true,
                        Err(_) => break,
                    }
                }
            }
            if !batch.is_empty() {
                self.append_batch(batch);
            }
            let pending = self.store.sequenced() - self.store.size();
            if stop || Instant::now() >= next_checkpoint || pending >= MAX_PENDING_ENTRIES {
                if pending > 0
                    && let Err(e) = self.checkpoint()
                {
                    tracing::error!(error = %e, "could not integrate or sign a checkpoint; will retry");
                }
                next_checkpoint = Instant::now() + interval;
            }
            if stop {
                return;
            }
        }
    }

    fn append_batch(&mut self, batch: Vec<(Vec<Vec<u8>>, Reply)>) {
        let all: Vec<Vec<u8>> = batch.iter().flat_map(|(e, _)| e.iter().cloned()).collect();
        match self.store.append(&all) {
            Ok(first) => {
                let mut at = first;
                for (entries, tx) in batch {
                    let _ = tx.send(Ok(at));
                    at += entries.len() as u64;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "transparency log append failed; the requests fail");
                let err = LogError::from(e);
                for (_, tx) in batch {
                    let _ = tx.send(Err(err.clone()));
                }
            }
        }
    }

    /// Integrates, then signs and publishes a checkpoint.
    fn checkpoint(&mut self) -> Result<(), LogError> {
        self.store.integrate()?;
        let size = self.publisher.publish(&self.store)?;
        self.integrated.store(size, Ordering::Release);
        Ok(())
    }
}

impl Publisher {
    fn new(signer: Signer, witnesses: &[WitnessConfig]) -> Self {
        Self {
            origin: signer.name().to_owned(),
            signer,
            witnesses: witnesses
                .iter()
                .filter_map(|w| {
                    Verifier::parse(&w.vkey).ok().map(|key| WitnessState {
                        config: w.clone(),
                        key,
                        size: 0,
                        resting_until: None,
                    })
                })
                .collect(),
        }
    }

    /// Signs a checkpoint of the store's integrated tree, gathers cosignatures and publishes
    /// it; returns its size.
    fn publish(&mut self, store: &TileStore) -> Result<u64, LogError> {
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size: store.size(),
            root: store.root()?,
            extensions: Vec::new(),
        };
        let mut note = cp.sign(&self.signer);
        for i in 0..self.witnesses.len() {
            if self.witnesses[i]
                .resting_until
                .is_some_and(|t| Instant::now() < t)
            {
                continue;
            }
            match self.cosign(i, store, &cp, &note) {
                Ok(sig) => {
                    note.signatures.extend(sig);
                    self.witnesses[i].resting_until = None;
                }
                Err(e) => {
                    tracing::warn!(witness = %self.witnesses[i].config.url, error = %e, "witness did not cosign the checkpoint; retrying in {WITNESS_BACKOFF_SECS} s");
                    self.witnesses[i].resting_until =
                        Some(Instant::now() + Duration::from_secs(WITNESS_BACKOFF_SECS));
                }
            }
        }
        store.publish_note(&note)?;
        Ok(cp.size)
    }

    /// Asks witness `i` to cosign; retries once with the size a 409 reports.
    fn cosign(
        &mut self,
        i: usize,
        store: &TileStore,
        cp: &Checkpoint,
        note: &Note,
    ) -> Result<Vec<vallum_ledger::note::NoteSignature>, String> {
        for _ in 0..2 {
            let old = self.witnesses[i].size.min(cp.size);
            let proof = if old == 0 {
                Vec::new()
            } else {
                consistency_proof(store, old, cp.size).map_err(|e| e.to_string())?
            };
            let body = AddCheckpoint {
                old_size: old,
                proof,
                checkpoint: note.to_text().into_bytes(),
            }
            .to_body();
            let url = format!(
                "{}/add-checkpoint",
                self.witnesses[i].config.url.trim_end_matches('/')
            );
            let mut config = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_millis(WITNESS_TIMEOUT_MS)))
                .http_status_as_error(false);
            // An https:// witness is checked against the system's roots.
            if url.starts_with("https://") {
                config = config
                    .tls_config(crate::tls_client::tls_config(None).map_err(|e| e.to_string())?);
            }
            let agent: ureq::Agent = config.build().into();
            let mut resp = agent
                .post(&url)
                .send(&body[..])
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let text = resp
                .body_mut()
                .with_config()
                .limit(64 * 1024)
                .read_to_string()
                .map_err(|e| e.to_string())?;
            match status {
                200 => {
                    let with = Note::parse(format!("{}\n{text}", note.text).as_bytes())
                        .map_err(|e| format!("unreadable cosignature: {e}"))?;
                    let key = self.witnesses[i].key.clone();
                    vallum_ledger::note::open(&with, std::slice::from_ref(&key))
                        .map_err(|e| format!("cosignature does not verify: {e}"))?;
                    self.witnesses[i].size = cp.size;
                    return Ok(with
                        .signatures
                        .into_iter()
                        .filter(|s| s.name == key.name && s.key_id == key.id)
                        .collect());
                }
                409 => {
                    let size: u64 = text
                        .trim()
                        .parse()
                        .map_err(|_| format!("409 with a bad size {text:?}"))?;
                    if size > cp.size {
                        return Err(format!(
                            "the witness has cosigned size {size}, larger than this log's {}: a fork or a reset log",
                            cp.size
                        ));
                    }
                    self.witnesses[i].size = size;
                }
                _ => return Err(format!("HTTP {status}: {}", text.trim())),
            }
        }
        Err("the witness kept reporting another size".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_are_durable_integrated_and_signed() {
        let dir = tempfile::tempdir().unwrap();
        let config = LedgerConfig {
            checkpoint_interval_ms: 20,
            ..LedgerConfig::default()
        };
        let ledger = Ledger::start(dir.path(), &config, vec![]).unwrap();
        let journal = LedgerJournal(Arc::clone(&ledger));
        let mut tasks = Vec::new();
        for i in 0..50 {
            let j = journal.clone();
            tasks.push(tokio::spawn(async move {
                j.record(vec![Entry::new(
                    i,
                    "key:T",
                    Event::Admin {
                        action: "test".into(),
                        target: format!("{i}"),
                    },
                )])
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // Within a few intervals the checkpoint covers all 51 entries.
        let key = Verifier::parse(ledger.vkey()).unwrap();
        let mut size = 0;
        for _ in 0..100 {
            let note = ledger.resource("checkpoint").unwrap();
            size = Checkpoint::open(&note, &key, &[]).unwrap().0.size;
            if size == 51 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(size, 51);
        assert!(ledger.resource("tile/entries/000.p/51").is_some());
        assert!(ledger.resource("tile/entries/000.p/52").is_none());
        assert!(ledger.resource("../signer.key").is_none());
        ledger.stop();
        // The key survives a restart; a different configured origin is refused.
        let again = Ledger::start(dir.path(), &config, vec![]).unwrap();
        assert_eq!(again.vkey(), ledger.vkey());
        again.stop();
        let other = LedgerConfig {
            origin: "elsewhere.example/log".into(),
            ..config
        };
        assert!(matches!(
            Ledger::start(dir.path(), &other, vec![]),
            Err(LedgerStartError::OriginMismatch { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SIGNER_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
