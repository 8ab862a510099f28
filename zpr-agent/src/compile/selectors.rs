//! Statements reduced to what the compiler works with: each side is a
//! selector (numbered, shared between statements) or "every address", plus
//! the statement's L4 prefixes.

use foldhash::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use super::evaluate::locations;
use super::l4::{L4Prefix, statement_prefixes};
use crate::lang::address::format_prefix;
use crate::lang::{Attribute, Endpoint, IpPrefix, KeptByBody, Policy, Statement};

/// An attribute in the form it compares in: namespace and key lowercased.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttributeKey {
    namespace: String,
    key: String,
    value: String,
}

impl AttributeKey {
    pub fn of(attribute: &Attribute) -> AttributeKey {
        AttributeKey {
            namespace: attribute.namespace().to_ascii_lowercase(),
            key: attribute.key.to_ascii_lowercase(),
            value: attribute.value.to_string(),
        }
    }
}

impl fmt::Display for AttributeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}:{}", self.namespace, self.key, self.value)
    }
}

/// Index into [`Resolved::attributes`].
pub type AttributeId = u32;

/// A set of addresses some statement side names. "Every address"
/// (`all-endpoints`) is not one: it tells no addresses apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Selector {
    /// Addresses of endpoints that carry `attribute` and sit in a VCN
    /// carrying `location`.
    Attribute {
        attribute: AttributeId,
        location: AttributeId,
    },
    /// Every address inside the prefix.
    Prefix(IpPrefix),
    /// The inventory's OSN service prefixes.
    OsnServices,
}

/// Index into [`Resolved::selectors`].
pub type SelectorId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Every,
    Selector(SelectorId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedStatement {
    pub source: Side,
    pub destination: Side,
    /// Shared with the [`Memo`] that resolved the statement's body.
    pub l4: Arc<[L4Prefix]>,
}

/// The policy set's statements in [`StatementId`](crate::lang::StatementId)
/// order, the distinct selectors they use (sorted), and the attributes those
/// name, numbered by first use.
pub struct Resolved<'a> {
    pub statements: Vec<&'a Statement>,
    pub resolved: Vec<ResolvedStatement>,
    /// Whether each statement is stateless (kept with its resolved body,
    /// so that an unchanged statement's body is not read again).
    pub stateless: Vec<bool>,
    pub selectors: Vec<Selector>,
    pub attributes: Vec<AttributeKey>,
    attribute_ids: HashMap<AttributeKey, AttributeId>,
}

impl Resolved<'_> {
    /// The id of an attribute some selector names; `None` when none does.
    pub fn attribute_id(&self, attribute: &Attribute) -> Option<AttributeId> {
        self.attribute_ids
            .get(&AttributeKey::of(attribute))
            .copied()
    }

    /// The selector as `zpr compile` prints it.
    pub fn describe(&self, selector: SelectorId) -> String {
        match self.selectors[selector as usize] {
            Selector::Attribute {
                attribute,
                location,
            } => format!(
                "{} in {} VCN",
                self.attributes[attribute as usize], self.attributes[location as usize]
            ),
            Selector::Prefix(prefix) => format!("'{}'", format_prefix(&prefix)),
            Selector::OsnServices => "osn-services-ip-addresses".to_owned(),
        }
    }
}

/// How many attributes no statement names any more a [`Memo`] may keep
/// beyond as many as are named.
const FORGOTTEN_ATTRIBUTES: usize = 1024;

/// What resolving a statement's body gives, numbered in a [`Memo`]'s own
/// order rather than a compile's.
#[derive(Clone)]
struct BodyResolved {
    source: Option<MemoSelector>,
    destination: Option<MemoSelector>,
    l4: Arc<[L4Prefix]>,
    stateless: bool,
}

/// A [`Selector`] whose attributes are numbered by the [`Memo`].
#[derive(Clone, Copy)]
enum MemoSelector {
    Attribute { attribute: u32, location: u32 },
    Prefix(IpPrefix),
    OsnServices,
}

/// The statement bodies resolved by the last resolve, in its order: the
/// incremental compiler keeps one, so that the statements a reload shares
/// with the last one (the same bodies, from the statement cache) are
/// taken rather than resolved again, by position where they kept their
/// place, by address where they moved. Keeps the attributes it numbered
/// (few, however many statements name them).
#[derive(Default)]
pub struct Memo {
    /// False for a compile done once: keeping every body would only cost.
    keeps_bodies: bool,
    last: KeptByBody<BodyResolved>,
    /// Attributes by their written form, then as they compare.
    written: HashMap<Attribute, u32>,
    ids: HashMap<AttributeKey, u32>,
    keys: Vec<AttributeKey>,
}

impl Memo {
    /// A memo for compiles one after another.
    pub fn kept() -> Memo {
        Memo {
            keeps_bodies: true,
            ..Memo::default()
        }
    }

