//! Offline tools over the transparency log: `vallum verify`, `vallum log bundle`,
//! `vallum log key` and `vallum witness`. They need no running Vallum and trust nothing but
//! the public keys they are given.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use vallum_ledger::LedgerError;
use vallum_ledger::audit::{Verdict, boundary_audit};
use vallum_ledger::checkpoint::Checkpoint;
use vallum_ledger::client::{DirFetcher, TileFetcher};
use vallum_ledger::cosignature::Cosigner;
use vallum_ledger::entry::{BoundaryRecord, Entry};
use vallum_ledger::note::{Signer, Verifier};
use vallum_ledger::verify::{BundleFilter, ProofBundle, verify_log};
use vallum_ledger::witness::{MAX_REQUEST_BYTES, Witness};

/// `vallum verify` exit codes (documented in docs/transparency-log.md).
pub mod exit {
    /// Verified (and, with `--boundary`, every event within the boundary).
    pub const OK: i32 = 0;
    /// Could not run: unreadable input, network, bad arguments.
    pub const ERROR: i32 = 1;
    /// The boundary audit found events outside the boundary.
    pub const VIOLATIONS: i32 = 3;
    /// The log or bundle failed verification (signature, tampering, fork).
    pub const INVALID: i32 = 4;
    /// The boundary audit could not judge some events (no policy known for them).
    pub const UNDETERMINED: i32 = 5;
}

/// Time allowed for one HTTP request to a log.
const HTTP_TIMEOUT_SECS: u64 = 30;
/// Largest resource fetched from a log over HTTP.
const MAX_RESOURCE_BYTES: u64 = 16 << 20;

/// Reads a log over HTTP (`<url>/checkpoint`, `<url>/tile/...`).
struct HttpFetcher {
    base: String,
    agent: ureq::Agent,
}

impl HttpFetcher {
    fn new(url: &str) -> anyhow::Result<Self> {
        if !url.starts_with("http://") {
            bail!("{url:?}: only http:// log URLs are supported (no TLS yet); or use --log-dir");
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(HTTP_TIMEOUT_SECS)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            agent,
        })
    }
}

impl TileFetcher for HttpFetcher {
    fn fetch(&self, path: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        let url = format!("{}/{path}", self.base);
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| LedgerError::Io(std::io::Error::other(format!("{url}: {e}"))))?;
        match resp.status().as_u16() {
            200 => resp
                .body_mut()
                .with_config()
                .limit(MAX_RESOURCE_BYTES)
                .read_to_vec()
                .map(Some)
                .map_err(|e| LedgerError::Io(std::io::Error::other(format!("{url}: {e}")))),
            404 => Ok(None),
            s => Err(LedgerError::Io(std::io::Error::other(format!(
                "{url}: HTTP {s}"
            )))),
        }
    }
}

/// Where a log is read from (one of the two; `log bundle --from-server` needs neither).
#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct LogSource {
    /// The log's URL prefix, e.g. http://127.0.0.1:9000/log
    #[arg(long)]
    log: Option<String>,
    /// A directory holding the log's files (a server's `<data-dir>/ledger/log`, or a mirror).
    #[arg(long)]
    log_dir: Option<PathBuf>,
}

impl LogSource {
    fn fetcher(&self) -> anyhow::Result<Box<dyn TileFetcher>> {
        match (&self.log, &self.log_dir) {
            (Some(url), _) => Ok(Box::new(HttpFetcher::new(url)?)),
            (_, Some(dir)) => Ok(Box::new(DirFetcher(dir.clone()))),
            _ => bail!("give --log URL or --log-dir DIR"),
        }
    }
}

/// Trust anchors shared by the commands.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The log's verifier key (`<origin>+<id>+<base64>`), or `@FILE` to read it from a file.
    #[arg(long)]
    key: String,
    /// A witness verifier key whose cosignature is required (repeatable).
    #[arg(long = "witness")]
    witnesses: Vec<String>,
    /// How many of the given witnesses must have cosigned (default: all of them).
    #[arg(long)]
    quorum: Option<usize>,
    /// A checkpoint you trusted before: the log must be consistent with it (fork detection).
    #[arg(long)]
    trusted: Option<PathBuf>,
}

