//! One shared copy of each attribute name and value: a large policy names
//! the same few attributes over and over, and statements that share their
//! strings are small and cheap to copy.

use std::sync::Arc;

#[derive(Default)]
pub struct Names(foldhash::HashSet<Arc<str>>);

impl Names {
    /// The shared copy of `text`.
    pub fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(name) = self.0.get(text) {
            return name.clone();
        }
        let name: Arc<str> = text.into();
        self.0.insert(name.clone());
        name
    }
}
