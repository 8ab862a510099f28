//! `cargo xtask bench`: zpr's per-packet cost next to minimal programs, its
//! scaling with the policy size, throughput and deny floods over veth next
//! to iptables and nftables, and control-plane times. Every figure is a
//! ratio to another measured side by side in the same run (machines are
//! noisy; absolute times are only comparable within a run). Needs root.

mod cpu;
mod generated;
mod machine;
mod micro;
mod paths;
mod per_packet;
mod reference;
mod report;
mod scaling;
mod stats;
mod subject;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::{
    machine::Machine,
    report::{Report, Section, Target},
};

#[derive(Parser)]
#[command(name = "zpr-bench", about = "zpr's benchmarks (run by `cargo xtask bench`)")]
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    /// Per-packet cost and scaling (BPF_PROG_TEST_RUN).
    Micro,
}

/// How much of everything a run measures.
struct Profile {
    name: &'static str,
    micro: micro::Settings,
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
        }
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

    machine.finished();
    let report = Report {
        profile: profile.name,
        machine,
        targets,
        sections,
    };
    report.write(&args.output)?;
    if let Some(record) = &args.record {
        std::fs::write(record, report.markdown())?;
        eprintln!("report: recorded in {}", record.display());
    }
    print!("{}", report.markdown());
    Ok(())
}
