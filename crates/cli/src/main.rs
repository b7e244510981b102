//! The `vallum` binary.

mod admin_client;
mod iamcli;
mod jobscli;
mod keycli;
mod keyd;
mod logtools;
mod output;
mod residencycli;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vallum_server::config::LogFormat;
use vallum_server::{Config, start};

/// The version `--version` prints: the release, the commit and the commit's date.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("VALLUM_COMMIT"),
    ", ",
    env!("VALLUM_BUILD_DATE"),
    ")"
);

/// Vallum: a sovereign, S3-compatible object store.
#[derive(Debug, Parser)]
#[command(name = "vallum", version = VERSION, about = "Vallum: a sovereign, S3-compatible object store", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration before starting on it: parse and validate it (with the
    /// environment applied, as `vallum serve` does), then ask every storage site, the key
    /// service, the metadata store and the TLS files it names whether they work. Nothing is
    /// created or changed. Exit codes: 0 everything works, 1 something does not.
    Check {
        /// The configuration file (vallum.toml).
        file: PathBuf,
        /// Print the checks as JSON (`[{"what", "ok", "detail"}]`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the S3 endpoint. With no configuration: data in ./vallum-data, listening on
    /// 127.0.0.1:9000, root credentials generated on first start and printed.
    Serve {
        /// Path to vallum.toml (every field is optional; see docs/configuration.md).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen address, e.g. 127.0.0.1:9000 (overrides config and VALLUM_LISTEN).
        #[arg(long)]
        listen: Option<String>,
        /// Data directory (overrides config and VALLUM_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Copy an embedded deployment's metadata (SQLite) into PostgreSQL. The server must be
    /// stopped; the copy is verified, and running it again skips what was already copied. Then
    /// start the server with `[meta] url` (or VALLUM_META_URL) set to the same URL.
    MigrateMeta {
        /// The deployment's vallum.toml: its data directory and its storage site (where
        /// trashed blobs are deleted).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The data directory of the embedded deployment (overrides the configuration;
        /// default vallum-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Target database, e.g. postgres://vallum:secret@db:5432/vallum.
        #[arg(long, env = "VALLUM_META_URL", hide_env_values = true)]
        to: String,
    },
    /// Verify the transparency log (over HTTP or from a directory) or a proof bundle, offline:
    /// signatures, witness cosignatures, consistency with a trusted checkpoint, every entry;
    /// with --boundary, audit a bucket's boundary. Exit codes: 0 verified (and within the
    /// boundary), 1 could not run, 3 boundary violations, 4 verification failed, 5 boundary
    /// undetermined (no policy known).
    Verify(logtools::VerifyArgs),
    /// Transparency-log tools: export a proof bundle, print the log's key.
    Log {
        #[command(subcommand)]
        command: logtools::LogCommand,
    },
    /// Run a witness (C2SP tlog-witness): it cosigns a log's checkpoints only after checking
    /// they are consistent with the last one it cosigned, and refuses forks.
    Witness(logtools::WitnessArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a shell completion script for `vallum`, e.g.
    /// `vallum completions bash > /etc/bash_completion.d/vallum`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (`vallum.1` and one per command, `vallum-serve.1`, ...) into a
    /// directory, e.g. `vallum man /usr/local/share/man/man1`.
    Man {
        /// The directory to write them into (created if missing).
        dir: PathBuf,
    },
    /// Run an external key store (an AWS XKS proxy) over a keyring or PKCS#11 token, and
    /// manage its keys: the customer's side of `[keys] provider = "xks"`.
    Keyd(keyd::KeydArgs),
    /// Manage encryption keys through the admin API (signed with the root credentials):
    /// list, create, describe, rotate (with a re-wrap job), disable/enable, schedule or
    /// cancel deletion, destroy (crypto-shred, with a report of what became unrecoverable).
    Key(keycli::KeyArgs),
    /// The site registry through the admin API: each site's legal profile, the exposures
    /// derived from it (with their legal basis) and its certifications.
    Site(residencycli::SiteArgs),
    /// The gateway's background jobs (garbage collection, lifecycle, key deletion, replica
    /// repair, boundary check, refreshes, log integration): lease, interval, steps, failures,
    /// last success, last error and progress; key re-wrap jobs under way.
    Jobs(jobscli::JobsArgs),
    /// Bucket boundary policies through the admin API: show, set (a new version; refused
    /// with each site's reason if no compliant placement exists), clear, history.
    Policy(residencycli::PolicyArgs),
    /// Placement decisions: `explain BUCKET KEY` shows where an object goes and why each site
    /// is in or out; `check [BUCKET]` whether stored data is still inside its policy. Exit
    /// codes: 0 placed / inside, 3 no compliant placement / outside, 1 could not run.
    Placement(residencycli::PlacementArgs),
    /// Tenants through the admin API (root): create (with a first administrator whose key is
    /// printed once), list, show, update, disable/enable, delete.
    Tenant(iamcli::TenantArgs),
    /// A tenant's users: create (roles admin, guardian), list, show, disable/enable, delete,
    /// identity policies (S3/IAM JSON).
    User(iamcli::UserArgs),
    /// Access keys of users and operators: create (secret printed once), list, show, rotate,
    /// disable/enable, delete.
    AccessKey(iamcli::AccessKeyArgs),
    /// Operators, the platform's staff (root): register with attested attributes, attest,
    /// disable/enable, delete. Operators run the service and read no customer data.
    Operator(iamcli::OperatorArgs),
    /// A tenant's sovereignty charter: show, propose a version, sign it off (guardians).
    Charter(iamcli::CharterArgs),
    /// The operator lockbox: request, break-glass, list, show, approve, deny, revoke,
    /// credential (claim a grant's scoped, expiring key), review.
    Lockbox(iamcli::LockboxArgs),
    /// The decision point: `explain` why a principal may or may not take an action. Exit
    /// codes: 0 allowed, 3 denied, 1 could not run.
    Authz(iamcli::AuthzArgs),
}

fn init_logging(config: &Config) {
    // s3s logs every client error (bad signature, missing key) at ERROR; Vallum reports
    // requests itself, so s3s's operation log is off unless the filter names it.
    // s3s also logs a malformed request document at ERROR with the whole body; Vallum answers
    // MalformedXML itself.
    let directive = if config.log.level.contains("s3s") {
        config.log.level.clone()
    } else {
        format!("{},s3s::ops=off,s3s::http::de=off", config.log.level)
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directive)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: not in a file, a pipe or a service's journal,
    // and never with NO_COLOR set (no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(|| BoundedLines(std::io::stderr()));
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Standard error, each log line cut to `MAX_LOG_LINE_BYTES` (saying how much was cut): no
/// request body, however large, becomes a multi-megabyte log line.
struct BoundedLines(std::io::Stderr);

impl std::io::Write for BoundedLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use vallum_types::limits::MAX_LOG_LINE_BYTES;
        if buf.len() <= MAX_LOG_LINE_BYTES {
            return self.0.write_all(buf).map(|()| buf.len());
        }
        // Cut on a character boundary (the formatter writes UTF-8).
        let mut end = MAX_LOG_LINE_BYTES;
        while end > 0 && (buf[end] & 0xC0) == 0x80 {
            end -= 1;
        }
        let mut line = buf[..end].to_vec();
        line.extend_from_slice(format!("… [{} bytes cut]\n", buf.len() - end).as_bytes());
        self.0.write_all(&line).map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `vallum config check`: prints one line per check (or JSON); 0 when all work, else 1.
fn check_config(file: &std::path::Path, json: bool) -> anyhow::Result<i32> {
    // The error names the file and the cause.
    let cfg = Config::load(Some(file), |k| std::env::var(k).ok())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let checks = runtime.block_on(vallum_server::check::check_config(&cfg));
    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        let width = checks.iter().map(|c| c.what.len()).max().unwrap_or(0);
        for c in &checks {
            let status = if c.ok { "ok  " } else { "FAIL" };
            println!("{status}  {:<width$}  {}", c.what, c.detail);
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed > 0 {
        eprintln!(
            "{failed} of {} checks failed for {}",
            checks.len(),
            file.display()
        );
        return Ok(logtools::exit::ERROR);
    }
    Ok(0)
}

/// Writes `vallum.1` and a page per command and subcommand (`vallum-key-rotate.1`, ...)
/// into `dir`, generated from the same definitions as `--help`.
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = 0;
    let mut pending = vec![(
        "vallum".to_owned(),
        <Cli as clap::CommandFactory>::command().bin_name("vallum"),
    )];
    while let Some((name, cmd)) = pending.pop() {
        for sub in cmd.get_subcommands() {
            if sub.get_name() != "help" {
                // `vallum-key-rotate.1`, whose synopsis reads `vallum key rotate ...`.
                let page = format!("{name}-{}", sub.get_name());
                let bin = format!(
                    "{} {}",
                    cmd.get_bin_name().unwrap_or("vallum"),
                    sub.get_name()
                );
                pending.push((page.clone(), sub.clone().display_name(page).bin_name(bin)));
            }
        }
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .source(format!("vallum {VERSION}"))
            .date(env!("VALLUM_BUILD_DATE"))
            .manual("Vallum manual")
            .render(&mut page)
            .with_context(|| format!("rendering the manual page of {name}"))?;
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        written += 1;
    }
    println!("{written} manual pages written to {}", dir.display());
    Ok(())
}

/// Ends the process with a tool's exit code (errors print and exit 1).
fn exit_with(result: anyhow::Result<i32>) -> anyhow::Result<()> {
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::exit(logtools::exit::ERROR)
        }
    }
}

/// An error and its causes on one line, each cause said once: a cause whose text an outer
/// message already carries (many errors include their source's text) is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Errors are one line on stderr with their causes (`error: …: …`) and exit code 1 — not a
/// backtrace, even where `RUST_BACKTRACE` is set.
fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {}", one_line(&e));
        std::process::exit(logtools::exit::ERROR);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Verify(args) => exit_with(logtools::verify(&args)),
        Command::Log { command } => exit_with(logtools::log(&command)),
        Command::Witness(args) => exit_with(logtools::witness(&args)),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "vallum",
                &mut script,
            );
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                // A reader that stops early (`| head`) is not an error.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(e).context("writing the completion script")
                }
                _ => Ok(()),
            }
        }
        Command::Man { dir } => write_man_pages(&dir),
        Command::Config {
            command: ConfigCommand::Check { file, json },
        } => exit_with(check_config(&file, json)),
        Command::Keyd(args) => keyd::run(args),
        Command::Key(args) => keycli::run(args),
        Command::Site(args) => residencycli::run_site(args),
        Command::Jobs(args) => jobscli::run(args),
        Command::Tenant(args) => iamcli::run_tenant(args),
        Command::User(args) => iamcli::run_user(args),
        Command::AccessKey(args) => iamcli::run_access_key(args),
        Command::Operator(args) => iamcli::run_operator(args),
        Command::Charter(args) => iamcli::run_charter(args),
        Command::Lockbox(args) => iamcli::run_lockbox(args),
        Command::Authz(args) => exit_with(iamcli::run_authz(args).map(|allowed| {
            if allowed {
                0
            } else {
                residencycli::EXIT_REFUSED
            }
        })),
        Command::Policy(args) => residencycli::run_policy(args),
        Command::Placement(args) => exit_with(residencycli::run_placement(args).map(|placed| {
            if placed {
                0
            } else {
                residencycli::EXIT_REFUSED
            }
        })),
        Command::MigrateMeta {
            config,
            data_dir,
            to,
        } => {
            let mut cfg = Config::load(config.as_deref(), |k| std::env::var(k).ok())
                .context("loading configuration")?;
            if let Some(dir) = data_dir {
                cfg.data_dir = dir;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let report = runtime
                .block_on(vallum_server::migrate::migrate_meta(&cfg, &to, |line| {
                    eprintln!("migrate-meta: {line}")
                }))
                .context("migrating metadata")?;
            println!(
                "migrated: {} buckets, {} versions ({} already present), {} uploads, {} parts, {} log entries; {} trashed blobs deleted",
                report.buckets,
                report.objects,
                report.objects_skipped,
                report.uploads,
                report.parts,
                report.log_entries,
                report.trash_deleted
            );
            Ok(())
        }
        Command::Serve {
            config,
            listen,
            data_dir,
        } => {
            let mut cfg = Config::load(config.as_deref(), |k| std::env::var(k).ok())
                .context("loading configuration")?;
            if let Some(listen) = listen {
                cfg.listen = listen
                    .parse()
                    .with_context(|| format!("--listen {listen:?} is not an address"))?;
            }
            if let Some(dir) = data_dir {
                cfg.data_dir = dir;
            }
            init_logging(&cfg);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async move {
                let data_dir = cfg.data_dir.clone();
                let server = start(cfg).await.context("starting the server")?;
                // Machine-readable start-up banner on stdout; logs go to stderr.
                println!("Vallum S3 endpoint: {}://{}", server.scheme, server.addr);
                println!("Region:             {}", server.region);
                println!("Access key:         {}", server.credentials.access_key);
                // The secret is shown once, when it is created; after that only where it is,
                // so it never lands in a service manager's log on every start.
                let creds_path = vallum_server::credentials::Credentials::path(&data_dir);
                if server.credentials_created {
                    println!("Secret key:         {}", server.credentials.secret_key);
                    println!(
                        "Credentials file:   {} (generated now; the secret is not printed again)",
                        creds_path.display()
                    );
                } else {
                    println!("Secret key:         (in the credentials file)");
                    println!("Credentials file:   {}", creds_path.display());
                }
                println!("Data directory:     {}", data_dir.display());
                println!(
                    "Log:                {}://{}/log/ (origin {})",
                    server.scheme, server.addr, server.log_origin
                );
                println!("Log verifier key:   {}", server.log_vkey);
                tracing::info!(addr = %server.addr, "vallum is serving");
                server.run_until_signal().await;
                anyhow::Ok(())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        // A message that already carries its source's text, under a context.
        #[derive(Debug)]
        struct DataDir {
            source: std::io::Error,
        }
        impl std::fmt::Display for DataDir {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "data directory /x: {}", self.source)
            }
        }
        impl std::error::Error for DataDir {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.source)
            }
        }
        let e = anyhow::Error::new(DataDir { source: io }).context("starting the server");
        assert_eq!(
            one_line(&e),
            "starting the server: data directory /x: No such file or directory"
        );
        let plain = anyhow::anyhow!("refused").context("calling x");
        assert_eq!(one_line(&plain), "calling x: refused");
    }
}
