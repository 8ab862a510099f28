//! bpffs: mounting it when missing, and pinning maps into it so they (and
//! the enforcement they hold) outlive the agent and `bpftool` can read them.

use std::{ffi::CString, os::unix::ffi::OsStrExt as _, path::Path};

use anyhow::{Context as _, bail};
use zpr_common::maps;

use super::Datapath;

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Mounts bpffs at `root` unless one is there already.
pub fn ensure_bpffs(root: &Path) -> anyhow::Result<()> {
    if is_bpffs(root)? {
        return Ok(());
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

impl Datapath {
    /// Pins every map as `dir/<map name>` (`dir` must be on bpffs).
    pub fn pin_maps(&mut self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for name in maps::ALL {
            let path = dir.join(name);
            self.map(name)?
                .pin(&path)
                .with_context(|| format!("pinning {name} at {}", path.display()))?;
        }
        Ok(())
    }
}
