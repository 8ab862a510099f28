//! Seeding an empty tenancy from an inventory file: its namespaces and
//! attributes, VCNs, endpoints and the attributes applied to them. The file
//! is validated as `zpr check` would first; then its text is copied as
//! written, so the tenancy's inventory document reads back the same.

use std::sync::Arc;

use anyhow::bail;
use serde_yaml::Value;

use super::{StoredEndpoint, Tenancy, Validator, Vcn};
use crate::inventory::Inventory;

/// `text` is the inventory file's content; `origin` names it in errors.
pub fn import(tenancy: &mut Tenancy, origin: &str, text: &str) -> anyhow::Result<()> {
    if let Err(errors) = Inventory::from_yaml_str(text) {
        bail!("{origin}: {errors}");
    }
    let document: Value = serde_yaml::from_str(text)?;
    for namespace in list(&document, "namespaces") {
        let name = scalar(&namespace["name"]);
        tenancy.create_namespace(&name, "")?;
        for attribute in list(namespace, "attributes") {
            let validator = (scalar(&attribute["type"]) == "list")
                .then(|| Validator::values(list(attribute, "values").map(scalar).collect()));
            tenancy.create_attribute(&name, &scalar(&attribute["key"]), "", validator.as_ref())?;
        }
    }
    let (vcns, endpoints) = vcns_and_endpoints(&document);
    for vcn in vcns {
        tenancy.vcns.insert(vcn.name.clone(), vcn);
    }
    for endpoint in endpoints {
        tenancy
            .endpoints
            .insert(endpoint.name.clone(), Arc::new(endpoint));
    }
    tenancy.osn_services = list(&document, "osn-services").map(scalar).collect();
    // Written last (see `Store::seed`): present, it says the seed is whole.
    tenancy.next_id = tenancy.next_id.max(1);
    // The import must read back as the inventory it came from.
    let round_trip = serde_json::to_string(&tenancy.inventory_document(None))?;
    if let Err(errors) = Inventory::from_yaml_str(&round_trip) {
        bail!("the imported inventory does not read back: {errors}");
    }
    Ok(())
}

/// The VCNs and endpoints an inventory document (checked already) lists.
pub(super) fn vcns_and_endpoints(document: &Value) -> (Vec<Vcn>, Vec<StoredEndpoint>) {
    let vcns = list(document, "vcns")
        .map(|vcn| Vcn {
            name: scalar(&vcn["name"]),
            cidrs: list(vcn, "cidrs").map(scalar).collect(),
            security_attribute: vcn.get("security-attribute").map(scalar),
        })
        .collect();
    let endpoints = list(document, "endpoints")
        .map(|endpoint| StoredEndpoint {
            name: scalar(&endpoint["name"]),
            vcn: scalar(&endpoint["vcn"]),
            addresses: list(endpoint, "addresses").map(scalar).collect(),
            interface: endpoint.get("interface").map(scalar),
            node: endpoint.get("node").map(scalar),
            mac: endpoint.get("mac").map(scalar),
            mode: endpoint
                .get("mode")
                .map_or_else(|| "enforce".to_owned(), scalar),
            security_attributes: list(endpoint, "security-attributes").map(scalar).collect(),
        })
        .collect();
    (vcns, endpoints)
}

fn list<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    value
        .get(key)
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
}

/// A YAML scalar as text (`values: [1, 2]` needs no quotes in inventories).
fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        _ => String::new(),
    }
}
