//! Developer tasks. `cargo xtask bench` drives any S3 endpoint with N concurrent clients and
//! reports, as JSON: PUT and GET ops/s for 4 KiB objects, MB/s for 64 MiB objects, and LIST
//! latency. Without `--endpoint` it builds and starts a release `vallum serve` on a temporary
//! data directory and measures that.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_s3::primitives::ByteStream;
use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Vallum developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Load-test an S3 endpoint and print JSON results.
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// S3 endpoint(s), comma-separated; clients are spread over them round-robin (several
    /// gateways of one deployment). When absent, a local release `vallum serve` is started.
    #[arg(long, value_delimiter = ',')]
    endpoint: Vec<String>,
    /// Access key (with --endpoint).
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: Option<String>,
    /// Secret key (with --endpoint).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Region to sign for.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Number of 4 KiB objects to PUT and then GET.
    #[arg(long, default_value_t = 5000)]
    small_objects: usize,
    /// Number of 64 MiB objects to PUT and then GET.
    #[arg(long, default_value_t = 8)]
    large_objects: usize,
    /// LIST requests (pages of 1000) to time.
    #[arg(long, default_value_t = 50)]
    lists: usize,
    /// Bucket to use (created if missing).
    #[arg(long, default_value = "vallum-bench")]
    bucket: String,
    /// Only GET: read the objects an earlier run with the same bucket and counts wrote
    /// (PUT figures are then 0). For A/B comparisons that alternate many short GET runs.
    #[arg(long)]
    get_only: bool,
    /// Fill the 64 MiB objects with a repeating pattern (compressible) instead of pseudo-random
    /// bytes. A peer that compresses blocks (Garage's default zstd level 1) then writes almost
    /// nothing; regulated data (scans, archives, encrypted files) rarely compresses.
    #[arg(long)]
    compressible: bool,
}

