//! What a change does to what may connect, computed exactly from the two
//! Plans, never by sampling packets.
//!
//! A packet's fate at a vNIC depends on the local endpoint's enforcement,
//! the identity of its local address, the identity of its remote address
//! and its L4 key. So the answer is made of:
//! - endpoints that start or stop enforcing (everything at their vNIC that
//!   the enforcing side would deny changes);
//! - for endpoints enforcing on both sides, the common refinement of the
//!   two identity partitions (local addresses by their pair of UIDs, remote
//!   addresses by the pair their lookups give), and for each pair of such
//!   groups, the L4 key ranges where the two Plans' policy tables disagree
//!   on allowing.
//!
//! Every group and range is non-empty and reached by real packets, so
//! every change listed is one some packet sees, and every packet whose
//! fate changes is covered by exactly one change.

use foldhash::HashMap;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use serde::Serialize;

use super::decision::{Direction, NEIGHBOUR_DISCOVERY_TYPES, PROTOCOL_ICMPV6};
use super::evaluate::is_neighbour_discovery_source;
use super::identity::{FamilyMask, family_bit};
use super::plan::{
    ANY_REMOTE, IdentityMember, Plan, PolicyEntry, PolicyValue, StatementIndex, Uid,
};
use crate::inventory::Mode;
use crate::inventory::prefix::{self, Family};
use crate::lang::{IpPrefix, StatementId};

/// The last 24-bit L4 key.
const L4_MAX: u32 = 0xff_ffff;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Packets that were dropped pass.
    Opens,
    /// Packets that passed are dropped.
    Closes,
    /// Packets still pass, now by stateless statements only: no
    /// connection is tracked, so replies pass only by statements of their
    /// own.
    BecomesStateless,
    /// Packets still pass, now by a stateful statement: their connections
    /// are tracked and replies pass.
    BecomesStateful,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::Opens => "opens",
            Change::Closes => "closes",
            Change::BecomesStateless => "becomes stateless",
            Change::BecomesStateful => "becomes stateful",
        })
    }
}

impl Change {
    /// The Plan whose statements allow the packets: the old one only for
    /// what closes.
    pub fn allowed_after(self) -> bool {
        self != Change::Closes
    }
}

/// What an endpoint's enforcement changing does to every packet at its
/// vNIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnforcementEffect {
    /// It stops dropping.
    Opens,
    /// It starts dropping.
    Closes,
}

impl From<EnforcementEffect> for Change {
    fn from(effect: EnforcementEffect) -> Change {
        match effect {
            EnforcementEffect::Opens => Change::Opens,
            EnforcementEffect::Closes => Change::Closes,
        }
    }
}

/// What zpr does at an endpoint's vNIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    /// The inventory has no such endpoint.
    Absent,
    /// It carries no attribute: zpr does not touch its traffic.
    NotProtected,
    /// Decisions are reported, nothing is dropped.
    Audit,
    Enforced,
}

impl Enforcement {
    fn of(plan: &Plan, endpoint: &str) -> Enforcement {
        match plan.endpoint(endpoint) {
            None => Enforcement::Absent,
            Some(config) if !config.protected => Enforcement::NotProtected,
            Some(config) if config.mode == Mode::Audit => Enforcement::Audit,
            Some(_) => Enforcement::Enforced,
        }
    }
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Enforcement::Absent => "absent",
            Enforcement::NotProtected => "not protected (no attribute)",
            Enforcement::Audit => "audit mode",
            Enforcement::Enforced => "enforced",
        })
    }
}

/// An endpoint whose vNIC starts or stops dropping: opens means every
/// packet there that the old Plan dropped now passes; closes, every packet
/// there that the new Plan does not allow is now dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnforcementChange {
    pub endpoint: String,
    pub change: EnforcementEffect,
    pub before: Enforcement,
    pub after: Enforcement,
}

