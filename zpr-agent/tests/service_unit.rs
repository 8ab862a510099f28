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

#[test]
fn the_sandbox_exposure_is_at_most_2_3() {
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=23"])
        .arg(unit())
        .output()
        .expect("systemd-analyze (Debian's systemd package) runs");
    assert!(
        output.status.success(),
        "exposure above 2.3:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
