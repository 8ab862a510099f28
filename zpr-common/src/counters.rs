//! Per-CPU packet counters, one slot per (direction, reason).

use crate::Direction;

/// Why a packet was passed or dropped. Every verdict the kernel reaches is
/// counted under exactly one reason.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not IPv4/IPv6 (ARP and the like): not policed at L3/L4.
    NonIp = 0,
    /// An IP packet on an interface with no protected endpoint.
    NotProtected = 1,
}

impl Reason {
    pub const COUNT: usize = 2;
    pub const ALL: [Reason; Reason::COUNT] = [Reason::NonIp, Reason::NotProtected];

    /// The name users see in `zpr status`, `zpr monitor` and the docs.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::NonIp => "non-ip",
            Reason::NotProtected => "not-protected",
        }
    }

    pub const fn is_drop(self) -> bool {
        match self {
            Reason::NonIp | Reason::NotProtected => false,
        }
    }
}

/// Packets and bytes seen for one (direction, reason) slot on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Counter>() == 16);

#[cfg(feature = "user")]
// SAFETY: repr(C), no padding, every bit pattern valid.
unsafe impl aya::Pod for Counter {}

/// Number of slots in the counters map.
pub const COUNTER_SLOTS: u32 = (Direction::COUNT * Reason::COUNT) as u32;

/// The counters-map index of (direction, reason).
pub const fn counter_slot(direction: Direction, reason: Reason) -> u32 {
    direction as u32 * Reason::COUNT as u32 + reason as u32
}
