//! Which row of the counters map each local endpoint counts in. An
//! endpoint keeps its row for as long as it is local, so its counters only
//! grow. A row is taken again only once neither Plan slot names it; its
//! counts are first folded into the retired row (which only the agent
//! writes) and it is zeroed, so a new endpoint starts at zero while the
//! host's totals never go back. Everything lives in the maps: an agent
//! that adopts the pins learns the rows from the live slot.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use aya::maps::{HashMap, PerCpuArray, PerCpuValues};
use zpr_common::{
    counters::{COUNTER_ROWS, CounterRow, UNATTRIBUTED_ROW},
    endpoint::{EndpointConfig, EndpointKey},
    maps,
};

use super::{Datapath, counters::add, plan_maps::InterfaceIndexes};
use crate::compile::Plan;

/// Holds the counts of endpoints that left; never an endpoint's row.
pub const RETIRED_ROW: u32 = COUNTER_ROWS - 1;

/// Endpoint name -> its row; `None` until learnt from the kernel.
#[derive(Debug, Default)]
pub(crate) struct CounterRows {
    by_endpoint: Option<BTreeMap<String, u32>>,
}

impl CounterRows {
    /// The rows of `plan`'s local endpoints (those with an interface in
    /// `interfaces`): the one each had, a free one for each new endpoint
    /// (the unattributed row once none is free). `live_rows` are the rows
    /// the live slot names, not free even if their endpoint left.
    pub(crate) fn assign(
        &mut self,
        datapath: &mut Datapath,
        plan: &Plan,
        interfaces: &InterfaceIndexes,
        live_rows: &BTreeMap<u32, u32>,
    ) -> anyhow::Result<BTreeMap<String, u32>> {
        let known = self.by_endpoint.get_or_insert_with(|| {
            // Learnt once, from what the live slot gives each ifindex.
            plan.endpoints
                .iter()
                .filter_map(|endpoint| {
                    let ifindex = interfaces.get(endpoint.interface.as_ref()?)?;
                    let row = *live_rows.get(ifindex)?;
                    (row != UNATTRIBUTED_ROW).then(|| (endpoint.name.clone(), row))
                })
                .collect()
        });
        let local: Vec<&str> = plan
            .endpoints
            .iter()
            .filter(|endpoint| {
                endpoint
                    .interface
                    .as_ref()
                    .is_some_and(|interface| interfaces.contains_key(interface))
            })
            .map(|endpoint| endpoint.name.as_str())
            .collect();
        known.retain(|name, _| local.contains(&name.as_str()));
        let mut taken: BTreeSet<u32> = known.values().copied().collect();
        taken.extend(live_rows.values().copied());
        let mut free = (UNATTRIBUTED_ROW + 1..RETIRED_ROW).filter(|row| !taken.contains(row));
        for name in local {
            if known.contains_key(name) {
                continue;
            }
            let row = match free.next() {
                Some(row) => {
                    retire(datapath, row)?;
                    row
                }
                None => UNATTRIBUTED_ROW,
            };
            if row != UNATTRIBUTED_ROW {
                known.insert(name.to_owned(), row);
            }
        }
        Ok(known.clone())
    }

    /// The row `endpoint` counts in, if it has one of its own.
    pub(crate) fn of(&self, endpoint: &str) -> Option<u32> {
        self.by_endpoint.as_ref()?.get(endpoint).copied()
    }
}

/// The rows the kernel's `slot` gives each ifindex.
pub(crate) fn rows_in_slot(datapath: &Datapath, slot: u8) -> anyhow::Result<BTreeMap<u32, u32>> {
    let endpoints: HashMap<_, EndpointKey, EndpointConfig> =
        HashMap::try_from(datapath.map(maps::ENDPOINTS)?)?;
    let mut rows = BTreeMap::new();
    for entry in endpoints.iter() {
        let (key, config) = entry.context("reading the endpoints")?;
        if key.slot == slot {
            rows.insert(key.ifindex, config.counter_row);
        }
    }
    Ok(rows)
}

/// Folds `row`'s counts into the retired row and zeroes it.
fn retire(datapath: &mut Datapath, row: u32) -> anyhow::Result<()> {
    let mut counters: PerCpuArray<_, CounterRow> =
        PerCpuArray::try_from(datapath.map_mut(maps::COUNTERS)?)?;
    let leaving = counters.get(&row, 0).context("reading a counters row")?;
    if leaving.iter().all(|counts| *counts == CounterRow::ZERO) {
        return Ok(());
    }
    let retired = counters.get(&RETIRED_ROW, 0)?;
    let folded: Vec<CounterRow> = retired
        .iter()
        .zip(leaving.iter())
        .map(|(retired, leaving)| {
            let mut sum = *retired;
            add(&mut sum, leaving);
            sum
        })
        .collect();
    counters.set(RETIRED_ROW, PerCpuValues::try_from(folded)?, 0)?;
    let zero = vec![CounterRow::ZERO; leaving.len()];
    counters
        .set(row, PerCpuValues::try_from(zero)?, 0)
        .context("zeroing a counters row")
}
