//! The embedded eBPF object, loaded and attached.

use std::ffi::CString;

use anyhow::{Context as _, bail};
use aya::{Ebpf, programs::Xdp};
pub use aya::programs::XdpMode;
use zpr_common::maps;

/// The object built from `zpr-ebpf` by build.rs, embedded so `zpr` is one file.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/zpr"));

/// zpr's programs and maps, loaded into the kernel. Dropping it detaches
/// every program it attached and frees unpinned maps.
pub struct Datapath {
    pub(crate) ebpf: Ebpf,
}

impl Datapath {
    pub fn load() -> anyhow::Result<Datapath> {
        if EBPF_OBJECT.is_empty() {
            bail!("this zpr was built with AYA_BUILD_SKIP: it embeds no eBPF object");
        }
        let mut ebpf = Ebpf::load(EBPF_OBJECT).context("loading zpr's eBPF object")?;
        let program: &mut Xdp = ebpf
            .program_mut(maps::PROG_FROM_WORKLOAD)
            .context("the object has no from-workload program")?
            .try_into()?;
        program
            .load()
            .context("the kernel verifier rejected the from-workload program")?;
        Ok(Datapath { ebpf })
    }

    /// Attaches the from-workload program to `interface` (in the calling
    /// thread's network namespace).
    pub fn attach_from_workload(&mut self, interface: &str, mode: XdpMode) -> anyhow::Result<()> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(maps::PROG_FROM_WORKLOAD)
            .context("the object has no from-workload program")?
            .try_into()?;
        let name = CString::new(interface)
            .with_context(|| format!("interface name {interface:?} contains a NUL byte"))?;
        program
            .attach(name.as_c_str(), mode)
            .with_context(|| format!("attaching XDP ({mode:?}) to {interface}"))?;
        Ok(())
    }
}
