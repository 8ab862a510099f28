//! The store's resources in their OCI shapes (camelCase JSON) and the
//! queries that read and change them. Functions take a [`Connection`] so
//! they work inside a transaction too. Requests that cannot be carried out
//! fail with a [`Refusal`], which the API turns into a 4xx answer.

use rusqlite::{Connection, OptionalExtension as _, Row, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{meta, new_id, set_meta};
use crate::{
    daemon::unix_now,
    lang::{
        Attribute, Span,
        attribute::{Written, parse_attribute},
    },
};

/// Why a request cannot be carried out (as opposed to a failure of the store).
#[derive(Debug)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    NotFound,
    Conflict,
    Invalid,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

pub fn refuse<T>(kind: RefusalKind, message: impl Into<String>) -> anyhow::Result<T> {
    Err(Refusal {
        kind,
        message: message.into(),
    }
    .into())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZprPolicy {
    pub id: String,
    pub name: String,
    pub description: String,
    /// One ZPR statement each; statement `n` (1-based) has id `name:n`.
    pub statements: Vec<String>,
    pub lifecycle_state: String,
    pub time_created: u64,
    pub time_updated: u64,
}

impl ZprPolicy {
    /// The policy as the checker reads it: one statement per line, so
    /// `name:line` is the statement's number.
    pub fn source(&self) -> String {
        self.statements.join("\n")
    }

    fn from_row(row: &Row) -> rusqlite::Result<ZprPolicy> {
        let statements: String = row.get("statements")?;
        Ok(ZprPolicy {
            id: row.get("id")?,
            name: row.get("name")?,
            description: row.get("description")?,
            statements: serde_json::from_str(&statements).unwrap_or_default(),
            lifecycle_state: "ACTIVE".to_owned(),
            time_created: row.get("time_created")?,
            time_updated: row.get("time_updated")?,
        })
    }
}

pub fn list_policies(connection: &Connection) -> anyhow::Result<Vec<ZprPolicy>> {
    let mut query = connection.prepare("SELECT * FROM policy ORDER BY name")?;
    let policies = query
        .query_map([], ZprPolicy::from_row)?
        .collect::<Result<_, _>>()?;
    Ok(policies)
}

/// By id or by name.
pub fn get_policy(connection: &Connection, id: &str) -> anyhow::Result<ZprPolicy> {
    let policy = connection
        .query_row(
            "SELECT * FROM policy WHERE id = ?1 OR name = ?1",
            [id],
            ZprPolicy::from_row,
        )
        .optional()?;
    match policy {
        Some(policy) => Ok(policy),
        None => refuse(RefusalKind::NotFound, format!("no zpr-policy '{id}'")),
    }
}

pub fn create_policy(
    connection: &Connection,
    name: &str,
    description: &str,
    statements: &[String],
) -> anyhow::Result<ZprPolicy> {
    check_policy_name(name)?;
    check_statements(statements)?;
    if get_policy(connection, name).is_ok() {
        return refuse(
            RefusalKind::Conflict,
            format!("a zpr-policy named '{name}' exists; update it or choose another name"),
        );
    }
    let id = new_id(connection, "zprpolicy")?;
    let now = unix_now();
    connection.execute(
        "INSERT INTO policy (id, name, description, statements, time_created, time_updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![
            id,
            name,
            description,
            serde_json::to_string(statements)?,
            now
        ],
    )?;
    get_policy(connection, &id)
}

/// Policy names become statement ids (`name:line`) and file names in
/// diagnostics: the characters of a file name, no separators.
fn check_policy_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid {
        return refuse(
            RefusalKind::Invalid,
            format!(
                "'{name}' is not a valid policy name: use 1-255 of A-Z a-z 0-9 - _ . \
                 (it names the policy's statements, e.g. '{name}:1')"
            ),
        );
    }
    Ok(())
}

