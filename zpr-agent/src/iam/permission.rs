//! The IAM resource types, verbs and permissions of OCI ZPR
//! (shared/docs/reference/oci-zpr-iam.md §2-3), and of OCI's core
//! networking for endpoints (`vnics`) and VCNs (`vcns`, in the aggregate
//! `virtual-network-family`): which permissions each verb grants on each
//! type. OCI documents `vcns` as inspect VCN_READ, manage the rest; its
//! `vnics` row was not found verbatim, so zpr follows the same pattern and
//! lets `use` move and change an endpoint (VNIC_UPDATE), as `use vnics`
//! lets an instance's VNICs be changed. Verbs are cumulative: each grants what the one
//! before it does, plus its own.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verb {
    Inspect,
    Read,
    Use,
    Manage,
}

impl Verb {
    pub const ALL: [Verb; 4] = [Verb::Inspect, Verb::Read, Verb::Use, Verb::Manage];

    pub fn name(self) -> &'static str {
        match self {
            Verb::Inspect => "inspect",
            Verb::Read => "read",
            Verb::Use => "use",
            Verb::Manage => "manage",
        }
    }
}

/// The individual resource types permissions belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    ZprPolicy,
    ZprConfiguration,
    /// Namespaces and the attributes inside them.
    SecurityAttributeNamespace,
    /// Endpoints (a workload's vNIC).
    Vnics,
    Vcns,
}

impl ResourceType {
    pub const ALL: [ResourceType; 5] = [
        ResourceType::ZprPolicy,
        ResourceType::ZprConfiguration,
        ResourceType::SecurityAttributeNamespace,
        ResourceType::Vnics,
        ResourceType::Vcns,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ResourceType::ZprPolicy => "zpr-policy",
            ResourceType::ZprConfiguration => "zpr-configuration",
            ResourceType::SecurityAttributeNamespace => "security-attribute-namespace",
            ResourceType::Vnics => "vnics",
            ResourceType::Vcns => "vcns",
        }
    }
}

/// What a statement names: an individual type or an aggregate of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceSelector {
    Individual(ResourceType),
    /// `zpr-family`: every ZPR type.
    ZprFamily,
    /// `security-attribute-family`: the security-attribute types.
    SecurityAttributeFamily,
    /// `virtual-network-family`: vnics and vcns.
    VirtualNetworkFamily,
    /// `all-resources`.
    AllResources,
}

