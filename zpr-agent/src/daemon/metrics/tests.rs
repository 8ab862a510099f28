//! The exposition's names and series, and the dashboard's use of them.

use std::collections::BTreeSet;

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, registry::Registry};
use zpr_common::{
    Direction,
    counters::{Counter, CounterRow, Reason},
};

use super::{AgentMetrics, ReloadOutcome, families, scrape::Scrape};
use crate::{
    daemon::{
        AttachedEndpoint, EndpointState, Health,
        statement_usage::{StatementUsage, UsageReport},
    },
    datapath::{ConntrackSummary, CounterTable, EventStats, Fill},
};

/// A host whose maps and counters are all readable; `Fresh`: all empty;
/// `Busy`: app-1's vNIC (row 1) dropped and passed packets.
#[derive(Debug)]
enum Host {
    Fresh,
    Busy,
}

fn endpoint(name: &str, counter_row: Option<u32>) -> EndpointState {
    EndpointState {
        endpoint: AttachedEndpoint {
            name: name.to_owned(),
            interface: format!("zpr-{name}"),
            ifindex: Some(7),
            mode: "enforce".to_owned(),
            protected: true,
            counter_row,
        },
        attached: true,
    }
}

impl Collector for Host {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        let counters = match self {
            Host::Fresh => CounterTable::default(),
            Host::Busy => {
                let mut app = CounterRow::ZERO;
                *app.get_mut(Direction::ToWorkload, Reason::NoPolicy) = Counter {
                    packets: 3,
                    bytes: 180,
                };
                *app.get_mut(Direction::FromWorkload, Reason::NewFlow) = Counter {
                    packets: 1,
                    bytes: 60,
                };
                let mut other = CounterRow::ZERO;
                *other.get_mut(Direction::ToWorkload, Reason::NotProtected) = Counter {
                    packets: 5,
                    bytes: 500,
                };
                CounterTable::from_rows([(1, app), (2, other)])
            }
        };
        let usage = match self {
            Host::Fresh => UsageReport::default(),
            Host::Busy => UsageReport {
                statements: vec![StatementUsage {
                    statement: "web:3".to_owned(),
                    fingerprint: 0,
                    flows: 7,
                    last_allowed_at: Some(1),
                    since_generation: 1,
                    since: 1,
                }],
                ..UsageReport::default()
            },
        };
        let scrape = Scrape {
            counters: Some(counters),
            usage: std::sync::Arc::new(usage),
            fill: vec![Fill {
                map: "ZPR_POLICY",
                entries: 0,
                capacity: 1024,
            }],
            conntrack: Some(ConntrackSummary::default()),
            events: Some(EventStats::default()),
            live_generation: Some(1),
            // db-1 is beyond --metrics-endpoints (the first 2 by name).
            endpoints: vec![
                endpoint("db-1", Some(2)),
                endpoint("app-1", Some(1)),
                endpoint("app-2", None),
            ],
            health: Some(Health::Protected),
            ..Scrape::default()
        };
        families::encode(&scrape, 2, 1000, encoder)
    }
}

fn exposition(metrics: &AgentMetrics) -> String {
    exposition_of(metrics, Host::Fresh)
}

