//! `zpr status`: what is attached, the live policy generation, map fill
//! levels, counters by reason (the host's and each endpoint's) and the
//! last reload error.

use std::{fmt::Write as _, process::ExitCode};

use serde::Serialize;
use zpr_common::{Direction, counters::Reason};

use super::{Output, agent_paths::AgentPaths, agent_view::AgentView};
use crate::{
    daemon::{
        EndpointState, Health, Observed, QuarantineState, Status, ago, assess, endpoint_states,
        quarantine_states,
    },
    datapath::{
        ConntrackSummary, EventStats, Fill, kernel_attachments, pinned_config, pinned_conntrack,
        pinned_counters, pinned_event_stats, pinned_fill, pinned_interfaces,
    },
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub paths: AgentPaths,
    /// Show this local endpoint's packets by reason (its vNIC's counters)
    /// rather than the host's.
    #[arg(long, value_name = "NAME")]
    pub endpoint: Option<String>,
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
    /// The agent's local endpoints, with what the kernel has attached and
    /// what their vNICs counted.
    endpoints: Vec<EndpointReport>,
    /// Unregistered vNICs under quarantine, with what the kernel has
    /// attached (`agent.quarantine` holds the globs).
    quarantined: Vec<QuarantineState>,
    agent: Option<Status>,
    maps: Vec<Fill>,
    conntrack: Option<ConntrackSummary>,
    /// The host's packets by reason: every endpoint's, and those of vNICs
    /// without one here.
    counters: Vec<CounterLine>,
    events: EventStats,
}

#[derive(Serialize)]
struct EndpointReport {
    #[serde(flatten)]
    state: EndpointState,
    /// Its vNIC's packets, by reason (reasons it never counted left out);
    /// absent when it has no counters row of its own.
    counters: Option<Vec<CounterLine>>,
}

impl EndpointReport {
    /// Packets (both directions) dropped, and passed.
    fn dropped_and_passed(&self) -> Option<(u64, u64)> {
        let lines = self.counters.as_ref()?;
        let packets = |drop: bool| -> u64 {
            lines
                .iter()
                .filter(|line| line.drop == drop)
                .map(|line| line.from_workload + line.to_workload)
                .sum()
        };
        Some((packets(true), packets(false)))
    }
}

/// `zpr status`'s exit code (see [`Health`]).
fn exit_code(health: Health) -> ExitCode {
    match health {
        Health::Protected => ExitCode::SUCCESS,
        Health::NotEnforcing => ExitCode::from(1),
        Health::Degraded => ExitCode::from(3),
    }
}

/// Packets and bytes under one reason, both ways.
#[derive(Serialize)]
struct CounterLine {
    reason: &'static str,
    drop: bool,
    from_workload: u64,
    to_workload: u64,
    from_workload_bytes: u64,
    to_workload_bytes: u64,
}

/// A counters row as lines, one per reason.
fn counter_lines(row: &zpr_common::counters::CounterRow) -> Vec<CounterLine> {
    Reason::ALL
        .iter()
        .map(|&reason| {
            let (from, to) = (
                row.get(Direction::FromWorkload, reason),
                row.get(Direction::ToWorkload, reason),
            );
            CounterLine {
                reason: reason.name(),
                drop: reason.is_drop(),
                from_workload: from.packets,
                to_workload: to.packets,
                from_workload_bytes: from.bytes,
                to_workload_bytes: to.bytes,
            }
        })
        .collect()
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
        return Ok(exit_code(Health::NotEnforcing));
    }
    let report = report(&view)?;
    match (&args.endpoint, args.output) {
        (None, Output::Json) => println!("{}", serde_json::to_string_pretty(&report)?),
        (None, Output::Text) => print!("{}", render(&report)?),
        (Some(name), output) => {
            let Some(endpoint) = report
                .endpoints
                .iter()
                .find(|endpoint| endpoint.state.endpoint.name == *name)
            else {
                let local: Vec<&str> = report
                    .endpoints
                    .iter()
                    .map(|endpoint| endpoint.state.endpoint.name.as_str())
                    .collect();
                anyhow::bail!(
                    "no local endpoint named {name:?} on this host (its local endpoints: {}); \
                     `zpr status` lists them",
                    if local.is_empty() {
                        "none".to_owned()
                    } else {
                        local.join(", ")
                    }
                );
            };
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(endpoint)?),
                Output::Text => print!("{}", render_endpoint(endpoint)?),
            }
        }
    }
    Ok(exit_code(report.health))
}

