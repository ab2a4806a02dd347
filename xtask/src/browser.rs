//! Chromium for the report's browser test (`host/report/tests/page_in_browser.rs`): installed from
//! Debian's packages when it is missing and set-up runs as root; elsewhere set-up says how, and the
//! test reports itself as skipped.

use std::path::Path;
use std::process::Command;

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| Path::new(&dir).join(name).is_file()))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

pub fn ensure_chromium() {
    if ["chromium", "chromium-browser", "google-chrome"].iter().any(|n| on_path(n)) {
        return;
    }
    if !is_root() || !on_path("apt-get") {
        eprintln!(
            "xtask setup: no Chromium found; the report's browser test will be skipped (install Debian's `chromium` to run it)"
        );
        return;
    }
    eprintln!("xtask setup: installing Debian's chromium for the report's browser test (first time only)");
    let install = |update: bool| {
        let mut cmd = Command::new("apt-get");
        if update {
            cmd.args(["update", "-q"]);
        } else {
            cmd.args(["install", "-y", "-q", "--no-install-recommends", "chromium"]);
        }
        cmd.env("DEBIAN_FRONTEND", "noninteractive").status().is_ok_and(|s| s.success())
    };
    if !install(false) && !(install(true) && install(false)) {
        eprintln!("xtask setup: `apt-get install chromium` failed; the report's browser test will be skipped");
    }
}
