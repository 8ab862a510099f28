//! `zpr run` as a child process in a test network's router namespace (where
//! the host-side vNICs are), with bpffs pins and a run directory of its own,
//! so agents of parallel tests never meet. Dropping it kills the agent and
//! runs `zpr down`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{Netns, unique_name};

/// The `zpr` binary under test: `$ZPR_BIN` (`cargo xtask test` sets it),
/// else the workspace's debug build.
pub fn zpr_binary() -> PathBuf {
    let binary = std::env::var_os("ZPR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/zpr"));
    assert!(
        binary.exists(),
        "{} is missing: build it first (`cargo build -p zpr-agent`; `cargo xtask test` does)",
        binary.display()
    );
    binary
}

/// The Debian package under test: `$ZPR_DEB` (`cargo xtask test` sets it),
/// else the one `cargo xtask deb` builds in the workspace's target/deb.
pub fn zpr_package() -> PathBuf {
    let package = std::env::var_os("ZPR_DEB").map_or_else(
        || {
            let architecture = crate::run("dpkg", &["--print-architecture"])
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
                .expect("dpkg --print-architecture");
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
                "../target/deb/zpr_{}_{architecture}.deb",
                env!("CARGO_PKG_VERSION")
            ))
        },
        PathBuf::from,
    );
    assert!(
        package.exists(),
        "{} is missing: build it first (`cargo xtask deb`; `cargo xtask test` does)",
        package.display()
    );
    package
}

pub struct AgentProcess {
    zpr: PathBuf,
    router: String,
    /// `zpr run`'s arguments (inputs and options), without the paths.
    pub arguments: Vec<String>,
    pub bpffs: PathBuf,
    pub run_dir: PathBuf,
    log: PathBuf,
    /// Enter the router's network namespace as `ip netns exec` does (with
    /// a private mount namespace and /sys) rather than with `nsenter --net`.
    pub ip_netns_exec: bool,
    /// Run the agent, and every zpr command of [`AgentProcess::zpr`], in
    /// the mount namespace of this process.
    pub mount_namespace_of: Option<u32>,
    /// Variables set for the agent (as a service manager sets them).
    pub environment: Vec<(String, String)>,
    /// A command the agent runs under (sandboxing, privileges), before
    /// the zpr binary.
    pub wrapper: Vec<String>,
    child: Option<Child>,
}

impl AgentProcess {
    /// Starts `zpr run --inventory INVENTORY POLICIES...` in `router`'s
    /// network namespace; its state and log go under `state`.
    pub fn start(
        zpr: &Path,
        router: &Netns,
        inventory: &Path,
        policies: &[PathBuf],
        state: &Path,
    ) -> anyhow::Result<AgentProcess> {
        let mut agent = AgentProcess::prepare(zpr, router, inventory, policies, state);
        agent.spawn()?;
        Ok(agent)
    }

    /// As [`AgentProcess::start`], for a caller to adjust before
    /// [`AgentProcess::spawn`].
    pub fn prepare(
        zpr: &Path,
        router: &Netns,
        inventory: &Path,
        policies: &[PathBuf],
        state: &Path,
    ) -> AgentProcess {
        let mut arguments = vec!["--inventory".to_owned(), inventory.display().to_string()];
        arguments.extend(policies.iter().map(|p| p.display().to_string()));
        AgentProcess {
            zpr: zpr.to_owned(),
            router: router.name().to_owned(),
            arguments,
            bpffs: Path::new("/sys/fs/bpf").join(unique_name("zpa")),
            run_dir: state.join("run"),
            log: state.join("agent.log"),
            ip_netns_exec: false,
            mount_namespace_of: None,
            environment: Vec::new(),
            wrapper: Vec::new(),
            child: None,
        }
    }

    /// Starts the agent (again, after [`AgentProcess::kill`]).
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = if self.ip_netns_exec {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", &self.router]);
            command
        } else {
            let mut command = Command::new("nsenter");
            if let Some(pid) = self.mount_namespace_of {
                command.arg(format!("--mount=/proc/{pid}/ns/mnt"));
            }
            command.arg(format!("--net=/run/netns/{}", self.router));
            command
        };
        let child = command
            .args(&self.wrapper)
            .arg(&self.zpr)
            .arg("run")
            // The kernel programs' own log lines (target `zpr`) at debug.
            .args(["--log-level", "info,zpr=debug"])
            .args(&self.arguments)
            .args(self.paths())
            .envs(self.environment.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting zpr run")?;
        self.child = Some(child);
        Ok(())
    }

