//! Opening an input file (inventory, policy, IAM statements, keys and
//! certificates), the one way every command does: regular files only,
//! opened without blocking, and, for the commands that review a tree
//! someone else wrote, symlinks only within the directory that holds
//! them.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// How far a symlink named as an input may lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symlinks {
    /// Wherever it points: the agent's own configuration, which its
    /// operator lays out (a Kubernetes ConfigMap is symlinks all the way).
    Followed,
    /// Only to a file inside the directory holding the link: `zpr check`
    /// and `zpr diff` run as a CI gate on trees a pull request wrote, where
    /// `leak.zpr -> ../../secrets` would otherwise be read and quoted in
    /// diagnostics.
    WithinTheirDirectory,
}

/// Opens `path` for reading; `what` names it in errors ("inventory", ...).
/// A FIFO, device, socket or directory is refused at once: `O_NONBLOCK`
/// keeps open(2) of a FIFO without a writer from waiting for ever, and the
/// type is read from the opened file, so it cannot change in between.
pub fn open_input(path: &Path, what: &str, symlinks: Symlinks) -> anyhow::Result<File> {
    let target = match symlinks {
        Symlinks::Followed => path.to_owned(),
        Symlinks::WithinTheirDirectory => target_within_directory(path, what)?,
    };
    let file = OpenOptions::new()
        .read(true)
        // Reads of a regular file never block, so the flag can stay.
        .custom_flags(libc::O_NONBLOCK)
        .open(&target)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    let file_type = file
        .metadata()
        .with_context(|| format!("reading {what} {}", path.display()))?
        .file_type();
    if !file_type.is_file() {
        let kind = if file_type.is_dir() {
            "a directory"
        } else if file_type.is_fifo() {
            "a FIFO (named pipe)"
        } else if file_type.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        bail!(
            "{what} {} is {kind}, not a regular file; zpr reads its inputs from regular files \
             (or symlinks to them) only",
            path.display()
        );
    }
    Ok(file)
}

/// `path` itself, or when it is a symlink, the file it leads to, which
/// must be inside the directory holding the link. The error names the
/// link only: where it leads may itself be a secret.
fn target_within_directory(path: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let is_symlink = std::fs::symlink_metadata(path)
        .with_context(|| format!("reading {what} {}", path.display()))?
        .file_type()
        .is_symlink();
    if !is_symlink {
        return Ok(path.to_owned());
    }
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let leaves = || {
        anyhow::anyhow!(
            "{what} {} is a symlink that leads outside {}; zpr check and zpr diff read a \
             symlink only when it stays inside the directory holding it (copy the file into \
             the tree, or name the file itself)",
            path.display(),
            directory.display()
        )
    };
    let tree = directory
        .canonicalize()
        .with_context(|| format!("reading {}", directory.display()))?;
    // A dangling link is refused the same way: whether something exists
    // outside the tree is not for the tree to find out.
    let target = path.canonicalize().map_err(|_| leaves())?;
    if !target.starts_with(&tree) {
        return Err(leaves());
    }
    Ok(target)
}

/// Each file's modification time, size and inode (`None`: unreadable),
/// as they are now: a file rewritten or renamed over (a renewed
/// certificate or key) stamps differently.
pub type FileStamps = Vec<Option<(i64, i64, u64, u64)>>;

pub fn file_stamps<'a>(paths: impl IntoIterator<Item = &'a Path>) -> FileStamps {
    use std::os::unix::fs::MetadataExt as _;
    paths
        .into_iter()
        .map(|path| {
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.mtime(), m.mtime_nsec(), m.size(), m.ino()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for one test, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let directory =
                std::env::temp_dir().join(format!("zpr-open-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&directory);
            std::fs::create_dir_all(directory.join("tree")).unwrap();
            Scratch(directory)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mkfifo(path: &Path) {
        let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `name` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn fifos_devices_and_directories_are_refused_without_waiting() {
        let scratch = Scratch::new("special");
        let fifo = scratch.0.join("tree/x.zpr");
        mkfifo(&fifo);
        for (path, kind) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/null"), "a device"),
            (scratch.0.as_path(), "a directory"),
        ] {
            for symlinks in [Symlinks::Followed, Symlinks::WithinTheirDirectory] {
                let error = open_input(path, "policy", symlinks).unwrap_err();
                assert!(error.to_string().contains(kind), "{path:?}: {error}");
            }
        }
        let link = scratch.0.join("tree/link.zpr");
        std::os::unix::fs::symlink("x.zpr", &link).unwrap();
        let error = open_input(&link, "policy", Symlinks::Followed).unwrap_err();
        assert!(error.to_string().contains("a FIFO"), "{error}");
    }

    #[test]
    fn a_symlink_leaving_its_directory_is_named_and_not_read() {
        let scratch = Scratch::new("leaving");
        std::fs::write(scratch.0.join("secret"), "token\n").unwrap();
        std::fs::write(scratch.0.join("tree/inside.zpr"), "allow\n").unwrap();
        let tree = scratch.0.join("tree");
        for (name, target) in [
            ("leak.zpr", "../secret"),
            ("absolute.zpr", scratch.0.join("secret").to_str().unwrap()),
            ("dangling.zpr", "../nothing-here"),
        ] {
            let link = tree.join(name);
            std::os::unix::fs::symlink(target, &link).unwrap();
            let error = open_input(&link, "policy", Symlinks::WithinTheirDirectory)
                .unwrap_err()
                .to_string();
            assert!(error.contains(&format!("{} is a symlink", link.display())));
            assert!(
                !error.contains("secret") && !error.contains("nothing-here"),
                "{error}"
            );
            if name != "dangling.zpr" {
                assert!(open_input(&link, "policy", Symlinks::Followed).is_ok());
            }
        }
        let within = tree.join("within.zpr");
        std::os::unix::fs::symlink("./inside.zpr", &within).unwrap();
        assert!(open_input(&within, "policy", Symlinks::WithinTheirDirectory).is_ok());
    }
}
