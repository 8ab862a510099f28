//! IAM statements as text:
//!
//! ```text
//! Allow group G[, group H] | any-user  to  inspect|read|use|manage  RESOURCE-TYPE
//!       [in tenancy]  [where target.security-attribute-namespace.name (=|!=) 'NAME']
//! ```
//!
//! Each statement starts with `Allow`; line breaks do not matter; `#`
//! starts a comment. Problems are [`Diagnostic`]s with spans, rendered like
//! the ZPR checker's, with did-you-mean suggestions for misspelt words.
//! The doc-isms of the reference (§6) are tolerated with a warning: a
//! missing `group` keyword and a missing `in tenancy`.

use super::{
    Condition, Statement, Subject,
    permission::{ResourceSelector, Verb},
};
use crate::lang::{Diagnostic, Span, suggest::closest};

/// The only condition variable zpr evaluates.
pub const NAMESPACE_NAME: &str = "target.security-attribute-namespace.name";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Comma,
    Equal,
    NotEqual,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(word) => format!("'{word}'"),
            Token::Quoted(text) => format!("the string '{text}'"),
            Token::Comma => "','".to_owned(),
            Token::Equal => "'='".to_owned(),
            Token::NotEqual => "'!='".to_owned(),
        }
    }

    fn is_word(&self, expected: &str) -> bool {
        matches!(self, Token::Word(word) if word.eq_ignore_ascii_case(expected))
    }
}

/// Statements and warnings, or every problem found (errors and warnings).
pub fn parse(source: &str) -> Result<(Vec<Statement>, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let tokens = match tokenize(source) {
        Ok(tokens) => tokens,
        Err(error) => return Err(vec![error]),
    };
    let mut statements = Vec::new();
    // Statements run from one `Allow` to the next.
    let mut starts: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, (token, _))| token.is_word("allow"))
        .map(|(index, _)| index)
        .collect();
    if starts.first() != Some(&0) {
        if let Some((token, span)) = tokens.first() {
            let mut error = Diagnostic::error(
                format!("expected 'Allow', found {}", token.describe()),
                *span,
            )
            .with_label("IAM statements start with 'Allow'");
            if let Token::Word(word) = token
                && closest(word, ["allow"]).is_some()
            {
                error = error.with_help("did you mean 'Allow'?");
            } else if let Token::Word(word) = token
                && word.eq_ignore_ascii_case("deny")
            {
                error = error.with_help(
                    "zpr's IAM has allow statements only: what is not allowed is denied",
                );
            }
            diagnostics.push(error);
        }
        starts.insert(0, 0);
    }
    starts.push(tokens.len());
    for window in starts.windows(2) {
        let statement_tokens = &tokens[window[0]..window[1]];
        if statement_tokens
            .first()
            .is_some_and(|(t, _)| t.is_word("allow"))
        {
            let mut parser = Parser {
                tokens: statement_tokens,
                at: 1,
                end_of_statement: statement_tokens.last().map_or(0, |(_, span)| span.end),
                diagnostics: &mut diagnostics,
            };
            if let Some(statement) = parser.statement() {
                statements.push(statement);
            }
        }
    }
    if diagnostics.iter().any(Diagnostic::is_error) {
        Err(diagnostics)
    } else {
        Ok((statements, diagnostics))
    }
}

