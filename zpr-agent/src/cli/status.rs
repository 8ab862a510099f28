//! `zpr status`: what is attached, the live policy generation, map fill
//! levels, counters by reason and the last reload error.

use std::{fmt::Write as _, process::ExitCode};

use serde::Serialize;
use zpr_common::{Direction, counters::Reason};

use super::{Output, agent_paths::AgentPaths, agent_view::AgentView};
use crate::{
    daemon::{AttachedEndpoint, Status, unix_now},
    datapath::{
        ConntrackSummary, EventStats, Fill, LinkEnd, kernel_attachments, pinned_config,
        pinned_conntrack, pinned_counters, pinned_event_stats, pinned_fill, pinned_interfaces,
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
    /// `protected`, `degraded` or `not-enforcing` (see [`Health`]).
    health: Health,
    /// What makes the health less than `protected`, one line each.
    problems: Vec<String>,
    agent_pid: Option<u32>,
    /// The generation the kernel enforces (from the pinned config).
    live_generation: u32,
    attached_interfaces: Vec<String>,
    /// The agent's local endpoints, with what the kernel has attached.
    endpoints: Vec<EndpointState>,
    agent: Option<Status>,
    maps: Vec<Fill>,
    conntrack: Option<ConntrackSummary>,
    counters: Vec<CounterRow>,
    events: EventStats,
}

/// How well what is tagged here is protected; also the exit code.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[serde(rename_all = "kebab-case")]
enum Health {
    /// Every protected local endpoint has zpr attached in the kernel, and
    /// a running agent applied the latest inputs. Exit 0.
    Protected,
    /// Enforcing, but not as intended: no agent runs (nothing follows
    /// changes or mends what is undone), the last reload failed or was
    /// held back (older inputs stay in force), or part of the pinned
    /// state is unreadable.
    /// Exit 3.
    Degraded,
    /// Something tagged is not protected: nothing is live, a protected
    /// endpoint's vNIC has no zpr program in the kernel, or the pins
    /// cannot be seen from here. Exit 1.
    NotEnforcing,
}

impl Health {
    fn exit_code(self) -> ExitCode {
        match self {
            Health::Protected => ExitCode::SUCCESS,
            Health::NotEnforcing => ExitCode::from(1),
            Health::Degraded => ExitCode::from(3),
        }
    }
}

#[derive(Serialize)]
struct EndpointState {
    #[serde(flatten)]
    endpoint: AttachedEndpoint,
    /// zpr's programs run on the vNIC in both directions (the kernel's
    /// own list of links, not the pins).
    attached: bool,
}

#[derive(Serialize)]
struct CounterRow {
    reason: &'static str,
    drop: bool,
    from_workload: u64,
    to_workload: u64,
}

/// Exit 0 protected, 1 not enforcing, 3 degraded (see [`Health`]).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let view = AgentView::of(&args.paths);
    if !view.pins_visible() {
        let why = view.why_no_pins();
        match args.output {
            Output::Json => println!(
                "{}",
                serde_json::json!({
                    "health": Health::NotEnforcing,
                    "problems": [why],
                    "agent_pid": view.agent_pid(),
                })
            ),
            Output::Text => eprintln!("{why}"),
        }
        return Ok(Health::NotEnforcing.exit_code());
    }
    let report = report(&view)?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print!("{}", render(&report)?),
    }
    Ok(report.health.exit_code())
}

