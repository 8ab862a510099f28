//! Compiling a policy set that changes a little at a time (the agent's
//! reloads, the new side of `zpr diff`): the Plan of a change of a few
//! statements re-computes only the policy tables of the identities those
//! statements name, and takes every other table from the last Plan, its
//! statement numbers moved to where the statements now stand.
//!
//! That holds exactly when the identities are those of the last compile:
//! the same inventory and the same selectors (numbered the same). Then a
//! table (local UID, direction) is made from the statements whose local
//! side holds the UID, and only the statements that changed can make it
//! differ. Anything else is compiled whole. Either way the Plan is the one
//! [`compile`] gives.
//!
//! A change that touches most tables is merged too: building the touched
//! tables costs what building them whole does, and the identities, the
//! most of a whole compile, are kept (a fleet host whose few local tables
//! a one-statement change all touches compiled whole on every change).

use foldhash::HashSet;

mod counter;
pub use counter::CapacityCounter;
pub(super) use counter::count_once;

use super::decision::Direction;
use super::entries::{self, locals};
use super::identity::UidSets;
use super::plan::{
    EndpointConfig, HostEntry, Identity, Plan, PolicyEntry, PolicyKey, PolicyValue, PrefixEntry,
    StatementIndex, Uid,
};
use super::selectors::{self, ResolvedStatement, Side};
use super::{Groundwork, Tables, compile_whole, plan_statements};
use crate::common_ends::CommonEnds;
use crate::inventory::Inventory;
use crate::lang::Policy;

/// Compiles policy sets one after another, each from what the last left.
pub struct Compiler {
    tables: Tables,
    last: Option<Last>,
    /// The statement bodies the last compile resolved.
    memo: selectors::Memo,
}

struct Last {
    inventory: Inventory,
    groundwork: Groundwork,
    /// The last Plan's parts the identities make (they stay).
    identities: Vec<Identity>,
    hosts: Vec<HostEntry>,
    prefixes: Vec<PrefixEntry>,
    endpoints: Vec<EndpointConfig>,
    policy: PackedPolicy,
}

impl Last {
    fn of(inventory: Inventory, groundwork: Groundwork, plan: &Plan) -> Last {
        Last {
            inventory,
            groundwork,
            identities: plan.identities.clone(),
            hosts: plan.hosts.clone(),
            prefixes: plan.prefixes.clone(),
            endpoints: plan.endpoints.clone(),
            policy: PackedPolicy::of(&plan.policy),
        }
    }
}

/// A Plan's policy entries packed: one list of keys, and every entry's
/// statements in one vector (a vector per entry is most of a Plan's
/// memory).
struct PackedPolicy {
    keys: Vec<PolicyKey>,
    /// Entry `i`'s statements are `statements[ends[i - 1]..ends[i]]`.
    ends: Vec<u32>,
    statements: Vec<StatementIndex>,
    stateless: Vec<bool>,
}

impl PackedPolicy {
    fn of(policy: &[PolicyEntry]) -> PackedPolicy {
        let mut packed = PackedPolicy {
            keys: Vec::with_capacity(policy.len()),
            ends: Vec::with_capacity(policy.len()),
            statements: Vec::new(),
            stateless: Vec::with_capacity(policy.len()),
        };
        for entry in policy {
            packed.keys.push(entry.key);
            packed.statements.extend_from_slice(&entry.value.statements);
            packed.ends.push(packed.statements.len() as u32);
            packed.stateless.push(entry.value.stateless);
        }
        packed
    }

    fn statements(&self, entry: usize) -> &[StatementIndex] {
        let start = entry.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.statements[start as usize..self.ends[entry] as usize]
    }
}

/// How the statements of one compile and of the next line up: the same
/// statements (resolved alike) in their common ends.
pub(super) struct Alignment(CommonEnds);

impl Alignment {
    /// Of two compiles' statements, each with whether it is stateless.
    pub(super) fn of(
        (old, old_stateless): (&[ResolvedStatement], &[bool]),
        (new, new_stateless): (&[ResolvedStatement], &[bool]),
    ) -> Alignment {
        Alignment(CommonEnds::by_index(old.len(), new.len(), |o, n| {
            old[o] == new[n] && old_stateless[o] == new_stateless[n]
        }))
    }

    /// The tables (local UID, direction) that the statements that changed
    /// can make differ, given the identities both compiles share; `None`
    /// when one of them names every protected identity's.
    pub(super) fn touched_tables(
        &self,
        old: &[ResolvedStatement],
        new: &[ResolvedStatement],
        uid_sets: &UidSets,
        protected: &[bool],
    ) -> Option<HashSet<(Uid, Direction)>> {
        let mut touched = HashSet::default();
        for statement in old[self.0.old_middle()]
            .iter()
            .chain(&new[self.0.new_middle()])
        {
            for (direction, local) in [
                (Direction::Egress, statement.source),
                (Direction::Ingress, statement.destination),
            ] {
                if local == Side::Every {
                    return None;
                }
                touched.extend(locals(local, uid_sets, protected).map(|uid| (uid, direction)));
            }
        }
        Some(touched)
    }

    /// Where an unchanged statement of the last compile stands now.
    fn moved(&self, old: StatementIndex) -> StatementIndex {
        let CommonEnds {
            start,
            old_len,
            new_len,
            ..
        } = self.0;
        if (old as usize) < start {
            old
        } else {
            (old as usize + new_len - old_len) as StatementIndex
        }
    }
}

