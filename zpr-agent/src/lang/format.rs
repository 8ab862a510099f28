//! Canonical printing (`zpr fmt`): lower-case keywords except `VCN`,
//! explicit `endpoints` on attribute endpoints (addresses and the OSN
//! keyword stay bare, as in Oracle's own templates), quoted addresses, every
//! filter after the destination behind one `with`, joined by `, `; quotes
//! around an attribute only when its value needs them.

use std::fmt::Write as _;

use crate::lang::address::format_prefix;
use crate::lang::ast::{Attribute, Endpoint, Policy, Scope, Statement};
use crate::lang::attribute::{needs_quotes, quote, unquoted_text};
use crate::lang::diagnostic::{Diagnostic, SourceFile};
use crate::lang::filter::{filter_name, filter_value};
use crate::lang::lexer::{Comment, OSN_KEYWORD};
use crate::lang::parser::parse_file;

pub fn format_statement(statement: &Statement) -> String {
    let filters = format_filters(statement);
    let source = format_endpoint(&statement.source.node);
    let destination = format_endpoint(&statement.destination.node);
    match &statement.scope {
        Scope::SameVcn { vcn } => format!(
            "in {} VCN allow {source} to connect to {destination}{filters}",
            format_attribute(&vcn.node)
        ),
        Scope::CrossVcn {
            source_vcn,
            destination_vcn,
        } => format!(
            "allow {source} in {} VCN to connect to {destination}{filters} in {} VCN",
            format_attribute(&source_vcn.node),
            format_attribute(&destination_vcn.node)
        ),
    }
}

/// Every statement of the policy, one per line (comments are not part of
/// the AST; [`format_source`] keeps them).
pub fn format_policy(policy: &Policy) -> String {
    policy
        .statements
        .iter()
        .fold(String::new(), |mut out, statement| {
            out += &format_statement(statement);
            out.push('\n');
            out
        })
}

/// The canonical text of a policy file, keeping its comments (each on its
/// own line, before the statement it was written in) and single blank
/// lines between paragraphs. Files with errors are not formatted.
pub fn format_source(policy_name: &str, source: &str) -> Result<String, Vec<Diagnostic>> {
    let parsed = parse_file(policy_name, source);
    if parsed.diagnostics.iter().any(Diagnostic::is_error) {
        return Err(parsed.diagnostics);
    }
    let file = SourceFile::new(policy_name, source);
    let mut statements = parsed.policy.statements.iter().peekable();
    let mut comments = parsed.comments.iter().peekable();
    let mut out = String::new();
    let mut blank_pending = false;
    for (index, line) in source.lines().enumerate() {
        let line_number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        if let Some(statement) = statements.next_if(|s| s.id.line == line_number) {
            let end = statement.in_file(statement.span).end;
            let last_line = file.line_index(end.saturating_sub(1)) + 1;
            while let Some(comment) = comments.next_if(|c| c.line as usize <= last_line) {
                push_line(&mut out, comment_text(source, comment), &mut blank_pending);
            }
            push_line(&mut out, &format_statement(statement), &mut blank_pending);
        } else if let Some(comment) = comments.next_if(|c| c.line == line_number) {
            push_line(&mut out, comment_text(source, comment), &mut blank_pending);
        } else if line.trim().is_empty() {
            blank_pending = true;
        }
    }
    Ok(out)
}

/// Appends a line, after one blank line if blank lines preceded it.
fn push_line(out: &mut String, text: &str, blank_pending: &mut bool) {
    if std::mem::take(blank_pending) && !out.is_empty() {
        out.push('\n');
    }
    out.push_str(text);
    out.push('\n');
}

fn comment_text<'a>(source: &'a str, comment: &Comment) -> &'a str {
    source[comment.span.start..comment.span.end].trim_end()
}

fn format_attribute(attribute: &Attribute) -> String {
    let text = unquoted_text(attribute);
    if needs_quotes(attribute) {
        quote(&text)
    } else {
        text
    }
}

fn format_endpoint(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Attribute(attribute) => format!("{} endpoints", format_attribute(attribute)),
        Endpoint::Prefix(prefix) => format!("'{}'", format_prefix(prefix)),
        Endpoint::AllEndpoints => "all-endpoints".to_owned(),
        Endpoint::OsnServices => format!("'{OSN_KEYWORD}'"),
    }
}

fn format_filters(statement: &Statement) -> String {
    let mut out = String::new();
    for (index, filter) in statement.filters.iter().enumerate() {
        let separator = if index == 0 { " with " } else { ", " };
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{separator}{}='{}'",
            filter_name(&filter.node),
            filter_value(&filter.node)
        );
    }
    out
}
