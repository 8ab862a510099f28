//! Something worked out per statement, kept from one reading of a policy
//! set to the next: the statement cache hands a reading the very body of
//! every line it read before, so what was worked out for a body holds
//! while the body is the same. A one-line change leaves the statements
//! before and after it in place: those are taken by position (comparing
//! neighbours, no lookups), moved ones by their body's address.

use std::{borrow::Borrow, sync::Arc};

use foldhash::HashMap;

use super::ast::{Statement, StatementBody};
use crate::common_ends::CommonEnds;

/// A value per statement of the last reading, in its order, each with the
/// body it was worked out for (held, so that its address stays its).
pub struct KeptByBody<T> {
    last: Vec<(Arc<StatementBody>, T)>,
}

impl<T> Default for KeptByBody<T> {
    fn default() -> KeptByBody<T> {
        KeptByBody { last: Vec::new() }
    }
}

impl<T: Clone> KeptByBody<T> {
    /// Makes the values `statements`', in their order: kept for the bodies
    /// the last reading had, worked out by `make` for the others. Returns
    /// the indexes of the statements `make` worked out.
    pub fn follow<S: Borrow<Statement>>(
        &mut self,
        statements: &[S],
        mut make: impl FnMut(&Statement) -> T,
    ) -> Vec<usize> {
        let ends = CommonEnds::of(&self.last, statements, |(body, _), statement| {
            Arc::ptr_eq(body, &statement.borrow().body)
        });
        let moved: HashMap<*const StatementBody, usize> = ends
            .old_middle()
            .map(|index| (Arc::as_ptr(&self.last[index].0), index))
            .collect();
        let mut made = Vec::new();
        let middle: Vec<(Arc<StatementBody>, T)> = ends
            .new_middle()
            .map(|index| {
                let statement = statements[index].borrow();
                let value = match moved.get(&Arc::as_ptr(&statement.body)) {
                    Some(&old) => self.last[old].1.clone(),
                    None => {
                        made.push(index);
                        make(statement)
                    }
                };
                (statement.body.clone(), value)
            })
            .collect();
        self.last.splice(ends.old_middle(), middle);
        made
    }

    /// The value of statement `index` of the last reading.
    pub fn get(&self, index: usize) -> &T {
        &self.last[index].1
    }

    /// The values, in the last reading's order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.last.iter().map(|(_, value)| value)
    }

    /// Forgets every value.
    pub fn clear(&mut self) {
        self.last.clear();
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}