struct Spawned {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_local() -> Result<(Spawned, String, String, String)> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "vallum", "--quiet"])
        .status()
        .context("cargo build")?;
    if !status.success() {
        bail!("building vallum failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let binary = target.join("release/vallum");
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(&binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("VALLUM_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let (mut endpoint, mut ak, mut sk) = (None, None, None);
    while endpoint.is_none() || ak.is_none() || sk.is_none() {
        let line = lines.next().context("vallum exited early")??;
        let value = line.split_once(':').map(|(_, v)| v.trim().to_owned());
        if line.starts_with("Vallum S3 endpoint:") {
            endpoint = value;
        } else if line.starts_with("Access key:") {
            ak = value;
        } else if line.starts_with("Secret key:") {
            sk = value;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok((
        Spawned { child, _dir: dir },
        endpoint.unwrap_or_default(),
        ak.unwrap_or_default(),
        sk.unwrap_or_default(),
    ))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

/// How often a running phase reports its progress on stderr.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// Runs `count` operations over `concurrency` workers; returns elapsed time and latencies.
/// Progress goes to stderr (`label: done/count, rate`) every [`PROGRESS_INTERVAL`] and at the
/// end, so a long run is never silent; the report stays alone on stdout.
async fn run_phase<F, Fut>(
    label: &str,
    count: usize,
    concurrency: usize,
    op: F,
) -> Result<(Duration, Vec<Duration>)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let quiet = count == 0;
    if !quiet {
        eprintln!("{label}: {count} requests, {concurrency} at a time");
    }
    let reporter = {
        let (done, label) = (Arc::clone(&done), label.to_owned());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                let n = done.load(std::sync::atomic::Ordering::Relaxed);
                let rate = n as f64 / started.elapsed().as_secs_f64();
                let left = if rate > 0.0 {
                    format!(
                        ", about {:.0} s left",
                        count.saturating_sub(n) as f64 / rate
                    )
                } else {
                    String::new()
                };
                eprintln!("{label}: {n}/{count} ({rate:.0}/s{left})");
            }
        })
    };
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let op = Arc::clone(&op);
            let next = Arc::clone(&next);
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return Ok::<_, anyhow::Error>(latencies);
                    }
                    let t = Instant::now();
                    op(i).await?;
                    latencies.push(t.elapsed());
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(count);
    let joined = async {
        for w in workers {
            all.extend(w.await??);
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    reporter.abort();
    joined?;
    all.sort();
    let elapsed = started.elapsed();
    if !quiet {
        eprintln!(
            "{label}: {count} done in {:.1} s ({:.0}/s)",
            elapsed.as_secs_f64(),
            count as f64 / elapsed.as_secs_f64()
        );
    }
    Ok((elapsed, all))
}

/// PUTs `count` copies of `body` as `<prefix>/<n>`; returns elapsed time and latencies.
async fn put_phase(
    pick: impl Fn(usize) -> aws_sdk_s3::Client + Clone + Send + Sync + 'static,
    bucket: &str,
    prefix: &'static str,
    count: usize,
    concurrency: usize,
    body: bytes::Bytes,
) -> Result<(Duration, Vec<Duration>)> {
    let bucket = bucket.to_owned();
    let label = format!("PUT {prefix} ({} KiB)", body.len() / 1024);
    run_phase(&label, count, concurrency, move |i| {
        let (client, bucket, body) = (pick(i), bucket.clone(), body.clone());
        async move {
            client
                .put_object()
                .bucket(bucket)
                .key(format!("{prefix}/{i:08}"))
                .body(ByteStream::from(body))
                .send()
                .await?;
            Ok(())
        }
    })
    .await
}

/// GETs (streaming) the `count` objects `put_phase` wrote, checking each is `len` bytes.
async fn get_phase(
    pick: impl Fn(usize) -> aws_sdk_s3::Client + Clone + Send + Sync + 'static,
    bucket: &str,
    prefix: &'static str,
    count: usize,
    concurrency: usize,
    len: usize,
) -> Result<(Duration, Vec<Duration>)> {
    let bucket = bucket.to_owned();
    let label = format!("GET {prefix} ({} KiB)", len / 1024);
    run_phase(&label, count, concurrency, move |i| {
        let (client, bucket) = (pick(i), bucket.clone());
        async move {
            let mut body = client
                .get_object()
                .bucket(bucket)
                .key(format!("{prefix}/{i:08}"))
                .send()
                .await?
                .body;
            let mut n = 0usize;
            while let Some(chunk) = body.try_next().await? {
                n += chunk.len();
            }
            anyhow::ensure!(n == len, "short read: {n} of {len} bytes");
            Ok(())
        }
    })
    .await
}

async fn bench(args: BenchArgs) -> Result<serde_json::Value> {
    let (_spawned, endpoints, ak, sk) = if args.endpoint.is_empty() {
        let (s, e, a, k) = spawn_local()?;
        (Some(s), vec![e], a, k)
    } else {
        let ak = args
            .access_key
            .clone()
            .context("--access-key is required with --endpoint")?;
        let sk = args
            .secret_key
            .clone()
            .context("--secret-key is required with --endpoint")?;
        (None, args.endpoint.clone(), ak, sk)
    };
    let creds = aws_credential_types::Credentials::new(ak, sk, None, None, "bench");
    let clients: Arc<Vec<aws_sdk_s3::Client>> = Arc::new(
        endpoints
            .iter()
            .map(|endpoint| {
                let config = aws_sdk_s3::Config::builder()
                    .behavior_version_latest()
                    .region(aws_sdk_s3::config::Region::new(args.region.clone()))
                    .credentials_provider(creds.clone())
                    .endpoint_url(endpoint)
                    .force_path_style(true)
                    .build();
                aws_sdk_s3::Client::from_conf(config)
            })
            .collect(),
    );
    let s3 = clients[0].clone();
    let pick = move |i: usize| clients[i % clients.len()].clone();
    let bucket = args.bucket.clone();
    if s3.head_bucket().bucket(&bucket).send().await.is_err() {
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .context("create bucket")?;
    }

    let small = bytes::Bytes::from(vec![0x5a_u8; 4096]);
    let writes = if args.get_only { 0 } else { args.small_objects };
    let (put_small, put_small_lat) = put_phase(
        pick.clone(),
        &bucket,
        "small",
        writes,
        args.concurrency,
        small,
    )
    .await?;
    let (get_small, get_small_lat) = get_phase(
        pick.clone(),
        &bucket,
        "small",
        args.small_objects,
        args.concurrency,
        4096,
    )
    .await?;

    let large_bytes = 64 * 1024 * 1024;
    let large = bytes::Bytes::from(if args.compressible {
        (0..large_bytes)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
    } else {
        incompressible(large_bytes)
    });
    let large_concurrency = args.concurrency.min(4);
    let large_writes = if args.get_only { 0 } else { args.large_objects };
    let (put_large, _) = put_phase(
        pick.clone(),
        &bucket,
        "large",
        large_writes,
        large_concurrency,
        large,
    )
    .await?;
    let (get_large, _) = get_phase(
        pick.clone(),
        &bucket,
        "large",
        args.large_objects,
        large_concurrency,
        large_bytes,
    )
    .await?;

    let (p, b) = (pick.clone(), bucket.clone());
    let small_count = args.small_objects;
    let (_, list_lat) = run_phase("LIST 1000 keys", args.lists, 1, move |i| {
        let (c, b) = (p(i), b.clone());
        async move {
            let start = if small_count > 1000 {
                format!("small/{:08}", (i * 997) % (small_count - 1000))
            } else {
                String::new()
            };
            let page = c
                .list_objects_v2()
                .bucket(b)
                .prefix("small/")
                .start_after(start)
                .max_keys(1000)
                .send()
                .await?;
            anyhow::ensure!(!page.contents().is_empty(), "empty page");
            Ok(())
        }
    })
    .await?;

    let mb = |bytes: usize, d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    Ok(json!({
        "endpoints": endpoints,
        "concurrency": args.concurrency,
        "put_4k": { "objects": writes, "ops_per_s": writes as f64 / put_small.as_secs_f64(), "p50_ms": percentile(&put_small_lat, 0.5), "p99_ms": percentile(&put_small_lat, 0.99) },
        "get_4k": { "objects": args.small_objects, "ops_per_s": args.small_objects as f64 / get_small.as_secs_f64(), "p50_ms": percentile(&get_small_lat, 0.5), "p99_ms": percentile(&get_small_lat, 0.99) },
        "put_64m": { "objects": large_writes, "concurrency": large_concurrency, "mb_per_s": mb(large_writes * large_bytes, put_large) },
        "get_64m": { "objects": args.large_objects, "concurrency": large_concurrency, "mb_per_s": mb(args.large_objects * large_bytes, get_large) },
        "list_1000": { "requests": args.lists, "p50_ms": percentile(&list_lat, 0.5), "p99_ms": percentile(&list_lat, 0.99) },
    }))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.task {
        Task::Bench(args) => {
            let report = runtime.block_on(bench(args))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}

/// `len` pseudo-random bytes (xorshift64*, fixed seed: every run sends the same objects).
fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}
