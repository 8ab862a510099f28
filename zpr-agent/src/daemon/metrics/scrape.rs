//! What a scrape reads: the kernel's side from the pins, the agent's from
//! its last status, and the health both make, judged as `zpr status` does.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder};

use super::families;
use crate::{
    daemon::{
        EndpointState, Health, Observed, Status, assess, endpoint_states, quarantine_states,
        statement_usage::UsageReport,
    },
    datapath::{
        ConntrackSummary, CounterTable, EventStats, Fill, PinLayout, kernel_attachments,
        pinned_config, pinned_conntrack, pinned_counters, pinned_event_stats, pinned_fill,
    },
};

/// Everything one scrape exports. What could not be read is `None` (or
/// empty): its series are left out rather than reported as 0, and the
/// health says what was unreadable.
#[derive(Debug, Default)]
pub(super) struct Scrape {
    pub counters: Option<CounterTable>,
    pub fill: Vec<Fill>,
    pub conntrack: Option<ConntrackSummary>,
    pub events: Option<EventStats>,
    /// The generation the kernel enforces.
    pub live_generation: Option<u32>,
    /// The agent's status as it last wrote it.
    pub agent: Status,
    /// The statements' use as the agent last wrote it.
    pub usage: Arc<UsageReport>,
    pub endpoints: Vec<EndpointState>,
    pub health: Option<Health>,
}

impl Scrape {
    fn read(
        pins: &PinLayout,
        run_dir: &std::path::Path,
        agent: Status,
        usage: Arc<UsageReport>,
    ) -> Scrape {
        let mut unreadable = Vec::new();
        let mut note = |what: &str, err: anyhow::Error| {
            unreadable.push(format!("cannot read {what}: {err:#}"));
        };
        let live_generation = pinned_config(pins)
            .map(|config| config.generation)
            .map_err(|err| note("the live generation", err))
            .ok();
        let kernel = kernel_attachments(pins)
            .map_err(|err| note("the kernel's attachments", err))
            .ok();
        let endpoints = kernel
            .as_ref()
            .map(|kernel| endpoint_states(Some(&agent), kernel));
        let quarantined = kernel
            .as_ref()
            .map(|kernel| quarantine_states(Some(&agent), kernel))
            .unwrap_or_default();
        let fill = pinned_fill(pins)
            .map_err(|err| note("the map fill levels", err))
            .unwrap_or_default();
        let conntrack = pinned_conntrack(pins)
            .map_err(|err| note("the conntrack tables", err))
            .ok();
        let counters = pinned_counters(pins)
            .map_err(|err| note("the counters", err))
            .ok();
        let events = pinned_event_stats(pins)
            .map_err(|err| note("the event statistics", err))
            .ok();
        // Without the live generation or the attachments there is nothing
        // to judge protection by: `zpr status` fails then, and so does the
        // health series (left out).
        let health = match (live_generation, &endpoints) {
            (Some(live_generation), Some(endpoints)) => Some(
                assess(&Observed {
                    agent_pid: Some(std::process::id()),
                    agent: Some(&agent),
                    run_dir,
                    live_generation,
                    endpoints,
                    quarantined: &quarantined,
                    conntrack: conntrack.as_ref(),
                    unreadable: &unreadable,
                })
                .0,
            ),
            _ => None,
        };
        Scrape {
            counters,
            fill,
            conntrack,
            events,
            live_generation,
            agent,
            usage,
            endpoints: endpoints.unwrap_or_default(),
            health,
        }
    }
}

/// Reads the pins on every scrape (on the metrics thread).
#[derive(Debug)]
pub(super) struct KernelCollector {
    pub pins: PinLayout,
    pub run_dir: PathBuf,
    pub status: Arc<Mutex<Status>>,
    pub usage: Arc<Mutex<Arc<UsageReport>>>,
    /// Per-endpoint series for at most this many endpoints.
    pub endpoints: usize,
    /// Per-statement series for at most this many statements.
    pub statements: usize,
}

impl Collector for KernelCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        let agent = self
            .status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let usage = self
            .usage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let scrape = Scrape::read(&self.pins, &self.run_dir, agent, usage);
        families::encode(&scrape, self.endpoints, self.statements, encoder)
    }
}
