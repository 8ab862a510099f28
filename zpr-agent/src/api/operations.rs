//! The API's operations (OCI names), how requests route to them, and what
//! IAM permission each needs (shared/docs/reference/oci-zpr-iam.md §3).

use crate::iam::{Permission, ResourceType};

/// Paths start with the API version, as OCI's do.
pub const API_VERSION: &str = "/20240301";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    ListZprPolicies,
    GetZprPolicy {
        id: String,
    },
    CreateZprPolicy,
    UpdateZprPolicy {
        id: String,
    },
    DeleteZprPolicy {
        id: String,
    },
    GetConfiguration,
    UpdateConfiguration,
    ListSecurityAttributeNamespaces,
    GetSecurityAttributeNamespace {
        namespace: String,
    },
    CreateSecurityAttributeNamespace,
    /// Also retires and reactivates (`isRetired`).
    UpdateSecurityAttributeNamespace {
        namespace: String,
    },
    DeleteSecurityAttributeNamespace {
        namespace: String,
    },
    CascadeDeleteSecurityAttributeNamespace {
        namespace: String,
    },
    ListSecurityAttributes {
        namespace: String,
    },
    GetSecurityAttribute {
        namespace: String,
        name: String,
    },
    CreateSecurityAttribute {
        namespace: String,
    },
    UpdateSecurityAttribute {
        namespace: String,
        name: String,
    },
    DeleteSecurityAttribute {
        namespace: String,
        name: String,
    },
    /// Needs `use` on the namespace of each attribute applied.
    ApplySecurityAttributes {
        endpoint: String,
    },
    RemoveSecurityAttributes {
        endpoint: String,
    },
    ListEndpoints,
    GetEndpoint {
        name: String,
    },
    /// Needs `use` on the namespace of each attribute given too.
    CreateEndpoint,
    /// Changes, moves (a new node) or retags; `use` on the namespace of
    /// each attribute added or removed.
    UpdateEndpoint {
        name: String,
    },
    DeleteEndpoint {
        name: String,
    },
    /// Brings the endpoints (and VCNs) in line with an inventory file, in
    /// one commit; `prune` deletes those the file does not list.
    ImportEndpoints,
    /// Creates or replaces, and deletes, endpoints in one commit.
    BulkEditEndpoints,
    ListVcns,
    GetVcn {
        name: String,
    },
    CreateVcn,
    UpdateVcn {
        name: String,
    },
    DeleteVcn {
        name: String,
    },
    /// Lists the work requests the caller may see.
    ListWorkRequests,
    GetWorkRequest {
        id: String,
    },
}