/// One API statement is exactly one statement: a line break would make
/// two enforced statements under one id, and an empty one is a mistake.
/// (The checker then checks each as the files' statements are checked.)
fn check_statements(statements: &[String]) -> anyhow::Result<()> {
    for (index, statement) in statements.iter().enumerate() {
        let number = index + 1;
        if statement.contains(['\n', '\r']) {
            return refuse(
                RefusalKind::Invalid,
                format!(
                    "statement {number} contains a line break: each statement must be one \
                     line; send each statement as its own item of `statements`"
                ),
            );
        }
        if statement.trim().is_empty() {
            return refuse(
                RefusalKind::Invalid,
                format!("statement {number} is empty: remove it, or write the statement"),
            );
        }
    }
    Ok(())
}

pub fn update_policy(
    connection: &Connection,
    id: &str,
    description: Option<&str>,
    statements: Option<&[String]>,
) -> anyhow::Result<ZprPolicy> {
    let mut policy = get_policy(connection, id)?;
    if let Some(description) = description {
        policy.description = description.to_owned();
    }
    if let Some(statements) = statements {
        check_statements(statements)?;
        policy.statements = statements.to_vec();
    }
    connection.execute(
        "UPDATE policy SET description = ?2, statements = ?3, time_updated = ?4 WHERE id = ?1",
        params![
            policy.id,
            policy.description,
            serde_json::to_string(&policy.statements)?,
            unix_now()
        ],
    )?;
    get_policy(connection, &policy.id)
}

pub fn delete_policy(connection: &Connection, id: &str) -> anyhow::Result<ZprPolicy> {
    let policy = get_policy(connection, id)?;
    connection.execute("DELETE FROM policy WHERE id = ?1", [&policy.id])?;
    Ok(policy)
}

/// OCI's Configuration: whether ZPR enforces (else every endpoint is in
/// audit mode: decisions are reported, nothing is dropped).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    /// `ENABLED` or `DISABLED`.
    pub zpr_status: String,
    pub lifecycle_state: String,
}

pub fn get_configuration(connection: &Connection) -> anyhow::Result<Configuration> {
    Ok(Configuration {
        zpr_status: meta(connection, "zpr-status")?.unwrap_or_else(|| "ENABLED".to_owned()),
        lifecycle_state: "ACTIVE".to_owned(),
    })
}

