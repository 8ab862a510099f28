//! Map names as they appear in the object (and under the pin directory).

/// Per-CPU [`crate::counters::Counter`] by [`crate::counters::counter_slot`].
pub const COUNTERS: &str = "ZPR_COUNTERS";

/// Program names as they appear in the object.
pub const PROG_FROM_WORKLOAD: &str = "zpr_from_workload";
