//! The programs, one per path (see the crate docs).

use aya_ebpf::{
    bindings::{BPF_ANY, xdp_action},
    helpers::bpf_ktime_get_coarse_ns,
    macros::xdp,
    programs::XdpContext,
};
use zpr_common::{
    conntrack::FlowState,
    policy::{POLICY_EGRESS, PolicyKey},
};

use crate::{
    flow::Flow,
    maps::{REF_CONNTRACK, REF_POLICY, identity},
};

/// The harness alone: what BPF_PROG_TEST_RUN costs around any program.
#[xdp]
pub fn reference_noop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The flood generator: with BPF_PROG_TEST_RUN's live frames, sends each
/// frame back out of the interface it is run on (for a veth, to its peer).
#[xdp]
pub fn reference_transmit(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// Untagged pass-through: the headers must be read to know the packet is
/// IP at all, nothing more.
#[xdp]
pub fn reference_parse(ctx: XdpContext) -> u32 {
    match Flow::parse(&ctx) {
        Some(_) => xdp_action::XDP_PASS,
        None => xdp_action::XDP_DROP,
    }
}

/// Established flow: one conntrack lookup, and the idle timestamp every
/// tracked flow needs, written in place. Both kinds of program take their
/// timestamps from the coarse clock, the cheapest one idle timeouts allow.
#[xdp]
pub fn reference_conntrack_hit(ctx: XdpContext) -> u32 {
    let Some(flow) = Flow::parse(&ctx) else {
        return xdp_action::XDP_DROP;
    };
    let Some(state) = REF_CONNTRACK.get_ptr_mut(&flow.key(ingress_ifindex(&ctx))) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: value pointer of this lookup; a racing writer only makes it stale.
    unsafe { (*state).last_seen_ns = bpf_ktime_get_coarse_ns() };
    xdp_action::XDP_PASS
}

/// New flow (allowed) and denied packet: the conntrack lookup that tells a
/// new flow from a tracked one (a stateful filter cannot skip it: a packet
/// may belong to a flow opened from the other side), both addresses'
/// identities from one prefix trie, one exact policy lookup, and for an
/// allowed flow one conntrack insert. A denied packet does the same minus
/// the insert. It runs every step whatever the lookup found, so a repeated
/// frame costs what a new one does: the program is a measure, not a filter.
#[xdp]
pub fn reference_policy(ctx: XdpContext) -> u32 {
    let Some(flow) = Flow::parse(&ctx) else {
        return xdp_action::XDP_DROP;
    };
    let key = flow.key(ingress_ifindex(&ctx));
    let tracked = REF_CONNTRACK.get_ptr(&key).is_some();
    let policy = PolicyKey {
        slot: 0,
        direction: POLICY_EGRESS,
        _pad: [0; 2],
        local_uid: identity(flow.family, &flow.src),
        remote_uid: identity(flow.family, &flow.dst),
        protocol: flow.protocol,
        port: flow.dst_port.to_be_bytes(),
        _pad2: 0,
    };
    // SAFETY: read-only copy of a value user space wrote whole.
    let Some(allowed) = (unsafe { REF_POLICY.get(&policy) }).copied() else {
        return if tracked {
            xdp_action::XDP_PASS
        } else {
            xdp_action::XDP_DROP
        };
    };
    let state = FlowState {
        // SAFETY: a helper without preconditions.
        last_seen_ns: unsafe { bpf_ktime_get_coarse_ns() },
        rule: allowed.rule,
        local_uid: policy.local_uid,
        remote_uid: policy.remote_uid,
        ..FlowState::default()
    };
    match REF_CONNTRACK.insert(&key, &state, BPF_ANY as u64) {
        Ok(()) => xdp_action::XDP_PASS,
        Err(_) => xdp_action::XDP_DROP,
    }
}

#[inline(always)]
fn ingress_ifindex(ctx: &XdpContext) -> u32 {
    // SAFETY: the context pointer is the kernel's xdp_md.
    unsafe { (*ctx.ctx).ingress_ifindex }
}
