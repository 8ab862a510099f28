//! How much each Plan entry is used: the flows its statements allowed, and
//! when last. The agent sums these per statement (`zpr usage`).

/// One Plan entry's use, in one slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleUsage {
    /// New flows the entry allowed (a stateless entry: packets), from
    /// either side.
    pub flows: u64,
    /// `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC, to the last tick) of
    /// the last of them.
    pub last_ns: u64,
}
const _: () = assert!(core::mem::size_of::<RuleUsage>() == 16);
crate::user_pod!(RuleUsage);

/// Entries counted per Plan slot: a host's local Plan entries (its own
/// endpoints' tables; about 88,000 at 100,000 statements) beyond this
/// are enforced but not counted.
pub const RULE_USAGE_PER_SLOT: u32 = 262_144;
/// Entries of the usage map: both slots.
pub const RULE_USAGE_ENTRIES: u32 = crate::SLOTS * RULE_USAGE_PER_SLOT;
/// The usage map's flags: `BPF_F_MMAPABLE`, so the agent reads a slot's
/// counts from memory it maps (its every-second harvest copied each entry
/// through bpf(2) before: 1.4 MB per slot at 100,000 statements).
pub const RULE_USAGE_MAP_FLAGS: usize = 1 << 10;

/// Where `rule` of `slot` is counted; `None` past the counted entries.
#[inline(always)]
pub const fn rule_usage_index(slot: u8, rule: u32) -> Option<u32> {
    if rule < RULE_USAGE_PER_SLOT {
        Some(slot as u32 * RULE_USAGE_PER_SLOT + rule)
    } else {
        None
    }
}
