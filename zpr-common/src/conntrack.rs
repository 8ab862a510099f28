//! Per-flow state, keyed from the local endpoint's point of view so both
//! directions of a flow find the same entry without sorting addresses.
//!
//! Two LRU tables: a new flow starts in the opening table (a flood of new
//! flows churns through it), and moves to the established table once both
//! sides have been seen, as Linux's conntrack marks a flow ASSURED. So
//! flows that never answer (spoofed SYNs, scans) cannot push established
//! ones out: only more established flows than the table holds can.

use crate::Address;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub ifindex: u32,
    pub family: u8,
    pub protocol: u8,
    /// TCP/UDP port of the local endpoint; ICMP echo identifier.
    pub local_port: u16,
    /// TCP/UDP port of the remote side; 0 for ICMP.
    pub remote_port: u16,
    pub _pad: [u8; 2],
    pub local: Address,
    pub remote: Address,
}
const _: () = assert!(
    core::mem::offset_of!(FlowKey, local) % 4 == 0
        && core::mem::offset_of!(FlowKey, remote) % 4 == 0
);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 44);

/// TCP flags seen on the flow (bits of [`FlowState::tcp`]).
pub const TCP_SYN_FROM_LOCAL: u8 = 1 << 0;
pub const TCP_SYN_FROM_REMOTE: u8 = 1 << 1;
pub const TCP_FIN_FROM_LOCAL: u8 = 1 << 2;
pub const TCP_FIN_FROM_REMOTE: u8 = 1 << 3;
pub const TCP_RST: u8 = 1 << 4;

/// The flow was allowed only because its endpoint is in audit mode.
pub const FLOW_AUDITED: u8 = 1 << 0;
/// A packet that confirms the flow came from this side: any packet, or for
/// TCP one without SYN or RST (a SYN-ACK answering a spoofed SYN, or a RST
/// answering a stray ACK, confirms nothing).
pub const FLOW_CONFIRMED_BY_LOCAL: u8 = 1 << 1;
pub const FLOW_CONFIRMED_BY_REMOTE: u8 = 1 << 2;
/// Both sides were seen: the flow belongs in the established table.
pub const FLOW_CONFIRMED: u8 = FLOW_CONFIRMED_BY_LOCAL | FLOW_CONFIRMED_BY_REMOTE;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    /// CLOCK_MONOTONIC to the last tick (`bpf_ktime_get_coarse_ns`).
    pub last_seen_ns: u64,
    /// Policy generation that last allowed the flow; a newer live generation
    /// makes the next packet re-check the policy (revocation cuts live flows).
    pub generation: u32,
    /// Plan entry that allowed the flow.
    pub rule: u32,
    pub local_uid: u32,
    pub remote_uid: u32,
    /// The [`crate::Direction`] of the flow's first packet.
    pub origin: u8,
    pub tcp: u8,
    pub flags: u8,
    pub _pad: u8,
    /// The protocol/port bits the flow's first packet was allowed on, so a
    /// re-check asks the same question.
    pub policy_port: u16,
    pub _pad2: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FlowState>() == 32);

const SECOND: u64 = 1_000_000_000;
/// Idle timeouts, in nanoseconds.
pub const TIMEOUT_TCP_ESTABLISHED: u64 = 6 * 3600 * SECOND;
pub const TIMEOUT_TCP_OPENING: u64 = 60 * SECOND;
pub const TIMEOUT_TCP_CLOSING: u64 = 10 * SECOND;
pub const TIMEOUT_UDP: u64 = 60 * SECOND;
pub const TIMEOUT_OTHER: u64 = 30 * SECOND;

impl FlowState {
    /// How long the flow may stay idle, given what was seen of it.
    pub const fn timeout(&self, protocol: u8) -> u64 {
        match protocol {
            crate::event::IPPROTO_TCP => {
                if self.tcp & (TCP_RST | TCP_FIN_FROM_LOCAL | TCP_FIN_FROM_REMOTE) != 0 {
                    TIMEOUT_TCP_CLOSING
                } else if self.tcp & TCP_SYN_FROM_LOCAL != 0 && self.tcp & TCP_SYN_FROM_REMOTE != 0
                {
                    TIMEOUT_TCP_ESTABLISHED
                } else if self.tcp & (TCP_SYN_FROM_LOCAL | TCP_SYN_FROM_REMOTE) != 0 {
                    TIMEOUT_TCP_OPENING
                } else {
                    // Picked up mid-stream (e.g. after a restart): no handshake seen.
                    TIMEOUT_TCP_ESTABLISHED
                }
            }
            crate::event::IPPROTO_UDP => TIMEOUT_UDP,
            _ => TIMEOUT_OTHER,
        }
    }
}

/// A non-first IP fragment is judged by its first fragment: the first one,
/// when allowed, records its datagram here.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub ifindex: u32,
    pub id: u32,
    pub family: u8,
    pub protocol: u8,
    pub _pad: [u8; 2],
    pub src: Address,
    pub dst: Address,
}
const _: () = assert!(core::mem::size_of::<FragmentKey>() == 44);

/// Indexes of [`crate::maps::CONNTRACK_STATS`]: what the datapath put into
/// and took out of each table, so the agent can tell how many entries
/// each LRU evicted (put in, less taken out, less still there).
pub const OPENING_INSERTED: u32 = 0;
/// Moved to the established table.
pub const OPENING_MOVED: u32 = 1;
pub const OPENING_REMOVED: u32 = 2;
pub const ESTABLISHED_INSERTED: u32 = 3;
pub const ESTABLISHED_REMOVED: u32 = 4;
/// A confirmed flow the established table could not take (it stays in
/// the opening table).
pub const CONFIRM_REFUSED: u32 = 5;
pub const CONNTRACK_STATS_SLOTS: u32 = 6;

crate::user_pod!(FlowKey, FlowState, FragmentKey);