pub fn set_zpr_status(connection: &Connection, status: &str) -> anyhow::Result<Configuration> {
    if status != "ENABLED" && status != "DISABLED" {
        return refuse(
            RefusalKind::Invalid,
            format!("zprStatus must be ENABLED or DISABLED, not '{status}'"),
        );
    }
    set_meta(connection, "zpr-status", status)?;
    get_configuration(connection)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityAttributeNamespace {
    pub id: String,
    pub name: String,
    pub description: String,
    pub is_retired: bool,
    pub lifecycle_state: String,
    pub time_created: u64,
}

impl SecurityAttributeNamespace {
    fn from_row(row: &Row) -> rusqlite::Result<SecurityAttributeNamespace> {
        let is_retired: bool = row.get("is_retired")?;
        Ok(SecurityAttributeNamespace {
            id: row.get("id")?,
            name: row.get("name")?,
            description: row.get("description")?,
            is_retired,
            lifecycle_state: if is_retired { "INACTIVE" } else { "ACTIVE" }.to_owned(),
            time_created: row.get("time_created")?,
        })
    }
}

pub fn list_namespaces(connection: &Connection) -> anyhow::Result<Vec<SecurityAttributeNamespace>> {
    let mut query = connection.prepare("SELECT * FROM namespace ORDER BY name")?;
    let namespaces = query
        .query_map([], SecurityAttributeNamespace::from_row)?
        .collect::<Result<_, _>>()?;
    Ok(namespaces)
}

/// By id or by name.
pub fn get_namespace(
    connection: &Connection,
    id: &str,
) -> anyhow::Result<SecurityAttributeNamespace> {
    let namespace = connection
        .query_row(
            "SELECT * FROM namespace WHERE id = ?1 OR name = ?1",
            [id],
            SecurityAttributeNamespace::from_row,
        )
        .optional()?;
    match namespace {
        Some(namespace) => Ok(namespace),
        None => refuse(
            RefusalKind::NotFound,
            format!("no security-attribute-namespace '{id}'"),
        ),
    }
}

pub fn create_namespace(
    connection: &Connection,
    name: &str,
    description: &str,
) -> anyhow::Result<SecurityAttributeNamespace> {
    check_attribute_name(name, "namespace")?;
    if get_namespace(connection, name).is_ok() {
        return refuse(
            RefusalKind::Conflict,
            format!("a security-attribute-namespace named '{name}' exists"),
        );
    }
    let id = new_id(connection, "securityattributenamespace")?;
    connection.execute(
        "INSERT INTO namespace (id, name, description, time_created) VALUES (?1, ?2, ?3, ?4)",
        params![id, name, description, unix_now()],
    )?;
    get_namespace(connection, &id)
}

/// Namespace and key names as the policy language reads them.
fn check_attribute_name(name: &str, what: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.chars().count() <= crate::lang::attribute::NAME_MAX
        && name.chars().all(crate::lang::attribute::is_name_char);
    if !valid {
        return refuse(
            RefusalKind::Invalid,
            format!(
                "'{name}' is not a valid {what} name: use 1-{} of A-Z a-z 0-9 - _",
                crate::lang::attribute::NAME_MAX
            ),
        );
    }
    Ok(())
}

/// Description and retirement (retire: `is_retired` true; reactivate: false).
pub fn update_namespace(
    connection: &Connection,
    id: &str,
    description: Option<&str>,
    is_retired: Option<bool>,
) -> anyhow::Result<SecurityAttributeNamespace> {
    let namespace = get_namespace(connection, id)?;
    connection.execute(
        "UPDATE namespace SET description = ?2, is_retired = ?3 WHERE id = ?1",
        params![
            namespace.id,
            description.unwrap_or(&namespace.description),
            is_retired.unwrap_or(namespace.is_retired)
        ],
    )?;
    get_namespace(connection, &namespace.id)
}

/// Deletes a namespace and its attributes. Without `cascade` it refuses
/// while endpoints carry its attributes; with it, they lose them.
pub fn delete_namespace(
    connection: &Connection,
    id: &str,
    cascade: bool,
) -> anyhow::Result<SecurityAttributeNamespace> {
    let namespace = get_namespace(connection, id)?;
    let applied: u64 = connection.query_row(
        "SELECT count(*) FROM endpoint_attribute WHERE namespace = ?1",
        [&namespace.name],
        |row| row.get(0),
    )?;
    if applied > 0 && !cascade {
        return refuse(
            RefusalKind::Conflict,
            format!(
                "{applied} endpoint attribute(s) of namespace '{}' are applied; remove them \
                 first, or cascade-delete the namespace",
                namespace.name
            ),
        );
    }
    connection.execute(
        "DELETE FROM endpoint_attribute WHERE namespace = ?1",
        [&namespace.name],
    )?;
    connection.execute("DELETE FROM namespace WHERE id = ?1", [&namespace.id])?;
    Ok(namespace)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityAttribute {
    pub id: String,
    pub security_attribute_namespace_name: String,
    pub name: String,
    pub description: String,
    /// Absent: freeform values.
    pub validator: Option<Validator>,
    pub time_created: u64,
}

/// OCI's ENUM validator: the values an attribute may take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Validator {
    /// Always `ENUM`.
    pub validator_type: String,
    pub values: Vec<String>,
}

impl Validator {
    pub fn values(values: Vec<String>) -> Validator {
        Validator {
            validator_type: "ENUM".to_owned(),
            values,
        }
    }
}

impl SecurityAttribute {
    fn from_row(row: &Row) -> rusqlite::Result<SecurityAttribute> {
        let allowed: Option<String> = row.get("allowed_values")?;
        Ok(SecurityAttribute {
            id: row.get("id")?,
            security_attribute_namespace_name: row.get("namespace_name")?,
            name: row.get("name")?,
            description: row.get("description")?,
            validator: allowed
                .map(|values| Validator::values(serde_json::from_str(&values).unwrap_or_default())),
            time_created: row.get("time_created")?,
        })
    }
}

const ATTRIBUTE_QUERY: &str = "SELECT attribute.*, namespace.name AS namespace_name
     FROM attribute JOIN namespace ON namespace.id = attribute.namespace_id";

pub fn list_attributes(
    connection: &Connection,
    namespace: &str,
) -> anyhow::Result<Vec<SecurityAttribute>> {
    let namespace = get_namespace(connection, namespace)?;
    let mut query = connection.prepare(&format!(
        "{ATTRIBUTE_QUERY} WHERE namespace.id = ?1 ORDER BY attribute.name"
    ))?;
    let attributes = query
        .query_map([&namespace.id], SecurityAttribute::from_row)?
        .collect::<Result<_, _>>()?;
    Ok(attributes)
}

pub fn get_attribute(
    connection: &Connection,
    namespace: &str,
    name: &str,
) -> anyhow::Result<SecurityAttribute> {
    let namespace = get_namespace(connection, namespace)?;
    let attribute = connection
        .query_row(
            &format!("{ATTRIBUTE_QUERY} WHERE namespace.id = ?1 AND (attribute.name = ?2 OR attribute.id = ?2)"),
            [&namespace.id, name],
            SecurityAttribute::from_row,
        )
        .optional()?;
    match attribute {
        Some(attribute) => Ok(attribute),
        None => refuse(
            RefusalKind::NotFound,
            format!(
                "no security attribute '{name}' in namespace '{}'",
                namespace.name
            ),
        ),
    }
}

pub fn create_attribute(
    connection: &Connection,
    namespace: &str,
    name: &str,
    description: &str,
    validator: Option<&Validator>,
) -> anyhow::Result<SecurityAttribute> {
    let namespace = get_namespace(connection, namespace)?;
    if namespace.is_retired {
        return refuse(
            RefusalKind::Conflict,
            format!(
                "namespace '{}' is retired: reactivate it first",
                namespace.name
            ),
        );
    }
    check_attribute_name(name, "security attribute")?;
    if get_attribute(connection, &namespace.id, name).is_ok() {
        return refuse(
            RefusalKind::Conflict,
            format!(
                "namespace '{}' already has an attribute '{name}'",
                namespace.name
            ),
        );
    }
    let id = new_id(connection, "securityattribute")?;
    connection.execute(
        "INSERT INTO attribute (id, namespace_id, name, description, allowed_values, time_created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            id,
            namespace.id,
            name,
            description,
            validator
                .map(|v| serde_json::to_string(&v.values))
                .transpose()?,
            unix_now()
        ],
    )?;
    get_attribute(connection, &namespace.id, name)
}

