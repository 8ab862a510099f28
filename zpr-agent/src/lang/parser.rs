//! Reads a whole policy file: splits its tokens into statements by lines,
//! parses each with the lalrpop grammar, validates it, and recovers after
//! an error so that every broken statement of a file is reported.
//!
//! A statement starts on a new line and continues onto the next lines only
//! while it is incomplete (the grammar decides). One line never holds two
//! statements. So a line that held a whole statement, and nothing else,
//! the last time the file was read gives the same statement again when no
//! statement is still open before it: with a [`StatementCache`], only the
//! runs of other lines are lexed and parsed.

use std::ops::Range;

use crate::lang::ast::{Policy, Statement, StatementId};
use crate::lang::cst::RawStatement;
use crate::lang::diagnostic::Diagnostic;
use crate::lang::lexer::{Comment, QuoteStyle, Tok, Token, lex_from};
use crate::lang::statement_cache::StatementCache;
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
    /// The comments of the lines that were lexed (every line, without a
    /// cache).
    pub comments: Vec<Comment>,
}

pub fn parse_file(policy_name: &str, source: &str) -> ParsedFile {
    read_file(policy_name, source, None)
}

/// [`parse_file`], taking unchanged statement lines from `cache` and
/// leaving in it the statement lines of this text.
pub fn parse_file_cached(
    policy_name: &str,
    source: &str,
    cache: &mut StatementCache,
) -> ParsedFile {
    read_file(policy_name, source, Some(cache))
}

fn read_file(
    policy_name: &str,
    source: &str,
    mut cache: Option<&mut StatementCache>,
) -> ParsedFile {
    let mut file = FileReader {
        policy_name,
        source,
        statements: Vec::new(),
        diagnostics: Vec::new(),
        comments: Vec::new(),
    };
    if let Some(cache) = cache.as_deref_mut() {
        cache.begin_text();
    }
    // The first line (byte offset, number) of the lines not read yet.
    let mut unread: Option<(usize, u32)> = None;
    let (mut start, mut line) = (0, 1u32);
    for text in source.split_inclusive('\n') {
        let key = text.strip_suffix('\n').unwrap_or(text);
        if let Some(cache) = cache.as_deref_mut()
            && let Some(statement) = cache.get(key)
            && unread.is_none_or(|from| file.read_lines(from, start, false, Some(cache)))
        {
            unread = None;
            file.statements.push(Statement {
                id: StatementId {
                    policy: policy_name.to_owned(),
                    line,
                },
                ..statement.moved(0, start)
            });
        } else {
            unread.get_or_insert((start, line));
        }
        start += text.len();
        line += 1;
    }
    if let Some(from) = unread {
        file.read_lines(from, source.len(), true, cache.as_deref_mut());
    }
    if let Some(cache) = cache {
        cache.end_text();
    }
    let FileReader {
        mut statements,
        mut diagnostics,
        comments,
        ..
    } = file;
    statements.shrink_to_fit();
    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    ParsedFile {
        policy: Policy {
            name: policy_name.to_owned(),
            statements,
        },
        diagnostics,
        comments,
    }
}

/// What a file's reading has found so far.
struct FileReader<'a> {
    policy_name: &'a str,
    source: &'a str,
    statements: Vec<Statement>,
    diagnostics: Vec<Diagnostic>,
    comments: Vec<Comment>,
}

impl FileReader<'_> {
    /// Lexes and parses the lines from `from` (byte offset, line number)
    /// to byte `end`. Unless `last`, a statement still open at `end` may
    /// go on in the next line: then nothing is kept and false returned.
    fn read_lines(
        &mut self,
        (from, line): (usize, u32),
        end: usize,
        last: bool,
        cache: Option<&mut StatementCache>,
    ) -> bool {
        let lexed = lex_from(&self.source[..end], from, line);
        let mut reader = Reader {
            policy_name: self.policy_name,
            source: self.source,
            tokens: &lexed.tokens,
            parser: grammar::StatementParser::new(),
            statements: Vec::new(),
            whole_lines: Vec::new(),
            diagnostics: lexed.diagnostics,
        };
        match reader.read() {
            Some(_) if !last => return false,
            Some(first) => reader.report_incomplete(first..reader.tokens.len()),
            None => {}
        }
        if let Some(cache) = cache {
            for (statement, whole_line) in reader.statements.iter().zip(&reader.whole_lines) {
                let Some(whole_line) = whole_line else {
                    continue;
                };
                // A lexer's note on the line (a look-alike character) is
                // not the statement's own: such lines are read again.
                if reader
                    .diagnostics
                    .iter()
                    .any(|d| d.span.start < whole_line.end && d.span.end >= whole_line.start)
                {
                    continue;
                }
                cache.insert(
                    &self.source[whole_line.clone()],
                    statement.clone().moved(whole_line.start, 0),
                );
            }
        }
        self.statements.append(&mut reader.statements);
        self.diagnostics.append(&mut reader.diagnostics);
        self.comments.extend(lexed.comments);
        true
    }
}

struct Reader<'a> {
    policy_name: &'a str,
    source: &'a str,
    tokens: &'a [Token],
    parser: grammar::StatementParser,
    statements: Vec<Statement>,
    /// For each statement, the line it fills when it is alone on one line
    /// and drew no diagnostic: what a cache may keep.
    whole_lines: Vec<Option<Range<usize>>>,
    diagnostics: Vec<Diagnostic>,
}

impl Reader<'_> {
    /// Reads every line; returns the first token of the statement still
    /// incomplete at the end, if any.
    fn read(&mut self) -> Option<usize> {
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
        pending
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
        let diagnostics_before = self.diagnostics.len();
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
            let clean = self.diagnostics.len() == diagnostics_before;
            self.whole_lines
                .push(clean.then(|| self.whole_line(tokens)).flatten());
            self.statements.push(statement);
        }
    }

    /// The line the tokens fill, without its line end, when they are on
    /// one line with nothing but blanks around them.
    fn whole_line(&self, tokens: &[Token]) -> Option<Range<usize>> {
        let (first, last) = (tokens.first()?, tokens.last()?);
        if first.line != last.line {
            return None;
        }
        let start = self.source[..first.span.start]
            .rfind('\n')
            .map_or(0, |at| at + 1);
        let end = self.source[last.span.end..]
            .find('\n')
            .map_or(self.source.len(), |at| last.span.end + at);
        let blank = |text: &str| text.trim().is_empty();
        (blank(&self.source[start..first.span.start]) && blank(&self.source[last.span.end..end]))
            .then_some(start..end)
    }
}