fn report(view: &AgentView) -> anyhow::Result<Report> {
    let pins = &view.pins;
    let mut problems: Vec<(Health, String)> = Vec::new();
    let agent_pid = view.agent_pid();
    let agent = Status::read(&view.run_dir).ok();
    let live_generation = pinned_config(pins)?.generation;
    if live_generation == 0 {
        problems.push((
            Health::NotEnforcing,
            "no policy generation is live in the kernel: nothing is enforced".to_owned(),
        ));
    }
    let kernel = kernel_attachments(pins)?;
    let endpoints: Vec<EndpointState> = agent
        .iter()
        .flat_map(|status| &status.endpoints)
        .map(|endpoint| {
            let ends = endpoint.ifindex.and_then(|ifindex| kernel.get(&ifindex));
            let attached = ends.is_some_and(|ends| {
                ends.contains(&LinkEnd::ToTcx)
                    && (ends.contains(&LinkEnd::FromTcx) || ends.contains(&LinkEnd::FromXdp))
            });
            EndpointState {
                endpoint: endpoint.clone(),
                attached,
            }
        })
        .collect();
    for state in &endpoints {
        let endpoint = &state.endpoint;
        if endpoint.protected && endpoint.ifindex.is_some() && !state.attached {
            problems.push((
                Health::NotEnforcing,
                format!(
                    "{} ({}): zpr is not attached to its vNIC in the kernel; it is unprotected",
                    endpoint.name, endpoint.interface
                ),
            ));
        }
    }
    match (agent_pid, &agent) {
        (None, _) => problems.push((
            Health::Degraded,
            "no agent is running: enforcement continues from the pins, but nothing follows \
             input changes or mends what is undone"
                .to_owned(),
        )),
        (Some(_), Some(status)) => {
            if let Some(held) = &status.held_back {
                problems.push((
                    Health::Degraded,
                    format!("input changes {} ({})", held.message, ago(held.at)),
                ));
            }
            if let Some(error) = &status.last_error {
                problems.push((
                    Health::Degraded,
                    format!(
                        "the last reload failed {}: generation {} (older inputs) stays in force",
                        ago(error.at),
                        status.generation
                    ),
                ));
            }
        }
        (Some(pid), None) => problems.push((
            Health::Degraded,
            format!(
                "the agent (pid {pid}) has no status file in {}",
                view.run_dir.display()
            ),
        )),
    }
    let mut unreadable = |what: &str, err: anyhow::Error| {
        problems.push((Health::Degraded, format!("cannot read {what}: {err:#}")));
    };
    let maps = pinned_fill(pins).unwrap_or_else(|err| {
        unreadable("the map fill levels", err);
        Vec::new()
    });
    let conntrack = pinned_conntrack(pins)
        .map_err(|err| unreadable("the conntrack tables", err))
        .ok();
    let counters = pinned_counters(pins)
        .map(|counters| {
            Reason::ALL
                .iter()
                .map(|&reason| CounterRow {
                    reason: reason.name(),
                    drop: reason.is_drop(),
                    from_workload: counters.get(Direction::FromWorkload, reason).packets,
                    to_workload: counters.get(Direction::ToWorkload, reason).packets,
                })
                .collect()
        })
        .unwrap_or_else(|err| {
            unreadable("the counters", err);
            Vec::new()
        });
    let events = pinned_event_stats(pins).unwrap_or_else(|err| {
        unreadable("the event statistics", err);
        EventStats::default()
    });
    if let Some(table) = conntrack.as_ref().map(|conntrack| &conntrack.established)
        && table.live as u64 * 10 >= table.capacity as u64 * 9
    {
        problems.push((
            Health::Degraded,
            format!(
                "{} live established flows fill {} of the established table's {} entries: \
                 more will evict the least recently used (raise --conntrack-entries)",
                table.live, table.live, table.capacity
            ),
        ));
    }
    problems.sort_by_key(|(health, _)| std::cmp::Reverse(*health));
    Ok(Report {
        health: problems
            .iter()
            .map(|(health, _)| *health)
            .max()
            .unwrap_or(Health::Protected),
        problems: problems.into_iter().map(|(_, problem)| problem).collect(),
        agent_pid,
        live_generation,
        attached_interfaces: pinned_interfaces(pins),
        endpoints,
        agent,
        maps,
        conntrack,
        counters,
        events,
    })
}

fn render_conntrack(
    out: &mut String,
    conntrack: &ConntrackSummary,
    report: &Report,
) -> std::fmt::Result {
    writeln!(out, "\nconntrack (live / entries / capacity):")?;
    let tables = [
        (
            "established",
            &conntrack.established,
            format!(
                "seen both ways; {} evicted by newer established flows",
                conntrack.established_evicted
            ),
        ),
        (
            "opening",
            &conntrack.opening,
            format!(
                "not yet seen both ways; {} evicted",
                conntrack.opening_evicted
            ),
        ),
    ];
    for (name, table, note) in tables {
        writeln!(
            out,
            "  {name:<12} {:>9} / {:>9} / {:<9} {note}",
            table.live, table.entries, table.capacity
        )?;
    }
    let picked_up: u64 = report
        .counters
        .iter()
        .filter(|row| row.reason == Reason::PickedUp.name())
        .map(|row| row.from_workload + row.to_workload)
        .sum();
    writeln!(
        out,
        "  picked up again: {picked_up} packets of allowed flows whose entry was gone; \
         not taken by the established table: {}",
        conntrack.confirm_refused
    )
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
    let health = match report.health {
        Health::Protected => "protected: every protected endpoint here is enforced",
        Health::Degraded => "DEGRADED: enforcing, but not as intended",
        Health::NotEnforcing => "NOT ENFORCING: something tagged here is unprotected",
    };
    writeln!(out, "health:      {health}")?;
    for problem in &report.problems {
        writeln!(out, "  - {problem}")?;
    }
    match (report.agent_pid, &report.agent) {
        (Some(pid), Some(status)) => writeln!(
            out,
            "agent:       running (pid {pid}), started {}; {}",
            ago(status.started_at),
            status.adoption
        )?,
        (Some(pid), None) => writeln!(out, "agent:       running (pid {pid})")?,
        (None, _) => writeln!(
            out,
            "agent:       not running; enforcement continues from the pinned maps and links"
        )?,
    }
    if let Some(status) = report.agent.as_ref().filter(|_| report.agent_pid.is_some()) {
        for warning in &status.warnings {
            writeln!(out, "warning:     {warning}")?;
        }
        if let Some(repair) = &status.last_repair {
            writeln!(
                out,
                "repairs:     {} (last {}: {})",
                status.repairs,
                ago(repair.at),
                repair.message
            )?;
        }
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
    }
    writeln!(out, "\nendpoints on this host:")?;
    writeln!(
        out,
        "  {:<16} {:<16} {:>7}  {:<8} {:<9} {:<8}",
        "NAME", "INTERFACE", "IFINDEX", "MODE", "TAGGED", "ATTACHED"
    )?;
    for state in &report.endpoints {
        let endpoint = &state.endpoint;
        let ifindex = endpoint
            .ifindex
            .map_or("absent".to_owned(), |i| i.to_string());
        let yes_no = |yes: bool| if yes { "yes" } else { "no" };
        writeln!(
            out,
            "  {:<16} {:<16} {:>7}  {:<8} {:<9} {:<8}",
            endpoint.name,
            endpoint.interface,
            ifindex,
            endpoint.mode,
            yes_no(endpoint.protected),
            yes_no(state.attached)
        )?;
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
    if let Some(conntrack) = &report.conntrack {
        render_conntrack(&mut out, conntrack, report)?;
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
