//! `vallum.toml`: every field is documented in docs/configuration.md, unknown fields are
//! refused, and `VALLUM_*` environment variables override the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vallum_core::residency::{
    BoundaryPolicy, Certification, ExposureRules, Residency, SiteProfile,
};

/// Version of the configuration format this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid (syntax, unknown field, wrong type).
    #[error("invalid configuration {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid configuration value {field}: {message}")]
    Value {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Configuration format version; must be 1.
    pub version: u32,
    /// Address the S3 endpoint listens on.
    pub listen: SocketAddr,
    /// Directory for metadata, blobs and credentials.
    pub data_dir: PathBuf,
    /// Region reported to clients and accepted in signatures' scope.
    pub region: String,
    /// Domains for virtual-hosted-style requests (`<bucket>.<domain>`); empty: path style only.
    pub domains: Vec<String>,
    /// Bucket names unique across tenants, as in S3: a bare name then means that bucket
    /// whoever owns it, so unmodified (and anonymous) clients reach buckets shared across
    /// tenants by policy. Off: a bare name is the caller's own tenant's.
    pub global_bucket_names: bool,
    /// PEM certificate chain: with `tls_key`, the endpoint serves HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Logging.
    pub log: LogConfig,
    /// Garbage collection.
    pub gc: GcConfig,
    /// The lifecycle worker.
    pub lifecycle: LifecycleWorkerConfig,
    /// Object lock policy of the deployment.
    pub object_lock: ObjectLockSettings,
    /// Metadata store.
    pub meta: MetaConfig,
    /// This gateway's own (primary) storage site: reads prefer it, and blobs written before
    /// replicas were recorded are on it.
    pub site: SiteConfig,
    /// `[[sites]]`: the deployment's further storage sites, each local or remote, with its
    /// legal profile. Placement spreads replicas over all of them.
    pub sites: Vec<SiteConfig>,
    /// `[replication]`: the replica repair, scrubber and site refresh.
    pub replication: ReplicationConfig,
    /// `[residency]`: exposure rules and the default boundary policy.
    pub residency: ResidencyConfig,
    /// The transparency log.
    pub ledger: LedgerConfig,
    /// Encryption keys.
    pub keys: KeysConfig,
    /// `[connections]`: how many clients, and how long they may idle or stall.
    pub connections: ConnectionsConfig,
    /// `[files]`: what to do when key, credential or data files are open to other users.
    pub files: FilesConfig,
    /// `[webhooks]`: how lockbox events reach tenants' guardian webhooks.
    pub webhooks: WebhooksConfig,
}

/// Guardian webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Accept `http://` webhooks (default: `https://` only).
    pub allow_http: bool,
    /// Accept webhooks on loopback, link-local, unspecified or multicast addresses (default:
    /// refused, so a tenant cannot aim the gateway at itself or at a cloud metadata service).
    /// The gateway's own listen address is refused regardless.
    pub allow_internal: bool,
    /// PEM CA certificate(s) trusted for webhook servers (empty: the system roots).
    pub ca_file: String,
    /// Attempts per event (the first included) before it is given up (and logged).
    pub attempts: u32,
    /// Time limit of one attempt, milliseconds.
    pub timeout_ms: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_http: false,
            allow_internal: false,
            ca_file: String::new(),
            attempts: 5,
            timeout_ms: 5000,
        }
    }
}

/// Client connection limits (slow and idle clients cannot hold the server's descriptors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Most client connections at once; further clients wait in the listen backlog. `0`: as
    /// many as the descriptor limit allows (the soft limit, raised to the hard limit at start,
    /// less `RESERVED_DESCRIPTORS`), at most `MAX_CONNECTIONS`. A larger value is lowered to
    /// what the descriptor limit allows.
    pub max: usize,
    /// Seconds a connection may stay open with no request in progress and no byte moving.
    pub idle_timeout_secs: u64,
    /// Seconds a request body may go without a byte arriving (then `RequestTimeout`).
    pub body_read_timeout_secs: u64,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            max: 0,
            idle_timeout_secs: vallum_types::limits::IDLE_CONNECTION_TIMEOUT_SECS,
            body_read_timeout_secs: vallum_types::limits::BODY_READ_TIMEOUT_SECS,
        }
    }
}

/// File-permission checks at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// `refuse` (default): refuse to start when a key or credential file is readable by group
    /// or others, or the data directory is writable by them; `warn`: start, and log each at
    /// ERROR level.
    pub permissions: String,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            permissions: "refuse".into(),
        }
    }
}

/// Where the data keys' key-encryption keys live: the provider (with only its own settings)
/// and what every provider shares. Written in the file as flat fields ([`KeysFile`]); an
/// unknown provider or a malformed `double_of` is refused when the file is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "KeysFile", into = "KeysFile")]
pub struct KeysConfig {
    /// The provider.
    pub provider: KeyProviderConfig,
    /// Unwrapped data keys kept in memory (0: none). Entries are zeroized when evicted.
    pub dek_cache_entries: usize,
    /// How long a cached data key may be used, milliseconds.
    pub dek_cache_ttl_ms: u64,
    /// The key-encryption key new objects' data keys are wrapped under.
    pub default_key_id: String,
    /// Plaintext bytes per encrypted segment: a power of two from 4096 to 1048576.
    pub segment_bytes: u32,
}

