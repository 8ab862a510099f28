//! User-space side of the kernel programs: load the embedded object, attach
//! it to interfaces, write a Plan into its maps, read counters. Thin on
//! purpose: decisions live in `compile` (user space) and `zpr-ebpf` (kernel).

mod attachments;
mod batch;
mod conntrack;
mod counter_rows;
mod counters;
mod events;
mod inspect;
mod object;
mod ownership;
mod pinned;
mod pins;
mod plan_maps;
mod syscall;
mod test_run;
mod usage;
mod visibility;

pub use attachments::{KernelAttachments, kernel_attachments};
pub use conntrack::{
    ConntrackSize, ConntrackSummary, TableFill, flush_flows, monotonic_now_ns, pinned_conntrack,
    pinned_live_flows,
};
pub use counter_rows::RETIRED_ROW;
pub use counters::{CounterTable, read_counters};
pub use events::{decode as decode_event, drain_events};
pub use inspect::{
    EventStats, Fill, pinned_config, pinned_counters, pinned_event_stats, pinned_events,
    pinned_fill,
};
pub use object::{Datapath, FromWorkloadHook, KernelLog, ProgramSet, QuarantineDhcp};
pub use ownership::{PinOwner, PinOwnership, pin_owner};
pub use pinned::{
    Adoption, LinkEnd, PinLayout, Removed, VnicPrograms, detach_pinned, pinned_interfaces,
    remove_all,
};
pub use pins::ensure_bpffs;
pub use plan_maps::{
    InterfaceIndexes, WrittenPlan, live_plan_intact, map_policy_key, prime_idle_slot,
    protected_endpoints, write_plan,
};
pub use test_run::{Hook, RunResult, TEST_RUN_IFINDEX};
pub use usage::{next_slot, read_rule_usage};
pub use visibility::{PinVisibility, current_netns_name, shares_mount_namespace};
