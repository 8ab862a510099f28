//! The tenancy's state as one value: policies, security-attribute
//! namespaces and attributes, VCNs, endpoints with the attributes applied
//! to them, and the configuration. Every API change is a function from one
//! `Tenancy` to the next, the same whichever store keeps it; the stores
//! only persist the result ([`super::records`]). Requests that cannot be
//! carried out fail with a [`Refusal`], which the API turns into a 4xx.

use std::{collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    clock::unix_now,
    lang::{
        Attribute, Span,
        attribute::{NAME_MAX, Written, is_name_char, parse_attribute},
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tenancy {
    /// By id. Policies and endpoints, most of a large tenancy, are shared
    /// between copies (each change of the API copies the tenancy, and an
    /// unchanged resource then compares by its address).
    pub policies: BTreeMap<String, Arc<ZprPolicy>>,
    /// By id.
    pub namespaces: BTreeMap<String, SecurityAttributeNamespace>,
    /// By id.
    pub attributes: BTreeMap<String, StoredAttribute>,
    /// By name.
    pub vcns: BTreeMap<String, Vcn>,
    /// By name.
    pub endpoints: BTreeMap<String, Arc<StoredEndpoint>>,
    pub configuration: Configuration,
    pub osn_services: Vec<String>,
    /// The next number of [`Tenancy::new_id`]; ids are never reused.
    pub next_id: u64,
    /// Drawn when the tenancy is first seeded ([`Tenancy::draw_id`]).
    #[serde(default)]
    pub tenancy_id: Option<String>,
    /// The operator's confirmation of the change that made this state,
    /// when it stops protecting most of some host's endpoints.
    #[serde(default)]
    pub confirmation: Option<Confirmation>,
    /// The API server's signature of this state (see [`super::signing`]).
    #[serde(default)]
    pub signature: Option<super::signing::StateSignature>,
}

/// An operator's confirmation, given through the API, of a change that
/// stops protecting more than half of some host's protected endpoints
/// (which agents otherwise hold back). It confirms one state: agents take
/// it only while the tenancy's [`Tenancy::digest`] is the one it names,
/// so a later change, or a store written behind the API's back, carries
/// none. Until states are signed, whoever can write the store directly
/// can forge it (see the README).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Confirmation {
    /// Who confirmed it (the API's principal).
    pub principal: String,
    pub operation: String,
    /// Unix seconds.
    pub time: u64,
    /// The nodes (hosts) whose endpoints it stops protecting.
    pub nodes: Vec<String>,
    /// [`Tenancy::digest`] of the state it confirms.
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
    /// The checks a policy made through the API passes: a record read from
    /// a store passes them too, whoever wrote it.
    pub fn check(&self) -> anyhow::Result<()> {
        check_policy_name(&self.name)?;
        check_statements(&self.statements)
    }

    /// The policy as the checker reads it: one statement per line, so
    /// `name:line` is the statement's number.
    pub fn source(&self) -> String {
        self.statements.join("\n")
    }
}

/// OCI's Configuration: whether ZPR enforces (else every endpoint is in
/// audit mode: decisions are reported, nothing is dropped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Configuration {
    /// `ENABLED` or `DISABLED`.
    pub zpr_status: String,
    pub lifecycle_state: String,
}