/// One key provider and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProviderConfig {
    /// The local keyring, sealed by a root key file or a passphrase.
    Keyring(KeyringConfig),
    /// A PKCS#11 token (a hardware security module).
    Pkcs11(Pkcs11Config),
    /// An external key store speaking the AWS XKS proxy API (e.g. `vallum keyd`).
    Xks(XksConfig),
    /// Two providers that must both agree: each holds half of every data key.
    Double(Box<[KeyProviderConfig; 2]>),
}

/// The local keyring's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyringConfig {
    /// The root key file (`None`: `<data_dir>/keys/root.key`); unused with a passphrase.
    pub root_key_file: Option<std::path::PathBuf>,
    /// The environment variable holding a passphrase that seals the keyring instead.
    pub passphrase_env: Option<String>,
}

/// A PKCS#11 token's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Config {
    /// The module (shared library).
    pub module: String,
    /// The token's label.
    pub token: String,
    /// The environment variable holding the user PIN.
    pub pin_env: String,
}

/// An XKS proxy's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XksConfig {
    /// `https://host[:port][/prefix]`.
    pub endpoint: String,
    /// SigV4 access key id.
    pub access_key: String,
    /// The environment variable holding the SigV4 secret.
    pub secret_env: String,
    /// Region of the SigV4 credential scope.
    pub region: String,
    /// PEM file of the proxy's CA (`None`: system roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// Time limit of one call, ms.
    pub timeout_ms: u64,
    /// Retries of a failed call.
    pub retries: u32,
}

impl KeyProviderConfig {
    /// The provider's name, as `[keys] provider` writes it.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Keyring(_) => "keyring",
            Self::Pkcs11(_) => "pkcs11",
            Self::Xks(_) => "xks",
            Self::Double(_) => "double",
        }
    }

    /// Whether the keys live outside the deployment (keys are created there, not here).
    #[must_use]
    pub fn external(&self) -> bool {
        match self {
            Self::Xks(_) => true,
            Self::Double(pair) => pair.iter().any(Self::external),
            Self::Keyring(_) | Self::Pkcs11(_) => false,
        }
    }

    /// The keyring's settings, if the keyring is (one of) the provider(s).
    #[must_use]
    pub fn keyring(&self) -> Option<&KeyringConfig> {
        match self {
            Self::Keyring(k) => Some(k),
            Self::Double(pair) => pair.iter().find_map(Self::keyring),
            Self::Pkcs11(_) | Self::Xks(_) => None,
        }
    }

    fn single(name: &str, f: &KeysFile) -> Result<Self, ConfigError> {
        let path = |s: &str| (!s.is_empty()).then(|| std::path::PathBuf::from(s));
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Ok(match name {
            "keyring" => Self::Keyring(KeyringConfig {
                root_key_file: path(&f.root_key_file),
                passphrase_env: opt(&f.passphrase_env),
            }),
            "pkcs11" => Self::Pkcs11(Pkcs11Config {
                module: f.pkcs11_module.clone(),
                token: f.pkcs11_token.clone(),
                pin_env: f.pkcs11_pin_env.clone(),
            }),
            "xks" => Self::Xks(XksConfig {
                endpoint: f.xks_endpoint.clone(),
                access_key: f.xks_access_key.clone(),
                secret_env: f.xks_secret_env.clone(),
                region: f.xks_region.clone(),
                ca_file: path(&f.xks_ca_file),
                timeout_ms: f.xks_timeout_ms,
                retries: f.xks_retries,
            }),
            other => {
                return Err(ConfigError::Value {
                    field: "keys.provider",
                    message: format!(
                        "{other:?} is not a key provider (keyring, pkcs11, xks or double)"
                    ),
                });
            }
        })
    }

    /// Writes this provider's settings into the flat file form.
    fn write(&self, f: &mut KeysFile) {
        let text = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        match self {
            Self::Keyring(k) => {
                f.root_key_file = text(&k.root_key_file);
                f.passphrase_env = k.passphrase_env.clone().unwrap_or_default();
            }
            Self::Pkcs11(p) => {
                f.pkcs11_module.clone_from(&p.module);
                f.pkcs11_token.clone_from(&p.token);
                f.pkcs11_pin_env.clone_from(&p.pin_env);
            }
            Self::Xks(x) => {
                f.xks_endpoint.clone_from(&x.endpoint);
                f.xks_access_key.clone_from(&x.access_key);
                f.xks_secret_env.clone_from(&x.secret_env);
                f.xks_region.clone_from(&x.region);
                f.xks_ca_file = text(&x.ca_file);
                f.xks_timeout_ms = x.timeout_ms;
                f.xks_retries = x.retries;
            }
            Self::Double(pair) => {
                f.double_of = pair.iter().map(|p| p.name().to_owned()).collect();
                for p in pair.iter() {
                    p.write(f);
                }
            }
        }
        f.provider = self.name().to_owned();
    }
}

impl TryFrom<KeysFile> for KeysConfig {
    type Error = ConfigError;

