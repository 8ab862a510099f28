//! `zpr run`: the agent. It loads the programs over pinned maps, attaches
//! them to every local endpoint's vNIC, writes the Plan, then keeps it
//! current as the inputs change. Enforcement lives in pinned maps and
//! links: it continues while the agent is down and a restarted agent
//! adopts it.

mod agent;
mod lock;
mod status;
mod watch;

use std::path::PathBuf;

use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};
use tracing::info;

pub use agent::Agent;
pub use lock::{AgentLock, lock_holder};
pub use status::{AttachedEndpoint, ReloadError, Status, unix_now};

use crate::datapath::FromWorkloadHook;

/// What `zpr run` was asked to do.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub inventory: PathBuf,
    pub policies: Vec<PathBuf>,
    /// Where bpffs is (zpr pins under `<bpffs>/zpr`).
    pub bpffs: PathBuf,
    /// Where the agent keeps its lock and status file.
    pub run_dir: PathBuf,
    pub hook: FromWorkloadHook,
}

/// Runs the agent until SIGTERM or SIGINT, which leave enforcement in place.
pub fn run(config: AgentConfig) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run_until_signalled(config))
}

async fn run_until_signalled(config: AgentConfig) -> anyhow::Result<()> {
    let _lock = AgentLock::acquire(&config.run_dir)?;
    let mut watch = watch::InputWatch::new(&config)?;
    let mut agent = Agent::start(config)?;
    // SAFETY: the logger owns its ring buffer's fd and lives inside the
    // AsyncFd, which deregisters it before dropping it.
    let mut kernel_log = unsafe { AsyncFd::register(agent.kernel_log()?) }
        .map_err(|err| anyhow::anyhow!("watching the kernel log: {err}"))?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            changed = watch.changed() => {
                let since = changed?;
                agent.reload("input files changed", since);
            }
            readable = kernel_log.readable_mut() => {
                let mut guard = readable?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            _ = hangup.recv() => agent.reload("SIGHUP", std::time::Instant::now()),
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    info!("stopping; enforcement stays in place (pinned), `zpr down` removes it");
    Ok(())
}
