//! The shipped systemd unit: systemd's own checks accept it, and its
//! sandbox scores no worse than the README says (`systemd-analyze
//! security`, offline: no systemd needs to run here).

use std::{path::PathBuf, process::Command};

fn unit() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/zpr.service")
}

#[test]
fn systemd_accepts_the_unit() {
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit())
        .output()
        .expect("systemd-analyze (Debian's systemd package) runs");
    let complaints: Vec<String> = String::from_utf8_lossy(&output.stderr)
        .lines()
        // The man pages the unit names are installed by the package.
        .filter(|line| !line.contains("Command 'man zpr"))
        .map(str::to_owned)
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
}

/// 2.4, not 2.3: the unit spells out ProtectKernelTunables= (read-only
/// /proc/sys, /sys and the like) as paths, since the setting itself makes
/// /sys/fs/bpf read-only too; the analyzer scores only the setting.
#[test]
fn the_sandbox_exposure_is_at_most_2_4() {
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=24"])
        .arg(unit())
        .output()
        .expect("systemd-analyze (Debian's systemd package) runs");
    assert!(
        output.status.success(),
        "exposure above 2.4:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