fn report(view: &AgentView) -> anyhow::Result<Report> {
    let pins = &view.pins;
    let agent_pid = view.agent_pid();
    let agent = Status::read(&view.run_dir).ok();
    let live_generation = pinned_config(pins)?.generation;
    let kernel = kernel_attachments(pins)?;
    let endpoints = endpoint_states(agent.as_ref(), &kernel);
    let quarantined = quarantine_states(agent.as_ref(), &kernel);
    let mut unreadable = Vec::new();
    let mut note_unreadable = |what: &str, err: anyhow::Error| {
        unreadable.push(format!("cannot read {what}: {err:#}"));
    };
    let maps = pinned_fill(pins).unwrap_or_else(|err| {
        note_unreadable("the map fill levels", err);
        Vec::new()
    });
    let conntrack = pinned_conntrack(pins)
        .map_err(|err| note_unreadable("the conntrack tables", err))
        .ok();
    let table = pinned_counters(pins)
        .map_err(|err| note_unreadable("the counters", err))
        .ok();
    let counters = table
        .as_ref()
        .map(|table| counter_lines(table.total()))
        .unwrap_or_default();
    let events = pinned_event_stats(pins).unwrap_or_else(|err| {
        note_unreadable("the event statistics", err);
        EventStats::default()
    });
    let (health, problems) = assess(&Observed {
        agent_pid,
        agent: agent.as_ref(),
        run_dir: &view.run_dir,
        live_generation,
        endpoints: &endpoints,
        quarantined: &quarantined,
        conntrack: conntrack.as_ref(),
        unreadable: &unreadable,
    });
    let endpoints = endpoints
        .into_iter()
        .map(|state| {
            let row = state.endpoint.counter_row;
            let counters = row.and_then(|row| table.as_ref()?.row(row)).map(|row| {
                let mut lines = counter_lines(row);
                lines.retain(|line| line.from_workload + line.to_workload > 0);
                lines
            });
            EndpointReport { state, counters }
        })
        .collect();
    Ok(Report {
        health,
        problems,
        agent_pid,
        live_generation,
        attached_interfaces: pinned_interfaces(pins),
        endpoints,
        quarantined,
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

fn render_quarantine(
    out: &mut String,
    status: &Status,
    quarantined: &[QuarantineState],
) -> std::fmt::Result {
    if status.quarantine.is_empty() {
        return writeln!(
            out,
            "\nquarantine:  off: a vNIC no endpoint is registered for is left alone and \
             passes everything (zpr run --quarantine GLOBS)"
        );
    }
    let passes = if status.quarantine_allows_dhcp {
        "ARP, neighbour discovery and DHCP"
    } else {
        "ARP and neighbour discovery"
    };
    writeln!(
        out,
        "\nquarantine:  {}: an unregistered vNIC they match passes only {passes}",
        status.quarantine.join(",")
    )?;
    if quarantined.is_empty() {
        return writeln!(out, "  no vNIC is quarantined");
    }
    writeln!(
        out,
        "  {:<16} {:>7}  {:<8}",
        "INTERFACE", "IFINDEX", "ATTACHED"
    )?;
    for state in quarantined {
        writeln!(
            out,
            "  {:<16} {:>7}  {:<8}",
            state.vnic.interface,
            state.vnic.ifindex,
            if state.attached { "yes" } else { "no" }
        )?;
    }
    Ok(())
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
        let source = match (&status.store, status.revision) {
            (Some(store), Some(revision)) => format!("{store} at revision {revision}"),
            (Some(store), None) => store.clone(),
            (None, _) => status
                .policies
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        };
        writeln!(
            out,
            "policy:      generation {} applied {applied}{latency}; {} statements from {source}",
            status.generation, status.statements,
        )?;
        if let Some(heard_at) = status.store_heard_at {
            writeln!(out, "store:       last answered {}", ago(heard_at))?;
        }
        if let Some(pending) = status.pending_revision {
            writeln!(
                out,
                "pending:     revision {pending} read, not applied (see the problems above)"
            )?;
        }
        if let Some(node) = &status.node {
            let placed = status
                .placed_endpoints
                .map_or_else(|| "?".to_owned(), |n| n.to_string());
            let id = status.tenancy_id.as_deref().unwrap_or("none");
            writeln!(
                out,
                "node:        {node}, {placed} endpoints placed on it; tenancy id {id}"
            )?;
        }
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
    writeln!(
        out,
        "\nendpoints on this host (packets both ways; `zpr status --endpoint NAME` \
         shows why):"
    )?;
    writeln!(
        out,
        "  {:<16} {:<16} {:>7}  {:<8} {:<9} {:<8} {:>12} {:>12}",
        "NAME", "INTERFACE", "IFINDEX", "MODE", "TAGGED", "ATTACHED", "PASSED", "DROPPED"
    )?;
    for endpoint in &report.endpoints {
        let state = &endpoint.state;
        let ifindex = state
            .endpoint
            .ifindex
            .map_or("absent".to_owned(), |i| i.to_string());
        let yes_no = |yes: bool| if yes { "yes" } else { "no" };
        let (dropped, passed) = endpoint.dropped_and_passed().map_or_else(
            || ("-".to_owned(), "-".to_owned()),
            |(dropped, passed)| (dropped.to_string(), passed.to_string()),
        );
        writeln!(
            out,
            "  {:<16} {:<16} {:>7}  {:<8} {:<9} {:<8} {passed:>12} {dropped:>12}",
            state.endpoint.name,
            state.endpoint.interface,
            ifindex,
            state.endpoint.mode,
            yes_no(state.endpoint.protected),
            yes_no(state.attached)
        )?;
    }
    if let Some(status) = &report.agent {
        render_quarantine(&mut out, status, &report.quarantined)?;
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
    writeln!(out, "\npackets by reason, on every vNIC:")?;
    render_counter_lines(&mut out, &report.counters)?;
    writeln!(
        out,
        "\nevents:      {} lost (ring buffer full), {} rate-limited",
        report.events.lost, report.events.rate_limited
    )?;
    Ok(out)
}

fn render_counter_lines(out: &mut String, lines: &[CounterLine]) -> std::fmt::Result {
    writeln!(
        out,
        "  {:<22} {:>14} {:>14}",
        "REASON", "FROM-WORKLOAD", "TO-WORKLOAD"
    )?;
    for line in lines {
        let verdict = if line.drop { "drop" } else { "pass" };
        writeln!(
            out,
            "  {:<22} {:>14} {:>14}  ({verdict})",
            line.reason, line.from_workload, line.to_workload
        )?;
    }
    Ok(())
}

/// `zpr status --endpoint NAME`.
fn render_endpoint(endpoint: &EndpointReport) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    let state = &endpoint.state;
    let vnic = match state.endpoint.ifindex {
        Some(ifindex) => format!("{} (ifindex {ifindex})", state.endpoint.interface),
        None => format!("{} (absent)", state.endpoint.interface),
    };
    writeln!(
        out,
        "endpoint:    {} on {vnic}: {}, {}, {}",
        state.endpoint.name,
        state.endpoint.mode,
        if state.endpoint.protected {
            "tagged"
        } else {
            "untagged (not enforced)"
        },
        if state.attached {
            "attached"
        } else {
            "NOT attached"
        }
    )?;
    match &endpoint.counters {
        None => writeln!(
            out,
            "counters:    none of its own: the host has more local endpoints than counter \
             rows, so its packets count in the host's totals only"
        )?,
        Some(lines) if lines.is_empty() => writeln!(out, "counters:    no packet yet")?,
        Some(lines) => {
            writeln!(
                out,
                "packets by reason (reasons never counted are left out):"
            )?;
            render_counter_lines(&mut out, lines)?;
        }
    }
    Ok(out)
}
