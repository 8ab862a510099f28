//! `zpr usage`: how much each statement of the live policy is used on this
//! host (the flows it allowed, when last, since when it is in force), or
//! with `--store` across a fleet (the sums of what every node's agent
//! reports); with `--unused-since`, which ones allowed nothing for that
//! long: access nobody needs is a candidate for removal.

use std::{fmt::Write as _, process::ExitCode, time::Duration};

use anyhow::Context as _;
use serde::Serialize;

use super::{Output, agent_paths::AgentPaths, duration::parse_duration, etcd_access::EtcdArgs};
use crate::{
    clock::unix_now,
    daemon::{
        ago,
        statement_usage::{StatementUsage, UsageReport},
    },
    store::{EtcdStore, fleet::FleetView},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub paths: AgentPaths,
    /// A fleet's tenancy (etcd://HOST:PORT/TENANCY): every statement of
    /// its policies, with the flows summed over the nodes whose agents
    /// report now (a node without a running agent is not counted).
    #[arg(long, value_name = "etcd://...")]
    pub store: Option<String>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Mark the statements that allowed no flow for this long (`30d`,
    /// `12h`, `90m`, `45s`): never, or last before then.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub unused_since: Option<Duration>,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    usage: &'a StatementUsage,
    /// With `--unused-since`: no flow allowed in that time.
    #[serde(skip_serializing_if = "Option::is_none")]
    unused: Option<bool>,
}

#[derive(Serialize)]
struct Report<'a> {
    node: Option<&'a str>,
    updated_at: u64,
    generation: u32,
    uncounted_entries: usize,
    /// With `--unused-since`: the cut-off (unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    unused_before: Option<u64>,
    statements: Vec<Line<'a>>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(store) = &args.store {
        return fleet(&args, store);
    }
    let usage = UsageReport::read(&args.paths.run_dir).with_context(|| {
        format!(
            "no statement usage under {} (is `zpr run` running there? it writes it once a \
             policy is applied)",
            args.paths.run_dir.display()
        )
    })?;
    let cutoff = args
        .unused_since
        .map(|since| unix_now().saturating_sub(since.as_secs()));
    let report = Report {
        node: usage.node.as_deref(),
        updated_at: usage.updated_at,
        generation: usage.generation,
        uncounted_entries: usage.uncounted_entries,
        unused_before: cutoff,
        statements: usage
            .statements
            .iter()
            .map(|usage| Line {
                usage,
                unused: unused(cutoff, usage.last_allowed_at),
            })
            .collect(),
    };
    show(args.output, &report, render)
}

/// With a cut-off: whether a statement last allowed a flow before it
/// (or never did).
fn unused(cutoff: Option<u64>, last_allowed_at: Option<u64>) -> Option<bool> {
    cutoff.map(|cutoff| last_allowed_at.is_none_or(|at| at < cutoff))
}

fn show<R: Serialize>(
    output: Output,
    report: &R,
    render: fn(&R) -> Result<String, std::fmt::Error>,
) -> anyhow::Result<ExitCode> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(report)?),
        Output::Text => print!("{}", render(report)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// The last line of a report with a cut-off.
fn unused_total(
    out: &mut String,
    unused_before: Option<u64>,
    unused: usize,
    statements: usize,
) -> std::fmt::Result {
    if unused_before.is_some() {
        writeln!(
            out,
            "{unused} of {statements} statements allowed nothing in that time"
        )?;
    }
    Ok(())
}

fn render(report: &Report) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    writeln!(
        out,
        "generation {}, counted {}{}",
        report.generation,
        ago(report.updated_at),
        report
            .node
            .map_or(String::new(), |node| format!(" on node {node}"))
    )?;
    if report.uncounted_entries > 0 {
        writeln!(
            out,
            "note: {} Plan entries are beyond what the kernel counts; flows they allowed are \
             missing below",
            report.uncounted_entries
        )?;
    }
    writeln!(
        out,
        "{:<24} {:>12}  {:<16} IN FORCE SINCE",
        "STATEMENT", "FLOWS", "LAST ALLOWED"
    )?;
    let mut unused = 0;
    for line in &report.statements {
        let usage = line.usage;
        let last = usage.last_allowed_at.map_or("never".to_owned(), ago);
        let mut since = format!(
            "generation {} ({})",
            usage.since_generation,
            ago(usage.since)
        );
        if line.unused == Some(true) {
            unused += 1;
            since.push_str("  UNUSED");
            if report
                .unused_before
                .is_some_and(|cutoff| usage.since > cutoff)
            {
                since.push_str(" (in force for less than that)");
            }
        }
        writeln!(
            out,
            "{:<24} {:>12}  {:<16} {since}",
            usage.statement, usage.flows, last
        )?;
    }
    unused_total(
        &mut out,
        report.unused_before,
        unused,
        report.statements.len(),
    )?;
    Ok(out)
}

