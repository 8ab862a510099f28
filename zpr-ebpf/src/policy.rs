//! Policy lookup: the concrete remote UID first, then "any remote" (when
//! the local UID has such a table); within each, the longest protocol/port
//! prefix (the compiler made the first hit carry everything that applies).

use aya_ebpf::btf_maps::lpm_trie::Key;
use zpr_common::{
    endpoint::LocalIdentity,
    policy::{ANY_REMOTE, POLICY_FULL, PolicyKey, PolicyValue},
};

use crate::maps::ZPR_POLICY;

#[inline(always)]
pub fn lookup(
    slot: u8,
    direction: u8,
    local: LocalIdentity,
    remote_uid: u32,
    protocol: u8,
    port: u16,
) -> Option<PolicyValue> {
    let mut key = Key::new(
        POLICY_FULL,
        PolicyKey {
            slot,
            direction,
            _pad: [0; 2],
            local_uid: local.uid(),
            remote_uid,
            protocol,
            port: port.to_be_bytes(),
            _pad2: 0,
        },
    );
    if let Some(value) = ZPR_POLICY.get(&key) {
        return Some(*value);
    }
    key.data.remote_uid = ANY_REMOTE;
    // Without an "any remote" table the lookup cannot hit; its key then
    // names a slot no entry has, which the trie rejects at its root. Not a
    // branch: one here would have the verifier walk the rest of the
    // decision twice (LLVM hoists such a test to the local-address lookup).
    let absent = (local.any_remote(direction) ^ 1) as u8;
    key.data.slot |= absent.wrapping_neg();
    ZPR_POLICY.get(&key).copied()
}
