//! Start-up: open the stores, build the S3 service, listen, run the garbage collector, and
//! shut down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vallum_blob::{AzureSite, LocalBlobStore, RemoteBlobStore, S3Site};
use vallum_core::clock::SystemClock;
use vallum_core::context::RequestContext;
use vallum_core::journal::Event;

use crate::ledger::{Ledger, LedgerJournal};
use vallum_core::gc::GcPolicy;
use vallum_core::lifecycle::LIFECYCLE_JOB;

/// The lease under which one gateway at a time integrates the shared transparency log.
/// Who records what the server does as it starts (`system:<this>`).
const START_JOB: &str = "start";
const LEDGER_JOB: &str = "ledger";
use vallum_core::meta::MetaStore;
use vallum_core::service::ObjectService;
use vallum_meta::{PgMetaStore, SqliteMetaStore};

/// The metadata store the server opened, kept to close it on shutdown.
enum MetaHandle {
    Sqlite(SqliteMetaStore),
    Postgres(PgMetaStore),
}

impl MetaHandle {
    fn shared(&self) -> Arc<dyn MetaStore> {
        match self {
            MetaHandle::Sqlite(s) => Arc::new(s.clone()),
            MetaHandle::Postgres(p) => Arc::new(p.clone()),
        }
    }

    async fn close(&self) {
        match self {
            MetaHandle::Sqlite(s) => s.close().await,
            MetaHandle::Postgres(p) => p.close().await,
        }
    }
}
use vallum_types::limits::{HEADER_READ_TIMEOUT_SECS, MAX_XML_BODY_BYTES, SHUTDOWN_GRACE_SECS};

use crate::config::{Config, ConfigError};
use crate::credentials::Credentials;
use crate::http_service::VallumHttp;
use crate::metrics::Metrics;
use crate::s3::VallumS3;

/// Name of the lease under which garbage collection runs.
const GC_LEASE: &str = "gc";
/// Shortest lease a collector holds (it renews every interval and holds three intervals).
const GC_LEASE_MIN_TTL_SECS: u64 = 60;
/// Lease of the job that destroys keys whose scheduled deletion is due.
const KEY_DELETION_JOB: &str = "key-deletion";
/// How often due key deletions are looked for.
const KEY_DELETION_INTERVAL: Duration = Duration::from_secs(60);
/// How often each gateway checks stored data against the boundary policies.
const BOUNDARY_CHECK_INTERVAL: Duration = Duration::from_secs(300);
/// Versions the lifecycle worker examines per step (between lease renewals).
const LIFECYCLE_STEP_VERSIONS: usize = 10_000;

/// Opens one storage site: a local directory, or a remote S3 / Azure store whose secret comes
/// from the environment. A remote site that cannot be reached at start is reported but does
/// not stop the gateway (it may come back; requests fail over or wait until then).
pub(crate) async fn open_store(
    site: &crate::config::SiteConfig,
    data_dir: &std::path::Path,
    primary: bool,
) -> Result<Arc<dyn vallum_core::blob::BlobStore>, ServerError> {
    let store = connect_store(site, data_dir, primary).await?;
    if site.backend != "local"
        && let Err(e) = probe_store(&*store).await
    {
        tracing::error!(site = %site.id, backend = %site.backend, error = %e, "the storage site does not answer as expected; requests will fail over or fail until it does");
    }
    Ok(store)
}

