//! Builds the reference eBPF programs (bench/ebpf) the benchmark binary
//! embeds, the same way zpr-agent's build script builds zpr's.

use std::{env, fs, path::Path};

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let workspace = xtask::workspace_root();
    let toolchain = xtask::pinned_toolchain(&workspace)?;

    let skipped = matches!(env::var("AYA_BUILD_SKIP").as_deref(), Ok("1" | "true"));
    if skipped {
        // aya-build builds nothing; an empty object keeps `cargo check`
        // working, and the bench says why it cannot run.
        let placeholder = Path::new(&env::var("OUT_DIR")?).join("reference");
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
    let tools = bpf_linker
        .parent()
        .context("bpf-linker path has no parent")?;
    let path = env::var_os("PATH").unwrap_or_default();
    let path =
        env::join_paths(std::iter::once(tools.to_path_buf()).chain(env::split_paths(&path)))?;
    // SAFETY: build scripts are single-threaded; aya-build spawns cargo after this.
    unsafe { env::set_var("PATH", path) };

    for shared in ["zpr-common", "rust-toolchain.toml"] {
        println!(
            "cargo::rerun-if-changed={}",
            workspace.join(shared).display()
        );
    }
    let ebpf_dir = workspace.join("bench/ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "zpr-bench-ebpf",
            root_dir: ebpf_dir.to_str().context("non-UTF-8 path")?,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}
