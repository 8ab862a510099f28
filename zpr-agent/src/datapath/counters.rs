//! Reading the per-CPU counters map: every row, summed over CPUs, in one
//! syscall.

use aya::maps::{IterableMap as _, Map, PerCpuArray};
use zpr_common::{
    Direction,
    counters::{COUNTER_ROWS, Counter, CounterRow, Reason},
    maps,
};

use super::{Datapath, batch::for_each_entry};

/// The counters map summed over CPUs: each row, and the host's totals
/// (every row summed: the rows of endpoints that left are folded into one
/// the agent keeps, so totals only grow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterTable {
    rows: Vec<CounterRow>,
    total: CounterRow,
}

impl Default for CounterTable {
    fn default() -> CounterTable {
        CounterTable {
            rows: vec![CounterRow::ZERO; COUNTER_ROWS as usize],
            total: CounterRow::ZERO,
        }
    }
}

impl CounterTable {
    /// The table of these rows (by row number, each summed over CPUs);
    /// rows not given are zero.
    pub fn from_rows(rows: impl IntoIterator<Item = (u32, CounterRow)>) -> CounterTable {
        let mut table = CounterTable::default();
        for (row, counts) in rows {
            if let Some(slot) = table.rows.get_mut(row as usize) {
                *slot = counts;
                add(&mut table.total, &counts);
            }
        }
        table
    }

    /// The host's total under (direction, reason).
    pub fn get(&self, direction: Direction, reason: Reason) -> Counter {
        self.total.get(direction, reason)
    }

    /// The host's totals.
    pub fn total(&self) -> &CounterRow {
        &self.total
    }

    /// One row (an endpoint's, by its `counter_row`).
    pub fn row(&self, row: u32) -> Option<&CounterRow> {
        self.rows.get(row as usize)
    }
}

pub fn read_counters(datapath: &Datapath) -> anyhow::Result<CounterTable> {
    counters_of(datapath.map(maps::COUNTERS)?)
}

/// Sums the counters map over CPUs.
pub fn counters_of(map: &Map) -> anyhow::Result<CounterTable> {
    let counters: PerCpuArray<_, CounterRow> = PerCpuArray::try_from(map)?;
    let cpus = aya::util::nr_cpus()
        .map_err(|(path, err)| anyhow::anyhow!("reading {path}: {err}"))?
        .get() as usize;
    let mut rows = Vec::with_capacity(COUNTER_ROWS as usize);
    for_each_entry(
        counters.map(),
        cpus,
        COUNTER_ROWS as usize,
        "the counters",
        |&row: &u32, per_cpu: &[CounterRow]| {
            let mut summed = CounterRow::ZERO;
            for value in per_cpu {
                add(&mut summed, value);
            }
            rows.push((row, summed));
        },
    )?;
    Ok(CounterTable::from_rows(rows))
}

/// `into += from`, slot by slot.
pub(super) fn add(into: &mut CounterRow, from: &CounterRow) {
    for direction in Direction::ALL {
        for reason in Reason::ALL {
            let counter = into.get_mut(direction, reason);
            let added = from.get(direction, reason);
            counter.packets += added.packets;
            counter.bytes += added.bytes;
        }
    }
}
