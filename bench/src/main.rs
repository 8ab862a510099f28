//! `cargo xtask bench`: zpr's per-packet cost next to minimal programs, its
//! scaling with the policy size, throughput and deny floods over veth next
//! to iptables and nftables, and control-plane times. Every figure is a
//! ratio to another measured side by side in the same run (machines are
//! noisy; absolute times are only comparable within a run). Needs root.

mod agent;
mod bracket;
mod control_plane;
mod cpu;
mod firewall;
mod flood;
mod generated;
mod interrupt;
mod iperf;
mod machine;
mod micro;
mod paths;
mod per_packet;
mod probe;
mod reference;
mod reload;
mod report;
mod scaling;
mod scratch;
mod sender;
mod stats;
mod subject;
mod throughput;
mod veth_site;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use zpr_agent::datapath::FromWorkloadHook;

use crate::{
    firewall::Filter,
    machine::Machine,
    report::{Report, Section, Target},
    sender::Source,
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
}

/// How much of everything a run measures.
struct Profile {
    name: &'static str,
    micro: micro::Settings,
    throughput: throughput::Settings,
    flood: flood::Settings,
    control_plane: control_plane::Settings,
}

impl Profile {
    fn full() -> Profile {
        Profile {
            name: "full",
            micro: micro::Settings {
                sizes: vec![10, per_packet::STATEMENTS, 10_000, 100_000],
                rounds: 3,
                repeat: 1_000_000,
                spread: 10_000,
            },
            throughput: throughput::Settings {
                filters: vec![
                    zpr(FromWorkloadHook::Tcx, 10_000),
                    zpr(FromWorkloadHook::XdpGeneric, 10_000),
                    zpr(FromWorkloadHook::XdpNative, 10_000),
                    Filter::Iptables { rules: 1 },
                    Filter::Iptables { rules: 1_000 },
                    Filter::Iptables { rules: 10_000 },
                    nft_input(1),
                    nft_input(1_000),
                    nft_input(10_000),
                ],
                rounds: 3,
                tcp_seconds: 10,
                udp_seconds: 5,
            },
            flood: flood::Settings {
                filters: vec![
                    zpr(FromWorkloadHook::Tcx, 10_000),
                    zpr(FromWorkloadHook::XdpGeneric, 10_000),
                    zpr(FromWorkloadHook::XdpNative, 10_000),
                    Filter::IptablesRaw,
                    nft_prerouting(10_000),
                ],
                sources: vec![Source::LiveFrames, Source::PacketSocket],
                rounds: 3,
                seconds: 3.0,
            },
            control_plane: control_plane::Settings {
                compile_sizes: vec![1_000, 10_000, 100_000],
                rounds: 3,
                reload_statements: 10_000,
                reloads: 10,
                memory_statements: 100_000,
            },
        }
    }

    fn quick() -> Profile {
        Profile {
            name: "quick",
            micro: micro::Settings {
                sizes: vec![10, per_packet::STATEMENTS],
                rounds: 1,
                repeat: 1_000_000,
                spread: 2_000,
            },
            throughput: throughput::Settings {
                filters: vec![
                    zpr(FromWorkloadHook::Tcx, 1_000),
                    Filter::Iptables { rules: 1_000 },
                    nft_input(1_000),
                ],
                rounds: 1,
                tcp_seconds: 2,
                udp_seconds: 2,
            },
            flood: flood::Settings {
                filters: vec![
                    zpr(FromWorkloadHook::Tcx, 1_000),
                    zpr(FromWorkloadHook::XdpNative, 1_000),
                    Filter::IptablesRaw,
                    nft_prerouting(1_000),
                ],
                sources: vec![Source::LiveFrames],
                rounds: 1,
                seconds: 2.0,
            },
            control_plane: control_plane::Settings {
                compile_sizes: vec![1_000, 10_000],
                rounds: 1,
                reload_statements: 10_000,
                reloads: 2,
                memory_statements: 10_000,
            },
        }
    }
}

fn zpr(hook: FromWorkloadHook, statements: usize) -> Filter {
    Filter::Zpr { hook, statements }
}

fn nft_input(elements: usize) -> Filter {
    Filter::NftSet {
        elements,
        prerouting: false,
    }
}

fn nft_prerouting(elements: usize) -> Filter {
    Filter::NftSet {
        elements,
        prerouting: true,
    }
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
    if wanted(Part::Throughput) {
        add(throughput::measure(&profile.throughput)?);
    }
    if wanted(Part::Flood) {
        add(flood::measure(&profile.flood)?);
    }
    if wanted(Part::ControlPlane) {
        let zpr = match &args.zpr {
            Some(zpr) => zpr.clone(),
            None => std::env::current_exe()?.with_file_name("zpr"),
        };
        anyhow::ensure!(
            zpr.exists(),
            "{} not found: build it (cargo build --release -p zpr-agent) or pass --zpr",
            zpr.display()
        );
        add(control_plane::measure(&profile.control_plane, &zpr)?);
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
