//! The embedded eBPF object, loaded and attached.

use std::{collections::BTreeMap, ffi::CString, path::PathBuf};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{SchedClassifier, TcAttachType, Xdp, XdpMode, links::FdLink},
};
use zpr_common::maps;

use super::{
    ConntrackSize,
    counter_rows::CounterRows,
    pinned::{LinkEnd, VnicPrograms},
    plan_maps::SlotContents,
};
use crate::side_by_side;

/// The object built from `zpr-ebpf` by build.rs, embedded so `zpr` is one file.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/zpr"));

/// The kernel programs' log reader.
pub type KernelLog = aya_log::EbpfLogger<&'static dyn log::Log>;

/// Where the from-workload program runs on the host-side vNIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromWorkloadHook {
    /// tcx ingress: keeps GRO/TSO on veth (the default there).
    Tcx,
    /// Generic (skb) XDP.
    XdpGeneric,
    /// Driver XDP: fastest disposal of floods on real NICs; on veth it
    /// switches off the peer's TSO/GSO.
    XdpNative,
}

/// Which of the object's programs are loaded. The verifier walks each
/// one loaded (the policy programs take about 0.4 s of CPU each), so an
/// agent loads only those its hook attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramSet {
    /// Every program: tests and benchmarks run any of them.
    Every,
    /// The policy's and the quarantine's programs at the ends a vNIC has
    /// with this hook.
    AttachedWith(FromWorkloadHook),
}

impl ProgramSet {
    fn contains(self, name: &str) -> bool {
        match self {
            ProgramSet::Every => true,
            ProgramSet::AttachedWith(hook) => LinkEnd::both(hook).into_iter().any(|end| {
                [VnicPrograms::Policy, VnicPrograms::Quarantine]
                    .into_iter()
                    .any(|programs| programs.at(end) == name)
            }),
        }
    }
}

/// zpr's programs and maps, loaded into the kernel. Dropping it detaches
/// every program it attached and frees unpinned maps.
pub struct Datapath {
    pub(crate) ebpf: Ebpf,
    /// What this process last wrote into each Plan slot; `None` when
    /// unknown (adopted from pins, or a write that failed part-way).
    pub(crate) written: [Option<SlotContents>; 2],
    /// Pinned maps' kernel ids, by name (pins that name another id, or
    /// none, are put back).
    pub(crate) pinned_maps: BTreeMap<&'static str, u32>,
    /// The links this process attached or adopted, by pin path.
    pub(crate) links: BTreeMap<PathBuf, FdLink>,
    /// The event budget (per second per CPU) each generation is written
    /// with; `None` keeps the live one.
    pub(crate) events_per_second: Option<u32>,
    pub(crate) counter_rows: CounterRows,
}

impl Datapath {
    /// Loads the object with maps of its own (not pinned) and every
    /// program (each passes the verifier here).
    pub fn load() -> anyhow::Result<Datapath> {
        Datapath::load_with(&mut EbpfLoader::new(), ProgramSet::Every)
    }

    /// As [`Datapath::load`], with conntrack tables of `conntrack`'s size.
    pub fn load_sized(conntrack: ConntrackSize) -> anyhow::Result<Datapath> {
        let mut loader = EbpfLoader::new();
        conntrack.size(&mut loader);
        Datapath::load_with(&mut loader, ProgramSet::Every)
    }

    /// Loads the object through `loader` (which may point maps at pins),
    /// with the programs of `programs`.
    pub(crate) fn load_with(
        loader: &mut EbpfLoader,
        programs: ProgramSet,
    ) -> anyhow::Result<Datapath> {
        if EBPF_OBJECT.is_empty() {
            bail!("this zpr was built with AYA_BUILD_SKIP: it embeds no eBPF object");
        }
        let mut ebpf = loader
            .load(EBPF_OBJECT)
            .context("loading zpr's eBPF object")?;
        for name in maps::PROGRAMS {
            program(&mut ebpf, name)?;
        }
        // The verifier takes about half a second per policy program: the
        // programs are verified side by side.
        let verified = side_by_side::map(
            ebpf.programs_mut()
                .filter(|(name, _)| maps::PROGRAMS.contains(name) && programs.contains(name)),
            |(name, program)| verify(name, program),
        );
        verified.into_iter().collect::<anyhow::Result<()>>()?;
        Ok(Datapath {
            ebpf,
            written: [None, None],
            pinned_maps: BTreeMap::new(),
            links: BTreeMap::new(),
            events_per_second: None,
            counter_rows: CounterRows::default(),
        })
    }

