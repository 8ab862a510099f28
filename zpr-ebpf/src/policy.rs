//! Policy lookup: the concrete remote UID first, then "any remote"; within
//! each, the longest protocol/port prefix (the compiler made the first hit
//! carry everything that applies).

use aya_ebpf::btf_maps::lpm_trie::Key;
use zpr_common::policy::{ANY_REMOTE, POLICY_FULL, PolicyKey, PolicyValue};

use crate::maps::ZPR_POLICY;

#[inline(always)]
pub fn lookup(
    slot: u8,
    direction: u8,
    local_uid: u32,
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
            local_uid,
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
    ZPR_POLICY.get(&key).copied()
}
