//! The statements observed flows need (`zpr suggest`): for each flow that
//! was dropped or audited, a statement in the inventory's terms. Tagged
//! endpoints are named by a security attribute they carry (the one fewest
//! endpoints of their VCN carry), never by address; an untagged or
//! external address is named by itself (/32 or /128), never by a wider
//! prefix. Flows of one shape (the same scope, source and destination)
//! share one statement, their ports merged into a list of ranges. Each
//! statement is built as syntax and printed by the formatter, so what is
//! suggested parses as written.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use crate::{
    inventory::{Endpoint as InventoryEndpoint, Inventory},
    lang::{
        Attribute, Endpoint, Filter, IpPrefix, PortRange, Protocol, Scope, Span, Spanned,
        Statement, StatementBody, StatementId, attribute::unquoted_text, format_statement,
    },
};

/// One flow as a flow log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservedFlow {
    pub source: IpAddr,
    pub destination: IpAddr,
    /// The IP protocol number.
    pub protocol: u8,
    /// The destination port (0 for ICMP).
    pub port: u16,
}

/// A suggested statement and why.
#[derive(Debug, Clone)]
pub struct Suggestion {
    pub statement: Statement,
    /// The flows it allows that were seen.
    pub flows: usize,
    pub example: ObservedFlow,
    /// Endpoints it allows too that took part in none of those flows
    /// (they carry the same attribute): what it opens beyond the traffic.
    pub also_covers: Vec<String>,
    /// The ports each source and destination pair used, when the pairs
    /// used different ones: the statement allows every pair all of them.
    pub ports_by_pair: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Suggested {
    pub suggestions: Vec<Suggestion>,
    /// Flows no statement of the language can allow without allowing
    /// more (why, for each).
    pub inexpressible: Vec<(ObservedFlow, String)>,
    /// Flows between untagged addresses: nothing enforces them.
    pub unenforced: usize,
    /// Ports were widened past those seen (`--widen-ports`).
    pub widened: bool,
}

use super::{
    PROTOCOL_ICMP as ICMP, PROTOCOL_ICMPV6 as ICMPV6, PROTOCOL_TCP as TCP, PROTOCOL_UDP as UDP,
};

/// A statement's shape, ports aside.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Shape {
    scope: (String, String),
    source: String,
    destination: String,
    protocol: u8,
}

struct Gathered {
    scope: Scope,
    source: Endpoint,
    destination: Endpoint,
    ports: std::collections::BTreeSet<u16>,
    flows: Vec<ObservedFlow>,
}

/// How far ports may be merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// Exactly the ports seen, as ranges of consecutive ones.
    Seen,
    /// One range from the lowest port seen to the highest (`--widen-ports`):
    /// fewer statements' worth of text, ports that were not seen.
    Widened,
}

