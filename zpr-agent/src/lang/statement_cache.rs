//! Statements remembered by the text of the line that held each, so that
//! reading a file again after a small change parses only what changed
//! (see [`super::parser`]). Pure: it knows texts, not files.

use std::sync::Arc;

use crate::lang::ast::StatementBody;

/// The statement lines of the last text read with it: each line's text,
/// without its line end, and its statement's body (spans counted from the
/// line's start), shared with the policies read. Lines only older texts held are dropped, so it holds one
/// file's worth.
#[derive(Default)]
pub struct StatementCache {
    /// Each line with the number of the last text that held it. (Policy
    /// texts are the operator's own, so a fast hash with no defence
    /// against chosen collisions is fine.)
    lines: foldhash::HashMap<Box<str>, (Arc<StatementBody>, u64)>,
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

    /// The body of the statement `line` held.
    pub(super) fn get(&mut self, line: &str) -> Option<Arc<StatementBody>> {
        let (body, held_by) = self.lines.get_mut(line)?;
        *held_by = self.text;
        Some(body.clone())
    }

    pub(super) fn insert(&mut self, line: Box<str>, body: Arc<StatementBody>) {
        self.lines.insert(line, (body, self.text));
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
