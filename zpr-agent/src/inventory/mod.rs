//! Inventory: namespaces, attributes, VCNs and endpoints (YAML), validated.
//!
//! An [`Inventory`] only exists validated: [`Inventory::from_yaml_str`]
//! reports every problem it finds, each named by its YAML path.

use foldhash::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::lang::{Attribute, IpPrefix};

mod aliases;
mod nesting;
pub mod prefix;
mod schema;
mod validate;

/// The most security attributes one endpoint may carry.
pub const MAX_ENDPOINT_ATTRIBUTES: usize = 5;
/// Linux interface names are at most 15 bytes (IFNAMSIZ less the NUL).
pub const MAX_INTERFACE_NAME: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub attributes: Vec<AttributeDefinition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeDefinition {
    pub key: String,
    pub kind: AttributeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeKind {
    /// Only these values may be used.
    List(Vec<String>),
    Freeform,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vcn {
    pub name: String,
    pub cidrs: Vec<IpPrefix>,
    pub attribute: Option<Attribute>,
}

/// What the datapath does with a protected endpoint's denied packets.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Drop them.
    #[default]
    Enforce,
    /// Report them and let them pass.
    Audit,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    /// Index into [`Inventory::vcns`].
    pub vcn: usize,
    pub addresses: Vec<IpAddr>,
    /// The host-side interface, present when the endpoint lives on this host.
    pub interface: Option<String>,
    /// The fleet node whose agent attaches to `interface` (stores only:
    /// an agent reading a fleet's store sees the interfaces of its own
    /// node's endpoints and of those placed on no node).
    pub node: Option<String>,
    pub attributes: Vec<Attribute>,
    pub mode: Mode,
}

impl Endpoint {
    /// Carries at least one attribute, so default deny applies to it.
    pub fn is_protected(&self) -> bool {
        !self.attributes.is_empty()
    }

    pub fn carries(&self, attribute: &Attribute) -> bool {
        self.attributes.iter().any(|own| own.same_as(attribute))
    }

    pub fn owns(&self, address: IpAddr) -> bool {
        self.addresses.contains(&address)
    }
}

/// How an attribute written in a policy relates to the inventory's namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeStatus {
    Known,
    UnknownNamespace,
    UnknownKey,
    /// The key is list-typed and the value is not in its list.
    ValueNotInList,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    namespaces: Vec<Namespace>,
    vcns: Vec<Vcn>,
    endpoints: Vec<Endpoint>,
    osn_services: Vec<IpPrefix>,
    endpoint_by_address: HashMap<IpAddr, usize>,
    endpoint_by_name: HashMap<String, usize>,
    /// Every attribute a VCN or endpoint carries, by [`carried_key`]: the
    /// checker asks once per attribute a statement names.
    carried: HashSet<(String, String, String)>,
}

/// An attribute as the language compares it: namespace and key without
/// case, the value exactly.
fn carried_key(attribute: &Attribute) -> (String, String, String) {
    (
        attribute.namespace().to_ascii_lowercase(),
        attribute.key.to_ascii_lowercase(),
        attribute.value.to_string(),
    )
}

impl Inventory {
    /// Parses and validates an inventory; on failure, every problem found.
    pub fn from_yaml_str(text: &str) -> Result<Inventory, InventoryErrors> {
        let raw = schema::parse(text).map_err(InventoryErrors)?;
        validate::validate(raw).map_err(InventoryErrors)
    }

    fn new(
        namespaces: Vec<Namespace>,
        vcns: Vec<Vcn>,
        endpoints: Vec<Endpoint>,
        osn_services: Vec<IpPrefix>,
    ) -> Inventory {
        let endpoint_by_address = endpoints
            .iter()
            .enumerate()
            .flat_map(|(index, endpoint)| endpoint.addresses.iter().map(move |&a| (a, index)))
            .collect();
        let endpoint_by_name = endpoints
            .iter()
            .enumerate()
            .map(|(index, endpoint)| (endpoint.name.clone(), index))
            .collect();
        let carried = vcns
            .iter()
            .filter_map(|vcn| vcn.attribute.as_ref())
            .chain(endpoints.iter().flat_map(|endpoint| &endpoint.attributes))
            .map(carried_key)
            .collect();
        Inventory {
            namespaces,
            vcns,
            endpoints,
            osn_services,
            endpoint_by_address,
            endpoint_by_name,
            carried,
        }
    }

    pub fn namespaces(&self) -> &[Namespace] {
        &self.namespaces
    }

    pub fn vcns(&self) -> &[Vcn] {
        &self.vcns
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// What `osn-services-ip-addresses` means here.
    pub fn osn_services(&self) -> &[IpPrefix] {
        &self.osn_services
    }

    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoint_by_name.get(name).map(|&i| &self.endpoints[i])
    }

    /// The endpoint that declares `address` (at most one does).
    pub fn endpoint_at(&self, address: IpAddr) -> Option<&Endpoint> {
        self.endpoint_by_address
            .get(&address)
            .map(|&i| &self.endpoints[i])
    }

    pub fn vcn_of(&self, endpoint: &Endpoint) -> &Vcn {
        &self.vcns[endpoint.vcn]
    }

    /// The VCN whose CIDRs hold `address` (VCN CIDRs never overlap).
    pub fn vcn_containing(&self, address: IpAddr) -> Option<&Vcn> {
        self.vcns
            .iter()
            .find(|vcn| vcn.cidrs.iter().any(|cidr| prefix::contains(cidr, address)))
    }

    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces
            .iter()
            .find(|namespace| namespace.name.eq_ignore_ascii_case(name))
    }

    pub fn classify(&self, attribute: &Attribute) -> AttributeStatus {
        let Some(namespace) = self.namespace(attribute.namespace()) else {
            return AttributeStatus::UnknownNamespace;
        };
        let Some(definition) = namespace.definition(&attribute.key) else {
            return AttributeStatus::UnknownKey;
        };
        match &definition.kind {
            AttributeKind::List(values)
                if !values.iter().any(|value| **value == *attribute.value) =>
            {
                AttributeStatus::ValueNotInList
            }
            _ => AttributeStatus::Known,
        }
    }

    /// True when some VCN or endpoint carries the attribute.
    pub fn is_carried(&self, attribute: &Attribute) -> bool {
        self.carried.contains(&carried_key(attribute))
    }
}

impl Namespace {
    pub fn definition(&self, key: &str) -> Option<&AttributeDefinition> {
        self.attributes
            .iter()
            .find(|definition| definition.key.eq_ignore_ascii_case(key))
    }
}

/// Where in the YAML document a problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// One problem in an inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryError {
    /// YAML path such as `endpoints[3].security-attributes[1]`; empty for
    /// the document as a whole.
    pub path: String,
    pub message: String,
    /// Known for problems of YAML syntax and shape.
    pub location: Option<Location>,
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(Location { line, column }) = self.location {
            write!(f, "{line}:{column}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in an inventory, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryErrors(pub Vec<InventoryError>);

impl fmt::Display for InventoryErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InventoryErrors {}

#[cfg(test)]
mod tests;
