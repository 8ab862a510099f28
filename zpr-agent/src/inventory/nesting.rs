//! How deeply an inventory's YAML nests, found before the YAML parser
//! sees it: a parser given 200 KB of `[` (or of `{a: `) spends tens of
//! seconds before it refuses. An inventory nests five levels deep; deeper
//! than [`MAX_NESTING`] is refused at once, at the line and column where
//! it got too deep.

use super::{InventoryError, Location};

/// The deepest nesting of collections an inventory may have.
pub const MAX_NESTING: usize = 32;

/// The first place where block and flow collections nest deeper than
/// [`MAX_NESTING`].
pub fn too_deep(text: &str) -> Option<InventoryError> {
    let mut scanner = Scanner::default();
    for (index, line) in text.lines().enumerate() {
        if let Some(column) = scanner.line(line) {
            return Some(InventoryError {
                path: String::new(),
                message: format!(
                    "collections nest deeper than {MAX_NESTING} levels here; an inventory \
                     needs about five (is the file damaged?)"
                ),
                location: Some(Location {
                    line: index + 1,
                    column,
                }),
            });
        }
    }
    None
}

#[derive(Default)]
struct Scanner {
    /// Columns of the open block collections, innermost last.
    blocks: Vec<usize>,
    /// Open `[` and `{` (flow collections may span lines).
    flow: usize,
    /// Inside a block scalar (`|` or `>`): lines indented deeper than this
    /// are text, not structure.
    scalar_above: Option<usize>,
}

impl Scanner {
    /// Scans one line; returns the 1-based column where nesting got too
    /// deep.
    fn line(&mut self, line: &str) -> Option<usize> {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let content = &line[indent..];
        if content.is_empty() || content.starts_with('#') {
            return None;
        }
        if let Some(scalar) = self.scalar_above {
            if indent > scalar {
                return None;
            }
            self.scalar_above = None;
        }
        if self.flow == 0 {
            while self.blocks.last().is_some_and(|&open| open >= indent) {
                self.blocks.pop();
            }
            self.blocks.push(indent);
        }
        let mut quote: Option<char> = None;
        let mut previous = ' ';
        let mut column = indent;
        let mut chars = content.chars().peekable();
        while let Some(c) = chars.next() {
            column += 1;
            match (quote, c) {
                (Some('"'), '\\') => {
                    chars.next();
                    column += 1;
                }
                (Some(open), c) if c == open => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '#') if previous == ' ' => break,
                (None, '[' | '{') => self.flow += 1,
                (None, ']' | '}') => self.flow = self.flow.saturating_sub(1),
                // A compact nested sequence ("- - x") opens one more level.
                (None, '-') if previous == ' ' && chars.peek() == Some(&' ') && self.flow == 0 => {
                    if column > indent + 1 {
                        self.blocks.push(column - 1);
                    }
                }
                (None, '|' | '>') if self.flow == 0 && chars.clone().all(is_scalar_header) => {
                    self.scalar_above = Some(indent);
                }
                _ => {}
            }
            if self.blocks.len() + self.flow > MAX_NESTING {
                return Some(column);
            }
            previous = c;
        }
        None
    }
}

/// What may follow `|` or `>` on a block scalar's first line.
fn is_scalar_header(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '+' | '-' | ' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inventory_is_not_too_deep() {
        let text = "namespaces:\n  - name: a\n    attributes: [{ key: k, values: [x, y] }]\n\
                    endpoints:\n  - name: e\n    addresses: ['10.0.0.1']  # [[[[ not here\n    \
                    note: |\n      [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n";
        assert!(too_deep(text).is_none());
    }

    #[test]
    fn deep_flow_block_and_compact_nesting_is_found_where_it_happens() {
        let flow = format!("a: {}", "[".repeat(200_000));
        let error = too_deep(&flow).unwrap();
        assert_eq!(
            error.location,
            Some(Location {
                line: 1,
                column: 35
            })
        );
        let mappings = "{a: ".repeat(50_000);
        assert!(too_deep(&mappings).is_some());
        let compact = format!("{}x", "- ".repeat(100));
        assert!(too_deep(&compact).is_some());
        let block: String = (0..40)
            .map(|depth| format!("{}k{depth}:\n", " ".repeat(depth)))
            .collect();
        assert_eq!(too_deep(&block).unwrap().location.unwrap().line, 33);
    }
}