    fn try_from(f: KeysFile) -> Result<Self, ConfigError> {
        let provider = if f.provider == "double" {
            let [a, b] = f.double_of.as_slice() else {
                return Err(ConfigError::Value {
                    field: "keys.double_of",
                    message: format!("names two providers, not {}", f.double_of.len()),
                });
            };
            if a == b || a == "double" || b == "double" {
                return Err(ConfigError::Value {
                    field: "keys.double_of",
                    message: format!("names two different single providers, not {a:?} and {b:?}"),
                });
            }
            KeyProviderConfig::Double(Box::new([
                KeyProviderConfig::single(a, &f)?,
                KeyProviderConfig::single(b, &f)?,
            ]))
        } else {
            KeyProviderConfig::single(&f.provider, &f)?
        };
        Ok(Self {
            provider,
            dek_cache_entries: f.dek_cache_entries,
            dek_cache_ttl_ms: f.dek_cache_ttl_ms,
            default_key_id: f.default_key_id,
            segment_bytes: f.segment_bytes,
        })
    }
}

impl From<KeysConfig> for KeysFile {
    fn from(c: KeysConfig) -> Self {
        let mut f = KeysFile {
            dek_cache_entries: c.dek_cache_entries,
            dek_cache_ttl_ms: c.dek_cache_ttl_ms,
            default_key_id: c.default_key_id,
            segment_bytes: c.segment_bytes,
            ..KeysFile::default()
        };
        c.provider.write(&mut f);
        f
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        let f = KeysFile::default();
        Self {
            provider: KeyProviderConfig::Keyring(KeyringConfig::default()),
            dek_cache_entries: f.dek_cache_entries,
            dek_cache_ttl_ms: f.dek_cache_ttl_ms,
            default_key_id: f.default_key_id,
            segment_bytes: f.segment_bytes,
        }
    }
}

/// `[keys]` as written in the file: flat fields, the provider chosen by name. Parsed into
/// [`KeysConfig`], whose provider is a variant with only its own settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysFile {
    /// `keyring` (the local keyring, default), `pkcs11` (a hardware security module), `xks`
    /// (an external key store speaking the AWS XKS proxy API, e.g. `vallum keyd`) or `double`
    /// (two providers, `double_of`, must both agree: each holds half of every data key).
    pub provider: String,
    /// The two providers of `double` (default: `["pkcs11", "keyring"]`).
    pub double_of: Vec<String>,
    /// XKS proxy URL, `https://host[:port][/prefix]` (the API path is appended).
    pub xks_endpoint: String,
    /// SigV4 access key id configured at the XKS proxy.
    pub xks_access_key: String,
    /// Name of the environment variable holding the XKS SigV4 secret.
    pub xks_secret_env: String,
    /// Region of the XKS SigV4 credential scope.
    pub xks_region: String,
    /// PEM file of the CA that signed the XKS proxy's certificate (empty: system roots).
    pub xks_ca_file: String,
    /// Time limit of one XKS call, milliseconds.
    pub xks_timeout_ms: u64,
    /// Retries of a failed XKS call (connection failure, throttling, proxy timeout).
    pub xks_retries: u32,
    /// Unwrapped data keys kept in memory (0: none), so repeated reads of an object do not
    /// each ask the provider. Entries are zeroized when evicted.
    pub dek_cache_entries: usize,
    /// How long a cached data key may be used, milliseconds. Disabling or destroying a key
    /// takes effect on this gateway at once, on other gateways within this time.
    pub dek_cache_ttl_ms: u64,
    /// PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub pkcs11_module: String,
    /// Label of the PKCS#11 token holding the keys.
    pub pkcs11_token: String,
    /// Name of the environment variable holding the token's user PIN.
    pub pkcs11_pin_env: String,
    /// The keyring's root key file (32 random bytes, created 0600 if absent). Empty:
    /// `<data_dir>/keys/root.key`. Ignored when `passphrase_env` is set.
    pub root_key_file: String,
    /// Name of an environment variable holding a passphrase that seals the keyring (through
    /// Argon2id) instead of a root key file.
    pub passphrase_env: String,
    /// The key-encryption key new objects' data keys are wrapped under (created if absent).
    pub default_key_id: String,
    /// Plaintext bytes per encrypted segment: a power of two from 4096 to 1048576.
    pub segment_bytes: u32,
}

impl Default for KeysFile {
    fn default() -> Self {
        Self {
            provider: "keyring".into(),
            double_of: vec!["pkcs11".into(), "keyring".into()],
            xks_endpoint: String::new(),
            xks_access_key: String::new(),
            xks_secret_env: String::new(),
            xks_region: "us-east-1".into(),
            xks_ca_file: String::new(),
            xks_timeout_ms: 2000,
            xks_retries: 2,
            dek_cache_entries: 10_000,
            dek_cache_ttl_ms: 60_000,
            pkcs11_module: String::new(),
            pkcs11_token: String::new(),
            pkcs11_pin_env: String::new(),
            root_key_file: String::new(),
            passphrase_env: String::new(),
            default_key_id: "vallum-default".into(),
            segment_bytes: 64 * 1024,
        }
    }
}

