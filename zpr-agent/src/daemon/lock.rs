//! One agent per host: an exclusive lock on `<run-dir>/agent.lock`, which
//! also names the holder's pid.

use std::{
    fs::{File, OpenOptions},
    io::{Read as _, Seek as _, Write as _},
    os::fd::AsRawFd as _,
    path::Path,
};

use anyhow::{Context as _, bail};

/// Held while the agent runs; the kernel releases it when the process ends.
pub struct AgentLock {
    _file: File,
}

impl AgentLock {
    pub fn acquire(run_dir: &Path) -> anyhow::Result<AgentLock> {
        std::fs::create_dir_all(run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
        let path = run_dir.join("agent.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if !try_lock(&file) {
            let holder = read_pid(&mut file).map_or("unknown".to_owned(), |pid| pid.to_string());
            bail!(
                "another zpr agent is running on this host (pid {holder}, lock {}): stop it \
                 first, or run `zpr down` to stop it and remove everything zpr attached",
                path.display()
            );
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        Ok(AgentLock { _file: file })
    }
}

/// The pid of the running agent, if one holds the lock.
pub fn lock_holder(run_dir: &Path) -> Option<u32> {
    let mut file = File::open(run_dir.join("agent.lock")).ok()?;
    if try_lock(&file) {
        // SAFETY: releasing the lock we just took on our own fd.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        return None;
    }
    read_pid(&mut file)
}

fn try_lock(file: &File) -> bool {
    // SAFETY: flock on an fd we own.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}
