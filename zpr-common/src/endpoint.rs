//! Local endpoints, found by the ifindex of their host-side vNIC.

use crate::Address;

/// The authoritative record of this host's endpoints per slot, for every
/// ifindex (the agent clears a slot by walking it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub ifindex: u32,
    pub slot: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<EndpointKey>() == 8);

impl EndpointKey {
    /// The key's bytes as one integer (native order): written in one store.
    /// Shifts, not a byte array: LLVM's BPF backend can assemble an array's
    /// bytes one mask at a time (18 instructions where one shift will do).
    #[inline(always)]
    pub const fn to_bits(&self) -> u64 {
        let ifindex = self.ifindex as u64;
        let rest = u32::from_ne_bytes([self.slot, self._pad[0], self._pad[1], self._pad[2]]) as u64;
        if cfg!(target_endian = "little") {
            ifindex | rest << 32
        } else {
            ifindex << 32 | rest
        }
    }
}

/// The endpoint carries at least one security attribute: default deny.
pub const ENDPOINT_PROTECTED: u32 = 1 << 0;
/// Decide and report, drop nothing.
pub const ENDPOINT_AUDIT: u32 = 1 << 1;

/// The endpoint's identity is per address (a CIDR selector can tell its
/// IPv4 and IPv6 addresses apart): see [`LocalAddressKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointConfig {
    pub flags: u32,
    /// The endpoint's row of the counters map
    /// ([`crate::counters::CounterRow`]); it keeps it across reloads.
    pub counter_row: u32,
}
const _: () = assert!(core::mem::size_of::<EndpointConfig>() == 8);

/// Interfaces below this ifindex also have their [`EndpointConfig`] in the
/// endpoint index, an array the verifier inlines: every packet asks
/// "protected here?" first, and untagged traffic should cost no more than
/// that. Larger ifindexes (hosts that created many interfaces) are found
/// in the hash.
pub const INDEXED_IFINDEX_LIMIT: u32 = 65_536;

/// An endpoint index entry. The kernel looks every ifindex up at
/// [`endpoint_index_position`] and uses the entry only if it names that
/// ifindex (0 names none).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexedEndpoint {
    pub ifindex: u32,
    pub config: EndpointConfig,
}
const _: () = assert!(core::mem::size_of::<IndexedEndpoint>() == 12);

/// Where (slot, ifindex) sits in the endpoint index: its own entry below
/// [`INDEXED_IFINDEX_LIMIT`], a lower interface's entry above it.
#[inline(always)]
pub const fn endpoint_index_position(slot: u8, ifindex: u32) -> u32 {
    slot as u32 * INDEXED_IFINDEX_LIMIT + ifindex % INDEXED_IFINDEX_LIMIT
}

/// Whether the endpoint index holds (has room for) this ifindex's entry.
pub const fn is_indexed(ifindex: u32) -> bool {
    ifindex < INDEXED_IFINDEX_LIMIT
}

/// One of a local endpoint's own addresses; the value is that address's
/// [`LocalIdentity`]. A packet leaving the endpoint from any other address
/// is spoofed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LocalAddressKey {
    pub ifindex: u32,
    pub slot: u8,
    pub family: u8,
    pub _pad: [u8; 2],
    pub addr: Address,
}
const _: () = assert!(core::mem::size_of::<LocalAddressKey>() == 24);
const _: () = assert!(core::mem::offset_of!(LocalAddressKey, addr) % 4 == 0);

/// A local address's map value: its UID, and in the top bits whether that
/// UID has an "any remote" policy table, per policy direction. Without
/// one, a miss in the concrete table is final: a denied packet walks one
/// trie, not two.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalIdentity(pub u32);
const _: () = assert!(core::mem::size_of::<LocalIdentity>() == 4);

impl LocalIdentity {
    /// UIDs are below this (the compiler numbers identities from 1).
    pub const UID_LIMIT: u32 = 1 << 30;
    const ANY_REMOTE_SHIFT: u32 = 30;

    /// `any_remote[d]`: the UID has an "any remote" table in policy
    /// direction `d` ([`crate::policy::POLICY_EGRESS`] / `POLICY_INGRESS`).
    pub const fn new(uid: u32, any_remote: [bool; 2]) -> Option<LocalIdentity> {
        if uid >= Self::UID_LIMIT {
            return None;
        }
        Some(LocalIdentity(
            uid | (any_remote[0] as u32) << Self::ANY_REMOTE_SHIFT
                | (any_remote[1] as u32) << (Self::ANY_REMOTE_SHIFT + 1),
        ))
    }

    #[inline(always)]
    pub const fn uid(self) -> u32 {
        self.0 & (Self::UID_LIMIT - 1)
    }

    /// 1 if the UID has an "any remote" table in `policy_direction`, else 0.
    #[inline(always)]
    pub const fn any_remote(self, policy_direction: u8) -> u32 {
        (self.0 >> (Self::ANY_REMOTE_SHIFT + policy_direction as u32)) & 1
    }
}

crate::user_pod!(
    EndpointKey,
    EndpointConfig,
    IndexedEndpoint,
    LocalAddressKey,
    LocalIdentity,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_as_bits_is_its_bytes() {
        let key = EndpointKey {
            ifindex: 0x0102_0304,
            slot: 1,
            _pad: [5, 6, 7],
        };
        // SAFETY: EndpointKey is 8 plain bytes.
        let bytes: [u8; 8] = unsafe { core::mem::transmute(key) };
        assert_eq!(key.to_bits(), u64::from_ne_bytes(bytes));
    }
}