/// Opens one storage site without asking it anything.
pub(crate) async fn connect_store(
    site: &crate::config::SiteConfig,
    data_dir: &std::path::Path,
    primary: bool,
) -> Result<Arc<dyn vallum_core::blob::BlobStore>, ServerError> {
    let secret = |field: &'static str, var: &str| {
        std::env::var(var)
            .map(zeroize::Zeroizing::new)
            .map_err(|_| ConfigError::Value {
                field,
                message: format!(
                    "site {}: the environment variable {var} is not set",
                    site.id
                ),
            })
    };
    let ca = |path: &str| -> Result<Option<Vec<u8>>, ConfigError> {
        if path.is_empty() {
            return Ok(None);
        }
        std::fs::read(path)
            .map(Some)
            .map_err(|source| ConfigError::Read {
                path: path.into(),
                source,
            })
    };
    let remote = match site.backend.as_str() {
        "s3" => {
            let s3 = &site.s3;
            RemoteBlobStore::s3(
                &S3Site {
                    endpoint: s3.endpoint.clone(),
                    bucket: s3.bucket.clone(),
                    region: s3.region.clone(),
                    access_key: s3.access_key.clone(),
                    secret_key: secret("site.s3.secret_env", &s3.secret_env)?,
                    ca_pem: ca(&s3.ca_file)?,
                },
                &s3.prefix,
            )
        }
        "azure" => {
            let az = &site.azure;
            RemoteBlobStore::azure(
                &AzureSite {
                    account: az.account.clone(),
                    container: az.container.clone(),
                    access_key: secret("site.azure.access_key_env", &az.access_key_env)?,
                    endpoint: az.endpoint.clone(),
                    ca_pem: ca(&az.ca_file)?,
                },
                &az.prefix,
            )
        }
        _ => {
            let dir = if !site.path.is_empty() {
                // Relative paths are under the data directory, wherever the process runs.
                data_dir.join(&site.path)
            } else if primary {
                data_dir.join("sites").join("local")
            } else {
                data_dir.join("sites").join(&site.id)
            };
            let local = LocalBlobStore::open(&dir).map_err(data_dir_error(&dir))?;
            return Ok(Arc::new(local));
        }
    }
    .map_err(|e| ServerError::Site(format!("site {}: {e}", site.id)))?;
    Ok(Arc::new(remote))
}

/// Asks a store for a random blob, which must be absent: anything else (refused credentials,
/// no bucket, unreachable) means the site does not work as a blob store.
pub(crate) async fn probe_store(
    store: &dyn vallum_core::blob::BlobStore,
) -> Result<(), vallum_core::blob::BlobError> {
    match store.size(vallum_types::BlobId::random()).await {
        Err(vallum_core::blob::BlobError::NotFound(_)) | Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Checks every bucket's stored data against its boundary policy until shut down: publishes
/// the count of buckets outside, and warns (audit target) when a bucket falls outside or comes
/// back.
/// How often a gateway reloads identity records other gateways may have changed (lockbox
/// grants are read afresh on every use regardless).
const IAM_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// How often the embedded store's files are checked (write-ahead file present, commit
/// high-water mark recorded).
const META_GUARD_INTERVAL: Duration = Duration::from_secs(1);

fn spawn_meta_guard(
    store: SqliteMetaStore,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let errors = crate::conn::RateLimited::default();
        loop {
            tokio::select! {
                () = tokio::time::sleep(META_GUARD_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(err) = store.guard().await
                && let Some(suppressed) = errors.admit()
            {
                tracing::error!(%err, suppressed, "metadata store check failed");
            }
        }
    })
}

fn spawn_iam_refresh(
    iam: Arc<vallum_core::iam::Iam>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(IAM_REFRESH_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(err) = iam.refresh().await {
                tracing::warn!(%err, "reloading identity records failed; will retry");
            }
        }
    })
}

fn spawn_boundary_check(
    service: Arc<ObjectService>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut outside = std::collections::BTreeSet::<String>::new();
        loop {
            match service.compliance().await {
                Ok(report) => {
                    let now: std::collections::BTreeSet<String> = report
                        .iter()
                        .filter(|b| !b.compliant)
                        .map(|b| b.bucket.clone())
                        .collect();
                    for b in report
                        .iter()
                        .filter(|b| !b.compliant && !outside.contains(&b.bucket))
                    {
                        tracing::warn!(target: "vallum::audit", event = "boundary_drift", bucket = %b.bucket, policy = ?b.policy, site = %b.site, reasons = %b.reasons.join("; "), "stored data is outside the bucket's boundary policy");
                    }
                    for b in outside.difference(&now) {
                        tracing::info!(target: "vallum::audit", event = "boundary_drift_cleared", bucket = %b, "stored data is inside the bucket's boundary policy again");
                    }
                    metrics.set_boundary_noncompliant(now.len());
                    outside = now;
                }
                Err(err) => tracing::warn!(%err, "boundary check failed; will retry"),
            }
            tokio::select! {
                () = tokio::time::sleep(BOUNDARY_CHECK_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
        }
    })
}

