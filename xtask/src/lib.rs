//! What both `cargo xtask` and zpr-agent's build script need to agree on:
//! where the workspace is, which toolchain it pins, where tools live.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

mod ebpf_build;

pub use ebpf_build::build_ebpf_package;

/// The workspace root (the directory holding rust-toolchain.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// The `channel` rust-toolchain.toml pins: the one source of truth for the
/// toolchain (the machine's plain `nightly` may carry another LLVM).
pub fn pinned_toolchain(workspace: &Path) -> anyhow::Result<String> {
    let path = workspace.join("rust-toolchain.toml");
    let toml = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    toml.lines()
        .filter_map(|line| line.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .next()
        .with_context(|| format!("{} names no channel", path.display()))
}

/// Project-local tools (bpf-linker) built by `cargo xtask setup`.
pub fn tools_dir(workspace: &Path) -> PathBuf {
    workspace.join("target/tools")
}

/// Where `bpf-linker` is installed.
pub fn bpf_linker(workspace: &Path) -> PathBuf {
    tools_dir(workspace).join("bin/bpf-linker")
}
