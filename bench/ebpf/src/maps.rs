//! The reference programs' maps, shaped like the classic minimal design: one
//! prefix trie for every identity (hosts as /32 and /128), one exact-match
//! policy hash, one LRU conntrack of zpr's size.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    btf_maps::{HashMap, LpmTrie, LruHashMap, lpm_trie::Key},
    macros::btf_map,
};
use zpr_common::{
    Address, FAMILY_IPV4,
    conntrack::{FlowKey, FlowState},
    identity::{PREFIX_STATIC_BITS, PrefixKey},
    maps,
    policy::{PolicyKey, PolicyValue},
};

#[btf_map]
pub static REF_CONNTRACK: LruHashMap<FlowKey, FlowState, { maps::CONNTRACK_MAX as usize }> =
    LruHashMap::new();

#[btf_map]
pub static REF_IPCACHE: LpmTrie<
    PrefixKey,
    u32,
    { (maps::HOSTS_MAX + maps::PREFIXES_MAX) as usize },
> = LpmTrie::new();

#[btf_map]
pub static REF_POLICY: HashMap<
    PolicyKey,
    PolicyValue,
    { maps::POLICY_MAX as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();

/// The UID of `addr`; 0 (no identity) when nothing covers it.
#[inline(always)]
pub fn identity(family: u8, addr: &Address) -> u32 {
    let bits = if family == FAMILY_IPV4 { 32 } else { 128 };
    let key = Key::new(
        PREFIX_STATIC_BITS + bits,
        PrefixKey {
            slot: 0,
            family,
            addr: *addr,
            _pad: [0; 2],
        },
    );
    REF_IPCACHE.get(&key).copied().unwrap_or(0)
}