/// The local site's legal profile: the facts the placement engine judges against boundary
/// policies (exposures are derived from the countries by the exposure rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteConfig {
    /// Site id.
    pub id: String,
    /// ISO 3166-1 alpha-2 country where the site's disks are (empty: undeclared, which the
    /// boundary audit and every boundary policy treat as outside).
    pub jurisdiction: String,
    /// Facility or region label (informative).
    pub facility: String,
    /// The company operating the site.
    pub operator: String,
    /// Country where the operator is established (empty: the site's jurisdiction).
    pub operator_country: String,
    /// The operator's ultimate parent company (empty: the operator itself).
    pub parent: String,
    /// Country of the ultimate parent (empty: the operator's country).
    pub parent_country: String,
    /// Exposures the operator declares beyond those derived, e.g. `us-cloud-act`.
    pub exposures: Vec<String>,
    /// Certifications held: `{ scheme = "SecNumCloud", expires = "2027-06-30" }`, with an
    /// optional `level`.
    pub certifications: Vec<Certification>,
    /// Where the site's bytes are: `local` (a directory, `path`), `s3` (any S3-compatible
    /// endpoint, `[site.s3]`) or `azure` (Azure Blob Storage, `[site.azure]`).
    pub backend: String,
    /// The directory of a `local` site (empty: `<data-dir>/sites/local` for `[site]`,
    /// `<data-dir>/sites/<id>` for one of `[[sites]]`).
    pub path: String,
    /// Relative weight in placement (sites with more weight get proportionally more data).
    pub weight: u32,
    /// The S3-compatible endpoint of an `s3` site.
    pub s3: S3SiteConfig,
    /// The container of an `azure` site.
    pub azure: AzureSiteConfig,
}

/// `[site.s3]`: an S3-compatible bucket holding the site's blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3SiteConfig {
    /// Endpoint URL (`https://…`; `http://` only for a trial on one host).
    pub endpoint: String,
    /// Bucket.
    pub bucket: String,
    /// Region of the signature scope.
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Environment variable holding the secret key (never the secret itself).
    pub secret_env: String,
    /// Key prefix of the blobs in the bucket (empty: the bucket's root).
    pub prefix: String,
    /// PEM CA bundle to trust for the endpoint (empty: the system roots).
    pub ca_file: String,
}

impl Default for S3SiteConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".into(),
            access_key: String::new(),
            secret_env: String::new(),
            prefix: String::new(),
            ca_file: String::new(),
        }
    }
}

/// `[site.azure]`: an Azure Blob Storage container holding the site's blobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureSiteConfig {
    /// Storage account.
    pub account: String,
    /// Container.
    pub container: String,
    /// Environment variable holding the account key.
    pub access_key_env: String,
    /// Endpoint URL (sovereign clouds, an emulator); empty: the public endpoint.
    pub endpoint: String,
    /// Key prefix of the blobs in the container.
    pub prefix: String,
    /// PEM CA bundle to trust for the endpoint (empty: the system roots).
    pub ca_file: String,
}

impl Default for SiteConfig {
    fn default() -> Self {
        Self {
            id: "local".into(),
            jurisdiction: String::new(),
            facility: String::new(),
            operator: String::new(),
            operator_country: String::new(),
            parent: String::new(),
            parent_country: String::new(),
            exposures: Vec::new(),
            certifications: Vec::new(),
            backend: "local".into(),
            path: String::new(),
            weight: 1,
            s3: S3SiteConfig::default(),
            azure: AzureSiteConfig::default(),
        }
    }
}

/// `[replication]`: how replicas are kept where placement wants them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// Seconds between replica repair passes (a write short of replicas starts one at once).
    pub repair_interval_secs: u64,
    /// Blobs one repair step examines (between lease renewals and progress saves).
    pub repair_step_blobs: usize,
    /// Seconds between scrubbing passes, which read every copy and check its CRC32C.
    pub scrub_interval_secs: u64,
    /// Seconds between reloads of run-time site records (sites added, drained or removed
    /// through another gateway).
    pub site_refresh_secs: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            repair_interval_secs: 300,
            repair_step_blobs: 1000,
            scrub_interval_secs: 7 * 24 * 3600,
            site_refresh_secs: 10,
        }
    }
}

impl SiteConfig {
    /// The site's profile for the registry.
    #[must_use]
    pub fn profile(&self) -> SiteProfile {
        let mut p = SiteProfile::new(&self.id, &self.jurisdiction, &self.operator);
        p.facility.clone_from(&self.facility);
        p.operator_country.clone_from(&self.operator_country);
        p.parent.clone_from(&self.parent);
        p.parent_country.clone_from(&self.parent_country);
        p.declared_exposures.clone_from(&self.exposures);
        p.certifications.clone_from(&self.certifications);
        p.weight = self.weight;
        p
    }

    /// Checks the backend settings of this site (`field` names it in errors).
    pub fn validate_backend(&self, field: &'static str) -> Result<(), ConfigError> {
        let missing = |name: &'static str, value: &str| {
            if value.is_empty() {
                Err(ConfigError::Value {
                    field,
                    message: format!(
                        "site {}: {name} is required with backend = {:?}",
                        self.id, self.backend
                    ),
                })
            } else {
                Ok(())
            }
        };
        match self.backend.as_str() {
            "local" => Ok(()),
            "s3" => {
                let s3 = &self.s3;
                missing("s3.endpoint", &s3.endpoint)?;
                missing("s3.bucket", &s3.bucket)?;
                missing("s3.access_key", &s3.access_key)?;
                missing("s3.secret_env", &s3.secret_env)?;
                if !(s3.endpoint.starts_with("https://") || s3.endpoint.starts_with("http://")) {
                    return Err(ConfigError::Value {
                        field,
                        message: format!(
                            "site {}: s3.endpoint {:?} is not an http(s):// URL",
                            self.id, s3.endpoint
                        ),
                    });
                }
                Ok(())
            }
            "azure" => {
                let az = &self.azure;
                missing("azure.account", &az.account)?;
                missing("azure.container", &az.container)?;
                missing("azure.access_key_env", &az.access_key_env)
            }
            other => Err(ConfigError::Value {
                field,
                message: format!(
                    "site {}: backend {other:?}: use \"local\", \"s3\" or \"azure\"",
                    self.id
                ),
            }),
        }
    }
}

