//! `zpr serve` as a child process in a test network namespace: a store,
//! API socket, bpffs pins and run directory of its own; and the CLI verbs
//! run against its socket as any OS user. Dropping it kills the agent and
//! runs `zpr down`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{Netns, agent::zpr_binary, unique_name};

pub struct ServedAgent {
    netns: String,
    arguments: Vec<String>,
    /// What `zpr serve` is run under (`prlimit --nofile=1024:`, say).
    launcher: Vec<String>,
    pub state: PathBuf,
    pub bpffs: PathBuf,
    pub run_dir: PathBuf,
    pub socket: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl ServedAgent {
    /// Starts `zpr serve` in `netns`, seeding a new store from `inventory`,
    /// with the IAM statements `iam` and `--bootstrap-admin admin_group`.
    pub fn start(
        netns: &Netns,
        inventory: &Path,
        iam: &str,
        admin_group: &str,
    ) -> anyhow::Result<ServedAgent> {
        ServedAgent::start_with(netns, inventory, iam, admin_group, &[], &[])
    }

    /// As [`ServedAgent::start`], with `more` arguments for `zpr serve`,
    /// which runs under `launcher` (a command taking the rest as its own).
    pub fn start_with(
        netns: &Netns,
        inventory: &Path,
        iam: &str,
        admin_group: &str,
        more: &[String],
        launcher: &[String],
    ) -> anyhow::Result<ServedAgent> {
        let state = std::env::temp_dir().join(unique_name("zps"));
        fs::create_dir_all(&state)?;
        let iam_file = state.join("iam.policy");
        fs::write(&iam_file, iam)?;
        let run_dir = state.join("run");
        let socket = run_dir.join("api.sock");
        let bpffs = Path::new("/sys/fs/bpf").join(unique_name("zps"));
        let arguments = [
            "--store",
            &state.join("zpr.db").display().to_string(),
            "--seed-inventory",
            &inventory.display().to_string(),
            "--iam",
            &iam_file.display().to_string(),
            "--bootstrap-admin",
            admin_group,
            "--bpffs",
            &bpffs.display().to_string(),
            "--run-dir",
            &run_dir.display().to_string(),
        ]
        .map(str::to_owned)
        .into_iter()
        .chain(more.iter().cloned())
        .collect();
        let mut agent = ServedAgent {
            netns: netns.name().to_owned(),
            arguments,
            launcher: launcher.to_vec(),
            log: state.join("agent.log"),
            state,
            bpffs,
            run_dir,
            socket,
            child: None,
        };
        agent.spawn()?;
        Ok(agent)
    }

    /// Starts the agent (again, after [`ServedAgent::kill`]) and waits for
    /// its socket and first generation.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let _ = fs::remove_file(self.run_dir.join("status.json"));
        self.child = Some(start_zpr_serve(
            &self.netns,
            &self.launcher,
            &self.arguments,
            &self.log,
            || self.socket.exists() && self.generation() >= 1,
        )?);
        Ok(())
    }

    /// The process of `zpr serve`, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `zpr down` for this agent's pins: no enforcement is left.
    pub fn down(&self) -> anyhow::Result<()> {
        let output = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(zpr_binary())
            .args(["down", "--bpffs"])
            .arg(&self.bpffs)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "zpr down: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    pub fn generation(&self) -> u64 {
        fs::read_to_string(self.run_dir.join("status.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|status| status["generation"].as_u64())
            .unwrap_or(0)
    }

    /// `zpr ARGS... --socket S` as `user` (root when `None`).
    pub fn cli(&self, user: Option<&str>, arguments: &[&str]) -> anyhow::Result<Output> {
        let mut command = match user {
            Some(user) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={user}"))
                    .arg(format!("--regid={user}"))
                    .arg("--init-groups")
                    .arg(zpr_binary());
                command
            }
            None => Command::new(zpr_binary()),
        };
        command
            .args(arguments)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .context("running the zpr CLI")
    }

    /// The audit log's records.
    pub fn audit(&self) -> Vec<Value> {
        fs::read_to_string(self.run_dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServedAgent {
    fn drop(&mut self) {
        self.kill();
        let _ = self.down();
        let _ = fs::remove_dir_all(&self.bpffs);
        let _ = fs::remove_dir_all(&self.state);
    }
}

/// `zpr serve ARGUMENTS` in the network namespace `netns` (run by
/// `launcher`, when given), its output appended to `log`, once `ready`
/// holds (killed if it does not within 20 s).
pub fn start_zpr_serve(
    netns: &str,
    launcher: &[String],
    arguments: &[String],
    log: &Path,
    ready: impl Fn() -> bool,
) -> anyhow::Result<Child> {
    let output = fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .args(launcher)
        .arg(zpr_binary())
        .arg("serve")
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        .spawn()
        .context("starting zpr serve")?;
    let started = Instant::now();
    while !ready() {
        if let Some(exit) = child.try_wait()? {
            bail!(
                "zpr serve exited ({exit}):\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "zpr serve did not come up:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}
