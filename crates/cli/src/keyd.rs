//! `vallum keyd`: the XKS proxy a customer runs on their own premises, and the tool that manages
//! the keys it holds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Deserialize;
use vallum_server::config::{KeyProviderConfig, KeysConfig};
use vallum_xks::proxy::{Policy, Proxy, Rule};
use zeroize::Zeroizing;

/// Arguments of `vallum keyd`.
#[derive(Debug, Args)]
pub struct KeydArgs {
    #[command(subcommand)]
    command: KeydCommand,
}

#[derive(Debug, Subcommand)]
enum KeydCommand {
    /// Run the XKS proxy (AWS KMS XKS proxy API v1) over the configured keyring or PKCS#11
    /// token. Vallum (`[keys] provider = "xks"`) or AWS KMS can then use its keys.
    Serve {
        /// keyd.toml (see docs/keyd.md).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Manage the keys keyd holds (works next to a running keyd: both see every change).
    Key {
        /// keyd.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// Print each key as JSON (a list for `list`) instead of a line of text (also
        /// `VALLUM_JSON=1`).
        #[arg(
            long,
            global = true,
            env = "VALLUM_JSON",
            value_parser = clap::builder::FalseyValueParser::new()
        )]
        json: bool,
        #[command(subcommand)]
        op: KeyOp,
    },
}

#[derive(Debug, Subcommand)]
enum KeyOp {
    /// Create a key (its id is the external key id clients name).
    Create { id: String },
    /// List keys with version and state.
    List,
    /// Add a key version; new encryptions use it, old ciphertexts still decrypt.
    Rotate { id: String },
    /// Refuse encrypt and decrypt with the key until enabled again.
    Disable { id: String },
    /// Allow the key again.
    Enable { id: String },
    /// Destroy the key material for good: everything wrapped under it becomes unrecoverable.
    Destroy {
        id: String,
        /// Confirm the destruction.
        #[arg(long)]
        yes: bool,
    },
}

/// keyd.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct KeydConfig {
    listen: SocketAddr,
    data_dir: PathBuf,
    path_prefix: String,
    tls_cert: String,
    tls_key: String,
    /// Serve plain HTTP (tests, or behind a TLS-terminating proxy on the same host).
    insecure_http: bool,
    keys: KeysConfig,
    credentials: Vec<CredentialConfig>,
    policy: Vec<RuleConfig>,
    approvals: ApprovalsConfig,
}

/// `[approvals]`: the tenant's guardians whose signatures release a key to an operator.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ApprovalsConfig {
    /// The guardians' approval keys (signed-note verifier keys, as `vallum lockbox keygen`
    /// prints them). Empty: lockbox key uses are not checked here.
    guardians: Vec<String>,
    /// Distinct guardian signatures a key use under a lockbox grant needs.
    required: usize,
}

impl Default for KeydConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: PathBuf::from("keyd-data"),
            path_prefix: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            insecure_http: false,
            keys: KeysConfig::default(),
            credentials: Vec::new(),
            policy: Vec::new(),
            approvals: ApprovalsConfig::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialConfig {
    access_key: String,
    /// Environment variable holding the secret.
    secret_env: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    key: String,
    principals: Vec<String>,
    reasons: Vec<String>,
}

