//! Statements remembered by the text of the line that held each, so that
//! reading a file again after a small change parses only what changed
//! (see [`super::parser`]). Pure: it knows texts, not files.

use crate::lang::ast::Statement;

/// The statement lines of the last text read with it: each line's text,
/// without its line end, and its statement with spans counted from the
/// line's start. Lines only older texts held are dropped, so it holds one
/// file's worth.
#[derive(Default)]
pub struct StatementCache {
    /// Each line with the number of the last text that held it. (Policy
    /// texts are the operator's own, so a fast hash with no defence
    /// against chosen collisions is fine.)
    lines: foldhash::HashMap<Box<str>, (Statement, u64)>,
    /// The number of the text being read.
    text: u64,
}

impl StatementCache {
    pub(super) fn begin_text(&mut self) {
        self.text += 1;
    }

    pub(super) fn end_text(&mut self) {
        let text = self.text;
        self.lines.retain(|_, (_, held_by)| *held_by == text);
    }

    /// The statement `line` held, its spans counted from the line's start.
    pub(super) fn get(&mut self, line: &str) -> Option<Statement> {
        let (statement, held_by) = self.lines.get_mut(line)?;
        *held_by = self.text;
        Some(statement.clone())
    }

    pub(super) fn insert(&mut self, line: Box<str>, statement: Statement) {
        self.lines.insert(line, (statement, self.text));
    }

    pub(super) fn reserve(&mut self, lines: usize) {
        self.lines.reserve(lines);
    }

    /// Lines held.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