impl Default for Configuration {
    fn default() -> Configuration {
        Configuration {
            zpr_status: "ENABLED".to_owned(),
            lifecycle_state: "ACTIVE".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityAttributeNamespace {
    pub id: String,
    pub name: String,
    pub description: String,
    pub is_retired: bool,
    pub lifecycle_state: String,
    pub time_created: u64,
}

impl SecurityAttributeNamespace {
    /// As [`ZprPolicy::check`].
    pub fn check(&self) -> anyhow::Result<()> {
        check_attribute_name(&self.name, "namespace")
    }
}

/// A security attribute as kept: under its namespace's id, so renaming
/// nothing is needed when answering with the namespace's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredAttribute {
    pub id: String,
    pub namespace_id: String,
    pub name: String,
    pub description: String,
    pub validator: Option<Validator>,
    pub time_created: u64,
}

impl StoredAttribute {
    /// As [`ZprPolicy::check`].
    pub fn check(&self) -> anyhow::Result<()> {
        check_attribute_name(&self.name, "security attribute")
    }
}

/// A security attribute as the API answers it.
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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Vcn {
    pub name: String,
    pub cidrs: Vec<String>,
    pub security_attribute: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredEndpoint {
    pub name: String,
    pub vcn: String,
    pub addresses: Vec<String>,
    pub interface: Option<String>,
    /// The host whose agent attaches to `interface` (a fleet's node name);
    /// absent: every agent reading the store treats it as its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// `enforce` or `audit`.
    pub mode: String,
    /// As written (`namespace.key:value`), in the order applied.
    pub security_attributes: Vec<String>,
}

/// An endpoint as the API answers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub name: String,
    pub vcn: String,
    pub addresses: Vec<String>,
    pub interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub mode: String,
    pub security_attributes: Vec<String>,
}

/// Names of namespaces and attribute keys compare as the policy language
/// compares them: without case.
fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Hashes records as they are written, each value serialized into one
/// reused buffer.
struct RecordsDigest<'a> {
    hasher: sha2::Sha256,
    value: Vec<u8>,
    left_out: &'a [&'a str],
}

impl super::records::RecordSink for RecordsDigest<'_> {
    fn put<T: serde::Serialize>(&mut self, key: &str, value: &T) -> anyhow::Result<()> {
        use sha2::Digest as _;
        if self.left_out.contains(&key) {
            return Ok(());
        }
        self.value.clear();
        serde_json::to_writer(&mut self.value, value)?;
        for part in [key.as_bytes(), b"\0", &self.value, b"\0"] {
            self.hasher.update(part);
        }
        Ok(())
    }
}

