//! The two Plans [`diff`](super::diff) compares for a change, built for
//! that comparison only.
//!
//! A change that keeps the identities (the same inventory, the same
//! selectors numbered the same) leaves every policy table that none of
//! its changed statements names equal on both sides, and the diff skips
//! equal tables. So both Plans are built with only the tables the change
//! touches: the diff reads the same as it would of the whole Plans, while
//! a one-statement change at 100,000 statements builds a few tables
//! instead of every table twice. Any other change is compiled whole.

use super::entries;
use super::incremental::Alignment;
use super::selectors::{self, Resolved};
use super::{Plan, compile, endpoint_configs, identity, plan_statements, protected};
use crate::inventory::Inventory;
use crate::lang::Policy;
use crate::side_by_side;

/// Plans of `before` and `after` whose [`diff`](super::diff) is that of
/// their whole Plans. Only for diffing: they may lack tables, so their
/// sizes and hashes are not those of the Plans an agent applies.
pub fn compile_pair(
    (before, old_inventory): (&[Policy], &Inventory),
    (after, new_inventory): (&[Policy], &Inventory),
) -> [Plan; 2] {
    if old_inventory == new_inventory
        && let Some(plans) = touched_tables_only(before, after, new_inventory)
    {
        return plans;
    }
    let (before, after) = side_by_side::join(
        || compile(before, old_inventory),
        || compile(after, new_inventory),
    );
    [before, after]
}

/// The Plans holding the tables the changed statements touch, when the
/// identities stay.
fn touched_tables_only(
    before: &[Policy],
    after: &[Policy],
    inventory: &Inventory,
) -> Option<[Plan; 2]> {
    let (old, new) =
        side_by_side::join(|| selectors::resolve(before), || selectors::resolve(after));
    if old.selectors != new.selectors || old.attributes != new.attributes {
        return None;
    }
    let identities = identity::build(inventory, &old);
    let protected = protected(inventory, &identities);
    let (old_stateless, new_stateless) = (&old.stateless, &new.stateless);
    let touched = Alignment::of(
        (&old.resolved, old_stateless),
        (&new.resolved, new_stateless),
    )
    .touched_tables(&old.resolved, &new.resolved, &identities.sets, &protected)?;
    let endpoints = endpoint_configs(inventory, identities.endpoint_addresses);
    let plan = |resolved: &Resolved, stateless: &[bool]| {
        Plan::assemble(
            plan_statements(resolved),
            identities.identities.clone(),
            identities.hosts.clone(),
            identities.prefixes.clone(),
            endpoints.clone(),
            entries::build_tables(
                &resolved.resolved,
                stateless,
                &identities.sets,
                &protected,
                &touched,
            ),
        )
    };
    let (before, after) =
        side_by_side::join(|| plan(&old, old_stateless), || plan(&new, new_stateless));
    Some([before, after])
}

#[cfg(test)]
mod tests;