    /// Events (drops, new-flow allows) the kernel may send per second on
    /// each CPU from the next generation on; it counts the others as
    /// rate-limited.
    /// The row of the counters map `endpoint` counts in, once a Plan
    /// naming it as local was written; `None` when it has none of its own
    /// (more local endpoints than rows).
    pub fn counter_row(&self, endpoint: &str) -> Option<u32> {
        self.counter_rows.of(endpoint)
    }

    pub fn set_events_per_second(&mut self, per_second: u32) {
        self.events_per_second = Some(per_second);
    }

    /// Instructions the verifier walked to accept each program (its limit
    /// is 1,000,000 per program): how much room the decision code has left.
    pub fn verified_instructions(&self) -> anyhow::Result<Vec<(&'static str, u32)>> {
        maps::PROGRAMS
            .into_iter()
            .map(|name| {
                let program = self
                    .ebpf
                    .program(name)
                    .with_context(|| format!("the object has no {name} program"))?;
                let count = program
                    .info()
                    .with_context(|| format!("reading {name}'s info"))?
                    .verified_instruction_count()
                    .with_context(|| {
                        format!("the kernel reports no verified instructions for {name}")
                    })?;
                Ok((name, count))
            })
            .collect()
    }

    /// Attaches both directions to a workload's host-side `interface` (in
    /// the calling thread's network namespace).
    pub fn attach(&mut self, interface: &str, hook: FromWorkloadHook) -> anyhow::Result<()> {
        let name = CString::new(interface)
            .with_context(|| format!("interface name {interface:?} contains a NUL byte"))?;
        let name = name.as_c_str();
        match hook {
            FromWorkloadHook::Tcx => {
                self.attach_tc(maps::PROG_FROM_WORKLOAD_TC, name, TcAttachType::Ingress)?
            }
            FromWorkloadHook::XdpGeneric | FromWorkloadHook::XdpNative => {
                let mode = if hook == FromWorkloadHook::XdpNative {
                    XdpMode::Driver
                } else {
                    XdpMode::Skb
                };
                let xdp: &mut Xdp =
                    program(&mut self.ebpf, maps::PROG_FROM_WORKLOAD_XDP)?.try_into()?;
                xdp.attach(name, mode)
                    .with_context(|| format!("attaching XDP ({mode:?}) to {interface}"))?;
            }
        }
        self.attach_tc(maps::PROG_TO_WORKLOAD_TC, name, TcAttachType::Egress)
    }

    fn attach_tc(
        &mut self,
        program_name: &str,
        interface: &std::ffi::CStr,
        attach: TcAttachType,
    ) -> anyhow::Result<()> {
        let tc: &mut SchedClassifier = program(&mut self.ebpf, program_name)?.try_into()?;
        tc.attach(interface, attach)
            .with_context(|| format!("attaching {program_name} to {interface:?} ({attach:?})"))?;
        Ok(())
    }

    /// The kernel programs' own log lines (aya-log), forwarded to the `log`
    /// facade at the level each was written with. Keep it alive and
    /// `flush` it when its fd is readable.
    pub fn kernel_log(&mut self) -> anyhow::Result<KernelLog> {
        aya_log::EbpfLogger::init(&mut self.ebpf).context("opening the kernel programs' log")
    }

    pub(crate) fn map_mut(&mut self, name: &str) -> anyhow::Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .with_context(|| format!("the object has no {name} map"))
    }

    pub(crate) fn map(&self, name: &str) -> anyhow::Result<&aya::maps::Map> {
        self.ebpf
            .map(name)
            .with_context(|| format!("the object has no {name} map"))
    }
}

/// Loads one of zpr's programs into the kernel (the verifier runs here).
fn verify(name: &str, program: &mut aya::programs::Program) -> anyhow::Result<()> {
    let loaded = match program {
        aya::programs::Program::Xdp(xdp) => xdp.load(),
        program => <&mut SchedClassifier>::try_from(program)?.load(),
    };
    loaded.with_context(|| format!("the verifier rejected {name}"))
}

/// Whether a quarantined vNIC passes DHCP (`--quarantine-allow-dhcp`):
/// fixed in the programs when they are loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QuarantineDhcp {
    #[default]
    Refused,
    Allowed,
}

impl QuarantineDhcp {
    pub(crate) fn set(self, loader: &mut EbpfLoader) {
        // The loader keeps a reference until it loads: a constant's.
        let allowed: &'static u8 = match self {
            QuarantineDhcp::Refused => &0,
            QuarantineDhcp::Allowed => &1,
        };
        loader.override_global(maps::QUARANTINE_ALLOW_DHCP, allowed, true);
    }
}

pub(crate) fn program<'a>(
    ebpf: &'a mut Ebpf,
    name: &str,
) -> anyhow::Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name)
        .with_context(|| format!("the object has no {name} program"))
}