/// A set of addresses the two Plans treat alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressGroup {
    /// Endpoint addresses in the group.
    pub members: Vec<IdentityMember>,
    /// Prefixes standing for their addresses that are in no more specific
    /// prefix or member of any group of the diff.
    #[serde(serialize_with = "prefix_list")]
    pub prefixes: Vec<IpPrefix>,
    /// Selectors matching the group in the old Plan and in the new one
    /// (empty where its addresses are not in that Plan's local side).
    pub selectors_before: Vec<String>,
    pub selectors_after: Vec<String>,
    #[serde(skip)]
    families: FamilyMask,
}

/// A range of 24-bit L4 keys, `protocol << 16 | port` (ICMP: type and
/// code in place of the port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct L4Range {
    pub low: u32,
    pub high: u32,
}

impl L4Range {
    pub fn contains(self, key: u32) -> bool {
        (self.low..=self.high).contains(&key)
    }
}

/// Packets crossing the vNIC of an endpoint of `local` in `direction`,
/// with a remote address in `remote` of the same family and an L4 key in
/// `l4`, all change the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathChange {
    pub change: Change,
    /// The statements allowing these packets in the Plan that allows
    /// them: the new one for opens, the old one for closes.
    #[serde(serialize_with = "super::decision::statement_ids")]
    pub statements: Vec<StatementId>,
    pub direction: Direction,
    /// Index into [`PlanDiff::local_groups`].
    pub local: usize,
    /// Index into [`PlanDiff::remote_groups`].
    pub remote: usize,
    pub l4: L4Range,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanDiff {
    pub enforcement: Vec<EnforcementChange>,
    pub paths: Vec<PathChange>,
    /// Local addresses of endpoints enforcing in both Plans.
    pub local_groups: Vec<AddressGroup>,
    /// Every address, as remote.
    pub remote_groups: Vec<AddressGroup>,
}

impl PlanDiff {
    pub fn is_empty(&self) -> bool {
        self.enforcement.is_empty() && self.paths.is_empty()
    }
}