fn exposition_of(metrics: &AgentMetrics, host: Host) -> String {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    registry.register_collector(Box::new(host));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

/// `name{labels} value` lines, as (series, value).
fn samples(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .collect()
}

fn sample_names(text: &str) -> BTreeSet<String> {
    samples(text)
        .into_iter()
        .map(|(series, _)| series.split('{').next().unwrap_or(series).to_owned())
        .collect()
}

#[test]
fn every_series_exists_at_zero_from_the_start() {
    let text = exposition(&AgentMetrics::default());
    let samples = samples(&text);
    let value = |series: &str| {
        samples
            .iter()
            .find(|(name, _)| *name == series)
            .map(|(_, value)| *value)
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
    };
    for direction in Direction::ALL {
        for reason in Reason::ALL {
            let verdict = if reason.is_drop() { "drop" } else { "pass" };
            for metric in ["zpr_packets_total", "zpr_bytes_total"] {
                let series = format!(
                    "{metric}{{direction=\"{}\",reason=\"{}\",verdict=\"{verdict}\"}}",
                    direction.name(),
                    reason.name()
                );
                assert_eq!(value(&series), "0");
            }
        }
        for verdict in ["allowed", "dropped", "audited"] {
            let series = format!(
                "zpr_new_flows_total{{direction=\"{}\",verdict=\"{verdict}\"}}",
                direction.name()
            );
            assert_eq!(value(&series), "0");
        }
    }
    for outcome in ["applied", "failed", "held-back"] {
        assert_eq!(
            value(&format!(
                "zpr_policy_reloads_total{{outcome=\"{outcome}\"}}"
            )),
            "0"
        );
    }
    for table in ["established", "opening"] {
        assert_eq!(
            value(&format!(
                "zpr_conntrack_evictions_total{{table=\"{table}\"}}"
            )),
            "0"
        );
    }
    for series in [
        "zpr_policy_apply_duration_seconds_count",
        "zpr_conntrack_pickups_total",
        "zpr_conntrack_confirmations_refused_total",
        "zpr_events_lost_total",
        "zpr_events_rate_limited_total",
        "zpr_events_dropped_total{consumer=\"flow-log\"}",
        "zpr_events_dropped_total{consumer=\"monitor\"}",
        "zpr_flow_log_records_total",
        "zpr_flow_log_write_failures_total",
        "zpr_repairs_total",
        "zpr_vnics_quarantined",
    ] {
        assert_eq!(value(series), "0");
    }
    assert_eq!(value("zpr_health{state=\"protected\"}"), "1");
    assert_eq!(value("zpr_health{state=\"degraded\"}"), "0");
    assert_eq!(value("zpr_map_entries_limit{map=\"ZPR_CONNTRACK\"}"), "0");
    assert!(text.contains("zpr_build_info{version=\""), "{text}");
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn reloads_are_counted_by_outcome_and_timed() {
    let metrics = AgentMetrics::default();
    metrics.reloaded(ReloadOutcome::Applied);
    metrics.applied_in(0.004);
    metrics.reloaded(ReloadOutcome::HeldBack);
    let text = exposition(&metrics);
    let samples = samples(&text);
    let value = |series: &str| samples.iter().find(|(name, _)| *name == series).unwrap().1;
    assert_eq!(value("zpr_policy_reloads_total{outcome=\"applied\"}"), "1");
    assert_eq!(
        value("zpr_policy_reloads_total{outcome=\"held-back\"}"),
        "1"
    );
    assert_eq!(value("zpr_policy_reloads_total{outcome=\"failed\"}"), "0");
    assert_eq!(value("zpr_policy_apply_duration_seconds_count"), "1");
    assert_eq!(
        value("zpr_policy_apply_duration_seconds_bucket{le=\"0.004\"}"),
        "1"
    );
}

/// Every name a Grafana query of deploy/grafana/zpr.json uses.
fn dashboard_metric_names() -> BTreeSet<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../../../deploy/grafana/zpr.json")).unwrap();
    let mut queries = Vec::new();
    collect_queries(&dashboard, &mut queries);
    assert!(!queries.is_empty());
    queries
        .iter()
        .flat_map(|query| {
            query
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .filter(|word| word.starts_with("zpr_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn collect_queries(value: &serde_json::Value, queries: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(fields) => {
            for (key, field) in fields {
                match field {
                    serde_json::Value::String(query)
                        if matches!(key.as_str(), "expr" | "query" | "definition") =>
                    {
                        queries.push(query.clone())
                    }
                    _ => collect_queries(field, queries),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_queries(item, queries);
            }
        }
        _ => {}
    }
}

#[test]
fn endpoints_have_series_of_what_their_vnic_counted_up_to_the_limit() {
    let text = exposition_of(&AgentMetrics::default(), Host::Busy);
    let series: Vec<&str> = samples(&text)
        .into_iter()
        .filter(|(name, _)| name.starts_with("zpr_endpoint_"))
        .map(|(name, _)| name)
        .collect();
    let dropped = "zpr_endpoint_packets_total{endpoint=\"app-1\",direction=\"to-workload\",\
                   reason=\"no-policy\",verdict=\"drop\"}";
    assert!(
        samples(&text).contains(&(dropped, "3")),
        "no {dropped} 3 in:\n{text}"
    );
    let bytes = "zpr_endpoint_bytes_total{endpoint=\"app-1\",direction=\"from-workload\",\
                 reason=\"new-flow\",verdict=\"pass\"}";
    assert!(samples(&text).contains(&(bytes, "60")), "{text}");
    // Only what counted; only the first two endpoints by name (db-1 is
    // the third); app-2 has no row of its own, so no counter series.
    let app1 = series
        .iter()
        .filter(|name| name.starts_with("zpr_endpoint_packets_total{endpoint=\"app-1\""))
        .count();
    assert_eq!(app1, 2, "{series:#?}");
    assert!(!text.contains("db-1"), "{text}");
    assert!(
        text.contains("zpr_endpoint_attached{endpoint=\"app-2\""),
        "{text}"
    );
    assert!(
        !series
            .iter()
            .any(|name| name.starts_with("zpr_endpoint_packets_total{endpoint=\"app-2\"")),
        "{series:#?}"
    );
    assert!(
        samples(&text).contains(&(
            "zpr_statement_flows_total{policy=\"web\",statement=\"web:3\"}",
            "7"
        )),
        "{text}"
    );
    // The host's totals are every row's, the rows beyond the limit too.
    assert!(
        samples(&text).contains(&(
            "zpr_packets_total{direction=\"to-workload\",reason=\"not-protected\",verdict=\"pass\"}",
            "5"
        )),
        "{text}"
    );
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let exported = sample_names(&exposition_of(&AgentMetrics::default(), Host::Busy));
    let used = dashboard_metric_names();
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries {unknown:?}, which the agent does not export ({exported:?})"
    );
    for panel in [
        "zpr_packets_total",
        "zpr_new_flows_total",
        "zpr_map_entries",
        "zpr_endpoint_packets_total",
    ] {
        assert!(used.contains(panel), "no panel uses {panel}");
    }
}

#[test]
fn metrics_address_is_an_address_or_none() {
    use super::MetricsAddress;
    assert_eq!("none".parse(), Ok(MetricsAddress::Off));
    assert_eq!(
        super::DEFAULT_ADDRESS.parse::<MetricsAddress>().unwrap(),
        MetricsAddress::At("127.0.0.1:9565".parse().unwrap())
    );
    assert!("localhost".parse::<MetricsAddress>().is_err());
}
