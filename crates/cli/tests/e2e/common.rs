//! Shared end-to-end harness: starts the real `vallum` binary on a free port with a fresh data
//! directory, reads its start-up banner, and builds clients for it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";

/// A running `vallum serve`.
pub struct Server {
    pub child: Child,
    pub endpoint: String,
    pub port: u16,
    pub access_key: String,
    pub secret_key: String,
    pub data_dir: PathBuf,
    /// The transparency log's verifier key, from the banner.
    pub log_vkey: String,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server on a fresh temporary data directory.
    pub fn start() -> Server {
        Self::start_with(&[], &[])
    }

    /// Starts a server with extra arguments and environment variables.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let mut server = Self::start_in(&data_dir, "127.0.0.1:0", args, env);
        server._dir = Some(dir);
        server
    }

    /// Starts a server on `data_dir` (kept after the server stops).
    pub fn start_in(data_dir: &Path, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_cmd(
            Command::new(env!("CARGO_BIN_EXE_vallum")),
            data_dir,
            listen,
            args,
            env,
        )
    }

    /// Starts a server whose descriptor limit (soft and hard) is `nofile`, its log (stderr)
    /// going to `stderr`.
    pub fn start_with_nofile(nofile: u64, stderr: &Path, args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(format!(
                "ulimit -n {nofile} && exec \"$0\" \"$@\" 2>>'{}'",
                stderr.display()
            ))
            .arg(env!("CARGO_BIN_EXE_vallum"));
        let mut server = Self::start_cmd(cmd, &data_dir, "127.0.0.1:0", args, &[]);
        server._dir = Some(dir);
        server
    }

    fn start_cmd(
        mut cmd: Command,
        data_dir: &Path,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(listen)
            .args(args);
        cmd.env("VALLUM_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vallum");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut endpoint, mut access_key, mut secret_key, mut log_vkey) = (None, None, None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while endpoint.is_none()
            || access_key.is_none()
            || secret_key.is_none()
            || log_vkey.is_none()
        {
            assert!(
                Instant::now() < deadline,
                "vallum did not print its banner in time"
            );
            let line = lines
                .next()
                .expect("vallum exited before printing its banner")
                .expect("read banner");
            let value = line.split_once(':').map(|(_, v)| v.trim().to_owned());
            if line.starts_with("Vallum S3 endpoint:") {
                endpoint = value;
            } else if line.starts_with("Access key:") {
                access_key = value;
            } else if line.starts_with("Secret key:") {
                secret_key = value;
            } else if line.starts_with("Log verifier key:") {
                log_vkey = value;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let endpoint = endpoint.unwrap();
        // After the first start the banner names the credentials file instead of the secret.
        let mut secret_key = secret_key.unwrap();
        if secret_key.starts_with('(') {
            secret_key = stored_secret(data_dir);
        }
        let port = endpoint.rsplit(':').next().unwrap().parse().unwrap();
        Server {
            child,
            endpoint,
            port,
            access_key: access_key.unwrap(),
            secret_key,
            data_dir: data_dir.to_owned(),
            log_vkey: log_vkey.unwrap(),
            _dir: None,
        }
    }

    /// The aws-sdk-s3 client for this server (path-style).
    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client_with(&self.access_key, &self.secret_key)
    }

    /// A client with arbitrary credentials.
    pub fn client_with(&self, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
        let creds =
            aws_credential_types::Credentials::new(access_key, secret_key, None, None, "e2e");
        let config = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_s3::config::Region::new(REGION))
            .credentials_provider(creds)
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// The real aws-cli, pointed at this server with its credentials.
    pub fn aws(&self) -> Command {
        let mut cmd = Command::new(tool("aws"));
        cmd.envs(self.tool_env())
            .arg("--endpoint-url")
            .arg(&self.endpoint);
        cmd
    }

    /// Environment for CLI tools (aws, boto3, s3cmd) talking to this server.
    pub fn tool_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret_key.clone()),
            ("AWS_DEFAULT_REGION".into(), REGION.into()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_CONFIG_FILE".into(), "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
            ("AWS_PAGER".into(), String::new()),
        ]
    }

    /// Kills the server with SIGKILL and waits for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident-set high-water mark of the server process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The root secret from a data directory's credentials file.
/// The blob ids a local site directory holds, packed or not, as a fresh open of the directory
/// finds them (empty if it is not a site yet).
pub fn local_blobs(root: &Path) -> std::collections::BTreeSet<String> {
    if !root.join("layout").exists() {
        return std::collections::BTreeSet::new();
    }
    vallum_blob::LocalBlobStore::open(root)
        .unwrap()
        .blob_ids()
        .unwrap()
        .into_iter()
        .map(|id| id.to_string())
        .collect()
}

/// The blob ids an S3 bucket holds as a site with no prefix (its own objects under `blobs/`
/// and the blobs in its pack objects), read the way a gateway reads them.
pub fn remote_blobs(site: &vallum_blob::S3Site) -> std::collections::BTreeSet<String> {
    let store = vallum_blob::RemoteBlobStore::s3(site, "").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(vallum_core::blob::BlobStore::list_older_than(
            &store,
            std::time::Duration::ZERO,
        ))
        .unwrap()
        .into_iter()
        .map(|id| id.to_string())
        .collect()
}

pub fn stored_secret(data_dir: &Path) -> String {
    let text =
        std::fs::read_to_string(data_dir.join("credentials.toml")).expect("credentials file");
    text.lines()
        .find_map(|l| l.strip_prefix("secret_key = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("secret_key in the credentials file")
}

/// Finds a tool on PATH or fails the test with the command that installs it.
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not on PATH; run ./scripts/test.sh, which installs every tool the end-to-end tests use"
    );
}