impl Operation {
    /// The operation a request asks for, or why there is none.
    pub fn route(method: &str, path: &str) -> Result<Operation, String> {
        let Some(rest) = path.strip_prefix(API_VERSION) else {
            return Err(format!("paths start with {API_VERSION}, not '{path}'"));
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        use Operation::*;
        let owned = |s: &str| s.to_owned();
        let operation = match (method, segments.as_slice()) {
            ("GET", ["zprPolicies"]) => ListZprPolicies,
            ("POST", ["zprPolicies"]) => CreateZprPolicy,
            ("GET", ["zprPolicies", id]) => GetZprPolicy { id: owned(id) },
            ("PUT", ["zprPolicies", id]) => UpdateZprPolicy { id: owned(id) },
            ("DELETE", ["zprPolicies", id]) => DeleteZprPolicy { id: owned(id) },
            ("GET", ["configuration"]) => GetConfiguration,
            ("PUT", ["configuration"]) => UpdateConfiguration,
            ("GET", ["securityAttributeNamespaces"]) => ListSecurityAttributeNamespaces,
            ("POST", ["securityAttributeNamespaces"]) => CreateSecurityAttributeNamespace,
            ("GET", ["securityAttributeNamespaces", ns]) => GetSecurityAttributeNamespace {
                namespace: owned(ns),
            },
            ("PUT", ["securityAttributeNamespaces", ns]) => UpdateSecurityAttributeNamespace {
                namespace: owned(ns),
            },
            ("DELETE", ["securityAttributeNamespaces", ns]) => DeleteSecurityAttributeNamespace {
                namespace: owned(ns),
            },
            (
                "POST",
                [
                    "securityAttributeNamespaces",
                    ns,
                    "actions",
                    "cascadeDelete",
                ],
            ) => CascadeDeleteSecurityAttributeNamespace {
                namespace: owned(ns),
            },
            ("GET", ["securityAttributeNamespaces", ns, "securityAttributes"]) => {
                ListSecurityAttributes {
                    namespace: owned(ns),
                }
            }
            ("POST", ["securityAttributeNamespaces", ns, "securityAttributes"]) => {
                CreateSecurityAttribute {
                    namespace: owned(ns),
                }
            }
            (
                "GET",
                [
                    "securityAttributeNamespaces",
                    ns,
                    "securityAttributes",
                    name,
                ],
            ) => GetSecurityAttribute {
                namespace: owned(ns),
                name: owned(name),
            },
            (
                "PUT",
                [
                    "securityAttributeNamespaces",
                    ns,
                    "securityAttributes",
                    name,
                ],
            ) => UpdateSecurityAttribute {
                namespace: owned(ns),
                name: owned(name),
            },
            (
                "DELETE",
                [
                    "securityAttributeNamespaces",
                    ns,
                    "securityAttributes",
                    name,
                ],
            ) => DeleteSecurityAttribute {
                namespace: owned(ns),
                name: owned(name),
            },
            ("POST", ["endpoints", endpoint, "actions", "applySecurityAttributes"]) => {
                ApplySecurityAttributes {
                    endpoint: owned(endpoint),
                }
            }
            ("POST", ["endpoints", endpoint, "actions", "removeSecurityAttributes"]) => {
                RemoveSecurityAttributes {
                    endpoint: owned(endpoint),
                }
            }
            ("GET", ["endpoints"]) => ListEndpoints,
            ("POST", ["endpoints"]) => CreateEndpoint,
            ("POST", ["endpoints", "actions", "import"]) => ImportEndpoints,
            ("POST", ["endpoints", "actions", "bulkEdit"]) => BulkEditEndpoints,
            ("GET", ["endpoints", name]) => GetEndpoint { name: owned(name) },
            ("PUT", ["endpoints", name]) => UpdateEndpoint { name: owned(name) },
            ("DELETE", ["endpoints", name]) => DeleteEndpoint { name: owned(name) },
            ("GET", ["vcns"]) => ListVcns,
            ("POST", ["vcns"]) => CreateVcn,
            ("GET", ["vcns", name]) => GetVcn { name: owned(name) },
            ("PUT", ["vcns", name]) => UpdateVcn { name: owned(name) },
            ("DELETE", ["vcns", name]) => DeleteVcn { name: owned(name) },
            ("GET", ["workRequests"]) => ListWorkRequests,
            ("GET", ["workRequests", id]) => GetWorkRequest { id: owned(id) },
            _ => return Err(format!("no operation is {method} {path}")),
        };
        Ok(operation)
    }

    pub fn name(&self) -> &'static str {
        use Operation::*;
        match self {
            ListZprPolicies => "ListZprPolicies",
            GetZprPolicy { .. } => "GetZprPolicy",
            CreateZprPolicy => "CreateZprPolicy",
            UpdateZprPolicy { .. } => "UpdateZprPolicy",
            DeleteZprPolicy { .. } => "DeleteZprPolicy",
            GetConfiguration => "GetConfiguration",
            UpdateConfiguration => "UpdateConfiguration",
            ListSecurityAttributeNamespaces => "ListSecurityAttributeNamespaces",
            GetSecurityAttributeNamespace { .. } => "GetSecurityAttributeNamespace",
            CreateSecurityAttributeNamespace => "CreateSecurityAttributeNamespace",
            UpdateSecurityAttributeNamespace { .. } => "UpdateSecurityAttributeNamespace",
            DeleteSecurityAttributeNamespace { .. } => "DeleteSecurityAttributeNamespace",
            CascadeDeleteSecurityAttributeNamespace { .. } => {
                "CascadeDeleteSecurityAttributeNamespace"
            }
            ListSecurityAttributes { .. } => "ListSecurityAttributes",
            GetSecurityAttribute { .. } => "GetSecurityAttribute",
            CreateSecurityAttribute { .. } => "CreateSecurityAttribute",
            UpdateSecurityAttribute { .. } => "UpdateSecurityAttribute",
            DeleteSecurityAttribute { .. } => "DeleteSecurityAttribute",
            ApplySecurityAttributes { .. } => "ApplySecurityAttributes",
            RemoveSecurityAttributes { .. } => "RemoveSecurityAttributes",
            ListEndpoints => "ListEndpoints",
            GetEndpoint { .. } => "GetEndpoint",
            CreateEndpoint => "CreateEndpoint",
            UpdateEndpoint { .. } => "UpdateEndpoint",
            DeleteEndpoint { .. } => "DeleteEndpoint",
            ImportEndpoints => "ImportEndpoints",
            BulkEditEndpoints => "BulkEditEndpoints",
            ListVcns => "ListVcns",
            GetVcn { .. } => "GetVcn",
            CreateVcn => "CreateVcn",
            UpdateVcn { .. } => "UpdateVcn",
            DeleteVcn { .. } => "DeleteVcn",
            ListWorkRequests => "ListWorkRequests",
            GetWorkRequest { .. } => "GetWorkRequest",
        }
    }

