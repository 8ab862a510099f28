//! `zpr run` (the agent, with its file watching) inside a network
//! namespace, on its own bpffs directory and run directory; stopped and
//! cleaned up (`zpr down`, then the directories) on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use zpr_agent::daemon::Status;
use zpr_tests::Netns;

use crate::{interrupt, scratch::Scratch};

pub struct Agent {
    zpr: PathBuf,
    bpffs: PathBuf,
    run_dir: PathBuf,
    child: Child,
}

impl Agent {
    /// Starts the agent on `inventory` and `policy` in `netns` and waits
    /// until it has applied them.
    pub fn start(
        zpr: &Path,
        netns: &Netns,
        inventory: &Path,
        policy: &Path,
        scratch: &Scratch,
    ) -> anyhow::Result<Agent> {
        // A directory of its own under the mounted bpffs: nothing another
        // zpr (or another run) pinned is touched.
        let bpffs = PathBuf::from("/sys/fs/bpf").join(format!("zpr-bench-{}", std::process::id()));
        let run_dir = scratch.path().join("run");
        let log = std::fs::File::create(scratch.path().join("agent.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", netns.name()))
            .arg(zpr)
            .args(["run", "--log-level", "warn", "--inventory"])
            .arg(inventory)
            .arg(policy)
            .arg("--bpffs")
            .arg(&bpffs)
            .arg("--run-dir")
            .arg(&run_dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} run", zpr.display()))?;
        let agent = Agent {
            zpr: zpr.to_owned(),
            bpffs,
            run_dir,
            child,
        };
        agent.wait_for_generation(1)?;
        Ok(agent)
    }

    /// The agent's status once `generation` (or a later one) is live.
    pub fn wait_for_generation(&self, generation: u32) -> anyhow::Result<Status> {
        let started = Instant::now();
        loop {
            if let Ok(status) = Status::read(&self.run_dir) {
                if let Some(error) = &status.last_error {
                    bail!("the agent failed to apply the policy: {}", error.message);
                }
                if status.generation >= generation {
                    return Ok(status);
                }
            }
            interrupt::checkpoint()?;
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the agent did not apply generation {generation} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The CPU time the agent has used so far (user and system, all its
    /// threads), in milliseconds; clock-tick resolution.
    pub fn cpu_ms(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command name (which may hold spaces): state is
        // field 3, utime 14 and stime 15.
        let after_name = stat.rsplit_once(')').context("no command name")?.1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok(ticks as f64 * 1000.0 / per_second)
    }

    /// The agent's peak resident set (VmHWM), in bytes.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .context("no VmHWM in the agent's /proc status")?;
        Ok(kib * 1024)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // `zpr down` stops the agent (SIGTERM, then waits for it) and
        // removes its pins and links.
        let down = Command::new(&self.zpr)
            .arg("down")
            .arg("--bpffs")
            .arg(&self.bpffs)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .stdout(Stdio::null())
            .status();
        if !down.is_ok_and(|status| status.success()) {
            eprintln!("cleanup: zpr down failed for {}", self.bpffs.display());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.bpffs);
    }
}
