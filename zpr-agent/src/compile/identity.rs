//! Identities: addresses grouped so that two share a UID exactly when every
//! selector of the policy set matches both or neither.
//!
//! Only a few kinds of points can differ: each endpoint address (attribute
//! selectors see endpoints only) and, for every prefix some selector names,
//! the addresses inside it but outside any more specific such prefix. Those
//! prefixes nest, so one sorted walk with a stack gives every point the
//! selectors that contain it. The same walk then writes the LPM entries,
//! leaving out any that would resolve to what its enclosing entry already
//! gives.

use foldhash::HashMap;
use std::collections::BTreeMap;
use std::net::IpAddr;

use super::plan::{EndpointAddress, HostEntry, Identity, IdentityMember, PrefixEntry, Uid};
use super::selectors::{AttributeId, Resolved, Selector, SelectorId};
use crate::inventory::Inventory;
use crate::inventory::prefix::{self, Family};
use crate::lang::IpPrefix;

/// Which families a UID holds addresses of (bit 0: IPv4, bit 1: IPv6).
pub type FamilyMask = u8;

pub fn family_bit(family: Family) -> FamilyMask {
    match family {
        Family::V4 => 1,
        Family::V6 => 2,
    }
}

/// What the policy entries need of the identities.
#[derive(Debug, Clone)]
pub struct UidSets {
    /// Indexed by UID; entry 0 (the "any remote" wildcard) is unused.
    pub families: Vec<FamilyMask>,
    /// For each selector, the UIDs it matches, ascending.
    pub selector_uids: Vec<Vec<Uid>>,
}

pub struct Identities {
    pub sets: UidSets,
    pub identities: Vec<Identity>,
    pub hosts: Vec<HostEntry>,
    pub prefixes: Vec<PrefixEntry>,
    /// For each inventory endpoint, its addresses with their UIDs.
    pub endpoint_addresses: Vec<Vec<EndpointAddress>>,
}

/// A prefix that can change which selectors match: a root, a selector's
/// prefix, an OSN prefix, or an endpoint address.
struct Node {
    family: Family,
    bits: u128,
    len: u8,
    /// Prefix and OSN selectors that contain exactly this prefix.
    selectors: Vec<SelectorId>,
    endpoint: Option<usize>,
}

impl Node {
    fn contains(&self, other: &Node) -> bool {
        self.family == other.family
            && other.len >= self.len
            && (other.bits & prefix::mask(self.len)) == self.bits
    }

    fn prefix(&self) -> IpPrefix {
        IpPrefix {
            addr: prefix::address(self.family, self.bits),
            len: self.len,
        }
    }

    /// Addresses in the prefix; `None` for the IPv6 root, which never needs it.
    fn size(&self) -> Option<u128> {
        1u128.checked_shl(u32::from(self.family.width() - self.len))
    }
}

pub fn build(inventory: &Inventory, resolved: &Resolved) -> Identities {
    let selectors = &resolved.selectors;
    let nodes = nodes(inventory, selectors);
    let attribute_selectors = attribute_selectors(inventory, resolved);
    let parents = parents(&nodes);

    // The selectors containing each node, and whether anything is left of
    // a node once its children are taken out.
    let mut contained_in: Vec<Vec<SelectorId>> = Vec::with_capacity(nodes.len());
    let mut covered = vec![0u128; nodes.len()];
    for (index, node) in nodes.iter().enumerate() {
        let mut selectors = match parents[index] {
            Some(parent) => contained_in[parent].clone(),
            None => Vec::new(),
        };
        merge_into(&mut selectors, &node.selectors);
        contained_in.push(selectors);
        if let (Some(parent), Some(size)) = (parents[index], node.size()) {
            covered[parent] = covered[parent].saturating_add(size);
        }
    }
    let signature = |index: usize| -> Option<Vec<SelectorId>> {
        let node = &nodes[index];
        match node.endpoint {
            Some(endpoint) => {
                let mut signature = contained_in[index].clone();
                merge_into(&mut signature, &attribute_selectors[endpoint]);
                Some(signature)
            }
            None if parents[index].is_none()
                || node.size().is_some_and(|size| size > covered[index]) =>
            {
                Some(contained_in[index].clone())
            }
            // Every address of the prefix lies in a more specific node.
            None => None,
        }
    };
    let signatures: Vec<Option<Vec<SelectorId>>> = (0..nodes.len()).map(signature).collect();

    // UIDs in signature order: deterministic, and 1 is "no selector" when
    // such addresses exist.
    let mut uid_of: BTreeMap<&[SelectorId], Uid> = signatures
        .iter()
        .flatten()
        .map(|signature| (signature.as_slice(), 0))
        .collect();
    for (index, uid) in uid_of.values_mut().enumerate() {
        *uid = index as Uid + 1;
    }
    let uid_count = uid_of.len();
    let mut selector_uids = vec![Vec::new(); selectors.len()];
    for (signature, &uid) in &uid_of {
        for &selector in signature.iter() {
            selector_uids[selector as usize].push(uid);
        }
    }

    let mut families = vec![0; uid_count + 1];
    let mut hosts = Vec::new();
    let mut prefixes = Vec::new();
    let mut endpoint_addresses = vec![Vec::new(); inventory.endpoints().len()];
    // The UID the kernel's lookup resolves each node's region to.
    let mut resolves_to: Vec<Uid> = vec![0; nodes.len()];
    for (index, node) in nodes.iter().enumerate() {
        let inherited = parents[index].map(|parent| resolves_to[parent]);
        let Some(signature) = &signatures[index] else {
            resolves_to[index] = inherited.unwrap_or(0);
            continue;
        };
        let uid = uid_of[signature.as_slice()];
        families[uid as usize] |= family_bit(node.family);
        resolves_to[index] = uid;
        match node.endpoint {
            Some(endpoint) => {
                let address = prefix::address(node.family, node.bits);
                hosts.push(HostEntry {
                    address,
                    uid,
                    endpoint: inventory.endpoints()[endpoint].name.clone(),
                });
                endpoint_addresses[endpoint].push(EndpointAddress { address, uid });
            }
            None if inherited != Some(uid) => prefixes.push(PrefixEntry {
                prefix: node.prefix(),
                uid,
            }),
            None => {}
        }
    }
    for (addresses, endpoint) in endpoint_addresses.iter_mut().zip(inventory.endpoints()) {
        // Keep the inventory's order of an endpoint's addresses.
        addresses.sort_by_key(|a| endpoint.addresses.iter().position(|&own| own == a.address));
    }
    let identities = describe(uid_count, &uid_of, resolved, &hosts, &prefixes);
    Identities {
        sets: UidSets {
            families,
            selector_uids,
        },
        identities,
        hosts,
        prefixes,
        endpoint_addresses,
    }
}