    /// The permission the operation needs on its target, for operations
    /// with one fixed permission (the others check per item).
    pub fn permission(&self) -> Option<Permission> {
        use Operation::*;
        use Permission::*;
        Some(match self {
            ListZprPolicies => ZprPolicyInspect,
            GetZprPolicy { .. } => ZprPolicyRead,
            CreateZprPolicy => ZprPolicyCreate,
            UpdateZprPolicy { .. } => ZprPolicyUpdate,
            DeleteZprPolicy { .. } => ZprPolicyDelete,
            GetConfiguration => ZprConfigurationRead,
            UpdateConfiguration => ZprConfigurationUpdate,
            GetSecurityAttributeNamespace { .. } | GetSecurityAttribute { .. } => {
                SecurityAttributeNamespaceRead
            }
            ListSecurityAttributes { .. } => SecurityAttributeNamespaceInspect,
            CreateSecurityAttributeNamespace => SecurityAttributeNamespaceCreate,
            UpdateSecurityAttributeNamespace { .. }
            | CreateSecurityAttribute { .. }
            | UpdateSecurityAttribute { .. } => SecurityAttributeNamespaceUpdate,
            DeleteSecurityAttributeNamespace { .. }
            | CascadeDeleteSecurityAttributeNamespace { .. }
            | DeleteSecurityAttribute { .. } => SecurityAttributeNamespaceDelete,
            ListEndpoints | GetEndpoint { .. } => VnicRead,
            DeleteEndpoint { .. } => VnicDelete,
            ListVcns | GetVcn { .. } => VcnRead,
            CreateVcn => VcnCreate,
            UpdateVcn { .. } => VcnUpdate,
            DeleteVcn { .. } => VcnDelete,
            ListSecurityAttributeNamespaces
            | ApplySecurityAttributes { .. }
            | RemoveSecurityAttributes { .. }
            | CreateEndpoint
            | UpdateEndpoint { .. }
            | ImportEndpoints
            | BulkEditEndpoints
            | ListWorkRequests
            | GetWorkRequest { .. } => return None,
        })
    }

