//! `zpr explain`: the verdict at each end of a path and why, like OCI's
//! Network Path Analyzer. Built on the reference evaluator; the Plan's
//! answer is checked against it on every enforced side.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use super::decision::{
    Decision, DenyReason, Direction, NEIGHBOUR_DISCOVERY_TYPES, PacketFacts, Verdict,
};
use super::evaluate::{SelectorMiss, StatementCheck, check_statement, decide, locations};
use super::lookup::PlanLookup;
use super::plan::Plan;
use crate::inventory::Inventory;
use crate::lang::address::format_prefix;
use crate::lang::attribute::unquoted_text;
use crate::lang::{Attribute, Endpoint, Policy, Protocol, Statement};

/// Most nearest misses shown for a deny (those with the fewest mismatches).
const NEAREST_MISSES: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub packet: PacketFacts,
    pub source: SideReport,
    pub destination: SideReport,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideReport {
    pub address: IpAddr,
    #[serde(flatten)]
    pub status: SideStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum SideStatus {
    /// Outside every VCN and no endpoint: nothing enforces on this side.
    External,
    /// Inside a VCN but declared by no endpoint: untagged, not enforced.
    UntaggedResource { vcn: String },
    /// An endpoint without attributes: not enforced.
    Untagged { endpoint: String },
    /// A protected endpoint: its program decides.
    Enforced {
        endpoint: String,
        interface: Option<String>,
        direction: Direction,
        verdict: Verdict,
        /// Why, in sentences: the statements and attributes that decided,
        /// or for a deny the nearest misses.
        reasons: Vec<String>,
    },
}

impl SideStatus {
    fn allowed(&self) -> bool {
        !matches!(self, SideStatus::Enforced { verdict, .. } if verdict.decision.is_deny())
    }

    fn passes(&self) -> bool {
        !matches!(self, SideStatus::Enforced { verdict, .. } if !verdict.passes())
    }
}

impl Explanation {
    /// Allowed by policy on both sides (audit mode aside).
    pub fn allowed(&self) -> bool {
        self.source.status.allowed() && self.destination.status.allowed()
    }

    /// Gets through: allowed, or denied only where audit mode lets it pass.
    pub fn passes(&self) -> bool {
        self.source.status.passes() && self.destination.status.passes()
    }
}

/// The Plan answered differently from the reference evaluator: a compiler bug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanDisagrees {
    pub endpoint: String,
    pub direction: Direction,
    /// `None`: the endpoint is unknown to that side, so the Plan was not
    /// compiled from this inventory.
    pub reference: Option<Verdict>,
    pub plan: Option<Verdict>,
}

impl fmt::Display for PlanDisagrees {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "internal error: at {} ({}) the compiled Plan gives {:?} but the policy means {:?}",
            self.endpoint, self.direction, self.plan, self.reference
        )
    }
}

impl std::error::Error for PlanDisagrees {}

pub fn explain(
    inventory: &Inventory,
    policies: &[Policy],
    plan: &Plan,
    facts: &PacketFacts,
) -> Result<Explanation, PlanDisagrees> {
    let lookup = PlanLookup::new(plan);
    let side = |address: IpAddr, direction: Direction| -> Result<SideReport, PlanDisagrees> {
        let status = match inventory.endpoint_at(address) {
            None => match inventory.vcn_containing(address) {
                Some(vcn) => SideStatus::UntaggedResource {
                    vcn: vcn.name.clone(),
                },
                None => SideStatus::External,
            },
            Some(endpoint) if !endpoint.is_protected() => SideStatus::Untagged {
                endpoint: endpoint.name.clone(),
            },
            Some(endpoint) => {
                let name = endpoint.name.as_str();
                let reference = decide(inventory, policies, facts, direction, name).ok();
                let planned = lookup.decide(facts, direction, name).ok();
                let (Some(verdict), true) = (reference.clone(), planned == reference) else {
                    return Err(PlanDisagrees {
                        endpoint: name.to_owned(),
                        direction,
                        reference,
                        plan: planned,
                    });
                };
                SideStatus::Enforced {
                    endpoint: name.to_owned(),
                    interface: endpoint.interface.clone(),
                    direction,
                    reasons: reasons(inventory, policies, facts, &verdict.decision, name),
                    verdict,
                }
            }
        };
        Ok(SideReport { address, status })
    };
    Ok(Explanation {
        packet: *facts,
        source: side(facts.src, Direction::Egress)?,
        destination: side(facts.dst, Direction::Ingress)?,
    })
}

