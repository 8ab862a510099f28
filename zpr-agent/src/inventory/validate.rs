//! From the YAML shape to a validated [`Inventory`]: every rule of design.md
//! section 2, every problem reported with its YAML path.

use foldhash::HashMap;
use std::net::IpAddr;

use super::prefix;
use super::schema::{RawAttributeKind, RawEndpoint, RawInventory, RawNamespace, RawVcn, Scalar};
use super::{
    AttributeDefinition, AttributeKind, AttributeStatus, Endpoint, Inventory, InventoryError,
    MAX_ENDPOINT_ATTRIBUTES, MAX_INTERFACE_NAME, Namespace, Vcn,
};
use crate::lang::address::{format_prefix, parse_prefix};
use crate::lang::attribute::{NAME_MAX, VALUE_MAX, Written, is_name_char, parse_attribute};
use crate::lang::suggest::closest;
use crate::lang::{Attribute, IpPrefix, Span};

pub(super) fn validate(raw: RawInventory) -> Result<Inventory, Vec<InventoryError>> {
    let mut problems = Problems::default();
    let namespaces = namespaces(&raw.namespaces, &mut problems);
    // Attributes are checked against the namespaces as declared, even the
    // ones with problems, so one typo is reported once.
    let lookup = Inventory::new(namespaces, Vec::new(), Vec::new(), Vec::new());
    let vcns = vcns(&raw.vcns, &lookup, &mut problems);
    let endpoints = endpoints(&raw.endpoints, &vcns, &lookup, &mut problems);
    let osn_services = raw
        .osn_services
        .iter()
        .enumerate()
        .filter_map(|(i, text)| cidr(text, &format!("osn-services[{i}]"), &mut problems))
        .collect();
    if problems.0.is_empty() {
        Ok(Inventory::new(
            lookup.namespaces,
            vcns,
            endpoints,
            osn_services,
        ))
    } else {
        Err(problems.0)
    }
}

#[derive(Default)]
struct Problems(Vec<InventoryError>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(InventoryError {
            path: path.into(),
            message: message.into(),
            location: None,
        });
    }
}

fn namespaces(raw: &[RawNamespace], problems: &mut Problems) -> Vec<Namespace> {
    let mut seen: HashMap<String, usize> = HashMap::default();
    raw.iter()
        .enumerate()
        .map(|(i, namespace)| {
            let path = format!("namespaces[{i}]");
            let name = &namespace.name.0;
            check_name(name, "namespace", &format!("{path}.name"), problems);
            if let Some(first) = seen.insert(name.to_ascii_lowercase(), i) {
                problems.add(
                    format!("{path}.name"),
                    format!("duplicate namespace '{name}' (also namespaces[{first}])"),
                );
            }
            Namespace {
                name: name.clone(),
                attributes: attribute_definitions(namespace, &path, problems),
            }
        })
        .collect()
}

fn attribute_definitions(
    namespace: &RawNamespace,
    path: &str,
    problems: &mut Problems,
) -> Vec<AttributeDefinition> {
    let mut seen: HashMap<String, usize> = HashMap::default();
    let mut definitions = Vec::new();
    for (j, definition) in namespace.attributes.iter().enumerate() {
        let path = format!("{path}.attributes[{j}]");
        let key = &definition.key.0;
        check_name(key, "key", &format!("{path}.key"), problems);
        if let Some(first) = seen.insert(key.to_ascii_lowercase(), j) {
            problems.add(
                format!("{path}.key"),
                format!(
                    "duplicate key '{key}' in namespace '{}' (also attributes[{first}])",
                    namespace.name.0
                ),
            );
        }
        let kind = match (definition.kind, &definition.values) {
            (RawAttributeKind::Freeform, None) => AttributeKind::Freeform,
            (RawAttributeKind::Freeform, Some(_)) => {
                problems.add(
                    format!("{path}.values"),
                    format!("freeform attribute '{key}' takes no values (use type: list)"),
                );
                AttributeKind::Freeform
            }
            (RawAttributeKind::List, None) => {
                problems.add(&path, format!("list attribute '{key}' needs values: [...]"));
                AttributeKind::List(Vec::new())
            }
            (RawAttributeKind::List, Some(values)) => {
                AttributeKind::List(list_values(values, key, &path, problems))
            }
        };
        definitions.push(AttributeDefinition {
            key: key.clone(),
            kind,
        });
    }
    definitions
}

