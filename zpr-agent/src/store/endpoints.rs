//! Endpoints and VCNs as the API creates, changes, moves and deletes them
//! (VMs come and go). Each method makes the change to the tenancy and
//! answers the resource; whether the result holds together (an address
//! inside its VCN and used once, an interface used once per node, known
//! attributes) is the one checker's job, run on every change.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Endpoint, RefusalKind, StoredEndpoint, Tenancy, Vcn, refuse};

/// A new endpoint, as `CreateEndpoint` takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointDetails {
    pub name: String,
    pub vcn: String,
    pub addresses: Vec<String>,
    #[serde(default)]
    pub interface: Option<String>,
    /// The host whose agent attaches to `interface`.
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
    /// `enforce` (the default) or `audit`.
    #[serde(default)]
    pub mode: Option<String>,
    /// `namespace.key:value`, given at creation as OCI gives them to a
    /// VNIC (needs `use` on each namespace).
    #[serde(default)]
    pub security_attributes: Vec<String>,
}

impl From<StoredEndpoint> for EndpointDetails {
    fn from(stored: StoredEndpoint) -> EndpointDetails {
        EndpointDetails {
            name: stored.name,
            vcn: stored.vcn,
            addresses: stored.addresses,
            interface: stored.interface,
            node: stored.node,
            mac: stored.mac,
            mode: Some(stored.mode),
            security_attributes: stored.security_attributes,
        }
    }
}

/// What `UpdateEndpoint` changes: the fields given; a new `node` moves
/// the endpoint to another host (a migration).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointChanges {
    pub vcn: Option<String>,
    pub addresses: Option<Vec<String>>,
    pub interface: Option<String>,
    pub node: Option<String>,
    pub mac: Option<String>,
    pub mode: Option<String>,
    /// The whole new set (needs `use` on the namespace of each attribute
    /// added or removed).
    pub security_attributes: Option<Vec<String>>,
}

/// Which endpoints `ListEndpoints` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointFilter {
    pub node: Option<String>,
    pub vcn: Option<String>,
    /// `namespace.key:value` the endpoint carries.
    pub attribute: Option<String>,
}

/// A VCN as `CreateVcn` and `UpdateVcn` take it (name from the path on update).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VcnDetails {
    #[serde(default)]
    pub name: Option<String>,
    pub cidrs: Option<Vec<String>>,
    pub security_attribute: Option<String>,
}

impl EndpointFilter {
    fn matches(&self, endpoint: &StoredEndpoint) -> bool {
        self.node
            .as_ref()
            .is_none_or(|node| endpoint.node.as_ref() == Some(node))
            && self.vcn.as_ref().is_none_or(|vcn| endpoint.vcn == *vcn)
            && self.attribute.as_ref().is_none_or(|attribute| {
                endpoint
                    .security_attributes
                    .iter()
                    .any(|carried| carried == attribute)
            })
    }
}

impl Tenancy {
    pub fn create_endpoint(&mut self, details: EndpointDetails) -> anyhow::Result<Endpoint> {
        if self.endpoints.contains_key(&details.name) {
            return refuse(
                RefusalKind::Conflict,
                format!(
                    "endpoint '{}' exists: UpdateEndpoint changes it (`zpr endpoint update`)",
                    details.name
                ),
            );
        }
        let name = details.name.clone();
        self.endpoints.insert(
            name.clone(),
            Arc::new(StoredEndpoint {
                name: details.name,
                vcn: details.vcn,
                addresses: details.addresses,
                interface: details.interface,
                node: details.node,
                mac: details.mac,
                mode: details.mode.unwrap_or_else(|| "enforce".to_owned()),
                security_attributes: Vec::new(),
            }),
        );
        for attribute in &details.security_attributes {
            self.apply_attribute(&name, attribute)?;
        }
        self.get_endpoint(&name)
    }

