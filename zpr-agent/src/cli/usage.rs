//! `zpr usage`: how much each statement of the live policy is used on this
//! host (the flows it allowed, when last, since when it is in force), and
//! with `--unused-since` which ones allowed nothing for that long: access
//! nobody needs is a candidate for removal.

use std::{fmt::Write as _, process::ExitCode, time::Duration};

use anyhow::Context as _;
use serde::Serialize;

use super::{Output, agent_paths::AgentPaths, duration::parse_duration};
use crate::{
    clock::unix_now,
    daemon::{
        ago,
        statement_usage::{StatementUsage, UsageReport},
    },
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub paths: AgentPaths,
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
                unused: cutoff.map(|cutoff| usage.last_allowed_at.is_none_or(|at| at < cutoff)),
            })
            .collect(),
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print!("{}", render(&report)?),
    }
    Ok(ExitCode::SUCCESS)
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
    if report.unused_before.is_some() {
        writeln!(
            out,
            "{unused} of {} statements allowed nothing in that time",
            report.statements.len()
        )?;
    }
    Ok(out)
}