fn list_values(values: &[Scalar], key: &str, path: &str, problems: &mut Problems) -> Vec<String> {
    if values.is_empty() {
        problems.add(
            format!("{path}.values"),
            format!("list attribute '{key}' needs values"),
        );
    }
    let mut seen: HashMap<&str, usize> = HashMap::default();
    for (k, value) in values.iter().enumerate() {
        let path = format!("{path}.values[{k}]");
        let length = value.0.chars().count();
        if !(1..=VALUE_MAX).contains(&length) {
            problems.add(
                &path,
                format!("a value has 1 to {VALUE_MAX} characters, not {length}"),
            );
        }
        if let Some(first) = seen.insert(&value.0, k) {
            problems.add(
                &path,
                format!("duplicate value '{}' (also values[{first}])", value.0),
            );
        }
    }
    values.iter().map(|value| value.0.clone()).collect()
}

fn check_name(name: &str, what: &str, path: &str, problems: &mut Problems) {
    let length = name.chars().count();
    if !(1..=NAME_MAX).contains(&length) || !name.chars().all(is_name_char) {
        problems.add(
            path,
            format!("invalid {what} '{name}': use 1 to {NAME_MAX} letters, digits, '-' and '_'"),
        );
    }
}

fn vcns(raw: &[RawVcn], lookup: &Inventory, problems: &mut Problems) -> Vec<Vcn> {
    let mut seen: HashMap<&str, usize> = HashMap::default();
    let vcns: Vec<Vcn> = raw
        .iter()
        .enumerate()
        .map(|(i, vcn)| {
            let path = format!("vcns[{i}]");
            if vcn.name.0.is_empty() {
                problems.add(format!("{path}.name"), "a VCN needs a name");
            }
            if let Some(first) = seen.insert(&vcn.name.0, i) {
                problems.add(
                    format!("{path}.name"),
                    format!("duplicate VCN name '{}' (also vcns[{first}])", vcn.name.0),
                );
            }
            if vcn.cidrs.is_empty() {
                problems.add(format!("{path}.cidrs"), "a VCN needs at least one CIDR");
            }
            let cidrs = vcn
                .cidrs
                .iter()
                .enumerate()
                .filter_map(|(j, text)| cidr(text, &format!("{path}.cidrs[{j}]"), problems))
                .collect();
            let attribute = vcn.security_attribute.as_ref().and_then(|text| {
                attribute(
                    text,
                    &format!("{path}.security-attribute"),
                    lookup,
                    problems,
                )
            });
            Vcn {
                name: vcn.name.0.clone(),
                cidrs,
                attribute,
            }
        })
        .collect();
    check_cidr_overlaps(&vcns, problems);
    vcns
}

fn check_cidr_overlaps(vcns: &[Vcn], problems: &mut Problems) {
    let all: Vec<(usize, usize, &IpPrefix)> = vcns
        .iter()
        .enumerate()
        .flat_map(|(i, vcn)| vcn.cidrs.iter().enumerate().map(move |(j, c)| (i, j, c)))
        .collect();
    for (later, &(i, j, cidr)) in all.iter().enumerate() {
        if let Some(&(first_vcn, first_cidr, other)) = all[..later]
            .iter()
            .find(|(_, _, other)| prefix::overlaps(cidr, other))
        {
            problems.add(
                format!("vcns[{i}].cidrs[{j}]"),
                format!(
                    "{} overlaps {} of VCN '{}' (vcns[{first_vcn}].cidrs[{first_cidr}])",
                    format_prefix(cidr),
                    format_prefix(other),
                    vcns[first_vcn].name
                ),
            );
        }
    }
}

/// A CIDR as the inventory demands it: host bits clear.
fn cidr(text: &Scalar, path: &str, problems: &mut Problems) -> Option<IpPrefix> {
    match parse_prefix(&text.0, Span::default()) {
        Ok(parsed) if parsed.warning.is_none() => Some(parsed.prefix),
        Ok(parsed) => {
            problems.add(
                path,
                format!(
                    "host bits are set in '{}' (write {})",
                    text.0,
                    format_prefix(&parsed.prefix)
                ),
            );
            None
        }
        Err(diagnostic) => {
            problems.add(path, diagnostic.message);
            None
        }
    }
}