/// `validator`: `None` leaves it; `Some(None)` makes the attribute freeform.
pub fn update_attribute(
    connection: &Connection,
    namespace: &str,
    name: &str,
    description: Option<&str>,
    validator: Option<Option<&Validator>>,
) -> anyhow::Result<SecurityAttribute> {
    let attribute = get_attribute(connection, namespace, name)?;
    let validator = validator.unwrap_or(attribute.validator.as_ref());
    connection.execute(
        "UPDATE attribute SET description = ?2, allowed_values = ?3 WHERE id = ?1",
        params![
            attribute.id,
            description.unwrap_or(&attribute.description),
            validator
                .map(|v| serde_json::to_string(&v.values))
                .transpose()?
        ],
    )?;
    get_attribute(connection, namespace, name)
}

pub fn delete_attribute(
    connection: &Connection,
    namespace: &str,
    name: &str,
) -> anyhow::Result<SecurityAttribute> {
    let attribute = get_attribute(connection, namespace, name)?;
    connection.execute("DELETE FROM attribute WHERE id = ?1", [&attribute.id])?;
    Ok(attribute)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub name: String,
    pub vcn: String,
    pub addresses: Vec<String>,
    pub interface: Option<String>,
    pub security_attributes: Vec<String>,
}

pub fn get_endpoint(connection: &Connection, name: &str) -> anyhow::Result<Endpoint> {
    let endpoint = connection
        .query_row(
            "SELECT name, vcn, addresses, interface FROM endpoint WHERE name = ?1",
            [name],
            |row| {
                let addresses: String = row.get("addresses")?;
                Ok(Endpoint {
                    name: row.get("name")?,
                    vcn: row.get("vcn")?,
                    addresses: serde_json::from_str(&addresses).unwrap_or_default(),
                    interface: row.get("interface")?,
                    security_attributes: Vec::new(),
                })
            },
        )
        .optional()?;
    let Some(mut endpoint) = endpoint else {
        return refuse(RefusalKind::NotFound, format!("no endpoint '{name}'"));
    };
    endpoint.security_attributes = endpoint_attributes(connection, name)?;
    Ok(endpoint)
}

