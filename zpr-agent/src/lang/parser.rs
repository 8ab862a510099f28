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
use std::sync::Arc;

use crate::lang::ast::{Policy, Statement, StatementBody, StatementId};
use crate::lang::cst::RawStatement;
use crate::lang::diagnostic::Diagnostic;
use crate::lang::lexer::{Comment, QuoteStyle, Tok, Token, lex_from};
use crate::lang::names::Names;
use crate::lang::statement_cache::StatementCache;
use crate::lang::syntax_error::{GrammarError, explain};
use crate::lang::validate::lower_statement;
use crate::side_by_side;

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
    read_file(policy_name, source, None, Split::for_this_machine())
}

/// [`parse_file`], taking unchanged statement lines from `cache` and
/// leaving in it the statement lines of this text.
pub fn parse_file_cached(
    policy_name: &str,
    source: &str,
    cache: &mut StatementCache,
) -> ParsedFile {
    read_file(policy_name, source, Some(cache), Split::for_this_machine())
}

fn read_file(
    policy_name: &str,
    source: &str,
    mut cache: Option<&mut StatementCache>,
    split: Split,
) -> ParsedFile {
    let policy: Arc<str> = policy_name.into();
    let mut file = FileReader {
        policy: &policy,
        source,
        split,
        statements: Vec::new(),
        diagnostics: Vec::new(),
        comments: Vec::new(),
    };
    if let Some(cache) = cache.as_deref_mut() {
        cache.begin_text(source);
    }
    // The first line (byte offset, number) of the lines not read yet.
    let mut unread: Option<(usize, u32)> = None;
    let (mut start, mut line) = (0, 1u32);
    for text in source.split_inclusive('\n') {
        if let Some(cache) = cache.as_deref_mut()
            && let Some(body) = cache.get(start, text)
            && unread.is_none_or(|from| file.read_lines(from, start, false, Some(cache)))
        {
            unread = None;
            let len = text.strip_suffix('\n').unwrap_or(text).len();
            cache.keep(start, len, body.clone());
            file.statements.push(Statement {
                id: StatementId {
                    policy: policy.clone(),
                    line,
                },
                line_start: start,
                body,
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
        cache.end_text(source);
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
    policy: &'a Arc<str>,
    source: &'a str,
    split: Split,
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
        mut cache: Option<&mut StatementCache>,
    ) -> bool {
        let chunks = self.split.chunks(self.source, (from, line), end);
        let caching = cache.is_some();
        let read = |&(start, end, is_final): &(ChunkStart, usize, bool)| {
            read_chunk(
                self.policy,
                self.source,
                start,
                end,
                last && is_final,
                self.split.lexed_at_once,
            )
            .map(|read| read.with_cache_lines(caching))
        };
        let mut parts: Vec<Option<LinesRead>> = side_by_side::map(&chunks, read);
        // A chunk that ends inside a statement means the next one began
        // in its middle: the split guessed wrong, so read it all in one.
        if parts.len() > 1 && parts[..parts.len() - 1].iter().any(Option::is_none) {
            parts = vec![read(&((from, line), end, true))];
        }
        let mut read_all = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Some(part) => read_all.push(part),
                None => return false,
            }
        }
        if let Some(cache) = cache.as_deref_mut() {
            cache.reserve(read_all.iter().map(|part| part.cache_lines.len()).sum());
        }
        for part in read_all {
            let LinesRead {
                mut statements,
                mut diagnostics,
                comments,
                cache_lines,
                ..
            } = part;
            if let Some(cache) = cache.as_deref_mut() {
                for (line, statement) in cache_lines {
                    cache.keep(line.start, line.len(), statement);
                }
            }
            self.statements.append(&mut statements);
            self.diagnostics.append(&mut diagnostics);
            self.comments.extend(comments);
        }
        true
    }
}

/// Where a run of lines starts: byte offset and line number.
type ChunkStart = (usize, u32);

/// How a run of lines is split to be read in parts, side by side.
#[derive(Clone, Copy)]
struct Split {
    /// Below this many bytes a part is not split again.
    bytes: usize,
    /// At most this many parts.
    parts: usize,
    /// Bytes of a part lexed at a time.
    lexed_at_once: usize,
}

impl Split {
    /// One part, lexed at once.
    #[cfg(test)]
    const WHOLE: Split = Split {
        bytes: usize::MAX,
        parts: 1,
        lexed_at_once: usize::MAX,
    };

    /// Parts of at least 256 KiB (a thread costs more than reading a small
    /// file), one per core.
    fn for_this_machine() -> Split {
        Split {
            bytes: 256 << 10,
            parts: side_by_side::cores(),
            lexed_at_once: 64 << 10,
        }
    }

    /// The run of lines from `from` to `end` in about equal parts, each
    /// starting at a line start: (start, end, is the final part).
    fn chunks(self, source: &str, from: ChunkStart, end: usize) -> Vec<(ChunkStart, usize, bool)> {
        let parts = ((end - from.0) / self.bytes.max(1)).clamp(1, self.parts.max(1));
        let mut chunks = Vec::with_capacity(parts);
        let mut start = from;
        for part in 1..parts {
            let target = from.0 + (end - from.0) * part / parts;
            let Some(next) = source.as_bytes()[target..end]
                .iter()
                .position(|&byte| byte == b'\n')
                .map(|at| target + at + 1)
            else {
                break;
            };
            if next <= start.0 || next >= end {
                continue;
            }
            let lines = source.as_bytes()[start.0..next]
                .iter()
                .filter(|&&byte| byte == b'\n')
                .count();
            chunks.push((start, next, false));
            start = (next, start.1 + u32::try_from(lines).unwrap_or(u32::MAX));
        }
        chunks.push((start, end, true));
        chunks
    }
}

/// What reading a run of lines found.
struct LinesRead {
    statements: Vec<Statement>,
    /// For each statement, the line it fills when it is alone on one line
    /// and drew no diagnostic: what a cache may keep.
    whole_lines: Vec<Option<Range<usize>>>,
    diagnostics: Vec<Diagnostic>,
    comments: Vec<Comment>,
    /// Lines (where each stands, without its line end) and their
    /// statements' bodies for a cache.
    cache_lines: Vec<(Range<usize>, Arc<StatementBody>)>,
}

impl LinesRead {
    /// With `caching`, the statements that fill a line of their own, to
    /// be kept for the next reading.
    fn with_cache_lines(mut self, caching: bool) -> LinesRead {
        if !caching {
            return self;
        }
        let mut cache_lines = Vec::with_capacity(self.statements.len());
        for (statement, whole_line) in self.statements.iter().zip(&self.whole_lines) {
            let Some(whole_line) = whole_line else {
                continue;
            };
            // A lexer's note on the line (a look-alike character) is
            // not the statement's own: such lines are read again.
            if self
                .diagnostics
                .iter()
                .any(|d| d.span.start < whole_line.end && d.span.end >= whole_line.start)
            {
                continue;
            }
            cache_lines.push((whole_line.clone(), statement.body.clone()));
        }
        self.cache_lines = cache_lines;
        self
    }
}

/// Reads the lines from `start` to `end`; `None` when a statement is
/// still open at `end` and, not being `last`, may go on after it. The
/// lines are lexed `lexed_at_once` bytes at a time: the tokens of a whole
/// chunk would take six times its bytes, all held at once.
fn read_chunk(
    policy: &Arc<str>,
    source: &str,
    (from, line): ChunkStart,
    end: usize,
    last: bool,
    lexed_at_once: usize,
) -> Option<LinesRead> {
    let mut read = LinesRead {
        statements: Vec::new(),
        whole_lines: Vec::new(),
        diagnostics: Vec::new(),
        comments: Vec::new(),
        cache_lines: Vec::new(),
    };
    let mut names = Names::default();
    let (mut at, mut segment_end) = ((from, line), from);
    loop {
        // Past the last segment's end, even when a statement open there
        // is read again from its start.
        segment_end = line_start_after(
            source,
            segment_end.max(at.0).saturating_add(lexed_at_once),
            end,
        );
        let lexed = lex_from(&source[..segment_end], at.0, at.1);
        let segment_diagnostics = read.diagnostics.len();
        let mut reader = Reader {
            policy,
            source,
            tokens: &lexed.tokens,
            parser: grammar::StatementParser::new(),
            statements: std::mem::take(&mut read.statements),
            whole_lines: std::mem::take(&mut read.whole_lines),
            diagnostics: std::mem::take(&mut read.diagnostics),
            names: std::mem::take(&mut names),
        };
        let open = reader.read();
        let restart = match open {
            Some(first) if segment_end < end => Some(&lexed.tokens[first]),
            Some(_) if !last => return None,
            Some(first) => {
                reader.report_incomplete(first..reader.tokens.len());
                None
            }
            None => None,
        };
        read.statements = reader.statements;
        read.whole_lines = reader.whole_lines;
        read.diagnostics = reader.diagnostics;
        names = reader.names;
        // What the lexer found goes before what reading the segment found.
        // An open statement is lexed again with the next segment: what the
        // lexer found from its start on is kept from there only.
        let lexed_before =
            |span_start: usize| restart.is_none_or(|first| span_start < first.span.start);
        read.diagnostics.splice(
            segment_diagnostics..segment_diagnostics,
            lexed
                .diagnostics
                .into_iter()
                .filter(|diagnostic| lexed_before(diagnostic.span.start)),
        );
        read.comments.extend(
            lexed
                .comments
                .into_iter()
                .filter(|comment| lexed_before(comment.span.start)),
        );
        match restart {
            Some(first) => at = (first.span.start, first.line),
            None if segment_end < end => {
                let lines = source.as_bytes()[at.0..segment_end]
                    .iter()
                    .filter(|&&byte| byte == b'\n')
                    .count();
                at = (segment_end, at.1 + u32::try_from(lines).unwrap_or(u32::MAX));
            }
            None => return Some(read),
        }
    }
}

/// The start of the first line that begins after byte `at`, or `end`.
fn line_start_after(source: &str, at: usize, end: usize) -> usize {
    if at >= end {
        return end;
    }
    source.as_bytes()[at..end]
        .iter()
        .position(|&byte| byte == b'\n')
        .map_or(end, |newline| at + newline + 1)
}

struct Reader<'a> {
    policy: &'a Arc<str>,
    source: &'a str,
    tokens: &'a [Token],
    parser: grammar::StatementParser,
    statements: Vec<Statement>,
    /// For each statement, the line it fills when it is alone on one line
    /// and drew no diagnostic: what a cache may keep.
    whole_lines: Vec<Option<Range<usize>>>,
    diagnostics: Vec<Diagnostic>,
    names: Names,
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
            // A line holds a few tokens: stepping over them beats a binary
            // search, whose every probe misses the cache in a large file.
            let line_end = self.tokens[line_start..]
                .iter()
                .position(|token| token.line != line)
                .map_or(self.tokens.len(), |length| line_start + length);
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

    fn parse(&self, tokens: &[Token]) -> Result<Box<RawStatement>, GrammarError> {
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
            policy: self.policy.clone(),
            line: tokens.first().map_or(1, |t| t.line),
        };
        let diagnostics_before = self.diagnostics.len();
        let line_start = tokens
            .first()
            .map_or(0, |first| line_start(self.source, first.span.start));
        let lowered = lower_statement(
            raw,
            id,
            line_start,
            self.source,
            &mut self.names,
            &mut self.diagnostics,
        );
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
        let start = line_start(self.source, first.span.start);
        let end = self.source[last.span.end..]
            .find('\n')
            .map_or(self.source.len(), |at| last.span.end + at);
        let blank = |text: &str| text.trim().is_empty();
        (blank(&self.source[start..first.span.start]) && blank(&self.source[last.span.end..end]))
            .then_some(start..end)
    }
}

