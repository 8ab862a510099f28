//! Per-CPU counters: a row per local endpoint, by (direction, reason).

use zpr_common::{Direction, counters::Reason};

use crate::maps::ZPR_COUNTERS;

#[inline(always)]
pub fn count(row: u32, direction: Direction, reason: Reason, bytes: u64) {
    if let Some(row) = ZPR_COUNTERS.get_ptr_mut(row) {
        // SAFETY: this CPU's row; nothing else writes it while we run.
        let counter = unsafe { (*row).get_mut(direction, reason) };
        counter.packets += 1;
        counter.bytes += bytes;
    }
}
