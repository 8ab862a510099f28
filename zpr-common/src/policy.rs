//! Policy entries: (slot, direction, local UID, remote UID) matched exactly,
//! then a longest-prefix match over protocol and port.

/// `remote_uid` of entries that hold for every remote.
pub const ANY_REMOTE: u32 = 0;

/// Policy direction: the local endpoint is the flow's source.
pub const POLICY_EGRESS: u8 = 0;
/// Policy direction: the local endpoint is the flow's destination.
pub const POLICY_INGRESS: u8 = 1;

/// LPM data. `port` is big-endian so its prefix bits come first; for ICMP
/// it holds `type << 8 | code`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyKey {
    pub slot: u8,
    pub direction: u8,
    pub _pad: [u8; 2],
    pub local_uid: u32,
    pub remote_uid: u32,
    pub protocol: u8,
    pub port: [u8; 2],
    pub _pad2: u8,
}
const _: () = assert!(core::mem::size_of::<PolicyKey>() == 16);

/// Bits matched exactly: slot, direction, padding and both UIDs.
pub const POLICY_STATIC_BITS: u32 = 96;
/// Prefix length of an entry for every protocol.
pub const POLICY_ANY_PROTOCOL: u32 = POLICY_STATIC_BITS;
/// Prefix length of an entry for one protocol, every port.
pub const POLICY_PROTOCOL_ONLY: u32 = POLICY_STATIC_BITS + 8;
/// Prefix length of a lookup (protocol and all 16 port bits).
pub const POLICY_FULL: u32 = POLICY_STATIC_BITS + 24;

/// Connections matching this entry are checked per packet, not tracked.
pub const POLICY_STATELESS: u32 = 1 << 0;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyValue {
    /// Index of the Plan entry that allowed it (provenance in events).
    pub rule: u32,
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<PolicyValue>() == 8);

crate::user_pod!(PolicyKey, PolicyValue);
