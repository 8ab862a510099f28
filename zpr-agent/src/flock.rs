//! Exclusive flock(2) locks that name their holder. The holder is read
//! from `/proc/locks`, never probed by taking the lock: a probe that took
//! it, even for a moment, would make an agent starting at that moment
//! believe another one runs.

use std::{fs::File, os::fd::AsRawFd as _, os::unix::fs::MetadataExt as _, path::Path};

/// Takes an exclusive lock on `file` without waiting; false when another
/// open file holds it. The lock goes with the file's last descriptor.
pub fn try_lock_exclusive(file: &File) -> bool {
    // SAFETY: flock on an fd we own.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// The pid holding an exclusive flock on `path` (file or directory), if
/// any process does.
pub fn holder(path: &Path) -> Option<u32> {
    let metadata = std::fs::metadata(path).ok()?;
    let inode = format!(
        "{:02x}:{:02x}:{}",
        libc::major(metadata.dev()),
        libc::minor(metadata.dev()),
        metadata.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 fe:00:246951 0 EOF"
        let fields: Vec<&str> = line.split_whitespace().collect();
        let held = fields.get(1) == Some(&"FLOCK")
            && fields.get(3) == Some(&"WRITE")
            && fields.get(5) == Some(&inode.as_str());
        held.then(|| fields.get(4)?.parse().ok()).flatten()
    })
}