/// Runs `step` every `interval` while holding lease `lease`; a step that returns true (more
/// work pending) is followed by the next at once. On shutdown the lease is released.
fn spawn_leased_job<F, Fut>(
    service: Arc<ObjectService>,
    lease: &'static str,
    holder: String,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
    step: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(Arc<ObjectService>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    spawn_leased_job_woken(service, lease, holder, interval, shutdown, None, step)
}

/// [`spawn_leased_job`] that also runs a step as soon as `wake` is notified.
fn spawn_leased_job_woken<F, Fut>(
    service: Arc<ObjectService>,
    lease: &'static str,
    holder: String,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    wake: Option<Arc<tokio::sync::Notify>>,
    step: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(Arc<ObjectService>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let lease_ttl_ms = i64::try_from(
        interval
            .saturating_mul(3)
            .max(Duration::from_secs(GC_LEASE_MIN_TTL_SECS))
            .as_millis(),
    )
    .unwrap_or(i64::MAX);
    tokio::spawn(async move {
        loop {
            let now = service.now_ms();
            let mut more = false;
            match service
                .meta()
                .acquire_lease(lease, &holder, now, lease_ttl_ms)
                .await
            {
                Ok(true) => more = step(Arc::clone(&service)).await,
                Ok(false) => tracing::debug!(lease, "another gateway holds the job lease"),
                Err(err) => tracing::warn!(lease, %err, "could not take the job lease; will retry"),
            }
            let pause = if more { Duration::ZERO } else { interval };
            let woken = async {
                match &wake {
                    Some(w) => w.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = woken => {}
                _ = shutdown.changed() => {
                    let _ = service.meta().release_lease(lease, &holder).await;
                    return;
                }
            }
        }
    })
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory or a file in it is unusable.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another process is serving this data directory.
    #[error("data directory {0} is in use by another vallum process")]
    Locked(std::path::PathBuf),
    /// The metadata store failed to open.
    #[error("metadata store: {0}")]
    Meta(#[from] vallum_core::meta::MetaError),
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The encryption keys could not be opened.
    #[error("encryption keys: {0}")]
    Keys(String),
    /// The identity records could not be loaded.
    #[error("identity and access records: {0}")]
    Iam(String),
    /// The configuration does not hold together (e.g. an exposure-rules file vanished).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The remote storage site could not be set up.
    #[error("storage site: {0}")]
    Site(String),
    /// The transparency log could not be opened.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerStartError),
    /// A start-up step could not be recorded or performed.
    #[error("start-up: {0}")]
    Core(#[from] vallum_core::Error),
    /// A key file of a store that already holds data is missing.
    #[error(
        "{path} ({what}) is missing, but this data directory already holds data: a new key would make existing data unreadable, so none is generated. Restore it from a backup (or point the configuration at it); start on an empty data directory to create a new deployment"
    )]
    MissingKeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// What it holds.
        what: &'static str,
    },
    /// Files or directories are open to other users (`[files] permissions = "refuse"`).
    #[error(
        "refusing to start: {0}. Fix with chmod (files 600, directories 700), or set [files] permissions = \"warn\""
    )]
    Permissions(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A server that is accepting connections.
pub struct RunningServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The root credentials.
    pub credentials: Credentials,
    /// Whether the credentials were generated by this start.
    pub credentials_created: bool,
    /// The region.
    pub region: String,
    /// `https` with TLS configured, else `http`.
    pub scheme: &'static str,
    /// The transparency log's origin and verifier key.
    pub log_origin: String,
    /// The log's verifier key (what auditors pin).
    pub log_vkey: String,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting, waits for in-flight requests (bounded), and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Runs until the process receives Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Holds `<data_dir>/LOCK` for the life of the server: exclusively with the embedded store (two
/// processes on one SQLite file and blob site would collect each other's in-flight writes as
/// orphans), shared between gateways of one PostgreSQL deployment.
pub(crate) fn lock_data_dir(
    data_dir: &std::path::Path,
    shared: bool,
) -> Result<std::fs::File, ServerError> {
    let path = data_dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(data_dir_error(data_dir))?;
    let locked = if shared {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match locked {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServerError::Locked(data_dir.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(ServerError::DataDir { path, source: e }),
    }
}

pub(crate) fn data_dir_error(
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::DataDir {
        path: path.to_owned(),
        source,
    }
}

/// Opens the stores under `config.data_dir`, binds `config.listen`, and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    let data_dir = config.data_dir.clone();
    // Everything this process creates (keys, metadata, log, blobs) is its owner's alone.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    crate::files::create_private_dir(&data_dir).map_err(data_dir_error(&data_dir))?;
    crate::files::check_permissions(&config)?;
    // Gateways sharing PostgreSQL may share a data directory (credentials, blob site on a shared
    // filesystem); an embedded store may not be shared at all.
    let lock = lock_data_dir(&data_dir, config.meta.url.is_some())?;
    let meta = match &config.meta.url {
        Some(url) => MetaHandle::Postgres(PgMetaStore::connect(url).await?),
        None => MetaHandle::Sqlite(SqliteMetaStore::open(&data_dir.join("meta.db")).await?),
    };
    // Keys are generated for a new, empty store only; a store that holds data and lost a key
    // file is refused, naming the file.
    let has_buckets = !meta.shared().list_buckets().await?.is_empty();
    let established = crate::files::established(&data_dir, has_buckets);
    crate::files::require_key_files(&config, established)?;
    let (credentials, credentials_created) =
        Credentials::load_or_create(&data_dir).map_err(data_dir_error(&data_dir))?;
    let sites = Arc::new(crate::sites::SiteManager::new(
        config.clone(),
        data_dir.clone(),
    ));
    let records = meta.shared().site_records().await?;
    let (residency, stores) = sites.build(&records).await?;
    let site_refs: Vec<_> = residency
        .sites()
        .iter()
        .map(|p| residency.site_ref(p))
        .collect();
    let primary_store = stores
        .iter()
        .find(|(id, _)| *id == config.site.id)
        .map(|(_, s)| Arc::clone(s))
        .ok_or_else(|| ServerError::Site(format!("site {} was removed", config.site.id)))?;
    let ledger_dir = data_dir.join("ledger");
    let ledger = match &config.meta.url {
        None => Ledger::start(&ledger_dir, &config.ledger, site_refs.clone())?,
        Some(_) => {
            Ledger::start_shared(
                &ledger_dir,
                &config.ledger,
                site_refs.clone(),
                meta.shared(),
            )
            .await?
        }
    };
    let privacy = crate::ledger::key_privacy(&ledger_dir, &config.ledger.hash_keys)?;
    let keys = crate::keys::open_keys(&data_dir, &config.keys).await?;
    let service = Arc::new(
        ObjectService::new(
            meta.shared(),
            primary_store,
            Arc::new(SystemClock),
            config.region.clone(),
        )
        .with_journal(Arc::new(LedgerJournal(Arc::clone(&ledger))))
        .with_key_privacy(privacy)
        .with_keys(keys)
        .with_sites(residency, stores, &config.site.id)?,
    );
    sites.applied(records).await;
    if credentials_created {
        service
            .log(
                &RequestContext::system(START_JOB),
                Event::Admin {
                    action: "root_credentials_created".into(),
                    target: credentials.access_key.clone(),
                },
            )
            .await?;
    }

    // Bound before the identity service opens: webhooks must know the gateway's own address.
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    let notifier =
        crate::notify::WebhookNotifier::new(config.webhooks.clone(), addr).map_err(|e| {
            ServerError::Config(crate::config::ConfigError::Value {
                field: "webhooks.ca_file",
                message: e,
            })
        })?;
    let secrets = vallum_crypto::secretbox::SecretBox::load_or_create(
        &data_dir.join(crate::credentials::SECRET_BOX_FILE),
    )
    .map_err(|e| ServerError::Keys(e.to_string()))?;
    let iam = vallum_core::iam::Iam::open(
        Arc::clone(&service),
        secrets,
        credentials.access_key.clone(),
        zeroize::Zeroizing::new(credentials.secret_key.clone()),
        Some(Arc::new(crate::notify::SharedNotifier(Arc::new(notifier)))),
    )
    .await
    .map_err(|e| {
        ServerError::Iam(format!(
            "{e} ({})",
            data_dir.join(crate::credentials::SECRET_BOX_FILE).display()
        ))
    })?;
    let s3 = VallumS3::new(
        Arc::clone(&service),
        Arc::clone(&iam),
        config.region.clone(),
        credentials.access_key.clone(),
        config.object_lock.allow_governance_bypass,
    );
    let mut builder = S3ServiceBuilder::new(s3);
    builder.set_auth(crate::authz::IamAuth(Arc::clone(&iam)));
    builder.set_access(crate::authz::VallumAccess {
        iam: Arc::clone(&iam),
    });
    builder.set_validation(crate::authz::TenantNames);
    let mut s3_config = S3Config::default();
    s3_config.xml_max_body_size = MAX_XML_BODY_BYTES;
    builder.set_config(Arc::new(StaticConfigProvider::new(Arc::new(s3_config))));
    if !config.domains.is_empty() {
        builder.set_host(crate::host::VallumHost::new(&config.domains));
    }
    let metrics = Arc::new(Metrics::new());
    let http = VallumHttp {
        s3: builder.build(),
        metrics: Arc::clone(&metrics),
        ledger: Arc::clone(&ledger),
        admin: Arc::new(
            crate::admin::Admin::new(Arc::clone(&service), Arc::clone(&iam))
                .with_sites(Arc::clone(&sites))
                .with_ledger(Arc::clone(&ledger)),
        ),
        secure: false,
        peer: None,
        data_dir: Arc::from(config.data_dir.as_path()),
        activity: Arc::default(),
        body_timeout: Duration::from_secs(config.connections.body_read_timeout_secs),
        embedded_meta: match &meta {
            MetaHandle::Sqlite(store) => Some(store.clone()),
            MetaHandle::Postgres(_) => None,
        },
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tokio_rustls::TlsAcceptor::from(
            vallum_xks::tls::server_config(cert, key)
                .map_err(|e| ServerError::Tls(e.to_string()))?,
        )),
        _ => None,
    };

    let (shutdown, mut shutdown_rx) = watch::channel(false);

    let policy = GcPolicy {
        trash_grace: Duration::from_secs(config.gc.trash_grace_secs),
        multipart_expiry: Duration::from_secs(config.gc.multipart_expiry_secs),
        orphan_age: Duration::from_secs(config.gc.orphan_age_secs),
    };
    let (jobs_stop, jobs_shutdown) = watch::channel(false);
    // Every gateway checks stored data against the boundary policies, read-only: at start
    // (a site's profile or the default policy may have changed) and then periodically
    // (certifications lapse).
    let boundary_task = spawn_boundary_check(
        Arc::clone(&service),
        Arc::clone(&metrics),
        jobs_shutdown.clone(),
    );
    let iam_task = spawn_iam_refresh(Arc::clone(&iam), jobs_shutdown.clone());
    let meta_guard_task = match &meta {
        MetaHandle::Sqlite(store) => Some(spawn_meta_guard(store.clone(), jobs_shutdown.clone())),
        MetaHandle::Postgres(_) => None,
    };
    // Gateways sharing one metadata store run each background job one at a time: a step runs
    // only under the job's lease, which outlives a crashed holder by at most its TTL.
    // With the embedded store the data-directory lock already makes this the only process, so
    // a restart after a crash takes over its predecessor's lease at once.
    let holder = if config.meta.url.is_some() {
        format!("gateway-{}", vallum_types::UploadId::random())
    } else {
        "embedded".to_owned()
    };
    let gc_task = spawn_leased_job(
        Arc::clone(&service),
        GC_LEASE,
        holder.clone(),
        Duration::from_secs(config.gc.interval_secs),
        jobs_shutdown.clone(),
        move |service| {
            let policy = policy;
            async move {
                if let Err(err) = service.collect_garbage(&policy).await {
                    tracing::warn!(%err, "garbage collection pass failed; will retry");
                }
                false
            }
        },
    );
    let lifecycle_task = spawn_leased_job(
        Arc::clone(&service),
        LIFECYCLE_JOB,
        holder.clone(),
        Duration::from_secs(config.lifecycle.interval_secs),
        jobs_shutdown.clone(),
        move |service| {
            let metrics = Arc::clone(&metrics);
            let ctx = RequestContext::system("lifecycle");
            async move {
                let ctx = &ctx;
                match service.run_lifecycle(ctx, LIFECYCLE_STEP_VERSIONS).await {
                    // More of the pass is left: continue at once (the lease is renewed first).
                    Ok(progress) => {
                        metrics.set_lifecycle(&progress);
                        progress.bucket.is_some()
                    }
                    Err(err) => {
                        tracing::warn!(%err, "lifecycle step failed; will retry");
                        false
                    }
                }
            }
        },
    );

    // Keys whose scheduled deletion is due are destroyed (and reported in the log).
    let key_deletion_task = spawn_leased_job(
        Arc::clone(&service),
        KEY_DELETION_JOB,
        holder.clone(),
        KEY_DELETION_INTERVAL,
        jobs_shutdown.clone(),
        move |service| {
            let ctx = RequestContext::system("key-deletion");
            async move {
                let ctx = &ctx;
                if service.keys().is_some() {
                    match service.destroy_due_keys(ctx).await {
                        Ok(reports) => {
                            for r in reports {
                                tracing::warn!(key_id = %r.key_id, versions = r.unrecoverable.versions, bytes = r.unrecoverable.bytes, "scheduled key deletion: key destroyed, its objects are unrecoverable");
                            }
                        }
                        Err(err) => {
                            tracing::warn!(%err, "scheduled key deletion failed; will retry")
                        }
                    }
                }
                false
            }
        },
    );

    // Replica repair, scrubbing and migration: one gateway at a time; a write short of
    // replicas wakes it at once.
    let replication = config.replication.clone();
    let repair_task = spawn_leased_job_woken(
        Arc::clone(&service),
        vallum_core::repair::REPAIR_JOB,
        holder.clone(),
        Duration::from_secs(replication.repair_interval_secs),
        jobs_shutdown.clone(),
        Some(service.repair_hint()),
        move |service| {
            let scrub_ms = i64::try_from(replication.scrub_interval_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX);
            let step = replication.repair_step_blobs;
            async move {
                match service.repair_step(step, scrub_ms).await {
                    Ok(progress) => progress.cursor.is_some(),
                    Err(err) => {
                        tracing::warn!(%err, "replica repair step failed; will retry");
                        false
                    }
                }
            }
        },
    );
    // Every gateway reloads run-time site records (added, drained, removed elsewhere).
    let refresh_task = {
        let (service, sites) = (Arc::clone(&service), Arc::clone(&sites));
        let every = Duration::from_secs(config.replication.site_refresh_secs);
        let mut shutdown = jobs_shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = shutdown.changed() => return,
                }
                match sites.refresh(&service).await {
                    Ok(true) => {
                        tracing::info!("site records changed; new sites in force");
                        service.repair_hint().notify_one();
                    }
                    Ok(false) => {}
                    Err(err) => {
                        tracing::warn!(%err, "could not reload the site records; will retry")
                    }
                }
            }
        })
    };

    let (log_origin, log_vkey) = (ledger.origin().to_owned(), ledger.vkey().to_owned());
    let ledger_task = config.meta.url.is_some().then(|| {
        let ledger = Arc::clone(&ledger);
        spawn_leased_job(
            Arc::clone(&service),
            LEDGER_JOB,
            holder.clone(),
            Duration::from_millis(config.ledger.checkpoint_interval_ms),
            jobs_shutdown.clone(),
            move |_| {
                let ledger = Arc::clone(&ledger);
                async move {
                    match ledger.integrate_shared().await {
                        Ok(more) => more,
                        Err(err) => {
                            tracing::warn!(%err, "transparency log integration failed; will retry");
                            false
                        }
                    }
                }
            },
        )
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Descriptors are the budget: every client connection holds one, and so do the stores.
    let descriptors = crate::conn::raise_descriptor_limit();
    let max_connections = crate::conn::connection_budget(config.connections.max, descriptors);
    if config.connections.max > max_connections {
        tracing::warn!(
            configured = config.connections.max,
            max_connections,
            "connections.max is above what the descriptor limit allows; lowered"
        );
    }
    tracing::info!(max_connections, ?descriptors, "client connection limit");
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let idle_timeout = Duration::from_secs(config.connections.idle_timeout_secs);
    let task = tokio::spawn(async move {
        let mut conn_builder = ConnBuilder::new(TokioExecutor::new());
        conn_builder
            .http1()
            .keep_alive(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(HEADER_READ_TIMEOUT_SECS));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let accept_errors = crate::conn::RateLimited::default();
        let mut failures_in_a_row = 0u32;
        loop {
            // At the limit, stop accepting: further clients wait in the listen backlog until a
            // connection ends (idle ones end after the idle timeout).
            let permit = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = shutdown_rx.changed() => break,
            };
            tokio::select! {
                accepted = listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(conn) => {
                            failures_in_a_row = 0;
                            conn
                        }
                        Err(err) => {
                            // Out of descriptors (or memory): back off instead of spinning, and
                            // log one line per interval, not one per attempt.
                            failures_in_a_row = failures_in_a_row.saturating_add(1);
                            if let Some(suppressed) = accept_errors.admit() {
                                tracing::error!(%err, suppressed, "accepting a connection failed; backing off");
                            }
                            drop(permit);
                            tokio::time::sleep(crate::conn::accept_backoff(failures_in_a_row)).await;
                            continue;
                        }
                    };
                    let _ = socket.set_nodelay(true);
                    let activity = Arc::new(crate::conn::Activity::default());
                    let mut http = http.clone();
                    http.peer = Some(peer.ip());
                    http.activity = Arc::clone(&activity);
                    if let Some(acceptor) = &tls {
                        // The handshake runs in the connection's task, bounded like a header read.
                        let (acceptor, builder, watcher) =
                            (acceptor.clone(), conn_builder.clone(), graceful.watcher());
                        http.secure = true;
                        tokio::spawn(async move {
                            let _permit = permit;
                            let handshake = tokio::time::timeout(
                                Duration::from_secs(HEADER_READ_TIMEOUT_SECS),
                                acceptor.accept(socket),
                            );
                            let stream = match handshake.await {
                                Ok(Ok(s)) => s,
                                Ok(Err(err)) => {
                                    tracing::debug!(%err, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => return,
                            };
                            let io = crate::conn::Watched::new(stream, Arc::clone(&activity));
                            let conn = builder.serve_connection(TokioIo::new(io), http);
                            tokio::select! {
                                ended = watcher.watch(conn.into_owned()) => {
                                    if let Err(err) = ended {
                                        tracing::debug!(%err, "connection ended with an error");
                                    }
                                }
                                () = activity.idle_for(idle_timeout) => {
                                    tracing::debug!("closing an idle connection");
                                }
                            }
                        });
                        continue;
                    }
                    let io = crate::conn::Watched::new(socket, Arc::clone(&activity));
                    let conn = conn_builder.serve_connection(TokioIo::new(io), http);
                    let conn = graceful.watch(conn.into_owned());
                    tokio::spawn(async move {
                        let _permit = permit;
                        tokio::select! {
                            ended = conn => {
                                if let Err(err) = ended {
                                    tracing::debug!(%err, "connection ended with an error");
                                }
                            }
                            () = activity.idle_for(idle_timeout) => {
                                tracing::debug!("closing an idle connection");
                            }
                        }
                    });
                }
                _ = shutdown_rx.changed() => break,
            }
        }
        drop(listener);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(Duration::from_secs(SHUTDOWN_GRACE_SECS)) => {
                tracing::warn!("in-flight requests did not finish within the shutdown grace period");
            }
        }
        let _ = jobs_stop.send(true);
        let _ = gc_task.await;
        let _ = lifecycle_task.await;
        let _ = key_deletion_task.await;
        let _ = boundary_task.await;
        let _ = iam_task.await;
        if let Some(t) = meta_guard_task {
            let _ = t.await;
        }
        let _ = repair_task.await;
        let _ = refresh_task.await;
        if let Some(t) = ledger_task {
            let _ = t.await;
        }
        let stopping = Arc::clone(&ledger);
        let _ = tokio::task::spawn_blocking(move || stopping.stop()).await;
        meta.close().await;
        drop(lock);
    });

    Ok(RunningServer {
        addr,
        credentials,
        credentials_created,
        region: config.region,
        scheme,
        log_origin,
        log_vkey,
        shutdown,
        task,
    })
}
