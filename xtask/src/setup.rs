//! `cargo xtask setup`: everything a fresh machine lacks, each step skipped
//! when already done, so a second run takes seconds.

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, bail, ensure};
use xtask::{bpf_linker, pinned_toolchain, tools_dir, workspace_root};

use crate::command::{output, run as run_command};

const BPF_LINKER_VERSION: &str = "0.13.0";
/// bpf-linker 0.13's default feature links LLVM 23; rustc's LLVM must match.
const BPF_LINKER_LLVM_MAJOR: &str = "23";

/// Debian packages the build, kernel tests, demo and benchmarks need.
const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "procps",
    "bpftool",
    "netcat-openbsd",
    "iperf3",
    "iptables",
    "nftables",
    // The metrics test scrapes the agent with a real Prometheus.
    "prometheus",
    // The fleet tests run a real etcd (3.4), and ask it with etcdctl.
    "etcd-server",
    "etcd-client",
    // etcd's Rust client compiles etcd's protobuf definitions.
    "protobuf-compiler",
    "libprotobuf-dev",
    // The systemd unit test boots a minimal Debian with a real systemd in
    // a container.
    "debootstrap",
    "systemd-container",
];

pub fn run() -> anyhow::Result<()> {
    let workspace = workspace_root();
    let toolchain = pinned_toolchain(&workspace)?;
    ensure_toolchain(&workspace, &toolchain)?;
    ensure_debian_packages()?;
    ensure_bpf_linker(&workspace, &toolchain)
}

fn ensure_toolchain(workspace: &Path, toolchain: &str) -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if installed.lines().any(|line| line.starts_with(toolchain)) {
        eprintln!("setup: toolchain {toolchain} is installed");
        return Ok(());
    }
    // Without arguments rustup installs what rust-toolchain.toml names,
    // components included.
    run_command(
        Command::new("rustup")
            .args(["toolchain", "install"])
            .current_dir(workspace),
    )
}

fn ensure_debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|package| !debian_package_installed(package))
        .collect();
    if missing.is_empty() {
        eprintln!("setup: Debian packages are installed");
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "missing Debian packages: {}; install them as root: apt-get install -y {}",
            missing.join(" "),
            missing.join(" ")
        );
    }
    run_command(Command::new("apt-get").args(["update", "-q"]))?;
    run_command(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn debian_package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

/// Builds bpf-linker against the pinned toolchain's own LLVM (no prebuilt
/// binary matches it) into target/tools. A stamp records what it was built
/// for; a matching stamp skips the build.
fn ensure_bpf_linker(workspace: &Path, toolchain: &str) -> anyhow::Result<()> {
    let rustc = output(
        Command::new("rustc")
            .arg("-vV")
            .env("RUSTUP_TOOLCHAIN", toolchain),
    )?;
    let llvm = rustc
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .context("rustc -vV reports no LLVM version")?
        .trim()
        .to_owned();
    ensure!(
        llvm.split('.').next() == Some(BPF_LINKER_LLVM_MAJOR),
        "{toolchain} uses LLVM {llvm}, but bpf-linker {BPF_LINKER_VERSION} links LLVM \
         {BPF_LINKER_LLVM_MAJOR}: pin a toolchain with LLVM {BPF_LINKER_LLVM_MAJOR}"
    );
    let wanted = format!("bpf-linker {BPF_LINKER_VERSION} for {toolchain} (LLVM {llvm})\n");
    let stamp = tools_dir(workspace).join("bpf-linker.stamp");
    if bpf_linker(workspace).exists() && fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted)
    {
        eprintln!("setup: {} is up to date", wanted.trim());
        return Ok(());
    }

    // The toolchain ships libLLVM plus a linker script naming it; a prefix
    // holding both, with libLLVM.so pointing at the script, satisfies -lLLVM.
    let sysroot = output(
        Command::new("rustc")
            .args(["--print", "sysroot"])
            .env("RUSTUP_TOOLCHAIN", toolchain),
    )?;
    let toolchain_lib = Path::new(sysroot.trim()).join("lib");
    let prefix = workspace.join("target/llvm");
    let prefix_lib = prefix.join("lib");
    if prefix.exists() {
        fs::remove_dir_all(&prefix).with_context(|| format!("cleaning {}", prefix.display()))?;
    }
    fs::create_dir_all(&prefix_lib)?;
    for entry in fs::read_dir(&toolchain_lib)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with(&format!("libLLVM-{BPF_LINKER_LLVM_MAJOR}-")) && name.ends_with(".so") {
            std::os::unix::fs::symlink(&path, prefix_lib.join("libLLVM.so"))?;
        } else if name.starts_with(&format!("libLLVM.so.{BPF_LINKER_LLVM_MAJOR}")) {
            std::os::unix::fs::symlink(&path, prefix_lib.join(&name))?;
        }
    }
    ensure!(
        prefix_lib.join("libLLVM.so").exists(),
        "{} has no libLLVM-{BPF_LINKER_LLVM_MAJOR}-*.so to link bpf-linker against",
        toolchain_lib.display()
    );

    eprintln!("setup: building {} (one to two minutes)", wanted.trim());
    run_command(
        Command::new("cargo")
            .args(["install", "bpf-linker", "--locked", "--force", "--version"])
            .arg(BPF_LINKER_VERSION)
            .arg("--root")
            .arg(tools_dir(workspace))
            .env("LLVM_PREFIX", &prefix)
            .env("RUSTUP_TOOLCHAIN", toolchain)
            .current_dir(workspace),
    )?;
    fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))
}
