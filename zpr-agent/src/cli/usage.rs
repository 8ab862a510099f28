//! `zpr usage`: how much each statement of the live policy is used on this
//! host (the flows it allowed, when last, since when it is in force), or
//! with `--store` across a fleet (the sums of what every node's agent
//! reports); with `--unused-since`, which ones allowed nothing for that
//! long: access nobody needs is a candidate for removal. Statements of a
//! store's policies carry the policy's API id (OCID) in both views.

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
    /// The policy's OCID, as the API names it (policies from a store).
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_id: Option<&'a str>,
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
    show(args.output, &Report::of(&usage, cutoff), render)
}

impl Report<'_> {
    /// What the agent wrote, each statement with its policy's id (if
    /// any), marked against `cutoff`.
    fn of(usage: &UsageReport, cutoff: Option<u64>) -> Report<'_> {
        Report {
            node: usage.node.as_deref(),
            updated_at: usage.updated_at,
            generation: usage.generation,
            uncounted_entries: usage.uncounted_entries,
            unused_before: cutoff,
            statements: usage
                .statements
                .iter()
                .map(|record| Line {
                    usage: record,
                    policy_id: usage.policy_id(record),
                    unused: unused(cutoff, record.last_allowed_at),
                })
                .collect(),
        }
    }
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

/// The columns both views start with: STATEMENT, POLICY ID (only when
/// some statement has one: policies from a store), FLOWS, LAST ALLOWED.
struct Columns {
    /// The POLICY ID column's width; 0: no such column.
    policy_id: usize,
}

impl Columns {
    const POLICY_ID: &'static str = "POLICY ID";

