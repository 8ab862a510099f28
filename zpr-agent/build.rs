//! Generates the policy-language parser (lalrpop) and builds the eBPF object
//! that `zpr` embeds, so the binary is one self-contained file.

use std::{env, fs, path::Path};

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
    let workspace = xtask::workspace_root();
    let toolchain = xtask::pinned_toolchain(&workspace)?;

    // bpfel-unknown-none links with `bpf-linker`; `cargo xtask setup` builds it
    // against the pinned toolchain's LLVM into target/tools (project-local).
    let skipped = matches!(env::var("AYA_BUILD_SKIP").as_deref(), Ok("1" | "true"));
    if skipped {
        // aya-build builds nothing; an empty object keeps `cargo check` and
        // pure-module tests working, and `Datapath::load` says why it fails.
        let placeholder = Path::new(&env::var("OUT_DIR")?).join("zpr");
        if !placeholder.exists() {
            fs::write(placeholder, [])?;
        }
    }
    let bpf_linker = xtask::bpf_linker(&workspace);
    if !skipped && !bpf_linker.exists() {
        bail!(
            "{} not found: run `cargo xtask setup` first (it builds bpf-linker against the \
             pinned toolchain's LLVM)",
            bpf_linker.display()
        );
    }
    let tools = bpf_linker.parent().context("bpf-linker path has no parent")?.to_path_buf();
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
