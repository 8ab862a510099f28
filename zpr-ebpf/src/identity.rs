//! The remote side's identity: exact host hash first (cheap), then the
//! prefix trie (CIDR selectors, VCN ranges, the rest of the world).

use aya_ebpf::btf_maps::lpm_trie::Key;
use zpr_common::{
    conntrack::FlowKey,
    identity::{HostKey, PREFIX_STATIC_BITS, PrefixKey},
};

use crate::{
    address,
    maps::{ZPR_HOSTS, ZPR_PREFIXES},
};

/// A UID no policy entry names: only "any remote" entries match it.
pub const UNRESOLVED: u32 = u32::MAX;

/// The UID of the flow's remote address.
#[inline(always)]
pub fn remote_uid(slot: u8, flow: &FlowKey) -> u32 {
    let family = flow.family;
    let mut host = HostKey {
        slot,
        family,
        _pad: [0; 2],
        addr: [0; 16],
    };
    // SAFETY: both are address fields of such keys.
    unsafe { address::copy_aligned(&mut host.addr, &flow.remote) };
    if let Some(uid) = unsafe { ZPR_HOSTS.get(&host) } {
        return *uid;
    }
    let key = Key::new(
        PREFIX_STATIC_BITS + address_bits(family),
        PrefixKey {
            slot,
            family,
            addr: flow.remote,
            _pad: [0; 2],
        },
    );
    ZPR_PREFIXES.get(&key).copied().unwrap_or(UNRESOLVED)
}

#[inline(always)]
pub fn address_bits(family: u8) -> u32 {
    if family == zpr_common::FAMILY_IPV4 {
        32
    } else {
        128
    }
}
