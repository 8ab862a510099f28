//! Policy entries, made so that the first entry the kernel finds is the
//! whole answer (there are no deny statements to consult):
//! - within one (local, remote, direction) table, each entry also carries
//!   the statements of every shorter L4 prefix that contains it, since the
//!   longest match hides them;
//! - the wildcard table (remote = [`ANY_REMOTE`]) is merged into every
//!   concrete table of the same local UID and direction, since a hit in the
//!   concrete table skips the wildcard lookup.

use std::collections::HashMap;

use super::decision::Direction;
use super::identity::{FamilyMask, Identities};
use super::l4::L4Prefix;
use super::plan::{ANY_REMOTE, PolicyEntry, PolicyKey, PolicyValue, StatementIndex, Uid};
use super::selectors::{ResolvedStatement, SelectorId, Side};

type Table = HashMap<L4Prefix, Vec<StatementIndex>>;

#[derive(Default)]
struct LocalTables {
    any: Table,
    by_remote: HashMap<Uid, Table>,
}

pub fn build(
    statements: &[ResolvedStatement],
    stateless: &[bool],
    identities: &Identities,
    protected: &[bool],
) -> Vec<PolicyEntry> {
    let mut grouped: HashMap<(Uid, Direction), LocalTables> = HashMap::new();
    let mut remote_sets = RemoteSets::new(identities);
    for (index, statement) in statements.iter().enumerate() {
        let index = index as StatementIndex;
        for (direction, local_side, remote_side) in [
            (Direction::Egress, statement.source, statement.destination),
            (Direction::Ingress, statement.destination, statement.source),
        ] {
            for local in locals(local_side, identities, protected) {
                let tables = grouped.entry((local, direction)).or_default();
                let families = identities.families[local as usize];
                match remote_sets.remotes(remote_side, families) {
                    Remotes::Any => add(&mut tables.any, &statement.l4, index),
                    Remotes::These(remotes) => {
                        for &remote in remotes {
                            if identities.families[remote as usize] & families != 0 {
                                let table = tables.by_remote.entry(remote).or_default();
                                add(table, &statement.l4, index);
                            }
                        }
                    }
                }
            }
        }
    }
    let mut entries = Vec::new();
    for ((local, direction), tables) in grouped {
        let mut emit = |remote: Uid, table: Vec<(L4Prefix, Vec<StatementIndex>)>| {
            for (l4, statements) in push_down(table) {
                let stateless = statements.iter().all(|&s| stateless[s as usize]);
                entries.push(PolicyEntry {
                    key: PolicyKey {
                        local,
                        remote,
                        direction,
                        l4,
                    },
                    value: PolicyValue {
                        statements,
                        stateless,
                    },
                });
            }
        };
        for (remote, table) in &tables.by_remote {
            emit(*remote, sorted(union(table, &tables.any)));
        }
        if !tables.any.is_empty() {
            emit(ANY_REMOTE, sorted(tables.any));
        }
    }
    entries.sort_unstable_by_key(|entry| entry.key);
    entries
}

/// The protected UIDs a statement side can be the local end of.
fn locals<'a>(
    side: Side,
    identities: &'a Identities,
    protected: &'a [bool],
) -> Box<dyn Iterator<Item = Uid> + 'a> {
    match side {
        Side::Every => {
            Box::new((1..protected.len() as Uid).filter(move |&uid| protected[uid as usize]))
        }
        Side::Selector(selector) => Box::new(
            identities.selector_uids[selector as usize]
                .iter()
                .copied()
                .filter(move |&uid| protected[uid as usize]),
        ),
    }
}

enum Remotes<'a> {
    Any,
    These(&'a [Uid]),
}

/// Decides when a remote side may use the wildcard: when it holds every
/// UID a packet of the local UID's families can come from or go to.
struct RemoteSets<'a> {
    identities: &'a Identities,
    /// UIDs sharing a family with each family mask (index = mask).
    total: [usize; 4],
    covers_all: HashMap<(SelectorId, FamilyMask), bool>,
}

impl<'a> RemoteSets<'a> {
    fn new(identities: &'a Identities) -> RemoteSets<'a> {
        let every_uid = || identities.families.iter().skip(1).copied();
        let total = [0, 1, 2, 3].map(|mask| sharing(every_uid(), mask));
        RemoteSets {
            identities,
            total,
            covers_all: HashMap::new(),
        }
    }

    fn remotes(&mut self, side: Side, families: FamilyMask) -> Remotes<'a> {
        let Side::Selector(selector) = side else {
            return Remotes::Any;
        };
        let uids = &self.identities.selector_uids[selector as usize];
        let identities = self.identities;
        let total = self.total[families as usize];
        let covers_all = *self
            .covers_all
            .entry((selector, families))
            .or_insert_with(|| {
                let families_of = uids.iter().map(|&uid| identities.families[uid as usize]);
                sharing(families_of, families) == total
            });
        if covers_all {
            Remotes::Any
        } else {
            Remotes::These(uids)
        }
    }
}

/// How many of the UIDs (given by their families) share a family with `mask`.
fn sharing(families: impl Iterator<Item = FamilyMask>, mask: FamilyMask) -> usize {
    families.filter(|&f| f & mask != 0).count()
}

fn add(table: &mut Table, prefixes: &[L4Prefix], statement: StatementIndex) {
    for &prefix in prefixes {
        let statements = table.entry(prefix).or_default();
        if statements.last() != Some(&statement) {
            statements.push(statement);
        }
    }
}

/// Both tables' entries, one per prefix.
fn union(table: &Table, other: &Table) -> Table {
    let mut merged = table.clone();
    for (prefix, statements) in other {
        merged.entry(*prefix).or_default().extend(statements);
    }
    merged
}

fn sorted(table: Table) -> Vec<(L4Prefix, Vec<StatementIndex>)> {
    let mut entries: Vec<_> = table.into_iter().collect();
    entries.sort_unstable_by_key(|(prefix, _)| *prefix);
    entries
}

/// Gives each prefix the statements of every prefix containing it. The
/// input is sorted, so a prefix comes right after the ones containing it.
fn push_down(table: Vec<(L4Prefix, Vec<StatementIndex>)>) -> Vec<(L4Prefix, Vec<StatementIndex>)> {
    let mut done: Vec<(L4Prefix, Vec<StatementIndex>)> = Vec::with_capacity(table.len());
    let mut enclosing: Vec<usize> = Vec::new();
    for (prefix, mut statements) in table {
        while let Some(&top) = enclosing.last() {
            if done[top].0.contains(prefix) {
                break;
            }
            enclosing.pop();
        }
        if let Some(&parent) = enclosing.last() {
            statements.extend_from_slice(&done[parent].1);
        }
        statements.sort_unstable();
        statements.dedup();
        enclosing.push(done.len());
        done.push((prefix, statements));
    }
    done
}
