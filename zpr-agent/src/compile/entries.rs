//! Policy entries, made so that the first entry the kernel finds is the
//! whole answer (there are no deny statements to consult):
//! - within one (local, remote, direction) table, each entry also carries
//!   the statements of every shorter L4 prefix that contains it, since the
//!   longest match hides them;
//! - the wildcard table (remote = [`ANY_REMOTE`]) is merged into every
//!   concrete table of the same local UID and direction, since a hit in the
//!   concrete table skips the wildcard lookup.

use foldhash::{HashMap, HashSet};

use super::decision::Direction;
use super::identity::{FamilyMask, UidSets};
use super::l4::L4Prefix;
use super::plan::{ANY_REMOTE, PolicyEntry, PolicyKey, PolicyValue, StatementIndex, Uid};
use super::selectors::{ResolvedStatement, SelectorId, Side};
use crate::side_by_side;

/// One statement's claim on one key. Sorted, rows group by local UID and
/// direction, then remote (the wildcard, 0, first), then L4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    local: Uid,
    direction: Direction,
    remote: Uid,
    l4: L4Prefix,
    statement: StatementIndex,
}

type Table = Vec<(L4Prefix, Vec<StatementIndex>)>;

pub fn build(
    statements: &[ResolvedStatement],
    stateless: &[bool],
    identities: &UidSets,
    protected: &[bool],
) -> Vec<PolicyEntry> {
    // The tables of different local UIDs are independent: each core
    // builds those of every n-th UID, and the parts are interleaved back
    // into one sorted list.
    let parts = side_by_side::cores().min(protected.len()).max(1);
    let part_numbers: Vec<usize> = (0..parts).collect();
    let built = side_by_side::map(&part_numbers, |&part| {
        let rows = rows(statements, identities, protected, |local, _| {
            local as usize % parts == part
        });
        entries(rows, stateless)
    });
    interleave_by_local(built)
}

/// One list of entries sorted by local UID from lists that each hold
/// every entry of their local UIDs, in order.
fn interleave_by_local(parts: Vec<Vec<PolicyEntry>>) -> Vec<PolicyEntry> {
    let mut merged = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    let mut parts: Vec<_> = parts
        .into_iter()
        .map(|part| part.into_iter().peekable())
        .collect();
    loop {
        let next = parts
            .iter_mut()
            .filter_map(|part| Some(part.peek()?.key.local))
            .min();
        let Some(local) = next else {
            return merged;
        };
        for part in &mut parts {
            while let Some(entry) = part.next_if(|entry| entry.key.local == local) {
                merged.push(entry);
            }
        }
    }
}

/// The entries of the tables whose (local UID, direction) `only` holds:
/// what [`build`] gives for those, and nothing else.
pub fn build_tables(
    statements: &[ResolvedStatement],
    stateless: &[bool],
    identities: &UidSets,
    protected: &[bool],
    only: &HashSet<(Uid, Direction)>,
) -> Vec<PolicyEntry> {
    let rows = rows(statements, identities, protected, |local, direction| {
        only.contains(&(local, direction))
    });
    entries(rows, stateless)
}

/// Every statement's claims on the tables of the (local UID, direction)
/// pairs `wanted` accepts, sorted and without repeats.
fn rows(
    statements: &[ResolvedStatement],
    identities: &UidSets,
    protected: &[bool],
    wanted: impl Fn(Uid, Direction) -> bool,
) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut remote_sets = RemoteSets::new(identities);
    // Which selectors hold a wanted table's local UID, by direction: a
    // statement whose local side holds none is passed over without
    // walking its UIDs (a reload building the few tables a change
    // touches meets every statement).
    let holds_wanted = |direction: Direction| -> Vec<bool> {
        identities
            .selector_uids
            .iter()
            .map(|uids| {
                uids.iter()
                    .any(|&uid| protected[uid as usize] && wanted(uid, direction))
            })
            .collect()
    };
    let (egress, ingress) = (
        holds_wanted(Direction::Egress),
        holds_wanted(Direction::Ingress),
    );
    for (index, statement) in statements.iter().enumerate() {
        let statement_index = index as StatementIndex;
        for (direction, local_side, remote_side, selectors) in [
            (
                Direction::Egress,
                statement.source,
                statement.destination,
                &egress,
            ),
            (
                Direction::Ingress,
                statement.destination,
                statement.source,
                &ingress,
            ),
        ] {
            if let Side::Selector(selector) = local_side
                && !selectors[selector as usize]
            {
                continue;
            }
            for local in locals(local_side, identities, protected) {
                if !wanted(local, direction) {
                    continue;
                }
                let families = identities.families[local as usize];
                let mut claim = |remote: Uid| {
                    rows.extend(statement.l4.iter().map(|&l4| Row {
                        local,
                        direction,
                        remote,
                        l4,
                        statement: statement_index,
                    }));
                };
                match remote_sets.remotes(remote_side, families) {
                    Remotes::Any => claim(ANY_REMOTE),
                    Remotes::These(remotes) => remotes
                        .iter()
                        .filter(|&&remote| identities.families[remote as usize] & families != 0)
                        .for_each(|&remote| claim(remote)),
                }
            }
        }
    }
    rows.sort_unstable();
    rows.dedup();
    rows
}

