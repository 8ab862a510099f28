//! Generates the policy-language parser (lalrpop) and builds the eBPF object
//! that `zpr` embeds, so the binary is one self-contained file.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow, bail};

fn main() -> anyhow::Result<()> {
    lalrpop::Configuration::new()
        .use_cargo_dir_conventions()
        .emit_rerun_directives(true)
        .process()
        .map_err(|err| anyhow!("lalrpop: {err}"))?;
    build_ebpf()
}

fn build_ebpf() -> anyhow::Result<()> {
    let workspace = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?)
        .parent()
        .context("zpr-agent has no parent directory")?
        .to_path_buf();
    let toolchain_file = workspace.join("rust-toolchain.toml");
    let toolchain = pinned_channel(&fs::read_to_string(&toolchain_file).with_context(|| {
        format!("reading {}", toolchain_file.display())
    })?)?;

    // bpfel-unknown-none links with `bpf-linker`; `cargo xtask setup` builds it
    // against the pinned toolchain's LLVM into target/tools (project-local).
    let tools = workspace.join("target/tools/bin");
    if env::var_os("AYA_BUILD_SKIP").is_none() && !tools.join("bpf-linker").exists() {
        bail!(
            "bpf-linker not found in {}: run `cargo xtask setup` first (it builds bpf-linker \
             against the pinned toolchain's LLVM)",
            tools.display()
        );
    }
    let path = env::var_os("PATH").unwrap_or_default();
    let path = env::join_paths(std::iter::once(tools).chain(env::split_paths(&path)))?;
    // SAFETY: build scripts are single-threaded; aya-build spawns cargo after this.
    unsafe { env::set_var("PATH", path) };

    for shared in ["zpr-common", "rust-toolchain.toml"] {
        println!("cargo::rerun-if-changed={}", workspace.join(shared).display());
    }
    let ebpf_dir = workspace.join("zpr-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "zpr-ebpf",
            root_dir: ebpf_dir.to_str().context("non-UTF-8 path")?,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}

/// The `channel = "..."` of rust-toolchain.toml: the one source of truth for
/// the toolchain (the machine's plain `nightly` may carry another LLVM).
fn pinned_channel(toml: &str) -> anyhow::Result<String> {
    toml.lines()
        .filter_map(|line| line.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .next()
        .context("rust-toolchain.toml names no channel")
}
