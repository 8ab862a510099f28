//! `zpr run`: the agent. It loads the programs over pinned maps, attaches
//! them to every local endpoint's vNIC, writes the Plan, then keeps it
//! current as the inputs change. Enforcement lives in pinned maps and
//! links: it continues while the agent is down and a restarted agent
//! adopts it.

mod agent;
pub mod event_hub;
pub mod event_names;
pub mod flow_log;
mod health;
mod link_events;
mod lock;
pub mod metrics;
mod service_manager;
mod status;
mod watch;

use std::path::PathBuf;

use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};
use tracing::{info, warn};

pub use agent::{Agent, Guard};
pub use health::{EndpointState, Health, Observed, ago, assess, endpoint_states};
use link_events::LinkEvents;
pub use lock::{AgentLock, lock_holder};
use service_manager::ServiceManager;
pub use status::{AttachedEndpoint, Notice, Status, unix_now};

use crate::{
    api::{audit::AuditLog, server::ApiSocket, service::Service},
    datapath::FromWorkloadHook,
    iam::{IamPolicy, Statement},
};

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
}

/// Where the agent's inventory and policies come from.
#[derive(Clone, Debug)]
pub enum InputSource {
    /// Files, watched with inotify.
    Files {
        inventory: PathBuf,
        policies: Vec<PathBuf>,
    },
    /// The store, changed through the management API.
    Store(StoreConfig),
}

#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// An inventory file to import into a store that has no endpoints yet.
    pub seed_inventory: Option<PathBuf>,
    pub socket: PathBuf,
    /// IAM statements; with `bootstrap_admins`, all that is granted.
    pub iam_statements: Option<PathBuf>,
    /// Groups granted `manage all-resources`.
    pub bootstrap_admins: Vec<String>,
}

/// How often the agent compares the kernel with the live Plan: pins or
/// attachments someone removed, and (behind the link notifications) local
/// endpoints' vNICs coming and going.
const KERNEL_RESCAN: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the agent until SIGTERM or SIGINT, which leave enforcement in place.
pub fn run(config: AgentConfig) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run_until_signalled(config))
}

async fn run_until_signalled(config: AgentConfig) -> anyhow::Result<()> {
    let _lock = AgentLock::acquire(&config.run_dir)?;
    let mut watch = match &config.inputs {
        InputSource::Files {
            inventory,
            policies,
        } => {
            let files = std::iter::once(inventory)
                .chain(policies)
                .cloned()
                .collect();
            Some(watch::InputWatch::new(files)?)
        }
        InputSource::Store(_) => None,
    };
    let api = match &config.inputs {
        InputSource::Store(store) => Some(api_service(store, &config.run_dir)?),
        InputSource::Files { .. } => None,
    };
    let mut manager = ServiceManager::from_environment();
    let metrics = config.metrics.clone();
    let flow_log = config.flow_log.clone();
    let mut agent = Agent::start(config)?;
    metrics::start(&metrics, &mut agent);
    let events = event_hub::start(flow_log.as_ref(), &agent);
    let mut api = match api {
        Some(service) => Some((ApiSocket::bind(&agent.api_socket()?)?, service)),
        None => None,
    };
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
            Some(changed) = maybe(watch.as_mut().map(|watch| watch.changed())) => {
                let since = changed?;
                agent.reload("input files changed", since, Guard::Unprotect);
            }
            Some(Some(call)) = maybe(api.as_mut().map(|(socket, _)| socket.next())) => {
                if let Some((_, service)) = &api {
                    let response = service.handle(&mut agent, &call.principal, &call.request);
                    let _ = call.reply.send(response);
                }
            }
            readable = kernel_log.readable_mut() => {
                let mut guard = readable?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            seen = links.next() => {
                seen?;
                if agent.interfaces_changed() {
                    let cause = "a local endpoint's vNIC appeared or went away (link event)";
                    agent.reload(cause, std::time::Instant::now(), Guard::Confirmed);
                }
            }
            _ = rescan.tick() => {
                if agent.interfaces_changed() {
                    let cause = "a local endpoint's vNIC appeared or went away";
                    agent.reload(cause, std::time::Instant::now(), Guard::Confirmed);
                }
                agent.keep_enforcing();
                events.report_to(&mut agent);
                tell_service_manager(&agent, &mut manager);
            }
            _ = hangup.recv() => {
                agent.reload("SIGHUP", std::time::Instant::now(), Guard::Confirmed);
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    manager.stopping();
    // The agent's descriptors go with it: whatever only they kept alive (a
    // pin someone removed since the last check) must be pinned first.
    agent.keep_enforcing();
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

/// An optional event source as a future that never completes when absent.
async fn maybe<T>(future: Option<impl std::future::Future<Output = T>>) -> Option<T> {
    match future {
        Some(future) => Some(future.await),
        None => std::future::pending().await,
    }
}

/// The IAM statements in force: the file's, plus the bootstrap admins'.
fn api_service(store: &StoreConfig, run_dir: &std::path::Path) -> anyhow::Result<Service> {
    let mut iam = IamPolicy::default();
    if let Some(path) = &store.iam_statements {
        let (read, warnings) = IamPolicy::read(path)?;
        if !warnings.is_empty() {
            warn!("{}", warnings.trim_end());
        }
        iam = read;
    }
    iam.statements.extend(
        store
            .bootstrap_admins
            .iter()
            .map(|group| Statement::admin(group)),
    );
    info!(statements = iam.statements.len(), "IAM statements in force");
    Ok(Service {
        iam,
        audit: AuditLog::new(run_dir),
    })
}
