//! Local endpoints, found by the ifindex of their host-side vNIC.

use crate::Address;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub ifindex: u32,
    pub slot: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<EndpointKey>() == 8);

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
}
const _: () = assert!(core::mem::size_of::<EndpointConfig>() == 4);

/// One of a local endpoint's own addresses; the value is that address's
/// UID. A packet leaving the endpoint from any other address is spoofed.
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

crate::user_pod!(EndpointKey, EndpointConfig, LocalAddressKey);
