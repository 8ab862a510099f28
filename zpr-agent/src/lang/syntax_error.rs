//! Turns the parser's "unexpected token" into a diagnostic that says what
//! was meant: a missing `VCN`, a wrong verb, an unquoted value with a space,
//! a `deny` that ZPR does not have, trailing words, and so on.

use lalrpop_util::ParseError;

use crate::lang::ast::Span;
use crate::lang::attribute::quote;
use crate::lang::diagnostic::Diagnostic;
use crate::lang::lexer::{Tok, Token, quoted_content};
use crate::lang::suggest::{closest, is_allow_synonym, is_deny_word, is_verb_synonym};

/// The grammar's actions raise no errors of their own, so `User` never occurs.
pub type GrammarError = ParseError<usize, Tok, &'static str>;

const STATEMENT_FORMS: &str = "a statement is 'in <vcn-attribute> VCN allow <source> to connect \
                               to <destination>' or 'allow <source> in <vcn-attribute> VCN to \
                               connect to <destination> in <vcn-attribute> VCN'";

/// Explains `error`, raised while parsing the statement made of `tokens`.
/// `is_complete` tells whether some tokens already form a whole statement.
pub fn explain(
    error: GrammarError,
    tokens: &[Token],
    source: &str,
    is_complete: impl Fn(&[Token]) -> bool,
) -> Diagnostic {
    match error {
        ParseError::UnrecognizedToken {
            token: (start, _, _),
            expected,
        } => {
            let at = tokens.partition_point(|token| token.span.start < start);
            let context = Context {
                tokens,
                source,
                expected,
            };
            context.unexpected_token(at, &is_complete)
        }
        ParseError::UnrecognizedEof { expected, .. } => Context {
            tokens,
            source,
            expected,
        }
        .unexpected_end(),
        // The token stream is ours and always well formed, and actions
        // raise no errors; point at the statement if that ever changes.
        ParseError::InvalidToken { .. }
        | ParseError::ExtraToken { .. }
        | ParseError::User { .. } => {
            let span = Span::new(
                tokens.first().map_or(0, |t| t.span.start),
                tokens.last().map_or(0, |t| t.span.end),
            );
            Diagnostic::error("cannot parse this statement", span).with_help(STATEMENT_FORMS)
        }
    }
}

struct Context<'a> {
    tokens: &'a [Token],
    source: &'a str,
    /// Terminal names as the grammar writes them: `"\"VCN\""`, `Attribute`.
    expected: Vec<String>,
}

