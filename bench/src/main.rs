//! `cargo xtask bench`: zpr's per-packet cost next to minimal programs, its
//! scaling with the policy size, throughput and deny floods over veth next
//! to iptables and nftables, and control-plane times. Every figure is a
//! ratio to another measured side by side in the same run (machines are
//! noisy; absolute times are only comparable within a run). Needs root.

mod agent;
mod bracket;
mod conntrack_scale;
mod control_plane;
mod cpu;
mod diff;
mod firewall;
mod fleet;
mod flood;
mod generated;
mod interrupt;
mod iperf;
mod machine;
mod micro;
mod paths;
mod per_packet;
mod probe;
mod profile;
mod reference;
mod reload;
mod report;
mod scaling;
mod scrape;
mod scratch;
mod sender;
mod signing;
mod stats;
mod subject;
mod throughput;
mod veth_site;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::{
    machine::Machine,
    profile::Profile,
    report::{Report, Section, Target},
};

#[derive(Parser)]
#[command(
    name = "zpr-bench",
    about = "zpr's benchmarks (run by `cargo xtask bench`)"
)]
struct Args {
    /// CI smoke run: fewer rounds, sizes and seconds (under two minutes).
    #[arg(long)]
    quick: bool,
    /// Run only these parts (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Directory for bench.md and bench.json.
    #[arg(long, value_name = "DIR")]
    output: PathBuf,
    /// Also write the markdown report here (the repository's BENCHMARKS.md).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// The `zpr` binary whose agent is measured (default: beside this one).
    #[arg(long, value_name = "FILE")]
    zpr: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    /// Per-packet cost and scaling (BPF_PROG_TEST_RUN).
    Micro,
    /// iperf3 TCP and UDP over veth through each filter.
    Throughput,
    /// Deny floods disposed of by each filter.
    Flood,
    /// Compile time, reload latency, agent memory.
    ControlPlane,
    /// `zpr diff` and `zpr check` of a large policy repository.
    Diff,
    /// Per-packet cost with 10,000 and 1,000,000 established flows.
    Conntrack,
    /// A fleet on etcd: convergence, resync, idle requests.
    Fleet,
    /// Signing and verifying a store state.
    Signing,
    /// A Prometheus scrape of an agent with 1,000 local endpoints.
    Scrape,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("zpr-bench: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(
        unsafe { libc::geteuid() } == 0,
        "the benchmarks load BPF programs and create network namespaces: run as root"
    );
    anyhow::ensure!(
        args.record.is_none() || args.only.is_empty(),
        "--record keeps the report of a whole run: leave out --only"
    );
    let profile = if args.quick {
        Profile::quick()
    } else {
        Profile::full()
    };
    interrupt::install();
    let wanted = |part| args.only.is_empty() || args.only.contains(&part);
    let mut machine = Machine::describe();
    let mut sections: Vec<Section> = Vec::new();
    let mut targets: Vec<Target> = Vec::new();
    let mut add = |(section, section_targets): (Section, Vec<Target>)| {
        sections.push(section);
        targets.extend(section_targets);
    };

    if wanted(Part::Micro) {
        let settings = &profile.micro;
        let samples = micro::measure(settings)?;
        add(per_packet::section(
            &samples,
            settings.repeat,
            settings.rounds,
        ));
        add(scaling::section(&samples, &settings.sizes));
    }
    if wanted(Part::Conntrack) {
        add(conntrack_scale::measure(&profile.conntrack)?);
    }
    if wanted(Part::Throughput) {
        add(throughput::measure(&profile.throughput)?);
    }
    if wanted(Part::Flood) {
        add(flood::measure(&profile.flood)?);
    }
    let zpr = || -> anyhow::Result<PathBuf> {
        let zpr = match &args.zpr {
            Some(zpr) => zpr.clone(),
            None => std::env::current_exe()?.with_file_name("zpr"),
        };
        anyhow::ensure!(
            zpr.exists(),
            "{} not found: build it (cargo build --release -p zpr-agent) or pass --zpr",
            zpr.display()
        );
        Ok(zpr)
    };
    if wanted(Part::ControlPlane) {
        add(control_plane::measure(&profile.control_plane, &zpr()?)?);
    }
    if wanted(Part::Diff) {
        add(diff::measure(&profile.diff, &zpr()?)?);
    }
    if wanted(Part::Fleet) {
        add(fleet::measure(&profile.fleet, &zpr()?)?);
    }
    if wanted(Part::Signing) {
        add(signing::measure(&profile.signing)?);
    }
    if wanted(Part::Scrape) {
        add(scrape::measure(&profile.scrape, &zpr()?)?);
    }

    machine.finished();
    let report = Report {
        profile: profile.name,
        machine,
        targets,
        sections,
    };
    report.write(&args.output)?;
    if let Some(record) = &args.record {
        report.record(record)?;
    }
    print!("{}", report.markdown());
    Ok(())
}
