//! `cargo xtask bench [--quick]`: builds `zpr` and the benchmark binary
//! (release) and runs the benchmarks (root). A full run also records its
//! report in BENCHMARKS.md; `--quick` is the CI smoke run.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::ensure;
use xtask::workspace_root;

use crate::command::run as run_command;

pub fn run(quick: bool) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the benchmarks load BPF programs and create network namespaces: run as root"
    );
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
            .args(["--package", "zpr-bench", "--bin", "zpr-bench"])
            .current_dir(&workspace),
    )?;
    let target = target_dir(&workspace);
    let release = target.join("release");
    let mut bench = Command::new(release.join("zpr-bench"));
    bench
        .arg("--zpr")
        .arg(release.join("zpr"))
        .arg("--output")
        .arg(target.join("zpr-bench"))
        .current_dir(&workspace);
    if quick {
        bench.arg("--quick");
    } else {
        bench.arg("--record").arg(workspace.join("BENCHMARKS.md"));
    }
    run_command(&mut bench)
}

/// Where cargo puts build output: $CARGO_TARGET_DIR (relative to the
/// workspace) or the workspace's target/.
fn target_dir(workspace: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || workspace.join("target"),
        |dir| workspace.join(PathBuf::from(dir)),
    )
}