/// Every change in what may connect from `before` to `after`.
pub fn diff(before: &Plan, after: &Plan) -> PlanDiff {
    let mut endpoints: Vec<&str> = before
        .endpoints
        .iter()
        .chain(&after.endpoints)
        .map(|e| e.name.as_str())
        .collect();
    endpoints.sort_unstable();
    endpoints.dedup();
    let mut enforcement = Vec::new();
    let mut enforced_in_both = Vec::new();
    for endpoint in endpoints {
        let (was, is) = (
            Enforcement::of(before, endpoint),
            Enforcement::of(after, endpoint),
        );
        let change = match (was == Enforcement::Enforced, is == Enforcement::Enforced) {
            (true, true) => {
                enforced_in_both.push(endpoint);
                continue;
            }
            (false, false) => continue,
            (true, false) => EnforcementEffect::Opens,
            (false, true) => EnforcementEffect::Closes,
        };
        enforcement.push(EnforcementChange {
            endpoint: endpoint.to_owned(),
            change,
            before: was,
            after: is,
        });
    }
    let (local_groups, local_uids) = local_groups(before, after, &enforced_in_both);
    let (remote_groups, remote_uids) = remote_groups(before, after);
    let mut tables = [Tables::new(before), Tables::new(after)];
    let mut by_uid: [HashMap<Uid, Vec<usize>>; 2] = Default::default();
    for (index, uids) in remote_uids.iter().enumerate() {
        for side in 0..2 {
            by_uid[side].entry(uids[side]).or_default().push(index);
        }
    }
    let renumbering = renumbering(&remote_uids);
    let mut paths = Vec::new();
    for (local, local_uid) in local_uids.iter().enumerate() {
        for direction in [Direction::Egress, Direction::Ingress] {
            let discovery = [0, 1].map(|side| {
                local_uid.uids[side].is_some()
                    || direction == Direction::Ingress
                    || local_uid.discovery_source
            });
            // Most of a small change leaves whole blocks of tables alone.
            if let ([Some(old_uid), Some(new_uid)], Some(renumbering)) =
                (local_uid.uids, &renumbering)
                && tables[0].block(old_uid, direction).len()
                    == tables[1].block(new_uid, direction).len()
                && tables[0]
                    .block(old_uid, direction)
                    .iter()
                    .zip(tables[1].block(new_uid, direction))
                    .all(|(old, new)| {
                        old.key.l4 == new.key.l4
                            && old.value.stateless == new.value.stateless
                            && renumbering.get(&old.key.remote) == Some(&new.key.remote)
                    })
            {
                continue;
            }
            // A remote group with a concrete table on neither side meets
            // the wildcard tables on both: when those allow alike, only
            // the groups with a concrete table can change.
            let [old_wildcard, new_wildcard] = [0, 1].map(|side| {
                local_uid.uids[side].map_or_else(Pieces::deny_all, |uid| {
                    tables[side].pieces(uid, direction, ANY_REMOTE)
                })
            });
            let candidates: Vec<usize> =
                if discovery[0] != discovery[1] || !old_wildcard.allows_as(&new_wildcard) {
                    (0..remote_groups.len()).collect()
                } else {
                    let mut some: Vec<usize> = (0..2)
                        .filter_map(|side| local_uid.uids[side].map(|uid| (side, uid)))
                        .flat_map(|(side, uid)| {
                            tables[side]
                                .remotes(uid, direction)
                                .into_iter()
                                .flat_map(|remote| by_uid[side].get(&remote).into_iter().flatten())
                                .copied()
                                .collect::<Vec<usize>>()
                        })
                        .collect();
                    some.sort_unstable();
                    some.dedup();
                    some
                };
            for remote in candidates {
                if local_groups[local].families & remote_groups[remote].families == 0 {
                    continue;
                }
                let [old_uid, new_uid] = local_uid.uids;
                if let (Some(old_uid), Some(new_uid)) = (old_uid, new_uid)
                    && tables[0].allows_as(
                        &tables[1],
                        [old_uid, new_uid],
                        direction,
                        remote_uids[remote],
                    )
                {
                    continue;
                }
                let [old, new] = [0, 1].map(|side| {
                    local_uid.uids[side].map_or_else(Pieces::deny_all, |uid| {
                        tables[side].pieces(uid, direction, remote_uids[remote][side])
                    })
                });
                for (l4, change, statements) in differences(&old, &new, discovery) {
                    let plan = if change.allowed_after() {
                        after
                    } else {
                        before
                    };
                    paths.push(PathChange {
                        change,
                        statements: statements
                            .iter()
                            .map(|&index| plan.statements[index as usize].id.clone())
                            .collect(),
                        direction,
                        local,
                        remote,
                        l4,
                    });
                }
            }
        }
    }
    PlanDiff {
        enforcement,
        paths,
        local_groups,
        remote_groups,
    }
}

/// When every remote UID of the old Plan stands for exactly the addresses
/// of one UID of the new Plan: the old UID -> the new one (the wildcard
/// kept), so two tables can be compared entry by entry.
fn renumbering(remote_uids: &[[Uid; 2]]) -> Option<HashMap<Uid, Uid>> {
    let mut forward = HashMap::from_iter([(ANY_REMOTE, ANY_REMOTE)]);
    let mut backward = HashMap::from_iter([(ANY_REMOTE, ANY_REMOTE)]);
    for &[old, new] in remote_uids {
        if *forward.entry(old).or_insert(new) != new || *backward.entry(new).or_insert(old) != old {
            return None;
        }
    }
    Some(forward)
}

/// Local addresses grouped by the pair (UID before, UID after); `None`
/// where the endpoint does not own the address in that Plan, so every
/// packet through it is dropped there as spoofed or foreign, except
/// neighbour discovery toward it, or from it when it may send that from
/// an address not its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct LocalUids {
    uids: [Option<Uid>; 2],
    discovery_source: bool,
}

