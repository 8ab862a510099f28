//! Reading an input file (inventory, policy, IAM statements, keys), the
//! same way for every command: opened by [`open_input`], within a size
//! limit, and as text: a UTF-8 byte-order mark dropped, and bytes that are
//! not UTF-8 reported at their file:line:col.

use std::{io::Read as _, path::Path};

use anyhow::Context as _;

use super::open::{Symlinks, open_input};

/// The largest input file read: 256 MiB (a policy of 100,000 statements
/// is about 50 MB).
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// The longest line an input may hold: 64 KiB. Statements and inventory
/// entries are far shorter; a longer line is a mistake (or an attack)
/// that would otherwise be quoted whole in every diagnostic.
pub const MAX_LINE_BYTES: usize = 64 << 10;

const BYTE_ORDER_MARK: char = '\u{feff}';

/// Reads `path` whole; `what` names it in errors ("the etcd CA", ...).
pub fn read_bytes(path: &Path, what: &str, symlinks: Symlinks) -> anyhow::Result<Vec<u8>> {
    let file = open_input(path, what, symlinks)?;
    let too_large = || {
        anyhow::anyhow!(
            "{what} {} is larger than {} MiB, the most zpr reads: is it the right file?",
            path.display(),
            MAX_INPUT_BYTES >> 20
        )
    };
    let length = file
        .metadata()
        .with_context(|| format!("reading {what} {}", path.display()))?
        .len();
    if length > MAX_INPUT_BYTES {
        return Err(too_large());
    }
    // At its size: grown as it is read, a 10 MB policy took a 16 MB buffer.
    let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    // The file may grow after its size was read.
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Reads `path` as text; `what` names it in errors ("inventory", ...).
pub fn read_text(path: &Path, what: &str, symlinks: Symlinks) -> anyhow::Result<String> {
    let bytes = read_bytes(path, what, symlinks)?;
    text_of(bytes, &path.display().to_string(), what)
}

/// An input's bytes as text, wherever they were read (a file, a git
/// object); `origin` names it in errors.
pub fn text_of(bytes: Vec<u8>, origin: &str, what: &str) -> anyhow::Result<String> {
    let text = String::from_utf8(bytes).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        let before = std::str::from_utf8(valid).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let col = before
            .rsplit('\n')
            .next()
            .unwrap_or_default()
            .chars()
            .count()
            + 1;
        let byte = error.as_bytes()[valid.len()];
        anyhow::anyhow!(
            "{origin}:{line}:{col}: {what} is not UTF-8 text (byte 0x{byte:02x}); save it as UTF-8"
        )
    })?;
    Ok(without_byte_order_mark(text))
}

/// `text` without a leading UTF-8 byte-order mark (some Windows editors
/// write one; it is not part of the content).
pub fn without_byte_order_mark(text: String) -> String {
    match text.strip_prefix(BYTE_ORDER_MARK) {
        Some(rest) => rest.to_owned(),
        None => text,
    }
}

/// The first line longer than [`MAX_LINE_BYTES`]: (1-based line, its
/// length in bytes).
pub fn overlong_line(text: &str) -> Option<(usize, usize)> {
    text.split('\n')
        .enumerate()
        .find(|(_, line)| line.len() > MAX_LINE_BYTES)
        .map(|(index, line)| (index + 1, line.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("zpr-text-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_file_is_read_into_a_buffer_of_its_size() {
        let text = "allow x\n".repeat(100_000);
        let path = scratch("sized", text.as_bytes());
        let bytes = read_bytes(&path, "policy", Symlinks::Followed).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(bytes, text.as_bytes());
        assert_eq!(bytes.capacity(), text.len());
    }

    #[test]
    fn a_byte_order_mark_is_dropped() {
        let path = scratch("bom", "\u{feff}allow x\n".as_bytes());
        assert_eq!(
            read_text(&path, "policy", Symlinks::Followed).unwrap(),
            "allow x\n"
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_reported_at_line_and_column() {
        let path = scratch("latin1", b"first line\nab\xe9c\n");
        let error = read_text(&path, "policy", Symlinks::Followed)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(":2:3: policy is not UTF-8 text (byte 0xe9)"),
            "{error}"
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_file_too_large_is_refused_before_it_is_read() {
        let path = scratch("large", b"");
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        // Sparse: nothing is written, nothing need be read.
        file.set_len(MAX_INPUT_BYTES + 1).unwrap();
        let error = read_text(&path, "policy", Symlinks::Followed)
            .unwrap_err()
            .to_string();
        assert!(error.contains("larger than 256 MiB"), "{error}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn overlong_lines_are_found() {
        let long = "x".repeat(MAX_LINE_BYTES + 1);
        assert_eq!(
            overlong_line(&format!("a\n{long}\nb")),
            Some((2, long.len()))
        );
        assert_eq!(overlong_line("a\nb\n"), None);
    }
}
