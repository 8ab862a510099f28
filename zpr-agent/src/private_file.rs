//! The files zpr writes name every endpoint, attribute and flow, and hold
//! its keys: root's alone. Each is created 0600 whatever the umask, and
//! opened without following a symlink planted at its path; a file there
//! that someone else owns, or that others may write, is refused rather
//! than written into.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

/// Opens `path` to append to it, creating it 0600.
pub fn append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        // Non-blocking: a FIFO planted at the path (with no reader) must
        // not stall the agent in open(2); it is refused below. A regular
        // file ignores the flag.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|error| refused_link(path, error))?;
    owned_and_private(&file, path)?;
    Ok(file)
}

/// Replaces `path` with `bytes` atomically (readers see the old file or
/// the new one): written beside it, 0600, then renamed over it.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".partial-{}", std::process::id()));
    let partial = std::path::PathBuf::from(partial);
    // Whatever is there (a stale partial, a planted link) goes: unlinking
    // a link removes the link, never what it points to.
    match std::fs::remove_file(&partial) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&partial)?;
    file.write_all(bytes)?;
    std::fs::rename(&partial, path)
}

/// Makes `path` the agent's own directory: created 0700 whatever the
/// umask, or tightened to 0700 when it exists. A symlink there, or a
/// directory of another user's, is refused: what zpr writes in it would
/// be theirs to read or redirect.
pub fn private_directory(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Err(error) if error.kind() != io::ErrorKind::AlreadyExists => return Err(error),
        _ => {}
    }
    let metadata = std::fs::symlink_metadata(path)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !metadata.is_dir() || metadata.uid() != me {
        return Err(io::Error::other(format!(
            "{} is refused as zpr's run directory: it is not a directory of uid {me} (a \
             symbolic link, or another user's); remove it",
            path.display()
        )));
    }
    if metadata.mode() & 0o777 != 0o700 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Lets every local user reach the API socket in `directory` when it is
/// a private one (0700, the run directory): IAM decides what each caller
/// may do. Search permission only (0711): the names in it cannot be
/// listed, and its files stay 0600. Other directories are left as they are.
pub fn reachable_by_name(directory: &Path) -> io::Result<()> {
    if std::fs::metadata(directory)?.mode() & 0o777 == 0o700 {
        std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o711))?;
    }
    Ok(())
}

/// Reads a secret zpr is given (a private key), opened as every input is
/// (a regular file, never blocking): refused when others may read or
/// write it, as ssh refuses such a key.
pub fn read_secret(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut file =
        crate::inputs::open::open_input(path, what, crate::inputs::open::Symlinks::Followed)?;
    // The mode of the file opened, not of whatever the path names later.
    let mode = file.metadata()?.mode();
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{what} {}: others can read or write it (mode {:o}), so it is refused; chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A symlink where a file belongs is named as such.
fn refused_link(path: &Path, error: io::Error) -> io::Error {
    if error.raw_os_error() == Some(libc::ELOOP) {
        return io::Error::other(format!(
            "{} is a symbolic link: refused (zpr writes only files it owns)",
            path.display()
        ));
    }
    error
}

/// Refuses a file that is not a regular file of this user's, or that
/// others may write; one others may read is made 0600.
fn owned_and_private(file: &File, path: &Path) -> io::Result<()> {
    let metadata = file.metadata()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !metadata.is_file() || metadata.uid() != me || metadata.mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} is refused: it is not a file of uid {me} that only it may write (owner \
             uid {}, mode {:o}); remove it",
            path.display(),
            metadata.uid(),
            metadata.mode() & 0o7777
        )));
    }
    if metadata.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("zpr-private-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_run_directory_is_private_and_never_a_link_or_someone_else_s() {
        let dir = scratch("run-dir");
        let run = dir.join("run");
        // SAFETY: umask only changes this process's file creation mask.
        let before = unsafe { libc::umask(0o000) };
        private_directory(&run).unwrap();
        // SAFETY: as above.
        unsafe { libc::umask(before) };
        let mode = |path: &Path| std::fs::metadata(path).unwrap().mode() & 0o777;
        assert_eq!(mode(&run), 0o700);
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_directory(&run).unwrap();
        assert_eq!(mode(&run), 0o700, "an existing directory is tightened");
        reachable_by_name(&run).unwrap();
        assert_eq!(mode(&run), 0o711);

        let elsewhere = dir.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let planted = dir.join("planted");
        std::os::unix::fs::symlink(&elsewhere, &planted).unwrap();
        let error = private_directory(&planted).unwrap_err().to_string();
        assert!(error.contains("refused"), "{error}");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&elsewhere, Some(65534), None).unwrap();
            assert!(
                private_directory(&elsewhere).is_err(),
                "another user's directory"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_are_root_s_alone_whatever_the_umask_and_links_are_refused() {
        let dir = scratch("modes");
        // SAFETY: umask only changes this process's file creation mask.
        let before = unsafe { libc::umask(0o000) };
        let log = dir.join("audit.jsonl");
        writeln!(append(&log).unwrap(), "one").unwrap();
        replace(&dir.join("status.json"), b"{}").unwrap();
        // SAFETY: as above.
        unsafe { libc::umask(before) };
        for name in ["audit.jsonl", "status.json"] {
            let mode = std::fs::metadata(dir.join(name)).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }

        // A link planted where a file belongs is not followed.
        let target = dir.join("victim");
        std::fs::write(&target, "theirs").unwrap();
        let planted = dir.join("flows.json");
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        let error = append(&planted).unwrap_err().to_string();
        assert!(error.contains("symbolic link"), "{error}");
        replace(&planted, b"ours").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "theirs");
        assert!(!std::fs::symlink_metadata(&planted).unwrap().is_symlink());

        // A FIFO planted there neither stalls the writer nor is written.
        let fifo = dir.join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string; mkfifo only reads it.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        assert!(append(&fifo).is_err());

        // A file others may write is refused; one others may read is
        // made private.
        let open = dir.join("open");
        std::fs::write(&open, "").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(append(&open).unwrap_err().to_string().contains("refused"));
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        append(&open).unwrap();
        assert_eq!(std::fs::metadata(&open).unwrap().mode() & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
