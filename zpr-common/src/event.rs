//! Drop (and new-flow allow) events sent to user space through a ring buffer.

use crate::Address;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// What happened to the packet an [`Event`] describes.
pub const VERDICT_DROPPED: u8 = 0;
pub const VERDICT_ALLOWED: u8 = 1;
/// Would have been dropped; passed because the endpoint is in audit mode.
pub const VERDICT_AUDITED: u8 = 2;

/// `rule` of an event no Plan entry decided.
pub const NO_RULE: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub timestamp_ns: u64,
    pub ifindex: u32,
    pub generation: u32,
    pub local_uid: u32,
    pub remote_uid: u32,
    pub rule: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub family: u8,
    pub protocol: u8,
    /// A [`crate::Direction`].
    pub direction: u8,
    /// A [`crate::counters::Reason`].
    pub reason: u8,
    pub verdict: u8,
    pub _pad: [u8; 3],
    pub src: Address,
    pub dst: Address,
}
const _: () = assert!(core::mem::size_of::<Event>() == 72);

/// Indexes of [`crate::maps::EVENT_STATS`].
pub const EVENTS_LOST: u32 = 0;
pub const EVENTS_RATE_LIMITED: u32 = 1;
pub const EVENT_STATS_SLOTS: u32 = 2;

/// Per-CPU token bucket limiting events.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimiter {
    pub tokens: u64,
    pub last_refill_ns: u64,
}
const _: () = assert!(core::mem::size_of::<RateLimiter>() == 16);

crate::user_pod!(Event, RateLimiter);