/// One statement's use across a fleet.
#[derive(Serialize)]
struct FleetLine {
    statement: String,
    /// The policy's OCID, as the API names it (absent for a statement
    /// only a node still counts, its policy gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_id: Option<String>,
    /// Summed over the nodes that report.
    flows: u64,
    /// The latest of the nodes' (unix seconds).
    last_allowed_at: Option<u64>,
    /// The nodes where it allowed flows.
    nodes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unused: Option<bool>,
}

impl FleetLine {
    fn unused_yet(statement: String) -> FleetLine {
        FleetLine {
            statement,
            policy_id: None,
            flows: 0,
            last_allowed_at: None,
            nodes: Vec::new(),
            unused: None,
        }
    }
}

#[derive(Serialize)]
struct FleetReport {
    /// The nodes whose agents report now.
    reporting: Vec<String>,
    /// Used statements nodes left out of their reports (past their bound).
    omitted: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    unused_before: Option<u64>,
    statements: Vec<FleetLine>,
}

/// `zpr usage --store`: the tenancy's statements (its policies' lines,
/// one statement each), with what every reporting node counted.
fn fleet(args: &Args, store: &str) -> anyhow::Result<ExitCode> {
    let location = args.etcd.location(store)?;
    let (view, snapshot) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let view = FleetView::read(&location).await?;
            let snapshot = EtcdStore::open(location.clone()).await?.read().await?;
            anyhow::Ok((view, snapshot))
        })?;
    let mut lines: std::collections::BTreeMap<String, FleetLine> = snapshot
        .tenancy
        .list_policies()
        .iter()
        .flat_map(|policy| {
            (1..=policy.statements.len()).map(|line| {
                let statement = format!("{}:{line}", policy.name);
                let line = FleetLine {
                    policy_id: Some(policy.id.clone()),
                    ..FleetLine::unused_yet(statement.clone())
                };
                (statement, line)
            })
        })
        .collect();
    for node in &view.nodes {
        for used in &node.usage {
            // A statement a node still counts under an older revision's line.
            let line = lines
                .entry(used.statement.clone())
                .or_insert_with(|| FleetLine::unused_yet(used.statement.clone()));
            line.flows += used.flows;
            line.last_allowed_at = line.last_allowed_at.max(used.last_allowed_at);
            line.nodes.push(node.node.clone());
        }
    }
    let cutoff = args
        .unused_since
        .map(|since| unix_now().saturating_sub(since.as_secs()));
    let report = FleetReport {
        reporting: view.nodes.iter().map(|node| node.node.clone()).collect(),
        omitted: view.nodes.iter().map(|node| node.usage_omitted).sum(),
        unused_before: cutoff,
        statements: lines
            .into_values()
            .map(|line| FleetLine {
                unused: unused(cutoff, line.last_allowed_at),
                ..line
            })
            .collect(),
    };
    show(args.output, &report, render_fleet)
}

fn render_fleet(report: &FleetReport) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    writeln!(
        out,
        "summed over {} reporting nodes: {}",
        report.reporting.len(),
        report.reporting.join(", ")
    )?;
    if report.omitted > 0 {
        writeln!(
            out,
            "note: nodes left {} used statements out of their reports (the least used)",
            report.omitted
        )?;
    }
    writeln!(
        out,
        "{:<24} {:>12}  {:<16} NODES",
        "STATEMENT", "FLOWS", "LAST ALLOWED"
    )?;
    let mut unused = 0;
    for line in &report.statements {
        let last = line.last_allowed_at.map_or("never".to_owned(), ago);
        let mark = if line.unused == Some(true) {
            unused += 1;
            "  UNUSED"
        } else {
            ""
        };
        writeln!(
            out,
            "{:<24} {:>12}  {:<16} {}{mark}",
            line.statement,
            line.flows,
            last,
            line.nodes.join(",")
        )?;
    }
    unused_total(
        &mut out,
        report.unused_before,
        unused,
        report.statements.len(),
    )?;
    Ok(out)
}
