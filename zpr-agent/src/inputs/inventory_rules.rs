//! Rule 7: the attributes a policy names, checked against an inventory.
//! Unknown namespaces, keys and list values are errors, for `zpr check
//! --inventory` and the agent alike (an emptied or truncated inventory
//! must not be applied); an attribute that nothing carries is a warning
//! (the statement can never match until something does). It sits above
//! `lang` and `inventory`, which know nothing of each other's checks.

use foldhash::HashMap;

use crate::inventory::{AttributeKind, AttributeStatus, Inventory};
use crate::lang::Diagnostic;
use crate::lang::KeptByBody;
use crate::lang::ast::{Attribute, Endpoint, Policy, Scope, Span, Spanned, Statement};
use crate::lang::attribute::unquoted_text;
use crate::lang::suggest::closest;

/// Rule 7's diagnostics for every attribute `policy` names.
///
/// `clean` holds the statement bodies of an earlier reading of the policy
/// in which rule 7 found nothing against this same inventory (empty: none
/// known): the statements with those bodies are not checked again. It is
/// left holding this reading's when nothing is found, else emptied.
pub fn check_against_inventory(
    policy: &Policy,
    inventory: &Inventory,
    clean: &mut KeptByBody<()>,
) -> Vec<Diagnostic> {
    let unchecked = clean.follow(&policy.statements, |_| ());
    let found = rule_7(
        unchecked.iter().map(|&index| &policy.statements[index]),
        inventory,
    );
    if !found.is_empty() {
        clean.clear();
    }
    found
}

fn rule_7<'a>(
    statements: impl Iterator<Item = &'a Statement>,
    inventory: &Inventory,
) -> Vec<Diagnostic> {
    // A policy names few distinct attributes many times: each is checked
    // once, as written (the check lowercases and looks up).
    let mut checked: HashMap<&Attribute, Option<Diagnostic>> = HashMap::default();
    statements
        .flat_map(attributes_of)
        .filter_map(|(attribute, span)| {
            let diagnostic = checked
                .entry(attribute)
                .or_insert_with(|| check_attribute(attribute, Span::default(), inventory));
            diagnostic
                .clone()
                .map(|diagnostic| Diagnostic { span, ..diagnostic })
        })
        .collect()
}

/// Every attribute a statement names (two to four), with where it stands in
/// the file, in written order. In an array: this runs for every statement.
fn attributes_of<'a>(statement: &'a Statement) -> impl Iterator<Item = (&'a Attribute, Span)> {
    let (first_vcn, second_vcn) = match &statement.scope {
        Scope::SameVcn { vcn } => (vcn, None),
        Scope::CrossVcn {
            source_vcn,
            destination_vcn,
        } => (source_vcn, Some(destination_vcn)),
    };
    let endpoint = |endpoint: &'a Spanned<Endpoint>| match &endpoint.node {
        Endpoint::Attribute(attribute) => Some((attribute, endpoint.span)),
        _ => None,
    };
    let mut attributes = [
        Some((&first_vcn.node, first_vcn.span)),
        second_vcn.map(|vcn| (&vcn.node, vcn.span)),
        endpoint(&statement.source),
        endpoint(&statement.destination),
    ];
    attributes.sort_by_key(|attribute| attribute.map_or(usize::MAX, |(_, span)| span.start));
    attributes
        .into_iter()
        .flatten()
        .map(|(attribute, span)| (attribute, statement.in_file(span)))
}

fn check_attribute(attribute: &Attribute, span: Span, inventory: &Inventory) -> Option<Diagnostic> {
    let text = unquoted_text(attribute);
    let unknown_diagnostic = |message: String, help: String| {
        Some(
            Diagnostic::error(message, span)
                .with_label("not in the inventory")
                .with_help(help),
        )
    };
    let namespace_name = attribute.namespace();
    match inventory.classify(attribute) {
        AttributeStatus::Known if inventory.is_carried(attribute) => None,
        AttributeStatus::Known => Some(
            Diagnostic::warning(
                format!("no VCN or endpoint in the inventory carries '{text}'"),
                span,
            )
            .with_label("carried by nothing")
            .with_help("this statement can never match until something carries the attribute"),
        ),
        AttributeStatus::UnknownNamespace => {
            let names = inventory.namespaces().iter().map(|n| n.name.as_str());
            unknown_diagnostic(
                format!("unknown namespace '{namespace_name}' in '{text}'"),
                suggestion(namespace_name, names, "namespaces"),
            )
        }
        AttributeStatus::UnknownKey => {
            let keys: Vec<&str> = inventory
                .namespace(namespace_name)
                .map(|n| n.attributes.iter().map(|d| d.key.as_str()).collect())
                .unwrap_or_default();
            unknown_diagnostic(
                format!(
                    "namespace '{namespace_name}' has no attribute '{}'",
                    attribute.key
                ),
                suggestion(&attribute.key, keys, "attributes of this namespace"),
            )
        }
        AttributeStatus::ValueNotInList => {
            let values: Vec<&str> = inventory
                .namespace(namespace_name)
                .and_then(|n| n.definition(&attribute.key))
                .map(|definition| match &definition.kind {
                    AttributeKind::List(values) => values.iter().map(String::as_str).collect(),
                    AttributeKind::Freeform => Vec::new(),
                })
                .unwrap_or_default();
            unknown_diagnostic(
                format!(
                    "'{}' is not one of the values of '{namespace_name}.{}'",
                    attribute.value, attribute.key
                ),
                suggestion(&attribute.value, values, "values"),
            )
        }
    }
}

/// "did you mean 'x'?" or the list of what exists.
fn suggestion<'a>(written: &str, known: impl IntoIterator<Item = &'a str>, what: &str) -> String {
    let known: Vec<&str> = known.into_iter().collect();
    match closest(written, known.iter().copied()) {
        Some(near) => format!("did you mean '{near}'?"),
        None if known.is_empty() => format!("the inventory defines no {what}"),
        None => format!("the inventory's {what}: {}", known.join(", ")),
    }
}
