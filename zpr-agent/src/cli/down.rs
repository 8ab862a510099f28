//! `zpr down`: stop the agent and remove everything zpr attached and pinned.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::bail;

use super::agent_paths::AgentPaths;
use crate::{
    daemon::{Status, lock_holder},
    datapath::remove_all,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub paths: AgentPaths,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(pid) = lock_holder(&args.paths.run_dir) {
        eprintln!("stopping the agent (pid {pid})");
        // SAFETY: kill(2) with a pid read from the lock the agent holds.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock_holder(&args.paths.run_dir).is_some() {
            if Instant::now() > deadline {
                bail!("the agent (pid {pid}) did not stop within 10 s; nothing was removed");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let removed = remove_all(&args.paths.pins())?;
    for interface in &removed.interfaces {
        println!("detached from {interface}");
    }
    println!("removed {} pinned maps", removed.maps);
    let status = Status::path(&args.paths.run_dir);
    if status.exists() {
        std::fs::remove_file(&status)?;
    }
    Ok(ExitCode::SUCCESS)
}
