//! Per-CPU packet counters: one row per local endpoint, and in each a
//! slot per (direction, reason).

use crate::Direction;

/// Why a packet was passed or dropped. Every packet a program sees is
/// counted under exactly one reason.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Part of a tracked flow (conntrack hit).
    Established = 0,
    /// First packet of a flow a statement allows; a conntrack entry was made.
    NewFlow = 1,
    /// Allowed by a stateless statement (checked per packet, not tracked).
    Stateless = 2,
    /// The interface carries no protected endpoint (untagged, or no Plan).
    NotProtected = 3,
    /// ARP: needed for IPv4 to work at all, not policed.
    Arp = 4,
    /// ICMPv6 neighbour discovery: needed for IPv6 to work at all.
    NeighborDiscovery = 5,
    /// An ICMP error about a tracked flow.
    RelatedIcmp = 6,
    /// A non-first fragment of an allowed datagram.
    FragmentOfAllowed = 7,
    /// Would be dropped, passed because the endpoint is in audit mode.
    Audited = 8,
    /// A packet of an allowed flow its table had lost (evicted, or the
    /// tables were replaced): mid-stream TCP, from either side.
    PickedUp = 9,
    /// No statement allows the flow.
    NoPolicy = 10,
    /// A tracked flow no statement allows any more (re-checked after a reload).
    Revoked = 11,
    /// Sent by the workload with a source address that is not its own.
    SpoofedSource = 12,
    /// Delivered toward the workload but addressed to another address.
    ForeignDestination = 13,
    /// Truncated or inconsistent headers.
    Malformed = 14,
    /// A non-first fragment whose first fragment was not allowed (or not seen).
    Fragment = 15,
    /// Neither IPv4, IPv6 nor ARP, to or from a protected endpoint.
    UnsupportedEthertype = 16,
    /// An 802.1Q/802.1ad tagged frame to or from a protected endpoint.
    VlanTagged = 17,
    /// The opening table could not take the new flow.
    ConntrackFull = 18,
    /// Sent or received by a quarantined vNIC: one `--quarantine` matches
    /// and no endpoint is registered for it on this node.
    Unregistered = 19,
    /// DHCP on a quarantined vNIC, passed because of
    /// `--quarantine-allow-dhcp` (so a VM can get its address while it
    /// waits for its registration).
    Dhcp = 20,
}

impl Reason {
    pub const COUNT: usize = 21;
    pub const ALL: [Reason; Reason::COUNT] = [
        Reason::Established,
        Reason::NewFlow,
        Reason::Stateless,
        Reason::NotProtected,
        Reason::Arp,
        Reason::NeighborDiscovery,
        Reason::RelatedIcmp,
        Reason::FragmentOfAllowed,
        Reason::Audited,
        Reason::PickedUp,
        Reason::NoPolicy,
        Reason::Revoked,
        Reason::SpoofedSource,
        Reason::ForeignDestination,
        Reason::Malformed,
        Reason::Fragment,
        Reason::UnsupportedEthertype,
        Reason::VlanTagged,
        Reason::ConntrackFull,
        Reason::Unregistered,
        Reason::Dhcp,
    ];

    /// The name users see in `zpr status`, `zpr monitor` and the docs.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Established => "established",
            Reason::NewFlow => "new-flow",
            Reason::Stateless => "stateless",
            Reason::NotProtected => "not-protected",
            Reason::Arp => "arp",
            Reason::NeighborDiscovery => "neighbor-discovery",
            Reason::RelatedIcmp => "related-icmp",
            Reason::FragmentOfAllowed => "fragment-of-allowed",
            Reason::Audited => "audited",
            Reason::PickedUp => "picked-up",
            Reason::NoPolicy => "no-policy",
            Reason::Revoked => "revoked",
            Reason::SpoofedSource => "spoofed-source",
            Reason::ForeignDestination => "foreign-destination",
            Reason::Malformed => "malformed",
            Reason::Fragment => "fragment",
            Reason::UnsupportedEthertype => "unsupported-ethertype",
            Reason::VlanTagged => "vlan-tagged",
            Reason::ConntrackFull => "conntrack-full",
            Reason::Unregistered => "unregistered",
            Reason::Dhcp => "dhcp",
        }
    }

    pub const fn is_drop(self) -> bool {
        // The pass reasons come first, but for one added later.
        (self as u8) >= (Reason::NoPolicy as u8) && !matches!(self, Reason::Dhcp)
    }

    pub const fn from_u8(raw: u8) -> Option<Reason> {
        if (raw as usize) < Reason::COUNT {
            Some(Reason::ALL[raw as usize])
        } else {
            None
        }
    }
}

/// Packets and bytes counted under one (direction, reason) on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Counter>() == 16);

/// One row of the counters map, on one CPU: a local endpoint's packets by
/// direction, each array indexed by [`Reason`] number. Row
/// [`UNATTRIBUTED_ROW`] counts every other packet the programs see (a vNIC
/// with no endpoint here, a quarantined one, endpoints beyond the rows),
/// so the rows summed are the host's totals.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterRow {
    pub from_workload: [Counter; Reason::COUNT],
    pub to_workload: [Counter; Reason::COUNT],
}
const _: () = assert!(core::mem::size_of::<CounterRow>() == 2 * Reason::COUNT * 16);

impl CounterRow {
    pub const ZERO: CounterRow = CounterRow {
        from_workload: [Counter {
            packets: 0,
            bytes: 0,
        }; Reason::COUNT],
        to_workload: [Counter {
            packets: 0,
            bytes: 0,
        }; Reason::COUNT],
    };

    #[inline(always)]
    pub fn get_mut(&mut self, direction: Direction, reason: Reason) -> &mut Counter {
        let by_reason = match direction {
            Direction::FromWorkload => &mut self.from_workload,
            Direction::ToWorkload => &mut self.to_workload,
        };
        &mut by_reason[reason as usize]
    }

    pub fn get(&self, direction: Direction, reason: Reason) -> Counter {
        let by_reason = match direction {
            Direction::FromWorkload => &self.from_workload,
            Direction::ToWorkload => &self.to_workload,
        };
        by_reason[reason as usize]
    }
}

impl Default for CounterRow {
    fn default() -> CounterRow {
        CounterRow::ZERO
    }
}
crate::user_pod!(Counter, CounterRow);

/// The row of packets no local endpoint's row takes.
pub const UNATTRIBUTED_ROW: u32 = 0;

/// Rows of the counters map: the unattributed row and one per local
/// endpoint, for up to `COUNTER_ROWS - 1` endpoints per host (the agent
/// counts any more in the unattributed row). A row is 672 bytes per CPU.
pub const COUNTER_ROWS: u32 = 1024;

const _: () = {
    let mut i = 0;
    while i < Reason::COUNT {
        assert!(Reason::ALL[i] as usize == i);
        i += 1;
    }
};
