//! Builds the reference eBPF programs (bench/ebpf) the benchmark binary
//! embeds, the same way zpr-agent's build script builds zpr's.

fn main() -> anyhow::Result<()> {
    xtask::build_ebpf_package("zpr-bench-ebpf", "bench/ebpf", "reference")
}
