//! Security-attribute text: `namespace.key:value`, bare or quoted
//! (section 3 of the dialect, and rule 6's name lengths).

use std::sync::Arc;

use crate::lang::ast::{Attribute, Span};
use crate::lang::diagnostic::Diagnostic;
use crate::lang::lexer::{Tok, classify_word};

/// Longest namespace or key, in characters.
pub const NAME_MAX: usize = 100;
/// Longest value, in characters.
pub const VALUE_MAX: usize = 255;

const NAME_CHARS: &str = "A-Z a-z 0-9 - _";

/// How an attribute was written: bare values allow fewer characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Bare,
    Quoted,
}

pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn is_bare_value_char(c: char) -> bool {
    is_name_char(c) || c == ':'
}

/// `text` inside single quotes, apostrophes doubled.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The attribute as written without quotes: `ns.key:value` or `key:value`.
pub fn unquoted_text(attribute: &Attribute) -> String {
    match &attribute.namespace {
        Some(namespace) => format!("{namespace}.{}:{}", attribute.key, attribute.value),
        None => format!("{}:{}", attribute.key, attribute.value),
    }
}

/// True when the attribute cannot be written bare: its value has characters
/// outside the bare set, or the bare text would read as something else.
pub fn needs_quotes(attribute: &Attribute) -> bool {
    !attribute.value.chars().all(is_bare_value_char)
        || classify_word(&unquoted_text(attribute)) != Tok::Attribute
}

/// Splits and checks attribute text (quotes already removed). `span` is
/// where the whole attribute stands, for the diagnostic.
pub fn parse_attribute(text: &str, written: Written, span: Span) -> Result<Attribute, Diagnostic> {
    parse_attribute_interned(text, written, span, &mut |name| Arc::from(name))
}

/// [`parse_attribute`], taking each name and value from `intern`: a policy
/// names the same few attributes over and over, and one copy of each
/// keeps statements small and cheap to copy.
pub fn parse_attribute_interned(
    text: &str,
    written: Written,
    span: Span,
    intern: &mut impl FnMut(&str) -> Arc<str>,
) -> Result<Attribute, Diagnostic> {
    let error =
        |message: String, help: String| Err(Diagnostic::error(message, span).with_help(help));
    let Some((name, value)) = text.split_once(':') else {
        return error(
            format!("'{text}' is not a security attribute"),
            "a security attribute is written key:value or namespace.key:value, \
             e.g. 'app:web' or 'finance.app:web'"
                .to_owned(),
        );
    };
    let (namespace, key) = match name.split_once('.') {
        None => (None, name),
        Some((namespace, key)) if !key.contains('.') => (Some(namespace), key),
        Some((namespace, key)) => {
            return error(
                format!("the key of '{text}' would contain '.'"),
                format!(
                    "a period separates the namespace from the key, so '{name}' reads as \
                     namespace '{namespace}' and key '{key}'; namespaces and keys use only \
                     {NAME_CHARS}"
                ),
            );
        }
    };
    for (part, what) in [(namespace, "namespace"), (Some(key), "key")] {
        let Some(part) = part else { continue };
        if part.is_empty() {
            return error(
                format!("the {what} of '{text}' is empty"),
                format!(
                    "write the {what} before the '{}'",
                    if what == "key" { ':' } else { '.' }
                ),
            );
        }
        if let Some(bad) = part.chars().find(|&c| !is_name_char(c)) {
            return error(
                format!("'{bad}' is not allowed in the {what} '{part}'"),
                format!("namespaces and keys use only {NAME_CHARS}"),
            );
        }
        let length = part.chars().count();
        if length > NAME_MAX {
            return error(
                format!("the {what} of this attribute is {length} characters long"),
                format!("a {what} has at most {NAME_MAX} characters"),
            );
        }
    }
    if value.is_empty() {
        return error(
            format!("the value of '{text}' is empty"),
            "write the value after the ':', e.g. 'app:web'".to_owned(),
        );
    }
    if written == Written::Bare
        && let Some(bad) = value.chars().find(|&c| !is_bare_value_char(c))
    {
        return error(
            format!("'{bad}' in a value needs the attribute quoted"),
            format!("quote the value: {}", quote(text)),
        );
    }
    let length = value.chars().count();
    if length > VALUE_MAX {
        return error(
            format!("the value of this attribute is {length} characters long"),
            format!("a value has at most {VALUE_MAX} characters"),
        );
    }
    Ok(Attribute {
        namespace: namespace.map(&mut *intern),
        key: intern(key),
        value: intern(value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, written: Written) -> Result<Attribute, String> {
        parse_attribute(text, written, Span::default()).map_err(|d| d.message)
    }

    #[test]
    fn shapes() {
        let attribute = parse("networks:net1:App1", Written::Bare).unwrap();
        assert_eq!(
            (attribute.namespace(), &*attribute.key, &*attribute.value),
            ("oracle-zpr", "networks", "net1:App1")
        );
        let attribute = parse("my-corp.biz:dev and test db", Written::Quoted).unwrap();
        assert_eq!(attribute.namespace.as_deref(), Some("my-corp"));
        assert!(needs_quotes(&attribute));
        assert!(!needs_quotes(&parse("app:web", Written::Bare).unwrap()));
    }

    #[test]
    fn rejections_name_the_problem() {
        for (text, expected) in [
            ("my.corp.biz:hr", "would contain '.'"),
            ("app$:web", "'$' is not allowed in the key"),
            (":a", "key of ':a' is empty"),
            (".k:a", "namespace of '.k:a' is empty"),
            ("net:", "value of 'net:' is empty"),
            ("net", "not a security attribute"),
            ("app:v1.2", "'.' in a value needs the attribute quoted"),
        ] {
            let message = parse(text, Written::Bare).unwrap_err();
            assert!(message.contains(expected), "{text}: {message}");
        }
        let long_key = format!("{}:v", "k".repeat(101));
        assert!(
            parse(&long_key, Written::Bare)
                .unwrap_err()
                .contains("101 characters")
        );
        let long_value = format!("k:{}", "v".repeat(256));
        assert!(
            parse(&long_value, Written::Quoted)
                .unwrap_err()
                .contains("256 characters")
        );
        assert!(parse(&format!("k:{}", "v".repeat(255)), Written::Quoted).is_ok());
    }
}
