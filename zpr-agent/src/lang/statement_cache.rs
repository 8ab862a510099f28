//! Statements remembered from the last text read, so that reading a text
//! again after a small change parses only what changed (see
//! [`super::parser`]). Pure: it knows texts, not files.
//!
//! A reload after a one-line edit meets the last text again before and
//! after the edit: those bytes are compared with the last text in one
//! pass, and their lines' statements taken by position. Lines between
//! (moved or edited) are looked up by their text among the last text's
//! lines between the same ends.

use std::{hash::BuildHasher as _, sync::Arc};

use foldhash::HashMap;

use crate::lang::ast::StatementBody;

/// The last text read with it, and its lines that held one statement each
/// (the statement's body, spans counted from the line's start, shared with
/// the policies read).
#[derive(Default)]
pub struct StatementCache {
    text: String,
    /// In order of `start`.
    lines: Vec<CachedLine>,
    /// While a text is read.
    reading: Option<Reading>,
}

struct CachedLine {
    start: usize,
    /// Without its line end.
    len: usize,
    body: Arc<StatementBody>,
}

/// How the text being read lines up with the last one, and its lines
/// kept for the next reading.
struct Reading {
    new_len: usize,
    /// Bytes both texts share at their start, and after that at their end.
    common_start: usize,
    common_end: usize,
    /// Where the lookups in each common part are in `lines` (they come in
    /// order).
    start_cursor: usize,
    end_cursor: usize,
    /// The last text's lines between the common parts, by their text's
    /// hash; made at the first line looked up there.
    between: Option<HashMap<u64, usize>>,
    hasher: foldhash::fast::RandomState,
    kept: Vec<CachedLine>,
}

impl StatementCache {
    pub(super) fn begin_text(&mut self, source: &str) {
        let (old, new) = (self.text.as_bytes(), source.as_bytes());
        let common_start = old.iter().zip(new).take_while(|(o, n)| o == n).count();
        let common_end = old[common_start..]
            .iter()
            .rev()
            .zip(new[common_start..].iter().rev())
            .take_while(|(o, n)| o == n)
            .count();
        self.reading = Some(Reading {
            new_len: source.len(),
            common_start,
            common_end,
            start_cursor: 0,
            end_cursor: 0,
            between: None,
            hasher: foldhash::fast::RandomState::default(),
            kept: Vec::new(),
        });
    }

    pub(super) fn end_text(&mut self, source: &str) {
        if let Some(reading) = self.reading.take() {
            self.lines = reading.kept;
            source.clone_into(&mut self.text);
        }
    }

    /// The body of the statement that filled the line `text` (with its
    /// line end, if any) at byte `start` of the text being read, when the
    /// last text held that line.
    pub(super) fn get(&mut self, start: usize, text: &str) -> Option<Arc<StatementBody>> {
        let reading = self.reading.as_mut()?;
        let key = text.strip_suffix('\n').unwrap_or(text);
        let old_len = self.text.len();
        let index = if text.len() > key.len() && start + text.len() <= reading.common_start {
            // Line and line end in the common start: the same line, at
            // the same place.
            at(&self.lines, &mut reading.start_cursor, start, key.len())
        } else if start > reading.new_len - reading.common_end {
            // The line end before it in the common end too: the same line,
            // as far from the end.
            let old_start = start + old_len - reading.new_len;
            at(&self.lines, &mut reading.end_cursor, old_start, key.len())
        } else {
            let (text, lines) = (&self.text, &self.lines);
            let hasher = &reading.hasher;
            let between = reading.between.get_or_insert_with(|| {
                let first =
                    lines.partition_point(|line| line.start + line.len < reading.common_start);
                let last = lines.partition_point(|line| line.start <= old_len - reading.common_end);
                (first..last.max(first))
                    .map(|index| {
                        let line = &lines[index];
                        (
                            hasher.hash_one(&text[line.start..line.start + line.len]),
                            index,
                        )
                    })
                    .collect()
            });
            between
                .get(&hasher.hash_one(key))
                .copied()
                .filter(|&index| {
                    let line = &lines[index];
                    &text[line.start..line.start + line.len] == key
                })
        };
        index.map(|index| self.lines[index].body.clone())
    }

    /// The statement read from the line at bytes `start..start + len` of
    /// the text being read is kept for the next reading. Lines are kept in
    /// order.
    pub(super) fn keep(&mut self, start: usize, len: usize, body: Arc<StatementBody>) {
        if let Some(reading) = &mut self.reading {
            reading.kept.push(CachedLine { start, len, body });
        }
    }

    pub(super) fn reserve(&mut self, lines: usize) {
        if let Some(reading) = &mut self.reading {
            reading.kept.reserve(lines);
        }
    }

    /// Lines held.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The index of the line of `lines` at `start` of length `len`, looked for
/// from `cursor` on (lookups come in order of `start`).
fn at(lines: &[CachedLine], cursor: &mut usize, start: usize, len: usize) -> Option<usize> {
    while lines.get(*cursor).is_some_and(|line| line.start < start) {
        *cursor += 1;
    }
    lines
        .get(*cursor)
        .filter(|line| line.start == start && line.len == len)
        .map(|_| *cursor)
}
