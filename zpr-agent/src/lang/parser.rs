//! Reads a whole policy file: splits its tokens into statements by lines,
//! parses each with the lalrpop grammar, validates it, and recovers after
//! an error so that every broken statement of a file is reported.
//!
//! A statement starts on a new line and continues onto the next lines only
//! while it is incomplete (the grammar decides). One line never holds two
//! statements.

use std::ops::Range;

use crate::lang::ast::{Policy, Statement, StatementId};
use crate::lang::cst::RawStatement;
use crate::lang::diagnostic::Diagnostic;
use crate::lang::lexer::{Comment, QuoteStyle, Tok, Token, lex};
use crate::lang::syntax_error::{GrammarError, explain};
use crate::lang::validate::lower_statement;

lalrpop_util::lalrpop_mod!(
    #[allow(clippy::all, clippy::pedantic, unused_qualifications)]
    grammar,
    "/lang/grammar.rs"
);

/// Everything known about one file after reading it.
pub struct ParsedFile {
    /// The statements that are free of errors.
    pub policy: Policy,
    /// Errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
    pub comments: Vec<Comment>,
}

pub fn parse_file(policy_name: &str, source: &str) -> ParsedFile {
    let lexed = lex(source);
    let mut reader = Reader {
        policy_name,
        source,
        tokens: &lexed.tokens,
        parser: grammar::StatementParser::new(),
        statements: Vec::new(),
        diagnostics: lexed.diagnostics,
    };
    reader.read();
    let Reader {
        mut statements,
        mut diagnostics,
        ..
    } = reader;
    statements.shrink_to_fit();
    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    ParsedFile {
        policy: Policy {
            name: policy_name.to_owned(),
            statements,
        },
        diagnostics,
        comments: lexed.comments,
    }
}

struct Reader<'a> {
    policy_name: &'a str,
    source: &'a str,
    tokens: &'a [Token],
    parser: grammar::StatementParser,
    statements: Vec<Statement>,
    diagnostics: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn read(&mut self) {
        // First token of a statement that is still incomplete at a line end.
        let mut pending: Option<usize> = None;
        let mut line_start = 0;
        while line_start < self.tokens.len() {
            let line = self.tokens[line_start].line;
            let line_end =
                line_start + self.tokens[line_start..].partition_point(|token| token.line == line);
            pending = self.read_line(pending, line_start..line_end);
            line_start = line_end;
        }
        if let Some(first) = pending {
            self.report_incomplete(first..self.tokens.len());
        }
    }

    /// Adds the line `line` (token indices) to the statement that starts at
    /// `pending`, or starts a statement with it. Returns where the statement
    /// starts if it is still incomplete.
    fn read_line(&mut self, pending: Option<usize>, line: Range<usize>) -> Option<usize> {
        let first = pending.unwrap_or(line.start);
        let statement = first..line.end;
        if self.tokens[statement.clone()]
            .iter()
            .any(|t| t.tok == Tok::Quoted(QuoteStyle::Unterminated))
        {
            // The lexer reported it; the rest of the statement is unreadable.
            return None;
        }
        match self.parse(&self.tokens[statement.clone()]) {
            Ok(raw) => {
                self.finish(&raw, statement);
                None
            }
            Err(GrammarError::UnrecognizedEof { .. }) => Some(first),
            Err(error) => {
                if first < line.start && self.starts_new_statement(&error, line.clone()) {
                    self.report_incomplete(first..line.start);
                    return self.read_line(None, line);
                }
                let tokens = &self.tokens[statement];
                let diagnostic = explain(error, tokens, self.source, |prefix| {
                    self.parse(prefix).is_ok()
                });
                self.diagnostics.push(diagnostic);
                None
            }
        }
    }

    /// An error on a continuation line means the previous lines were an
    /// incomplete statement when the line itself is (or begins) a statement.
    fn starts_new_statement(&self, error: &GrammarError, line: Range<usize>) -> bool {
        let GrammarError::UnrecognizedToken {
            token: (start, _, _),
            ..
        } = error
        else {
            return false;
        };
        *start == self.tokens[line.start].span.start || self.parse(&self.tokens[line]).is_ok()
    }

    fn parse(&self, tokens: &[Token]) -> Result<RawStatement, GrammarError> {
        self.parser.parse(
            tokens
                .iter()
                .map(|token| Ok((token.span.start, token.tok, token.span.end))),
        )
    }

    fn report_incomplete(&mut self, statement: Range<usize>) {
        let tokens = &self.tokens[statement];
        if let Err(error) = self.parse(tokens) {
            let diagnostic = explain(error, tokens, self.source, |prefix| {
                self.parse(prefix).is_ok()
            });
            self.diagnostics.push(diagnostic);
        }
    }

    fn finish(&mut self, raw: &RawStatement, statement: Range<usize>) {
        let tokens = &self.tokens[statement];
        let id = StatementId {
            policy: self.policy_name.to_owned(),
            line: tokens.first().map_or(1, |t| t.line),
        };
        let lowered = lower_statement(raw, id, self.source, &mut self.diagnostics);
        // Look-alike quotes were reported by the lexer; the statement still
        // went through validation so that its other mistakes show too.
        let misquoted = tokens.iter().any(|t| {
            matches!(
                t.tok,
                Tok::Quoted(QuoteStyle::Typographic | QuoteStyle::Double)
            )
        });
        if let Some(statement) = lowered.filter(|_| !misquoted) {
            self.statements.push(statement);
        }
    }
}