/// `[residency]`: the exposure rules and the deployment's default boundary policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResidencyConfig {
    /// A TOML file replacing the built-in exposure rules (empty: the built-in ones).
    pub exposure_rules: Option<PathBuf>,
    /// The boundary policy of buckets that have none of their own (none: no boundary).
    pub default_policy: Option<BoundaryPolicy>,
}

impl Config {
    /// The exposure rules in force: the configured file, or the built-in set.
    pub fn exposure_rules(&self) -> Result<ExposureRules, ConfigError> {
        let Some(path) = &self.residency.exposure_rules else {
            return Ok(ExposureRules::builtin());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        ExposureRules::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.clone(),
            message: message.0,
        })
    }

    /// Every configured site: `[site]` first, then `[[sites]]`.
    #[must_use]
    pub fn all_sites(&self) -> Vec<SiteConfig> {
        std::iter::once(self.site.clone())
            .chain(self.sites.iter().cloned())
            .collect()
    }

    /// The residency facts in force: rules, the site registry (the configured sites) and
    /// the default policy, all checked.
    pub fn residency(&self) -> Result<Residency, ConfigError> {
        self.residency_of(self.all_sites().iter().map(SiteConfig::profile).collect())
    }

    /// The residency facts over `sites` (the configured ones with run-time changes).
    pub fn residency_of(&self, sites: Vec<SiteProfile>) -> Result<Residency, ConfigError> {
        Residency::new(
            self.exposure_rules()?,
            sites,
            self.residency.default_policy.clone(),
        )
        .map_err(|message| ConfigError::Value {
            field: "site / residency.default_policy",
            message: message.0,
        })
    }
}

/// A witness the log asks to cosign its checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness's submission prefix, e.g. `http://witness.example:7380` (add-checkpoint is
    /// POSTed to `<url>/add-checkpoint`).
    pub url: String,
    /// The witness's verifier key (cosignature/v1), as `vallum witness` prints it.
    pub vkey: String,
}

/// Transparency-log settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// The log's origin line (and signer key name). Empty: `vallum.local/<random id>`, chosen
    /// when the signer key is generated. Must match the existing key's name.
    pub origin: String,
    /// Milliseconds between signed checkpoints (when there are new entries).
    pub checkpoint_interval_ms: u64,
    /// Buckets whose object keys the log records as keyed hashes (`*`: all buckets).
    pub hash_keys: Vec<String>,
    /// Witnesses to ask for cosignatures; their cosignatures are published with the
    /// checkpoint.
    pub witnesses: Vec<WitnessConfig>,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            origin: String::new(),
            checkpoint_interval_ms: 1000,
            hash_keys: Vec::new(),
            witnesses: Vec::new(),
        }
    }
}

/// Metadata store selection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaConfig {
    /// `postgres://user:password@host:port/database` to keep metadata in PostgreSQL (several
    /// gateways may share it); absent: the embedded SQLite store in the data directory.
    pub url: Option<String>,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter directive, e.g. `info` or `vallum_server=debug,info`.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Garbage-collection settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// Seconds between collection passes.
    pub interval_secs: u64,
    /// Seconds a replaced or deleted object's data is kept for readers that already opened it.
    pub trash_grace_secs: u64,
    /// Seconds after which an unfinished multipart upload is aborted.
    pub multipart_expiry_secs: u64,
    /// Seconds after which temporary data and unreferenced blobs left by a crash are removed.
    pub orphan_age_secs: u64,
}

/// Deployment-wide object lock settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectLockSettings {
    /// Whether any caller may bypass GOVERNANCE retention (with
    /// `x-amz-bypass-governance-retention: true`). `false` makes GOVERNANCE as strict as
    /// COMPLIANCE for every principal. COMPLIANCE is never bypassable.
    pub allow_governance_bypass: bool,
}

impl Default for ObjectLockSettings {
    fn default() -> Self {
        Self {
            allow_governance_bypass: true,
        }
    }
}

/// Lifecycle worker settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleWorkerConfig {
    /// Seconds between lifecycle passes over all buckets with a lifecycle configuration.
    pub interval_secs: u64,
}