fn local_groups(
    before: &Plan,
    after: &Plan,
    endpoints: &[&str],
) -> (Vec<AddressGroup>, Vec<LocalUids>) {
    let mut groups: BTreeMap<LocalUids, AddressGroup> = BTreeMap::new();
    for &endpoint in endpoints {
        let [old, new] = [before, after].map(|plan| &plan.endpoint(endpoint).unwrap().addresses);
        let mut addresses: Vec<_> = old.iter().chain(new).map(|a| a.address).collect();
        addresses.sort_unstable();
        addresses.dedup();
        for address in addresses {
            let uid_in = |owned: &[super::plan::EndpointAddress]| {
                owned.iter().find(|a| a.address == address).map(|a| a.uid)
            };
            let uids = [uid_in(old), uid_in(new)];
            let key = LocalUids {
                uids,
                discovery_source: is_neighbour_discovery_source(address),
            };
            let group = groups.entry(key).or_insert_with(|| AddressGroup {
                members: Vec::new(),
                prefixes: Vec::new(),
                selectors_before: selectors(before, uids[0]),
                selectors_after: selectors(after, uids[1]),
                families: 0,
            });
            group.families |= family_bit(Family::of(address));
            group.members.push(IdentityMember {
                endpoint: endpoint.to_owned(),
                address,
            });
        }
    }
    let (uids, groups) = groups.into_iter().unzip();
    (groups, uids)
}

fn selectors(plan: &Plan, uid: Option<Uid>) -> Vec<String> {
    uid.map(|uid| plan.identities[uid as usize - 1].selectors.clone())
        .unwrap_or_default()
}

/// A prefix or endpoint address either Plan resolves addresses by.
#[derive(Default)]
struct Node<'a> {
    /// Its LPM entry in each Plan.
    prefix: [Option<Uid>; 2],
    /// Its exact host entry in each Plan.
    host: [Option<(Uid, &'a str)>; 2],
}

/// Every address grouped by the pair of UIDs the two Plans' lookups give
/// it: one sorted walk over both Plans' entries, each region being a node
/// less the more specific nodes inside it.
fn remote_groups(before: &Plan, after: &Plan) -> (Vec<AddressGroup>, Vec<[Uid; 2]>) {
    let mut nodes: BTreeMap<(Family, u128, u8), Node> = BTreeMap::new();
    let key = |prefix: &IpPrefix| {
        (
            Family::of(prefix.addr),
            prefix::bits(prefix.addr),
            prefix.len,
        )
    };
    for (side, plan) in [before, after].into_iter().enumerate() {
        for entry in &plan.prefixes {
            nodes.entry(key(&entry.prefix)).or_default().prefix[side] = Some(entry.uid);
        }
        for host in &plan.hosts {
            let entry = nodes.entry(key(&prefix::host(host.address))).or_default();
            entry.host[side] = Some((host.uid, host.endpoint.as_str()));
        }
    }
    let nodes: Vec<((Family, u128, u8), Node)> = nodes.into_iter().collect();
    let mut groups: BTreeMap<[Uid; 2], AddressGroup> = BTreeMap::new();
    // (index, UIDs its region's lookups give, addresses the children cover)
    let mut stack: Vec<(usize, [Uid; 2], u128)> = Vec::new();
    let mut regions: Vec<(usize, [Uid; 2])> = Vec::new();
    let size =
        |&(family, _, len): &(Family, u128, u8)| 1u128.checked_shl(u32::from(family.width() - len));
    let close = |(index, uids, covered): (usize, [Uid; 2], u128),
                 regions: &mut Vec<(usize, [Uid; 2])>| {
        // The IPv6 root is never covered in full.
        if size(&nodes[index].0).is_none_or(|size| size > covered) {
            regions.push((index, uids));
        }
    };
    for (index, (node_key, node)) in nodes.iter().enumerate() {
        let (family, bits, len) = *node_key;
        while let Some(&(top, _, _)) = stack.last() {
            let (top_family, top_bits, top_len) = nodes[top].0;
            if top_family == family && len >= top_len && bits & prefix::mask(top_len) == top_bits {
                break;
            }
            close(stack.pop().unwrap(), &mut regions);
        }
        let inherited = stack.last().map_or([ANY_REMOTE; 2], |&(_, uids, _)| uids);
        if let (Some(parent), Some(size)) = (stack.last_mut(), size(node_key)) {
            parent.2 = parent.2.saturating_add(size);
        }
        let uids = [0, 1].map(|side| {
            node.host[side]
                .map(|(uid, _)| uid)
                .or(node.prefix[side])
                .unwrap_or(inherited[side])
        });
        // Only a prefix node has descendants, and they inherit its LPM
        // entry; a host entry is its own address's alone.
        stack.push((index, uids, 0));
    }
    while let Some(open) = stack.pop() {
        close(open, &mut regions);
    }
    for (index, uids) in regions {
        let ((family, bits, len), node) = &nodes[index];
        let group = groups.entry(uids).or_insert_with(|| AddressGroup {
            members: Vec::new(),
            prefixes: Vec::new(),
            selectors_before: selectors(before, Some(uids[0])),
            selectors_after: selectors(after, Some(uids[1])),
            families: 0,
        });
        group.families |= family_bit(*family);
        let address = prefix::address(*family, *bits);
        match node.host[1].or(node.host[0]) {
            Some((_, endpoint)) => group.members.push(IdentityMember {
                endpoint: endpoint.to_owned(),
                address,
            }),
            None => group.prefixes.push(IpPrefix {
                addr: address,
                len: *len,
            }),
        }
    }
    let (uids, groups) = groups.into_iter().unzip();
    (groups, uids)
}

/// A Plan's policy tables, with their allowed key ranges worked out once.
struct Tables<'a> {
    /// All tables of one local UID and direction, sorted by remote UID
    /// (the wildcard first).
    blocks: HashMap<(Uid, Direction), &'a [PolicyEntry]>,
    pieces: HashMap<(Uid, Direction, Uid), Pieces<'a>>,
}