    /// `--bpffs DIR --run-dir DIR`, for other zpr commands.
    pub fn paths(&self) -> [String; 4] {
        [
            "--bpffs".into(),
            self.bpffs.display().to_string(),
            "--run-dir".into(),
            self.run_dir.display().to_string(),
        ]
    }

    /// `zpr ARGS...` for this agent's state (add [`AgentProcess::paths`]
    /// for commands that take them), in the agent's mount namespace.
    pub fn zpr(&self, arguments: &[&str]) -> Command {
        let mut command = match self.mount_namespace_of {
            Some(pid) => {
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--mount=/proc/{pid}/ns/mnt"))
                    .arg(&self.zpr);
                command
            }
            None => Command::new(&self.zpr),
        };
        command.args(arguments);
        command
    }

    /// `zpr status --output json` for this agent: its exit code and report.
    pub fn status_report(&self) -> anyhow::Result<(i32, Value)> {
        let output = self
            .zpr(&["status", "--output", "json"])
            .args(self.paths())
            .output()?;
        let report = serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "zpr status printed no report: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        Ok((output.status.code().unwrap_or(-1), report))
    }

    /// `zpr usage --output json [extra]` for this agent (its run
    /// directory's statement usage).
    pub fn usage_report(&self, extra: &[&str]) -> anyhow::Result<Value> {
        let output = self
            .zpr(&["usage", "--output", "json"])
            .args(extra)
            .args(self.paths())
            .output()?;
        serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "zpr usage printed no report: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to clean up, as after a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the agent process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let child = self.child.as_mut().context("the agent is not running")?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if started.elapsed() > timeout {
                bail!("the agent is still running after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's status file, if it wrote one.
    pub fn status(&self) -> Option<Value> {
        let text = fs::read_to_string(self.run_dir.join("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Waits until the status file satisfies `ready`; returns it.
    pub fn wait_for(&self, what: &str, ready: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.status().filter(|s| ready(s)) {
                return Ok(status);
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!(
                    "timed out waiting for the agent: {what}\nagent log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until generation `generation` (or a later one) is applied.
    pub fn wait_for_generation(&self, generation: u64) -> anyhow::Result<Value> {
        self.wait_for(&format!("generation {generation}"), |s| {
            s["generation"].as_u64().unwrap_or(0) >= generation
        })
    }

    /// Reloads the agent attempted so far (0 before its status exists).
    pub fn reloads(&self) -> u64 {
        self.status()
            .and_then(|s| s["reloads"].as_u64())
            .unwrap_or(0)
    }

    /// Waits until the agent finished a reload after the `before`th,
    /// whatever its outcome; returns its status.
    pub fn wait_for_reload(&self, before: u64) -> anyhow::Result<Value> {
        self.wait_for(&format!("reload {}", before + 1), |s| {
            s["reloads"].as_u64().unwrap_or(0) > before
        })
    }

    /// SIGTERM, as systemd stops the agent; waits until it has exited.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.pid().context("the agent is not running")?;
        // SAFETY: kill(2) on our own child.
        anyhow::ensure!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) } == 0);
        self.wait_exit(Duration::from_secs(10))
    }

    /// Stops the agent as systemd does and starts it again; returns once
    /// the new process has applied its inputs.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.terminate()?;
        self.spawn()?;
        let pid = self.pid().map(u64::from);
        self.wait_for("the restarted agent's Plan", |status| {
            status["pid"].as_u64() == pid && status["applied_at"].is_u64()
        })
        .map(drop)
    }

    /// SIGHUP: reload now, confirming what the unprotect guard holds back.
    pub fn hang_up(&self) -> anyhow::Result<()> {
        let pid = self.pid().context("the agent is not running")?;
        // SAFETY: kill(2) on our own child.
        anyhow::ensure!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) } == 0);
        Ok(())
    }

    pub fn generation(&self) -> u64 {
        self.status()
            .and_then(|s| s["generation"].as_u64())
            .unwrap_or(0)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = self.zpr(&["down"]).args(self.paths()).output();
        let _ = fs::remove_dir_all(&self.bpffs);
        let _ = fs::remove_dir_all(&self.run_dir);
    }
}