    pub fn update_endpoint(
        &mut self,
        name: &str,
        changes: EndpointChanges,
    ) -> anyhow::Result<Endpoint> {
        self.get_endpoint(name)?;
        let endpoint = Arc::make_mut(self.endpoints.get_mut(name).expect("found above"));
        let EndpointChanges {
            vcn,
            addresses,
            interface,
            node,
            mac,
            mode,
            security_attributes,
        } = changes;
        if let Some(vcn) = vcn {
            endpoint.vcn = vcn;
        }
        if let Some(addresses) = addresses {
            endpoint.addresses = addresses;
        }
        if let Some(interface) = interface {
            endpoint.interface = Some(interface);
        }
        if let Some(node) = node {
            endpoint.node = Some(node);
        }
        if let Some(mac) = mac {
            endpoint.mac = Some(mac);
        }
        if let Some(mode) = mode {
            endpoint.mode = mode;
        }
        if let Some(attributes) = security_attributes {
            endpoint.security_attributes.clear();
            for attribute in &attributes {
                self.apply_attribute(name, attribute)?;
            }
        }
        self.get_endpoint(name)
    }

    pub fn delete_endpoint(&mut self, name: &str) -> anyhow::Result<Endpoint> {
        let deleted = self.get_endpoint(name)?;
        self.endpoints.remove(name);
        Ok(deleted)
    }

    /// Sorted by name, from after `after` (a page's last name), at most `limit`.
    pub fn list_endpoints(
        &self,
        filter: &EndpointFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<Endpoint> {
        let from = after.map_or(std::ops::Bound::Unbounded, |name| {
            std::ops::Bound::Excluded(name.to_owned())
        });
        self.endpoints
            .range((from, std::ops::Bound::Unbounded))
            .filter(|(_, endpoint)| filter.matches(endpoint))
            .take(limit)
            .filter_map(|(name, _)| self.get_endpoint(name).ok())
            .collect()
    }

    pub fn create_vcn(&mut self, details: VcnDetails) -> anyhow::Result<Vcn> {
        let Some(name) = details.name else {
            return refuse(RefusalKind::Invalid, "a VCN needs a name");
        };
        if self.vcns.contains_key(&name) {
            return refuse(
                RefusalKind::Conflict,
                format!("VCN '{name}' exists: UpdateVcn changes it (`zpr vcn update`)"),
            );
        }
        let vcn = Vcn {
            name: name.clone(),
            cidrs: details.cidrs.unwrap_or_default(),
            security_attribute: details.security_attribute,
        };
        self.vcns.insert(name, vcn.clone());
        Ok(vcn)
    }

    pub fn get_vcn(&self, name: &str) -> anyhow::Result<Vcn> {
        match self.vcns.get(name) {
            Some(vcn) => Ok(vcn.clone()),
            None => refuse(RefusalKind::NotFound, format!("no VCN '{name}'")),
        }
    }

    /// Sorted by name.
    pub fn list_vcns(&self) -> Vec<Vcn> {
        self.vcns.values().cloned().collect()
    }

    pub fn update_vcn(&mut self, name: &str, changes: VcnDetails) -> anyhow::Result<Vcn> {
        let mut vcn = self.get_vcn(name)?;
        if changes.name.as_ref().is_some_and(|renamed| renamed != name) {
            return refuse(
                RefusalKind::Invalid,
                "a VCN keeps its name (its endpoints and statements name it)",
            );
        }
        if let Some(cidrs) = changes.cidrs {
            vcn.cidrs = cidrs;
        }
        if let Some(attribute) = changes.security_attribute {
            vcn.security_attribute = Some(attribute);
        }
        self.vcns.insert(name.to_owned(), vcn.clone());
        Ok(vcn)
    }

    /// Refused (409, naming them) while endpoints are in it.
    pub fn delete_vcn(&mut self, name: &str) -> anyhow::Result<Vcn> {
        let vcn = self.get_vcn(name)?;
        let members: Vec<&str> = self
            .endpoints
            .values()
            .filter(|endpoint| endpoint.vcn == name)
            .map(|endpoint| endpoint.name.as_str())
            .collect();
        if !members.is_empty() {
            return refuse(
                RefusalKind::Conflict,
                format!(
                    "VCN '{name}' still holds endpoints {}: delete or move them first",
                    members.join(", ")
                ),
            );
        }
        self.vcns.remove(name);
        Ok(vcn)
    }
}

/// What `ImportEndpoints` changed (or, in a dry run, would change).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Imported {
    pub vcns_created: Vec<String>,
    pub vcns_updated: Vec<String>,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deleted: Vec<String>,
}

