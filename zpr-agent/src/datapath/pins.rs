//! bpffs: mounted where zpr pins when it is not there yet.

use std::{ffi::CString, os::unix::ffi::OsStrExt as _, path::Path};

use anyhow::{Context as _, bail};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Makes `root` a directory on bpffs: created inside a bpffs when an
/// ancestor is one, mounted otherwise.
pub fn ensure_bpffs(root: &Path) -> anyhow::Result<()> {
    let existing = root
        .ancestors()
        .find(|path| path.exists())
        .unwrap_or(Path::new("/"));
    if is_bpffs(existing)? {
        return std::fs::create_dir_all(root)
            .with_context(|| format!("creating {}", root.display()));
    }
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let target = CString::new(root.as_os_str().as_bytes())?;
    // SAFETY: valid C strings; mount(2) copies them.
    let mounted = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if mounted != 0 {
        bail!(
            "mounting bpffs at {}: {}",
            root.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> anyhow::Result<bool> {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        bail!("path {} contains a NUL byte", path.display());
    };
    // SAFETY: statfs fills the zeroed struct we own.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Ok(false);
    }
    Ok(stat.f_type as i64 == BPF_FS_MAGIC)
}
