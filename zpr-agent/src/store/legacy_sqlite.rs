//! Stores written by zpr before the tenancy became keyed records kept one
//! table per resource. Opening one converts it, in one transaction, so an
//! upgrade keeps every policy, attribute, endpoint and work request.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension as _, Row};

use super::{
    Configuration, SecurityAttributeNamespace, StoredAttribute, StoredEndpoint, Tenancy, Validator,
    Vcn, WorkRequest, ZprPolicy, records, sqlite::put_records,
};

const OLD_TABLES: [&str; 8] = [
    "endpoint_attribute",
    "attribute",
    "endpoint",
    "vcn",
    "namespace",
    "policy",
    "work_request",
    "meta",
];

pub(super) fn convert(connection: &mut Connection) -> anyhow::Result<()> {
    let has_old_layout: Option<String> = connection
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'policy'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if has_old_layout.is_none() {
        return Ok(());
    }
    let transaction = connection.transaction()?;
    let tenancy = read_tenancy(&transaction)?;
    let mut writes = records::writes(&Tenancy::default(), &tenancy)?;
    for request in read_work_requests(&transaction)? {
        writes = writes.with_work_request(&request)?;
    }
    put_records(&transaction, &writes)?;
    transaction.execute("UPDATE revision SET revision = revision + 1", [])?;
    for table in OLD_TABLES {
        transaction.execute(&format!("DROP TABLE IF EXISTS {table}"), [])?;
    }
    transaction.commit()?;
    tracing::info!("converted the store to keyed records");
    Ok(())
}

fn meta(connection: &Connection, key: &str) -> anyhow::Result<Option<String>> {
    Ok(connection
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
            row.get(0)
        })
        .optional()?)
}

fn json_list(text: String) -> Vec<String> {
    serde_json::from_str(&text).unwrap_or_default()
}

fn rows<T>(
    connection: &Connection,
    sql: &str,
    read: impl Fn(&Row) -> rusqlite::Result<T>,
) -> anyhow::Result<Vec<T>> {
    let mut query = connection.prepare(sql)?;
    let rows = query.query_map([], |row| read(row))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn read_tenancy(connection: &Connection) -> anyhow::Result<Tenancy> {
    let mut tenancy = Tenancy {
        configuration: Configuration {
            zpr_status: meta(connection, "zpr-status")?.unwrap_or_else(|| "ENABLED".to_owned()),
            ..Configuration::default()
        },
        osn_services: meta(connection, "osn-services")?
            .map(json_list)
            .unwrap_or_default(),
        next_id: meta(connection, "next-id")?
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
        ..Tenancy::default()
    };
    for policy in rows(connection, "SELECT * FROM policy", |row| {
        Ok(ZprPolicy {
            id: row.get("id")?,
            name: row.get("name")?,
            description: row.get("description")?,
            statements: json_list(row.get("statements")?),
            lifecycle_state: "ACTIVE".to_owned(),
            time_created: row.get("time_created")?,
            time_updated: row.get("time_updated")?,
        })
    })? {
        tenancy.policies.insert(policy.id.clone(), Arc::new(policy));
    }
    for namespace in rows(connection, "SELECT * FROM namespace", |row| {
        let is_retired: bool = row.get("is_retired")?;
        Ok(SecurityAttributeNamespace {
            id: row.get("id")?,
            name: row.get("name")?,
            description: row.get("description")?,
            is_retired,
            lifecycle_state: if is_retired { "INACTIVE" } else { "ACTIVE" }.to_owned(),
            time_created: row.get("time_created")?,
        })
    })? {
        tenancy.namespaces.insert(namespace.id.clone(), namespace);
    }
    for attribute in rows(connection, "SELECT * FROM attribute", |row| {
        let allowed: Option<String> = row.get("allowed_values")?;
        Ok(StoredAttribute {
            id: row.get("id")?,
            namespace_id: row.get("namespace_id")?,
            name: row.get("name")?,
            description: row.get("description")?,
            validator: allowed.map(|values| Validator::values(json_list(values))),
            time_created: row.get("time_created")?,
        })
    })? {
        tenancy.attributes.insert(attribute.id.clone(), attribute);
    }
    for vcn in rows(connection, "SELECT * FROM vcn", |row| {
        Ok(Vcn {
            name: row.get("name")?,
            cidrs: json_list(row.get("cidrs")?),
            security_attribute: row.get("security_attribute")?,
        })
    })? {
        tenancy.vcns.insert(vcn.name.clone(), vcn);
    }
    for endpoint in rows(connection, "SELECT * FROM endpoint", |row| {
        Ok(StoredEndpoint {
            name: row.get("name")?,
            vcn: row.get("vcn")?,
            addresses: json_list(row.get("addresses")?),
            interface: row.get("interface")?,
            node: None,
            mac: None,
            mode: row.get("mode")?,
            security_attributes: Vec::new(),
        })
    })? {
        tenancy
            .endpoints
            .insert(endpoint.name.clone(), Arc::new(endpoint));
    }
    let applied = rows(
        connection,
        "SELECT endpoint, attribute FROM endpoint_attribute ORDER BY rowid",
        |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
    )?;
    for (endpoint, attribute) in applied {
        if let Some(endpoint) = tenancy.endpoints.get_mut(&endpoint) {
            Arc::make_mut(endpoint).security_attributes.push(attribute);
        }
    }
    Ok(tenancy)
}

fn read_work_requests(connection: &Connection) -> anyhow::Result<Vec<WorkRequest>> {
    rows(connection, "SELECT * FROM work_request", |row| {
        Ok(WorkRequest {
            id: row.get("id")?,
            operation_type: row.get("operation")?,
            status: row.get("status")?,
            resource_type: row.get("resource_type")?,
            namespace: row.get("namespace")?,
            resource: row.get("resource")?,
            principal: row.get("principal")?,
            revision: None,
            generation: row.get("generation")?,
            percent_complete: 100.0,
            errors: serde_json::from_str(&row.get::<_, String>("errors")?).unwrap_or_default(),
            logs: serde_json::from_str(&row.get::<_, String>("logs")?).unwrap_or_default(),
            time_accepted: row.get("time_accepted")?,
            time_finished: row.get("time_finished")?,
        })
    })
}
