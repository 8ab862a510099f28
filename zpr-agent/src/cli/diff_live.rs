//! `zpr diff --live`: the connections in the live conntrack tables that
//! a change would cut when applied. A tracked flow is re-checked at the
//! next packet after a reload with its first packet's question (its
//! origin direction and policy port), so it is cut exactly when the new
//! policy does not let that question pass.

use std::{net::IpAddr, path::Path};

use zpr_common::conntrack::{FlowKey, FlowState};

use crate::compile::{Decision, Direction, PacketFacts, RevokedFlow, decide};
use crate::daemon::Status;
use crate::daemon::event_names::address;
use crate::datapath::{PinLayout, pinned_live_flows};
use crate::inputs::Inputs;

/// The live flows of the agent with these pins and run directory that
/// `new` would cut.
pub fn revoked_flows(
    pins: &PinLayout,
    run_dir: &Path,
    old: &Inputs,
    new: &Inputs,
) -> anyhow::Result<Vec<RevokedFlow>> {
    let status = Status::read(run_dir)?;
    let mut revoked = Vec::new();
    for (key, state) in pinned_live_flows(pins)? {
        let Some(endpoint) = status.endpoint_by_ifindex(key.ifindex) else {
            continue;
        };
        let (facts, direction) = first_packet(&key, &state);
        let passes = |inputs: &Inputs| {
            decide(
                &inputs.inventory,
                &inputs.policies,
                &facts,
                direction,
                &endpoint.name,
            )
            // An endpoint the inventory no longer has is detached.
            .map_or((true, Vec::new()), |verdict| {
                let statements = match verdict.decision {
                    Decision::Allow { ref statements, .. } => {
                        statements.iter().map(ToString::to_string).collect()
                    }
                    _ => Vec::new(),
                };
                (verdict.passes(), statements)
            })
        };
        if passes(new).0 {
            continue;
        }
        let port = |port: u16| {
            if facts.has_ports() {
                format!(":{port}")
            } else {
                String::new()
            }
        };
        let (local, remote) = (
            address(key.family, &key.local),
            address(key.family, &key.remote),
        );
        let (local, remote) = (
            format!("{}{}", socket(local), port(key.local_port)),
            format!("{}{}", socket(remote), port(key.remote_port)),
        );
        let (from, to) = match direction {
            Direction::Egress => (local, remote),
            Direction::Ingress => (remote, local),
        };
        revoked.push(RevokedFlow {
            endpoint: endpoint.name.clone(),
            interface: endpoint.interface.clone(),
            direction,
            protocol: facts.to_string(),
            from,
            to,
            allowed_by: passes(old).1,
        });
    }
    revoked.sort_by(|a, b| (&a.endpoint, &a.from, &a.to).cmp(&(&b.endpoint, &b.from, &b.to)));
    Ok(revoked)
}

/// The question the flow's first packet asked: seen from the local
/// endpoint in its origin direction, on its policy port.
fn first_packet(key: &FlowKey, state: &FlowState) -> (PacketFacts, Direction) {
    let (local, remote) = (
        address(key.family, &key.local),
        address(key.family, &key.remote),
    );
    let direction = match zpr_common::Direction::from_u8(state.origin) {
        Some(zpr_common::Direction::ToWorkload) => Direction::Ingress,
        _ => Direction::Egress,
    };
    let (src, dst) = match direction {
        Direction::Egress => (local, remote),
        Direction::Ingress => (remote, local),
    };
    let [icmp_type, icmp_code] = state.policy_port.to_be_bytes();
    let facts = PacketFacts {
        dst_port: state.policy_port,
        icmp_type,
        icmp_code,
        ..PacketFacts::other(src, dst, key.protocol)
    };
    (facts, direction)
}

/// IPv6 addresses in brackets, so the port reads apart.
fn socket(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}
