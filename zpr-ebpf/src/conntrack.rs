//! Flow keys from the local endpoint's point of view, flow state kept in
//! place (no map update per packet: the value is written through the
//! pointer the lookup returned), and the two tables a flow lives in
//! (opening until both sides were seen, then established).

use aya_ebpf::bindings::BPF_NOEXIST;
use zpr_common::{
    Direction,
    conntrack::{
        CONFIRM_REFUSED, ESTABLISHED_INSERTED, ESTABLISHED_REMOVED, FLOW_CONFIRMED,
        FLOW_CONFIRMED_BY_LOCAL, FLOW_CONFIRMED_BY_REMOTE, FlowKey, FlowState, OPENING_INSERTED,
        OPENING_MOVED, OPENING_REMOVED, TCP_FIN_FROM_LOCAL, TCP_FIN_FROM_REMOTE, TCP_RST,
        TCP_SYN_FROM_LOCAL, TCP_SYN_FROM_REMOTE,
    },
    event::IPPROTO_TCP,
};

use crate::{
    headers::Headers,
    maps::{ZPR_CONNTRACK, ZPR_CONNTRACK_OPENING, ZPR_CONNTRACK_STATS},
};

const EEXIST: i32 = 17;

/// The table a flow was found in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Established,
    Opening,
}

/// The flow's state and its table: established first (the common case
/// costs one lookup), then opening unless `established_only`.
#[inline(always)]
pub fn find(key: &FlowKey, established_only: bool) -> Option<(*mut FlowState, Table)> {
    if let Some(state) = ZPR_CONNTRACK.get_ptr_mut(key) {
        return Some((state, Table::Established));
    }
    if established_only {
        return None;
    }
    ZPR_CONNTRACK_OPENING
        .get_ptr_mut(key)
        .map(|state| (state, Table::Opening))
}

#[inline(always)]
pub fn is_tracked(key: &FlowKey) -> bool {
    ZPR_CONNTRACK.get_ptr(key).is_some() || ZPR_CONNTRACK_OPENING.get_ptr(key).is_some()
}

/// What starting to track a flow found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The flow was not tracked: its entry is new.
    New,
    /// The flow was already opening under this generation (a bare SYN sent
    /// again): its entry was touched and kept.
    Already,
}

/// Starts tracking a new flow, in the opening table. With `look_first`
/// (the packet was not looked for there before its decision: a bare SYN,
/// see `decide`) a live entry of this generation that the packet does not
/// reopen is the same flow, and kept; any other entry is replaced.
#[inline(always)]
pub fn open(
    key: &FlowKey,
    state: &FlowState,
    headers: &Headers,
    direction: Direction,
    look_first: bool,
) -> Result<Opened, i32> {
    if look_first && let Some(existing) = ZPR_CONNTRACK_OPENING.get_ptr_mut(key) {
        // SAFETY: value pointer from this lookup (see `decide`).
        let existing = unsafe { &mut *existing };
        if existing.generation == state.generation
            && is_live(existing, headers.protocol, state.last_seen_ns)
            && !is_reopened(existing, headers)
        {
            touch(existing, headers, direction, state.last_seen_ns);
            return Ok(Opened::Already);
        }
    }
    ZPR_CONNTRACK_OPENING.insert(key, state, 0)?;
    bump(OPENING_INSERTED);
    Ok(Opened::New)
}

#[inline(always)]
pub fn remove(key: &FlowKey, table: Table) {
    match table {
        Table::Established => {
            if ZPR_CONNTRACK.remove(key).is_ok() {
                bump(ESTABLISHED_REMOVED);
            }
        }
        Table::Opening => {
            if ZPR_CONNTRACK_OPENING.remove(key).is_ok() {
                bump(OPENING_REMOVED);
            }
        }
    }
}

/// Moves a flow seen from both sides to the established table. Should the
/// insert fail, the flow stays where it is (and still passes).
#[inline(always)]
pub fn confirm_if_seen_both_ways(key: &FlowKey, state: &FlowState) {
    if state.flags & FLOW_CONFIRMED != FLOW_CONFIRMED {
        return;
    }
    // NOEXIST: of two CPUs confirming one flow, one moves it.
    match ZPR_CONNTRACK.insert(key, state, BPF_NOEXIST as u64) {
        Ok(()) => {
            bump(ESTABLISHED_INSERTED);
            if ZPR_CONNTRACK_OPENING.remove(key).is_ok() {
                bump(OPENING_MOVED);
            }
        }
        Err(err) if err == -EEXIST => {}
        Err(_) => bump(CONFIRM_REFUSED),
    }
}

#[inline(always)]
fn bump(slot: u32) {
    if let Some(value) = ZPR_CONNTRACK_STATS.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot.
        unsafe { *value += 1 };
    }
}

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

/// Records the packet on the flow: when, which TCP flags from which side,
/// and whether it confirms the flow from its side.
#[inline(always)]
pub fn touch(state: &mut FlowState, headers: &Headers, direction: Direction, now: u64) {
    state.last_seen_ns = now;
    if headers.protocol == IPPROTO_TCP {
        state.tcp |= tcp_bits(headers, direction);
    }
    state.flags |= confirmation(headers, direction);
}

/// The confirmation bit of the packet's side, if it confirms the flow.
#[inline(always)]
pub fn confirmation(headers: &Headers, direction: Direction) -> u8 {
    if headers.protocol == IPPROTO_TCP && (headers.tcp_syn() || headers.tcp_rst()) {
        return 0;
    }
    match direction {
        Direction::FromWorkload => FLOW_CONFIRMED_BY_LOCAL,
        Direction::ToWorkload => FLOW_CONFIRMED_BY_REMOTE,
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
