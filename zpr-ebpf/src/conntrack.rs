//! Flow keys from the local endpoint's point of view, and flow state kept
//! in place (no map update per packet: the value is written through the
//! pointer the lookup returned).

use zpr_common::{
    Direction,
    conntrack::{
        FlowKey, FlowState, TCP_FIN_FROM_LOCAL, TCP_FIN_FROM_REMOTE, TCP_RST, TCP_SYN_FROM_LOCAL,
        TCP_SYN_FROM_REMOTE,
    },
    event::IPPROTO_TCP,
};

use crate::headers::Headers;

#[inline(always)]
pub fn flow_key(ifindex: u32, direction: Direction, headers: &Headers) -> FlowKey {
    let from_local = direction == Direction::FromWorkload;
    FlowKey {
        ifindex,
        family: headers.family,
        protocol: headers.protocol,
        local_port: if from_local {
            headers.src_port
        } else {
            headers.dst_port
        },
        remote_port: if from_local {
            headers.dst_port
        } else {
            headers.src_port
        },
        _pad: [0; 2],
        local: if from_local { headers.src } else { headers.dst },
        remote: if from_local { headers.dst } else { headers.src },
    }
}

/// The flow has not idled out.
#[inline(always)]
pub fn is_live(state: &FlowState, protocol: u8, now: u64) -> bool {
    now.saturating_sub(state.last_seen_ns) <= state.timeout(protocol)
}

/// A bare SYN on a flow that was closing: the 4-tuple is being reused.
#[inline(always)]
pub fn is_reopened(state: &FlowState, headers: &Headers) -> bool {
    headers.is_tcp_syn_only()
        && state.tcp & (TCP_RST | TCP_FIN_FROM_LOCAL | TCP_FIN_FROM_REMOTE) != 0
}

/// Records the packet on the flow: when, and which TCP flags from which side.
#[inline(always)]
pub fn touch(state: &mut FlowState, headers: &Headers, direction: Direction, now: u64) {
    state.last_seen_ns = now;
    if headers.protocol == IPPROTO_TCP {
        state.tcp |= tcp_bits(headers, direction);
    }
}

#[inline(always)]
pub fn tcp_bits(headers: &Headers, direction: Direction) -> u8 {
    let from_local = direction == Direction::FromWorkload;
    let mut bits = 0;
    if headers.tcp_syn() {
        bits |= if from_local {
            TCP_SYN_FROM_LOCAL
        } else {
            TCP_SYN_FROM_REMOTE
        };
    }
    if headers.tcp_fin() {
        bits |= if from_local {
            TCP_FIN_FROM_LOCAL
        } else {
            TCP_FIN_FROM_REMOTE
        };
    }
    if headers.tcp_rst() {
        bits |= TCP_RST;
    }
    bits
}
