//! Counting what decides whether the Plans of policy sets checked one
//! after another fit the maps ([`Capacity`]), each count from what the
//! last left, without building the Plans: a verdict on a change (the
//! API's check of every change) then costs what the change touches, where
//! building the Plan copies every entry of every table.

use foldhash::HashMap;

use super::{Direction, Groundwork, Inventory, Policy, Uid};
use crate::compile::{
    Capacity, entries, identity, local_tables, protected,
    selectors::{self, Memo},
};

/// Counts capacities one after another, each from what the last left.
pub struct CapacityCounter {
    last: Option<Counted>,
    /// The statement bodies the last count resolved.
    memo: Memo,
}

struct Counted {
    inventory: Inventory,
    groundwork: Groundwork,
    /// Each local table's number of entries.
    table_entries: HashMap<(Uid, Direction), usize>,
    capacity: Capacity,
}

impl Default for CapacityCounter {
    fn default() -> CapacityCounter {
        CapacityCounter {
            last: None,
            memo: Memo::kept(),
        }
    }
}

impl CapacityCounter {
    /// The [`Capacity`] of the Plan [`compile`](crate::compile::compile)
    /// gives for these inputs.
    pub fn count(&mut self, policies: &[Policy], inventory: &Inventory) -> Capacity {
        if let Some(last) = self.last.take()
            && *inventory == last.inventory
            && let Some(change) = last.groundwork.statement_change(policies, &mut self.memo)
        {
            let fresh = last.groundwork.fresh_entries(&change);
            let mut table_entries = last.table_entries;
            let mut local_policy_entries = last.capacity.local_policy_entries;
            for table in &change.touched {
                local_policy_entries -= table_entries.remove(table).unwrap_or(0);
            }
            for (table, entries) in per_table(&fresh) {
                local_policy_entries += entries;
                table_entries.insert(table, entries);
            }
            let capacity = Capacity {
                local_policy_entries,
                ..last.capacity
            };
            self.last = Some(Counted {
                inventory: last.inventory,
                groundwork: last.groundwork.after(change.resolved),
                table_entries,
                capacity,
            });
            return capacity;
        }
        let (capacity, groundwork, table_entries) =
            count_whole(policies, inventory, &mut self.memo);
        self.last = Some(Counted {
            inventory: inventory.clone(),
            groundwork,
            table_entries,
            capacity,
        });
        capacity
    }
}

/// The capacity of `policies` over `inventory`, counted once.
pub fn count_once(policies: &[Policy], inventory: &Inventory) -> Capacity {
    count_whole(policies, inventory, &mut Memo::default()).0
}

/// The capacity of `policies` over `inventory` counted from nothing, with
/// what the count of a change can use again.
fn count_whole(
    policies: &[Policy],
    inventory: &Inventory,
    memo: &mut Memo,
) -> (Capacity, Groundwork, HashMap<(Uid, Direction), usize>) {
    let resolved = selectors::resolve_with(policies, memo);
    let identities = identity::build(inventory, &resolved);
    let protected = protected(inventory, &identities);
    let local_tables = local_tables(inventory, &identities);
    let local_policy = entries::build_tables(
        &resolved.resolved,
        &resolved.stateless,
        &identities.sets,
        &protected,
        &local_tables,
    );
    let capacity = Capacity {
        host_entries: identities.hosts.len(),
        prefix_entries: identities.prefixes.len(),
        local_endpoints: inventory
            .endpoints()
            .iter()
            .filter(|endpoint| endpoint.interface.is_some())
            .count(),
        local_policy_entries: local_policy.len(),
    };
    let table_entries = per_table(&local_policy).collect();
    let groundwork = Groundwork::of(resolved, identities.sets, protected, Some(local_tables));
    (capacity, groundwork, table_entries)
}

/// The number of entries of each table `entries` (sorted by key) hold.
fn per_table(
    entries: &[crate::compile::PolicyEntry],
) -> impl Iterator<Item = ((Uid, Direction), usize)> + '_ {
    entries
        .chunk_by(|a, b| (a.key.local, a.key.direction) == (b.key.local, b.key.direction))
        .map(|table| ((table[0].key.local, table[0].key.direction), table.len()))
}