impl<'a> Tables<'a> {
    fn new(plan: &'a Plan) -> Tables<'a> {
        let blocks = plan
            .policy
            .chunk_by(|a, b| (a.key.local, a.key.direction) == (b.key.local, b.key.direction))
            .map(|block| ((block[0].key.local, block[0].key.direction), block))
            .collect();
        Tables {
            blocks,
            pieces: HashMap::default(),
        }
    }

    fn block(&self, local: Uid, direction: Direction) -> &'a [PolicyEntry] {
        self.blocks.get(&(local, direction)).copied().unwrap_or(&[])
    }

    fn table(&self, local: Uid, direction: Direction, remote: Uid) -> Option<&'a [PolicyEntry]> {
        let block = self.block(local, direction);
        let start = block.partition_point(|entry| entry.key.remote < remote);
        let end = start + block[start..].partition_point(|entry| entry.key.remote == remote);
        (start < end).then(|| &block[start..end])
    }

    fn has(&self, local: Uid, direction: Direction, remote: Uid) -> bool {
        self.table(local, direction, remote).is_some()
    }

    /// The remote UIDs with a concrete table.
    fn remotes(&self, local: Uid, direction: Direction) -> Vec<Uid> {
        let mut remotes: Vec<Uid> = self
            .block(local, direction)
            .iter()
            .map(|entry| entry.key.remote)
            .filter(|&remote| remote != ANY_REMOTE)
            .collect();
        remotes.dedup();
        remotes
    }

    /// Whether the two Plans' tables for these UIDs hold the same L4
    /// prefixes, each as stateful or stateless in both, concrete and
    /// wildcard alike: then they allow the same keys the same way (every
    /// entry allows), and nothing needs working out.
    fn allows_as(
        &self,
        other: &Tables<'a>,
        locals: [Uid; 2],
        direction: Direction,
        remotes: [Uid; 2],
    ) -> bool {
        let same =
            |mine: Option<&[PolicyEntry]>, theirs: Option<&[PolicyEntry]>| match (mine, theirs) {
                (None, None) => true,
                (Some(mine), Some(theirs)) => {
                    mine.len() == theirs.len()
                        && mine.iter().zip(theirs.iter()).all(|(a, b)| {
                            a.key.l4 == b.key.l4 && a.value.stateless == b.value.stateless
                        })
                }
                _ => false,
            };
        same(
            self.table(locals[0], direction, remotes[0]),
            other.table(locals[1], direction, remotes[1]),
        ) && same(
            self.table(locals[0], direction, ANY_REMOTE),
            other.table(locals[1], direction, ANY_REMOTE),
        )
    }

    /// What the kernel allows from `local` toward `remote`: the concrete
    /// table's longest match, and on a miss the wildcard table's.
    fn pieces(&mut self, local: Uid, direction: Direction, remote: Uid) -> Pieces<'a> {
        let remote = if self.has(local, direction, remote) {
            remote
        } else {
            ANY_REMOTE
        };
        if let Some(pieces) = self.pieces.get(&(local, direction, remote)) {
            return pieces.clone();
        }
        let table = |remote| {
            self.table(local, direction, remote)
                .map_or_else(Pieces::deny_all, Pieces::of)
        };
        let pieces = if remote == ANY_REMOTE {
            table(ANY_REMOTE)
        } else {
            table(remote).or(&table(ANY_REMOTE))
        };
        self.pieces
            .insert((local, direction, remote), pieces.clone());
        pieces
    }
}

