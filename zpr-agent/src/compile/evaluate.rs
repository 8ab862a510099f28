//! The reference evaluator: the meaning of a policy set, written straight
//! from zpr-language.md section 7 and design.md section 3, without the Plan.
//! It walks every statement and matches its selectors on the inventory; the
//! Plan lookup ([`super::lookup`]) is held to agree with it.

use std::net::IpAddr;

use super::decision::{
    Decision, DenyReason, Direction, PROTOCOL_ICMP, PROTOCOL_ICMPV6, PROTOCOL_TCP, PROTOCOL_UDP,
    PacketFacts, UnknownEndpoint, Verdict,
};
use crate::inventory::{Endpoint as InventoryEndpoint, Inventory, prefix};
use crate::lang::{Attribute, Endpoint, Filter, Policy, PortRange, Protocol, Scope, Statement};

/// What a packet crossing `endpoint`'s vNIC in `direction` meets.
pub fn decide(
    inventory: &Inventory,
    policies: &[Policy],
    facts: &PacketFacts,
    direction: Direction,
    endpoint: &str,
) -> Result<Verdict, UnknownEndpoint> {
    let local = inventory
        .endpoint(endpoint)
        .ok_or_else(|| UnknownEndpoint(endpoint.to_owned()))?;
    let decision = decide_at(inventory, policies, facts, direction, local);
    Ok(Verdict {
        decision,
        mode: local.mode,
    })
}

fn decide_at(
    inventory: &Inventory,
    policies: &[Policy],
    facts: &PacketFacts,
    direction: Direction,
    local: &InventoryEndpoint,
) -> Decision {
    if !local.is_protected() {
        return Decision::NotEnforced;
    }
    if direction == Direction::Egress
        && !local.owns(facts.src)
        && !(facts.is_neighbour_discovery() && is_neighbour_discovery_source(facts.src))
    {
        return Decision::Deny {
            reason: DenyReason::SpoofedSource,
        };
    }
    if facts.is_neighbour_discovery() {
        return Decision::NeighbourDiscovery;
    }
    if direction == Direction::Ingress && !local.owns(facts.dst) {
        return Decision::Deny {
            reason: DenyReason::ForeignDestination,
        };
    }
    let allowing: Vec<&Statement> = policies
        .iter()
        .flat_map(|policy| &policy.statements)
        .filter(|statement| check_statement(inventory, statement, facts).matches())
        .collect();
    if allowing.is_empty() {
        return Decision::Deny {
            reason: DenyReason::NoPolicy,
        };
    }
    let mut statements: Vec<_> = allowing.iter().map(|s| s.id.clone()).collect();
    statements.sort();
    statements.dedup();
    Decision::Allow {
        statements,
        stateless: allowing.iter().all(|s| s.is_stateless()),
    }
}

/// Neighbour discovery may come from a link-local address (fe80::/10) or,
/// during duplicate address detection, from the unspecified address.
pub fn is_neighbour_discovery_source(address: IpAddr) -> bool {
    match address {
        IpAddr::V6(v6) => v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80,
        IpAddr::V4(_) => false,
    }
}

/// Why a selector does not match an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectorMiss<'a> {
    /// An attribute selector, and no endpoint declares the address.
    NotAnEndpoint,
    LacksAttribute {
        endpoint: &'a str,
    },
    /// The endpoint's VCN does not carry the statement's location.
    OutsideLocation {
        endpoint: &'a str,
        vcn: &'a str,
        vcn_attribute: Option<&'a Attribute>,
    },
    OutsidePrefix,
    NotOsnService,
}

/// Why a statement's filters do not match a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterMiss {
    Protocol,
    Port,
    IcmpType,
    IcmpCode,
}

/// One statement against one packet, part by part; empty lists mean the
/// part matches.
#[derive(Debug, Clone)]
pub struct StatementCheck<'a> {
    pub statement: &'a Statement,
    pub source: Vec<SelectorMiss<'a>>,
    pub destination: Vec<SelectorMiss<'a>>,
    pub filters: Vec<FilterMiss>,
}