fn endpoint_attributes(connection: &Connection, endpoint: &str) -> anyhow::Result<Vec<String>> {
    let mut query = connection
        .prepare("SELECT attribute FROM endpoint_attribute WHERE endpoint = ?1 ORDER BY rowid")?;
    let attributes = query
        .query_map([endpoint], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(attributes)
}

/// `namespace.key:value` (or `key:value`, in the default namespace) as the
/// policy language reads it.
pub fn parse_attribute_text(text: &str) -> anyhow::Result<Attribute> {
    match parse_attribute(text, Written::Quoted, Span::default()) {
        Ok(attribute) => Ok(attribute),
        Err(diagnostic) => refuse(
            RefusalKind::Invalid,
            match diagnostic.help {
                Some(help) => format!("{} ({help})", diagnostic.message),
                None => diagnostic.message,
            },
        ),
    }
}

/// Applies `attribute` (`namespace.key:value`, as the policy language writes
/// it) to an endpoint. The namespace must be active; whether the key and
/// value exist is checked with the rest of the inventory.
pub fn apply_attribute(
    connection: &Connection,
    endpoint: &str,
    attribute: &str,
    namespace: &str,
) -> anyhow::Result<Endpoint> {
    get_endpoint(connection, endpoint)?;
    if get_namespace(connection, namespace)?.is_retired {
        return refuse(
            RefusalKind::Conflict,
            format!("namespace '{namespace}' is retired: its attributes cannot be applied"),
        );
    }
    connection.execute(
        "INSERT OR IGNORE INTO endpoint_attribute (endpoint, attribute, namespace) VALUES (?1, ?2, ?3)",
        [endpoint, attribute, namespace],
    )?;
    get_endpoint(connection, endpoint)
}

pub fn remove_attribute(
    connection: &Connection,
    endpoint: &str,
    attribute: &str,
) -> anyhow::Result<Endpoint> {
    get_endpoint(connection, endpoint)?;
    let removed = connection.execute(
        "DELETE FROM endpoint_attribute WHERE endpoint = ?1 AND attribute = ?2",
        [endpoint, attribute],
    )?;
    if removed == 0 {
        return refuse(
            RefusalKind::NotFound,
            format!("endpoint '{endpoint}' does not carry '{attribute}'"),
        );
    }
    get_endpoint(connection, endpoint)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkRequest {
    pub id: String,
    /// The API operation, e.g. `CreateZprPolicy`.
    pub operation_type: String,
    /// `SUCCEEDED` or `FAILED`.
    pub status: String,
    pub resource_type: String,
    /// The security-attribute namespace concerned, if any (for IAM).
    pub namespace: Option<String>,
    pub resource: String,
    pub principal: String,
    /// The policy generation the change produced.
    pub generation: Option<u32>,
    pub percent_complete: f32,
    pub errors: Vec<WorkRequestError>,
    pub logs: Vec<WorkRequestLog>,
    pub time_accepted: u64,
    pub time_finished: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkRequestError {
    pub code: String,
    pub message: String,
    pub timestamp: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkRequestLog {
    pub message: String,
    pub timestamp: u64,
}

impl WorkRequest {
    fn from_row(row: &Row) -> rusqlite::Result<WorkRequest> {
        let errors: String = row.get("errors")?;
        let logs: String = row.get("logs")?;
        Ok(WorkRequest {
            id: row.get("id")?,
            operation_type: row.get("operation")?,
            status: row.get("status")?,
            resource_type: row.get("resource_type")?,
            namespace: row.get("namespace")?,
            resource: row.get("resource")?,
            principal: row.get("principal")?,
            generation: row.get("generation")?,
            percent_complete: 100.0,
            errors: serde_json::from_str(&errors).unwrap_or_default(),
            logs: serde_json::from_str(&logs).unwrap_or_default(),
            time_accepted: row.get("time_accepted")?,
            time_finished: row.get("time_finished")?,
        })
    }
}

/// Records a finished work request; fills in its id.
pub fn insert_work_request(
    connection: &Connection,
    request: &mut WorkRequest,
) -> anyhow::Result<()> {
    request.id = new_id(connection, "zprworkrequest")?;
    connection.execute(
        "INSERT INTO work_request (id, operation, resource_type, namespace, resource, status,
             principal, generation, errors, logs, time_accepted, time_finished)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            request.id,
            request.operation_type,
            request.resource_type,
            request.namespace,
            request.resource,
            request.status,
            request.principal,
            request.generation,
            serde_json::to_string(&request.errors)?,
            serde_json::to_string(&request.logs)?,
            request.time_accepted,
            request.time_finished
        ],
    )?;
    Ok(())
}

pub fn list_work_requests(connection: &Connection) -> anyhow::Result<Vec<WorkRequest>> {
    let mut query = connection.prepare("SELECT * FROM work_request ORDER BY rowid")?;
    let requests = query
        .query_map([], WorkRequest::from_row)?
        .collect::<Result<_, _>>()?;
    Ok(requests)
}

pub fn get_work_request(connection: &Connection, id: &str) -> anyhow::Result<WorkRequest> {
    let request = connection
        .query_row(
            "SELECT * FROM work_request WHERE id = ?1",
            [id],
            WorkRequest::from_row,
        )
        .optional()?;
    match request {
        Some(request) => Ok(request),
        None => refuse(RefusalKind::NotFound, format!("no work request '{id}'")),
    }
}

/// The inventory document (the YAML shape of inventory files, as JSON) the
/// store describes. With ZPR disabled every endpoint is in audit mode.
pub fn inventory_document(connection: &Connection) -> anyhow::Result<Value> {
    let enforce = get_configuration(connection)?.zpr_status == "ENABLED";
    let mut namespaces = Vec::new();
    for namespace in list_namespaces(connection)? {
        let attributes: Vec<Value> = list_attributes(connection, &namespace.id)?
            .into_iter()
            .map(|attribute| match attribute.validator {
                Some(validator) => {
                    json!({ "key": attribute.name, "type": "list", "values": validator.values })
                }
                None => json!({ "key": attribute.name, "type": "freeform" }),
            })
            .collect();
        namespaces.push(json!({ "name": namespace.name, "attributes": attributes }));
    }
    let mut vcns = Vec::new();
    let mut query =
        connection.prepare("SELECT name, cidrs, security_attribute FROM vcn ORDER BY rowid")?;
    let mut rows = query.query([])?;
    while let Some(row) = rows.next()? {
        let cidrs: String = row.get(1)?;
        let mut vcn = json!({ "name": row.get::<_, String>(0)?, "cidrs": serde_json::from_str::<Value>(&cidrs)? });
        if let Some(attribute) = row.get::<_, Option<String>>(2)? {
            vcn["security-attribute"] = attribute.into();
        }
        vcns.push(vcn);
    }
    let mut endpoints = Vec::new();
    let mut query = connection.prepare("SELECT name, mode FROM endpoint ORDER BY rowid")?;
    let names: Vec<(String, String)> = query
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (name, mode) in names {
        let endpoint = get_endpoint(connection, &name)?;
        let mut document = json!({
            "name": endpoint.name,
            "vcn": endpoint.vcn,
            "addresses": endpoint.addresses,
            "security-attributes": endpoint.security_attributes,
            "mode": if enforce { mode.as_str() } else { "audit" },
        });
        if let Some(interface) = endpoint.interface {
            document["interface"] = interface.into();
        }
        endpoints.push(document);
    }
    let osn_services: Value = match meta(connection, "osn-services")? {
        Some(text) => serde_json::from_str(&text)?,
        None => json!([]),
    };
    Ok(json!({
        "namespaces": namespaces,
        "vcns": vcns,
        "endpoints": endpoints,
        "osn-services": osn_services,
    }))
}
