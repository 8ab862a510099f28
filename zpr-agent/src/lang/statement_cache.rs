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
        let common_start = common_prefix(old, new);
        let (old_rest, new_rest) = (&old[common_start..], &new[common_start..]);
        let common_end = common_suffix(old_rest, new_rest);
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
            // The buffer is used again, at the text's size: a text a byte
            // longer than the last would otherwise double it (11 MB more
            // held at 100,000 statements).
            self.text.clear();
            if self.text.capacity() > source.len() + source.len() / 8 {
                self.text.shrink_to(source.len());
            }
            self.text.reserve_exact(source.len());
            self.text.push_str(source);
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
        let index = index?;
        prefetch_count(&self.lines, index + PREFETCH_AHEAD);
        Some(self.lines[index].body.clone())
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

/// How many lines ahead of the one taken a body's count is asked for.
const PREFETCH_AHEAD: usize = 16;

/// Asks the CPU for the reference count of line `index`'s body ahead of
/// its use. Unchanged lines are taken one after another, but each body's
/// count lives where the body was allocated: waiting for each in turn
/// was most of a reload's reading (one memory latency per statement).
fn prefetch_count(lines: &[CachedLine], index: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(line) = lines.get(index) {
        // An Arc's counts sit just before its value.
        let count = Arc::as_ptr(&line.body).cast::<i8>().wrapping_sub(16);
        // SAFETY: a prefetch is a hint: it reads nothing the program sees
        // and cannot fault, whatever the address.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(count);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (lines, index);
}

/// Blocks compared whole (memcmp) before the first that differs is
/// compared byte by byte: a byte at a time would be most of a reload.
const BLOCK: usize = 4096;

/// How many bytes `a` and `b` share at their start.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let same_blocks = a
        .chunks(BLOCK)
        .zip(b.chunks(BLOCK))
        .take_while(|(a, b)| a == b)
        .count();
    let from = same_blocks * BLOCK;
    let rest = a
        .get(from..)
        .unwrap_or_default()
        .iter()
        .zip(b.get(from..).unwrap_or_default())
        .take_while(|(a, b)| a == b)
        .count();
    (from + rest).min(a.len()).min(b.len())
}

/// How many bytes `a` and `b` share at their end.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let same_blocks = a
        .rchunks(BLOCK)
        .zip(b.rchunks(BLOCK))
        .take_while(|(a, b)| a == b)
        .count();
    let from = same_blocks * BLOCK;
    let (a_rest, b_rest) = (
        &a[..a.len().saturating_sub(from)],
        &b[..b.len().saturating_sub(from)],
    );
    let rest = a_rest
        .iter()
        .rev()
        .zip(b_rest.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    (from + rest).min(a.len()).min(b.len())
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

#[cfg(test)]
mod tests {
    use super::StatementCache;
    use crate::lang::parser::parse_file_cached;

    #[test]
    fn the_kept_text_is_held_at_about_its_size() {
        let line = "In ocvtc002.networks:front-end VCN allow ocvtc002.lb:frontend endpoints to \
                    connect to ocvtc002.apps:server endpoints with protocol='tcp/80'\n";
        let short = line.repeat(1_000);
        let longer = format!("{short}# one line more\n");
        let mut cache = StatementCache::default();
        for text in [&short, &longer, &short, &longer, &short] {
            parse_file_cached("p", text, &mut cache);
            assert_eq!(cache.text, *text);
            assert!(
                cache.text.capacity() <= text.len() + text.len() / 8,
                "{} bytes held for a text of {}",
                cache.text.capacity(),
                text.len()
            );
        }
    }
}
