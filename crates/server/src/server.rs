//! Start-up: open the stores, build the S3 service, listen, run the garbage collector, and
//! shut down gracefully.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
use vallum_core::meta::SiteRecord;
use vallum_core::records::TypedRecords;

use crate::ledger::{Ledger, LedgerJournal};
use vallum_core::gc::GcPolicy;
use vallum_core::jobs::JobRegistry;
use vallum_core::keyadmin::KeyAdmin;

/// Who records what the server does as it starts (`system:<this>`).
const START_JOB: &str = "start";
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

/// The directory of a local site: its `path` (relative ones under the data directory, wherever
/// the process runs), else `sites/local` for the primary site and `sites/<id>` for the others.
pub(crate) fn local_site_dir(
    site: &crate::config::SiteConfig,
    data_dir: &std::path::Path,
    primary: bool,
) -> std::path::PathBuf {
    if !site.path.is_empty() {
        data_dir.join(&site.path)
    } else if primary {
        data_dir.join("sites").join("local")
    } else {
        data_dir.join("sites").join(&site.id)
    }
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
            let dir = local_site_dir(site, data_dir, primary);
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

/// Every background job of the gateway, in one registry (`GET /admin/v1/jobs` lists them).
fn register_jobs(
    config: &Config,
    service: &Arc<ObjectService>,
    iam: &Arc<vallum_core::iam::Iam>,
    sites: &Arc<crate::sites::SiteManager>,
    ledger: &Arc<Ledger>,
    metrics: &Arc<Metrics>,
    meta: &MetaHandle,
) -> JobRegistry {
    use crate::jobs;
    let mut registry = JobRegistry::new();
    registry.register(Arc::new(jobs::Gc {
        service: Arc::clone(service),
        policy: GcPolicy {
            trash_grace: Duration::from_secs(config.gc.trash_grace_secs),
            multipart_expiry: Duration::from_secs(config.gc.multipart_expiry_secs),
            orphan_age: Duration::from_secs(config.gc.orphan_age_secs),
        },
        interval: Duration::from_secs(config.gc.interval_secs),
    }));
    registry.register(Arc::new(jobs::Lifecycle {
        service: Arc::clone(service),
        metrics: Arc::clone(metrics),
        interval: Duration::from_secs(config.lifecycle.interval_secs),
    }));
    registry.register(Arc::new(jobs::KeyDeletion {
        keys: KeyAdmin::of(service),
    }));
    let replication = &config.replication;
    registry.register(Arc::new(jobs::Repair {
        service: Arc::clone(service),
        interval: Duration::from_secs(replication.repair_interval_secs),
        scrub_every_ms: i64::try_from(replication.scrub_interval_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX),
        step_blobs: replication.repair_step_blobs,
    }));
    registry.register(Arc::new(jobs::BoundaryCheck {
        service: Arc::clone(service),
        metrics: Arc::clone(metrics),
        outside: std::sync::Mutex::default(),
    }));
    registry.register(Arc::new(jobs::IamRefresh {
        iam: Arc::clone(iam),
    }));
    if let MetaHandle::Sqlite(store) = meta {
        registry.register(Arc::new(jobs::MetaGuard {
            store: store.clone(),
        }));
    }
    registry.register(Arc::new(jobs::SiteRefresh {
        service: Arc::clone(service),
        sites: Arc::clone(sites),
        interval: Duration::from_secs(replication.site_refresh_secs),
    }));
    // With the embedded store the log integrates at each write; a shared one needs the job.
    if config.meta.url.is_some() {
        registry.register(Arc::new(jobs::LedgerIntegration {
            ledger: Arc::clone(ledger),
            interval: Duration::from_millis(config.ledger.checkpoint_interval_ms),
        }));
    }
    registry
}

/// One permit per client connection the descriptor limit allows (raised to the hard limit
/// first): descriptors are the budget, every connection holds one, and so do the stores.
fn connection_permits(config: &crate::config::ConnectionsConfig) -> Arc<tokio::sync::Semaphore> {
    let descriptors = crate::conn::raise_descriptor_limit();
    let max_connections = crate::conn::connection_budget(config.max, descriptors);
    if config.max > max_connections {
        tracing::warn!(
            configured = config.max,
            max_connections,
            "connections.max is above what the descriptor limit allows; lowered"
        );
    }
    tracing::info!(max_connections, ?descriptors, "client connection limit");
    Arc::new(tokio::sync::Semaphore::new(max_connections))
}

/// The accept loop: connections up to the permits, TLS when configured, each watched for
/// idleness; on shutdown, in-flight requests get a grace period.
struct Acceptor {
    listener: TcpListener,
    http: VallumHttp,
    tls: Option<tokio_rustls::TlsAcceptor>,
    permits: Arc<tokio::sync::Semaphore>,
    idle_timeout: Duration,
}

impl Acceptor {
    async fn run(self, mut shutdown_rx: watch::Receiver<bool>) {
        let Self {
            listener,
            http,
            tls,
            permits,
            idle_timeout,
        } = self;
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
    }
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
    /// Globally unique bucket names cannot be used (names shared by tenants).
    #[error("bucket names: {0}")]
    BucketNames(String),
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
/// The data directory, created private; every file this process creates is its owner's alone.
fn prepare_data_dir(config: &Config) -> Result<PathBuf, ServerError> {
    let data_dir = config.data_dir.clone();
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    crate::files::create_private_dir(&data_dir).map_err(data_dir_error(&data_dir))?;
    crate::files::check_permissions(config)?;
    Ok(data_dir)
}

/// The metadata store: PostgreSQL when `[meta] url` is set, else the embedded SQLite file.
async fn open_meta(config: &Config, data_dir: &Path) -> Result<MetaHandle, ServerError> {
    Ok(match &config.meta.url {
        Some(url) => MetaHandle::Postgres(PgMetaStore::connect(url).await?),
        None => MetaHandle::Sqlite(SqliteMetaStore::open(&data_dir.join("meta.db")).await?),
    })
}

/// The root credentials, created on first start. Keys are generated for a new, empty store
/// only; a store that holds data and lost a key file is refused, naming the file.
async fn open_credentials(
    config: &Config,
    data_dir: &Path,
    meta: &MetaHandle,
) -> Result<(Credentials, bool), ServerError> {
    let has_buckets = !meta.shared().list_buckets().await?.is_empty();
    let established = crate::files::established(data_dir, has_buckets);
    crate::files::require_key_files(config, established)?;
    Credentials::load_or_create(data_dir).map_err(data_dir_error(data_dir))
}

/// The transparency log (its own directory, or sequenced through PostgreSQL when gateways
/// share it) and the object service over the metadata store, the sites in force, the log and
/// the keys.
async fn open_service(
    config: &Config,
    data_dir: &Path,
    meta: &MetaHandle,
    sites: &crate::sites::SiteManager,
) -> Result<(Arc<ObjectService>, Arc<Ledger>), ServerError> {
    let records = meta.shared().load_all::<SiteRecord>().await?;
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
        None => Ledger::start(&ledger_dir, &config.ledger, site_refs)?,
        Some(_) => {
            Ledger::start_shared(&ledger_dir, &config.ledger, site_refs, meta.shared()).await?
        }
    };
    let privacy = crate::ledger::key_privacy(&ledger_dir, &config.ledger.hash_keys)?;
    let keys = crate::keys::open_keys(data_dir, &config.keys).await?;
    crate::keys::note_key_provider(&meta.shared(), keys.provider().name()).await?;
    let service = Arc::new(
        ObjectService::new(
            meta.shared(),
            primary_store,
            Arc::new(SystemClock),
            config.region.clone(),
            Arc::new(LedgerJournal(Arc::clone(&ledger))),
            keys,
        )
        .with_key_privacy(privacy)
        .with_sites(residency, stores, &config.site.id)?,
    );
    sites.applied(records).await;
    Ok((service, ledger))
}

/// The listening socket and its address.
async fn bind(config: &Config) -> Result<(TcpListener, SocketAddr), ServerError> {
    let bind_error = |source| ServerError::Bind {
        addr: config.listen,
        source,
    };
    let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    Ok((listener, addr))
}

/// The identity service: its sealing key from the data directory, the root credentials, and
/// the guardians' webhooks (which must know the gateway's own address `addr`).
async fn open_iam(
    config: &Config,
    data_dir: &Path,
    service: &Arc<ObjectService>,
    credentials: &Credentials,
    addr: SocketAddr,
) -> Result<Arc<vallum_core::iam::Iam>, ServerError> {
    let notifier =
        crate::notify::WebhookNotifier::new(config.webhooks.clone(), addr).map_err(|e| {
            ServerError::Config(crate::config::ConfigError::Value {
                field: "webhooks.ca_file",
                message: e.to_string(),
            })
        })?;
    let secret_box = data_dir.join(crate::credentials::SECRET_BOX_FILE);
    let secrets = vallum_crypto::secretbox::SecretBox::load_or_create(&secret_box)
        .map_err(|e| ServerError::Keys(e.to_string()))?;
    vallum_core::iam::Iam::open(
        vallum_core::iam::IamPorts::of(service),
        secrets,
        credentials.access_key.clone(),
        zeroize::Zeroizing::new(credentials.secret_key.clone()),
        Some(Arc::new(crate::notify::SharedNotifier(Arc::new(notifier)))),
    )
    .await
    .map_err(|e| ServerError::Iam(format!("{e} ({})", secret_box.display())))
}

/// The S3 front end: s3s with Vallum's handlers, signature check, decision point, bucket
/// name rules, XML limits and virtual-host domains.
fn s3_service(
    config: &Config,
    service: &Arc<ObjectService>,
    iam: &Arc<vallum_core::iam::Iam>,
    credentials: &Credentials,
    names: Option<Arc<crate::bucket_names::BucketNames>>,
) -> s3s::service::S3Service {
    let s3 = VallumS3::new(
        Arc::clone(service),
        Arc::clone(iam),
        config.region.clone(),
        credentials.access_key.clone(),
        config.object_lock.allow_governance_bypass,
    )
    .with_global_names(names.clone());
    let mut builder = S3ServiceBuilder::new(s3);
    builder.set_auth(crate::authz::IamAuth(Arc::clone(iam)));
    builder.set_access(crate::authz::VallumAccess {
        iam: Arc::clone(iam),
        names,
    });
    builder.set_validation(crate::authz::TenantNames);
    let mut s3_config = S3Config::default();
    s3_config.xml_max_body_size = MAX_XML_BODY_BYTES;
    builder.set_config(Arc::new(StaticConfigProvider::new(Arc::new(s3_config))));
    if !config.domains.is_empty() {
        builder.set_host(crate::host::VallumHost::new(&config.domains));
    }
    builder.build()
}

/// TLS when a certificate and key are configured.
fn tls_acceptor(config: &Config) -> Result<Option<tokio_rustls::TlsAcceptor>, ServerError> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(tokio_rustls::TlsAcceptor::from(
            vallum_xks::tls::server_config(cert, key)
                .map_err(|e| ServerError::Tls(e.to_string()))?,
        ))),
        _ => Ok(None),
    }
}

