//! Map and program names as they appear in the object and under the pin
//! directory, and map sizes.

pub const CONFIG: &str = "ZPR_CONFIG";
pub const ENDPOINTS: &str = "ZPR_ENDPOINTS";
pub const ENDPOINT_INDEX: &str = "ZPR_ENDPOINT_INDEX";
pub const LOCAL_ADDRESSES: &str = "ZPR_LOCAL_ADDRESSES";
pub const HOSTS: &str = "ZPR_HOSTS";
pub const PREFIXES: &str = "ZPR_PREFIXES";
pub const POLICY: &str = "ZPR_POLICY";
pub const CONNTRACK: &str = "ZPR_CONNTRACK";
pub const CONNTRACK_OPENING: &str = "ZPR_CONNTRACK_OPENING";
pub const CONNTRACK_STATS: &str = "ZPR_CONNTRACK_STATS";
pub const FRAGMENTS: &str = "ZPR_FRAGMENTS";
pub const COUNTERS: &str = "ZPR_COUNTERS";
pub const EVENTS: &str = "ZPR_EVENTS";
pub const EVENT_STATS: &str = "ZPR_EVENT_STATS";
pub const RATE_LIMITER: &str = "ZPR_RATE_LIMITER";
pub const RULE_USAGE: &str = "ZPR_RULE_USAGE";

/// Every map of the object, in the order `zpr status` lists them.
pub const ALL: [&str; 16] = [
    CONFIG,
    ENDPOINTS,
    ENDPOINT_INDEX,
    LOCAL_ADDRESSES,
    HOSTS,
    PREFIXES,
    POLICY,
    CONNTRACK,
    CONNTRACK_OPENING,
    CONNTRACK_STATS,
    FRAGMENTS,
    COUNTERS,
    EVENTS,
    EVENT_STATS,
    RATE_LIMITER,
    RULE_USAGE,
];

/// Sizes: per-Plan maps hold both slots during a reload.
pub const ENDPOINTS_MAX: u32 = 2 * 4096;
pub const ENDPOINT_INDEX_SIZE: u32 = crate::SLOTS * crate::endpoint::INDEXED_IFINDEX_LIMIT;
pub const LOCAL_ADDRESSES_MAX: u32 = 2 * 16384;
pub const HOSTS_MAX: u32 = 2 * 65536;
/// An LPM trie allocates per entry, so room costs nothing until used.
pub const PREFIXES_MAX: u32 = 2 * 262_144;
pub const POLICY_MAX: u32 = 2 * 1_048_576;
/// Established flows, by default: sized for a busy hypervisor (as
/// Cilium's default); `zpr run --conntrack-entries` sets it at load time.
pub const CONNTRACK_MAX: u32 = 524_288;
/// The opening table holds a quarter as many: it only needs to outlast a
/// handshake under a flood (and a TCP flow it loses is picked up again).
pub const fn conntrack_opening_entries(established: u32) -> u32 {
    let quarter = established / 4;
    if quarter < CONNTRACK_OPENING_MIN {
        CONNTRACK_OPENING_MIN
    } else {
        quarter
    }
}
pub const CONNTRACK_OPENING_MIN: u32 = 1024;
pub const CONNTRACK_OPENING_MAX: u32 = conntrack_opening_entries(CONNTRACK_MAX);
pub const FRAGMENTS_MAX: u32 = 8192;
/// Bytes of the event ring buffer (a power of two, a multiple of the page size).
pub const EVENTS_BYTES: u32 = 256 * 1024;
/// Default event budget per CPU per second.
pub const EVENTS_PER_SECOND: u32 = 1000;

/// Programs, by the symbol names in the object.
pub const PROG_FROM_WORKLOAD_XDP: &str = "zpr_from_workload_xdp";
pub const PROG_FROM_WORKLOAD_TC: &str = "zpr_from_workload_tc";
pub const PROG_TO_WORKLOAD_TC: &str = "zpr_to_workload_tc";
/// The deny-all programs of a quarantined vNIC (see `zpr run --quarantine`).
pub const PROG_QUARANTINE_FROM_XDP: &str = "zpr_quarantine_from_xdp";
pub const PROG_QUARANTINE_FROM_TC: &str = "zpr_quarantine_from_tc";
pub const PROG_QUARANTINE_TO_TC: &str = "zpr_quarantine_to_tc";
/// Every program of the object: each is verified when it is loaded.
pub const PROGRAMS: [&str; 6] = [
    PROG_FROM_WORKLOAD_XDP,
    PROG_FROM_WORKLOAD_TC,
    PROG_TO_WORKLOAD_TC,
    PROG_QUARANTINE_FROM_XDP,
    PROG_QUARANTINE_FROM_TC,
    PROG_QUARANTINE_TO_TC,
];
/// A read-only global of the quarantine programs, set when the object is
/// loaded: non-zero lets DHCP through (`--quarantine-allow-dhcp`).
pub const QUARANTINE_ALLOW_DHCP: &str = "ZPR_QUARANTINE_ALLOW_DHCP";
