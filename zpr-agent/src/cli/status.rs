//! `zpr status`: what is attached, the live policy generation, map fill
//! levels, counters by reason and the last reload error.

use std::{fmt::Write as _, process::ExitCode};

use serde::Serialize;
use zpr_common::{Direction, counters::Reason};

use super::{Output, agent_paths::AgentPaths};
use crate::{
    daemon::{Status, lock_holder, unix_now},
    datapath::{
        EventStats, Fill, pinned_config, pinned_counters, pinned_event_stats, pinned_fill,
        pinned_interfaces,
    },
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub paths: AgentPaths,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Serialize)]
struct Report {
    agent_pid: Option<u32>,
    /// The generation the kernel enforces (from the pinned config).
    live_generation: u32,
    attached_interfaces: Vec<String>,
    agent: Option<Status>,
    maps: Vec<Fill>,
    counters: Vec<CounterRow>,
    events: EventStats,
}

#[derive(Serialize)]
struct CounterRow {
    reason: &'static str,
    drop: bool,
    from_workload: u64,
    to_workload: u64,
}

/// Exit 0 with a report; 1 when zpr has nothing pinned on this host.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let pins = args.paths.pins();
    if !pins.map(zpr_common::maps::CONFIG).exists() {
        eprintln!(
            "zpr is not running on this host: nothing is pinned under {}",
            pins.root().display()
        );
        return Ok(ExitCode::from(1));
    }
    let counters = pinned_counters(&pins)?;
    let report = Report {
        agent_pid: lock_holder(&args.paths.run_dir),
        live_generation: pinned_config(&pins)?.generation,
        attached_interfaces: pinned_interfaces(&pins),
        agent: Status::read(&args.paths.run_dir).ok(),
        maps: pinned_fill(&pins)?,
        counters: Reason::ALL
            .iter()
            .map(|&reason| CounterRow {
                reason: reason.name(),
                drop: reason.is_drop(),
                from_workload: counters.get(Direction::FromWorkload, reason).packets,
                to_workload: counters.get(Direction::ToWorkload, reason).packets,
            })
            .collect(),
        events: pinned_event_stats(&pins)?,
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print!("{}", render(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn ago(then: u64) -> String {
    let seconds = unix_now().saturating_sub(then);
    match seconds {
        0..120 => format!("{seconds}s ago"),
        120..7200 => format!("{}m ago", seconds / 60),
        _ => format!("{}h ago", seconds / 3600),
    }
}

fn render(report: &Report) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    match (report.agent_pid, &report.agent) {
        (Some(pid), Some(status)) => writeln!(
            out,
            "agent:       running (pid {pid}), started {}; {}",
            ago(status.started_at),
            status.adoption
        )?,
        _ => writeln!(
            out,
            "agent:       not running; enforcement continues from the pinned maps and links"
        )?,
    }
    writeln!(
        out,
        "generation:  {} (live in the kernel)",
        report.live_generation
    )?;
    if let Some(status) = &report.agent {
        let applied = status.applied_at.map_or("never".to_owned(), ago);
        let latency = status
            .reload_ms
            .map_or(String::new(), |ms| format!(" in {ms:.1} ms"));
        let files: Vec<String> = status
            .policies
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        writeln!(
            out,
            "policy:      generation {} applied {applied}{latency}; {} statements from {}",
            status.generation,
            status.statements,
            files.join(", ")
        )?;
        match &status.last_error {
            None => writeln!(out, "last error:  none")?,
            Some(error) => {
                writeln!(
                    out,
                    "last error:  {} (the live policy stayed):",
                    ago(error.at)
                )?;
                for line in error.message.lines() {
                    writeln!(out, "  {line}")?;
                }
            }
        }
        writeln!(out, "\nendpoints on this host:")?;
        writeln!(
            out,
            "  {:<16} {:<16} {:>7}  {:<8} {:<9}",
            "NAME", "INTERFACE", "IFINDEX", "MODE", "PROTECTED"
        )?;
        for endpoint in &status.endpoints {
            let ifindex = endpoint
                .ifindex
                .map_or("absent".to_owned(), |i| i.to_string());
            writeln!(
                out,
                "  {:<16} {:<16} {:>7}  {:<8} {:<9}",
                endpoint.name,
                endpoint.interface,
                ifindex,
                endpoint.mode,
                if endpoint.protected { "yes" } else { "no" }
            )?;
        }
    }
    writeln!(
        out,
        "\nattached:    {}",
        report.attached_interfaces.join(", ")
    )?;
    writeln!(out, "\nmaps (entries / capacity, both Plan slots):")?;
    for fill in &report.maps {
        writeln!(
            out,
            "  {:<20} {:>9} / {}",
            fill.map, fill.entries, fill.capacity
        )?;
    }
    writeln!(out, "\npackets by reason:")?;
    writeln!(
        out,
        "  {:<22} {:>14} {:>14}",
        "REASON", "FROM-WORKLOAD", "TO-WORKLOAD"
    )?;
    for row in &report.counters {
        let verdict = if row.drop { "drop" } else { "pass" };
        writeln!(
            out,
            "  {:<22} {:>14} {:>14}  ({verdict})",
            row.reason, row.from_workload, row.to_workload
        )?;
    }
    writeln!(
        out,
        "\nevents:      {} lost (ring buffer full), {} rate-limited",
        report.events.lost, report.events.rate_limited
    )?;
    Ok(out)
}