fn attribute(
    text: &Scalar,
    path: &str,
    lookup: &Inventory,
    problems: &mut Problems,
) -> Option<Attribute> {
    let attribute = match parse_attribute(&text.0, Written::Quoted, Span::default()) {
        Ok(attribute) => attribute,
        Err(diagnostic) => {
            problems.add(path, diagnostic.message);
            return None;
        }
    };
    match lookup.classify(&attribute) {
        AttributeStatus::Known => return Some(attribute),
        AttributeStatus::UnknownNamespace => {
            let known: Vec<&str> = lookup
                .namespaces()
                .iter()
                .map(|n| n.name.as_str())
                .collect();
            problems.add(
                path,
                unknown("namespace", attribute.namespace(), "", &known),
            );
        }
        AttributeStatus::UnknownKey => {
            let namespace = lookup.namespace(attribute.namespace());
            let known: Vec<&str> = namespace
                .map(|n| n.attributes.iter().map(|d| d.key.as_str()).collect())
                .unwrap_or_default();
            let context = format!(" in namespace '{}'", attribute.namespace());
            problems.add(path, unknown("key", &attribute.key, &context, &known));
        }
        AttributeStatus::ValueNotInList => {
            let allowed = lookup
                .namespace(attribute.namespace())
                .and_then(|n| n.definition(&attribute.key))
                .map(|d| match &d.kind {
                    AttributeKind::List(values) => values.clone(),
                    AttributeKind::Freeform => Vec::new(),
                })
                .unwrap_or_default();
            let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
            let message = format!(
                "value '{}' is not in the list of '{}.{}' (allowed: {})",
                attribute.value,
                attribute.namespace(),
                attribute.key,
                sorted(&allowed)
            );
            problems.add(path, suggest(message, &attribute.value, &allowed));
        }
    }
    None
}

/// `unknown key 'ap' in namespace 'ns' (known: apps, db)`, with a
/// did-you-mean when one name is close.
fn unknown(what: &str, name: &str, context: &str, known: &[&str]) -> String {
    let message = format!(
        "unknown {what} '{name}'{context} (known: {})",
        sorted(known)
    );
    suggest(message, name, known)
}