fn reasons(
    inventory: &Inventory,
    policies: &[Policy],
    facts: &PacketFacts,
    decision: &Decision,
    endpoint: &str,
) -> Vec<String> {
    let own = || {
        inventory
            .endpoint(endpoint)
            .map(|e| {
                e.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let checks = || {
        policies
            .iter()
            .flat_map(|p| &p.statements)
            .map(|statement| check_statement(inventory, statement, facts))
    };
    match decision {
        Decision::NotEnforced => vec![format!("{endpoint} carries no attribute")],
        Decision::NeighbourDiscovery => vec![format!(
            "ICMPv6 neighbour discovery (types {}-{}) is always allowed",
            NEIGHBOUR_DISCOVERY_TYPES.start(),
            NEIGHBOUR_DISCOVERY_TYPES.end()
        )],
        Decision::Deny {
            reason: DenyReason::SpoofedSource,
        } => vec![format!(
            "{} is not an address of {endpoint} ({}): spoofed source",
            facts.src,
            own()
        )],
        Decision::Deny {
            reason: DenyReason::ForeignDestination,
        } => vec![format!(
            "{} is not an address of {endpoint} ({})",
            facts.dst,
            own()
        )],
        Decision::Allow { .. } => checks()
            .filter(StatementCheck::matches)
            .map(|check| allowed_because(inventory, check.statement, facts))
            .collect(),
        Decision::Deny {
            reason: DenyReason::NoPolicy,
        } => {
            let mut checks: Vec<StatementCheck> = checks().collect();
            if checks.is_empty() {
                return vec!["the policy set has no statements".to_owned()];
            }
            checks
                .sort_by(|a, b| (a.misses(), &a.statement.id).cmp(&(b.misses(), &b.statement.id)));
            let fewest = checks[0].misses();
            let mut reasons = vec![format!(
                "no statement allows {facts} from {} to {}",
                facts.src, facts.dst
            )];
            reasons.extend(
                checks
                    .iter()
                    .take_while(|check| check.misses() == fewest)
                    .take(NEAREST_MISSES)
                    .map(|check| format!("nearest miss: {}", missed_because(check, facts))),
            );
            reasons
        }
    }
}

fn allowed_because(inventory: &Inventory, statement: &Statement, facts: &PacketFacts) -> String {
    let (source_location, destination_location) = locations(&statement.scope);
    let stateless = if statement.is_stateless() {
        " (stateless: replies need their own statement)"
    } else {
        ""
    };
    format!(
        "{}: source {}; destination {}; {facts} is within {}{stateless}",
        statement.id,
        matched(
            inventory,
            &statement.source.node,
            source_location,
            facts.src
        ),
        matched(
            inventory,
            &statement.destination.node,
            destination_location,
            facts.dst
        ),
        filters(statement),
    )
}

fn matched(
    inventory: &Inventory,
    selector: &Endpoint,
    location: &Attribute,
    address: IpAddr,
) -> String {
    match selector {
        Endpoint::AllEndpoints => format!("{address} (all-endpoints)"),
        Endpoint::Prefix(prefix) => format!("{address} is in '{}'", format_prefix(prefix)),
        Endpoint::OsnServices => format!("{address} is an OSN service address"),
        Endpoint::Attribute(attribute) => {
            let (endpoint, vcn) = match inventory.endpoint_at(address) {
                Some(endpoint) => (
                    endpoint.name.as_str(),
                    inventory.vcn_of(endpoint).name.as_str(),
                ),
                // A matched attribute selector always names an endpoint.
                None => ("?", "?"),
            };
            format!(
                "{address} ({endpoint}) carries {} in VCN {vcn} tagged {}",
                unquoted_text(attribute),
                unquoted_text(location)
            )
        }
    }
}

fn missed_because(check: &StatementCheck, facts: &PacketFacts) -> String {
    let statement = check.statement;
    let filters = filters(statement);
    if check.source.is_empty() && check.destination.is_empty() {
        return format!(
            "statement {} matches these endpoints but allows {filters}, not {facts}",
            statement.id
        );
    }
    let (source_location, destination_location) = locations(&statement.scope);
    let mut misses: Vec<String> = check
        .source
        .iter()
        .map(|miss| selector_miss(miss, &statement.source.node, source_location, facts.src))
        .chain(check.destination.iter().map(|miss| {
            selector_miss(
                miss,
                &statement.destination.node,
                destination_location,
                facts.dst,
            )
        }))
        .collect();
    if !check.filters.is_empty() {
        misses.push(format!("{facts} is not {filters}"));
    }
    format!(
        "statement {} allows {filters} from {} to {}, but {}",
        statement.id,
        side_text(&statement.source.node, source_location),
        side_text(&statement.destination.node, destination_location),
        misses.join("; ")
    )
}

fn selector_miss(
    miss: &SelectorMiss,
    selector: &Endpoint,
    location: &Attribute,
    address: IpAddr,
) -> String {
    match (miss, selector) {
        (SelectorMiss::NotAnEndpoint, _) => format!("{address} is not an endpoint"),
        (SelectorMiss::LacksAttribute { endpoint }, Endpoint::Attribute(attribute)) => {
            format!(
                "{address} ({endpoint}) does not carry {}",
                unquoted_text(attribute)
            )
        }
        (
            SelectorMiss::OutsideLocation {
                endpoint,
                vcn,
                vcn_attribute,
            },
            _,
        ) => {
            let tagged = match vcn_attribute {
                Some(attribute) => format!("tagged {}", unquoted_text(attribute)),
                None => "with no attribute".to_owned(),
            };
            format!(
                "{address} ({endpoint}) is in VCN {vcn} {tagged}, not {}",
                unquoted_text(location)
            )
        }
        (SelectorMiss::OutsidePrefix, Endpoint::Prefix(prefix)) => {
            format!("{address} is not in '{}'", format_prefix(prefix))
        }
        (SelectorMiss::NotOsnService, _) => format!("{address} is not an OSN service address"),
        // A miss always comes from its own kind of selector.
        (_, selector) => format!("{address} does not match {}", side_text(selector, location)),
    }
}

/// A statement side as the policy says it.
fn side_text(selector: &Endpoint, location: &Attribute) -> String {
    match selector {
        Endpoint::Attribute(attribute) => format!(
            "{} endpoints in {} VCN",
            unquoted_text(attribute),
            unquoted_text(location)
        ),
        Endpoint::Prefix(prefix) => format!("'{}'", format_prefix(prefix)),
        Endpoint::AllEndpoints => "all-endpoints".to_owned(),
        Endpoint::OsnServices => "osn-services-ip-addresses".to_owned(),
    }
}

/// `tcp/80`, `tcp/22,1000-2000`, `icmp type 8`, `any protocol`.
fn filters(statement: &Statement) -> String {
    let ports = |name: &str, ports: &[crate::lang::PortRange]| {
        if ports.is_empty() {
            return name.to_owned();
        }
        let list: Vec<String> = ports
            .iter()
            .map(|r| match r.low == r.high {
                true => r.low.to_string(),
                false => format!("{}-{}", r.low, r.high),
            })
            .collect();
        format!("{name}/{}", list.join(","))
    };
    let mut text = match statement.protocol() {
        None if statement.icmp_type().is_some() || statement.icmp_code().is_some() => {
            "icmp".to_owned()
        }
        None => "any protocol".to_owned(),
        Some(Protocol::Tcp { ports: p }) => ports("tcp", p),
        Some(Protocol::Udp { ports: p }) => ports("udp", p),
        Some(Protocol::Icmp) => "icmp".to_owned(),
        Some(Protocol::Icmpv6) => "icmpv6".to_owned(),
    };
    if let Some(icmp_type) = statement.icmp_type() {
        text.push_str(&format!(" type {icmp_type}"));
    }
    if let Some(icmp_code) = statement.icmp_code() {
        text.push_str(&format!(" code {icmp_code}"));
    }
    text
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let result = match (self.allowed(), self.passes()) {
            (true, _) => "allowed",
            (false, true) => "denied (audit mode: would drop, passes)",
            (false, false) => "denied",
        };
        writeln!(
            f,
            "{} -> {} {}: {result}",
            self.packet.src, self.packet.dst, self.packet
        )?;
        write_side(f, "source", &self.source)?;
        write_side(f, "destination", &self.destination)
    }
}

fn write_side(f: &mut fmt::Formatter<'_>, role: &str, side: &SideReport) -> fmt::Result {
    let address = side.address;
    match &side.status {
        SideStatus::External => writeln!(f, "  {role} {address}: external, not enforced"),
        SideStatus::UntaggedResource { vcn } => writeln!(
            f,
            "  {role} {address}: untagged resource in VCN {vcn}, not enforced"
        ),
        SideStatus::Untagged { endpoint } => {
            writeln!(f, "  {role} {address} ({endpoint}): not enforced: untagged")
        }
        SideStatus::Enforced {
            endpoint,
            interface,
            direction,
            verdict,
            reasons,
        } => {
            let at = match interface {
                Some(interface) => format!("{direction} at {interface}"),
                None => format!("{direction} on its own host"),
            };
            let outcome = match &verdict.decision {
                Decision::Allow {
                    statements,
                    stateless,
                } => {
                    let ids: Vec<String> = statements.iter().map(ToString::to_string).collect();
                    let state = if *stateless { ", stateless" } else { "" };
                    format!("allowed by {}{state}", ids.join(", "))
                }
                Decision::NeighbourDiscovery => "allowed (neighbour discovery)".to_owned(),
                Decision::NotEnforced => "not enforced: untagged".to_owned(),
                Decision::Deny { reason } if verdict.passes() => {
                    format!("denied ({reason}); audit mode: would drop, passes")
                }
                Decision::Deny { reason } => format!("denied ({reason})"),
            };
            writeln!(f, "  {role} {address} ({endpoint}, {at}): {outcome}")?;
            for reason in reasons {
                writeln!(f, "    - {reason}")?;
            }
            Ok(())
        }
    }
}
