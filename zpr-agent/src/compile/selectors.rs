//! Statements reduced to what the compiler works with: each side is a
//! selector (numbered, shared between statements) or "every address", plus
//! the statement's L4 prefixes.

use foldhash::{HashMap, HashSet};
use std::fmt;

use super::evaluate::locations;
use super::l4::{L4Prefix, statement_prefixes};
use crate::lang::address::format_prefix;
use crate::lang::{Attribute, Endpoint, IpPrefix, Policy, Statement};

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
    pub l4: Vec<L4Prefix>,
}

/// The policy set's statements in [`StatementId`](crate::lang::StatementId)
/// order, the distinct selectors they use (sorted), and the attributes those
/// name, numbered by first use.
pub struct Resolved<'a> {
    pub statements: Vec<&'a Statement>,
    pub resolved: Vec<ResolvedStatement>,
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

/// Numbers attributes; a cache of the written form spares lowercasing the
/// same text again for every statement that repeats it.
#[derive(Default)]
struct Attributes<'a> {
    written: HashMap<(Option<&'a str>, &'a str, &'a str), AttributeId>,
    ids: HashMap<AttributeKey, AttributeId>,
    keys: Vec<AttributeKey>,
}

impl<'a> Attributes<'a> {
    fn id(&mut self, attribute: &'a Attribute) -> AttributeId {
        let written = (
            attribute.namespace.as_deref(),
            &*attribute.key,
            &*attribute.value,
        );
        if let Some(&id) = self.written.get(&written) {
            return id;
        }
        let key = AttributeKey::of(attribute);
        let next = self.keys.len() as AttributeId;
        let id = *self.ids.entry(key.clone()).or_insert(next);
        if id == next {
            self.keys.push(key);
        }
        self.written.insert(written, id);
        id
    }
}

pub fn resolve<'a>(policies: &'a [Policy]) -> Resolved<'a> {
    let mut statements: Vec<&'a Statement> = policies.iter().flat_map(|p| &p.statements).collect();
    statements.sort_by(|a, b| a.id.cmp(&b.id));
    let mut attributes = Attributes::default();
    let mut selector = |endpoint: &'a Endpoint, location: &'a Attribute| match endpoint {
        Endpoint::AllEndpoints => None,
        Endpoint::Attribute(attribute) => Some(Selector::Attribute {
            attribute: attributes.id(attribute),
            location: attributes.id(location),
        }),
        Endpoint::Prefix(prefix) => Some(Selector::Prefix(*prefix)),
        Endpoint::OsnServices => Some(Selector::OsnServices),
    };
    let sides: Vec<(Option<Selector>, Option<Selector>)> = statements
        .iter()
        .map(|statement| {
            let (source_location, destination_location) = locations(&statement.scope);
            (
                selector(&statement.source.node, source_location),
                selector(&statement.destination.node, destination_location),
            )
        })
        .collect();
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
    let resolved = statements
        .iter()
        .zip(&sides)
        .map(|(statement, &(source, destination))| ResolvedStatement {
            source: side(source),
            destination: side(destination),
            l4: statement_prefixes(statement),
        })
        .collect();
    Resolved {
        statements,
        resolved,
        selectors,
        attributes: attributes.keys,
        attribute_ids: attributes.ids,
    }
}
