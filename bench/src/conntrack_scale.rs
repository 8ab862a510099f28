//! Conntrack at scale: the per-packet cost of an established flow, a new
//! flow and a denied packet with 10,000 and with 1,000,000 established
//! flows in the table.

use anyhow::ensure;
use zpr_agent::datapath::{ConntrackSize, Datapath, Hook, write_plan};

use crate::{
    cpu::{self, Pinned},
    generated::{self, Generated, test_interfaces},
    interrupt,
    paths::{self, Path},
    report::{Figure, Section, Target, Unit, listed},
    stats::Summary,
};

pub struct Settings {
    /// Established flows in the table, smallest first.
    pub tracked: Vec<usize>,
    pub rounds: usize,
    /// Distinct flows each sample runs once.
    pub probes: usize,
}

/// Local port ranges the filled flows use (each port with every allowed
/// remote): clear of the ports the spread frames of `paths` use.
const FILL_PORTS: [std::ops::Range<usize>; 2] = [1_024..10_000, 50_000..61_000];
const STATEMENTS: usize = 10_000;

pub fn measure(settings: &Settings) -> anyhow::Result<(Section, Vec<Target>)> {
    let generated = generated::generate(STATEMENTS)?;
    let mut tables = Vec::new();
    for &tracked in &settings.tracked {
        eprintln!("conntrack: filling a table with {tracked} established flows");
        tables.push((tracked, filled(&generated, tracked)?));
    }
    let _pinned = Pinned::to(cpu::last())?;
    let paths = [Path::ConntrackHit, Path::NewFlow, Path::Denied];
    let mut samples = vec![vec![Vec::new(); paths.len()]; tables.len()];
    for round in 1..=settings.rounds {
        eprintln!("conntrack: round {round}/{}", settings.rounds);
        for (index, (tracked, datapath)) in tables.iter_mut().enumerate() {
            interrupt::checkpoint()?;
            for (slot, &path) in paths.iter().enumerate() {
                let frames = probe_frames(&generated, path, *tracked, settings.probes, round);
                samples[index][slot].push(median_ns(datapath, path, &frames)?);
            }
        }
    }
    let smallest = settings.tracked[0];
    let mut figures = Vec::new();
    for (index, &tracked) in settings.tracked.iter().enumerate() {
        for (slot, path) in paths.iter().enumerate() {
            let figure = Figure::new(
                format!("{}, {tracked} established flows", path.name()),
                Unit::NanosPerPacket,
                samples[index][slot].clone(),
            );
            figures.push(if index == 0 {
                figure
            } else {
                figure.over(format!("{smallest} flows"), &samples[0][slot])
            });
        }
    }
    let method = vec![format!(
        "zpr's XDP program (BPF_PROG_TEST_RUN) at a generated policy set of {STATEMENTS} \
         statements, with its established table sized for and filled with {} flows, each \
         made by real packets (the workload's, then the remote side's answer). Each sample \
         is the median of one run of each of {} flows spread over the table (established: \
         filled flows; new: flows never seen; denied: denied remotes), all sizes measured \
         in the same rounds.",
        listed(&settings.tracked),
        settings.probes
    )];
    Ok((
        Section {
            title: "Conntrack at scale".to_owned(),
            method,
            figures,
        },
        Vec::new(),
    ))
}

/// A datapath whose established table holds `tracked` flows.
fn filled(generated: &Generated, tracked: usize) -> anyhow::Result<Datapath> {
    let established = (tracked * 2).next_power_of_two().max(4096) as u32;
    let mut datapath = Datapath::load_sized(ConntrackSize { established })?;
    write_plan(&mut datapath, &generated.plan, &test_interfaces())?;
    for flow in 0..tracked {
        let frame = flow_frame(generated, flow);
        let sent = datapath.test_run(Hook::FromWorkloadXdp, &frame, 1)?;
        let answered = datapath.test_run(Hook::ToWorkloadTc, &paths::reply(&frame), 1)?;
        ensure!(sent.passed && answered.passed, "flow {flow} was dropped");
    }
    Ok(datapath)
}

/// The workload's mid-stream packet of filled flow `flow`.
fn flow_frame(generated: &Generated, flow: usize) -> Vec<u8> {
    let allowed = generated.allowed.len();
    let (remote, port) = generated.allowed[flow % allowed];
    let local_port = FILL_PORTS
        .iter()
        .flat_map(Clone::clone)
        .nth(flow / allowed)
        .unwrap_or_else(|| panic!("{flow} flows are more than {allowed} allowed remotes make"));
    paths::tcp_frame(
        generated.local,
        local_port as u16,
        (remote, port),
        paths::TCP_ACK,
    )
}

fn probe_frames(
    generated: &Generated,
    path: Path,
    tracked: usize,
    probes: usize,
    round: usize,
) -> Vec<Vec<u8>> {
    match path {
        // Spread evenly over the filled flows, different ones each round.
        Path::ConntrackHit => (0..probes)
            .map(|i| flow_frame(generated, (i * tracked / probes + round) % tracked))
            .collect(),
        _ => paths::frames(generated, path, probes).spread,
    }
}

fn median_ns(datapath: &mut Datapath, path: Path, frames: &[Vec<u8>]) -> anyhow::Result<f64> {
    let mut ns = Vec::with_capacity(frames.len());
    for frame in frames {
        let result = datapath.test_run(Hook::FromWorkloadXdp, frame, 1)?;
        ensure!(
            result.passed == path.passes(),
            "wrong verdict on {}",
            path.name()
        );
        ns.push(result.duration.as_nanos() as f64);
    }
    Ok(Summary::of(&ns).median)
}
