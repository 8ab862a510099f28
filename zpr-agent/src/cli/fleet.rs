//! `zpr fleet status` and `zpr wait`: where a change is in force. Every
//! agent of a fleet reports, under its node's lease, the revision of the
//! tenancy it enforces; a node is gone one lease TTL after its host dies.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::Output;
use crate::{
    clock::unix_now,
    store::{
        EtcdLocation,
        fleet::{FleetView, NodeRecord},
    },
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: FleetCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum FleetCommand {
    /// Every live node, the revision it enforces, and whether it is in step.
    Status(StatusArgs),
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The fleet's tenancy: etcd://HOST:PORT[,HOST:PORT]/TENANCY.
    #[arg(long, value_name = "etcd://...")]
    pub store: String,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    /// The revision to wait for (a change's `zpr-revision`, or its work
    /// request's `revision`).
    pub revision: u64,
    /// The fleet's tenancy: etcd://HOST:PORT[,HOST:PORT]/TENANCY.
    #[arg(long, value_name = "etcd://...")]
    pub store: String,
    /// Give up after this many seconds (exit 1, naming the nodes behind).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub timeout: f64,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// A node as `zpr fleet status` shows it.
#[derive(Serialize)]
struct NodeLine<'a> {
    #[serde(flatten)]
    record: &'a NodeRecord,
    /// Enforces the tenancy's latest change.
    in_step: bool,
    /// Seconds since its last report.
    report_age_seconds: u64,
}

#[derive(Serialize)]
struct FleetReport<'a> {
    store: String,
    /// The revision of the tenancy's latest change.
    revision: u64,
    nodes: Vec<NodeLine<'a>>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        FleetCommand::Status(args) => status(args),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let location = EtcdLocation::parse(&args.store)?;
    let view = runtime()?.block_on(FleetView::read(&location))?;
    let now = unix_now();
    let report = FleetReport {
        store: location.to_string(),
        revision: view.state_revision,
        nodes: view
            .nodes
            .iter()
            .map(|record| NodeLine {
                record,
                in_step: record
                    .revision
                    .is_some_and(|enforced| enforced >= view.state_revision),
                report_age_seconds: now.saturating_sub(record.reported_at),
            })
            .collect(),
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print!("{}", render(&report)),
    }
    let all_in_step = report.nodes.iter().all(|node| node.in_step);
    Ok(if all_in_step {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn render(report: &FleetReport) -> String {
    let mut text = format!(
        "store {} at revision {} ({} nodes)\n",
        report.store,
        report.revision,
        report.nodes.len()
    );
    text.push_str(&format!(
        "{:<20} {:>9} {:<10} {:>10} {:>9}  LAST ERROR\n",
        "NODE", "REVISION", "STATE", "GENERATION", "REPORTED"
    ));
    for node in &report.nodes {
        let record = node.record;
        text.push_str(&format!(
            "{:<20} {:>9} {:<10} {:>10} {:>8}s  {}\n",
            record.node,
            record
                .revision
                .map_or_else(|| "-".to_owned(), |r| r.to_string()),
            if node.in_step { "in-step" } else { "behind" },
            record.generation,
            node.report_age_seconds,
            record.last_error.as_deref().unwrap_or("-"),
        ));
    }
    text
}

/// `zpr wait`: until every live node enforces the revision.
pub fn wait(args: WaitArgs) -> anyhow::Result<ExitCode> {
    let location = EtcdLocation::parse(&args.store)?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout);
    let runtime = runtime()?;
    loop {
        let view = runtime.block_on(FleetView::read(&location))?;
        let behind: Vec<String> = view
            .behind(args.revision)
            .iter()
            .map(|node| match node.revision {
                Some(enforced) => format!("{} (enforces {enforced})", node.node),
                None => format!("{} (enforces nothing yet)", node.node),
            })
            .collect();
        let done = behind.is_empty();
        if done || Instant::now() >= deadline {
            let answer = serde_json::json!({
                "revision": args.revision,
                "nodes": view.nodes.len(),
                "behind": behind,
            });
            match (args.output, done) {
                (Output::Json, _) => println!("{answer}"),
                (Output::Text, true) => println!(
                    "all {} nodes enforce revision {} or later",
                    view.nodes.len(),
                    args.revision
                ),
                (Output::Text, false) => println!(
                    "after {}s, {} of {} nodes do not enforce revision {}: {}",
                    args.timeout,
                    behind.len(),
                    view.nodes.len(),
                    args.revision,
                    behind.join(", ")
                ),
            }
            return Ok(if done {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