/// What a policy entry's absence means: no statement allows.
static DENIED: PolicyValue = PolicyValue {
    statements: Vec::new(),
    stateless: false,
};

/// A partition of the L4 key space, each piece with the entry value that
/// allows its keys (no statements: dropped), in key order. Shared: many
/// groups meet the same table.
#[derive(Debug, Clone)]
struct Pieces<'a>(Rc<Vec<(L4Range, &'a PolicyValue)>>);

impl<'a> Pieces<'a> {
    fn deny_all() -> Pieces<'a> {
        Pieces(Rc::new(vec![(
            L4Range {
                low: 0,
                high: L4_MAX,
            },
            &DENIED,
        )]))
    }

    /// A longest-prefix table as pieces. Entries sorted by prefix come in
    /// depth-first order, each prefix before those it contains.
    fn of(entries: &'a [PolicyEntry]) -> Pieces<'a> {
        let mut pieces = Vec::new();
        let mut cursor = 0u32;
        let mut open: Vec<(u32, &'a PolicyValue)> = Vec::new();
        let mut emit_until = |end: u32, value: &'a PolicyValue, cursor: &mut u32| {
            if *cursor <= end {
                pieces.push((
                    L4Range {
                        low: *cursor,
                        high: end,
                    },
                    value,
                ));
                *cursor = end + 1;
            }
        };
        for entry in entries {
            let l4 = entry.key.l4;
            let start = l4.key();
            let end = start + ((1u32 << (super::l4::L4_BITS - l4.len)) - 1);
            while let Some(&(top_end, value)) = open.last()
                && top_end < start
            {
                emit_until(top_end, value, &mut cursor);
                open.pop();
            }
            if start > 0 {
                let around = open.last().map_or(&DENIED, |&(_, value)| value);
                emit_until(start - 1, around, &mut cursor);
            }
            open.push((end, &entry.value));
        }
        while let Some((end, value)) = open.pop() {
            emit_until(end, value, &mut cursor);
        }
        emit_until(L4_MAX, &DENIED, &mut cursor);
        Pieces(Rc::new(pieces))
    }

    /// Whether both allow exactly the same keys, each the same way
    /// (stateful or stateless), by whatever statements.
    fn allows_as(&self, other: &Pieces<'a>) -> bool {
        overlay(self, other).all(|(_, mine, theirs)| Passage::of(mine) == Passage::of(theirs))
    }

    /// These pieces where they allow, `fallback` elsewhere.
    fn or(&self, fallback: &Pieces<'a>) -> Pieces<'a> {
        Pieces(Rc::new(
            overlay(self, fallback)
                .map(|(range, mine, theirs)| {
                    let allowing = if mine.statements.is_empty() {
                        theirs
                    } else {
                        mine
                    };
                    (range, allowing)
                })
                .collect(),
        ))
    }
}

/// How the packets of a piece pass the vNIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Passage {
    Dropped,
    /// Allowed, the connection tracked.
    Stateful,
    /// Allowed by stateless statements only.
    Stateless,
}

impl Passage {
    fn of(value: &PolicyValue) -> Passage {
        match (value.statements.is_empty(), value.stateless) {
            (true, _) => Passage::Dropped,
            (false, false) => Passage::Stateful,
            (false, true) => Passage::Stateless,
        }
    }