    fn of<'a>(policy_ids: impl Iterator<Item = Option<&'a str>>) -> Columns {
        Columns {
            policy_id: policy_ids
                .flatten()
                .map(str::len)
                .max()
                .map_or(0, |widest| widest.max(Columns::POLICY_ID.len())),
        }
    }

    /// The header, `last` naming the columns after these.
    fn header(&self, out: &mut String, last: &str) -> std::fmt::Result {
        self.row(
            out,
            "STATEMENT",
            Some(Columns::POLICY_ID),
            "FLOWS",
            "LAST ALLOWED",
        )?;
        writeln!(out, " {last}")
    }

    /// A statement's row, up to what follows LAST ALLOWED (unended).
    fn statement(
        &self,
        out: &mut String,
        statement: &str,
        policy_id: Option<&str>,
        flows: u64,
        last_allowed_at: Option<u64>,
    ) -> std::fmt::Result {
        let last = last_allowed_at.map_or("never".to_owned(), ago);
        self.row(out, statement, policy_id, &flows.to_string(), &last)
    }

    fn row(
        &self,
        out: &mut String,
        statement: &str,
        policy_id: Option<&str>,
        flows: &str,
        last: &str,
    ) -> std::fmt::Result {
        write!(out, "{statement:<24} ")?;
        if self.policy_id > 0 {
            write!(
                out,
                "{:<width$} ",
                policy_id.unwrap_or("-"),
                width = self.policy_id
            )?;
        }
        write!(out, "{flows:>12}  {last:<16}")
    }
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
    let columns = Columns::of(report.statements.iter().map(|line| line.policy_id));
    columns.header(&mut out, "IN FORCE SINCE")?;
    let mut unused = 0;
    for line in &report.statements {
        let usage = line.usage;
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
        columns.statement(
            &mut out,
            &usage.statement,
            line.policy_id,
            usage.flows,
            usage.last_allowed_at,
        )?;
        writeln!(out, " {since}")?;
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
    let columns = Columns::of(
        report
            .statements
            .iter()
            .map(|line| line.policy_id.as_deref()),
    );
    columns.header(&mut out, "NODES")?;
    let mut unused = 0;
    for line in &report.statements {
        let mark = if line.unused == Some(true) {
            unused += 1;
            "  UNUSED"
        } else {
            ""
        };
        columns.statement(
            &mut out,
            &line.statement,
            line.policy_id.as_deref(),
            line.flows,
            line.last_allowed_at,
        )?;
        writeln!(out, " {}{mark}", line.nodes.join(","))?;
    }
    unused_total(
        &mut out,
        report.unused_before,
        unused,
        report.statements.len(),
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{FleetLine, FleetReport, Report, render, render_fleet};
    use crate::daemon::statement_usage::{StatementUsage, UsageReport};

    fn statement(statement: &str, flows: u64) -> StatementUsage {
        StatementUsage {
            statement: statement.to_owned(),
            fingerprint: 0,
            flows,
            last_allowed_at: None,
            since_generation: 1,
            since: 0,
        }
    }

    /// Two statements of `apps` and one of `db`.
    fn usage(policy_ids: &[(&str, &str)]) -> UsageReport {
        UsageReport {
            generation: 1,
            statements: vec![
                statement("apps:1", 4),
                statement("apps:2", 0),
                statement("db:1", 2),
            ],
            policy_ids: policy_ids
                .iter()
                .map(|&(name, id)| (name.to_owned(), id.to_owned()))
                .collect(),
            ..UsageReport::default()
        }
    }

    /// Asserts that line `n` of `text` starts with `prefix`.
    fn assert_line(text: &str, n: usize, prefix: &str) {
        let line = text.lines().nth(n).unwrap_or_default();
        assert!(
            line.starts_with(prefix),
            "line {n} is not {prefix:?}…:\n{text}"
        );
    }

    /// The ids `--output json` gives the statements.
    fn json_ids(report: &Report) -> Vec<Option<String>> {
        let json = serde_json::to_value(report).unwrap();
        json["statements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|line| {
                line.get("policy_id")
                    .map(|id| id.as_str().unwrap().to_owned())
            })
            .collect()
    }

    const APPS: &str = "ocid1.zprpolicy.zpr.7";
    const DB: &str = "ocid1.zprpolicy.zpr.12";

    #[test]
    fn a_store_policys_statements_carry_its_id_and_a_files_do_not() {
        // From a store: every statement names its policy's id.
        let stored = usage(&[("apps", APPS), ("db", DB)]);
        let report = Report::of(&stored, None);
        let ids = [Some(APPS), Some(APPS), Some(DB)].map(|id| id.map(str::to_owned));
        assert_eq!(json_ids(&report), ids);
        let text = render(&report).unwrap();
        let header = format!("{:<24} {:<22} {:>12}", "STATEMENT", "POLICY ID", "FLOWS");
        assert_line(&text, 1, &header);
        assert_line(&text, 2, &format!("{:<24} {APPS:<22} {:>12}", "apps:1", 4));
        assert_line(&text, 4, &format!("{:<24} {DB} {:>12}", "db:1", 2));
        // From files: neither the field nor the column.
        let files = usage(&[]);
        let report = Report::of(&files, None);
        assert_eq!(json_ids(&report), [None, None, None]);
        let text = render(&report).unwrap();
        assert!(!text.contains("POLICY ID"), "{text}");
        assert_line(&text, 2, &format!("{:<24} {:>12}  never", "apps:1", 4));
    }

    #[test]
    fn the_fleet_view_shows_policy_ids_as_a_host_does() {
        let line = |statement: &str, policy_id: Option<&str>| FleetLine {
            policy_id: policy_id.map(str::to_owned),
            flows: 4,
            nodes: vec!["host-b".to_owned()],
            ..FleetLine::unused_yet(statement.to_owned())
        };
        let fleet = FleetReport {
            reporting: vec!["host-b".to_owned()],
            omitted: 0,
            unused_before: None,
            // The second only a node still counts, its policy gone.
            statements: vec![line("apps:1", Some(APPS)), line("gone:1", None)],
        };
        let text = render_fleet(&fleet).unwrap();
        let host = render(&Report::of(&usage(&[("apps", APPS)]), None)).unwrap();
        let header = format!(
            "{:<24} {:<21} {:>12}  LAST ALLOWED",
            "STATEMENT", "POLICY ID", "FLOWS"
        );
        for text in [&text, &host] {
            assert_line(text, 1, &header);
            assert_line(
                text,
                2,
                &format!("{:<24} {APPS} {:>12}  never", "apps:1", 4),
            );
        }
        // No id: a dash.
        assert_line(&text, 3, &format!("{:<24} {:<21} {:>12}", "gone:1", "-", 4));
    }
}