impl Default for Compiler {
    fn default() -> Compiler {
        Compiler::of(Tables::default())
    }
}

impl Compiler {
    /// A compiler of Plans holding `tables`.
    pub fn of(tables: Tables) -> Compiler {
        Compiler {
            tables,
            last: None,
            memo: selectors::Memo::kept(),
        }
    }

    /// The Plan [`compile`](super::compile) gives for these inputs (with
    /// only the local tables, for [`Tables::Local`]).
    pub fn compile(&mut self, policies: &[Policy], inventory: &Inventory) -> Plan {
        if let Some(last) = self.last.take()
            && let Some(plan) = last.changed(policies, inventory, &mut self.memo, &mut self.last)
        {
            return plan;
        }
        let (plan, groundwork) = compile_whole(policies, inventory, self.tables, &mut self.memo);
        self.last = Some(Last::of(inventory.clone(), groundwork, &plan));
        plan
    }
}

/// What a change of statements alone leaves to work out again: the
/// statements as they are now, how they line up with the last compile's,
/// and the tables (local UID, direction) whose entries may differ.
struct StatementChange<'a> {
    resolved: selectors::Resolved<'a>,
    alignment: Alignment,
    touched: HashSet<(Uid, Direction)>,
}

impl Groundwork {
    /// The change from the compile this groundwork is of to `policies`,
    /// over the same inventory; `None` when the identities it worked out
    /// may not hold (other selectors or attributes), or a statement names
    /// every identity's table.
    fn statement_change<'a>(
        &self,
        policies: &'a [Policy],
        memo: &mut selectors::Memo,
    ) -> Option<StatementChange<'a>> {
        let resolved = selectors::resolve_with(policies, memo);
        if resolved.selectors != self.selectors || resolved.attributes != self.attributes {
            return None;
        }
        let alignment = Alignment::of(
            (&self.statements, &self.stateless),
            (&resolved.resolved, &resolved.stateless),
        );
        let mut touched = alignment.touched_tables(
            &self.statements,
            &resolved.resolved,
            &self.uid_sets,
            &self.protected,
        )?;
        if let Some(local_tables) = &self.local_tables {
            touched.retain(|table| local_tables.contains(table));
        }
        Some(StatementChange {
            resolved,
            alignment,
            touched,
        })
    }

    /// The touched tables' entries after `change`, sorted.
    fn fresh_entries(&self, change: &StatementChange) -> Vec<PolicyEntry> {
        entries::build_tables(
            &change.resolved.resolved,
            &change.resolved.stateless,
            &self.uid_sets,
            &self.protected,
            &change.touched,
        )
    }

    /// This groundwork, of the compile after `resolved`'s change.
    fn after(self, resolved: selectors::Resolved) -> Groundwork {
        Groundwork {
            selectors: resolved.selectors,
            attributes: resolved.attributes,
            statements: resolved.resolved,
            stateless: resolved.stateless,
            ..self
        }
    }
}

impl Last {
    /// The new Plan from this one, when the identities stay; then `next`
    /// is left holding what it worked out.
    fn changed(
        self,
        policies: &[Policy],
        inventory: &Inventory,
        memo: &mut selectors::Memo,
        next: &mut Option<Last>,
    ) -> Option<Plan> {
        if *inventory != self.inventory {
            return None;
        }
        let change = self.groundwork.statement_change(policies, memo)?;
        let fresh = self.groundwork.fresh_entries(&change);
        let policy = merged(&self.policy, fresh, &change.touched, &change.alignment);
        let packed = PackedPolicy::of(&policy);
        let plan = Plan::assemble(
            plan_statements(&change.resolved),
            self.identities.clone(),
            self.hosts.clone(),
            self.prefixes.clone(),
            self.endpoints.clone(),
            policy,
        );
        *next = Some(Last {
            groundwork: self.groundwork.after(change.resolved),
            policy: packed,
            ..self
        });
        Some(plan)
    }
}

/// The last Plan's entries with the touched tables replaced by `fresh`
/// (sorted, of touched tables only), in key order.
fn merged(
    old: &PackedPolicy,
    fresh: Vec<PolicyEntry>,
    touched: &HashSet<(Uid, Direction)>,
    alignment: &Alignment,
) -> Vec<PolicyEntry> {
    let table = |key: &PolicyKey| (key.local, key.direction);
    let mut policy = Vec::with_capacity(old.keys.len() + fresh.len());
    let mut fresh = fresh.into_iter().peekable();
    let mut start = 0;
    for block in old.keys.chunk_by(|a, b| table(a) == table(b)) {
        let entries = start..start + block.len();
        start = entries.end;
        let key = table(&block[0]);
        while let Some(entry) = fresh.next_if(|entry| table(&entry.key) < key) {
            policy.push(entry);
        }
        if touched.contains(&key) {
            continue;
        }
        policy.extend(entries.map(|entry| {
            PolicyEntry {
                key: old.keys[entry],
                value: PolicyValue {
                    statements: old
                        .statements(entry)
                        .iter()
                        .map(|&statement| alignment.moved(statement))
                        .collect(),
                    stateless: old.stateless[entry],
                },
            }
        }));
    }
    policy.extend(fresh);
    policy
}

#[cfg(test)]
mod tests;