fn read_arg(value: &str) -> anyhow::Result<String> {
    match value.strip_prefix('@') {
        Some(path) => Ok(std::fs::read_to_string(path)
            .with_context(|| format!("reading {path}"))?
            .trim()
            .to_owned()),
        None => Ok(value.to_owned()),
    }
}

struct Trust {
    key: Verifier,
    witnesses: Vec<Verifier>,
    quorum: usize,
    trusted: Option<Checkpoint>,
}

impl TrustArgs {
    fn load(&self) -> anyhow::Result<Trust> {
        let key = Verifier::parse(&read_arg(&self.key)?).context("--key is not a verifier key")?;
        let witnesses = self
            .witnesses
            .iter()
            .map(|w| {
                read_arg(w)
                    .and_then(|t| Verifier::parse(&t).context("--witness is not a verifier key"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let quorum = self.quorum.unwrap_or(witnesses.len());
        if quorum > witnesses.len() {
            bail!(
                "--quorum {quorum} is more than the {} witnesses given",
                witnesses.len()
            );
        }
        let trusted = match &self.trusted {
            Some(path) => {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let (cp, _) = Checkpoint::open(&bytes, &key, &[]).with_context(|| {
                    format!("{} is not a checkpoint signed by the log", path.display())
                })?;
                Some(cp)
            }
            None => None,
        };
        Ok(Trust {
            key,
            witnesses,
            quorum,
            trusted,
        })
    }
}

/// `vallum verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    trust: TrustArgs,
    /// A proof bundle made by `vallum log bundle`.
    #[arg(long, conflicts_with_all = ["log", "log_dir"])]
    bundle: Option<PathBuf>,
    /// The log's URL prefix, e.g. http://127.0.0.1:9000/log (verifies every entry).
    #[arg(long)]
    log: Option<String>,
    /// A directory holding the log's files.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Run the boundary audit for `--bucket`.
    #[arg(long, requires = "bucket")]
    boundary: bool,
    /// The bucket to audit.
    #[arg(long)]
    bucket: Option<String>,
    /// The boundary in force before the log's first policy entry for the bucket: allowed
    /// jurisdictions (countries or EU/EEA), comma-separated.
    #[arg(long, value_delimiter = ',')]
    allow: Vec<String>,
    /// Exposures forbidden by that initial boundary, comma-separated.
    #[arg(long, value_delimiter = ',')]
    forbid_exposure: Vec<String>,
    /// Report format: the audit's own Markdown or JSON, or the common report shape
    /// (`report`: JSON, `report-markdown`) that refers to the verified checkpoint.
    #[arg(long, default_value = "markdown", value_parser = ["markdown", "json", "report", "report-markdown"])]
    format: String,
    /// Write the report here instead of stdout.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Save the verified checkpoint here (to pass as --trusted next time).
    #[arg(long)]
    save_checkpoint: Option<PathBuf>,
}

/// Runs `vallum verify`; returns the exit code.
pub fn verify(args: &VerifyArgs) -> anyhow::Result<i32> {
    let trust = args.trust.load()?;
    for a in &args.allow {
        if !vallum_types::jurisdiction::is_known_name(a) {
            bail!("--allow {a:?} is neither an ISO 3166-1 alpha-2 country code nor EU/EEA");
        }
    }
    let bucket = args.bucket.clone();
    let keep = |e: &Entry| {
        bucket
            .as_deref()
            .is_none_or(|b| e.event.bucket() == Some(b))
    };
    let outcome = if let Some(path) = &args.bundle {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        ProofBundle::parse(&bytes).and_then(|b| {
            b.verify(
                &trust.key,
                &trust.witnesses,
                trust.quorum,
                trust.trusted.as_ref(),
            )
            .map(|(t, entries)| (t.note, t.checkpoint, t.witnesses, entries, 0))
        })
    } else {
        let source = LogSource {
            log: args.log.clone(),
            log_dir: args.log_dir.clone(),
        };
        let fetcher = source.fetcher()?;
        verify_log(
            fetcher.as_ref(),
            &trust.key,
            &trust.witnesses,
            trust.quorum,
            trust.trusted.as_ref(),
            &keep,
        )
        .map(|v| {
            (
                v.trust.note,
                v.trust.checkpoint,
                v.trust.witnesses,
                v.entries,
                v.sealed,
            )
        })
    };
    let (note, checkpoint, witnesses, entries, sealed) = match outcome {
        Ok(v) => v,
        Err(LedgerError::Io(e)) => return Err(e).context("reading the log"),
        Err(e) => {
            eprintln!("verification FAILED: {e}");
            return Ok(exit::INVALID);
        }
    };
    let entries: Vec<(u64, Entry)> = entries.into_iter().filter(|(_, e)| keep(e)).collect();
    eprintln!(
        "verified: log {} at size {} (root {}), {} entries checked{}{}{}",
        checkpoint.origin,
        checkpoint.size,
        hex(&checkpoint.root),
        entries.len(),
        if sealed > 0 {
            format!(
                ", {sealed} sealed entries verified in the tree (their content is private: vallum log bundle --from-server)"
            )
        } else {
            String::new()
        },
        if witnesses.is_empty() {
            String::new()
        } else {
            format!(", cosigned by {}", witnesses.join(", "))
        },
        trust
            .trusted
            .as_ref()
            .map(|t| format!(", consistent with the trusted size {}", t.size))
            .unwrap_or_default()
    );
    if let Some(path) = &args.save_checkpoint {
        std::fs::write(path, note.to_text())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !args.boundary {
        return Ok(exit::OK);
    }
    let bucket = args.bucket.clone().unwrap_or_default();
    let initial = (!args.allow.is_empty()).then(|| BoundaryRecord {
        allowed: args.allow.clone(),
        forbidden_exposures: args.forbid_exposure.clone(),
    });
    let report = boundary_audit(&bucket, &entries, initial, checkpoint.size);
    let common = || {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        report.to_report(
            i64::try_from(now).unwrap_or(i64::MAX),
            vallum_ledger::report::CheckpointRef::from_note(note.to_text().as_bytes()),
        )
    };
    let text = match args.format.as_str() {
        "json" => report.to_json(),
        "report" => common().to_json(),
        "report-markdown" => common().to_markdown(),
        _ => report.to_markdown(),
    };
    match &args.report {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?
        }
        None => println!("{text}"),
    }
    eprintln!(
        "boundary audit of {bucket}: {}",
        match report.verdict {
            Verdict::WithinBoundary => "within boundary".to_owned(),
            Verdict::Violations => format!("{} violation(s)", report.findings.len()),
            Verdict::NoPolicy => format!(
                "{} event(s) with no policy known",
                report.events_without_policy
            ),
        }
    );
    Ok(match report.verdict {
        Verdict::WithinBoundary => exit::OK,
        Verdict::Violations => exit::VIOLATIONS,
        Verdict::NoPolicy => exit::UNDETERMINED,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses a time given as milliseconds since the epoch or RFC 3339.
fn parse_time_ms(text: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{text:?} is neither milliseconds nor an RFC 3339 time"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).context("time out of range")
}

/// `vallum log …`.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum LogCommand {
    /// Export a self-contained proof bundle (checkpoint, entries, one multi-proof) of a
    /// bucket's entries in a time range. The log is verified in full first.
    Bundle {
        #[command(flatten)]
        source: LogSource,
        #[command(flatten)]
        trust: TrustArgs,
        /// Only entries of this bucket.
        #[arg(long)]
        bucket: Option<String>,
        /// Earliest entry time (ms since the epoch, or RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Latest entry time, inclusive.
        #[arg(long)]
        to: Option<String>,
        /// Include a consistency proof from this older tree size (the auditor's last one).
        #[arg(long)]
        since_size: Option<u64>,
        /// Ask the server (its admin API, as the caller in AWS_ACCESS_KEY_ID /
        /// AWS_SECRET_ACCESS_KEY) for the caller's own sealed entries with their openings,
        /// instead of reading public tiles (which carry only commitments since log format 2).
        #[arg(long, conflicts_with_all = ["log", "log_dir"])]
        from_server: bool,
        /// The server, with --from-server.
        #[arg(long, env = "VALLUM_ENDPOINT")]
        endpoint: Option<String>,
        /// Output file.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Print an inclusion proof for entry INDEX and, with --old-size, a consistency proof
    /// between two tree sizes, as JSON — computed from the log's tiles and checked against its
    /// verified checkpoint.
    Prove {
        #[command(flatten)]
        source: LogSource,
        #[command(flatten)]
        trust: TrustArgs,
        /// The entry to prove.
        #[arg(long)]
        index: u64,
        /// Also prove consistency from this older tree size to the checkpoint's.
        #[arg(long)]
        old_size: Option<u64>,
    },
    /// Print the log's verifier key from a data directory.
    Key {
        /// The server's data directory.
        #[arg(long, default_value = "vallum-data")]
        data_dir: PathBuf,
    },
}

/// Runs `vallum log …`.
pub fn log(cmd: &LogCommand) -> anyhow::Result<i32> {
    match cmd {
        LogCommand::Key { data_dir } => {
            let path = data_dir.join("ledger").join("signer.key");
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
            );
            let signer =
                Signer::from_skey(text.trim()).context("the signer key file is damaged")?;
            println!("{}", signer.vkey());
            Ok(exit::OK)
        }
        LogCommand::Prove {
            source,
            trust,
            index,
            old_size,
        } => prove(source, trust, *index, *old_size),
        LogCommand::Bundle {
            source,
            trust,
            bucket,
            from,
            to,
            since_size,
            from_server,
            endpoint,
            out,
        } => {
            let trust = trust.load()?;
            let from_ms = from.as_deref().map(parse_time_ms).transpose()?;
            let to_ms = to.as_deref().map(parse_time_ms).transpose()?;
            if *from_server {
                let client =
                    crate::admin_client::AdminConn::from_env(endpoint.clone())?.client()?;
                let answer = client.call(
                    "POST",
                    "log/bundle",
                    Some(serde_json::json!({
                        "bucket": bucket,
                        "from_ms": from_ms,
                        "to_ms": to_ms,
                        "since_size": since_size,
                    })),
                )?;
                let bytes = serde_json::to_vec_pretty(&answer)?;
                let bundle = ProofBundle::parse(&bytes).context("the server's bundle")?;
                // Checked before it is written: what the auditor receives verifies.
                if let Err(e) = bundle.verify(
                    &trust.key,
                    &trust.witnesses,
                    trust.quorum,
                    trust.trusted.as_ref(),
                ) {
                    eprintln!("the server's bundle failed verification, not written: {e}");
                    return Ok(exit::INVALID);
                }
                write_file(out, &bundle.to_json())?;
                eprintln!(
                    "bundle: {} entries written to {}",
                    bundle.entries.len(),
                    out.display()
                );
                return Ok(exit::OK);
            }
            let fetcher = source.fetcher()?;
            let keep = |e: &Entry| {
                bucket
                    .as_deref()
                    .is_none_or(|b| e.event.bucket() == Some(b))
                    && from_ms.is_none_or(|f| e.time_ms >= f)
                    && to_ms.is_none_or(|t| e.time_ms <= t)
            };
            let verified = match verify_log(
                fetcher.as_ref(),
                &trust.key,
                &trust.witnesses,
                trust.quorum,
                trust.trusted.as_ref(),
                &keep,
            ) {
                Ok(v) => v,
                Err(LedgerError::Io(e)) => return Err(e).context("reading the log"),
                Err(e) => {
                    eprintln!("the log failed verification, no bundle written: {e}");
                    return Ok(exit::INVALID);
                }
            };
            if verified.sealed > 0 {
                eprintln!(
                    "note: {} sealed entries are in the log; their content is private (vallum log bundle --from-server gives a caller its own)",
                    verified.sealed
                );
            }
            let indexes: Vec<u64> = verified.entries.iter().map(|e| e.0).collect();
            let bundle = ProofBundle::export(
                fetcher.as_ref(),
                &verified.trust.note,
                &indexes,
                BundleFilter {
                    bucket: bucket.clone(),
                    from_ms,
                    to_ms,
                },
                *since_size,
            )
            .context("building the bundle")?;
            write_file(out, &bundle.to_json())?;
            eprintln!(
                "bundle: {} entries at tree size {} written to {}",
                indexes.len(),
                verified.trust.checkpoint.size,
                out.display()
            );
            Ok(exit::OK)
        }
    }
}

fn prove(
    source: &LogSource,
    trust: &TrustArgs,
    index: u64,
    old_size: Option<u64>,
) -> anyhow::Result<i32> {
    use vallum_ledger::client::LogClient;
    use vallum_ledger::merkle::{consistency_proof, inclusion_proof, leaf_hash, verify_inclusion};
    let trust = trust.load()?;
    let fetcher = source.fetcher()?;
    let note = fetcher
        .fetch("checkpoint")?
        .context("the log has no checkpoint")?;
    let opened =
        vallum_ledger::verify::open_checkpoint(&note, &trust.key, &trust.witnesses, trust.quorum);
    let cp = match opened {
        Ok(t) => t.checkpoint,
        Err(e) => {
            eprintln!("checkpoint FAILED verification: {e}");
            return Ok(exit::INVALID);
        }
    };
    if index >= cp.size {
        bail!(
            "entry {index} is not in the checkpoint's tree of {} entries",
            cp.size
        );
    }
    let client = LogClient::new(fetcher.as_ref(), cp.size);
    let entry = client
        .bundle(index / 256)?
        .get((index % 256) as usize)
        .cloned()
        .context("entry missing from its bundle")?;
    let leaf = leaf_hash(&entry);
    let proof = inclusion_proof(&client, index, cp.size)?;
    if let Err(e) = verify_inclusion(&leaf, index, cp.size, &proof, &cp.root) {
        eprintln!("entry {index}: the stored tiles do not prove it: {e}");
        return Ok(exit::INVALID);
    }
    let b64 = |h: &[u8]| vallum_ledger_b64(h);
    let mut out = serde_json::json!({
        "origin": cp.origin,
        "tree_size": cp.size,
        "root": b64(&cp.root),
        "index": index,
        "entry": String::from_utf8_lossy(&entry),
        "leaf_hash": b64(&leaf),
        "inclusion_proof": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
    });
    if let Some(old) = old_size {
        if old == 0 || old > cp.size {
            bail!("--old-size must be between 1 and {}", cp.size);
        }
        let proof = consistency_proof(&client, old, cp.size)?;
        out["old_size"] = old.into();
        out["old_root"] = b64(&vallum_ledger::merkle::root(&client, old)?).into();
        out["consistency_proof"] = proof.iter().map(|h| b64(h)).collect::<Vec<_>>().into();
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(exit::OK)
}

fn vallum_ledger_b64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// `vallum witness`.
#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// The witness's name (its key name), e.g. witness.example.org/w1.
    #[arg(long)]
    name: String,
    /// The witness's signing key file, created (0600) if absent.
    #[arg(long)]
    key_file: PathBuf,
    /// Directory for the latest cosigned checkpoint of each log.
    #[arg(long)]
    state_dir: PathBuf,
    /// Verifier key of a log to witness (repeatable; `@FILE` reads it from a file).
    #[arg(long = "log-key", required = true)]
    log_keys: Vec<String>,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:7380")]
    listen: String,
}

fn load_witness_key(path: &Path, name: &str) -> anyhow::Result<Signer> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = zeroize::Zeroizing::new(text);
            let s = Signer::from_skey(text.trim()).context("the witness key file is damaged")?;
            if s.name() != name {
                bail!(
                    "the key in {} is named {:?}, not {name:?}",
                    path.display(),
                    s.name()
                );
            }
            Ok(s)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            let s = Signer::generate(name)?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(s.to_skey().as_bytes())?;
            f.sync_all()?;
            Ok(s)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Runs the witness until interrupted.
pub fn witness(args: &WitnessArgs) -> anyhow::Result<i32> {
    use http_body_util::{BodyExt, Full, Limited};
    use hyper::{Response, StatusCode};

    let signer = load_witness_key(&args.key_file, &args.name)?;
    let logs = args
        .log_keys
        .iter()
        .map(|k| {
            read_arg(k).and_then(|t| Verifier::parse(&t).context("--log-key is not a verifier key"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let witness = std::sync::Arc::new(
        Witness::new(Cosigner::new(signer), logs, &args.state_dir)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        println!("Witness:      {}", args.name);
        println!("Listening on: http://{}", listener.local_addr()?);
        println!("Verifier key: {}", witness.vkey());
        loop {
            let (socket, _) = tokio::select! {
                a = listener.accept() => a?,
                _ = tokio::signal::ctrl_c() => return Ok(exit::OK),
            };
            let witness = std::sync::Arc::clone(&witness);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let witness = std::sync::Arc::clone(&witness);
                        async move {
                            let reply = |status: StatusCode, ctype: &'static str, body: String| {
                                let mut r = Response::new(Full::new(bytes::Bytes::from(body)));
                                *r.status_mut() = status;
                                r.headers_mut().insert(
                                    hyper::header::CONTENT_TYPE,
                                    hyper::header::HeaderValue::from_static(ctype),
                                );
                                Ok::<_, std::convert::Infallible>(r)
                            };
                            if req.method() != hyper::Method::POST
                                || !req.uri().path().ends_with("/add-checkpoint")
                            {
                                return reply(
                                    StatusCode::NOT_FOUND,
                                    "text/plain",
                                    "not found\n".into(),
                                );
                            }
                            let Ok(body) = Limited::new(req.into_body(), MAX_REQUEST_BYTES)
                                .collect()
                                .await
                            else {
                                return reply(
                                    StatusCode::BAD_REQUEST,
                                    "text/plain",
                                    "request too large or cut\n".into(),
                                );
                            };
                            let body = body.to_bytes();
                            let now = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(1, |d| d.as_secs());
                            let w = std::sync::Arc::clone(&witness);
                            let outcome =
                                tokio::task::spawn_blocking(move || w.add_checkpoint(&body, now))
                                    .await;
                            match outcome {
                                Ok(Ok(lines)) => {
                                    reply(StatusCode::OK, "text/plain; charset=utf-8", lines)
                                }
                                Ok(Err(vallum_ledger::witness::WitnessError::Conflict(size))) => {
                                    reply(
                                        StatusCode::CONFLICT,
                                        "text/x.tlog.size",
                                        format!("{size}\n"),
                                    )
                                }
                                Ok(Err(e)) => {
                                    if e.status() == 422 {
                                        eprintln!(
                                            "witness: refused an inconsistent checkpoint: {e}"
                                        );
                                    }
                                    reply(
                                        StatusCode::from_u16(e.status())
                                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                                        "text/plain; charset=utf-8",
                                        format!("{e}\n"),
                                    )
                                }
                                Err(_) => reply(
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    "text/plain",
                                    "internal error\n".into(),
                                ),
                            }
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                    .await;
            });
        }
    })
}
