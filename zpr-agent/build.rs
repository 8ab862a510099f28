//! Generates the policy-language parser (lalrpop) and builds the eBPF object
//! that `zpr` embeds, so the binary is one self-contained file.

use anyhow::anyhow;

fn main() -> anyhow::Result<()> {
    lalrpop::Configuration::new()
        .use_cargo_dir_conventions()
        .emit_rerun_directives(true)
        .process()
        .map_err(|err| anyhow!("lalrpop: {err}"))?;
    xtask::build_ebpf_package("zpr-ebpf", "zpr-ebpf", "zpr")
}
