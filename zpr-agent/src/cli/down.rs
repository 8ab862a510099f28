//! `zpr down`: stop the agent that owns the pin root, then remove
//! everything zpr attached and pinned there. It never leaves an agent
//! running over removed enforcement: it stops the owner first, whatever
//! run directory it was given, and refuses when it cannot see the pins
//! of the agent it was pointed at.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::bail;

use super::{agent_paths::AgentPaths, agent_view::AgentView};
use crate::{
    daemon::{Status, lock_holder},
    datapath::{pin_owner, remove_all},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub paths: AgentPaths,
}

/// How long the agent has to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let view = AgentView::of(&args.paths);
    if view.owner.is_none() && view.run_dir_holder.is_some() && !view.pins_visible() {
        eprintln!(
            "zpr down: refusing: {}; nothing was stopped or removed",
            view.why_no_pins()
        );
        return Ok(ExitCode::from(1));
    }
    if let Some(owner) = &view.owner {
        let Some(pid) = owner.pid else {
            bail!(
                "an agent owns {} but its pid cannot be found; nothing was removed",
                view.pins.root().display()
            );
        };
        eprintln!("stopping the agent ({})", owner.describe());
        // SAFETY: kill(2) with the pid holding the pin root's lock.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while pin_owner(&view.pins).is_some() {
            if Instant::now() > deadline {
                bail!(
                    "the agent (pid {pid}) did not stop within {STOP_TIMEOUT:?}; nothing was \
                     removed"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let removed = remove_all(&view.pins)?;
    for interface in &removed.interfaces {
        println!("detached from {interface}");
    }
    println!("removed {} pinned maps", removed.maps);
    for run_dir in [&view.run_dir, &args.paths.run_dir] {
        let status = Status::path(run_dir);
        if lock_holder(run_dir).is_none() && status.exists() {
            std::fs::remove_file(&status)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
