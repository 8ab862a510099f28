//! Building an eBPF crate from a build script, with the pinned toolchain
//! and the project's bpf-linker: what zpr-agent (zpr's programs) and
//! zpr-bench (its reference programs) both do.

use std::{env, fs, path::Path};

use anyhow::{Context as _, bail};

use crate::{bpf_linker, pinned_toolchain, workspace_root};

/// Builds package `package` (at `directory` in the workspace) for
/// bpfel-unknown-none into `OUT_DIR/<object>`, its bin's name. With
/// `AYA_BUILD_SKIP=1` an empty object stands in, so `cargo check` works
/// without bpf-linker and loading says why it cannot.
pub fn build_ebpf_package(package: &str, directory: &str, object: &str) -> anyhow::Result<()> {
    let workspace = workspace_root();
    let toolchain = pinned_toolchain(&workspace)?;
    let skipped = matches!(env::var("AYA_BUILD_SKIP").as_deref(), Ok("1" | "true"));
    if skipped {
        let placeholder = Path::new(&env::var("OUT_DIR")?).join(object);
        if !placeholder.exists() {
            fs::write(placeholder, [])?;
        }
    }
    // bpfel-unknown-none links with `bpf-linker`; `cargo xtask setup` builds
    // it against the pinned toolchain's LLVM into target/tools.
    let linker = bpf_linker(&workspace);
    if !skipped && !linker.exists() {
        bail!(
            "{} not found: run `cargo xtask setup` first (it builds bpf-linker against the \
             pinned toolchain's LLVM)",
            linker.display()
        );
    }
    let tools = linker.parent().context("bpf-linker path has no parent")?;
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
    let root = workspace.join(directory);
    aya_build::build_ebpf(
        [aya_build::Package {
            name: package,
            root_dir: root.to_str().context("non-UTF-8 path")?,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}
