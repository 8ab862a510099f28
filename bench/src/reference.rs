//! The reference programs (bench/ebpf), loaded beside zpr's and filled from
//! the same Plan: hosts and prefixes into one identity trie, single-port
//! policy entries into an exact-match hash.

use std::net::IpAddr;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{HashMap, LpmTrie, lpm_trie::Key},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp},
};
use zpr_agent::{
    compile::{L4_BITS, Plan},
    datapath::{RunResult, map_policy_key},
};
use zpr_common::{
    Address, FAMILY_IPV4, FAMILY_IPV6,
    conntrack::{FlowKey, FlowState},
    identity::{PREFIX_STATIC_BITS, PrefixKey},
    policy::{PolicyKey, PolicyValue},
};

use crate::paths::Path;

/// The object build.rs made from bench/ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reference"));

const XDP_PASS: u32 = 2;
/// Frames the kernel prepares per batch in live-frames mode (the default; a veth ring holds 256).
const LIVE_FRAMES_BATCH: u32 = 64;
const CONNTRACK: &str = "REF_CONNTRACK";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// Returns at once: the harness's own cost.
    Noop,
    Parse,
    ConntrackHit,
    /// Identities, policy and (when allowed) the conntrack insert.
    Policy,
    /// XDP_TX: the live-frames flood generator.
    Transmit,
}

impl Program {
    const ALL: [Program; 5] = [
        Program::Noop,
        Program::Parse,
        Program::ConntrackHit,
        Program::Policy,
        Program::Transmit,
    ];

    fn symbol(self) -> &'static str {
        match self {
            Program::Noop => "reference_noop",
            Program::Parse => "reference_parse",
            Program::ConntrackHit => "reference_conntrack_hit",
            Program::Policy => "reference_policy",
            Program::Transmit => "reference_transmit",
        }
    }

    /// The least work `path` needs.
    pub fn for_path(path: Path) -> Program {
        match path {
            Path::ConntrackHit => Program::ConntrackHit,
            Path::NewFlow | Path::Denied => Program::Policy,
            Path::Untagged => Program::Parse,
        }
    }
}

pub struct Reference {
    ebpf: Ebpf,
}

impl Reference {
    /// Loads every reference program, their maps empty.
    pub fn load() -> anyhow::Result<Reference> {
        anyhow::ensure!(
            !OBJECT.is_empty(),
            "zpr-bench was built with AYA_BUILD_SKIP: it embeds no reference programs"
        );
        let mut ebpf = Ebpf::load(OBJECT).context("loading the reference programs")?;
        for program in Program::ALL {
            xdp(&mut ebpf, program)?
                .load()
                .with_context(|| format!("the verifier rejected {}", program.symbol()))?;
        }
        Ok(Reference { ebpf })
    }

    /// Fills the identity trie and the policy hash from `plan`.
    pub fn fill(&mut self, plan: &Plan) -> anyhow::Result<()> {
        let mut identities: LpmTrie<_, PrefixKey, u32> =
            LpmTrie::try_from(self.map("REF_IPCACHE")?)?;
        let hosts = plan.hosts.iter().map(|host| {
            let full = if host.address.is_ipv4() { 32 } else { 128 };
            (host.address, full, host.uid)
        });
        let prefixes = plan
            .prefixes
            .iter()
            .map(|entry| (entry.prefix.addr, u32::from(entry.prefix.len), entry.uid));
        for (address, len, uid) in prefixes.chain(hosts) {
            let (family, addr) = map_address(address);
            let data = PrefixKey {
                slot: 0,
                family,
                addr,
                _pad: [0; 2],
            };
            identities
                .insert(&Key::new(PREFIX_STATIC_BITS + len, data), &uid, 0)
                .context("writing a reference identity")?;
        }
        let mut policy: HashMap<_, PolicyKey, PolicyValue> =
            HashMap::try_from(self.map("REF_POLICY")?)?;
        for (rule, entry) in plan.policy.iter().enumerate() {
            if entry.key.l4.len != L4_BITS {
                continue;
            }
            let key = map_policy_key(0, &entry.key);
            let value = PolicyValue {
                rule: rule as u32,
                flags: 0,
            };
            policy
                .insert(&key, &value, 0)
                .context("writing a reference policy entry")?;
        }
        Ok(())
    }

    /// Runs `frame` through `program`, `repeat` times.
    pub fn run(
        &mut self,
        program: Program,
        frame: &[u8],
        repeat: u32,
    ) -> anyhow::Result<RunResult> {
        let mut options = TestRunOptions::new();
        options.data_in = Some(frame);
        options.repeat = repeat;
        let result = xdp(&mut self.ebpf, program)?
            .test_run(options)
            .with_context(|| format!("BPF_PROG_TEST_RUN of {}", program.symbol()))?;
        Ok(RunResult {
            passed: result.return_value == XDP_PASS,
            duration: result.duration,
        })
    }

    /// Sends `frame` `count` times out of the interface `ifindex` (in the
    /// calling thread's namespace), with live frames: BPF_PROG_TEST_RUN
    /// hands each copy to the transmit program, which sends it.
    pub fn transmit(&mut self, frame: &[u8], ifindex: u32, count: u32) -> anyhow::Result<()> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex. Live frames need data_end to be
        // the frame's length and an ingress interface.
        let xdp_md: Vec<u8> = [0, frame.len() as u32, 0, ifindex, 0, 0]
            .iter()
            .flat_map(|field| field.to_ne_bytes())
            .collect();
        let mut options = TestRunOptions::new();
        options.data_in = Some(frame);
        options.ctx_in = Some(&xdp_md);
        options.repeat = count;
        options.attrs = TestRunAttrs::new().xdp_live_frames(LIVE_FRAMES_BATCH);
        xdp(&mut self.ebpf, Program::Transmit)?
            .test_run(options)
            .context("BPF_PROG_TEST_RUN with live frames")?;
        Ok(())
    }

    /// Forgets every flow the reference conntrack holds.
    pub fn flush_flows(&mut self) -> anyhow::Result<()> {
        let mut flows: HashMap<_, FlowKey, FlowState> = HashMap::try_from(self.map(CONNTRACK)?)?;
        let keys: Vec<FlowKey> = flows.keys().filter_map(Result::ok).collect();
        for key in &keys {
            // The LRU may have let a flow go between listing and removal.
            let _ = flows.remove(key);
        }
        Ok(())
    }

    fn map(&mut self, name: &str) -> anyhow::Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .with_context(|| format!("the reference object has no {name} map"))
    }
}

fn xdp(ebpf: &mut Ebpf, program: Program) -> anyhow::Result<&mut Xdp> {
    let symbol = program.symbol();
    Ok(ebpf
        .program_mut(symbol)
        .with_context(|| format!("the reference object has no {symbol} program"))?
        .try_into()?)
}

/// An address as zpr's maps hold it.
fn map_address(ip: IpAddr) -> (u8, Address) {
    let mut addr = [0; 16];
    match ip {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            (FAMILY_IPV4, addr)
        }
        IpAddr::V6(v6) => (FAMILY_IPV6, v6.octets()),
    }
}
