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
