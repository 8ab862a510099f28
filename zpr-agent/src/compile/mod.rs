//! Policy + inventory -> Plan, the reference evaluator, and explain.
//!
//! [`compile`] turns the policy set into the data the kernel looks up;
//! [`decide`] says what the policy means, walking statements directly;
//! [`plan_decide`] reads a Plan the way the kernel does. The two must
//! agree on every packet: that is the contract the datapath is held to.

mod capacity;
mod decision;
mod diff;
mod entries;
mod evaluate;
mod explain;
mod identity;
mod l4;
mod lookup;
mod naming;
mod plan;
mod selectors;

pub use capacity::capacity_problems;
pub use decision::{
    Decision, DenyReason, Direction, NEIGHBOUR_DISCOVERY_TYPES, PROTOCOL_ICMP, PROTOCOL_ICMPV6,
    PROTOCOL_TCP, PROTOCOL_UDP, PacketFacts, UnknownEndpoint, Verdict,
};
pub use diff::{
    AddressGroup, Change, Enforcement, EnforcementChange, EnforcementEffect, L4Range, PathChange,
    PlanDiff, diff,
};
pub use evaluate::{
    FilterMiss, SelectorMiss, StatementCheck, check_statement, decide,
    is_neighbour_discovery_source,
};
pub use explain::{Explanation, PlanDisagrees, SideReport, SideStatus, explain};
pub use l4::{L4_BITS, L4Prefix, PROTOCOL_BITS, packet_key, port_range_blocks};
pub use lookup::{PlanLookup, plan_decide};
pub use plan::{
    ANY_REMOTE, EndpointAddress, EndpointConfig, Fnv1a64, HostEntry, Identity, IdentityMember,
    Plan, PlanStatement, PolicyEntry, PolicyKey, PolicyValue, PrefixEntry, Sizes, StatementIndex,
    Uid,
};

use crate::inventory::Inventory;
use crate::lang::Policy;

/// Compiles a policy set against an inventory. Pure and deterministic.
pub fn compile(policies: &[Policy], inventory: &Inventory) -> Plan {
    let resolved = selectors::resolve(policies);
    let identities = identity::build(inventory, &resolved);
    let mut protected = vec![false; identities.families.len()];
    for (endpoint, addresses) in inventory
        .endpoints()
        .iter()
        .zip(&identities.endpoint_addresses)
    {
        if endpoint.is_protected() {
            for address in addresses {
                protected[address.uid as usize] = true;
            }
        }
    }
    let stateless: Vec<bool> = resolved
        .statements
        .iter()
        .map(|s| s.is_stateless())
        .collect();
    let policy = entries::build(&resolved.resolved, &stateless, &identities, &protected);
    let statements = resolved
        .statements
        .iter()
        .map(|statement| PlanStatement {
            id: statement.id.clone(),
            stateless: statement.is_stateless(),
        })
        .collect();
    let endpoints = inventory
        .endpoints()
        .iter()
        .zip(identities.endpoint_addresses)
        .map(|(endpoint, addresses)| EndpointConfig {
            name: endpoint.name.clone(),
            interface: endpoint.interface.clone(),
            mode: endpoint.mode,
            protected: endpoint.is_protected(),
            addresses,
        })
        .collect();
    Plan::assemble(
        statements,
        identities.identities,
        identities.hosts,
        identities.prefixes,
        endpoints,
        policy,
    )
}

#[cfg(test)]
mod tests;
