//! Prometheus metrics of `zpr run` and `zpr serve`, served over HTTP on a
//! thread of their own. The kernel's counters, map fill levels and health
//! are read from the pins when Prometheus scrapes (nothing copies them on a
//! timer); what only the agent knows (reloads and how long they took, its
//! status) it records as it goes. A scrape never waits for the agent, and
//! the agent waits for a scrape only to swap a status snapshot.

mod consumers;
mod families;
mod scrape;
mod server;

use std::{
    fmt,
    net::SocketAddr,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use prometheus_client::{
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use tracing::{error, info};

pub use consumers::EventConsumer;

use super::{Agent, Status, statement_usage::UsageReport};

/// zpr's own port, 9565,
/// on loopback: the metrics name no secrets, but neither need they leave the host.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9565";

/// `--metrics-address`: where to serve, or `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsAddress {
    Off,
    At(SocketAddr),
}

impl FromStr for MetricsAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<MetricsAddress, String> {
        if text == "none" {
            return Ok(MetricsAddress::Off);
        }
        text.parse().map(MetricsAddress::At).map_err(|_| {
            format!("`{text}` is neither ADDRESS:PORT (such as {DEFAULT_ADDRESS}) nor `none`")
        })
    }
}

impl fmt::Display for MetricsAddress {
    fn fmt(&self, out: &mut fmt::Formatter) -> fmt::Result {
        match self {
            MetricsAddress::Off => write!(out, "none"),
            MetricsAddress::At(address) => write!(out, "{address}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct MetricsOptions {
    pub address: MetricsAddress,
    /// Export per-endpoint series for at most this many local endpoints.
    pub endpoints: usize,
    /// Export per-statement series for at most this many statements.
    pub statements: usize,
}

/// How a reload ended, as `zpr_policy_reloads_total` labels it.
#[derive(Clone, Copy, Debug)]
pub enum ReloadOutcome {
    Applied,
    Failed,
    HeldBack,
}

impl ReloadOutcome {
    const ALL: [ReloadOutcome; 3] = [
        ReloadOutcome::Applied,
        ReloadOutcome::Failed,
        ReloadOutcome::HeldBack,
    ];

    fn name(self) -> &'static str {
        match self {
            ReloadOutcome::Applied => "applied",
            ReloadOutcome::Failed => "failed",
            ReloadOutcome::HeldBack => "held-back",
        }
    }
}

type OutcomeLabel = [(&'static str, &'static str); 1];

/// What the agent records for its metrics as it goes. Cheap to clone: the
/// clones share their values.
#[derive(Clone, Debug)]
pub struct AgentMetrics {
    reloads: Family<OutcomeLabel, Counter>,
    /// Store states the agent refused (unreadable, or not signed).
    refused_store_states: Counter,
    /// From the change being seen to the new generation being live.
    apply_duration: Histogram,
    /// The agent's status as last written, for the scrape thread.
    status: Arc<Mutex<Status>>,
    /// The statements' use as last written: the first of them the
    /// metrics show.
    usage: Arc<Mutex<Arc<UsageReport>>>,
    /// How many statements the metrics show (`--metrics-statements`).
    statements_shown: Arc<AtomicUsize>,
    event_consumers: EventConsumer,
}

/// Bucket bounds of `zpr_policy_apply_duration_seconds`: 1 ms to 8 s
/// (a reload takes milliseconds at 10,000 statements, seconds at 100,000).
const APPLY_BUCKETS: (f64, f64, u16) = (0.001, 2.0, 14);

impl Default for AgentMetrics {
    fn default() -> AgentMetrics {
        let reloads = Family::<OutcomeLabel, Counter>::default();
        for outcome in ReloadOutcome::ALL {
            // Every outcome is a series from the start, at 0.
            drop(reloads.get_or_create(&[("outcome", outcome.name())]));
        }
        let (start, factor, count) = APPLY_BUCKETS;
        AgentMetrics {
            reloads,
            refused_store_states: Counter::default(),
            apply_duration: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(start, factor, count),
            ),
            status: Arc::default(),
            usage: Arc::default(),
            statements_shown: Arc::default(),
            event_consumers: EventConsumer::default(),
        }
    }
}

impl AgentMetrics {
    pub fn reloaded(&self, outcome: ReloadOutcome) {
        self.reloads
            .get_or_create(&[("outcome", outcome.name())])
            .inc();
    }

    pub fn store_state_refused(&self) {
        self.refused_store_states.inc();
    }

    /// What the flow log and monitors record, shared with the event hub.
    pub fn event_consumers(&self) -> EventConsumer {
        self.event_consumers.clone()
    }

    pub fn applied_in(&self, seconds: f64) {
        self.apply_duration.observe(seconds);
    }

    /// Hands the scrape thread the status the agent just wrote.
    pub fn publish(&self, status: &Status) {
        // The names are shared, so the copy is cheap.
        let snapshot = status.clone();
        *self
            .status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = snapshot;
    }

    /// Hands the scrape thread the use of the statements it shows, as the
    /// agent just wrote it (a copy of those only: at 100,000 statements
    /// the whole report is tens of MB).
    pub fn publish_usage(&self, usage: &UsageReport) {
        let shown = self.statements_shown.load(Ordering::Relaxed);
        let snapshot = UsageReport {
            node: usage.node.clone(),
            statements: usage.statements.iter().take(shown).cloned().collect(),
            ..UsageReport::default()
        };
        *self
            .usage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(snapshot);
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "zpr_policy_reloads",
            "Reloads by outcome: applied (a new generation is live), failed (the inputs \
             were invalid; the live policy stays) or held-back (the unprotect guard waits \
             for SIGHUP)",
            self.reloads.clone(),
        );
        registry.register(
            "zpr_store_refused_states",
            "Store states the agent refused: a record it cannot read (not UTF-8, not valid, \
             or unknown), or a state not signed by a trusted key; the live policy stayed, \
             and `zpr status` says why",
            self.refused_store_states.clone(),
        );
        registry.register(
            "zpr_policy_apply_duration_seconds",
            "From an input change being seen to the new generation being live",
            self.apply_duration.clone(),
        );
        self.event_consumers.register(registry);
    }
}

/// Serves the agent's metrics as `options` ask. When the address cannot be
/// taken the agent goes on enforcing: the failure is logged as an error
/// and kept as a warning in `zpr status`.
pub fn start(options: &MetricsOptions, agent: &mut Agent) {
    let MetricsAddress::At(address) = options.address else {
        info!("metrics are off (--metrics-address none)");
        return;
    };
    let mut registry = Registry::default();
    agent
        .metrics()
        .statements_shown
        .store(options.statements, Ordering::Relaxed);
    agent.metrics().register(&mut registry);
    registry.register_collector(Box::new(scrape::KernelCollector {
        pins: agent.pins().clone(),
        run_dir: agent.run_dir().to_owned(),
        status: agent.metrics().status.clone(),
        usage: agent.metrics().usage.clone(),
        endpoints: options.endpoints,
        statements: options.statements,
    }));
    match server::serve(address, registry) {
        Ok(bound) => info!("serving Prometheus metrics at http://{bound}/metrics"),
        Err(err) => {
            let warning = format!(
                "metrics are not served: cannot listen on {address} ({err}); enforcement is \
                 unaffected. Free the port or pick another with --metrics-address"
            );
            error!("{warning}");
            agent.add_warning(warning);
        }
    }
}

#[cfg(test)]
mod tests;