impl ResourceSelector {
    /// Every spelling a statement may use, with its meaning.
    pub const NAMES: [(&'static str, ResourceSelector); 9] = [
        (
            "zpr-policy",
            ResourceSelector::Individual(ResourceType::ZprPolicy),
        ),
        (
            "zpr-configuration",
            ResourceSelector::Individual(ResourceType::ZprConfiguration),
        ),
        (
            "security-attribute-namespace",
            ResourceSelector::Individual(ResourceType::SecurityAttributeNamespace),
        ),
        ("vnics", ResourceSelector::Individual(ResourceType::Vnics)),
        ("vcns", ResourceSelector::Individual(ResourceType::Vcns)),
        ("zpr-family", ResourceSelector::ZprFamily),
        (
            "security-attribute-family",
            ResourceSelector::SecurityAttributeFamily,
        ),
        (
            "virtual-network-family",
            ResourceSelector::VirtualNetworkFamily,
        ),
        ("all-resources", ResourceSelector::AllResources),
    ];

    pub fn covers(self, resource: ResourceType) -> bool {
        match self {
            ResourceSelector::Individual(individual) => individual == resource,
            ResourceSelector::AllResources => true,
            ResourceSelector::ZprFamily => {
                !matches!(resource, ResourceType::Vnics | ResourceType::Vcns)
            }
            ResourceSelector::SecurityAttributeFamily => {
                resource == ResourceType::SecurityAttributeNamespace
            }
            ResourceSelector::VirtualNetworkFamily => {
                matches!(resource, ResourceType::Vnics | ResourceType::Vcns)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ZprPolicyInspect,
    ZprPolicyRead,
    ZprPolicyUpdate,
    ZprPolicyCreate,
    ZprPolicyDelete,
    ZprConfigurationRead,
    ZprConfigurationUpdate,
    ZprConfigurationCreate,
    ZprConfigurationDelete,
    SecurityAttributeNamespaceInspect,
    SecurityAttributeNamespaceRead,
    SecurityAttributeNamespaceUse,
    SecurityAttributeNamespaceCreate,
    SecurityAttributeNamespaceDelete,
    SecurityAttributeNamespaceMove,
    SecurityAttributeNamespaceUpdate,
    VnicRead,
    VnicUpdate,
    VnicCreate,
    VnicDelete,
    VcnRead,
    VcnCreate,
    VcnUpdate,
    VcnDelete,
}

impl Permission {
    /// The resource type and the verb that first grants this permission.
    pub fn granted_by(self) -> (ResourceType, Verb) {
        use Permission::*;
        use ResourceType::*;
        match self {
            ZprPolicyInspect => (ZprPolicy, Verb::Inspect),
            ZprPolicyRead => (ZprPolicy, Verb::Read),
            ZprPolicyUpdate => (ZprPolicy, Verb::Use),
            ZprPolicyCreate | ZprPolicyDelete => (ZprPolicy, Verb::Manage),
            ZprConfigurationRead => (ZprConfiguration, Verb::Read),
            ZprConfigurationUpdate => (ZprConfiguration, Verb::Use),
            ZprConfigurationCreate | ZprConfigurationDelete => (ZprConfiguration, Verb::Manage),
            SecurityAttributeNamespaceInspect => (SecurityAttributeNamespace, Verb::Inspect),
            SecurityAttributeNamespaceRead => (SecurityAttributeNamespace, Verb::Read),
            SecurityAttributeNamespaceUse => (SecurityAttributeNamespace, Verb::Use),
            SecurityAttributeNamespaceCreate
            | SecurityAttributeNamespaceDelete
            | SecurityAttributeNamespaceMove
            | SecurityAttributeNamespaceUpdate => (SecurityAttributeNamespace, Verb::Manage),
            VnicRead => (Vnics, Verb::Inspect),
            VnicUpdate => (Vnics, Verb::Use),
            VnicCreate | VnicDelete => (Vnics, Verb::Manage),
            VcnRead => (Vcns, Verb::Inspect),
            VcnCreate | VcnUpdate | VcnDelete => (Vcns, Verb::Manage),
        }
    }

    /// Whether `verb` on `resource` grants this permission. Besides its own
    /// type's, `manage security-attribute-namespace` also grants
    /// ZPR_CONFIGURATION_DELETE, as the reference table lists it.
    pub fn granted(self, resource: ResourceType, verb: Verb) -> bool {
        let (own_type, least_verb) = self.granted_by();
        (own_type == resource && verb >= least_verb)
            || (self == Permission::ZprConfigurationDelete
                && resource == ResourceType::SecurityAttributeNamespace
                && verb == Verb::Manage)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Permission::*;
        f.write_str(match self {
            ZprPolicyInspect => "ZPR_POLICY_INSPECT",
            ZprPolicyRead => "ZPR_POLICY_READ",
            ZprPolicyUpdate => "ZPR_POLICY_UPDATE",
            ZprPolicyCreate => "ZPR_POLICY_CREATE",
            ZprPolicyDelete => "ZPR_POLICY_DELETE",
            ZprConfigurationRead => "ZPR_CONFIGURATION_READ",
            ZprConfigurationUpdate => "ZPR_CONFIGURATION_UPDATE",
            ZprConfigurationCreate => "ZPR_CONFIGURATION_CREATE",
            ZprConfigurationDelete => "ZPR_CONFIGURATION_DELETE",
            SecurityAttributeNamespaceInspect => "SECURITY_ATTRIBUTE_NAMESPACE_INSPECT",
            SecurityAttributeNamespaceRead => "SECURITY_ATTRIBUTE_NAMESPACE_READ",
            SecurityAttributeNamespaceUse => "SECURITY_ATTRIBUTE_NAMESPACE_USE",
            SecurityAttributeNamespaceCreate => "SECURITY_ATTRIBUTE_NAMESPACE_CREATE",
            SecurityAttributeNamespaceDelete => "SECURITY_ATTRIBUTE_NAMESPACE_DELETE",
            SecurityAttributeNamespaceMove => "SECURITY_ATTRIBUTE_NAMESPACE_MOVE",
            SecurityAttributeNamespaceUpdate => "SECURITY_ATTRIBUTE_NAMESPACE_UPDATE",
            VnicRead => "VNIC_READ",
            VnicUpdate => "VNIC_UPDATE",
            VnicCreate => "VNIC_CREATE",
            VnicDelete => "VNIC_DELETE",
            VcnRead => "VCN_READ",
            VcnCreate => "VCN_CREATE",
            VcnUpdate => "VCN_UPDATE",
            VcnDelete => "VCN_DELETE",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_cumulative() {
        let policy = ResourceType::ZprPolicy;
        assert!(!Permission::ZprPolicyRead.granted(policy, Verb::Inspect));
        assert!(Permission::ZprPolicyRead.granted(policy, Verb::Read));
        assert!(Permission::ZprPolicyInspect.granted(policy, Verb::Manage));
        assert!(!Permission::ZprPolicyCreate.granted(policy, Verb::Use));
        assert!(Permission::ZprPolicyUpdate.granted(policy, Verb::Use));
        // inspect on zpr-configuration grants nothing.
        assert!(
            !Permission::ZprConfigurationRead
                .granted(ResourceType::ZprConfiguration, Verb::Inspect)
        );
        assert!(!Permission::ZprPolicyRead.granted(ResourceType::ZprConfiguration, Verb::Manage));
    }
}