impl Tenancy {
    /// A new tenancy id: 128 random bits, hex.
    pub fn draw_id() -> anyhow::Result<String> {
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut bytes))
            .map_err(|error| anyhow::anyhow!("drawing a tenancy id from /dev/urandom: {error}"))?;
        Ok(super::signing::to_hex(&bytes))
    }

    /// The endpoints each node enforces (with a vNIC, an attribute and in
    /// enforce mode), by node.
    fn protected_by_node(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut protected: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        if self.configuration.zpr_status != "ENABLED" {
            return protected;
        }
        for endpoint in self.endpoints.values() {
            if let (Some(node), Some(_)) = (&endpoint.node, &endpoint.interface)
                && !endpoint.security_attributes.is_empty()
                && endpoint.mode == "enforce"
            {
                protected.entry(node).or_default().push(&endpoint.name);
            }
        }
        protected
    }

    /// The nodes where going from `self` to `after` stops protecting more
    /// than half of the endpoints protected there (what each node's agent
    /// holds back unless the change is confirmed), one line each.
    pub fn unprotects(&self, after: &Tenancy) -> Vec<(String, String)> {
        let still = after.protected_by_node();
        self.protected_by_node()
            .into_iter()
            .filter_map(|(node, now)| {
                let kept = still.get(node).map_or(&[][..], Vec::as_slice);
                let lost: Vec<&str> = now
                    .iter()
                    .copied()
                    .filter(|name| !kept.contains(name))
                    .collect();
                (!lost.is_empty() && lost.len() * 2 > now.len()).then(|| {
                    (
                        node.to_owned(),
                        format!(
                            "stops protecting {} of the {} endpoints protected on node {node} \
                             ({})",
                            lost.len(),
                            now.len(),
                            lost.join(", ")
                        ),
                    )
                })
            })
            .collect()
    }

    /// What a [`Confirmation`] names: the digest of the tenancy's records
    /// but the confirmation and the signature.
    pub fn digest(&self) -> anyhow::Result<String> {
        self.records_digest(&[super::records::CONFIRMATION, super::records::SIGNATURE])
    }

    /// What a signature covers: the digest of every record but itself.
    pub fn signed_digest(&self) -> anyhow::Result<String> {
        self.records_digest(&[super::records::SIGNATURE])
    }

    /// SHA-256 over the tenancy's records (key and value each followed by
    /// a NUL, in key order), but those named in `left_out`.
    fn records_digest(&self, left_out: &[&str]) -> anyhow::Result<String> {
        let mut digest = RecordsDigest {
            hasher: sha2::Sha256::default(),
            value: Vec::new(),
            left_out,
        };
        super::records::write_records(self, &mut digest)?;
        use sha2::Digest as _;
        Ok(super::signing::to_hex(&digest.hasher.finalize()))
    }

    /// A new OCID-like id: `ocid1.<kind>.zpr.<n>`, never reused.
    pub fn new_id(&mut self, kind: &str) -> String {
        self.next_id = self.next_id.max(1);
        let id = format!("ocid1.{kind}.zpr.{}", self.next_id);
        self.next_id += 1;
        id
    }

    /// Sorted by name.
    /// The policies in the order of their names.
    pub fn list_policies(&self) -> Vec<&ZprPolicy> {
        let mut policies: Vec<&ZprPolicy> = self.policies.values().map(Arc::as_ref).collect();
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        policies
    }

    /// Each policy's id, by its name (the name its statements carry:
    /// `name:line`).
    pub fn policy_ids(&self) -> BTreeMap<String, String> {
        self.policies
            .values()
            .map(|policy| (policy.name.clone(), policy.id.clone()))
            .collect()
    }

    /// By id or by name.
    pub fn get_policy(&self, id: &str) -> anyhow::Result<ZprPolicy> {
        match self
            .policies
            .values()
            .find(|policy| policy.id == id || policy.name == id)
        {
            Some(policy) => Ok(ZprPolicy::clone(policy)),
            None => refuse(RefusalKind::NotFound, format!("no zpr-policy '{id}'")),
        }
    }

    pub fn create_policy(
        &mut self,
        name: &str,
        description: &str,
        statements: &[String],
    ) -> anyhow::Result<ZprPolicy> {
        check_policy_name(name)?;
        check_statements(statements)?;
        if self.get_policy(name).is_ok() {
            return refuse(
                RefusalKind::Conflict,
                format!("a zpr-policy named '{name}' exists; update it or choose another name"),
            );
        }
        let now = unix_now();
        let policy = ZprPolicy {
            id: self.new_id("zprpolicy"),
            name: name.to_owned(),
            description: description.to_owned(),
            statements: statements.to_vec(),
            lifecycle_state: "ACTIVE".to_owned(),
            time_created: now,
            time_updated: now,
        };
        self.policies
            .insert(policy.id.clone(), Arc::new(policy.clone()));
        Ok(policy)
    }

    pub fn update_policy(
        &mut self,
        id: &str,
        description: Option<&str>,
        statements: Option<&[String]>,
    ) -> anyhow::Result<ZprPolicy> {
        let mut policy = self.get_policy(id)?;
        if let Some(description) = description {
            policy.description = description.to_owned();
        }
        if let Some(statements) = statements {
            check_statements(statements)?;
            policy.statements = statements.to_vec();
        }
        policy.time_updated = unix_now();
        self.policies
            .insert(policy.id.clone(), Arc::new(policy.clone()));
        Ok(policy)
    }

    pub fn delete_policy(&mut self, id: &str) -> anyhow::Result<ZprPolicy> {
        let policy = self.get_policy(id)?;
        self.policies.remove(&policy.id);
        Ok(policy)
    }

    pub fn set_zpr_status(&mut self, status: &str) -> anyhow::Result<Configuration> {
        if status != "ENABLED" && status != "DISABLED" {
            return refuse(
                RefusalKind::Invalid,
                format!("zprStatus must be ENABLED or DISABLED, not '{status}'"),
            );
        }
        self.configuration.zpr_status = status.to_owned();
        Ok(self.configuration.clone())
    }

    /// Sorted by name.
    pub fn list_namespaces(&self) -> Vec<SecurityAttributeNamespace> {
        let mut namespaces: Vec<_> = self.namespaces.values().cloned().collect();
        namespaces.sort_by_key(|namespace| namespace.name.to_ascii_lowercase());
        namespaces
    }

    /// By id or by name.
    pub fn get_namespace(&self, id: &str) -> anyhow::Result<SecurityAttributeNamespace> {
        match self
            .namespaces
            .values()
            .find(|namespace| namespace.id == id || same_name(&namespace.name, id))
        {
            Some(namespace) => Ok(namespace.clone()),
            None => refuse(
                RefusalKind::NotFound,
                format!("no security-attribute-namespace '{id}'"),
            ),
        }
    }

    pub fn create_namespace(
        &mut self,
        name: &str,
        description: &str,
    ) -> anyhow::Result<SecurityAttributeNamespace> {
        check_attribute_name(name, "namespace")?;
        if self.get_namespace(name).is_ok() {
            return refuse(
                RefusalKind::Conflict,
                format!("a security-attribute-namespace named '{name}' exists"),
            );
        }
        let namespace = SecurityAttributeNamespace {
            id: self.new_id("securityattributenamespace"),
            name: name.to_owned(),
            description: description.to_owned(),
            is_retired: false,
            lifecycle_state: "ACTIVE".to_owned(),
            time_created: unix_now(),
        };
        self.namespaces
            .insert(namespace.id.clone(), namespace.clone());
        Ok(namespace)
    }

    /// Description and retirement (retire: `is_retired` true; reactivate: false).
    pub fn update_namespace(
        &mut self,
        id: &str,
        description: Option<&str>,
        is_retired: Option<bool>,
    ) -> anyhow::Result<SecurityAttributeNamespace> {
        let mut namespace = self.get_namespace(id)?;
        if let Some(description) = description {
            namespace.description = description.to_owned();
        }
        if let Some(is_retired) = is_retired {
            namespace.is_retired = is_retired;
            namespace.lifecycle_state = if is_retired { "INACTIVE" } else { "ACTIVE" }.to_owned();
        }
        self.namespaces
            .insert(namespace.id.clone(), namespace.clone());
        Ok(namespace)
    }

    /// Deletes a namespace and its attributes. Without `cascade` it refuses
    /// while endpoints carry its attributes; with it, they lose them.
    pub fn delete_namespace(
        &mut self,
        id: &str,
        cascade: bool,
    ) -> anyhow::Result<SecurityAttributeNamespace> {
        let namespace = self.get_namespace(id)?;
        let in_namespace = |text: &String| {
            attribute_namespace(text).is_some_and(|n| same_name(&n, &namespace.name))
        };
        let applied = self
            .endpoints
            .values()
            .flat_map(|endpoint| &endpoint.security_attributes)
            .filter(|text| in_namespace(text))
            .count();
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
        for endpoint in self.endpoints.values_mut() {
            // Only the endpoints that change stop being shared.
            if endpoint
                .security_attributes
                .iter()
                .any(|text| in_namespace(text))
            {
                Arc::make_mut(endpoint)
                    .security_attributes
                    .retain(|text| !in_namespace(text));
            }
        }
        self.attributes
            .retain(|_, attribute| attribute.namespace_id != namespace.id);
        self.namespaces.remove(&namespace.id);
        Ok(namespace)
    }

    fn answer(&self, attribute: &StoredAttribute) -> SecurityAttribute {
        SecurityAttribute {
            id: attribute.id.clone(),
            security_attribute_namespace_name: self
                .namespaces
                .get(&attribute.namespace_id)
                .map(|namespace| namespace.name.clone())
                .unwrap_or_default(),
            name: attribute.name.clone(),
            description: attribute.description.clone(),
            validator: attribute.validator.clone(),
            time_created: attribute.time_created,
        }
    }

    /// Sorted by name.
    pub fn list_attributes(&self, namespace: &str) -> anyhow::Result<Vec<SecurityAttribute>> {
        let namespace = self.get_namespace(namespace)?;
        let mut attributes: Vec<&StoredAttribute> = self
            .attributes
            .values()
            .filter(|attribute| attribute.namespace_id == namespace.id)
            .collect();
        attributes.sort_by_key(|attribute| attribute.name.to_ascii_lowercase());
        Ok(attributes
            .into_iter()
            .map(|attribute| self.answer(attribute))
            .collect())
    }

    fn find_attribute(&self, namespace: &str, name: &str) -> anyhow::Result<&StoredAttribute> {
        let namespace = self.get_namespace(namespace)?;
        match self.attributes.values().find(|attribute| {
            attribute.namespace_id == namespace.id
                && (same_name(&attribute.name, name) || attribute.id == name)
        }) {
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

    pub fn get_attribute(&self, namespace: &str, name: &str) -> anyhow::Result<SecurityAttribute> {
        Ok(self.answer(self.find_attribute(namespace, name)?))
    }

    pub fn create_attribute(
        &mut self,
        namespace: &str,
        name: &str,
        description: &str,
        validator: Option<&Validator>,
    ) -> anyhow::Result<SecurityAttribute> {
        let namespace = self.get_namespace(namespace)?;
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
        if self.find_attribute(&namespace.id, name).is_ok() {
            return refuse(
                RefusalKind::Conflict,
                format!(
                    "namespace '{}' already has an attribute '{name}'",
                    namespace.name
                ),
            );
        }
        let attribute = StoredAttribute {
            id: self.new_id("securityattribute"),
            namespace_id: namespace.id,
            name: name.to_owned(),
            description: description.to_owned(),
            validator: validator.cloned(),
            time_created: unix_now(),
        };
        self.attributes
            .insert(attribute.id.clone(), attribute.clone());
        Ok(self.answer(&attribute))
    }

    /// `validator`: `None` leaves it; `Some(None)` makes the attribute freeform.
    pub fn update_attribute(
        &mut self,
        namespace: &str,
        name: &str,
        description: Option<&str>,
        validator: Option<Option<&Validator>>,
    ) -> anyhow::Result<SecurityAttribute> {
        let mut attribute = self.find_attribute(namespace, name)?.clone();
        if let Some(description) = description {
            attribute.description = description.to_owned();
        }
        if let Some(validator) = validator {
            attribute.validator = validator.cloned();
        }
        self.attributes
            .insert(attribute.id.clone(), attribute.clone());
        Ok(self.answer(&attribute))
    }

    pub fn delete_attribute(
        &mut self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<SecurityAttribute> {
        let attribute = self.find_attribute(namespace, name)?.clone();
        self.attributes.remove(&attribute.id);
        Ok(self.answer(&attribute))
    }

    pub fn get_endpoint(&self, name: &str) -> anyhow::Result<Endpoint> {
        match self.endpoints.get(name) {
            Some(endpoint) => Ok(Endpoint {
                name: endpoint.name.clone(),
                vcn: endpoint.vcn.clone(),
                addresses: endpoint.addresses.clone(),
                interface: endpoint.interface.clone(),
                node: endpoint.node.clone(),
                mac: endpoint.mac.clone(),
                mode: endpoint.mode.clone(),
                security_attributes: endpoint.security_attributes.clone(),
            }),
            None => refuse(RefusalKind::NotFound, format!("no endpoint '{name}'")),
        }
    }

    /// Applies `attribute` (`namespace.key:value`, as the policy language
    /// writes it) to an endpoint. The namespace must be active; whether the
    /// key and value exist is checked with the rest of the inventory.
    pub fn apply_attribute(&mut self, endpoint: &str, attribute: &str) -> anyhow::Result<Endpoint> {
        self.get_endpoint(endpoint)?;
        let namespace = parse_attribute_text(attribute)?.namespace().to_owned();
        if self.get_namespace(&namespace)?.is_retired {
            return refuse(
                RefusalKind::Conflict,
                format!("namespace '{namespace}' is retired: its attributes cannot be applied"),
            );
        }
        let applied = &mut Arc::make_mut(self.endpoints.get_mut(endpoint).expect("found above"))
            .security_attributes;
        if !applied.iter().any(|text| text == attribute) {
            applied.push(attribute.to_owned());
        }
        self.get_endpoint(endpoint)
    }

    pub fn remove_attribute(
        &mut self,
        endpoint: &str,
        attribute: &str,
    ) -> anyhow::Result<Endpoint> {
        self.get_endpoint(endpoint)?;
        let applied = &mut Arc::make_mut(self.endpoints.get_mut(endpoint).expect("found above"))
            .security_attributes;
        let before = applied.len();
        applied.retain(|text| text != attribute);
        if applied.len() == before {
            return refuse(
                RefusalKind::NotFound,
                format!("endpoint '{endpoint}' does not carry '{attribute}'"),
            );
        }
        self.get_endpoint(endpoint)
    }

    /// The inventory document (the YAML shape of inventory files, as JSON)
    /// the tenancy describes, as the agent of `node` reads it: endpoints
    /// placed on another node keep their addresses and attributes but not
    /// their interface, so only their own host attaches to them. With ZPR
    /// disabled every endpoint is in audit mode.
    pub fn inventory_document(&self, node: Option<&str>) -> Value {
        let enforce = self.configuration.zpr_status == "ENABLED";
        let namespaces: Vec<Value> = self
            .list_namespaces()
            .iter()
            .map(|namespace| {
                let attributes: Vec<Value> = self
                    .list_attributes(&namespace.id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|attribute| match attribute.validator {
                        Some(validator) => json!({
                            "key": attribute.name, "type": "list", "values": validator.values
                        }),
                        None => json!({ "key": attribute.name, "type": "freeform" }),
                    })
                    .collect();
                json!({ "name": namespace.name, "attributes": attributes })
            })
            .collect();
        let vcns: Vec<Value> = self
            .vcns
            .values()
            .map(|vcn| {
                let mut document = json!({ "name": vcn.name, "cidrs": vcn.cidrs });
                if let Some(attribute) = &vcn.security_attribute {
                    document["security-attribute"] = attribute.clone().into();
                }
                document
            })
            .collect();
        let endpoints: Vec<Value> = self
            .endpoints
            .values()
            .map(|endpoint| {
                let mut document = json!({
                    "name": endpoint.name,
                    "vcn": endpoint.vcn,
                    "addresses": endpoint.addresses,
                    "security-attributes": endpoint.security_attributes,
                    "mode": if enforce { endpoint.mode.as_str() } else { "audit" },
                });
                let placed_here = match (&endpoint.node, node) {
                    (Some(placed), Some(node)) => placed == node,
                    _ => true,
                };
                if let Some(interface) = endpoint.interface.as_ref().filter(|_| placed_here) {
                    document["interface"] = interface.clone().into();
                }
                if let Some(placed) = &endpoint.node {
                    document["node"] = placed.clone().into();
                }
                if let Some(mac) = &endpoint.mac {
                    document["mac"] = mac.clone().into();
                }
                document
            })
            .collect();
        json!({
            "namespaces": namespaces,
            "vcns": vcns,
            "endpoints": endpoints,
            "osn-services": self.osn_services,
        })
    }
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

/// Namespace and key names as the policy language reads them.
fn check_attribute_name(name: &str, what: &str) -> anyhow::Result<()> {
    let valid =
        !name.is_empty() && name.chars().count() <= NAME_MAX && name.chars().all(is_name_char);
    if !valid {
        return refuse(
            RefusalKind::Invalid,
            format!("'{name}' is not a valid {what} name: use 1-{NAME_MAX} of A-Z a-z 0-9 - _"),
        );
    }
    Ok(())
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

/// The namespace of an applied attribute's text.
fn attribute_namespace(text: &str) -> Option<String> {
    parse_attribute_text(text)
        .ok()
        .map(|attribute| attribute.namespace().to_owned())
}