/// Who holds this process's job leases. Gateways sharing one metadata store run each leased
/// job one at a time: a step runs only under the job's lease, which outlives a crashed holder
/// by at most its TTL. With the embedded store the data-directory lock already makes this the
/// only process, so a restart after a crash takes over its predecessor's lease at once.
fn lease_holder(config: &Config) -> String {
    if config.meta.url.is_some() {
        format!("gateway-{}", vallum_types::UploadId::random())
    } else {
        "embedded".to_owned()
    }
}

/// Starts a gateway: a list of constructions, then the jobs and the accept loop.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    let data_dir = prepare_data_dir(&config)?;
    // Gateways sharing PostgreSQL may share a data directory (credentials, blob site on a shared
    // filesystem); an embedded store may not be shared at all.
    let lock = lock_data_dir(&data_dir, config.meta.url.is_some())?;
    let meta = open_meta(&config, &data_dir).await?;
    let (credentials, credentials_created) = open_credentials(&config, &data_dir, &meta).await?;
    let sites = Arc::new(crate::sites::SiteManager::new(
        config.clone(),
        data_dir.clone(),
    ));
    let (service, ledger) = open_service(&config, &data_dir, &meta, &sites).await?;
    if credentials_created {
        let event = Event::Admin {
            action: "root_credentials_created".into(),
            target: credentials.access_key.clone(),
        };
        service
            .log(&RequestContext::system(START_JOB), event)
            .await?;
    }
    // Bound before the identity service opens: webhooks must know the gateway's own address.
    let (listener, addr) = bind(&config).await?;
    let iam = open_iam(&config, &data_dir, &service, &credentials, addr).await?;
    let metrics = Arc::new(Metrics::new());
    let rewrap = crate::jobs::KeyRewrap::new(KeyAdmin::of(&service), service.meta().clone());
    let mut jobs = register_jobs(&config, &service, &iam, &sites, &ledger, &metrics, &meta);
    // Key re-wraps are requested through the admin API, which queues them on this job.
    jobs.register(Arc::clone(&rewrap) as Arc<dyn vallum_core::jobs::Job>);
    let admin = crate::admin::Admin::new(
        Arc::clone(&service),
        KeyAdmin::of(&service),
        Arc::clone(&iam),
        rewrap,
        jobs.statuses(),
        Arc::clone(&sites),
        Arc::clone(&ledger),
    );
    let names = if config.global_bucket_names {
        Some(Arc::new(
            crate::bucket_names::BucketNames::load(service.meta().clone())
                .await
                .map_err(|e| ServerError::BucketNames(e.to_string()))?,
        ))
    } else {
        None
    };
    let cors = Arc::new(crate::cors::Cors::new(
        Arc::clone(&iam),
        names.clone(),
        &config.domains,
    ));
    let http = VallumHttp {
        cors,
        iam: Arc::clone(&iam),
        s3: s3_service(&config, &service, &iam, &credentials, names),
        metrics,
        ledger: Arc::clone(&ledger),
        admin: Arc::new(admin),
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
    let tls = tls_acceptor(&config)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The jobs need the leases port alone.
    let leases: Arc<dyn vallum_core::meta::Leases> = service.meta().clone();
    let running_jobs = jobs.spawn_all(leases, Arc::clone(service.clock()), &lease_holder(&config));
    let (log_origin, log_vkey) = (ledger.origin().to_owned(), ledger.vkey().to_owned());
    let acceptor = Acceptor {
        listener,
        http,
        tls,
        permits: connection_permits(&config.connections),
        idle_timeout: Duration::from_secs(config.connections.idle_timeout_secs),
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        acceptor.run(shutdown_rx).await;
        running_jobs.stop().await;
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
