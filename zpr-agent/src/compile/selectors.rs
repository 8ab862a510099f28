//! Statements reduced to what the compiler works with: each side is a
//! selector (numbered, shared between statements) or "every address", plus
//! the statement's L4 prefixes.

use std::collections::BTreeMap;
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
            value: attribute.value.clone(),
        }
    }
}

impl fmt::Display for AttributeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}:{}", self.namespace, self.key, self.value)
    }
}

/// A set of addresses some statement side names. "Every address"
/// (`all-endpoints`) is not one: it tells no addresses apart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Selector {
    /// Addresses of endpoints that carry `attribute` and sit in a VCN
    /// carrying `location`.
    Attribute {
        attribute: AttributeKey,
        location: AttributeKey,
    },
    /// Every address inside the prefix.
    Prefix(IpPrefix),
    /// The inventory's OSN service prefixes.
    OsnServices,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Attribute {
                attribute,
                location,
            } => write!(f, "{attribute} in {location} VCN"),
            Selector::Prefix(prefix) => write!(f, "'{}'", format_prefix(prefix)),
            Selector::OsnServices => f.write_str("osn-services-ip-addresses"),
        }
    }
}

/// Index into [`Resolved::selectors`].
pub type SelectorId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Every,
    Selector(SelectorId),
}

#[derive(Debug, Clone)]
pub struct ResolvedStatement {
    pub source: Side,
    pub destination: Side,
    pub l4: Vec<L4Prefix>,
}

/// The policy set's statements in [`StatementId`](crate::lang::StatementId)
/// order, and the distinct selectors they use, sorted.
pub struct Resolved<'a> {
    pub statements: Vec<&'a Statement>,
    pub resolved: Vec<ResolvedStatement>,
    pub selectors: Vec<Selector>,
}

pub fn resolve(policies: &[Policy]) -> Resolved<'_> {
    let mut statements: Vec<&Statement> = policies.iter().flat_map(|p| &p.statements).collect();
    statements.sort_by(|a, b| a.id.cmp(&b.id));
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
    let mut ids: BTreeMap<&Selector, SelectorId> = sides
        .iter()
        .flat_map(|(source, destination)| [source, destination])
        .flatten()
        .map(|selector| (selector, 0))
        .collect();
    for (id, slot) in ids.values_mut().enumerate() {
        *slot = id as SelectorId;
    }
    let side = |selector: &Option<Selector>| match selector {
        None => Side::Every,
        Some(selector) => Side::Selector(ids[selector]),
    };
    let resolved = statements
        .iter()
        .zip(&sides)
        .map(|(statement, (source, destination))| ResolvedStatement {
            source: side(source),
            destination: side(destination),
            l4: statement_prefixes(statement),
        })
        .collect();
    let selectors = ids.keys().map(|&selector| selector.clone()).collect();
    Resolved {
        statements,
        resolved,
        selectors,
    }
}

fn selector(endpoint: &Endpoint, location: &Attribute) -> Option<Selector> {
    match endpoint {
        Endpoint::AllEndpoints => None,
        Endpoint::Attribute(attribute) => Some(Selector::Attribute {
            attribute: AttributeKey::of(attribute),
            location: AttributeKey::of(location),
        }),
        Endpoint::Prefix(prefix) => Some(Selector::Prefix(*prefix)),
        Endpoint::OsnServices => Some(Selector::OsnServices),
    }
}
