//! The README's client example, run as written against a fresh server (only the port differs).

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{Server, run, tool};

fn readme_block(marker: &str) -> String {
    readme_fenced(marker, "sh")
}

/// The first block fenced as `lang` after `marker`.
fn readme_fenced(marker: &str, lang: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let after = readme
        .split_once(marker)
        .expect("README has the readme-test block")
        .1;
    let body = after
        .split_once(&format!("```{lang}\n"))
        .expect("a block of that language follows the marker")
        .1;
    body.split_once("```").expect("the block ends").0.to_owned()
}

/// A temporary directory holding a copy of the README (the blocks copy it around).
fn readme_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
        tmp.path().join("README.md"),
    )
    .unwrap();
    tmp
}

/// Runs the `sh` block after `marker` with bash -euo pipefail in `dir`, against `server` (the
/// README's port replaced by its own), with `vallum` and `aws` on the PATH; `env` sets the
/// rest of the environment the block expects.
fn run_block(dir: &Path, server: &Server, marker: &str, env: impl FnOnce(&mut Command)) -> String {
    let script =
        readme_block(marker).replace("127.0.0.1:9000", &format!("127.0.0.1:{}", server.port));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_vallum")).parent().unwrap();
    let aws_dir = tool("aws").parent().unwrap().to_owned();
    let path = format!(
        "{}:{}:{}",
        bin_dir.display(),
        aws_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(tool("bash"));
    cmd.args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir)
        .env("PATH", path);
    env(&mut cmd);
    run(&mut cmd)
}

/// Starts a server on `dir/vallum-data` with the README's `toml` block after `marker` as its
/// configuration.
fn start_with_readme_config(dir: &Path, marker: &str) -> Server {
    let config = dir.join("vallum.toml");
    std::fs::write(&config, readme_fenced(marker, "toml")).unwrap();
    Server::start_in(
        &dir.join("vallum-data"),
        "127.0.0.1:0",
        &["--config", config.to_str().unwrap()],
        &[],
    )
}

/// Runs the `sh` block after `marker` as an admin client of `server` (`vallum` and `aws` with
/// its credentials and endpoint).
fn run_admin_block(dir: &Path, server: &Server, marker: &str) -> String {
    run_block(dir, server, marker, |cmd| {
        cmd.envs(server.tool_env())
            .env("VALLUM_ENDPOINT", &server.endpoint);
    })
}

/// Runs the `sh` block after `marker` with bash -euo pipefail in `dir`, with `vallum` on the
/// PATH and no server.
fn run_local_block(dir: &Path, marker: &str) -> String {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_vallum")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run(Command::new(tool("bash"))
        .args(["-euo", "pipefail", "-c", &readme_block(marker)])
        .current_dir(dir)
        .env("PATH", path))
}

#[test]
fn every_readme_block_is_run_by_a_test_or_marked_as_an_excerpt() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    let tests =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/readme.rs"))
            .unwrap();
    let mut fence_open = false;
    let mut unmarked = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with("```") {
            continue;
        }
        fence_open = !fence_open;
        if !fence_open || line.len() == 3 {
            continue;
        }
        let before = if i > 0 { lines[i - 1] } else { "" };
        if let Some(marker) = before.strip_prefix("<!-- readme-test") {
            // A marker some test of this file names.
            let marker = format!("<!-- readme-test{marker}");
            assert!(
                tests.contains(&marker),
                "no test runs the block at line {}",
                i + 1
            );
        } else if !before.starts_with("<!-- excerpt") {
            unmarked.push(format!("line {}: {line}", i + 1));
        }
    }
    assert!(
        unmarked.is_empty(),
        "README blocks neither run nor marked: {unmarked:#?}"
    );
}

/// The processes a README block leaves running in the background: the block runs in a process
/// group of its own, stopped as a whole when this is dropped.
struct Background(u32);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0)])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// [`readme_dir`] with the repository's `scripts/` beside the README, as in a checkout.
fn readme_checkout() -> tempfile::TempDir {
    let tmp = readme_dir();
    std::fs::create_dir(tmp.path().join("scripts")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-test-ca.sh"),
        tmp.path().join("scripts/make-test-ca.sh"),
    )
    .unwrap();
    tmp
}