impl StatementCheck<'_> {
    pub fn matches(&self) -> bool {
        self.misses() == 0
    }

    /// How far the statement is from allowing the packet.
    pub fn misses(&self) -> usize {
        self.source.len() + self.destination.len() + self.filters.len()
    }
}

/// The location each side's attribute endpoints must sit in.
pub fn locations(scope: &Scope) -> (&Attribute, &Attribute) {
    match scope {
        Scope::SameVcn { vcn } => (&vcn.node, &vcn.node),
        Scope::CrossVcn {
            source_vcn,
            destination_vcn,
        } => (&source_vcn.node, &destination_vcn.node),
    }
}

pub fn check_statement<'a>(
    inventory: &'a Inventory,
    statement: &'a Statement,
    facts: &PacketFacts,
) -> StatementCheck<'a> {
    let (source_location, destination_location) = locations(&statement.scope);
    StatementCheck {
        statement,
        source: check_selector(
            inventory,
            &statement.source.node,
            source_location,
            facts.src,
        ),
        destination: check_selector(
            inventory,
            &statement.destination.node,
            destination_location,
            facts.dst,
        ),
        filters: check_filters(statement, facts),
    }
}

fn check_selector<'a>(
    inventory: &'a Inventory,
    selector: &Endpoint,
    location: &Attribute,
    address: IpAddr,
) -> Vec<SelectorMiss<'a>> {
    match selector {
        Endpoint::AllEndpoints => Vec::new(),
        Endpoint::Prefix(net) if prefix::contains(net, address) => Vec::new(),
        Endpoint::Prefix(_) => vec![SelectorMiss::OutsidePrefix],
        Endpoint::OsnServices
            if inventory
                .osn_services()
                .iter()
                .any(|net| prefix::contains(net, address)) =>
        {
            Vec::new()
        }
        Endpoint::OsnServices => vec![SelectorMiss::NotOsnService],
        Endpoint::Attribute(attribute) => {
            let Some(endpoint) = inventory.endpoint_at(address) else {
                return vec![SelectorMiss::NotAnEndpoint];
            };
            let mut misses = Vec::new();
            if !endpoint.carries(attribute) {
                misses.push(SelectorMiss::LacksAttribute {
                    endpoint: &endpoint.name,
                });
            }
            let vcn = inventory.vcn_of(endpoint);
            if !vcn.attribute.as_ref().is_some_and(|a| a.same_as(location)) {
                misses.push(SelectorMiss::OutsideLocation {
                    endpoint: &endpoint.name,
                    vcn: &vcn.name,
                    vcn_attribute: vcn.attribute.as_ref(),
                });
            }
            misses
        }
    }
}

fn check_filters(statement: &Statement, facts: &PacketFacts) -> Vec<FilterMiss> {
    let miss_unless = |matches: bool, miss: FilterMiss| (!matches).then_some(miss);
    statement
        .filters
        .iter()
        .filter_map(|filter| match &filter.node {
            Filter::Protocol(protocol) => protocol_matches(protocol, facts).err(),
            Filter::IcmpType(icmp_type) => miss_unless(
                facts.is_icmp() && facts.icmp_type == *icmp_type,
                FilterMiss::IcmpType,
            ),
            Filter::IcmpCode(icmp_code) => miss_unless(
                facts.is_icmp() && facts.icmp_code == *icmp_code,
                FilterMiss::IcmpCode,
            ),
            Filter::ConnectionState(_) => None,
        })
        .collect()
}

fn protocol_matches(protocol: &Protocol, facts: &PacketFacts) -> Result<(), FilterMiss> {
    let (number, ports) = match protocol {
        Protocol::Tcp { ports } => (PROTOCOL_TCP, ports.as_slice()),
        Protocol::Udp { ports } => (PROTOCOL_UDP, ports.as_slice()),
        Protocol::Icmp => (PROTOCOL_ICMP, [].as_slice()),
        Protocol::Icmpv6 => (PROTOCOL_ICMPV6, [].as_slice()),
    };
    if facts.protocol != number {
        return Err(FilterMiss::Protocol);
    }
    let in_range = |range: &PortRange| (range.low..=range.high).contains(&facts.dst_port);
    if ports.is_empty() || ports.iter().any(in_range) {
        Ok(())
    } else {
        Err(FilterMiss::Port)
    }
}
