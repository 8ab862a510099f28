//! Reading the per-CPU counters map.

use aya::maps::{Map, PerCpuArray};
use zpr_common::{
    Direction,
    counters::{Counter, Reason, counter_slot},
    maps,
};

use super::Datapath;

/// Counters summed over CPUs, by (direction, reason).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CounterTable {
    slots: [[Counter; Reason::COUNT]; Direction::COUNT],
}

impl CounterTable {
    pub fn get(&self, direction: Direction, reason: Reason) -> Counter {
        self.slots[direction as usize][reason as usize]
    }
}

pub fn read_counters(datapath: &Datapath) -> anyhow::Result<CounterTable> {
    counters_of(datapath.map(maps::COUNTERS)?)
}

/// Sums the counters map over CPUs.
pub fn counters_of(map: &Map) -> anyhow::Result<CounterTable> {
    let counters: PerCpuArray<_, Counter> = PerCpuArray::try_from(map)?;
    let mut table = CounterTable::default();
    for direction in Direction::ALL {
        for reason in Reason::ALL {
            let per_cpu = counters.get(&counter_slot(direction, reason), 0)?;
            let slot = &mut table.slots[direction as usize][reason as usize];
            for value in per_cpu.iter() {
                slot.packets += value.packets;
                slot.bytes += value.bytes;
            }
        }
    }
    Ok(table)
}