/// The entries sorted rows make.
fn entries(rows: Vec<Row>, stateless: &[bool]) -> Vec<PolicyEntry> {
    let mut entries = Vec::new();
    for group in rows.chunk_by(|a, b| (a.local, a.direction) == (b.local, b.direction)) {
        let (local, direction) = (group[0].local, group[0].direction);
        let split = group.partition_point(|row| row.remote == ANY_REMOTE);
        let any = table(&group[..split]);
        let mut emit = |remote: Uid, table: Table| {
            for (l4, statements) in push_down(table) {
                let stateless = statements.iter().all(|&s| stateless[s as usize]);
                entries.push(PolicyEntry {
                    key: PolicyKey {
                        local,
                        direction,
                        remote,
                        l4,
                    },
                    value: PolicyValue {
                        statements,
                        stateless,
                    },
                });
            }
        };
        if !any.is_empty() {
            emit(ANY_REMOTE, any.clone());
        }
        for concrete in group[split..].chunk_by(|a, b| a.remote == b.remote) {
            emit(concrete[0].remote, merge(table(concrete), &any));
        }
    }
    entries
}

/// The protected UIDs a statement side can be the local end of.
pub fn locals<'a>(
    side: Side,
    identities: &'a UidSets,
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

/// Rows of one table (sorted by prefix) as prefixes with their statements.
fn table(rows: &[Row]) -> Table {
    rows.chunk_by(|a, b| a.l4 == b.l4)
        .map(|same| (same[0].l4, same.iter().map(|row| row.statement).collect()))
        .collect()
}

/// Both tables' prefixes in order, statements of a shared prefix joined.
fn merge(table: Table, other: &Table) -> Table {
    let mut merged = Vec::with_capacity(table.len() + other.len());
    let mut others = other.iter().peekable();
    for (l4, mut statements) in table {
        while let Some((other_l4, other_statements)) = others.next_if(|(o, _)| *o <= l4) {
            if *other_l4 == l4 {
                statements.extend_from_slice(other_statements);
            } else {
                merged.push((*other_l4, other_statements.clone()));
            }
        }
        merged.push((l4, statements));
    }
    merged.extend(others.cloned());
    merged
}

enum Remotes<'a> {
    Any,
    These(&'a [Uid]),
}

/// Decides when a remote side may use the wildcard: when it holds every
/// UID a packet of the local UID's families can come from or go to.
struct RemoteSets<'a> {
    identities: &'a UidSets,
    /// UIDs sharing a family with each family mask (index = mask).
    total: [usize; 4],
    covers_all: HashMap<(SelectorId, FamilyMask), bool>,
}

impl<'a> RemoteSets<'a> {
    fn new(identities: &'a UidSets) -> RemoteSets<'a> {
        let every_uid = || identities.families.iter().skip(1).copied();
        let total = [0, 1, 2, 3].map(|mask| sharing(every_uid(), mask));
        RemoteSets {
            identities,
            total,
            covers_all: HashMap::default(),
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

/// Gives each prefix the statements of every prefix containing it. The
/// input is sorted, so a prefix comes right after the ones containing it.
fn push_down(table: Table) -> Table {
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
