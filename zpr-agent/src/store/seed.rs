//! Seeding an empty store from an inventory file: its namespaces and
//! attributes, VCNs, endpoints and the attributes applied to them. The file
//! is validated as `zpr check` would first; then its text is copied as
//! written, so the store's inventory document reads back the same.

use std::path::Path;

use anyhow::bail;
use rusqlite::{Connection, params};
use serde_yaml::Value;

use super::{
    Validator, create_attribute, create_namespace, inventory_document, parse_attribute_text,
    set_meta,
};
use crate::inputs::text::read_text;
use crate::inventory::Inventory;

pub(super) fn import(connection: &Connection, path: &Path) -> anyhow::Result<()> {
    let text = read_text(path, "inventory")?;
    if let Err(errors) = Inventory::from_yaml_str(&text) {
        bail!("{}: {errors}", path.display());
    }
    let document: Value = serde_yaml::from_str(&text)?;
    for namespace in list(&document, "namespaces") {
        let name = scalar(&namespace["name"]);
        create_namespace(connection, &name, "")?;
        for attribute in list(namespace, "attributes") {
            let validator = (scalar(&attribute["type"]) == "list")
                .then(|| Validator::values(list(attribute, "values").map(scalar).collect()));
            create_attribute(
                connection,
                &name,
                &scalar(&attribute["key"]),
                "",
                validator.as_ref(),
            )?;
        }
    }
    for vcn in list(&document, "vcns") {
        let cidrs: Vec<String> = list(vcn, "cidrs").map(scalar).collect();
        connection.execute(
            "INSERT INTO vcn (name, cidrs, security_attribute) VALUES (?1, ?2, ?3)",
            params![
                scalar(&vcn["name"]),
                serde_json::to_string(&cidrs)?,
                vcn.get("security-attribute").map(scalar)
            ],
        )?;
    }
    for endpoint in list(&document, "endpoints") {
        let name = scalar(&endpoint["name"]);
        let addresses: Vec<String> = list(endpoint, "addresses").map(scalar).collect();
        connection.execute(
            "INSERT INTO endpoint (name, vcn, addresses, interface, mode) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                name,
                scalar(&endpoint["vcn"]),
                serde_json::to_string(&addresses)?,
                endpoint.get("interface").map(scalar),
                endpoint.get("mode").map_or_else(|| "enforce".to_owned(), scalar)
            ],
        )?;
        for attribute in list(endpoint, "security-attributes").map(scalar) {
            let namespace = parse_attribute_text(&attribute)?.namespace().to_owned();
            connection.execute(
                "INSERT INTO endpoint_attribute (endpoint, attribute, namespace) VALUES (?1, ?2, ?3)",
                params![name, attribute, namespace],
            )?;
        }
    }
    let osn_services: Vec<String> = list(&document, "osn-services").map(scalar).collect();
    set_meta(
        connection,
        "osn-services",
        &serde_json::to_string(&osn_services)?,
    )?;
    // The import must read back as the inventory it came from.
    let round_trip = serde_json::to_string(&inventory_document(connection)?)?;
    if let Err(errors) = Inventory::from_yaml_str(&round_trip) {
        bail!("the imported inventory does not read back: {errors}");
    }
    Ok(())
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
