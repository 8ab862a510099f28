//! The conntrack tables from user space: their size, how full they are,
//! and what each LRU evicted.

use aya::{
    EbpfLoader,
    maps::{HashMap, IterableMap as _, Map, MapData, PerCpuArray},
};
use serde::Serialize;
use zpr_common::{
    conntrack::{
        CONFIRM_REFUSED, CONNTRACK_STATS_SLOTS, ESTABLISHED_INSERTED, ESTABLISHED_REMOVED, FlowKey,
        FlowState, OPENING_INSERTED, OPENING_MOVED, OPENING_REMOVED,
    },
    maps,
};

use super::{Datapath, PinLayout, batch::for_each_entry, inspect::open};

/// How many flows the tables hold; fixed when the maps are created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConntrackSize {
    pub established: u32,
}

impl Default for ConntrackSize {
    fn default() -> ConntrackSize {
        ConntrackSize {
            established: maps::CONNTRACK_MAX,
        }
    }
}

impl ConntrackSize {
    pub fn opening(self) -> u32 {
        maps::conntrack_opening_entries(self.established)
    }

    pub(crate) fn size(self, loader: &mut EbpfLoader) {
        loader.map_max_entries(maps::CONNTRACK, self.established);
        loader.map_max_entries(maps::CONNTRACK_OPENING, self.opening());
    }
}

/// One table's occupancy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableFill {
    /// Entries whose idle timeout has not passed.
    pub live: usize,
    pub entries: usize,
    pub capacity: u32,
}

/// Both tables, and what became of the flows that passed through them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConntrackSummary {
    pub established: TableFill,
    pub opening: TableFill,
    /// Opening flows the LRU pushed out for newer ones (a flood churning
    /// through it: expected).
    pub opening_evicted: u64,
    /// Established flows pushed out for newer established ones: more flows
    /// were live than the table holds (raise `--conntrack-entries`).
    pub established_evicted: u64,
    /// Flows seen both ways that the established table could not take
    /// (they stay in the opening table).
    pub confirm_refused: u64,
}

/// Forgets every tracked flow; returns how many there were. Their next
/// packets are decided as new flows under the live Plan.
pub fn flush_flows(datapath: &mut Datapath) -> anyhow::Result<usize> {
    let mut removed = 0;
    for name in [maps::CONNTRACK, maps::CONNTRACK_OPENING] {
        let mut flows: HashMap<_, FlowKey, FlowState> = HashMap::try_from(datapath.map_mut(name)?)?;
        let keys = flow_keys(&flows)?;
        for key in &keys {
            // An opening flow may be evicted between listing and removal.
            let _ = flows.remove(key);
        }
        removed += keys.len();
    }
    Ok(removed)
}

/// The tables of a pin root, as `zpr status` shows them.
pub fn pinned_conntrack(pins: &PinLayout) -> anyhow::Result<ConntrackSummary> {
    let established = open(pins, maps::CONNTRACK, Map::LruHashMap)?;
    let opening = open(pins, maps::CONNTRACK_OPENING, Map::LruHashMap)?;
    let stats = open(pins, maps::CONNTRACK_STATS, Map::PerCpuArray)?;
    summary(&established, &opening, &stats)
}

/// Every flow both tables of a pin root hold that has not gone idle:
/// what a reload would re-check.
pub fn pinned_live_flows(pins: &PinLayout) -> anyhow::Result<Vec<(FlowKey, FlowState)>> {
    let now = monotonic_now_ns();
    let mut flows = Vec::new();
    for name in [maps::CONNTRACK, maps::CONNTRACK_OPENING] {
        let map = open(pins, name, Map::LruHashMap)?;
        let table: HashMap<_, FlowKey, FlowState> = HashMap::try_from(&map)?;
        for_each_flow(table.map(), |key, state| {
            if !is_idle(key, state, now) {
                flows.push((*key, *state));
            }
        })?;
    }
    Ok(flows)
}

fn summary(established: &Map, opening: &Map, stats: &Map) -> anyhow::Result<ConntrackSummary> {
    let stats: PerCpuArray<_, u64> = PerCpuArray::try_from(stats)?;
    let sum = |slot: u32| -> anyhow::Result<u64> { Ok(stats.get(&slot, 0)?.iter().sum()) };
    debug_assert_eq!(CONNTRACK_STATS_SLOTS, 6);
    let established = fill(established)?;
    let opening = fill(opening)?;
    // Every entry put into a table is taken out by the datapath, or
    // evicted, or still there.
    let opening_left = sum(OPENING_MOVED)? + sum(OPENING_REMOVED)? + opening.entries as u64;
    let established_left = sum(ESTABLISHED_REMOVED)? + established.entries as u64;
    Ok(ConntrackSummary {
        opening_evicted: sum(OPENING_INSERTED)?.saturating_sub(opening_left),
        established_evicted: sum(ESTABLISHED_INSERTED)?.saturating_sub(established_left),
        established,
        opening,
        confirm_refused: sum(CONFIRM_REFUSED)?,
    })
}

fn fill(map: &Map) -> anyhow::Result<TableFill> {
    let flows: HashMap<_, FlowKey, FlowState> = HashMap::try_from(map)?;
    let now = monotonic_now_ns();
    let mut fill = TableFill {
        capacity: flows.map().info()?.max_entries(),
        ..TableFill::default()
    };
    for_each_flow(flows.map(), |key, state| {
        fill.entries += 1;
        if !is_idle(key, state, now) {
            fill.live += 1;
        }
    })?;
    Ok(fill)
}

fn is_idle(key: &FlowKey, state: &FlowState, now: u64) -> bool {
    now.saturating_sub(state.last_seen_ns) > state.timeout(key.protocol)
}

fn flow_keys<T: std::borrow::Borrow<MapData>>(
    flows: &HashMap<T, FlowKey, FlowState>,
) -> anyhow::Result<Vec<FlowKey>> {
    let mut keys = Vec::new();
    for_each_flow(flows.map(), |key, _| keys.push(*key))?;
    Ok(keys)
}

/// CLOCK_MONOTONIC: the clock of event timestamps (`bpf_ktime_get_ns`) and,
/// to the last tick, of flow and usage timestamps (`bpf_ktime_get_coarse_ns`,
/// never ahead of this).
pub fn monotonic_now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the current time into `now`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Flows read per syscall: a table of 512k entries in 128 calls.
const BATCH: usize = 4096;

/// Visits every flow of a table, a batch of entries per syscall (one
/// lookup per key would cost a million syscalls at 512k flows).
fn for_each_flow(map: &MapData, mut visit: impl FnMut(&FlowKey, &FlowState)) -> anyhow::Result<()> {
    for_each_entry(
        map,
        1,
        BATCH,
        "the conntrack table",
        |key, states: &[FlowState]| {
            visit(key, &states[0]);
        },
    )
}