fn sorted(names: &[&str]) -> String {
    let mut names = names.to_vec();
    names.sort_unstable_by_key(|name| name.to_ascii_lowercase());
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn suggest(mut message: String, name: &str, known: &[&str]) -> String {
    if let Some(suggestion) = closest(name, known.iter().copied()) {
        message.push_str(&format!("; did you mean '{suggestion}'?"));
    }
    message
}

fn endpoints(
    raw: &[RawEndpoint],
    vcns: &[Vcn],
    lookup: &Inventory,
    problems: &mut Problems,
) -> Vec<Endpoint> {
    let mut names: HashMap<&str, usize> = HashMap::default();
    let mut interfaces: HashMap<(&str, &str), usize> = HashMap::default();
    let mut owners: HashMap<IpAddr, (&str, String)> = HashMap::default();
    let mut endpoints = Vec::new();
    for (i, endpoint) in raw.iter().enumerate() {
        let path = format!("endpoints[{i}]");
        let name = &endpoint.name.0;
        if name.is_empty() {
            problems.add(format!("{path}.name"), "an endpoint needs a name");
        }
        if let Some(first) = names.insert(name, i) {
            problems.add(
                format!("{path}.name"),
                format!("duplicate endpoint name '{name}' (also endpoints[{first}])"),
            );
        }
        let vcn = vcns.iter().position(|vcn| vcn.name == endpoint.vcn.0);
        if vcn.is_none() {
            let known: Vec<&str> = vcns.iter().map(|vcn| vcn.name.as_str()).collect();
            problems.add(
                format!("{path}.vcn"),
                unknown("VCN", &endpoint.vcn.0, "", &known),
            );
        }
        if endpoint.addresses.is_empty() {
            problems.add(
                format!("{path}.addresses"),
                "an endpoint needs at least one address",
            );
        }
        let mut addresses = Vec::new();
        for (j, text) in endpoint.addresses.iter().enumerate() {
            let path = format!("{path}.addresses[{j}]");
            let Ok(address) = text.0.parse::<IpAddr>() else {
                problems.add(&path, format!("'{}' is not an IP address", text.0));
                continue;
            };
            match owners.get(&address) {
                Some((owner, first)) => problems.add(
                    &path,
                    format!("address {address} is also declared by endpoint '{owner}' ({first})"),
                ),
                None => {
                    owners.insert(address, (name, path.clone()));
                }
            }
            if let Some(vcn) = vcn.map(|v| &vcns[v])
                && !vcn.cidrs.iter().any(|cidr| prefix::contains(cidr, address))
            {
                let cidrs: Vec<String> = vcn.cidrs.iter().map(format_prefix).collect();
                problems.add(
                    &path,
                    format!(
                        "address {address} is outside VCN '{}' ({})",
                        vcn.name,
                        cidrs.join(", ")
                    ),
                );
            }
            addresses.push(address);
        }
        if let Some(interface) = &endpoint.interface {
            check_interface(&interface.0, &format!("{path}.interface"), problems);
            // Interface names repeat across a fleet's hosts (every
            // hypervisor has a vnet0), never on one host.
            let node = endpoint.node.as_ref().map_or("", |node| node.0.as_str());
            if let Some(first) = interfaces.insert((node, &interface.0), i) {
                problems.add(
                    format!("{path}.interface"),
                    format!(
                        "interface '{}' is also used by endpoints[{first}]{}",
                        interface.0,
                        if node.is_empty() {
                            String::new()
                        } else {
                            format!(" on node '{node}'")
                        }
                    ),
                );
            }
        }
        if let Some(mac) = &endpoint.mac
            && !is_mac(&mac.0)
        {
            problems.add(
                format!("{path}.mac"),
                format!(
                    "'{}' is not a MAC address: write six hex pairs with colons, such as \
                     52:54:00:12:34:56",
                    mac.0
                ),
            );
        }
        let attributes = endpoint_attributes(endpoint, &path, lookup, problems);
        endpoints.push(Endpoint {
            name: name.clone(),
            vcn: vcn.unwrap_or_default(),
            addresses,
            interface: endpoint.interface.as_ref().map(|i| i.0.clone()),
            node: endpoint.node.as_ref().map(|n| n.0.clone()),
            attributes,
            mode: endpoint.mode,
        });
    }
    endpoints
}

fn endpoint_attributes(
    endpoint: &RawEndpoint,
    path: &str,
    lookup: &Inventory,
    problems: &mut Problems,
) -> Vec<Attribute> {
    let path = format!("{path}.security-attributes");
    let count = endpoint.security_attributes.len();
    if count > MAX_ENDPOINT_ATTRIBUTES {
        problems.add(
            &path,
            format!(
                "{count} security attributes; an endpoint carries at most {MAX_ENDPOINT_ATTRIBUTES}"
            ),
        );
    }
    let mut attributes: Vec<Attribute> = Vec::new();
    for (j, text) in endpoint.security_attributes.iter().enumerate() {
        let path = format!("{path}[{j}]");
        let Some(attribute) = attribute(text, &path, lookup, problems) else {
            continue;
        };
        if attributes.iter().any(|other| other.same_as(&attribute)) {
            problems.add(&path, format!("duplicate security attribute '{}'", text.0));
            continue;
        }
        attributes.push(attribute);
    }
    attributes
}

fn is_mac(text: &str) -> bool {
    let pairs: Vec<&str> = text.split(':').collect();
    pairs.len() == 6
        && pairs
            .iter()
            .all(|pair| pair.len() == 2 && pair.chars().all(|c| c.is_ascii_hexdigit()))
}

fn check_interface(name: &str, path: &str, problems: &mut Problems) {
    let fine = |c: char| c.is_ascii_graphic() && c != '/' && c != ':';
    if name.is_empty()
        || name.len() > MAX_INTERFACE_NAME
        || !name.chars().all(fine)
        || name == "."
        || name == ".."
    {
        problems.add(
            path,
            format!(
                "invalid interface name '{name}': 1 to {MAX_INTERFACE_NAME} visible characters, \
                 no '/' or ':'"
            ),
        );
    }
}
