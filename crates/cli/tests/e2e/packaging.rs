//! The packaging files: the systemd unit is one systemd accepts, hardened, and starts the
//! binary the way the binary expects.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{run, tool};

fn unit() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/vallum.service"),
    )
    .unwrap()
}

/// The value of `key=` in the unit (the last one, as systemd reads it).
fn setting(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
}

#[test]
fn the_systemd_unit_is_valid_hardened_and_runs_serve_with_its_config() {
    let unit = unit();
    for (key, want) in [
        ("User", "vallum"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictSUIDSGID", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("UMask", "0077"),
        ("ReadWritePaths", "/var/lib/vallum"),
    ] {
        assert_eq!(setting(&unit, key).as_deref(), Some(want), "{key}");
    }
    // Enough descriptors for the server's connection limit and its files.
    let nofile: u64 = setting(&unit, "LimitNOFILE").unwrap().parse().unwrap();
    assert!(nofile >= 2 * 8192, "{nofile}");
    // The command line is one the binary takes.
    let exec = setting(&unit, "ExecStart").unwrap();
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(
        args,
        [
            "/usr/local/bin/vallum",
            "serve",
            "--config",
            "/etc/vallum/vallum.toml"
        ]
    );
    let help = run(Command::new(env!("CARGO_BIN_EXE_vallum")).args(["serve", "--help"]));
    assert!(help.contains("--config"), "{help}");
    // systemd's own check, with the binary this build made: no warning at all.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("vallum.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/vallum", env!("CARGO_BIN_EXE_vallum")),
    )
    .unwrap();
    let out = Command::new(tool("systemd-analyze"))
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
    // And it would notice a mistake.
    std::fs::write(
        &copy,
        unit.replace("NoNewPrivileges=yes", "NoNewPrivileges=maybe"),
    )
    .unwrap();
    let bad = Command::new(tool("systemd-analyze"))
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("NoNewPrivileges") || !bad.status.success()
    );
}

/// The container recipe's instructions, `(INSTRUCTION, arguments)`, continuation lines joined.
fn containerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/Containerfile"),
    )
    .unwrap();
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                let (op, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((op.to_owned(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

/// A JSON-form instruction's arguments.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{args}: {e}"))
}

#[test]
fn the_container_recipe_builds_in_two_stages_runs_unprivileged_and_checks_health() {
    // No container runtime can run here (no daemon, no registry for base images), so the
    // recipe is checked as a linter would, and what it runs is run for real.
    let steps = containerfile();
    let from: Vec<&String> = steps
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(from.len(), 2, "{steps:?}");
    assert!(from[0].ends_with(" AS builder") && from[0].contains("rust:1.95"));
    let last_from = steps.iter().rposition(|(op, _)| op == "FROM").unwrap();
    let runtime = &steps[last_from..];
    let find = |op: &str| {
        runtime
            .iter()
            .find(|(o, _)| o == op)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("no {op} in the runtime stage"))
    };
    // Only the binary crosses from the build stage; no toolchain in the image.
    assert_eq!(
        find("COPY"),
        "--from=builder /usr/local/bin/vallum /usr/local/bin/vallum"
    );
    let user = find("USER");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "{user}"
    );
    assert_eq!(exec_form(&find("VOLUME")), ["/var/lib/vallum"]);
    assert_eq!(find("EXPOSE"), "9000");
    let entry = exec_form(&find("ENTRYPOINT"));
    let cmd = exec_form(&find("CMD"));
    assert_eq!(entry, ["/usr/local/bin/vallum"]);
    assert_eq!(
        cmd,
        [
            "serve",
            "--listen",
            "0.0.0.0:9000",
            "--data-dir",
            "/var/lib/vallum"
        ]
    );
    let health = find("HEALTHCHECK");
    let probe = exec_form(health.split_once("CMD ").unwrap().1);
    assert_eq!(probe[..2], ["curl", "-fsS"]);
    let url = probe[2].clone();
    assert!(url.starts_with("http://127.0.0.1:9000/"), "{url}");
    // The image's command, with a free port and a scratch volume, serves; the health check's
    // URL on it answers.
    let tmp = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let args: Vec<String> = cmd
        .iter()
        .map(|a| match a.as_str() {
            "0.0.0.0:9000" => format!("127.0.0.1:{port}"),
            "/var/lib/vallum" => tmp.path().join("volume").display().to_string(),
            other => other.to_owned(),
        })
        .collect();
    let mut child = common::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_vallum"))
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_for_port(port, "the container command");
    let health_url = url.replace(":9000", &format!(":{port}"));
    let out = run(Command::new(tool("curl")).args(["-fsS", &health_url]));
    assert!(out.contains("\"status\":\"ok\""), "{out}");
    let _ = child.0.kill();
}