/// The byte offset where the line holding byte `at` starts.
fn line_start(source: &str, at: usize) -> usize {
    source[..at].rfind('\n').map_or(0, |newline| newline + 1)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every line of the diagnostics corpus and the three-tier example:
    /// statements, broken ones, statements over several lines, comments.
    fn corpus_lines() -> Vec<String> {
        let manifest = env!("CARGO_MANIFEST_DIR");
        let mut files: Vec<_> = std::fs::read_dir(format!("{manifest}/tests/diagnostics"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "zpr"))
            .collect();
        files.push(format!("{manifest}/../examples/three-tier/three-tier.zpr").into());
        files.sort();
        let mut lines: Vec<String> = files
            .iter()
            .flat_map(|file| {
                std::fs::read_to_string(file)
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        lines.sort();
        lines.dedup();
        lines
    }

    /// Everything read, spans included (equality of the AST ignores them).
    fn everything(file: &ParsedFile) -> String {
        format!(
            "{:?}\n{:?}\n{:?}",
            file.policy, file.diagnostics, file.comments
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Read in parts of a few bytes, wherever the splits fall (inside
        /// statements that run over lines, among broken ones), a text gives
        /// what it gives read whole, with or without a cache.
        #[test]
        fn reading_in_parts_is_reading_whole(
            picks in prop::collection::vec(any::<usize>(), 0..60),
            bytes in 1usize..400,
            parts in 2usize..9,
            lexed_at_once in 1usize..400,
        ) {
            let lines = corpus_lines();
            let text: String = picks
                .iter()
                .map(|pick| format!("{}\n", lines[pick % lines.len()]))
                .collect();
            let whole = Split::WHOLE;
            let split = Split { bytes, parts, lexed_at_once };
            let read_whole = read_file("p", &text, None, whole);
            prop_assert_eq!(everything(&read_file("p", &text, None, split)), everything(&read_whole));
            // Read again from a cache, only the lines the cache lacks are lexed.
            let mut cache = StatementCache::default();
            let first = read_file("p", &text, Some(&mut cache), split);
            prop_assert_eq!(everything(&first), everything(&read_whole));
            let again = read_file("p", &text, Some(&mut cache), split);
            prop_assert_eq!(
                format!("{:?}\n{:?}", again.policy, again.diagnostics),
                format!("{:?}\n{:?}", read_whole.policy, read_whole.diagnostics)
            );
        }

        /// A text edited after the cache read it (lines replaced, inserted,
        /// removed, cut short or made longer, anywhere, several times) reads as it
        /// reads whole: what the cache gives by position or by text is
        /// what the edited text says there.
        #[test]
        fn an_edited_text_read_through_the_cache_is_read_whole(
            picks in prop::collection::vec(any::<usize>(), 0..60),
            edits in prop::collection::vec((0usize..6, any::<usize>(), any::<usize>()), 1..12),
        ) {
            let corpus = corpus_lines();
            let mut lines: Vec<String> =
                picks.iter().map(|pick| corpus[pick % corpus.len()].clone()).collect();
            let split = Split { bytes: 64, parts: 3, lexed_at_once: 50 };
            let mut cache = StatementCache::default();
            read_file("p", &(lines.join("\n") + "\n"), Some(&mut cache), split);
            for (kind, at, pick) in edits {
                let at = at % (lines.len() + 1);
                let line = corpus[pick % corpus.len()].clone();
                match kind {
                    0 => lines.insert(at, line),
                    1 if at < lines.len() => drop(lines.remove(at)),
                    2 if at < lines.len() => lines[at] = line,
                    // A line cut short, or made longer: the same bytes as
                    // before up to where it changed.
                    4 if at < lines.len() => {
                        let cut = lines[at].floor_char_boundary(pick % (lines[at].len() + 1));
                        lines[at].truncate(cut);
                    }
                    5 if at < lines.len() => lines[at].push_str(&line),
                    // No line end after the last line.
                    _ => {}
                }
                let text = if kind == 3 { lines.join("\n") } else { lines.join("\n") + "\n" };
                let whole = read_file("p", &text, None, Split::WHOLE);
                let cached = read_file("p", &text, Some(&mut cache), split);
                prop_assert_eq!(
                    format!("{:?}\n{:?}", cached.policy, cached.diagnostics),
                    format!("{:?}\n{:?}", whole.policy, whole.diagnostics)
                );
            }
        }
    }
}