    /// What going from `self` to `after` does to a packet.
    fn change_to(self, after: Passage) -> Option<Change> {
        match (self, after) {
            (Passage::Dropped, Passage::Dropped) => None,
            (Passage::Dropped, _) => Some(Change::Opens),
            (_, Passage::Dropped) => Some(Change::Closes),
            (Passage::Stateful, Passage::Stateless) => Some(Change::BecomesStateless),
            (Passage::Stateless, Passage::Stateful) => Some(Change::BecomesStateful),
            (Passage::Stateful, Passage::Stateful) | (Passage::Stateless, Passage::Stateless) => {
                None
            }
        }
    }
}

/// Both partitions cut at every boundary of either.
fn overlay<'p, 'a>(
    first: &'p Pieces<'a>,
    second: &'p Pieces<'a>,
) -> impl Iterator<Item = (L4Range, &'a PolicyValue, &'a PolicyValue)> + 'p {
    let (mut i, mut j, mut low) = (0, 0, 0u32);
    std::iter::from_fn(move || {
        let (&(a, a_statements), &(b, b_statements)) = (first.0.get(i)?, second.0.get(j)?);
        let high = a.high.min(b.high);
        let piece = (L4Range { low, high }, a_statements, b_statements);
        if a.high == high {
            i += 1;
        }
        if b.high == high {
            j += 1;
        }
        low = high.wrapping_add(1);
        Some(piece)
    })
}

/// The ICMPv6 neighbour discovery keys: they pass whatever the policy,
/// unless sent from an address the endpoint does not own.
fn neighbour_discovery() -> L4Range {
    let key = |icmp_type: u8, code: u8| {
        (u32::from(PROTOCOL_ICMPV6) << 16) | (u32::from(icmp_type) << 8) | u32::from(code)
    };
    L4Range {
        low: key(*NEIGHBOUR_DISCOVERY_TYPES.start(), 0),
        high: key(*NEIGHBOUR_DISCOVERY_TYPES.end(), u8::MAX),
    }
}

/// The key ranges where one side allows and the other drops, or both
/// allow but only one tracks the connection, adjacent ones with the same
/// change and statements joined. Neighbour discovery passes on each side
/// as `discovery` says, by no statement and untracked.
fn differences<'a>(
    before: &Pieces<'a>,
    after: &Pieces<'a>,
    discovery: [bool; 2],
) -> Vec<(L4Range, Change, &'a [StatementIndex])> {
    let always = neighbour_discovery();
    let mut changes: Vec<(L4Range, Change, &'a [StatementIndex])> = Vec::new();
    let mut push = |part: L4Range, old: Passage, new: Passage, statements: &'a [StatementIndex]| {
        let Some(change) = old.change_to(new) else {
            return;
        };
        match changes.last_mut() {
            Some((last, last_change, last_statements))
                if last.high + 1 == part.low
                    && *last_change == change
                    && *last_statements == statements =>
            {
                last.high = part.high;
            }
            _ => changes.push((part, change, statements)),
        }
    };
    let discovery = discovery.map(|passes| match passes {
        true => Passage::Stateless,
        false => Passage::Dropped,
    });
    for (range, old, new) in overlay(before, after) {
        let statements = if new.statements.is_empty() {
            &old.statements
        } else {
            &new.statements
        };
        let (old, new) = (Passage::of(old), Passage::of(new));
        if range.low < always.low {
            let part = L4Range {
                low: range.low,
                high: range.high.min(always.low - 1),
            };
            push(part, old, new, statements);
        }
        if range.low <= always.high && range.high >= always.low {
            let part = L4Range {
                low: range.low.max(always.low),
                high: range.high.min(always.high),
            };
            push(part, discovery[0], discovery[1], &[]);
        }
        if range.high > always.high {
            let part = L4Range {
                low: range.low.max(always.high + 1),
                high: range.high,
            };
            push(part, old, new, statements);
        }
    }
    changes
}

fn prefix_list<S: serde::Serializer>(prefixes: &[IpPrefix], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(prefixes.iter().map(crate::lang::address::format_prefix))
}