/// Runs the `sh` block after `marker` (with `:from` ports replaced by free ones) in `dir`, with
/// `vallum` and `aws` on the PATH, leaving what it starts in the background running.
fn run_background_block(dir: &Path, marker: &str, ports: &[(u16, u16)]) -> (String, Background) {
    use std::os::unix::process::CommandExt;
    let mut script = readme_block(marker);
    for (from, to) in ports {
        script = script.replace(&format!(":{from}"), &format!(":{to}"));
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_vallum")).parent().unwrap();
    let aws_dir = tool("aws").parent().unwrap().to_owned();
    let path = format!(
        "{}:{}:{}",
        bin_dir.display(),
        aws_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = Command::new(tool("bash"))
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir)
        .env("PATH", path)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = Background(child.id());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the block failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (stdout, group)
}

/// An aws-cli command against the server whose data directory is `data`.
fn aws_for(data: &Path, endpoint: &str) -> Command {
    let credentials = std::fs::read_to_string(data.join("credentials.toml")).unwrap();
    let field = |name: &str| {
        credentials
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = ")))
            .unwrap()
            .trim_matches('"')
            .to_owned()
    };
    let mut cmd = Command::new(tool("aws"));
    cmd.args(["--endpoint-url", endpoint])
        .env("AWS_ACCESS_KEY_ID", field("access_key"))
        .env("AWS_SECRET_ACCESS_KEY", field("secret_key"))
        .env("AWS_DEFAULT_REGION", common::REGION)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    cmd
}

#[test]
fn readme_xks_example_keeps_objects_under_keys_held_by_keyd() {
    let tmp = readme_checkout();
    let (keyd, gateway) = (common::free_port(), common::free_port());
    let (_, _background) = run_background_block(
        tmp.path(),
        "<!-- readme-test xks -->",
        &[(8443, keyd), (9001, gateway)],
    );
    let endpoint = format!("http://127.0.0.1:{gateway}");
    let data = tmp.path().join("vallum-xks-data");
    run(aws_for(&data, &endpoint).args(["s3", "mb", "s3://held"]));
    run(aws_for(&data, &endpoint)
        .args(["s3", "cp", "README.md", "s3://held/readme"])
        .current_dir(tmp.path()));
    run(aws_for(&data, &endpoint)
        .args(["s3", "cp", "s3://held/readme", "back.md"])
        .current_dir(tmp.path()));
    assert_eq!(
        std::fs::read(tmp.path().join("back.md")).unwrap(),
        std::fs::read(tmp.path().join("README.md")).unwrap()
    );
    // The customer disables the key: new writes under it are refused, as the README says.
    run(Command::new(env!("CARGO_BIN_EXE_vallum"))
        .args([
            "keyd",
            "key",
            "--config",
            "keyd.toml",
            "disable",
            "customer-kek",
        ])
        .current_dir(tmp.path())
        .env("KEYD_SECRET", "unused-by-key-commands"));
    let refused = aws_for(&data, &endpoint)
        .args(["s3", "cp", "README.md", "s3://held/again"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("KMS.DisabledException"), "{err}");
}

#[test]
fn readme_sse_c_example_reads_back_only_with_the_key() {
    let tmp = readme_checkout();
    let port = common::free_port();
    let (out, _background) =
        run_background_block(tmp.path(), "<!-- readme-test sse-c -->", &[(9443, port)]);
    assert!(out.contains("read back with the key"), "{out}");
    // Without the key the object does not open.
    let endpoint = format!("https://127.0.0.1:{port}");
    let denied = aws_for(&tmp.path().join("tls-data"), &endpoint)
        .args(["--ca-bundle", "tls/ca.pem", "s3api", "get-object"])
        .args(["--bucket", "sse-c-demo", "--key", "secret.txt", "nokey.txt"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!denied.status.success());
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(
        err.contains("InvalidRequest") || err.contains("400"),
        "{err}"
    );
}

#[test]
fn readme_backup_example_restores_every_object() {
    let tmp = readme_dir();
    let mut server = Server::start_in(&tmp.path().join("vallum-data"), "127.0.0.1:0", &[], &[]);
    run(server.aws().args(["s3", "mb", "s3://keep"]));
    // A small object (packed), a large one (a file of its own), one in several parts.
    let sizes = [10usize, 200 << 10, 9 << 20];
    for (i, size) in sizes.iter().enumerate() {
        let file = tmp.path().join(format!("obj-{i}"));
        std::fs::write(&file, common::data(*size, i as u64 + 7)).unwrap();
        run(server
            .aws()
            .args(["s3", "cp"])
            .arg(&file)
            .arg(format!("s3://keep/obj-{i}")));
    }
    let access_key = server.access_key.clone();
    // Stopped as a service manager stops it.
    run(Command::new("kill").args(["-TERM", &server.child.id().to_string()]));
    assert!(server.child.wait().unwrap().success());
    let out = run_local_block(tmp.path(), "<!-- readme-test backup -->");
    assert!(out.contains("restored/keys/root.key"), "{out}");
    let restored = Server::start_in(&tmp.path().join("restored"), "127.0.0.1:0", &[], &[]);
    assert_eq!(restored.access_key, access_key);
    for (i, size) in sizes.iter().enumerate() {
        let back = tmp.path().join(format!("back-{i}"));
        run(restored
            .aws()
            .args(["s3", "cp", &format!("s3://keep/obj-{i}")])
            .arg(&back));
        assert_eq!(
            std::fs::read(&back).unwrap(),
            common::data(*size, i as u64 + 7),
            "object {i}"
        );
    }
    drop(restored);
    // Without the keyring's root key, the copy refuses to start and names the file.
    std::fs::remove_file(tmp.path().join("restored/keys/root.key")).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_vallum"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("restored"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("root.key"), "{err}");
}

#[test]
fn readme_install_example_gives_version_completions_and_man_pages() {
    let tmp = readme_dir();
    let out = run_local_block(tmp.path(), "<!-- readme-test install -->");
    // The version names the release and, in a git checkout, the commit it was built from.
    let version = out.lines().next().unwrap();
    assert!(
        version.starts_with(&format!("vallum {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Ok(head) = head
        && head.status.success()
    {
        let commit = String::from_utf8(head.stdout).unwrap();
        assert!(version.contains(commit.trim()), "{version} vs {commit}");
    }
    // A bash completion script that knows the commands and their options.
    let script = std::fs::read_to_string(tmp.path().join("completions/vallum")).unwrap();
    assert!(script.contains("_vallum()") && script.contains("complete -F _vallum"));
    for word in ["serve", "migrate-meta", "lockbox", "--data-dir"] {
        assert!(script.contains(word), "no {word} in the completion script");
    }
    let checked = run(Command::new(tool("bash"))
        .args(["-c", "source completions/vallum && complete -p vallum"])
        .current_dir(tmp.path()));
    assert!(checked.contains("_vallum"), "{checked}");
    // A page per command, each titled by its name and with its options.
    let serve = std::fs::read_to_string(tmp.path().join("man1/vallum-serve.1")).unwrap();
    assert!(serve.contains(".TH vallum-serve 1"), "{serve}");
    assert!(serve.contains("\\fBvallum serve\\fR") && serve.contains("data\\-dir"));
    let rotate = std::fs::read_to_string(tmp.path().join("man1/vallum-key-rotate.1")).unwrap();
    assert!(rotate.contains("vallum key rotate"), "{rotate}");
    assert!(out.contains("manual pages written to man1"), "{out}");
    assert!(out.trim_end().ends_with("man1/vallum-serve.1"), "{out}");
}

#[test]
fn readme_client_example_runs() {
    let tmp = readme_dir();
    let server = Server::start_in(&tmp.path().join("vallum-data"), "127.0.0.1:0", &[], &[]);
    assert!(readme_block("<!-- readme-test -->").contains("s3 mb"));
    let out = run_block(tmp.path(), &server, "<!-- readme-test -->", |cmd| {
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    });
    assert!(out.contains("docs/README.md"), "{out}");
    let url = out.lines().last().unwrap().trim();
    assert!(url.starts_with("http://127.0.0.1:"), "{out}");
    let fetched = Command::new(tool("curl"))
        .args(["-sf", url])
        .output()
        .unwrap();
    assert!(fetched.status.success());
    assert_eq!(
        fetched.stdout,
        std::fs::read(tmp.path().join("README.md")).unwrap()
    );
}

#[test]
fn readme_retention_example_runs() {
    let tmp = readme_dir();
    let server = Server::start_in(&tmp.path().join("vallum-data"), "127.0.0.1:0", &[], &[]);
    let out = run_block(
        tmp.path(),
        &server,
        "<!-- readme-test retention -->",
        |cmd| {
            cmd.envs(server.tool_env());
        },
    );
    assert!(out.contains("\"Mode\": \"COMPLIANCE\""), "{out}");
    assert!(out.contains("refused: under COMPLIANCE retention"), "{out}");
    // The block left what it says: the version, under retention and legal hold, and the rules.
    let versions = run(Command::new(tool("aws")).envs(server.tool_env()).args([
        "s3api",
        "list-object-versions",
        "--bucket",
        "records",
    ]));
    assert!(versions.contains("incidents/2026-042.json"), "{versions}");
    let rules = run(Command::new(tool("aws")).envs(server.tool_env()).args([
        "s3api",
        "get-bucket-lifecycle-configuration",
        "--bucket",
        "records",
    ]));
    assert!(
        rules.contains("scratch") && rules.contains("old-versions"),
        "{rules}"
    );
}

#[test]
fn readme_keys_example_runs() {
    let tmp = readme_dir();
    let server = Server::start_in(&tmp.path().join("vallum-data"), "127.0.0.1:0", &[], &[]);
    let out = run_admin_block(tmp.path(), &server, "<!-- readme-test keys -->");
    assert!(out.contains("refused while disabled"), "{out}");
    // The readable answer of `rotate --wait`: one data key re-wrapped.
    assert!(
        out.lines().any(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some("rewrapped") && words.next() == Some("1")
        }),
        "{out}"
    );
    assert!(
        out.contains("clinic/intake.md@"),
        "the shred report names the object: {out}"
    );
    let e = common::run_failing(Command::new(tool("aws")).envs(server.tool_env()).args([
        "s3",
        "cp",
        "s3://clinic/intake.md",
        "-",
    ]));
    assert!(e.contains("KMS.DisabledException"), "{e}");
}

#[test]
fn readme_audit_example_runs() {
    let tmp = readme_dir();
    let server = Server::start_in(
        &tmp.path().join("vallum-data"),
        "127.0.0.1:0",
        &[],
        &[("VALLUM_SITE_JURISDICTION", "FR")],
    );
    assert!(readme_block("<!-- readme-test audit -->").contains("vallum verify"));
    let out = run_block(tmp.path(), &server, "<!-- readme-test audit -->", |cmd| {
        cmd.envs(server.tool_env())
            .env_remove("AWS_ENDPOINT_URL")
            .env("VALLUM_ENDPOINT", &server.endpoint);
    });
    assert!(out.contains("WITHIN BOUNDARY"), "{out}");
    // Stored and read, and the data key wrapped and unwrapped.
    assert!(out.contains("Data events checked: 4"), "{out}");
}

#[test]
fn readme_residency_example_runs() {
    let tmp = readme_dir();
    let server = start_with_readme_config(tmp.path(), "<!-- readme-test residency-config -->");
    let out = run_admin_block(tmp.path(), &server, "<!-- readme-test residency -->");
    assert!(
        out.contains("exposed to    us-cloud-act: operator parent Hyperscale Inc in US"),
        "{out}"
    );
    assert!(
        out.contains("refused: this site is exposed to the CLOUD Act"),
        "{out}"
    );
    assert!(
        out.contains("health/intake.md under policy eu-certified"),
        "{out}"
    );
    assert!(out.contains("placed on local (write quorum 1)"), "{out}");
    assert!(
        out.contains("version 1 by key:")
            && out.contains("eu-certified: allowed [EU], required certifications [SecNumCloud]"),
        "{out}"
    );
    // The object is there, and the refused policy left no version.
    assert!(!out.contains("version 2"), "{out}");
    let listed = run(Command::new(tool("aws")).envs(server.tool_env()).args([
        "s3api",
        "list-objects-v2",
        "--bucket",
        "health",
    ]));
    assert!(listed.contains("intake.md"), "{listed}");
}

#[test]
fn readme_multisite_example_runs() {
    let tmp = readme_dir();
    let server = start_with_readme_config(tmp.path(), "<!-- readme-test multisite-config -->");
    let data_dir = server.data_dir.clone();
    let out = run_admin_block(tmp.path(), &server, "<!-- readme-test multisite -->");
    // Relative site paths are under the data directory; the US-owned site ends up empty and
    // out of the deployment, the two EU-owned ones hold every copy.
    let count = |site: &str| common::local_blobs(&data_dir.join(site)).len();
    assert_eq!(count("dub-1"), 0, "{out}");
    assert_eq!(count("fra-1"), 6, "{out}");
    assert_eq!(count("sites/local"), 6, "{out}");
    assert!(
        out.contains("site dub-1: site removed (state removed)"),
        "{out}"
    );
    assert!(
        out.contains("site par-1") && out.contains("site fra-1"),
        "{out}"
    );
    assert!(
        !out.contains("site dub-1\n"),
        "dub-1 is no longer listed: {out}"
    );
}

#[test]
fn readme_lockbox_story_runs() {
    let tmp = readme_dir();
    let server = Server::start_in(&tmp.path().join("vallum-data"), "127.0.0.1:0", &[], &[]);
    let out = run_admin_block(tmp.path(), &server, "<!-- readme-test-lockbox -->");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "make_bucket: records",
            "charter v1: active",
            "olga: access denied",
            "grant: active",
            "payment run 2026-12-01",
            "grant: outside its scope",
            "grant: revoked",
            "grant: revoked",
        ],
        "{out}"
    );
}