    fn attribute(&mut self, attribute: &Attribute) -> u32 {
        if let Some(&id) = self.written.get(attribute) {
            return id;
        }
        let key = AttributeKey::of(attribute);
        let next = self.keys.len() as u32;
        let id = *self.ids.entry(key.clone()).or_insert(next);
        if id == next {
            self.keys.push(key);
        }
        self.written.insert(attribute.clone(), id);
        id
    }

    fn selector(&mut self, endpoint: &Endpoint, location: &Attribute) -> Option<MemoSelector> {
        match endpoint {
            Endpoint::AllEndpoints => None,
            Endpoint::Attribute(attribute) => Some(MemoSelector::Attribute {
                attribute: self.attribute(attribute),
                location: self.attribute(location),
            }),
            Endpoint::Prefix(prefix) => Some(MemoSelector::Prefix(*prefix)),
            Endpoint::OsnServices => Some(MemoSelector::OsnServices),
        }
    }

    /// The statement's body resolved (sides and L4 prefixes).
    fn body(&mut self, statement: &Statement) -> BodyResolved {
        let (source_location, destination_location) = locations(&statement.scope);
        BodyResolved {
            source: self.selector(&statement.source.node, source_location),
            destination: self.selector(&statement.destination.node, destination_location),
            l4: statement_prefixes(statement).into(),
            stateless: statement.is_stateless(),
        }
    }
}

/// [`resolve_with`] a memo of its own (a compile done once).
pub fn resolve<'a>(policies: &'a [Policy]) -> Resolved<'a> {
    resolve_with(policies, &mut Memo::default())
}

/// Resolves the policies' statements, taking the bodies `memo` met last
/// time from it and leaving in it this policy set's.
pub fn resolve_with<'a>(policies: &'a [Policy], memo: &mut Memo) -> Resolved<'a> {
    let mut statements: Vec<&'a Statement> = policies.iter().flat_map(|p| &p.statements).collect();
    statements.sort_by(|a, b| a.id.cmp(&b.id));
    // Attributes are numbered by first use in statement order, as the
    // memo's numbers are met.
    let mut numbers: Vec<Option<AttributeId>> = Vec::new();
    let mut attributes: Vec<AttributeKey> = Vec::new();
    let mut number = |memo_id: u32, keys: &[AttributeKey]| -> AttributeId {
        let memo_id = memo_id as usize;
        if numbers.len() <= memo_id {
            numbers.resize(memo_id + 1, None);
        }
        *numbers[memo_id].get_or_insert_with(|| {
            attributes.push(keys[memo_id].clone());
            (attributes.len() - 1) as AttributeId
        })
    };
    // The bodies the last resolve met are taken, the rest resolved.
    let mut bodies = std::mem::take(&mut memo.last);
    bodies.follow(&statements, |statement| memo.body(statement));
    let mut l4 = Vec::with_capacity(statements.len());
    let mut stateless = Vec::with_capacity(statements.len());
    let sides: Vec<(Option<Selector>, Option<Selector>)> = (0..statements.len())
        .map(|index| {
            let known = bodies.get(index);
            l4.push(known.l4.clone());
            stateless.push(known.stateless);
            let mut selector = |side: Option<MemoSelector>| {
                side.map(|side| match side {
                    MemoSelector::Attribute {
                        attribute,
                        location,
                    } => Selector::Attribute {
                        attribute: number(attribute, &memo.keys),
                        location: number(location, &memo.keys),
                    },
                    MemoSelector::Prefix(prefix) => Selector::Prefix(prefix),
                    MemoSelector::OsnServices => Selector::OsnServices,
                })
            };
            (selector(known.source), selector(known.destination))
        })
        .collect();
    if memo.keeps_bodies {
        memo.last = bodies;
    }
    // The attributes stay numbered as long as the memo lives: once most
    // are no longer named (an agent's policies rewritten over months), it
    // starts again, and the next resolve resolves every body.
    if memo.keys.len() > 2 * attributes.len() + FORGOTTEN_ATTRIBUTES {
        *memo = Memo {
            keeps_bodies: memo.keeps_bodies,
            ..Memo::default()
        };
    }
    let mut selectors: Vec<Selector> = sides
        .iter()
        .flat_map(|&(source, destination)| [source, destination])
        .flatten()
        .collect::<HashSet<Selector>>()
        .into_iter()
        .collect();
    selectors.sort_unstable();
    let ids: HashMap<Selector, SelectorId> = selectors
        .iter()
        .enumerate()
        .map(|(id, &selector)| (selector, id as SelectorId))
        .collect();
    let side = |selector: Option<Selector>| match selector {
        None => Side::Every,
        Some(selector) => Side::Selector(ids[&selector]),
    };
    let resolved = sides
        .iter()
        .zip(l4)
        .map(|(&(source, destination), l4)| ResolvedStatement {
            source: side(source),
            destination: side(destination),
            l4,
        })
        .collect();
    let attribute_ids = attributes
        .iter()
        .enumerate()
        .map(|(id, key)| (key.clone(), id as AttributeId))
        .collect();
    Resolved {
        statements,
        resolved,
        stateless,
        selectors,
        attributes,
        attribute_ids,
    }
}
