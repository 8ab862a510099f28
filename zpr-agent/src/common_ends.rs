//! What a small change left in place: the items two sequences share at
//! their start and at their end, found by comparing in order. A reload
//! of a large policy after a one-line change meets its statements in the
//! same order with the same bodies: comparing neighbours in memory costs
//! far less than hashing and looking up each one.

/// How `old` and `new` line up: the same items before `start`, and in
/// their last `end` items (never overlapping the start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommonEnds {
    pub start: usize,
    pub end: usize,
    pub old_len: usize,
    pub new_len: usize,
}

impl CommonEnds {
    /// Of `old` and `new`, items compared with `same`.
    pub fn of<T, U>(old: &[T], new: &[U], same: impl Fn(&T, &U) -> bool) -> CommonEnds {
        CommonEnds::by_index(old.len(), new.len(), |o, n| same(&old[o], &new[n]))
    }

    /// Of sequences of `old_len` and `new_len` items, item `o` of the old
    /// and `n` of the new compared by `same(o, n)`.
    pub fn by_index(
        old_len: usize,
        new_len: usize,
        same: impl Fn(usize, usize) -> bool,
    ) -> CommonEnds {
        let shorter = old_len.min(new_len);
        let start = (0..shorter).find(|&i| !same(i, i)).unwrap_or(shorter);
        let end = (0..shorter - start)
            .find(|&k| !same(old_len - 1 - k, new_len - 1 - k))
            .unwrap_or(shorter - start);
        CommonEnds {
            start,
            end,
            old_len,
            new_len,
        }
    }

    /// The items of `old` between the common ends.
    pub fn old_middle(&self) -> std::ops::Range<usize> {
        self.start..self.old_len - self.end
    }

    /// The items of `new` between the common ends.
    pub fn new_middle(&self) -> std::ops::Range<usize> {
        self.start..self.new_len - self.end
    }

    /// Where item `new` of the new sequence stood in the old one, when it
    /// is in a common end.
    pub fn old_of(&self, new: usize) -> Option<usize> {
        if new < self.start {
            Some(new)
        } else if new >= self.new_len - self.end {
            Some(new + self.old_len - self.new_len)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CommonEnds;

    fn ends(old: &str, new: &str) -> CommonEnds {
        let (old, new): (Vec<char>, Vec<char>) = (old.chars().collect(), new.chars().collect());
        CommonEnds::of(&old, &new, |o, n| o == n)
    }

    #[test]
    fn the_ends_are_what_an_edit_left() {
        let edited = ends("abcdef", "abXdef");
        assert_eq!((edited.start, edited.end), (2, 3));
        assert_eq!(edited.old_middle(), 2..3);
        assert_eq!(edited.new_middle(), 2..3);
        let inserted = ends("abcdef", "abcXYdef");
        assert_eq!((inserted.start, inserted.end), (3, 3));
        assert_eq!(inserted.new_middle(), 3..5);
        assert_eq!(inserted.old_of(6), Some(4));
        assert_eq!(inserted.old_of(3), None);
        let removed = ends("abcdef", "af");
        assert_eq!((removed.start, removed.end), (1, 1));
        assert_eq!(removed.old_middle(), 1..5);
        assert_eq!(removed.old_of(1), Some(5));
    }

    #[test]
    fn repeated_items_are_not_counted_twice() {
        let same = ends("aaaa", "aaaa");
        assert_eq!((same.start, same.end), (4, 0));
        let grown = ends("aa", "aaa");
        assert_eq!(grown.start + grown.end, 2);
        assert_eq!(grown.new_middle().len(), 1);
        let empty = ends("", "ab");
        assert_eq!((empty.start, empty.end), (0, 0));
    }

    /// Every item of a common end maps to an equal one.
    #[test]
    fn common_ends_map_equal_items() {
        let cases = [
            ("abcabc", "abcXabc"),
            ("xyz", "zyx"),
            ("aXbYc", "abc"),
            ("", ""),
        ];
        for (old, new) in cases {
            let ends = ends(old, new);
            let (o, n): (Vec<char>, Vec<char>) = (old.chars().collect(), new.chars().collect());
            for (index, item) in n.iter().enumerate() {
                if let Some(at) = ends.old_of(index) {
                    assert_eq!(o[at], *item, "{old} -> {new}");
                }
            }
            assert_eq!(
                ends.new_middle().len() + ends.start + ends.end,
                n.len(),
                "{old} -> {new}"
            );
        }
    }
}
