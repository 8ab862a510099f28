//! `cargo xtask build`: the eBPF object and the `zpr` binary embedding it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use xtask::workspace_root;

use crate::command::run as run_command;

/// Builds release `zpr` and returns its path.
pub fn run() -> anyhow::Result<PathBuf> {
    let binary = release(&[])?.join("zpr");
    eprintln!("built {}", binary.display());
    Ok(binary)
}

/// Builds release `zpr` and the other `(package, bin)` pairs; returns the
/// release directory they are in.
pub fn release(others: &[(&str, &str)]) -> anyhow::Result<PathBuf> {
    let workspace = workspace_root();
    let mut cargo = Command::new("cargo");
    cargo.args([
        "build",
        "--release",
        "--package",
        "zpr-agent",
        "--bin",
        "zpr",
    ]);
    for (package, bin) in others {
        cargo.args(["--package", package, "--bin", bin]);
    }
    run_command(cargo.current_dir(&workspace))?;
    Ok(target_dir(&workspace).join("release"))
}

/// Cargo's target directory, `CARGO_TARGET_DIR` included.
pub fn target_dir(workspace: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || workspace.join("target"),
        |dir| workspace.join(PathBuf::from(dir)),
    )
}
