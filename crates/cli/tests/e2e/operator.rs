//! Operator tooling: `vallum config check` against real sites, PostgreSQL and bad input.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Server, run};

fn config_check(config: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vallum"))
        .args(["config", "check", "--json"])
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The checks of a run, by what was checked.
fn checks(out: &Output) -> Vec<(String, bool, String)> {
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    json.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["what"].as_str().unwrap().to_owned(),
                c["ok"].as_bool().unwrap(),
                c["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn config_check_passes_a_fresh_deployment_without_creating_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("vallum.toml");
    std::fs::write(&config, format!("data_dir = \"{}\"\n", data.display())).unwrap();
    let out = config_check(&config, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let all = checks(&out);
    let what: Vec<&str> = all.iter().map(|(w, _, _)| w.as_str()).collect();
    assert_eq!(
        what,
        [
            "data directory",
            "site local (local)",
            "key service (keyring)",
            "metadata"
        ]
    );
    assert!(all.iter().all(|(_, ok, _)| *ok), "{all:?}");
    assert!(
        all[0].2.contains("will be created at the first start"),
        "{all:?}"
    );
    assert!(!data.exists(), "a check created the data directory");
    // The plain form: a line per check.
    let plain = run(Command::new(env!("CARGO_BIN_EXE_vallum"))
        .args(["config", "check"])
        .arg(&config));
    assert_eq!(plain.lines().count(), 4, "{plain}");
    assert!(plain.lines().all(|l| l.starts_with("ok ")), "{plain}");
}

#[test]
fn config_check_names_a_bad_field_once_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("vallum.toml");
    std::fs::write(&config, "data_dir = \"d\"\nlisten = \"nowhere\"\n").unwrap();
    let out = config_check(&config, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listen") && err.contains("vallum.toml"),
        "{err}"
    );
    assert_eq!(err.matches("invalid configuration").count(), 1, "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn config_check_asks_remote_sites_and_postgres_and_reports_each_failure() {
    let provider = Server::start();
    run(provider.aws().args(["s3", "mb", "s3://site-bucket"]));
    let tmp = tempfile::tempdir().unwrap();
    let site = |endpoint: &str| {
        format!(
            "[site]\nid = \"fr-par\"\nbackend = \"s3\"\n[site.s3]\nendpoint = \"{endpoint}\"\nbucket = \"site-bucket\"\naccess_key = \"{}\"\nsecret_env = \"SITE_SECRET\"\n",
            provider.access_key
        )
    };
    let pg = common::fresh_pg_database();
    let config = tmp.path().join("vallum.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[meta]\nurl = \"{pg}\"\n{}",
            tmp.path().join("data").display(),
            site(&provider.endpoint)
        ),
    )
    .unwrap();
    // Everything answers.
    let out = config_check(&config, &[("SITE_SECRET", &provider.secret_key)]);
    let all = checks(&out);
    assert_eq!(out.status.code(), Some(0), "{all:?}");
    let detail = |what: &str| all.iter().find(|c| c.0 == what).unwrap().2.clone();
    assert!(
        detail("site fr-par (s3)").contains("answers as a blob store"),
        "{all:?}"
    );
    assert!(
        detail("metadata").starts_with("PostgreSQL answers"),
        "{all:?}"
    );
    // A wrong secret: the site refuses, and the check says so.
    let out = config_check(&config, &[("SITE_SECRET", "not-the-secret")]);
    assert_eq!(out.status.code(), Some(1));
    let all = checks(&out);
    let bad: Vec<_> = all.iter().filter(|c| !c.1).collect();
    assert_eq!(bad.len(), 1, "{all:?}");
    assert_eq!(bad[0].0, "site fr-par (s3)");
    // The secret's variable missing: named.
    let out = config_check(&config, &[]);
    let all = checks(&out);
    let site_check = all.iter().find(|c| c.0 == "site fr-par (s3)").unwrap();
    assert!(
        !site_check.1 && site_check.2.contains("SITE_SECRET"),
        "{all:?}"
    );
    // Nothing listening for the database: a failure, not a hang.
    let dead = format!(
        "postgres://vallum@127.0.0.1:{}/postgres",
        common::free_port()
    );
    std::fs::write(
        &config,
        format!("[meta]\nurl = \"{dead}\"\n{}", site(&provider.endpoint)),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = config_check(&config, &[("SITE_SECRET", &provider.secret_key)]);
    assert_eq!(out.status.code(), Some(1));
    let all = checks(&out);
    let meta = all.iter().find(|c| c.0 == "metadata").unwrap();
    assert!(!meta.1 && meta.2.starts_with("PostgreSQL:"), "{all:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn logs_written_to_a_file_or_pipe_carry_no_terminal_colours() {
    use std::io::{BufRead, Read};
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vallum"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 && !line.contains("Log verifier key") {}
    child.kill().unwrap();
    child.wait().unwrap();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(logs.contains("INFO"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "escape sequences in piped logs: {logs:?}"
    );
}
