//! The ZPR policy language (see shared/docs/zpr-language.md): lexer,
//! lalrpop grammar, validation of the dialect's rules, diagnostics that say
//! how to fix a mistake, and canonical printing.

pub mod address;
pub mod ast;
pub mod attribute;
mod cst;
mod diagnostic;
mod filter;
mod format;
mod kept_by_body;
mod lexer;
mod names;
mod parser;
mod statement_cache;
pub mod suggest;
mod syntax_error;
mod validate;

use std::path::Path;

pub use ast::*;
pub use diagnostic::{Diagnostic, JsonDiagnostic, Position, Severity, SourceFile, bounded};
pub use format::{format_policy, format_source, format_statement};
pub use kept_by_body::KeptByBody;
pub use statement_cache::StatementCache;

/// A policy file that has no errors, with the warnings found reading it.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub policy: Policy,
    pub warnings: Vec<Diagnostic>,
}

/// Reads a policy file: lexing, parsing and validation rules 1-6 of the
/// dialect. On failure the error holds every error and warning found, in
/// source order.
pub fn parse(policy_name: &str, source: &str) -> Result<Parsed, Vec<Diagnostic>> {
    without_errors(parser::parse_file(policy_name, source))
}

/// [`parse`], re-using the statements of lines `cache` holds from the
/// last text read with it (a file read again after a change), and leaving
/// in it this text's. The result is what [`parse`] gives.
pub fn parse_cached(
    policy_name: &str,
    source: &str,
    cache: &mut StatementCache,
) -> Result<Parsed, Vec<Diagnostic>> {
    without_errors(parser::parse_file_cached(policy_name, source, cache))
}

fn without_errors(parsed: parser::ParsedFile) -> Result<Parsed, Vec<Diagnostic>> {
    if parsed.diagnostics.iter().any(Diagnostic::is_error) {
        Err(parsed.diagnostics)
    } else {
        Ok(Parsed {
            policy: parsed.policy,
            warnings: parsed.diagnostics,
        })
    }
}

/// The policy a file defines is named by the file name without `.zpr`.
pub fn policy_name_from_path(path: &Path) -> String {
    let file_name = path
        .file_name()
        .map_or_else(|| path.to_string_lossy(), |name| name.to_string_lossy());
    file_name
        .strip_suffix(".zpr")
        .unwrap_or(&file_name)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names() {
        assert_eq!(
            policy_name_from_path(Path::new("/a/three-tier.zpr")),
            "three-tier"
        );
        assert_eq!(policy_name_from_path(Path::new("rules.txt")), "rules.txt");
        assert_eq!(policy_name_from_path(Path::new("dir/x.y.zpr")), "x.y");
    }
}
