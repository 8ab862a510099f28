//! Per-CPU counters by (direction, reason).

use zpr_common::{
    Direction,
    counters::{Reason, counter_slot},
};

use crate::maps::ZPR_COUNTERS;

#[inline(always)]
pub fn count(direction: Direction, reason: Reason, bytes: u64) {
    if let Some(counter) = ZPR_COUNTERS.get_ptr_mut(counter_slot(direction, reason)) {
        // SAFETY: this CPU's slot; nothing else writes it while we run.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}
