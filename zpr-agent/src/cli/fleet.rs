//! `zpr fleet status` and `zpr wait`: where a change is in force. Every
//! agent of a fleet reports, under its node's lease, the revision of the
//! tenancy it enforces; a node is gone one lease TTL after its host dies.

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::{Output, agent_paths::AgentPaths, etcd_access::EtcdArgs};
use crate::{
    clock::unix_now,
    daemon::{CONFIRMED_REVISION, Status, lock_holder},
    store::{
        EtcdLocation, SnapshotCache, Store,
        etcd::connect,
        etcd_roles,
        fleet::{FleetView, NodeRecord},
        records,
    },
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: FleetCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum FleetCommand {
    /// Every node, the revision it enforces, and whether it is in step;
    /// nodes that endpoints are placed on but no agent reports for.
    Status(StatusArgs),
    /// Apply, on this host, the store state its agent holds back (a change
    /// that stops protecting most of its endpoints, or a store that was
    /// reset or restored), once you have checked it.
    Confirm(ConfirmArgs),
    /// Write a host's cached snapshot (`<run-dir>/store-snapshot.json`)
    /// into an empty tenancy: how a lost store is restored.
    Restore(RestoreArgs),
    /// Print the etcdctl commands that make a tenancy's least-privilege
    /// roles and users: API servers read and write the tenancy, each
    /// node's agent reads its state and writes only its own node record,
    /// monitoring only reads. Run them with root's credentials before
    /// `etcdctl auth enable`; each user's client certificate has the user
    /// as its CN.
    EtcdRoles(EtcdRolesArgs),
}

#[derive(clap::Args, Debug)]
pub struct EtcdRolesArgs {
    /// The tenancy (as in etcd://HOST:PORT/TENANCY), to print its commands.
    #[arg(long, required_unless_present = "store", conflicts_with = "store")]
    pub tenancy: Option<String>,
    /// A node to make an agent user for (`zpr-TENANCY-node-NODE`); repeat
    /// it for every node.
    #[arg(long = "node", value_name = "NODE")]
    pub nodes: Vec<String>,
    /// Make the roles and users in this tenancy's etcd (with an
    /// administrator's credentials: --etcd-cert of root), instead of
    /// printing them. What exists already is left as it is.
    #[arg(long, value_name = "etcd://...", requires = "apply")]
    pub store: Option<String>,
    /// With --store: make them.
    #[arg(long, requires = "store")]
    pub apply: bool,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The fleet's tenancy: etcd://HOST:PORT[,HOST:PORT]/TENANCY.
    #[arg(long, value_name = "etcd://...")]
    pub store: String,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(clap::Args, Debug)]
pub struct ConfirmArgs {
    /// The store revision the agent holds back (`zpr status` names it).
    pub revision: u64,
    #[command(flatten)]
    pub paths: AgentPaths,
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The snapshot an agent kept (`store-snapshot.json` in its run directory).
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// The tenancy to restore into (it must be empty).
    #[arg(long, value_name = "etcd://...")]
    pub store: String,
    /// Say what would be written, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub etcd: EtcdArgs,
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
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// A node as `zpr fleet status` shows it.
#[derive(Serialize)]
struct NodeLine {
    #[serde(flatten)]
    record: NodeRecord,
    /// `in-step`, `behind`, `held-back`, `degraded`, `not-enforcing`,
    /// `no-agent` (endpoints are placed on it, no live agent reports) or
    /// `refused` (an agent claiming a node name another one holds).
    state: &'static str,
    /// Enforces the tenancy's latest change, and is protected.
    in_step: bool,
    /// Seconds since its last report.
    report_age_seconds: u64,
}

#[derive(Serialize)]
struct FleetReport {
    store: String,
    /// The revision of the tenancy's latest change.
    revision: u64,
    tenancy_id: Option<String>,
    nodes: Vec<NodeLine>,
    /// Why the fleet is not in step, one line each.
    problems: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        FleetCommand::Status(args) => status(args),
        FleetCommand::Confirm(args) => confirm(args),
        FleetCommand::Restore(args) => restore(args),
        FleetCommand::EtcdRoles(args) => etcd_roles(args),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn node_line(record: NodeRecord, state_revision: u64, now: u64) -> NodeLine {
    let enforces_latest = record.revision.is_some_and(|r| r >= state_revision);
    let state = match record.health.as_str() {
        "not-enforcing" => "not-enforcing",
        _ if record.pending_revision.is_some() => "held-back",
        _ if !enforces_latest => "behind",
        "protected" => "in-step",
        _ => "degraded",
    };
    NodeLine {
        report_age_seconds: now.saturating_sub(record.reported_at),
        in_step: state == "in-step",
        state,
        record,
    }
}

fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let location = args.etcd.location(&args.store)?;
    let view = runtime()?.block_on(FleetView::read(&location))?;
    let now = unix_now();
    let problems = view.not_enforcing(view.state_revision);
    let mut nodes: Vec<NodeLine> = view
        .nodes
        .iter()
        .cloned()
        .map(|record| node_line(record, view.state_revision, now))
        .collect();
    for placed in &view.placed {
        if !view.nodes.iter().any(|node| &node.node == placed) {
            nodes.push(NodeLine {
                record: NodeRecord {
                    node: placed.clone(),
                    problems: vec![
                        "endpoints are placed on it, and no live agent reports \
                                    for it: they are not enforcing"
                            .to_owned(),
                    ],
                    ..NodeRecord::default()
                },
                state: "no-agent",
                in_step: false,
                report_age_seconds: 0,
            });
        }
    }
    for contender in &view.contenders {
        nodes.push(NodeLine {
            record: contender.clone(),
            state: "refused",
            in_step: false,
            report_age_seconds: now.saturating_sub(contender.reported_at),
        });
    }
    let report = FleetReport {
        store: location.to_string(),
        revision: view.state_revision,
        tenancy_id: view.tenancy_id.clone(),
        nodes,
        problems,
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print!("{}", render(&report)),
    }
    let not_enforcing = report.tenancy_id.is_none()
        || report.nodes.is_empty()
        || report
            .nodes
            .iter()
            .any(|node| matches!(node.state, "not-enforcing" | "no-agent" | "refused"));
    Ok(if not_enforcing {
        ExitCode::from(1)
    } else if report.nodes.iter().all(|node| node.in_step) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn render(report: &FleetReport) -> String {
    let mut text = format!(
        "store {} at revision {} (tenancy id {}, {} nodes)\n",
        report.store,
        report.revision,
        report
            .tenancy_id
            .as_deref()
            .unwrap_or("none: the tenancy does not exist"),
        report.nodes.len()
    );
    text.push_str(&format!(
        "{:<20} {:>9} {:<13} {:>10} {:>9} {:>9}  PROBLEM\n",
        "NODE", "REVISION", "STATE", "GENERATION", "ENDPOINTS", "REPORTED"
    ));
    for node in &report.nodes {
        let record = &node.record;
        text.push_str(&format!(
            "{:<20} {:>9} {:<13} {:>10} {:>9} {:>8}s  {}\n",
            record.node,
            record
                .revision
                .map_or_else(|| "-".to_owned(), |r| r.to_string()),
            node.state,
            record.generation,
            record.endpoints,
            node.report_age_seconds,
            match node.state {
                "refused" => format!(
                    "{}: refused the name, another agent holds it",
                    record.writer()
                ),
                _ => record
                    .problems
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "-".to_owned()),
            },
        ));
    }
    for problem in &report.problems {
        text.push_str(&format!("not in force: {problem}\n"));
    }
    text
}

/// `zpr wait`: until every node that must enforce the revision does.
pub fn wait(args: WaitArgs) -> anyhow::Result<ExitCode> {
    let location = args.etcd.location(&args.store)?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout);
    let runtime = runtime()?;
    loop {
        let view = runtime.block_on(FleetView::read(&location))?;
        let behind = view.not_enforcing(args.revision);
        let done = behind.is_empty();
        // A tenancy that does not exist, or has no node, never will be.
        let hopeless =
            view.tenancy_id.is_none() || (view.nodes.is_empty() && view.placed.is_empty());
        if done || hopeless || Instant::now() >= deadline {
            let answer = serde_json::json!({
                "revision": args.revision,
                "nodes": view.nodes.len(),
                "done": done,
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
                    "{}revision {} is not in force everywhere: {}",
                    if hopeless {
                        String::new()
                    } else {
                        format!("after {}s, ", args.timeout)
                    },
                    args.revision,
                    behind.join("; ")
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

/// `zpr fleet confirm`: SIGHUP to this host's agent, once it is the
/// revision it holds back; then waits until that revision is live.
fn confirm(args: ConfirmArgs) -> anyhow::Result<ExitCode> {
    let run_dir = &args.paths.run_dir;
    let pid = lock_holder(run_dir)
        .with_context(|| format!("no agent runs with the run directory {}", run_dir.display()))?;
    let status = Status::read(run_dir)?;
    match status.pending_revision {
        Some(pending) if pending == args.revision => {}
        Some(pending) => bail!(
            "the agent holds back revision {pending}, not {}: check what it holds \
             (`zpr status`) and confirm that revision",
            args.revision
        ),
        None => bail!(
            "the agent holds nothing back: it enforces revision {}",
            status
                .revision
                .map_or_else(|| "(none)".to_owned(), |r| r.to_string())
        ),
    }
    // The agent applies only this revision (not one that arrived since).
    crate::private_file::replace(
        &run_dir.join(CONFIRMED_REVISION),
        args.revision.to_string().as_bytes(),
    )
    .with_context(|| format!("writing to {}", run_dir.display()))?;
    // SAFETY: kill(2) with a pid read from the agent's lock.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) } != 0 {
        bail!(
            "signalling the agent (pid {pid}): {}",
            std::io::Error::last_os_error()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = Status::read(run_dir)?;
        if now.revision.is_some_and(|r| r >= args.revision) {
            println!(
                "revision {} is in force here (generation {})",
                args.revision, now.generation
            );
            return Ok(ExitCode::SUCCESS);
        }
        if now.reloads > status.reloads {
            let why = now
                .held_back
                .or(now.last_error)
                .map_or_else(|| "see `zpr status`".to_owned(), |notice| notice.message);
            bail!(
                "revision {} was confirmed, but not applied; the live policy stays: {why}",
                args.revision
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "revision {} was confirmed, but is not in force after 30 s (`zpr status`)",
                args.revision
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `zpr fleet restore`: a host's cached snapshot, written into an empty
/// tenancy (in steps, as a seed is).
fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let location = args.etcd.location(&args.store)?;
    let snapshot = SnapshotCache::read_file(&args.from)?;
    let records = records::to_records(&snapshot.tenancy)?;
    println!(
        "{} {} records of revision {} (tenancy id {}) into {location}: {} policies, {} \
         endpoints, {} VCNs",
        if args.dry_run {
            "would write"
        } else {
            "writing"
        },
        records.len(),
        snapshot.revision,
        snapshot.tenancy.tenancy_id.as_deref().unwrap_or("none"),
        snapshot.tenancy.policies.len(),
        snapshot.tenancy.endpoints.len(),
        snapshot.tenancy.vcns.len(),
    );
    if args.dry_run {
        for key in records.keys() {
            println!("  {key}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let revision = runtime()?.block_on(async {
        let mut store = Store::open_etcd(location.clone()).await?;
        store.restore(&snapshot.tenancy).await
    })?;
    println!(
        "restored at store revision {revision}; each agent applies it once `zpr fleet confirm \
         {revision}` is given on its host, unless it enforces exactly this state already"
    );
    Ok(ExitCode::SUCCESS)
}

/// `zpr fleet etcd-roles`: prints the tenancy's roles and users as etcdctl
/// commands, or makes them.
fn etcd_roles(args: EtcdRolesArgs) -> anyhow::Result<ExitCode> {
    let location = match (&args.store, &args.tenancy) {
        (Some(store), _) => args.etcd.location(store)?,
        (None, Some(tenancy)) => EtcdLocation::parse(&format!("etcd://localhost/{tenancy}"))?,
        (None, None) => unreachable!("clap requires --tenancy or --store"),
    };
    let steps = etcd_roles::steps(&location, &args.nodes);
    if !args.apply {
        for step in &steps {
            println!("etcdctl {step}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let made = runtime()?.block_on(async {
        let mut client = connect(&location).await?;
        etcd_roles::apply_all(&mut client, &location, &steps).await
    })?;
    println!(
        "{location}: {made} of {} steps made ({} there already); enable auth once root \
         has the root role: `etcdctl auth enable`",
        steps.len(),
        steps.len() - made
    );
    Ok(ExitCode::SUCCESS)
}