impl Tenancy {
    /// Brings the VCNs and endpoints in line with the inventory file
    /// `text` (checked as `zpr check` checks it first): what it lists is
    /// created or replaced; with `prune`, endpoints it does not list are
    /// deleted. Namespaces and attributes stay as the API made them.
    pub fn import_endpoints(
        &mut self,
        origin: &str,
        text: &str,
        prune: bool,
    ) -> anyhow::Result<Imported> {
        if let Err(errors) = crate::inventory::Inventory::from_yaml_str(text) {
            return refuse(RefusalKind::Invalid, format!("{origin}: {errors}"));
        }
        let document: serde_yaml::Value = serde_yaml::from_str(text)?;
        let (vcns, endpoints) = super::seed::vcns_and_endpoints(&document);
        let mut imported = Imported::default();
        for vcn in vcns {
            match self.vcns.get(&vcn.name) {
                Some(same) if *same == vcn => {}
                Some(_) => imported.vcns_updated.push(vcn.name.clone()),
                None => imported.vcns_created.push(vcn.name.clone()),
            }
            self.vcns.insert(vcn.name.clone(), vcn);
        }
        let listed: std::collections::BTreeSet<&str> = endpoints
            .iter()
            .map(|endpoint| endpoint.name.as_str())
            .collect();
        let delete = if prune {
            self.endpoints
                .keys()
                .filter(|name| !listed.contains(name.as_str()))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        // The endpoints go through the same edit as the API's: one
        // classification, and attributes applied as tagging applies them.
        let edited = self.edit_endpoints(EndpointEdits {
            upsert: endpoints.into_iter().map(EndpointDetails::from).collect(),
            delete,
            delete_only_on_node: None,
        })?;
        Ok(Imported {
            created: edited.created,
            updated: edited.updated,
            deleted: edited.deleted,
            ..imported
        })
    }
}

/// What `BulkEditEndpoints` takes: endpoints created or replaced, and
/// endpoints deleted, all in one commit (a VM's vNICs as its host's
/// hypervisor hook sees them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointEdits {
    #[serde(default)]
    pub upsert: Vec<EndpointDetails>,
    /// Names; one already gone is not an error (a hook runs again).
    #[serde(default)]
    pub delete: Vec<String>,
    /// Delete only those placed on this node: after a migration the
    /// source host's hook must not delete what now runs elsewhere.
    #[serde(default)]
    pub delete_only_on_node: Option<String>,
}

impl Tenancy {
    pub fn edit_endpoints(&mut self, edits: EndpointEdits) -> anyhow::Result<Imported> {
        let mut edited = Imported::default();
        for details in edits.upsert {
            let name = details.name.clone();
            let before = self.endpoints.remove(&name);
            self.create_endpoint(details)?;
            match before {
                Some(before) if self.endpoints.get(&name) == Some(&before) => {}
                Some(_) => edited.updated.push(name),
                None => edited.created.push(name),
            }
        }
        for name in edits.delete {
            let placed_here = |endpoint: &Arc<StoredEndpoint>| {
                edits
                    .delete_only_on_node
                    .as_ref()
                    .is_none_or(|node| endpoint.node.as_ref() == Some(node))
            };
            if self.endpoints.get(&name).is_some_and(placed_here) {
                self.endpoints.remove(&name);
                edited.deleted.push(name);
            }
        }
        Ok(edited)
    }
}