    /// The namespace named in the path, for namespace-scoped operations.
    pub fn namespace(&self) -> Option<&str> {
        use Operation::*;
        match self {
            GetSecurityAttributeNamespace { namespace }
            | UpdateSecurityAttributeNamespace { namespace }
            | DeleteSecurityAttributeNamespace { namespace }
            | CascadeDeleteSecurityAttributeNamespace { namespace }
            | ListSecurityAttributes { namespace }
            | GetSecurityAttribute { namespace, .. }
            | CreateSecurityAttribute { namespace }
            | UpdateSecurityAttribute { namespace, .. }
            | DeleteSecurityAttribute { namespace, .. } => Some(namespace),
            _ => None,
        }
    }

    /// Whether it changes anything (and so makes a work request, an audit
    /// record and a new generation).
    /// Answers with one resource that has an etag: a read of one, or a
    /// change that leaves one (deletions and endpoint attribute changes
    /// leave none to compare).
    pub fn has_etag(&self) -> bool {
        use Operation::*;
        matches!(
            self,
            GetZprPolicy { .. }
                | CreateZprPolicy
                | UpdateZprPolicy { .. }
                | GetConfiguration
                | UpdateConfiguration
                | GetSecurityAttributeNamespace { .. }
                | CreateSecurityAttributeNamespace
                | UpdateSecurityAttributeNamespace { .. }
                | GetSecurityAttribute { .. }
                | CreateSecurityAttribute { .. }
                | UpdateSecurityAttribute { .. }
                | GetEndpoint { .. }
                | CreateEndpoint
                | UpdateEndpoint { .. }
                | GetVcn { .. }
                | CreateVcn
                | UpdateVcn { .. }
        )
    }

    pub fn mutates(&self) -> bool {
        use Operation::*;
        !matches!(
            self,
            ListZprPolicies
                | GetZprPolicy { .. }
                | GetConfiguration
                | ListSecurityAttributeNamespaces
                | GetSecurityAttributeNamespace { .. }
                | ListSecurityAttributes { .. }
                | GetSecurityAttribute { .. }
                | ListEndpoints
                | GetEndpoint { .. }
                | ListVcns
                | GetVcn { .. }
                | ListWorkRequests
                | GetWorkRequest { .. }
        )
    }

    /// The IAM resource type the operation (and its work request) is about.
    pub fn resource_type(&self) -> ResourceType {
        use Operation::*;
        match self {
            ListZprPolicies
            | GetZprPolicy { .. }
            | CreateZprPolicy
            | UpdateZprPolicy { .. }
            | DeleteZprPolicy { .. } => ResourceType::ZprPolicy,
            GetConfiguration | UpdateConfiguration => ResourceType::ZprConfiguration,
            ListEndpoints
            | GetEndpoint { .. }
            | CreateEndpoint
            | UpdateEndpoint { .. }
            | DeleteEndpoint { .. }
            | ImportEndpoints
            | BulkEditEndpoints => ResourceType::Vnics,
            ListVcns | GetVcn { .. } | CreateVcn | UpdateVcn { .. } | DeleteVcn { .. } => {
                ResourceType::Vcns
            }
            _ => ResourceType::SecurityAttributeNamespace,
        }
    }
}

/// What it takes to see a work request: read on its resource type
/// (inspect, for security-attribute namespaces, as the reference's table says).
pub fn work_request_permission(resource_type: &str) -> Permission {
    match resource_type {
        "zpr-policy" => Permission::ZprPolicyRead,
        "zpr-configuration" => Permission::ZprConfigurationRead,
        "vnics" => Permission::VnicRead,
        "vcns" => Permission::VcnRead,
        _ => Permission::SecurityAttributeNamespaceInspect,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            Operation::route("GET", "/20240301/zprPolicies"),
            Ok(Operation::ListZprPolicies)
        );
        assert_eq!(
            Operation::route(
                "POST",
                "/20240301/securityAttributeNamespaces/apps/actions/cascadeDelete"
            ),
            Ok(Operation::CascadeDeleteSecurityAttributeNamespace {
                namespace: "apps".into()
            })
        );
        assert!(Operation::route("PATCH", "/20240301/zprPolicies").is_err());
        assert!(Operation::route("GET", "/zprPolicies").is_err());
    }
}