pub fn suggest(inventory: &Inventory, flows: &[ObservedFlow], ports: Ports) -> Suggested {
    let mut gathered: BTreeMap<Shape, Gathered> = BTreeMap::new();
    let mut suggested = Suggested {
        widened: ports == Ports::Widened,
        ..Suggested::default()
    };
    for &flow in flows {
        match shape(inventory, flow) {
            Ok(None) => suggested.unenforced += 1,
            Ok(Some((shape, scope, source, destination))) => {
                let entry = gathered.entry(shape).or_insert_with(|| Gathered {
                    scope,
                    source,
                    destination,
                    ports: Default::default(),
                    flows: Vec::new(),
                });
                entry.ports.insert(flow.port);
                entry.flows.push(flow);
            }
            Err(why) => suggested.inexpressible.push((flow, why)),
        }
    }
    for (shape, group) in gathered {
        let merged = match ports {
            Ports::Seen => ranges(&group.ports),
            Ports::Widened => ranges(&group.ports)
                .first()
                .zip(ranges(&group.ports).last())
                .map(|(low, high)| PortRange {
                    low: low.low,
                    high: high.high,
                })
                .into_iter()
                .collect(),
        };
        let protocol = match shape.protocol {
            TCP => Protocol::Tcp { ports: merged },
            UDP => Protocol::Udp { ports: merged },
            ICMP => Protocol::Icmp,
            _ => Protocol::Icmpv6,
        };
        let seen: Vec<&str> = group
            .flows
            .iter()
            .flat_map(|flow| [flow.source, flow.destination])
            .filter_map(|address| inventory.endpoint_at(address))
            .map(|endpoint| endpoint.name.as_str())
            .collect();
        let also_covers = [&group.source, &group.destination]
            .into_iter()
            .filter_map(|side| match side {
                Endpoint::Attribute(attribute) => Some(attribute),
                _ => None,
            })
            .flat_map(|attribute| {
                inventory
                    .endpoints()
                    .iter()
                    .filter(|endpoint| endpoint.carries(attribute))
                    .map(|endpoint| endpoint.name.clone())
            })
            .filter(|name| !seen.contains(&name.as_str()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        suggested.suggestions.push(Suggestion {
            statement: Statement {
                id: StatementId {
                    policy: Arc::from("suggested"),
                    line: 0,
                },
                line_start: 0,
                body: Arc::new(StatementBody {
                    span: Span::default(),
                    scope: group.scope,
                    source: spanned(group.source),
                    destination: spanned(group.destination),
                    filters: vec![spanned(Filter::Protocol(protocol))],
                }),
            },
            flows: group.flows.len(),
            example: group.flows[0],
            also_covers,
            ports_by_pair: ports_by_pair(inventory, &group.flows),
        });
    }
    suggested
}

fn spanned<T>(node: T) -> Spanned<T> {
    Spanned {
        node,
        span: Span::default(),
    }
}

/// `app-1 -> db: 1521,6200` per pair, when the pairs' ports differ.
fn ports_by_pair(inventory: &Inventory, flows: &[ObservedFlow]) -> Vec<String> {
    let name = |address: IpAddr| {
        inventory
            .endpoint_at(address)
            .map_or_else(|| address.to_string(), |endpoint| endpoint.name.clone())
    };
    let mut pairs: BTreeMap<(String, String), std::collections::BTreeSet<u16>> = BTreeMap::new();
    for flow in flows {
        pairs
            .entry((name(flow.source), name(flow.destination)))
            .or_default()
            .insert(flow.port);
    }
    let first = pairs.values().next().cloned();
    if pairs.values().all(|ports| Some(ports) == first.as_ref()) {
        return Vec::new();
    }
    pairs
        .into_iter()
        .map(|((from, to), ports)| {
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            format!("{from} -> {to}: {}", ports.join(","))
        })
        .collect()
}

/// Observed ports as the fewest ranges that hold exactly them.
fn ranges(ports: &std::collections::BTreeSet<u16>) -> Vec<PortRange> {
    let mut ranges: Vec<PortRange> = Vec::new();
    for &port in ports {
        match ranges.last_mut() {
            Some(last) if last.high.checked_add(1) == Some(port) => last.high = port,
            _ => ranges.push(PortRange {
                low: port,
                high: port,
            }),
        }
    }
    ranges
}

type Placed = (Shape, Scope, Endpoint, Endpoint);

/// The statement shape `flow` needs; `None` when neither side is tagged.
fn shape(inventory: &Inventory, flow: ObservedFlow) -> Result<Option<Placed>, String> {
    if ![TCP, UDP, ICMP, ICMPV6].contains(&flow.protocol) {
        return Err(format!(
            "IP protocol {} cannot be named in a statement: allowing it would allow every \
             protocol",
            flow.protocol
        ));
    }
    if (flow.protocol == TCP || flow.protocol == UDP) && flow.port == 0 {
        return Err("port 0 cannot be named in a statement".to_owned());
    }
    let tagged = |address: IpAddr| {
        inventory
            .endpoint_at(address)
            .filter(|endpoint| endpoint.is_protected())
    };
    let location = |endpoint: &InventoryEndpoint| -> Result<Attribute, String> {
        let vcn = inventory.vcn_of(endpoint);
        vcn.attribute.clone().ok_or_else(|| {
            format!(
                "VCN {} carries no security attribute, so no statement can name it",
                vcn.name
            )
        })
    };
    let (scope, source, destination) = match (tagged(flow.source), tagged(flow.destination)) {
        (None, None) => return Ok(None),
        (Some(source), Some(destination)) => {
            let (from, to) = (location(source)?, location(destination)?);
            let scope = if std::ptr::eq(inventory.vcn_of(source), inventory.vcn_of(destination)) {
                Scope::SameVcn { vcn: spanned(from) }
            } else {
                Scope::CrossVcn {
                    source_vcn: spanned(from),
                    destination_vcn: spanned(to),
                }
            };
            (
                scope,
                Endpoint::Attribute(specific(inventory, source)),
                Endpoint::Attribute(specific(inventory, destination)),
            )
        }
        (Some(source), None) => (
            Scope::SameVcn {
                vcn: spanned(location(source)?),
            },
            Endpoint::Attribute(specific(inventory, source)),
            Endpoint::Prefix(host(flow.destination)),
        ),
        (None, Some(destination)) => (
            Scope::SameVcn {
                vcn: spanned(location(destination)?),
            },
            Endpoint::Prefix(host(flow.source)),
            Endpoint::Attribute(specific(inventory, destination)),
        ),
    };
    let shape = Shape {
        scope: match &scope {
            Scope::SameVcn { vcn } => (unquoted_text(&vcn.node), String::new()),
            Scope::CrossVcn {
                source_vcn,
                destination_vcn,
            } => (
                unquoted_text(&source_vcn.node),
                unquoted_text(&destination_vcn.node),
            ),
        },
        source: side_text(&source),
        destination: side_text(&destination),
        protocol: flow.protocol,
    };
    Ok(Some((shape, scope, source, destination)))
}

fn side_text(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Attribute(attribute) => unquoted_text(attribute),
        Endpoint::Prefix(prefix) => format!("{}/{}", prefix.addr, prefix.len),
        Endpoint::AllEndpoints | Endpoint::OsnServices => String::new(),
    }
}

fn host(address: IpAddr) -> IpPrefix {
    IpPrefix {
        addr: address,
        len: if address.is_ipv4() { 32 } else { 128 },
    }
}

/// Of the attributes `endpoint` carries, the one the fewest endpoints of
/// its VCN carry (the least it opens to others), then the first by text.
fn specific(inventory: &Inventory, endpoint: &InventoryEndpoint) -> Attribute {
    let vcn = inventory.vcn_of(endpoint);
    endpoint
        .attributes
        .iter()
        .min_by_key(|attribute| {
            let carriers = inventory
                .endpoints()
                .iter()
                .filter(|other| std::ptr::eq(inventory.vcn_of(other), vcn))
                .filter(|other| other.carries(attribute))
                .count();
            (carriers, unquoted_text(attribute))
        })
        .cloned()
        .expect("a protected endpoint carries an attribute")
}

impl Suggested {
    /// A policy file: each statement after a comment saying what needed
    /// it and what else it allows.
    pub fn policy_text(&self) -> String {
        let mut text = String::from("# Suggested by `zpr suggest` from observed flows.\n");
        if self.widened {
            text += "# Ports are widened to one range per statement (--widen-ports): ports \
                     that were never seen are allowed too.\n";
        }
        for suggestion in &self.suggestions {
            let example = suggestion.example;
            text += &format!(
                "\n# {} flow(s), such as {} -> {} {}\n",
                suggestion.flows,
                example.source,
                example.destination,
                protocol_text(example)
            );
            if !suggestion.ports_by_pair.is_empty() {
                text += &format!(
                    "# allows each pair every port listed; seen: {}\n",
                    suggestion.ports_by_pair.join("; ")
                );
            }
            if !suggestion.also_covers.is_empty() {
                text += &format!(
                    "# also allows endpoints that carry the same attribute but took part in \
                     none of them: {}\n",
                    suggestion.also_covers.join(", ")
                );
            }
            text += &format_statement(&suggestion.statement);
            text.push('\n');
        }
        for (flow, why) in &self.inexpressible {
            text += &format!(
                "\n# not suggested: {} -> {} {}: {why}\n",
                flow.source,
                flow.destination,
                protocol_text(*flow)
            );
        }
        text
    }
}

fn protocol_text(flow: ObservedFlow) -> String {
    match flow.protocol {
        TCP => format!("tcp/{}", flow.port),
        UDP => format!("udp/{}", flow.port),
        ICMP => "icmp".to_owned(),
        ICMPV6 => "icmpv6".to_owned(),
        other => format!("protocol {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::{InputText, check};

    fn three_tier() -> (String, Inventory) {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/three-tier/inventory.yaml"),
        )
        .unwrap();
        let inventory = Inventory::from_yaml_str(&text).unwrap();
        (text, inventory)
    }

    fn flow(source: &str, destination: &str, protocol: u8, port: u16) -> ObservedFlow {
        ObservedFlow {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
            protocol,
            port,
        }
    }

    #[test]
    fn the_suggestion_allows_every_observed_flow_and_says_what_else() {
        let (text, inventory) = three_tier();
        let observed = [
            flow("198.51.100.10", "10.0.1.10", TCP, 80),
            flow("198.51.100.11", "10.0.1.10", TCP, 443),
            flow("10.0.1.10", "10.0.2.10", TCP, 80),
            flow("10.0.1.10", "10.0.2.11", TCP, 80),
            flow("10.0.2.10", "10.1.1.10", TCP, 1521),
            flow("10.0.2.11", "10.1.1.10", TCP, 1522),
            flow("10.0.2.11", "10.1.1.10", TCP, 1523),
            flow("10.0.2.10", "10.1.1.10", TCP, 6200),
            flow("10.0.2.10", "10.1.1.10", 47, 0),
            flow("198.51.100.10", "198.51.100.11", TCP, 22),
        ];
        let suggested = suggest(&inventory, &observed, Ports::Seen);
        assert_eq!(suggested.unenforced, 1);
        assert_eq!(suggested.inexpressible.len(), 1, "GRE is not nameable");
        let policy = suggested.policy_text();
        // lb's two callers are two /32s; app-1 and app-2 share a statement
        // (one attribute); the database's ports are merged into ranges.
        assert_eq!(suggested.suggestions.len(), 4, "{policy}");
        assert!(policy.contains("'198.51.100.10'"), "{policy}");
        assert!(!policy.contains("0.0.0.0/0"), "{policy}");
        assert!(policy.contains("protocol='tcp/1521-1523,6200'"), "{policy}");
        assert!(
            policy.contains("seen: app-1 -> db: 1521,6200; app-2 -> db: 1522,1523"),
            "{policy}"
        );
        let widened = suggest(&inventory, &observed, Ports::Widened).policy_text();
        assert!(widened.contains("protocol='tcp/1521-6200'"), "{widened}");
        assert!(widened.contains("never seen are allowed too"), "{widened}");
        assert!(
            policy.contains("in ocvtc002.networks:back-end VCN"),
            "{policy}"
        );

        let loaded = check(
            Some(&InputText::inventory("inventory.yaml".into(), text)),
            &[InputText::policy(
                "suggested.zpr".into(),
                "suggested".into(),
                policy.clone(),
            )],
        );
        let inputs = loaded
            .inputs
            .unwrap_or_else(|| panic!("{}\n{policy}", loaded.report));
        for observed in observed.iter().filter(|flow| flow.protocol == TCP) {
            let facts = crate::compile::PacketFacts::tcp(
                observed.source,
                observed.destination,
                observed.port,
            );
            let explained =
                crate::compile::explain(&inputs.inventory, &inputs.policies, &inputs.plan, &facts)
                    .unwrap();
            assert!(explained.allowed(), "{observed:?}:\n{explained}\n{policy}");
        }
        // Nothing more for the database than the ports seen.
        let facts = crate::compile::PacketFacts::tcp(
            "10.0.2.10".parse().unwrap(),
            "10.1.1.10".parse().unwrap(),
            22,
        );
        let explained =
            crate::compile::explain(&inputs.inventory, &inputs.policies, &inputs.plan, &facts)
                .unwrap();
        assert!(!explained.allowed(), "{explained}");
    }

    #[test]
    fn ports_merge_into_exact_ranges() {
        let ports = [22, 80, 81, 82, 443, 65535].into_iter().collect();
        let merged: Vec<(u16, u16)> = ranges(&ports).iter().map(|r| (r.low, r.high)).collect();
        assert_eq!(merged, [(22, 22), (80, 82), (443, 443), (65535, 65535)]);
    }
}
