//! `cargo xtask test`: unit tests, then the kernel tests (root, real kernel).

use std::process::Command;

use anyhow::ensure;
use xtask::workspace_root;

use crate::{build::target_dir, command::run as run_command};

pub fn run() -> anyhow::Result<()> {
    let workspace = workspace_root();
    eprintln!("== formatting");
    run_command(
        Command::new("cargo")
            .args(["fmt", "--all", "--", "--check"])
            .current_dir(&workspace),
    )?;
    eprintln!("== unit and integration tests (no privileges needed)");
    run_command(
        Command::new("cargo")
            .args([
                "test",
                "--workspace",
                "--exclude",
                "zpr-ebpf",
                "--exclude",
                "zpr-tests",
            ])
            .current_dir(&workspace),
    )?;

    eprintln!("== kernel tests: real BPF programs, network namespaces, veth pairs, real traffic");
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the kernel tests load BPF programs and create network namespaces: run as root"
    );
    // The agent tests run the real binary, as users do; the systemd unit
    // test installs the package in a container.
    run_command(
        Command::new("cargo")
            .args(["build", "--package", "zpr-agent", "--bin", "zpr"])
            .current_dir(&workspace),
    )?;
    let deb = crate::package::deb()?;
    run_command(
        Command::new("cargo")
            .args(["test", "--package", "zpr-tests"])
            .env("ZPR_BIN", target_dir(&workspace).join("debug/zpr"))
            .env("ZPR_DEB", &deb)
            .current_dir(&workspace),
    )?;
    eprintln!("== the Debian package installed here: `zpr --help` run from it, purged");
    crate::package::check_install(&deb)
}
