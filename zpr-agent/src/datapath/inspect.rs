//! Reading the pinned maps from another process than the agent's
//! (`zpr status`, `zpr monitor`), without loading any program.

use aya::maps::{Array, HashMap, LpmTrie, Map, MapData, RingBuf};
use serde::Serialize;
use zpr_common::{
    config::Config,
    conntrack::FragmentKey,
    endpoint::{EndpointConfig, EndpointKey, LocalAddressKey, LocalIdentity},
    event::{EVENT_STATS_SLOTS, EVENTS_LOST, EVENTS_RATE_LIMITED},
    identity::{HostKey, PrefixKey},
    maps,
    policy::{PolicyKey, PolicyValue},
};

use super::{CounterTable, PinLayout, counters::counters_of};
use anyhow::Context as _;

/// How full a map is.
#[derive(Clone, Debug, Serialize)]
pub struct Fill {
    pub map: &'static str,
    pub entries: usize,
    pub capacity: u32,
}

/// Event delivery troubles, summed over CPUs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EventStats {
    /// The ring buffer was full.
    pub lost: u64,
    /// Over the per-CPU events-per-second budget.
    pub rate_limited: u64,
}

pub(super) fn open(pins: &PinLayout, name: &str, wrap: fn(MapData) -> Map) -> anyhow::Result<Map> {
    let path = pins.map(name);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("opening {} (is zpr running on this host?)", path.display()))?;
    Ok(wrap(data))
}

pub fn pinned_config(pins: &PinLayout) -> anyhow::Result<Config> {
    let map = open(pins, maps::CONFIG, Map::Array)?;
    Ok(Array::<_, Config>::try_from(&map)?.get(&0, 0)?)
}

pub fn pinned_counters(pins: &PinLayout) -> anyhow::Result<CounterTable> {
    counters_of(&open(pins, maps::COUNTERS, Map::PerCpuArray)?)
}

pub fn pinned_event_stats(pins: &PinLayout) -> anyhow::Result<EventStats> {
    let map = open(pins, maps::EVENT_STATS, Map::PerCpuArray)?;
    let stats: aya::maps::PerCpuArray<_, u64> = aya::maps::PerCpuArray::try_from(&map)?;
    let sum = |slot: u32| -> anyhow::Result<u64> { Ok(stats.get(&slot, 0)?.iter().sum()) };
    debug_assert_eq!(EVENT_STATS_SLOTS, 2);
    Ok(EventStats {
        lost: sum(EVENTS_LOST)?,
        rate_limited: sum(EVENTS_RATE_LIMITED)?,
    })
}

/// Entries in every map that grows (both Plan slots count), but the
/// conntrack tables (see [`super::pinned_conntrack`]).
pub fn pinned_fill(pins: &PinLayout) -> anyhow::Result<Vec<Fill>> {
    fn hash<K: aya::Pod, V: aya::Pod>(map: &Map) -> anyhow::Result<usize> {
        Ok(HashMap::<_, K, V>::try_from(map)?
            .keys()
            .filter(Result::is_ok)
            .count())
    }
    fn lpm<K: aya::Pod, V: aya::Pod>(map: &Map) -> anyhow::Result<usize> {
        Ok(LpmTrie::<_, K, V>::try_from(map)?
            .keys()
            .filter(Result::is_ok)
            .count())
    }
    /// (map, capacity, how to open its pin, how to count its entries)
    type Row = (
        &'static str,
        u32,
        fn(MapData) -> Map,
        fn(&Map) -> anyhow::Result<usize>,
    );
    let rows: [Row; 6] = [
        (
            maps::ENDPOINTS,
            maps::ENDPOINTS_MAX,
            Map::HashMap,
            hash::<EndpointKey, EndpointConfig>,
        ),
        (
            maps::LOCAL_ADDRESSES,
            maps::LOCAL_ADDRESSES_MAX,
            Map::HashMap,
            hash::<LocalAddressKey, LocalIdentity>,
        ),
        (
            maps::HOSTS,
            maps::HOSTS_MAX,
            Map::HashMap,
            hash::<HostKey, u32>,
        ),
        (
            maps::PREFIXES,
            maps::PREFIXES_MAX,
            Map::LpmTrie,
            lpm::<PrefixKey, u32>,
        ),
        (
            maps::POLICY,
            maps::POLICY_MAX,
            Map::LpmTrie,
            lpm::<PolicyKey, PolicyValue>,
        ),
        (
            maps::FRAGMENTS,
            maps::FRAGMENTS_MAX,
            Map::LruHashMap,
            hash::<FragmentKey, u32>,
        ),
    ];
    rows.into_iter()
        .map(|(name, capacity, wrap, count)| {
            Ok(Fill {
                map: name,
                entries: count(&open(pins, name, wrap)?)?,
                capacity,
            })
        })
        .collect()
}

/// The pinned event ring buffer, for one reader at a time.
pub fn pinned_events(pins: &PinLayout) -> anyhow::Result<RingBuf<MapData>> {
    Ok(RingBuf::try_from(open(pins, maps::EVENTS, Map::RingBuf)?)?)
}
