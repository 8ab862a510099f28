//! Every map of the object, BTF-typed so `bpftool map dump` prints fields.

use aya_ebpf::{
    btf_maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
    macros::btf_map,
};
use zpr_common::{
    config::Config,
    conntrack::{CONNTRACK_STATS_SLOTS, FlowKey, FlowState, FragmentKey},
    counters::{COUNTER_ROWS, CounterRow},
    endpoint::{EndpointConfig, EndpointKey, IndexedEndpoint, LocalAddressKey, LocalIdentity},
    event::{EVENT_STATS_SLOTS, Event, RateLimiter},
    identity::{HostKey, PrefixKey},
    maps,
    policy::{PolicyKey, PolicyValue},
    usage::{RULE_USAGE_ENTRIES, RULE_USAGE_MAP_FLAGS, RuleUsage},
};

#[btf_map]
pub static ZPR_CONFIG: Array<Config, 1> = Array::new();

#[btf_map]
pub static ZPR_ENDPOINTS: HashMap<EndpointKey, EndpointConfig, { maps::ENDPOINTS_MAX as usize }> =
    HashMap::new();

#[btf_map]
pub static ZPR_ENDPOINT_INDEX: Array<IndexedEndpoint, { maps::ENDPOINT_INDEX_SIZE as usize }> =
    Array::new();

#[btf_map]
pub static ZPR_LOCAL_ADDRESSES: HashMap<
    LocalAddressKey,
    LocalIdentity,
    { maps::LOCAL_ADDRESSES_MAX as usize },
> = HashMap::new();

#[btf_map]
pub static ZPR_HOSTS: HashMap<HostKey, u32, { maps::HOSTS_MAX as usize }> = HashMap::new();

#[btf_map]
pub static ZPR_PREFIXES: LpmTrie<PrefixKey, u32, { maps::PREFIXES_MAX as usize }> = LpmTrie::new();

#[btf_map]
pub static ZPR_POLICY: LpmTrie<PolicyKey, PolicyValue, { maps::POLICY_MAX as usize }> =
    LpmTrie::new();

/// Flows seen from both sides. Sized at load time.
#[btf_map]
pub static ZPR_CONNTRACK: LruHashMap<FlowKey, FlowState, { maps::CONNTRACK_MAX as usize }> =
    LruHashMap::new();

/// Flows not yet seen from both sides: an LRU a flood may churn through.
#[btf_map]
pub static ZPR_CONNTRACK_OPENING: LruHashMap<
    FlowKey,
    FlowState,
    { maps::CONNTRACK_OPENING_MAX as usize },
> = LruHashMap::new();

#[btf_map]
pub static ZPR_CONNTRACK_STATS: PerCpuArray<u64, { CONNTRACK_STATS_SLOTS as usize }> =
    PerCpuArray::new();

#[btf_map]
pub static ZPR_FRAGMENTS: LruHashMap<FragmentKey, u32, { maps::FRAGMENTS_MAX as usize }> =
    LruHashMap::new();

#[btf_map]
pub static ZPR_COUNTERS: PerCpuArray<CounterRow, { COUNTER_ROWS as usize }> = PerCpuArray::new();

#[btf_map]
pub static ZPR_EVENTS: RingBuf<Event, { maps::EVENTS_BYTES as usize }> = RingBuf::new();

#[btf_map]
pub static ZPR_EVENT_STATS: PerCpuArray<u64, { EVENT_STATS_SLOTS as usize }> = PerCpuArray::new();

#[btf_map]
pub static ZPR_RATE_LIMITER: PerCpuArray<RateLimiter, 1> = PerCpuArray::new();

/// Flows each Plan entry allowed, per slot (not per CPU: new flows are
/// rare next to packets, and an atomic add keeps one copy).
#[btf_map]
pub static ZPR_RULE_USAGE: Array<
    RuleUsage,
    { RULE_USAGE_ENTRIES as usize },
    { RULE_USAGE_MAP_FLAGS },
> = Array::new();
