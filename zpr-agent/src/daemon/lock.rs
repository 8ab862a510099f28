//! One agent per run directory: an exclusive lock on
//! `<run-dir>/agent.lock` (its status file and API socket live there).
//! One agent per pin root is `datapath::PinOwnership`'s job.

use std::{fs::File, path::Path};

use anyhow::{Context as _, bail};

use crate::{flock, private_file};

/// Held while the agent runs; the kernel releases it when the process ends.
pub struct AgentLock {
    _file: File,
}

impl AgentLock {
    pub fn acquire(run_dir: &Path) -> anyhow::Result<AgentLock> {
        private_file::private_directory(run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
        let path = run_dir.join("agent.lock");
        let file =
            private_file::append(&path).with_context(|| format!("opening {}", path.display()))?;
        if !flock::try_lock_exclusive(&file) {
            let holder = flock::holder(&path).map_or("unknown".to_owned(), |pid| pid.to_string());
            bail!(
                "another zpr agent is running on this host (pid {holder}, lock {}): stop it \
                 first, or run `zpr down` to stop it and remove everything zpr attached",
                path.display()
            );
        }
        Ok(AgentLock { _file: file })
    }
}

/// The pid of the running agent, if one holds the lock.
pub fn lock_holder(run_dir: &Path) -> Option<u32> {
    flock::holder(&run_dir.join("agent.lock"))
}
