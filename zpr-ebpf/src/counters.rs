//! Per-CPU counters by (direction, reason).

use aya_ebpf::{btf_maps::PerCpuArray, macros::btf_map};
use zpr_common::{
    Direction,
    counters::{COUNTER_SLOTS, Counter, Reason, counter_slot},
};

#[btf_map]
static ZPR_COUNTERS: PerCpuArray<Counter, { COUNTER_SLOTS as usize }> = PerCpuArray::new();

#[inline(always)]
pub fn count(direction: Direction, reason: Reason, bytes: u64) {
    if let Some(counter) = ZPR_COUNTERS.get_ptr_mut(counter_slot(direction, reason)) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}
