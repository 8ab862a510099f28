//! Every series a scrape exports, by name: what the README's "Metrics"
//! section lists. Label values come from fixed sets (reasons, directions,
//! map names, outcomes) and the names of at most `--metrics-endpoints`
//! local endpoints (and the node's); never an address or attribute value.

use std::fmt;

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge, info::Info},
};
use zpr_common::{Direction, counters::Reason, maps};

use super::scrape::Scrape;
use crate::{
    clock::unix_now,
    daemon::{EndpointState, Health, Status},
    datapath::{ConntrackSummary, TableFill},
};

/// Labels of one series: fixed names, values from bounded sets.
type Labels = Vec<(&'static str, String)>;

/// New flows by verdict, from the reasons their first packets are counted
/// under. Denied flows are not tracked, so each denied attempt (a retried
/// SYN too) counts again.
const NEW_FLOWS: [(&str, &[Reason]); 3] = [
    ("allowed", &[Reason::NewFlow, Reason::PickedUp]),
    ("dropped", &[Reason::NoPolicy, Reason::ConntrackFull]),
    ("audited", &[Reason::Audited]),
];

pub(super) fn encode(
    scrape: &Scrape,
    endpoints: usize,
    statements: usize,
    mut out: DescriptorEncoder,
) -> fmt::Result {
    build_info(&mut out)?;
    packets_and_bytes(scrape, &mut out)?;
    policy(scrape, &mut out)?;
    maps_and_conntrack(scrape, &mut out)?;
    if let Some(events) = &scrape.events {
        counter(
            &mut out,
            "zpr_events_lost",
            "Drop and new-flow events the kernel could not send: the ring buffer was full",
            [(Labels::new(), events.lost)],
        )?;
        counter(
            &mut out,
            "zpr_events_rate_limited",
            "Events not sent: over the per-CPU budget (--events-per-second)",
            [(Labels::new(), events.rate_limited)],
        )?;
    }
    health(scrape, &mut out)?;
    per_endpoint(scrape, endpoints, &mut out)?;
    per_statement(scrape, statements, &mut out)
}

fn build_info(out: &mut DescriptorEncoder) -> fmt::Result {
    let info = Info::new(vec![
        ("version", env!("CARGO_PKG_VERSION").to_owned()),
        (
            "commit",
            option_env!("ZPR_GIT_COMMIT")
                .unwrap_or("unknown")
                .to_owned(),
        ),
    ]);
    // Info metrics are named without their `_info` suffix: the encoder adds it.
    info.encode(out.encode_descriptor(
        "zpr_build",
        "The zpr binary: its version and the git commit it was built from",
        None,
        MetricType::Info,
    )?)
}

fn packets_and_bytes(scrape: &Scrape, out: &mut DescriptorEncoder) -> fmt::Result {
    let Some(counters) = &scrape.counters else {
        return Ok(());
    };
    let by_reason = |value: fn(zpr_common::counters::Counter) -> u64| {
        Direction::ALL.into_iter().flat_map(move |direction| {
            Reason::ALL.into_iter().map(move |reason| {
                let labels = vec![
                    ("direction", direction.name().to_owned()),
                    ("reason", reason.name().to_owned()),
                    ("verdict", verdict(reason).to_owned()),
                ];
                (labels, value(counters.get(direction, reason)))
            })
        })
    };
    counter(
        out,
        "zpr_packets",
        "Packets zpr's programs saw, by direction, the reason they passed or were \
         dropped, and that verdict",
        by_reason(|counter| counter.packets),
    )?;
    counter(
        out,
        "zpr_bytes",
        "Bytes of those packets (layer 2 frames)",
        by_reason(|counter| counter.bytes),
    )?;
    let new_flows = Direction::ALL.into_iter().flat_map(|direction| {
        NEW_FLOWS.into_iter().map(move |(verdict, reasons)| {
            let labels = vec![
                ("direction", direction.name().to_owned()),
                ("verdict", verdict.to_owned()),
            ];
            let packets = reasons
                .iter()
                .map(|&reason| counters.get(direction, reason).packets)
                .sum();
            (labels, packets)
        })
    });
    counter(
        out,
        "zpr_new_flows",
        "New flows decided: allowed (new-flow, picked-up), dropped (no-policy, \
         conntrack-full; every denied attempt counts) or audited",
        new_flows,
    )
}

fn verdict(reason: Reason) -> &'static str {
    if reason.is_drop() { "drop" } else { "pass" }
}

