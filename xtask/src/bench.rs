//! `cargo xtask bench [--quick] [--only PARTS]`: builds `zpr` and the
//! benchmark binary (release) and runs the benchmarks (root). A full run of
//! every part also records its report in BENCHMARKS.md; `--quick` is the CI
//! smoke run.

use std::process::Command;

use anyhow::ensure;
use xtask::workspace_root;

use crate::{build, command::run as run_command};

pub fn run(quick: bool, only: Option<&str>) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the benchmarks load BPF programs and create network namespaces: run as root"
    );
    let workspace = workspace_root();
    let release = build::release(&[("zpr-bench", "zpr-bench")])?;
    let target = build::target_dir(&workspace);
    let mut bench = Command::new(release.join("zpr-bench"));
    bench
        .arg("--zpr")
        .arg(release.join("zpr"))
        .arg("--output")
        .arg(target.join("zpr-bench"))
        .current_dir(&workspace);
    if let Some(parts) = only {
        bench.arg("--only").arg(parts);
    }
    if quick {
        bench.arg("--quick");
    } else if only.is_none() {
        bench.arg("--record").arg(workspace.join("BENCHMARKS.md"));
    }
    run_command(&mut bench)
}
