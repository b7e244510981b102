//! Stamps `vallum --version` with the commit it was built from and that commit's date (not
//! the build's clock, so that a build is reproducible). Outside a git checkout, or with git
//! missing, both read `unknown`; `VALLUM_COMMIT` and `VALLUM_BUILD_DATE` set by a packager win.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    for (name, args) in [
        ("VALLUM_COMMIT", &["rev-parse", "--short=12", "HEAD"][..]),
        ("VALLUM_BUILD_DATE", &["log", "-1", "--format=%cs"][..]),
    ] {
        println!("cargo:rerun-if-env-changed={name}");
        let value = std::env::var(name)
            .ok()
            .or_else(|| git(args))
            .unwrap_or_else(|| "unknown".into());
        println!("cargo:rustc-env={name}={value}");
    }
    // A new commit changes HEAD or the branch it points at.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{branch}");
        }
        println!("cargo:rerun-if-changed={dir}/packed-refs");
    }
}
