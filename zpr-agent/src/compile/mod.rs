//! Policy + inventory -> Plan, the reference evaluator, and explain.
//!
//! [`compile`] turns the policy set into the data the kernel looks up;
//! [`decide`] says what the policy means, walking statements directly;
//! [`plan_decide`] reads a Plan the way the kernel does. The two must
//! agree on every packet: that is the contract the datapath is held to.

mod capacity;
mod decision;
mod diff;
mod diff_report;
#[cfg(test)]
pub(crate) mod edits;
mod entries;
mod evaluate;
mod explain;
mod identity;
mod incremental;
mod l4;
mod lookup;
mod naming;
mod pair;
mod plan;
mod selectors;
pub mod suggestion;

pub use capacity::{Capacity, capacity_problems};
pub use decision::{
    Decision, DenyReason, Direction, NEIGHBOUR_DISCOVERY_TYPES, PROTOCOL_ICMP, PROTOCOL_ICMPV6,
    PROTOCOL_TCP, PROTOCOL_UDP, PacketFacts, UnknownEndpoint, Verdict,
};
pub use diff::{
    AddressGroup, Change, Enforcement, EnforcementChange, EnforcementEffect, L4Range, PathChange,
    PlanDiff, diff,
};
pub use diff_report::{Report, RevokedFlow};
pub use evaluate::{
    FilterMiss, SelectorMiss, StatementCheck, check_statement, decide,
    is_neighbour_discovery_source,
};
pub use explain::{Explanation, PlanDisagrees, SideReport, SideStatus, explain};
pub use incremental::{CapacityCounter, Compiler};
pub use l4::{L4_BITS, L4Prefix, PROTOCOL_BITS, packet_key, port_range_blocks};
pub use lookup::{PlanLookup, plan_decide};
pub use pair::compile_pair;
pub use plan::{
    ANY_REMOTE, EndpointAddress, EndpointConfig, Fnv1a64, HostEntry, Identity, IdentityMember,
    Plan, PlanStatement, PolicyEntry, PolicyKey, PolicyValue, PrefixEntry, Sizes, StatementIndex,
    Uid,
};

use foldhash::HashSet;

use crate::inventory::Inventory;
use crate::lang::Policy;

/// Compiles a policy set against an inventory. Pure and deterministic.
pub fn compile(policies: &[Policy], inventory: &Inventory) -> Plan {
    compile_whole(
        policies,
        inventory,
        Tables::Every,
        &mut selectors::Memo::default(),
    )
    .0
}

/// Which identities' policy tables a Plan holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tables {
    /// Every protected identity's: what `explain`, `diff` and the API
    /// reason about.
    #[default]
    Every,
    /// Only those of the endpoints with an interface in the inventory: an
    /// agent's kernel holds no others (at size, a tenth of the Plan or
    /// less). Everything else in the Plan is the same as with `Every`.
    Local,
}

/// What a whole compile worked out on the way to its Plan that the
/// compile of a small change can use again (see [`Compiler`]).
struct Groundwork {
    selectors: Vec<selectors::Selector>,
    attributes: Vec<selectors::AttributeKey>,
    statements: Vec<selectors::ResolvedStatement>,
    stateless: Vec<bool>,
    uid_sets: identity::UidSets,
    protected: Vec<bool>,
    /// The tables the Plan holds, when not every protected identity's.
    local_tables: Option<HashSet<(Uid, Direction)>>,
}

fn compile_whole(
    policies: &[Policy],
    inventory: &Inventory,
    tables: Tables,
    memo: &mut selectors::Memo,
) -> (Plan, Groundwork) {
    let resolved = selectors::resolve_with(policies, memo);
    let identities = identity::build(inventory, &resolved);
    let protected = protected(inventory, &identities);
    let stateless = &resolved.stateless;
    let local_tables = (tables == Tables::Local).then(|| local_tables(inventory, &identities));
    let policy = match &local_tables {
        None => entries::build(&resolved.resolved, stateless, &identities.sets, &protected),
        Some(local_tables) => entries::build_tables(
            &resolved.resolved,
            stateless,
            &identities.sets,
            &protected,
            local_tables,
        ),
    };
    let endpoints = endpoint_configs(inventory, identities.endpoint_addresses);
    let plan = Plan::assemble(
        plan_statements(&resolved),
        identities.identities,
        identities.hosts,
        identities.prefixes,
        endpoints,
        policy,
    );
    (
        plan,
        Groundwork::of(resolved, identities.sets, protected, local_tables),
    )
}

impl Groundwork {
    fn of(
        resolved: selectors::Resolved,
        uid_sets: identity::UidSets,
        protected: Vec<bool>,
        local_tables: Option<HashSet<(Uid, Direction)>>,
    ) -> Groundwork {
        Groundwork {
            selectors: resolved.selectors,
            attributes: resolved.attributes,
            statements: resolved.resolved,
            stateless: resolved.stateless,
            uid_sets,
            protected,
            local_tables,
        }
    }
}

/// What the Plan holds of each inventory endpoint, given its addresses
/// with their UIDs.
fn endpoint_configs(
    inventory: &Inventory,
    endpoint_addresses: Vec<Vec<EndpointAddress>>,
) -> Vec<EndpointConfig> {
    inventory
        .endpoints()
        .iter()
        .zip(endpoint_addresses)
        .map(|(endpoint, addresses)| EndpointConfig {
            name: endpoint.name.clone(),
            interface: endpoint.interface.clone(),
            mode: endpoint.mode,
            protected: endpoint.is_protected(),
            addresses,
            attributes: endpoint
                .attributes
                .iter()
                .map(|attribute| {
                    format!(
                        "{}.{}:{}",
                        attribute.namespace(),
                        attribute.key,
                        attribute.value
                    )
                })
                .collect(),
        })
        .collect()
}

/// The counts of the Plan [`compile`] would give that decide whether it
/// fits the maps, without building the policy entries of identities no
/// local endpoint holds (`zpr check`).
pub fn capacity(policies: &[Policy], inventory: &Inventory) -> Capacity {
    incremental::count_once(policies, inventory)
}

/// The tables (UID, direction) of the endpoints with an interface.
fn local_tables(
    inventory: &Inventory,
    identities: &identity::Identities,
) -> HashSet<(Uid, Direction)> {
    inventory
        .endpoints()
        .iter()
        .zip(&identities.endpoint_addresses)
        .filter(|(endpoint, _)| endpoint.interface.is_some())
        .flat_map(|(_, addresses)| addresses)
        .flat_map(|address| [Direction::Egress, Direction::Ingress].map(|d| (address.uid, d)))
        .collect()
}

/// Which UIDs hold an address of a protected endpoint.
fn protected(inventory: &Inventory, identities: &identity::Identities) -> Vec<bool> {
    let mut protected = vec![false; identities.sets.families.len()];
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
    protected
}

fn plan_statements(resolved: &selectors::Resolved) -> Vec<PlanStatement> {
    resolved
        .statements
        .iter()
        .zip(&resolved.stateless)
        .map(|(statement, &stateless)| PlanStatement {
            id: statement.id.clone(),
            stateless,
        })
        .collect()
}

#[cfg(test)]
mod tests;