impl Default for LifecycleWorkerConfig {
    fn default() -> Self {
        Self {
            interval_secs: 3600,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            data_dir: PathBuf::from("vallum-data"),
            region: "us-east-1".into(),
            domains: Vec::new(),
            global_bucket_names: false,
            tls_cert: None,
            tls_key: None,
            log: LogConfig::default(),
            gc: GcConfig::default(),
            lifecycle: LifecycleWorkerConfig::default(),
            object_lock: ObjectLockSettings::default(),
            meta: MetaConfig::default(),
            site: SiteConfig::default(),
            sites: Vec::new(),
            replication: ReplicationConfig::default(),
            residency: ResidencyConfig::default(),
            ledger: LedgerConfig::default(),
            keys: KeysConfig::default(),
            connections: ConnectionsConfig::default(),
            files: FilesConfig::default(),
            webhooks: WebhooksConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            interval_secs: 300,
            trash_grace_secs: 3600,
            multipart_expiry_secs: 7 * 24 * 3600,
            orphan_age_secs: 24 * 3600,
        }
    }
}

impl Config {
    /// Parses TOML text.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads `path`, or the defaults when `path` is `None`; then applies the environment.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::from_toml(&text, path)?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    /// Applies `VALLUM_LISTEN`, `VALLUM_DATA_DIR`, `VALLUM_REGION`, `VALLUM_DOMAINS`
    /// (comma-separated), `VALLUM_GLOBAL_BUCKET_NAMES`, `VALLUM_META_URL`, `VALLUM_SITE_JURISDICTION`, `VALLUM_LOG`,
    /// `VALLUM_LOG_FORMAT`, `VALLUM_TLS_CERT` and `VALLUM_TLS_KEY`.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = env("VALLUM_TLS_CERT") {
            self.tls_cert = Some(PathBuf::from(v));
        }
        if let Some(v) = env("VALLUM_TLS_KEY") {
            self.tls_key = Some(PathBuf::from(v));
        }
        if let Some(v) = env("VALLUM_LISTEN") {
            self.listen = v.parse().map_err(|e| ConfigError::Value {
                field: "VALLUM_LISTEN",
                message: format!("{v:?}: {e}"),
            })?;
        }
        if let Some(v) = env("VALLUM_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env("VALLUM_REGION") {
            self.region = v;
        }
        if let Some(v) = env("VALLUM_DOMAINS") {
            self.domains = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = env("VALLUM_GLOBAL_BUCKET_NAMES") {
            self.global_bucket_names = match v.as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" | "" => false,
                other => {
                    return Err(ConfigError::Value {
                        field: "VALLUM_GLOBAL_BUCKET_NAMES",
                        message: format!("{other:?}: use true or false"),
                    });
                }
            };
        }
        if let Some(v) = env("VALLUM_META_URL") {
            self.meta.url = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = env("VALLUM_SITE_JURISDICTION") {
            self.site.jurisdiction = v;
        }
        if let Some(v) = env("VALLUM_LOG") {
            self.log.level = v;
        }
        if let Some(v) = env("VALLUM_LOG_FORMAT") {
            self.log.format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(ConfigError::Value {
                        field: "VALLUM_LOG_FORMAT",
                        message: format!("{other:?} is neither text nor json"),
                    });
                }
            };
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.version != CONFIG_VERSION {
            return Err(ConfigError::Value {
                field: "version",
                message: format!(
                    "{} is not supported; this build reads version {CONFIG_VERSION}",
                    self.version
                ),
            });
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ConfigError::Value {
                field: "region",
                message: format!("{:?} is not a region name", self.region),
            });
        }
        for d in &self.domains {
            if d.is_empty() || d.contains('/') {
                return Err(ConfigError::Value {
                    field: "domains",
                    message: format!("{d:?} is not a domain name"),
                });
            }
        }
        if let Some(url) = &self.meta.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Value {
                field: "meta.url",
                message: "must be a postgres:// URL".into(),
            });
        }
        if self.gc.interval_secs == 0 {
            return Err(ConfigError::Value {
                field: "gc.interval_secs",
                message: "must be at least 1".into(),
            });
        }
        for (field, secs) in [
            (
                "connections.idle_timeout_secs",
                self.connections.idle_timeout_secs,
            ),
            (
                "connections.body_read_timeout_secs",
                self.connections.body_read_timeout_secs,
            ),
        ] {
            if secs == 0 {
                return Err(ConfigError::Value {
                    field,
                    message: "must be at least 1".into(),
                });
            }
        }
        if self.webhooks.attempts == 0 || self.webhooks.attempts > 20 {
            return Err(ConfigError::Value {
                field: "webhooks.attempts",
                message: "must be from 1 to 20".into(),
            });
        }
        if self.webhooks.timeout_ms == 0 {
            return Err(ConfigError::Value {
                field: "webhooks.timeout_ms",
                message: "must be at least 1".into(),
            });
        }
        if !matches!(self.files.permissions.as_str(), "refuse" | "warn") {
            return Err(ConfigError::Value {
                field: "files.permissions",
                message: format!("{:?} is neither refuse nor warn", self.files.permissions),
            });
        }
        self.site.validate_backend("site")?;
        if let Err(message) = self.site.profile().validate() {
            return Err(ConfigError::Value {
                field: "site",
                message: message.0,
            });
        }
        for site in &self.sites {
            site.validate_backend("sites")?;
            if let Err(message) = site.profile().validate() {
                return Err(ConfigError::Value {
                    field: "sites",
                    message: message.0,
                });
            }
        }
        if self.replication.repair_interval_secs == 0
            || self.replication.repair_step_blobs == 0
            || self.replication.site_refresh_secs == 0
        {
            return Err(ConfigError::Value {
                field: "replication",
                message: "intervals and the step size must be at least 1".into(),
            });
        }
        self.residency()?;
        if !(10..=3_600_000).contains(&self.ledger.checkpoint_interval_ms) {
            return Err(ConfigError::Value {
                field: "ledger.checkpoint_interval_ms",
                message: "must be between 10 and 3600000".into(),
            });
        }
        if self.ledger.origin.contains(char::is_whitespace) || self.ledger.origin.contains('+') {
            return Err(ConfigError::Value {
                field: "ledger.origin",
                message: "must not contain spaces or '+'".into(),
            });
        }
        for w in &self.ledger.witnesses {
            if !w.url.starts_with("http://") {
                return Err(ConfigError::Value {
                    field: "ledger.witnesses.url",
                    message: format!(
                        "{:?}: only http:// witnesses are supported (no TLS yet)",
                        w.url
                    ),
                });
            }
            if vallum_ledger::note::Verifier::parse(&w.vkey).is_err() {
                return Err(ConfigError::Value {
                    field: "ledger.witnesses.vkey",
                    message: format!("{:?} is not a verifier key", w.vkey),
                });
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Value {
                field: "tls_cert",
                message: "tls_cert and tls_key go together".into(),
            });
        }
        if !(4096..=1_048_576).contains(&self.keys.segment_bytes)
            || !self.keys.segment_bytes.is_power_of_two()
        {
            return Err(ConfigError::Value {
                field: "keys.segment_bytes",
                message: "must be a power of two from 4096 to 1048576".into(),
            });
        }
        let providers: Vec<&KeyProviderConfig> = match &self.keys.provider {
            KeyProviderConfig::Double(pair) => pair.iter().collect(),
            single => vec![single],
        };
        for p in providers {
            match p {
                KeyProviderConfig::Keyring(_) | KeyProviderConfig::Double(_) => {}
                KeyProviderConfig::Pkcs11(p) => {
                    if p.module.is_empty() || p.token.is_empty() || p.pin_env.is_empty() {
                        return Err(ConfigError::Value {
                            field: "keys.provider",
                            message: "pkcs11 needs keys.pkcs11_module, keys.pkcs11_token and keys.pkcs11_pin_env".into(),
                        });
                    }
                }
                KeyProviderConfig::Xks(x) => {
                    if x.endpoint.is_empty() || x.access_key.is_empty() || x.secret_env.is_empty() {
                        return Err(ConfigError::Value {
                            field: "keys.provider",
                            message: "xks needs keys.xks_endpoint, keys.xks_access_key and keys.xks_secret_env".into(),
                        });
                    }
                    if x.timeout_ms == 0 || x.retries > 10 {
                        return Err(ConfigError::Value {
                            field: "keys.xks_timeout_ms",
                            message: "the timeout must be at least 1 ms and retries at most 10"
                                .into(),
                        });
                    }
                }
            }
        }
        if vallum_crypto::check_key_id(&self.keys.default_key_id).is_err() {
            return Err(ConfigError::Value {
                field: "keys.default_key_id",
                message: "1-128 characters of A-Z a-z 0-9 - _ . / :".into(),
            });
        }
        if self.lifecycle.interval_secs == 0 {
            return Err(ConfigError::Value {
                field: "lifecycle.interval_secs",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_parses() {
        let text = include_str!("../../../docs/vallum.example.toml");
        let config = Config::from_toml(text, Path::new("vallum.example.toml")).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.gc.trash_grace_secs, 3600);
        // The example spells out every default.
        assert_eq!(
            config,
            Config {
                data_dir: config.data_dir.clone(),
                ..Config::default()
            }
        );
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let err = Config::from_toml(
            "listen = \"127.0.0.1:1\"\nlisten_port = 3\n",
            Path::new("x"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("listen_port"), "{err}");
        let err = Config::from_toml("[gc]\ninterval = 3\n", Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("interval"), "{err}");
        assert!(Config::from_toml("version = 2\n", Path::new("x")).is_err());
        assert!(Config::from_toml("region = \"eu west\"\n", Path::new("x")).is_err());
        assert!(Config::from_toml("[meta]\nurl = \"mysql://x\"\n", Path::new("x")).is_err());
        for bad in [
            "[site]\njurisdiction = \"France\"\n",
            "[site]\nid = \"\"\n",
            "[ledger]\ncheckpoint_interval_ms = 0\n",
            "[ledger]\norigin = \"a b\"\n",
            "[[ledger.witnesses]]\nurl = \"https://w.example\"\nvkey = \"w+00000000+AQ==\"\n",
            "[[ledger.witnesses]]\nurl = \"http://w.example\"\nvkey = \"not a key\"\n",
        ] {
            let err = Config::from_toml(bad, Path::new("x")).unwrap_err();
            assert!(matches!(err, ConfigError::Value { .. }), "{bad}: {err}");
        }
        let fr = Config::from_toml("[site]\njurisdiction = \"FR\"\n", Path::new("x")).unwrap();
        assert_eq!(fr.site.jurisdiction, "FR");
        for (bad, why) in [
            ("[site]\njurisdiction = \"XX\"\n", "\"XX\" is not an ISO"),
            ("[site]\nparent_country = \"USA\"\n", "parent country"),
            (
                "[residency.default_policy]\nname = \"eu\"\nallowed = [\"Europe\"]\n",
                "unknown jurisdiction \"Europe\"",
            ),
            (
                "[residency.default_policy]\nname = \"eu\"\nallowed = [\"EU\"]\nforbidden_exposures = [\"cloud-act\"]\n",
                "unknown exposure",
            ),
        ] {
            let err = Config::from_toml(bad, Path::new("x")).unwrap_err();
            assert!(
                matches!(err, ConfigError::Value { .. }) && err.to_string().contains(why),
                "{bad}: {err}"
            );
        }
        for bad in [
            "[site]\ncertifications = [{ scheme = \"HDS\", expires = \"2026-02-30\" }]\n",
            "[residency.default_policy]\nname = \"eu\"\nallowed = [\"EU\"]\nreplicas = 2\n",
        ] {
            let err = Config::from_toml(bad, Path::new("x")).unwrap_err();
            assert!(matches!(err, ConfigError::Parse { .. }), "{bad}: {err}");
        }
        let missing = Config::from_toml(
            "[residency]\nexposure_rules = \"/nonexistent/rules.toml\"\n",
            Path::new("x"),
        )
        .unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
        let full = Config::from_toml(
            "[site]\njurisdiction = \"FR\"\noperator = \"Cloud France SAS\"\nparent = \"Hyperscale Inc\"\nparent_country = \"US\"\n\n[residency.default_policy]\nname = \"eu\"\nallowed = [\"EU\"]\n",
            Path::new("x"),
        )
        .unwrap();
        let residency = full.residency().unwrap();
        let site = residency.site("local").unwrap();
        assert_eq!(
            residency.site_ref(site).exposures,
            ["us-cloud-act", "us-fisa-702"]
        );
        assert_eq!(residency.default_policy().unwrap().name, "eu");
        let pg = Config::from_toml(
            "[meta]\nurl = \"postgres://v@db:5432/vallum\"\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(pg.meta.url.as_deref(), Some("postgres://v@db:5432/vallum"));
    }

    #[test]
    fn each_key_provider_is_a_variant_with_only_its_settings() {
        let parse = |keys: &str| Config::from_toml(&format!("[keys]\n{keys}"), Path::new("x"));
        let default = parse("").unwrap().keys;
        assert_eq!(default, KeysConfig::default());
        assert_eq!(
            default.provider,
            KeyProviderConfig::Keyring(KeyringConfig::default())
        );
        let hsm = parse(
            "provider = \"pkcs11\"\npkcs11_module = \"/m.so\"\npkcs11_token = \"t\"\npkcs11_pin_env = \"PIN\"\n",
        )
        .unwrap()
        .keys;
        assert_eq!(
            hsm.provider,
            KeyProviderConfig::Pkcs11(Pkcs11Config {
                module: "/m.so".into(),
                token: "t".into(),
                pin_env: "PIN".into(),
            })
        );
        assert!(!hsm.provider.external() && hsm.provider.keyring().is_none());
        let double = parse(
            "provider = \"double\"\ndouble_of = [\"xks\", \"keyring\"]\nxks_endpoint = \"https://k:8443\"\nxks_access_key = \"AK\"\nxks_secret_env = \"XS\"\npassphrase_env = \"PP\"\n",
        )
        .unwrap()
        .keys;
        let KeyProviderConfig::Double(pair) = &double.provider else {
            panic!("{double:?}")
        };
        assert!(
            matches!(&pair[0], KeyProviderConfig::Xks(x) if x.endpoint == "https://k:8443" && x.timeout_ms == 2000)
        );
        assert_eq!(
            double.provider.keyring().unwrap().passphrase_env.as_deref(),
            Some("PP")
        );
        assert!(double.provider.external());
        // The file form round-trips.
        let text = toml::to_string(&double).unwrap();
        assert_eq!(toml::from_str::<KeysConfig>(&text).unwrap(), double);
        // An unknown provider and a malformed pair are refused when the file is read.
        for (bad, says) in [
            ("provider = \"vault\"", "not a key provider"),
            (
                "provider = \"double\"\ndouble_of = [\"keyring\"]",
                "two providers",
            ),
            (
                "provider = \"double\"\ndouble_of = [\"keyring\", \"keyring\"]",
                "two different",
            ),
            (
                "provider = \"double\"\ndouble_of = [\"double\", \"keyring\"]",
                "two different",
            ),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Parse { message, .. } if message.contains(says)),
                "{bad}: {err}"
            );
        }
        // A provider's own required settings are still checked.
        let err = parse("provider = \"xks\"").unwrap_err();
        assert!(err.to_string().contains("xks needs"), "{err}");
    }

    #[test]
    fn environment_overrides_file() {
        let env = |k: &str| match k {
            "VALLUM_LISTEN" => Some("127.0.0.1:9100".to_owned()),
            "VALLUM_DOMAINS" => Some("s3.local, s3.example".to_owned()),
            "VALLUM_LOG_FORMAT" => Some("json".to_owned()),
            _ => None,
        };
        let config = Config::load(None, env).unwrap();
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.domains, ["s3.local", "s3.example"]);
        assert_eq!(config.log.format, LogFormat::Json);
        assert!(Config::load(None, |k| (k == "VALLUM_LISTEN").then(|| "nope".to_owned())).is_err());
    }
}
