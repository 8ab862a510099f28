//! Remote identity (UID) of an address: exact hosts first, then prefixes.

use crate::Address;

/// Exact /32 or /128 of an endpoint, value: its UID. Aligned as a word
/// (the layout is the same) so that the datapath copies the address into
/// it a word at a time.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HostKey {
    pub slot: u8,
    pub family: u8,
    pub _pad: [u8; 2],
    pub addr: Address,
}
const _: () = assert!(core::mem::size_of::<HostKey>() == 20);
const _: () = assert!(core::mem::offset_of!(HostKey, addr) % 4 == 0);

/// LPM data of a prefix entry, value: its UID. The trie matches `slot` and
/// `family` exactly ([`PREFIX_STATIC_BITS`]) and then the address bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PrefixKey {
    pub slot: u8,
    pub family: u8,
    pub addr: Address,
    /// Beyond every prefix: never matched, keeps values aligned.
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<PrefixKey>() == 20);

/// Bits of [`PrefixKey`] before the address.
pub const PREFIX_STATIC_BITS: u32 = 16;

crate::user_pod!(HostKey, PrefixKey);
