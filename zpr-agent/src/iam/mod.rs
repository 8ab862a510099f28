//! OCI-style IAM for the management API: who may do what to which ZPR
//! resources. Principals are the OS identity of the caller (see
//! [`principal`]); statements (`Allow group G to manage zpr-policy in
//! tenancy`) come from a file and `--bootstrap-admin`. Everything not
//! granted is denied; root is nobody special.

pub mod parse;
pub mod permission;
pub mod principal;

use std::path::Path;

use crate::inputs::open::Symlinks;
use crate::inputs::text::read_text;
use crate::lang::{Severity, SourceFile, Span};
pub use permission::{Permission, ResourceSelector, ResourceType, Verb};
pub use principal::Principal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    AnyUser,
    /// OS group names; any one of them matches.
    Groups(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `target.security-attribute-namespace.name = 'x'` (or `!=`).
    NamespaceName { equal: bool, namespace: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub subject: Subject,
    pub verb: Verb,
    pub resource: ResourceSelector,
    pub condition: Option<Condition>,
    pub span: Span,
}

impl Statement {
    /// `manage` on every ZPR resource type for `group`.
    pub fn admin(group: &str) -> Statement {
        Statement {
            subject: Subject::Groups(vec![group.to_owned()]),
            verb: Verb::Manage,
            resource: ResourceSelector::AllResources,
            condition: None,
            span: Span::default(),
        }
    }

    /// Whether this statement gives `principal` `permission`; `namespace`
    /// is the security-attribute namespace the request targets, if any.
    fn grants(
        &self,
        principal: &Principal,
        permission: Permission,
        namespace: Option<&str>,
    ) -> bool {
        let subject = match &self.subject {
            Subject::AnyUser => true,
            Subject::Groups(groups) => groups.iter().any(|group| principal.in_group(group)),
        };
        let condition = match &self.condition {
            None => true,
            // A condition on the target namespace holds only for requests
            // that have one (OCI: the variable is absent otherwise).
            Some(Condition::NamespaceName {
                equal,
                namespace: wanted,
            }) => namespace.is_some_and(|target| target.eq_ignore_ascii_case(wanted) == *equal),
        };
        subject
            && condition
            && ResourceType::ALL
                .into_iter()
                // Usually only the permission's own type grants it; see
                // [`Permission::granted`] for the exception.
                .any(|granting| {
                    self.resource.covers(granting) && permission.granted(granting, self.verb)
                })
    }
}

/// The statements in force.
#[derive(Debug, Clone, Default)]
pub struct IamPolicy {
    pub statements: Vec<Statement>,
}

impl IamPolicy {
    /// Reads a statements file; diagnostics are rendered like `zpr check`'s
    /// (warnings go to the log through the returned text).
    pub fn read(path: &Path) -> anyhow::Result<(IamPolicy, String)> {
        let source = read_text(path, "IAM statements", Symlinks::Followed)?;
        let file = path.display().to_string();
        let (statements, warnings) = IamPolicy::parse(&file, &source)?;
        Ok((IamPolicy { statements }, warnings))
    }

    /// Parses statements; on error, the rendered diagnostics.
    pub fn parse(file: &str, source: &str) -> anyhow::Result<(Vec<Statement>, String)> {
        let rendered = SourceFile::new(file, source);
        match parse::parse(source) {
            Ok((statements, warnings)) => Ok((
                statements,
                warnings.iter().map(|w| rendered.render(w)).collect(),
            )),
            Err(diagnostics) => {
                let errors = diagnostics
                    .iter()
                    .filter(|d| d.severity == Severity::Error)
                    .count();
                let text: String = diagnostics.iter().map(|d| rendered.render(d)).collect();
                anyhow::bail!("{text}{errors} error(s) in IAM statements {file}")
            }
        }
    }

    pub fn allows(
        &self,
        principal: &Principal,
        permission: Permission,
        namespace: Option<&str>,
    ) -> bool {
        self.statements
            .iter()
            .any(|statement| statement.grants(principal, permission, namespace))
    }
}

#[cfg(test)]
mod tests;
