//! Statements remembered by the text of the line that held each, so that
//! reading a file again after a small change parses only what changed
//! (see [`super::parser`]). Pure: it knows texts, not files.

use std::collections::HashMap;

use crate::lang::ast::Statement;

/// The statement lines of the last text read with it: each line's text,
/// without its line end, and its statement with spans counted from the
/// line's start. Lines only older texts held are dropped, so it holds one
/// file's worth.
#[derive(Default)]
pub struct StatementCache {
    /// Lines of the text before, not yet met in this one.
    previous: HashMap<Box<str>, Statement>,
    /// Lines of the text being read.
    current: HashMap<Box<str>, Statement>,
}

impl StatementCache {
    pub(super) fn begin_text(&mut self) {
        self.previous = std::mem::take(&mut self.current);
        self.current.reserve(self.previous.len());
    }

    pub(super) fn end_text(&mut self) {
        self.previous = HashMap::new();
    }

    /// The statement `line` held, its spans counted from the line's start.
    pub(super) fn get(&mut self, line: &str) -> Option<Statement> {
        if let Some(statement) = self.current.get(line) {
            return Some(statement.clone());
        }
        let (line, statement) = self.previous.remove_entry(line)?;
        let found = statement.clone();
        self.current.insert(line, statement);
        Some(found)
    }

    pub(super) fn insert(&mut self, line: &str, statement: Statement) {
        self.current.insert(line.into(), statement);
    }

    /// Lines held.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
