//! Generates the policy-language parser (lalrpop), builds the eBPF object
//! that `zpr` embeds, so the binary is one self-contained file, and records
//! the git commit for `zpr_build_info`.

use std::{path::Path, process::Command};

use anyhow::anyhow;

fn main() -> anyhow::Result<()> {
    lalrpop::Configuration::new()
        .use_cargo_dir_conventions()
        .emit_rerun_directives(true)
        .process()
        .map_err(|err| anyhow!("lalrpop: {err}"))?;
    record_git_commit();
    xtask::build_ebpf_package("zpr-ebpf", "zpr-ebpf", "zpr")
}

/// `ZPR_GIT_COMMIT` for the binary, when it is built from a git checkout
/// (not from a source archive: then the metrics say "unknown").
fn record_git_commit() {
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=ZPR_GIT_COMMIT={commit}");
    // Built again when HEAD moves: HEAD names the branch, the branch's ref
    // names the commit (loose, or packed), and HEAD's reflog grows on every
    // commit and checkout (even when the loose ref did not exist before).
    let reference = git(&["symbolic-ref", "-q", "HEAD"]);
    let watched = ["HEAD", "logs/HEAD", "packed-refs"]
        .into_iter()
        .map(str::to_owned)
        .chain(reference);
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn git(arguments: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(arguments)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}