impl Context<'_> {
    fn text(&self, token: &Token) -> &str {
        &self.source[token.span.start..token.span.end]
    }

    /// `'word'` for a bare token; a quoted token already shows its quotes.
    fn shown(&self, token: &Token) -> String {
        match token.tok {
            Tok::Quoted(_) => self.text(token).to_owned(),
            _ => format!("'{}'", self.text(token)),
        }
    }

    fn expects(&self, terminal: &str) -> bool {
        self.expected
            .iter()
            .any(|name| name.trim_matches('"') == terminal)
    }

    fn is_same_vcn(&self) -> bool {
        self.tokens.first().is_some_and(|t| t.tok == Tok::In)
    }

    fn has_verb(&self, before: usize) -> bool {
        self.tokens[..before].iter().any(|t| t.tok == Tok::Connect)
    }

    /// What the parser wanted, in words.
    fn expected_text(&self) -> String {
        const ENDPOINT_TERMINALS: [&str; 5] = [
            "Attribute",
            "BareIp",
            "Quoted",
            "all-endpoints",
            "osn-services-ip-addresses",
        ];
        let any_endpoint = ENDPOINT_TERMINALS.iter().all(|t| self.expects(t));
        let mut names: Vec<String> = Vec::new();
        if any_endpoint {
            names.push(
                "an endpoint (a security attribute, an IP address, all-endpoints or \
                 osn-services-ip-addresses)"
                    .to_owned(),
            );
        }
        for name in &self.expected {
            let name = name.trim_matches('"');
            names.push(match name {
                _ if any_endpoint && ENDPOINT_TERMINALS.contains(&name) => continue,
                "Attribute" => "a security attribute".to_owned(),
                "BareIp" => "an IP address".to_owned(),
                "Quoted" => "a quoted value".to_owned(),
                "Word" => "a filter name".to_owned(),
                keyword => format!("'{keyword}'"),
            });
        }
        match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => "the end of the statement".to_owned(),
        }
    }

    fn unexpected_end(&self) -> Diagnostic {
        let end = self.tokens.last().map_or(0, |t| t.span.end);
        let span = Span::new(end, end);
        let previous = self.tokens.last().map(|t| t.tok);
        let diagnostic = |message: &str, help: String| {
            Diagnostic::error(message, span)
                .with_label(format!("expected {}", self.expected_text()))
                .with_help(help)
        };
        if self.expects("VCN") {
            diagnostic(
                "missing 'VCN' after the location",
                "the location is written 'in <attribute> VCN', e.g. 'in net:prod VCN'".to_owned(),
            )
        } else if matches!(previous, Some(Tok::With | Tok::Comma | Tok::And)) {
            diagnostic(
                "expected a filter after 'with'",
                "write a filter such as protocol='tcp/22' or connection-state='stateless', or \
                 remove the 'with'"
                    .to_owned(),
            )
        } else if previous == Some(Tok::Equals) {
            diagnostic(
                "missing filter value after '='",
                "filter values are quoted, e.g. protocol='tcp/22'".to_owned(),
            )
        } else if !self.is_same_vcn() && self.has_verb(self.tokens.len()) && self.expects("in") {
            diagnostic(
                "missing the destination's VCN",
                "the cross-VCN form names the VCN of both endpoints: ... to connect to <destination> \
                 in <vcn-attribute> VCN (for one VCN, write 'in <vcn-attribute> VCN allow ...')"
                    .to_owned(),
            )
        } else {
            diagnostic(
                &format!("incomplete statement: expected {}", self.expected_text()),
                STATEMENT_FORMS.to_owned(),
            )
        }
    }

    fn unexpected_token(&self, at: usize, is_complete: impl Fn(&[Token]) -> bool) -> Diagnostic {
        let found = self.tokens[at];
        let previous = at.checked_sub(1).map(|i| self.tokens[i]);
        let text = self.text(&found);
        let shown = self.shown(&found);
        let generic_message = format!("expected {}, found {shown}", self.expected_text());
        let error = |message: String, label: &str, help: String| {
            Diagnostic::error(message, found.span)
                .with_label(label)
                .with_help(help)
        };

        if at == 0 {
            return self.bad_start(&found);
        }
        if self.expects("allow") && found.tok == Tok::Word {
            if is_deny_word(text) {
                return error(
                    format!("there is no '{text}' in ZPR: the command is 'allow'"),
                    "not a ZPR command",
                    "ZPR denies by default: traffic to and from tagged endpoints is dropped \
                     unless a statement allows it, so write only 'allow' statements"
                        .to_owned(),
                );
            }
            if is_allow_synonym(text) || closest(text, ["allow"]).is_some() {
                return error(
                    generic_message,
                    "unknown command",
                    "did you mean 'allow'?".into(),
                );
            }
        }
        if self.expects("to") && previous.is_some_and(|p| p.tok == Tok::Connect) {
            return error(
                "missing 'to' after 'connect'".to_owned(),
                "expected 'to'",
                "the verb is 'to connect to': write 'to connect to'".to_owned(),
            );
        }
        if found.tok == Tok::Connect && self.expects("to") {
            return error(
                "missing 'to' before 'connect'".to_owned(),
                "expected 'to connect to'",
                "the verb is 'to connect to': write 'to connect to'".to_owned(),
            );
        }
        if self.expects("connect") {
            let message = match found.tok {
                Tok::Word => format!("unknown verb {shown}"),
                _ => "missing 'connect' after 'to'".to_owned(),
            };
            return error(
                message,
                "expected 'connect'",
                "the verb is 'to connect to': did you mean 'connect to'?".to_owned(),
            );
        }
        if self.expects("to") && found.tok == Tok::Word && is_verb_synonym(text) {
            return error(
                format!("unknown verb {shown}"),
                "expected 'to connect to'",
                "the verb is 'to connect to': did you mean 'to connect to'?".to_owned(),
            );
        }
        if let Some(quoted) = previous.and_then(|previous| self.unquoted_value(&previous, at)) {
            let attribute = previous.map_or("", |p| self.text(&p));
            return error(
                "a value with spaces must be quoted".to_owned(),
                &format!("not part of the attribute '{attribute}'"),
                format!("quote the value: {quoted}"),
            );
        }
        if self.expects("VCN") {
            return if matches!(found.tok, Tok::Comma | Tok::And | Tok::Attribute) {
                error(
                    "the location is exactly one security attribute".to_owned(),
                    "a second location",
                    "a statement applies in the VCNs carrying one attribute; write one \
                     statement per VCN attribute"
                        .to_owned(),
                )
            } else {
                error(
                    format!("missing 'VCN' after the location, found {shown}"),
                    "expected 'VCN'",
                    format!(
                        "the location is written 'in <attribute> VCN': 'in {} VCN'",
                        previous.map_or("", |p| self.text(&p))
                    ),
                )
            };
        }
        if matches!(found.tok, Tok::And | Tok::Comma) && self.expects("to") {
            return error(
                "a statement has exactly one source".to_owned(),
                "a second source",
                "write one statement per source endpoint".to_owned(),
            );
        }
        if found.tok == Tok::With && !self.is_same_vcn() && !self.has_verb(at) {
            return error(
                "filters cannot stand after the source in the cross-VCN form".to_owned(),
                "filter after the source",
                "move the filters after the destination: allow <source> in <vcn> VCN to connect \
                 to <destination> with ... in <vcn> VCN"
                    .to_owned(),
            );
        }
        if found.tok == Tok::In && self.is_same_vcn() && self.has_verb(at) {
            return error(
                "a statement that starts with 'in <attribute> VCN' has no second location"
                    .to_owned(),
                "second location",
                "for endpoints in two VCNs use the cross-VCN form: allow <source> in <vcn> VCN \
                 to connect to <destination> in <vcn> VCN"
                    .to_owned(),
            );
        }
        if self.expects("Quoted") && previous.is_some_and(|p| p.tok == Tok::Equals) {
            return self.unquoted_filter_value(at);
        }
        if self.expects("=") && matches!(found.tok, Tok::Quoted(_)) {
            return error(
                "missing '=' between the filter name and its value".to_owned(),
                "expected '='",
                format!(
                    "write {}={shown}",
                    previous.map_or("protocol", |p| self.text(&p))
                ),
            );
        }
        if is_complete(&self.tokens[..at]) {
            return error(
                format!("unexpected {shown} after the end of the statement"),
                "not part of the statement",
                if matches!(found.tok, Tok::In | Tok::Allow) {
                    "one line holds one statement: start the next statement on a new line"
                        .to_owned()
                } else {
                    "remove it (a comment starts with '#')".to_owned()
                },
            );
        }
        if found.tok == Tok::Word && (self.expects("Attribute") && !self.expects("Word")) {
            return error(
                format!("expected a security attribute, found {shown}"),
                "not a security attribute",
                format!(
                    "a security attribute is written key:value or namespace.key:value, e.g. \
                     '{text}:prod'"
                ),
            );
        }
        let keywords = self
            .expected
            .iter()
            .map(|name| name.trim_matches('"'))
            .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
        let help = match closest(text, keywords) {
            Some(keyword) if found.tok == Tok::Word => format!("did you mean '{keyword}'?"),
            _ => STATEMENT_FORMS.to_owned(),
        };
        error(generic_message, "unexpected here", help)
    }

    fn bad_start(&self, found: &Token) -> Diagnostic {
        let text = self.text(found);
        let diagnostic = Diagnostic::error(
            format!(
                "a statement starts with 'in' or 'allow', found {}",
                self.shown(found)
            ),
            found.span,
        )
        .with_label("expected 'in' or 'allow'");
        if is_deny_word(text) {
            return diagnostic.with_help(
                "there is no deny in ZPR: traffic to and from tagged endpoints is dropped unless \
                 a statement allows it, so write only 'allow' statements",
            );
        }
        if let Some(keyword) = closest(text, ["allow", "in"]).filter(|_| found.tok == Tok::Word) {
            return diagnostic.with_help(format!("did you mean '{keyword}'?"));
        }
        if matches!(
            found.tok,
            Tok::With | Tok::Comma | Tok::And | Tok::Endpoints | Tok::To | Tok::Connect
        ) {
            return diagnostic.with_help(
                "a statement continues on the next line only while it is incomplete: join this \
                 line to the previous one",
            );
        }
        diagnostic.with_help(format!("missing location and command: {STATEMENT_FORMS}"))
    }

    /// `app:dev db` or `my-corp.biz:dev and test db`, a value with spaces
    /// left unquoted: the quoted clause, when the token at `at` starts a run
    /// of words right after a bare attribute on the same line.
    fn unquoted_value(&self, previous: &Token, at: usize) -> Option<String> {
        if previous.tok != Tok::Attribute {
            return None;
        }
        let run: Vec<&Token> = self.tokens[at..]
            .iter()
            .take_while(|t| matches!(t.tok, Tok::Word | Tok::And) && t.line == previous.line)
            .collect();
        let followed_by_equals = self
            .tokens
            .get(at + run.len())
            .is_some_and(|t| t.tok == Tok::Equals);
        if !run.iter().any(|t| t.tok == Tok::Word) || followed_by_equals {
            return None;
        }
        let last = run.last()?;
        Some(quote(&self.source[previous.span.start..last.span.end]))
    }

    fn unquoted_filter_value(&self, at: usize) -> Diagnostic {
        let found = self.tokens[at];
        let name = self.text(&self.tokens[at.saturating_sub(2)]);
        let value = match found.tok {
            Tok::Quoted(_) => quoted_content(self.text(&found)).into_owned(),
            _ => self.text(&found).to_owned(),
        };
        Diagnostic::error(format!("the value of '{name}' must be quoted"), found.span)
            .with_label("unquoted value")
            .with_help(format!("write {name}={}", quote(&value)))
    }
}
