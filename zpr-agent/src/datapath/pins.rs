//! bpffs: mounted where zpr pins when nothing is mounted there yet.

use std::{
    ffi::CString,
    fs::File,
    os::{fd::AsRawFd as _, unix::ffi::OsStrExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Where hosts mount bpffs (systemd, Cilium and bpftool all use it).
const STANDARD_MOUNT_POINT: &str = "/sys/fs/bpf";

/// Makes `root` a directory on bpffs. When no bpffs holds it yet, one is
/// mounted first: at `/sys/fs/bpf` for paths below it (a freshly booted
/// host has only the bare sysfs directory there, and sysfs refuses new
/// directories), else at `root` itself. Returns where it mounted one.
pub fn ensure_bpffs(root: &Path) -> anyhow::Result<Option<PathBuf>> {
    let mut mounted = None;
    if !on_bpffs(root)? {
        let mount_point = if root.starts_with(STANDARD_MOUNT_POINT) {
            Path::new(STANDARD_MOUNT_POINT)
        } else {
            std::fs::create_dir_all(root)
                .with_context(|| format!("creating {}", root.display()))?;
            root
        };
        if mount_bpffs(mount_point)? {
            mounted = Some(mount_point.to_owned());
        }
    }
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    Ok(mounted)
}

/// True when `path`, or its nearest existing ancestor, is on bpffs.
fn on_bpffs(path: &Path) -> anyhow::Result<bool> {
    let existing = path
        .ancestors()
        .find(|ancestor| ancestor.exists())
        .unwrap_or(Path::new("/"));
    is_bpffs(existing)
}

/// Mounts bpffs at `mount_point` unless one is there already. Agents
/// starting together must not both mount: the second bpffs would hide the
/// first one's pins. The check and the mount happen under an flock on the
/// mount point directory, so the second finds the first's mount. Returns
/// whether this call mounted it.
fn mount_bpffs(mount_point: &Path) -> anyhow::Result<bool> {
    let directory = File::open(mount_point).with_context(|| {
        format!(
            "opening {} to mount bpffs there (is sysfs mounted?)",
            mount_point.display()
        )
    })?;
    // SAFETY: flock on an fd we own; released when `directory` closes.
    if unsafe { libc::flock(directory.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!(
            "locking {}: {}",
            mount_point.display(),
            std::io::Error::last_os_error()
        );
    }
    if is_bpffs(mount_point)? {
        return Ok(false);
    }
    let target = CString::new(mount_point.as_os_str().as_bytes())?;
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
            mount_point.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(true)
}

pub(crate) fn is_bpffs(path: &Path) -> anyhow::Result<bool> {
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