fn load(path: &Path) -> anyhow::Result<KeydConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg: KeydConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if !matches!(
        cfg.keys.provider,
        KeyProviderConfig::Keyring(_) | KeyProviderConfig::Pkcs11(_)
    ) {
        bail!(
            "keys.provider {:?}: keyd fronts a keyring or a pkcs11 token",
            cfg.keys.provider.name()
        );
    }
    let prefix_ok = cfg.path_prefix.is_empty()
        || (cfg.path_prefix.starts_with('/')
            && cfg.path_prefix.len() <= 100
            && cfg.path_prefix[1..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_".contains(&b)));
    if !prefix_ok {
        bail!("path_prefix must be empty or /[A-Za-z0-9/_-]*");
    }
    Ok(cfg)
}

fn provider(cfg: &KeydConfig) -> anyhow::Result<Arc<dyn vallum_crypto::keys::KeyProvider>> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    Ok(vallum_server::keys::open_provider(
        &cfg.keys.provider,
        &cfg.data_dir,
        &cfg.keys.default_key_id,
    )?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs `vallum keyd`.
pub fn run(args: KeydArgs) -> anyhow::Result<()> {
    match args.command {
        KeydCommand::Serve { config } => serve(&config),
        KeydCommand::Key { config, json, op } => key(&config, op, json),
    }
}

fn serve(path: &Path) -> anyhow::Result<()> {
    let cfg = load(path)?;
    if cfg.credentials.is_empty() {
        bail!("keyd needs at least one [[credentials]] entry (access_key, secret_env)");
    }
    let mut credentials = Vec::new();
    for c in &cfg.credentials {
        let secret = std::env::var(&c.secret_env).with_context(|| {
            format!("credentials {}: {} is not set", c.access_key, c.secret_env)
        })?;
        credentials.push((c.access_key.clone(), Zeroizing::new(secret)));
    }
    let tls = match (cfg.tls_cert.is_empty(), cfg.insecure_http) {
        (false, _) => Some(vallum_xks::tls::server_config(
            Path::new(&cfg.tls_cert),
            Path::new(&cfg.tls_key),
        )?),
        (true, true) => None,
        (true, false) => {
            bail!("keyd serves HTTPS: set tls_cert and tls_key (or insecure_http = true for tests)")
        }
    };
    let policy = Policy {
        rules: cfg
            .policy
            .iter()
            .map(|r| Rule {
                key: r.key.clone(),
                principals: r.principals.clone(),
                reasons: r.reasons.clone(),
            })
            .collect(),
        approvers: cfg
            .approvals
            .guardians
            .iter()
            .map(|v| {
                vallum_ledger::note::Verifier::parse(v)
                    .with_context(|| format!("approvals.guardians: {v:?}"))
            })
            .collect::<anyhow::Result<_>>()?,
        approvals_required: cfg.approvals.required.max(1),
    };
    if !policy.approvers.is_empty() && policy.approvals_required > policy.approvers.len() {
        bail!("approvals.required is more than the guardians listed");
    }
    let provider = provider(&cfg)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VALLUM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    runtime()?.block_on(async move {
        let proxy = Arc::new(Proxy::new(provider, credentials, &cfg.path_prefix, policy));
        proxy.prepare().await.context("creating the health-check key")?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        println!(
            "keyd: XKS proxy at {}://{addr}{}/kms/xks/v1 ({} provider, {} credential(s), {} policy rule(s))",
            if tls.is_some() { "https" } else { "http" },
            cfg.path_prefix,
            cfg.keys.provider.name(),
            cfg.credentials.len(),
            cfg.policy.len()
        );
        vallum_xks::proxy::serve(proxy, listener, tls, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
        anyhow::Ok(())
    })
}

fn key(path: &Path, op: KeyOp, json: bool) -> anyhow::Result<()> {
    use vallum_crypto::keys::{KeyInfo, KeyState};
    let cfg = load(path)?;
    let p = provider(&cfg)?;
    let show = |k: &KeyInfo| {
        if json {
            println!("{}", serde_json::to_string_pretty(k).unwrap_or_default());
            return;
        }
        println!(
            "{}\tversion {}\t{}",
            k.key_id,
            k.current_version,
            match k.state {
                KeyState::Enabled => "enabled".to_owned(),
                KeyState::Disabled => "disabled".to_owned(),
                KeyState::PendingDeletion { delete_at_ms } =>
                    format!("pending deletion at {delete_at_ms}"),
                KeyState::Destroyed => "destroyed".to_owned(),
            }
        );
    };
    let now = vallum_server::keys::now_ms();
    runtime()?.block_on(async move {
        match op {
            KeyOp::Create { id } => {
                if !vallum_xks::wire::valid_key_id(&id) {
                    bail!("{id:?}: XKS external key ids are 1-128 characters of A-Z a-z 0-9 - . _");
                }
                show(&p.create_key(&id, now).await?)
            }
            KeyOp::List => {
                let keys = p.list().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&keys)?);
                } else {
                    for k in keys {
                        show(&k);
                    }
                }
            }
            KeyOp::Rotate { id } => show(&p.rotate(&id, now).await?),
            KeyOp::Disable { id } => show(&p.set_state(&id, KeyState::Disabled).await?),
            KeyOp::Enable { id } => show(&p.set_state(&id, KeyState::Enabled).await?),
            KeyOp::Destroy { id, yes } => {
                if !yes {
                    bail!(
                        "destroying {id} makes everything wrapped under it unrecoverable; add --yes"
                    );
                }
                show(&p.destroy(&id).await?);
            }
        }
        anyhow::Ok(())
    })
}