/// Runs a command, failing the test with its output if it fails; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail; returns stdout + stderr.
pub fn run_failing(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(!out.status.success(), "{cmd:?} unexpectedly succeeded");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Hex MD5.
pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The whole body of an object (the test fails if it cannot be read).
pub async fn get_bytes(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bytes::Bytes {
    client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {bucket}/{key}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
}

/// The CompleteMultipartUpload document naming `parts` as (part number, ETag).
pub fn completed(parts: &[(i32, &str)]) -> aws_sdk_s3::types::CompletedMultipartUpload {
    let parts = parts
        .iter()
        .map(|(n, e)| {
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(*n)
                .e_tag(*e)
                .build()
        })
        .collect();
    aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .set_parts(Some(parts))
        .build()
}

/// A fresh database on the test PostgreSQL server (`VALLUM_TEST_PG_URL`, started by
/// scripts/test.sh); returns its URL.
pub fn fresh_pg_database() -> String {
    let admin = std::env::var("VALLUM_TEST_PG_URL")
        .expect("VALLUM_TEST_PG_URL is not set: run ./scripts/test.sh, which starts PostgreSQL");
    let name = format!("vallum_gw_{}", std::process::id())
        + &format!(
            "_{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
    let out = std::process::Command::new(tool("psql"))
        .args([&admin, "-qc", &format!("CREATE DATABASE {name}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

/// The SoftHSM2 PKCS#11 module (installed, and its token directory prepared, by
/// scripts/test.sh).
pub fn softhsm_module() -> &'static str {
    std::env::var("SOFTHSM2_CONF")
        .expect("SOFTHSM2_CONF is not set; run ./scripts/test.sh, which prepares a SoftHSM2 token directory");
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("SoftHSM2 is not installed; run ./scripts/test.sh")
}

/// Initialises a SoftHSM2 token `label` with a user PIN and a security-officer PIN.
pub fn softhsm_token(label: &str, pin: &str, so_pin: &str) {
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label])
        .args(["--pin", pin, "--so-pin", so_pin])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
}

/// A private CA and a localhost certificate in `dir` (scripts/make-test-ca.sh): `ca.pem`,
/// `cert.pem`, `key.pem`.
pub fn test_ca(dir: &Path) {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-test-ca.sh"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Decoded entries of a proof bundle.
pub fn bundle_entries(path: &Path) -> Vec<serde_json::Value> {
    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    b["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let raw = base64_simd::STANDARD
                .decode_to_vec(e["entry"].as_str().unwrap())
                .unwrap();
            serde_json::from_slice(&raw).unwrap()
        })
        .collect()
}

/// A free loopback port (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Parses `text` as JSON, or fails the test showing it.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Admin commands whose answers the tests read as JSON (`VALLUM_JSON=1`); the others'
/// readable forms are read as text, and their JSON asked for with `--json`.
const JSON_COMMANDS: &[&str] = &[
    "key",
    "tenant",
    "user",
    "access-key",
    "operator",
    "charter",
    "lockbox",
    "authz",
];

/// `vallum SUB` as an admin client of `server` (its credentials and endpoint).
pub fn vallum_admin(server: &Server, sub: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vallum"));
    cmd.arg(sub)
        .envs(server.tool_env())
        .env("VALLUM_ENDPOINT", &server.endpoint);
    if JSON_COMMANDS.contains(&sub) {
        cmd.env("VALLUM_JSON", "1");
    }
    cmd
}

/// A helper process (Azurite, moto), killed when the test ends, however it ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something listens on `port`.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A moto server (AWS's S3 emulator, credentials `testing`/`testing`) with bucket `bucket`:
/// the process and its endpoint.
pub fn moto(bucket: &str) -> (KillOnDrop, String) {
    let port = free_port();
    let child = KillOnDrop(
        Command::new(tool("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, "moto");
    let endpoint = format!("http://127.0.0.1:{port}");
    run(Command::new(tool("aws"))
        .args([
            "--endpoint-url",
            &endpoint,
            "s3",
            "mb",
            &format!("s3://{bucket}"),
        ])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"));
    (child, endpoint)
}

/// `vallum SUB` as an admin client of `server` signed with `access_key`/`secret_key`.
pub fn vallum_as(server: &Server, access_key: &str, secret_key: &str, sub: &str) -> Command {
    let mut cmd = vallum_admin(server, sub);
    cmd.env("AWS_ACCESS_KEY_ID", access_key)
        .env("AWS_SECRET_ACCESS_KEY", secret_key);
    cmd
}

/// The real aws-cli against `server`, signed with `access_key`/`secret_key`.
pub fn aws_as(server: &Server, access_key: &str, secret_key: &str) -> Command {
    let mut cmd = server.aws();
    cmd.env("AWS_ACCESS_KEY_ID", access_key)
        .env("AWS_SECRET_ACCESS_KEY", secret_key);
    cmd
}

/// A tmpfs of a given size mounted on a fresh directory (unmounted on drop): a real
/// filesystem that fills up. Mounting needs root, which the suite runs as.
pub struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    pub fn mount(size: &str) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {size} tmpfs on {} failed: the disk-full tests need root (run the suite as root, as scripts/test.sh and CI do)",
            dir.path().display()
        );
        SmallFs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem with one file, written until ENOSPC; returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        let mut size = block.len();
        // Large blocks first, then smaller ones, down to single bytes.
        while size > 0 {
            match file.write(&block[..size]) {
                Ok(0) => size /= 2,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => size /= 2,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// `GET /health` as JSON.
pub fn health(server: &Server) -> serde_json::Value {
    let body = ureq::get(format!("{}/health", server.endpoint))
        .call()
        .expect("GET /health")
        .body_mut()
        .read_to_string()
        .unwrap();
    serde_json::from_str(&body).unwrap()
}