fn tokenize(source: &str) -> Result<Vec<(Token, Span)>, Diagnostic> {
    let mut tokens = Vec::new();
    let mut chars = source.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => while chars.next_if(|&(_, c)| c != '\n').is_some() {},
            ',' => {
                chars.next();
                tokens.push((Token::Comma, Span::new(start, start + 1)));
            }
            '=' => {
                chars.next();
                tokens.push((Token::Equal, Span::new(start, start + 1)));
            }
            '!' if source[start..].starts_with("!=") => {
                chars.next();
                chars.next();
                tokens.push((Token::NotEqual, Span::new(start, start + 2)));
            }
            '\'' | '"' => {
                chars.next();
                let quote = c;
                let mut text = String::new();
                let end = loop {
                    match chars.next() {
                        Some((at, c)) if c == quote => break at + 1,
                        Some((_, '\n')) | None => {
                            return Err(Diagnostic::error(
                                "unterminated string",
                                Span::new(start, start + 1),
                            )
                            .with_label("this quote is never closed")
                            .with_help(format!("close it with {quote} on the same line")));
                        }
                        Some((_, c)) => text.push(c),
                    }
                };
                tokens.push((Token::Quoted(text), Span::new(start, end)));
            }
            _ => {
                let mut end = start;
                while let Some((at, c)) =
                    chars.next_if(|&(_, c)| !c.is_whitespace() && !",='\"#".contains(c))
                {
                    if c == '!' && source[at..].starts_with("!=") {
                        break;
                    }
                    end = at + c.len_utf8();
                }
                if end == start {
                    // A lone '!' not followed by '='.
                    chars.next();
                    end = start + c.len_utf8();
                }
                tokens.push((
                    Token::Word(source[start..end].to_owned()),
                    Span::new(start, end),
                ));
            }
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: &'a [(Token, Span)],
    at: usize,
    /// Where "missing" diagnostics point when the statement ends early.
    end_of_statement: usize,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Parser<'_> {
    fn statement(&mut self) -> Option<Statement> {
        let start = self.tokens[0].1.start;
        let subject = self.subject()?;
        self.expect_word("to", "'to' between the subject and the verb")?;
        let verb = self.verb()?;
        let resource = self.resource_type()?;
        self.location()?;
        let condition = self.condition()?;
        if let Some((token, span)) = self.peek() {
            self.error(
                format!(
                    "expected the end of the statement, found {}",
                    token.describe()
                ),
                span,
                "a statement ends after its resource type, location and condition",
            );
            return None;
        }
        Some(Statement {
            subject,
            verb,
            resource,
            condition,
            span: Span::new(start, self.end_of_statement),
        })
    }

    fn subject(&mut self) -> Option<Subject> {
        let (token, span) = self.next_or_missing("a subject ('group NAME' or 'any-user')")?;
        match &token {
            Token::Word(word) if word.eq_ignore_ascii_case("any-user") => Some(Subject::AnyUser),
            Token::Word(word) if word.eq_ignore_ascii_case("group") => {
                let mut groups = vec![self.group_name()?];
                while matches!(self.peek(), Some((Token::Comma, _))) {
                    self.at += 1;
                    self.expect_word("group", "'group' after ','")?;
                    groups.push(self.group_name()?);
                }
                Some(Subject::Groups(groups))
            }
            Token::Word(word)
                if word.eq_ignore_ascii_case("dynamic-group")
                    || word.eq_ignore_ascii_case("service") =>
            {
                self.error(
                    format!("'{word}' subjects are not supported here"),
                    span,
                    "zpr's principals are local users: write 'group NAME' (an OS group) or \
                     'any-user'",
                );
                None
            }
            Token::Word(word) if self.peek().is_some_and(|(t, _)| t.is_word("to")) => {
                // "Allow UserGroupA to use ..." (the reference's doc-ism).
                self.diagnostics.push(
                    Diagnostic::warning(format!("'{word}' is read as 'group {word}'"), span)
                        .with_label("no 'group' keyword")
                        .with_help(format!("write 'group {word}'")),
                );
                Some(Subject::Groups(vec![word.clone()]))
            }
            other => {
                let mut help = "write 'group NAME' (an OS group) or 'any-user'".to_owned();
                if let Token::Word(word) = other
                    && let Some(near) = closest(word, ["group", "any-user"])
                {
                    help = format!("did you mean '{near}'?");
                }
                self.error(
                    format!(
                        "expected a subject ('group NAME' or 'any-user'), found {}",
                        other.describe()
                    ),
                    span,
                    help,
                );
                None
            }
        }
    }

    fn group_name(&mut self) -> Option<String> {
        match self.next_or_missing("a group name")? {
            (Token::Word(name) | Token::Quoted(name), _) => Some(name),
            (other, span) => {
                self.error(
                    format!("expected a group name, found {}", other.describe()),
                    span,
                    "write the name of an OS group, e.g. 'group zpr-admins'",
                );
                None
            }
        }
    }

    fn verb(&mut self) -> Option<Verb> {
        let (token, span) = self.next_or_missing("a verb (inspect, read, use or manage)")?;
        if let Token::Word(word) = &token
            && let Some(verb) = Verb::ALL
                .into_iter()
                .find(|verb| verb.name().eq_ignore_ascii_case(word))
        {
            return Some(verb);
        }
        let help = match &token {
            Token::Word(word) => closest(word, Verb::ALL.map(Verb::name))
                .map(|near| format!("did you mean '{near}'?")),
            _ => None,
        };
        self.error(
            format!(
                "expected a verb (inspect, read, use or manage), found {}",
                token.describe()
            ),
            span,
            help.unwrap_or_else(|| "verbs are cumulative: inspect < read < use < manage".into()),
        );
        None
    }

    fn resource_type(&mut self) -> Option<ResourceSelector> {
        let names = ResourceSelector::NAMES.map(|(name, _)| name);
        let (token, span) = self.next_or_missing("a resource type")?;
        if let Token::Word(word) = &token
            && let Some((_, selector)) = ResourceSelector::NAMES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(word))
        {
            return Some(*selector);
        }
        let help = match &token {
            Token::Word(word) if word.to_ascii_lowercase().contains("security-attribute") => {
                "security attributes are guarded by their namespace: write \
                 'security-attribute-namespace'"
                    .to_owned()
            }
            Token::Word(word) => closest(word, names).map_or_else(
                || format!("zpr's resource types are {}", names.join(", ")),
                |near| format!("did you mean '{near}'?"),
            ),
            _ => format!("zpr's resource types are {}", names.join(", ")),
        };
        self.error(
            format!("expected a resource type, found {}", token.describe()),
            span,
            help,
        );
        None
    }

    /// `in tenancy`, or nothing (warned: the reference's examples omit it).
    fn location(&mut self) -> Option<()> {
        match self.peek() {
            Some((token, _)) if token.is_word("in") => {
                self.at += 1;
                let (token, span) = self.next_or_missing("'tenancy'")?;
                if !token.is_word("tenancy") {
                    let help = if token.is_word("compartment") {
                        "zpr has no compartments: everything lives in the tenancy".to_owned()
                    } else {
                        "write 'in tenancy'".to_owned()
                    };
                    self.error(
                        format!("expected 'tenancy', found {}", token.describe()),
                        span,
                        help,
                    );
                    return None;
                }
                Some(())
            }
            Some((_, span)) if !self.peek().is_some_and(|(t, _)| t.is_word("where")) => {
                self.error(
                    format!(
                        "expected 'in tenancy' or 'where', found {}",
                        self.tokens[self.at].0.describe()
                    ),
                    span,
                    "after the resource type come 'in tenancy' and an optional 'where' condition",
                );
                None
            }
            _ => {
                let at = self.tokens[self.at - 1].1.end;
                self.diagnostics.push(
                    Diagnostic::warning("no location: read as 'in tenancy'", Span::new(at, at))
                        .with_help("write 'in tenancy'"),
                );
                Some(())
            }
        }
    }

    fn condition(&mut self) -> Option<Option<Condition>> {
        if !self.peek().is_some_and(|(t, _)| t.is_word("where")) {
            return Some(None);
        }
        self.at += 1;
        let (token, span) = self.next_or_missing(NAMESPACE_NAME)?;
        let is_variable =
            matches!(&token, Token::Word(word) if word.eq_ignore_ascii_case(NAMESPACE_NAME));
        if !is_variable {
            let help = match &token {
                Token::Word(word) if closest(word, [NAMESPACE_NAME]).is_some() => {
                    format!("did you mean '{NAMESPACE_NAME}'?")
                }
                _ => format!("zpr evaluates one condition variable: {NAMESPACE_NAME}"),
            };
            self.error(
                format!("expected {NAMESPACE_NAME}, found {}", token.describe()),
                span,
                help,
            );
            return None;
        }
        let (operator, span) = self.next_or_missing("'=' or '!='")?;
        let equal = match operator {
            Token::Equal => true,
            Token::NotEqual => false,
            other => {
                self.error(
                    format!("expected '=' or '!=', found {}", other.describe()),
                    span,
                    format!("write {NAMESPACE_NAME} = 'NAME'"),
                );
                return None;
            }
        };
        match self.next_or_missing("a quoted namespace name")? {
            (Token::Quoted(namespace), _) => {
                Some(Some(Condition::NamespaceName { equal, namespace }))
            }
            (other, span) => {
                let help = match &other {
                    Token::Word(word) => format!("quote it: '{word}'"),
                    _ => "write the namespace name in single quotes".to_owned(),
                };
                self.error(
                    format!(
                        "expected a quoted namespace name, found {}",
                        other.describe()
                    ),
                    span,
                    help,
                );
                None
            }
        }
    }

    fn peek(&self) -> Option<(Token, Span)> {
        self.tokens.get(self.at).cloned()
    }

    fn next_or_missing(&mut self, expected: &str) -> Option<(Token, Span)> {
        let next = self.peek();
        match next {
            Some(token) => {
                self.at += 1;
                Some(token)
            }
            None => {
                let at = self.end_of_statement;
                self.diagnostics.push(
                    Diagnostic::error(
                        format!("the statement ends before {expected}"),
                        Span::new(at, at),
                    )
                    .with_label(format!("expected {expected}")),
                );
                None
            }
        }
    }

    fn expect_word(&mut self, word: &str, expected: &str) -> Option<()> {
        let (token, span) = self.next_or_missing(expected)?;
        if token.is_word(word) {
            return Some(());
        }
        self.error(
            format!("expected {expected}, found {}", token.describe()),
            span,
            format!("write '{word}' here"),
        );
        None
    }

    fn error(&mut self, message: String, span: Span, help: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::error(message, span).with_help(help));
    }
}
