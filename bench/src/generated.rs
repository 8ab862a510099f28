//! A generated policy set of a chosen size (zpr-agent's `synthetic`),
//! compiled, with one protected endpoint placed on the interface
//! BPF_PROG_TEST_RUN reports, and the remote addresses each path is
//! measured against, every one checked against the Plan lookup.

use std::net::IpAddr;

use anyhow::{Context as _, ensure};
use zpr_agent::{
    compile::{
        ANY_REMOTE, Decision, DenyReason, Direction, L4_BITS, PROTOCOL_TCP, PacketFacts, Plan,
        PlanLookup, Uid, compile,
    },
    datapath::{InterfaceIndexes, TEST_RUN_IFINDEX},
    synthetic,
};

/// The interface name the endpoint under test is given in the Plan; the
/// datapath is told it has the index test runs report.
pub const TEST_INTERFACE: &str = "zb-test";
/// A port no generated statement allows (discard).
pub const DENIED_PORT: u16 = 9;
/// The generator's seed: every run measures the same policy sets.
const SEED: u64 = 1;

/// One generated policy set, ready to be written into a datapath.
pub struct Generated {
    pub statements: usize,
    /// The endpoint under test (protected) on [`TEST_INTERFACE`].
    pub plan: Plan,
    /// The same Plan with an untagged endpoint on [`TEST_INTERFACE`] instead.
    pub untagged_plan: Plan,
    /// IPv4 address of the endpoint under test.
    pub local: IpAddr,
    /// IPv4 address of the untagged endpoint.
    pub untagged: IpAddr,
    /// Remote endpoints and ports the endpoint under test may open TCP
    /// connections to, each by a statement naming that remote (stateful).
    pub allowed: Vec<(IpAddr, u16)>,
    /// Remote endpoints to which [`DENIED_PORT`] is denied (no policy).
    pub denied: Vec<IpAddr>,
}

/// The inventory size generated with `statements` statements: ten
/// statements per endpoint, between 100 and 10,000 endpoints.
pub fn endpoints_for(statements: usize) -> usize {
    (statements / 10).clamp(100, 10_000)
}

/// The interface map the datapath is written with.
pub fn test_interfaces() -> InterfaceIndexes {
    InterfaceIndexes::from([(TEST_INTERFACE.to_owned(), TEST_RUN_IFINDEX)])
}

pub fn generate(statements: usize) -> anyhow::Result<Generated> {
    let synthetic = synthetic::generate(statements, endpoints_for(statements), SEED);
    let plan = compile(&synthetic.policies, &synthetic.inventory);
    let local_uid = busiest_local_uid(&plan)
        .with_context(|| format!("{statements} statements allow no TCP port between endpoints"))?;
    let (local_name, local) =
        endpoint_address(&plan, |uid, protected| protected && uid == local_uid)
            .context("no endpoint holds the busiest identity")?;
    let (untagged_name, untagged) = endpoint_address(&plan, |_, protected| !protected)
        .context("the generated inventory has no untagged endpoint")?;

    let lookup = PlanLookup::new(&plan);
    let egress = |dst: IpAddr, port: u16| {
        let facts = PacketFacts::tcp(local, dst, port);
        lookup
            .decide(&facts, Direction::Egress, &local_name)
            .map(|verdict| verdict.decision)
    };
    let mut allowed = Vec::new();
    for entry in plan.policy.iter().filter(|e| {
        e.key.local == local_uid && e.key.remote != ANY_REMOTE && is_tracked_tcp_port(e)
    }) {
        for host in plan.hosts.iter().filter(|h| h.uid == entry.key.remote) {
            if host.address.is_ipv4()
                && matches!(
                    egress(host.address, entry.key.l4.port)?,
                    Decision::Allow {
                        stateless: false,
                        ..
                    }
                )
            {
                allowed.push((host.address, entry.key.l4.port));
            }
        }
    }
    let no_policy = Decision::Deny {
        reason: DenyReason::NoPolicy,
    };
    let mut denied = Vec::new();
    for host in plan.hosts.iter().filter(|h| h.address.is_ipv4()) {
        if egress(host.address, DENIED_PORT)? == no_policy {
            denied.push(host.address);
        }
    }
    ensure!(
        !allowed.is_empty() && !denied.is_empty(),
        "{statements} statements: {} allowed and {} denied remotes",
        allowed.len(),
        denied.len()
    );

    let untagged_plan = placed_on_test_interface(plan.clone(), &untagged_name);
    Ok(Generated {
        statements,
        plan: placed_on_test_interface(plan, &local_name),
        untagged_plan,
        local,
        untagged,
        allowed,
        denied,
    })
}

/// A stateful policy entry for one TCP port (what most statements are).
fn is_tracked_tcp_port(entry: &zpr_agent::compile::PolicyEntry) -> bool {
    entry.key.direction == Direction::Egress
        && entry.key.l4.protocol == PROTOCOL_TCP
        && entry.key.l4.len == L4_BITS
        && !entry.value.stateless
}

/// The local identity with the most single-port TCP entries toward named
/// remotes: its endpoint has the most distinct flows to spread over.
fn busiest_local_uid(plan: &Plan) -> Option<Uid> {
    let mut counts = std::collections::BTreeMap::<Uid, usize>::new();
    for entry in plan
        .policy
        .iter()
        .filter(|e| e.key.remote != ANY_REMOTE && is_tracked_tcp_port(e))
    {
        *counts.entry(entry.key.local).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(uid, count)| (count, std::cmp::Reverse(uid)))
        .map(|(uid, _)| uid)
}

/// The first endpoint (name, IPv4 address) whose IPv4 address satisfies
/// `wanted(uid, protected)`.
fn endpoint_address(plan: &Plan, wanted: impl Fn(Uid, bool) -> bool) -> Option<(String, IpAddr)> {
    plan.endpoints.iter().find_map(|endpoint| {
        endpoint
            .addresses
            .iter()
            .find(|own| own.address.is_ipv4() && wanted(own.uid, endpoint.protected))
            .map(|own| (endpoint.name.clone(), own.address))
    })
}

/// `plan` with `endpoint` on [`TEST_INTERFACE`], as if it lived on this
/// host; every other endpoint keeps its own (unmapped) interface.
fn placed_on_test_interface(mut plan: Plan, endpoint: &str) -> Plan {
    for config in &mut plan.endpoints {
        if config.name == endpoint {
            config.interface = Some(TEST_INTERFACE.to_owned());
        } else if config.interface.as_deref() == Some(TEST_INTERFACE) {
            config.interface = None;
        }
    }
    plan
}
