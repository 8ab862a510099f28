//! `zpr run`: the agent. It loads the programs over pinned maps, attaches
//! them to every local endpoint's vNIC, writes the Plan, then keeps it
//! current as the inputs change. Enforcement lives in pinned maps and
//! links: it continues while the agent is down and a restarted agent
//! adopts it.

mod agent;
mod companion;
pub mod event_hub;
pub mod event_names;
pub mod flow_log;
mod health;
mod link_events;
mod lock;
pub mod metrics;
mod quarantine;
mod service_manager;
pub mod statement_usage;
mod status;
mod watch;

use std::path::PathBuf;

use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};
use tracing::info;

pub use agent::{Agent, CONFIRMED_REVISION, Guard};
pub use companion::{Companion, FileInputs};
pub use health::{
    EndpointState, Health, Observed, QuarantineState, ago, assess, endpoint_states,
    quarantine_states,
};
use link_events::LinkEvents;
pub use lock::{AgentLock, lock_holder};
pub use quarantine::Quarantine;
use service_manager::ServiceManager;
pub use status::{AttachedEndpoint, Notice, PlanNames, PolicyLines, QuarantinedVnic, Status};

use crate::datapath::{FromWorkloadHook, QuarantineDhcp};

/// What `zpr run` (files) or `zpr serve` (store) was asked to do.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub inputs: InputSource,
    /// Where bpffs is (zpr pins under `<bpffs>/zpr`).
    pub bpffs: PathBuf,
    /// Where the agent keeps its lock and status file.
    pub run_dir: PathBuf,
    pub hook: FromWorkloadHook,
    /// Run even when the pins would not outlive the agent.
    pub allow_private_bpffs: bool,
    /// Apply input changes that unprotect most of this host without
    /// waiting for SIGHUP.
    pub allow_unprotect: bool,
    /// Entries of the established-flow table.
    pub conntrack_entries: u32,
    /// Events the kernel may send per second on each CPU.
    pub events_per_second: u32,
    /// Where Prometheus metrics are served.
    pub metrics: metrics::MetricsOptions,
    /// Where the flow log goes, if anywhere.
    pub flow_log: Option<flow_log::FlowLogOptions>,
    /// Which unregistered vNICs get the deny-all programs (none: off).
    pub quarantine: Quarantine,
    /// Whether those pass DHCP.
    pub quarantine_dhcp: QuarantineDhcp,
}

/// Where the agent's inventory and policies come from.
#[derive(Clone, Debug)]
pub enum InputSource {
    /// Files, watched with inotify ([`FileInputs`]).
    Files {
        inventory: PathBuf,
        policies: Vec<PathBuf>,
    },
    /// Snapshots of a store, handed over by the [`Companion`] that reads it.
    Store {
        /// Where the store is, for status and logs.
        location: String,
        /// This host's node name: endpoints placed on other nodes are not
        /// attached here.
        node: Option<String>,
    },
}

/// How often the agent compares the kernel with the live Plan: pins or
/// attachments someone removed, and (behind the link notifications) local
/// endpoints' vNICs coming and going.
const KERNEL_RESCAN: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the agent until SIGTERM or SIGINT, which leave enforcement in
/// place; `companion` brings it its inputs' changes.
pub fn run(config: AgentConfig, companion: impl Companion) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run_until_signalled(config, companion))
}

async fn run_until_signalled(
    config: AgentConfig,
    mut companion: impl Companion,
) -> anyhow::Result<()> {
    let _lock = AgentLock::acquire(&config.run_dir)?;
    let first = companion.prepare().await?;
    let mut manager = ServiceManager::from_environment();
    let metrics = config.metrics.clone();
    let flow_log = config.flow_log.clone();
    let mut agent = Agent::start(config, first)?;
    metrics::start(&metrics, &mut agent);
    let events = event_hub::start(flow_log.as_ref(), &agent);
    companion.started(&mut agent)?;
    // SAFETY: the logger owns its ring buffer's fd and lives inside the
    // AsyncFd, which deregisters it before dropping it.
    let mut kernel_log = unsafe { AsyncFd::register(agent.kernel_log()?) }
        .map_err(|err| anyhow::anyhow!("watching the kernel log: {err}"))?;
    tell_service_manager(&agent, &mut manager);
    let mut links = LinkEvents::open()?;
    let mut rescan = tokio::time::interval(KERNEL_RESCAN);
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            served = companion.next(&mut agent) => served?,
            readable = kernel_log.readable_mut() => {
                let mut guard = readable?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            seen = links.next() => {
                seen?;
                if agent.interfaces_changed() {
                    agent.follow_interfaces("a local endpoint's vNIC appeared or went away (link event)");
                }
            }
            _ = rescan.tick() => {
                if agent.interfaces_changed() {
                    agent.follow_interfaces("a local endpoint's vNIC appeared or went away");
                }
                agent.keep_enforcing();
                if agent.follow_usage(false) {
                    companion.usage_written(&agent);
                }
                events.report_to(&mut agent);
                tell_service_manager(&agent, &mut manager);
            }
            _ = hangup.recv() => {
                agent.confirm("SIGHUP", std::time::Instant::now());
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    manager.stopping();
    // The agent's descriptors go with it: whatever only they kept alive (a
    // pin someone removed since the last check) must be pinned first.
    agent.keep_enforcing();
    agent.follow_usage(true);
    info!("stopping; enforcement stays in place (pinned), `zpr down` removes it");
    Ok(())
}

/// Readiness once everything is enforced, the state as it changes, and a
/// watchdog ping: called once a second, so `WatchdogSec=` of 3 s or more.
fn tell_service_manager(agent: &Agent, manager: &mut ServiceManager) {
    let (ready, line) = agent.service_state();
    if ready {
        manager.ready(&line);
    }
    if manager.is_ready() {
        manager.status(&line);
    }
    manager.alive();
}