/// Every node, sorted by family, address and length, so a prefix comes
/// before everything it contains.
fn nodes(inventory: &Inventory, selectors: &[Selector]) -> Vec<Node> {
    let mut nodes: BTreeMap<(Family, u128, u8), Node> = BTreeMap::new();
    fn node<'m>(
        nodes: &'m mut BTreeMap<(Family, u128, u8), Node>,
        prefix: &IpPrefix,
    ) -> &'m mut Node {
        let family = Family::of(prefix.addr);
        let bits = prefix::bits(prefix.addr);
        nodes
            .entry((family, bits, prefix.len))
            .or_insert_with(|| Node {
                family,
                bits,
                len: prefix.len,
                selectors: Vec::new(),
                endpoint: None,
            })
    }
    for root in [IpAddr::from([0u8; 4]), IpAddr::from([0u16; 8])] {
        node(&mut nodes, &IpPrefix { addr: root, len: 0 });
    }
    for (id, selector) in selectors.iter().enumerate() {
        match selector {
            Selector::Prefix(prefix) => node(&mut nodes, prefix).selectors.push(id as SelectorId),
            Selector::OsnServices => {
                for prefix in inventory.osn_services() {
                    node(&mut nodes, prefix).selectors.push(id as SelectorId);
                }
            }
            Selector::Attribute { .. } => {}
        }
    }
    for (index, endpoint) in inventory.endpoints().iter().enumerate() {
        for &address in &endpoint.addresses {
            node(&mut nodes, &prefix::host(address)).endpoint = Some(index);
        }
    }
    nodes.into_values().collect()
}

/// The innermost node containing each node (`None` for the two roots).
fn parents(nodes: &[Node]) -> Vec<Option<usize>> {
    let mut stack: Vec<usize> = Vec::new();
    nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            while let Some(&top) = stack.last() {
                if nodes[top].contains(node) {
                    break;
                }
                stack.pop();
            }
            let parent = stack.last().copied();
            stack.push(index);
            parent
        })
        .collect()
}

/// For each endpoint, the attribute selectors that match it, ascending.
fn attribute_selectors(inventory: &Inventory, resolved: &Resolved) -> Vec<Vec<SelectorId>> {
    let mut by_attribute_and_location: HashMap<(AttributeId, AttributeId), Vec<usize>> =
        HashMap::default();
    for (index, endpoint) in inventory.endpoints().iter().enumerate() {
        let vcn_attribute = inventory.vcn_of(endpoint).attribute.as_ref();
        let Some(location) = vcn_attribute.and_then(|a| resolved.attribute_id(a)) else {
            continue;
        };
        for attribute in &endpoint.attributes {
            if let Some(attribute) = resolved.attribute_id(attribute) {
                by_attribute_and_location
                    .entry((attribute, location))
                    .or_default()
                    .push(index);
            }
        }
    }
    let mut matched = vec![Vec::new(); inventory.endpoints().len()];
    for (id, selector) in resolved.selectors.iter().enumerate() {
        let &Selector::Attribute {
            attribute,
            location,
        } = selector
        else {
            continue;
        };
        for &endpoint in by_attribute_and_location
            .get(&(attribute, location))
            .into_iter()
            .flatten()
        {
            matched[endpoint].push(id as SelectorId);
        }
    }
    matched
}

/// Sorted union, in place.
fn merge_into(target: &mut Vec<SelectorId>, extra: &[SelectorId]) {
    if extra.is_empty() {
        return;
    }
    target.extend_from_slice(extra);
    target.sort_unstable();
    target.dedup();
}

fn describe(
    uid_count: usize,
    uid_of: &BTreeMap<&[SelectorId], Uid>,
    resolved: &Resolved,
    hosts: &[HostEntry],
    prefixes: &[PrefixEntry],
) -> Vec<Identity> {
    let mut identities: Vec<Identity> = (1..=uid_count)
        .map(|uid| Identity {
            uid: uid as Uid,
            members: Vec::new(),
            prefixes: Vec::new(),
            selectors: Vec::new(),
        })
        .collect();
    for (signature, &uid) in uid_of {
        identities[uid as usize - 1].selectors =
            signature.iter().map(|&s| resolved.describe(s)).collect();
    }
    for host in hosts {
        identities[host.uid as usize - 1]
            .members
            .push(IdentityMember {
                endpoint: host.endpoint.clone(),
                address: host.address,
            });
    }
    for entry in prefixes {
        identities[entry.uid as usize - 1]
            .prefixes
            .push(entry.prefix);
    }
    identities
}