fn policy(scrape: &Scrape, out: &mut DescriptorEncoder) -> fmt::Result {
    if let Some(generation) = scrape.live_generation {
        gauge(
            out,
            "zpr_policy_generation",
            "The policy generation the kernel enforces (0: none)",
            [(Labels::new(), i64::from(generation))],
        )?;
    }
    let agent = &scrape.agent;
    gauge(
        out,
        "zpr_policy_statements",
        "Statements of the policy this agent applied last",
        [(Labels::new(), agent.statements as i64)],
    )?;
    let count = |keep: fn(&EndpointState) -> bool| {
        scrape.endpoints.iter().filter(|state| keep(state)).count() as i64
    };
    gauge(
        out,
        "zpr_endpoints_local",
        "Endpoints of the inventory whose vNIC is on this host",
        [(
            Labels::new(),
            count(|state| state.endpoint.ifindex.is_some()),
        )],
    )?;
    gauge(
        out,
        "zpr_endpoints_attached",
        "Local endpoints whose vNIC runs zpr's programs both ways (the kernel's list of links)",
        [(Labels::new(), count(|state| state.attached))],
    )?;
    gauge(
        out,
        "zpr_endpoints_protected",
        "Local endpoints that are tagged (default-deny applies to them)",
        [(
            Labels::new(),
            count(|state| state.endpoint.ifindex.is_some() && state.endpoint.protected),
        )],
    )?;
    gauge(
        out,
        "zpr_endpoints_audit_mode",
        "Local endpoints in audit mode (decisions reported, nothing dropped)",
        [(
            Labels::new(),
            count(|state| state.endpoint.ifindex.is_some() && state.endpoint.mode == "audit"),
        )],
    )?;
    gauge(
        out,
        "zpr_vnics_quarantined",
        "vNICs here under quarantine (--quarantine): no endpoint is registered for them; \
         they pass only ARP and neighbour discovery (and DHCP when allowed)",
        [(Labels::new(), agent.quarantined.len() as i64)],
    )?;
    store(agent, out)
}

/// For agents whose inputs come from a store (a fleet's etcd).
fn store(agent: &Status, out: &mut DescriptorEncoder) -> fmt::Result {
    if agent.store.is_none() {
        return Ok(());
    }
    gauge(
        out,
        "zpr_store_revision",
        "The store revision of the policy this agent enforces (0: none applied yet)",
        [(Labels::new(), agent.revision.unwrap_or(0) as i64)],
    )?;
    gauge(
        out,
        "zpr_store_reachable",
        "1 while the store answers, 0 during an outage (the enforced policy stays)",
        [(Labels::new(), i64::from(agent.store_unreachable.is_none()))],
    )?;
    if let Some(heard_at) = agent.store_heard_at {
        gauge(
            out,
            "zpr_store_last_contact_seconds",
            "Seconds since the store last answered this agent",
            [(Labels::new(), unix_now().saturating_sub(heard_at) as i64)],
        )?;
    }
    Ok(())
}

fn maps_and_conntrack(scrape: &Scrape, out: &mut DescriptorEncoder) -> fmt::Result {
    let tables: Vec<(&'static str, &'static str, &TableFill)> = scrape
        .conntrack
        .iter()
        .flat_map(|conntrack| {
            [
                ("established", maps::CONNTRACK, &conntrack.established),
                ("opening", maps::CONNTRACK_OPENING, &conntrack.opening),
            ]
        })
        .collect();
    let map_label = |map: &str| vec![("map", map.to_owned())];
    let entries = scrape
        .fill
        .iter()
        .map(|fill| (map_label(fill.map), fill.entries as i64))
        .chain(
            tables
                .iter()
                .map(|(_, map, table)| (map_label(map), table.entries as i64)),
        );
    gauge(
        out,
        "zpr_map_entries",
        "Entries in each BPF map that grows (both Plan slots count; conntrack tables \
         count idle entries not yet evicted)",
        entries,
    )?;
    let limits = scrape
        .fill
        .iter()
        .map(|fill| (map_label(fill.map), i64::from(fill.capacity)))
        .chain(
            tables
                .iter()
                .map(|(_, map, table)| (map_label(map), i64::from(table.capacity))),
        );
    gauge(
        out,
        "zpr_map_entries_limit",
        "Entries each of those maps holds at most",
        limits,
    )?;
    let Some(conntrack) = &scrape.conntrack else {
        return Ok(());
    };
    gauge(
        out,
        "zpr_conntrack_live_flows",
        "Flows in each conntrack table whose idle timeout has not passed",
        tables
            .iter()
            .map(|(table, _, fill)| (vec![("table", (*table).to_owned())], fill.live as i64)),
    )?;
    conntrack_counters(conntrack, scrape, out)
}

