//! `cargo xtask build`: the eBPF object and the `zpr` binary embedding it.

use std::{path::PathBuf, process::Command};

use xtask::workspace_root;

use crate::command::run as run_command;

/// Builds release `zpr` and returns its path.
pub fn run() -> anyhow::Result<PathBuf> {
    let workspace = workspace_root();
    run_command(
        Command::new("cargo")
            .args([
                "build",
                "--release",
                "--package",
                "zpr-agent",
                "--bin",
                "zpr",
            ])
            .current_dir(&workspace),
    )?;
    let binary = workspace.join("target/release/zpr");
    eprintln!("built {}", binary.display());
    Ok(binary)
}
