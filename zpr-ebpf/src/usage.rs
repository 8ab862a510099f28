//! Counts the flows each Plan entry allows (see `zpr_common::usage`).

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use zpr_common::usage::rule_usage_index;

use crate::{decide::Site, maps::ZPR_RULE_USAGE};

#[inline(always)]
pub fn count_allowed(site: &Site, rule: u32) {
    let Some(index) = rule_usage_index(site.slot, rule) else {
        return;
    };
    if let Some(usage) = ZPR_RULE_USAGE.get_ptr_mut(index) {
        // SAFETY: a map value, valid while the program runs; other CPUs
        // may add to it too, hence the atomic add (BPF's XADD: the target
        // has no compare-and-swap, so core's atomics lack fetch_add). The
        // timestamp is a plain store: the last writer wins, any is recent.
        unsafe {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*usage).flows, 1);
            (*usage).last_ns = site.now;
        }
    }
}