fn conntrack_counters(
    conntrack: &ConntrackSummary,
    scrape: &Scrape,
    out: &mut DescriptorEncoder,
) -> fmt::Result {
    counter(
        out,
        "zpr_conntrack_evictions",
        "Flows each LRU table pushed out for newer ones: expected in opening under a \
         flood; in established, more flows were live than it holds",
        [
            (
                vec![("table", "established".to_owned())],
                conntrack.established_evicted,
            ),
            (
                vec![("table", "opening".to_owned())],
                conntrack.opening_evicted,
            ),
        ],
    )?;
    counter(
        out,
        "zpr_conntrack_confirmations_refused",
        "Flows seen both ways that the established table could not take",
        [(Labels::new(), conntrack.confirm_refused)],
    )?;
    if let Some(counters) = &scrape.counters {
        let picked_up = Direction::ALL
            .into_iter()
            .map(|direction| counters.get(direction, Reason::PickedUp).packets)
            .sum();
        counter(
            out,
            "zpr_conntrack_pickups",
            "Mid-stream TCP packets of allowed flows whose entry was gone, tracked again \
             (zpr_packets_total{reason=\"picked-up\"} summed over directions)",
            [(Labels::new(), picked_up)],
        )?;
    }
    Ok(())
}

fn health(scrape: &Scrape, out: &mut DescriptorEncoder) -> fmt::Result {
    if let Some(health) = scrape.health {
        gauge(
            out,
            "zpr_health",
            "1 for the health `zpr status` would report (protected: exit 0, degraded: \
             exit 3, not-enforcing: exit 1), 0 for the others",
            Health::ALL.into_iter().map(|state| {
                (
                    vec![("state", state.name().to_owned())],
                    i64::from(state == health),
                )
            }),
        )?;
    }
    counter(
        out,
        "zpr_repairs",
        "Times the agent found enforcement undone behind its back (pins removed, programs \
         detached, maps written by another process) and mended it",
        [(Labels::new(), scrape.agent.repairs)],
    )
}

/// The series of the first `limit` local endpoints by name: their vNIC's
/// counters (only the (direction, reason) pairs that counted), and whether
/// zpr runs on it. An endpoint that left has none.
fn per_endpoint(scrape: &Scrape, limit: usize, out: &mut DescriptorEncoder) -> fmt::Result {
    let mut endpoints: Vec<&EndpointState> = scrape.endpoints.iter().collect();
    endpoints.sort_by(|a, b| a.endpoint.name.cmp(&b.endpoint.name));
    endpoints.truncate(limit);
    let node = scrape.agent.node.clone();
    let named = |state: &EndpointState| {
        let mut labels = vec![("endpoint", state.endpoint.name.clone())];
        if let Some(node) = &node {
            labels.push(("node", node.clone()));
        }
        labels
    };
    gauge(
        out,
        "zpr_endpoint_attached",
        "1 when the local endpoint's vNIC runs zpr's programs both ways, else 0",
        endpoints.iter().map(|state| {
            let mut labels = named(state);
            labels.push(("interface", state.endpoint.interface.clone()));
            labels.push(("mode", state.endpoint.mode.clone()));
            (labels, i64::from(state.attached))
        }),
    )?;
    let Some(counters) = &scrape.counters else {
        return Ok(());
    };
    let counted = |value: fn(zpr_common::counters::Counter) -> u64| {
        endpoints.iter().flat_map(move |state| {
            let row = state.endpoint.counter_row.and_then(|row| counters.row(row));
            Direction::ALL.into_iter().flat_map(move |direction| {
                Reason::ALL.into_iter().filter_map(move |reason| {
                    let counter = row?.get(direction, reason);
                    (counter.packets > 0).then(|| {
                        let mut labels = named(state);
                        labels.push(("direction", direction.name().to_owned()));
                        labels.push(("reason", reason.name().to_owned()));
                        labels.push(("verdict", verdict(reason).to_owned()));
                        (labels, value(counter))
                    })
                })
            })
        })
    };
    counter(
        out,
        "zpr_endpoint_packets",
        "Packets on a local endpoint's vNIC, by direction, reason and verdict (pairs \
         that counted nothing have no series)",
        counted(|counter| counter.packets),
    )?;
    counter(
        out,
        "zpr_endpoint_bytes",
        "Bytes of those packets (layer 2 frames)",
        counted(|counter| counter.bytes),
    )
}

/// The flows each of the live policy's first `limit` statements allowed
/// here (`zpr usage`), as the agent last wrote them (every ten seconds).
fn per_statement(scrape: &Scrape, limit: usize, out: &mut DescriptorEncoder) -> fmt::Result {
    let node = &scrape.usage.node;
    counter(
        out,
        "zpr_statement_flows",
        "New flows a statement allowed on this host (stateless statements: packets), \
         as `zpr usage` shows them",
        scrape.usage.statements.iter().take(limit).map(|usage| {
            let mut labels = vec![
                ("policy", usage.policy().to_owned()),
                ("statement", usage.statement.clone()),
            ];
            if let Some(node) = node {
                labels.push(("node", node.clone()));
            }
            (labels, usage.flows)
        }),
    )
}

/// A counter family; `name` without `_total` (the encoder appends it).
fn counter(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    let mut metric = out.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        let counter = ConstCounter::new(value);
        // Without labels the family adds none: `name value`.
        counter.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, i64)>,
) -> fmt::Result {
    let mut metric = out.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        let gauge = ConstGauge::new(value);
        // Without labels the family adds none: `name value`.
        gauge.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}
