//! One agent per pin root. Two agents writing one set of maps each
//! believe their own memory of what is in them, so the pin root itself is
//! owned exclusively: an flock on the `<bpffs>/zpr` directory, whatever
//! run directory each agent was given. The kernel releases it when the
//! owner's process ends. `<bpffs>/zpr/owner` is a symlink to the owner's
//! run directory, so `zpr status` and `zpr down` given another one still
//! find the agent's status.

use std::{
    fs::{self, File},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use super::PinLayout;
use crate::flock;

/// Held while an agent owns the pin root.
pub struct PinOwnership {
    root: File,
    run_dir: PathBuf,
}

/// The agent that owns a pin root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinOwner {
    /// The process holding the lock (None when it is not known, e.g. it
    /// released the lock as we looked).
    pub pid: Option<u32>,
    /// Its run directory, as it recorded it.
    pub run_dir: Option<PathBuf>,
}

impl PinOwnership {
    /// Takes the pin root for this process, or names its owner.
    pub fn acquire(pins: &PinLayout, run_dir: &Path) -> anyhow::Result<PinOwnership> {
        let root = pins.root();
        fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let directory = File::open(root).with_context(|| format!("opening {}", root.display()))?;
        if !flock::try_lock_exclusive(&directory) {
            let owner = pin_owner(pins).unwrap_or(PinOwner {
                pid: None,
                run_dir: fs::read_link(pins.owner()).ok(),
            });
            bail!(
                "another zpr agent owns the pins under {} ({}): one agent per pin root; stop \
                 it first, or run `zpr down --bpffs {}` to stop it and remove everything zpr \
                 attached",
                root.display(),
                owner.describe(),
                pins.bpffs().display()
            );
        }
        let ownership = PinOwnership {
            root: directory,
            run_dir: std::path::absolute(run_dir)?,
        };
        ownership.record_owner(pins)?;
        Ok(ownership)
    }

    /// Owns the pin root again when someone removed it (the lock went with
    /// the removed directory, and pins put back land in a new one): false
    /// when nothing needed doing.
    pub fn keep(&mut self, pins: &PinLayout) -> anyhow::Result<bool> {
        let held = self.root.metadata()?;
        let same = fs::metadata(pins.root())
            .is_ok_and(|now| now.dev() == held.dev() && now.ino() == held.ino());
        if same {
            self.record_owner(pins)?;
            return Ok(false);
        }
        *self = PinOwnership::acquire(pins, &self.run_dir)?;
        Ok(true)
    }

    fn record_owner(&self, pins: &PinLayout) -> anyhow::Result<()> {
        let link = pins.owner();
        if fs::read_link(&link).ok().as_deref() != Some(self.run_dir.as_path()) {
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(&self.run_dir, &link)
                .with_context(|| format!("recording the owner in {}", link.display()))?;
        }
        Ok(())
    }
}

impl PinOwner {
    /// "pid 123, run directory /run/zpr" (or what is known of it).
    pub fn describe(&self) -> String {
        let pid = self
            .pid
            .map_or("pid unknown".to_owned(), |pid| format!("pid {pid}"));
        match &self.run_dir {
            Some(run_dir) => format!("{pid}, run directory {}", run_dir.display()),
            None => pid,
        }
    }
}

/// The agent owning the pin root, if one does.
pub fn pin_owner(pins: &PinLayout) -> Option<PinOwner> {
    let pid = flock::holder(pins.root())?;
    Some(PinOwner {
        pid: Some(pid),
        run_dir: fs::read_link(pins.owner()).ok(),
    })
}
