//! What `zpr run` and `zpr serve` share: where the agent keeps its state,
//! how it attaches, how it logs.

use std::io::IsTerminal as _;

use clap::ValueEnum;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt as _, util::SubscriberInitExt as _};
use zpr_common::maps;

use super::agent_paths::AgentPaths;
use crate::{
    daemon::{
        AgentConfig, InputSource, Quarantine,
        flow_log::{self, FlowLogOptions, FlowLogTarget},
        metrics::{self, MetricsAddress, MetricsOptions},
    },
    datapath::{FromWorkloadHook, QuarantineDhcp},
};

#[derive(clap::Args, Debug)]
pub struct AgentOptions {
    #[command(flatten)]
    pub paths: AgentPaths,
    /// Where the from-workload program runs on each vNIC.
    #[arg(long, value_enum, default_value_t = Hook::Tcx)]
    pub hook: Hook,
    /// error, warn, info or debug (or a tracing filter such as `zpr_agent=debug`).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
    /// Run even when the pins would not outlive the agent (a bpffs only
    /// this process sees, as under `ip netns exec`): when the agent
    /// stops, every program detaches. For throwaway set-ups only.
    #[arg(long)]
    pub allow_private_bpffs: bool,
    /// Apply input changes that would stop protecting more than half of
    /// this host's protected endpoints at once. Without it such a change
    /// (an emptied or truncated inventory, say) is held back, the live
    /// policy stays, and SIGHUP confirms it.
    #[arg(long)]
    pub allow_unprotect: bool,
    /// Flows the established table holds (the opening table holds a
    /// quarter as many). Kernel memory is reserved up front: about 144
    /// bytes per entry (see the README). Changing it restarts tracking:
    /// TCP flows are picked up again, others re-decided.
    #[arg(long, value_name = "N", default_value_t = maps::CONNTRACK_MAX,
          value_parser = clap::value_parser!(u32).range(CONNTRACK_ENTRIES_MIN..=CONNTRACK_ENTRIES_MAX))]
    pub conntrack_entries: u32,
    /// Drop (and new-flow allow) events the kernel sends per second on
    /// each CPU, in bursts of up to a second's worth; `zpr monitor` says
    /// how many more were rate-limited.
    #[arg(long, value_name = "N", default_value_t = maps::EVENTS_PER_SECOND,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub events_per_second: u32,
    /// Where to serve Prometheus metrics (`http://ADDR:PORT/metrics`), or
    /// `none`. When the address cannot be taken the agent still enforces,
    /// and says so in its log and in `zpr status`.
    #[arg(long, value_name = "ADDR:PORT|none", default_value = metrics::DEFAULT_ADDRESS)]
    pub metrics_address: MetricsAddress,
    /// Write a flow log to FILE (`-`: standard output): a JSON line for
    /// every new flow decided (allowed, audited) and every drop, with
    /// OCI flow-log field names, the statements that allowed the flow,
    /// both endpoints' names and security attributes. Records the kernel
    /// did not send or the writer could not write are counted in it. A
    /// failing write never stops enforcement (see the README).
    #[arg(long, value_name = "FILE|-")]
    pub flow_log: Option<FlowLogTarget>,
    /// Rotate the flow log file when it would grow past this size:
    /// FILE becomes FILE.1 (FILE.1 becomes FILE.2, ...; five are kept).
    #[arg(long, value_name = "BYTES", default_value_t = flow_log::DEFAULT_MAX_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub flow_log_max_bytes: u64,
    /// Export per-endpoint series (`zpr_endpoint_packets_total`,
    /// `zpr_endpoint_bytes_total`, `zpr_endpoint_attached`, labelled with
    /// the endpoint's name) for at most this many local endpoints, the
    /// first by name; 0 exports none. Bounds the series a host adds.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_METRICS_ENDPOINTS)]
    pub metrics_endpoints: usize,
    /// Export `zpr_statement_flows_total` (labelled with the statement's
    /// policy and `policy:line`) for at most the first this many
    /// statements of the live policy; 0 exports none.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_METRICS_STATEMENTS)]
    pub metrics_statements: usize,
    /// Quarantine unregistered vNICs: a vNIC here whose name one of these
    /// comma-separated globs matches (`*` any run of characters, `?` one)
    /// and that no endpoint is registered for on this node passes nothing
    /// but ARP and IPv6 neighbour discovery until its registration
    /// arrives; drops count as `unregistered`. Without it such a vNIC is
    /// left alone: it passes everything.
    #[arg(long, value_name = "GLOBS")]
    pub quarantine: Option<Quarantine>,
    /// Let a quarantined vNIC's DHCP (UDP 67/68, IPv4) through, so a VM
    /// gets its address while it waits for its registration.
    #[arg(long, requires = "quarantine")]
    pub quarantine_allow_dhcp: bool,
}

/// `--metrics-endpoints`' default: at most 42 counter series each (two
/// directions by 21 reasons, only those that counted), so about 10,000
/// series at most for a host.
const DEFAULT_METRICS_ENDPOINTS: usize = 256;

/// `--metrics-statements`' default: one series each.
const DEFAULT_METRICS_STATEMENTS: usize = 1000;

const CONNTRACK_ENTRIES_MIN: i64 = 4096;
const CONNTRACK_ENTRIES_MAX: i64 = 16 * 1024 * 1024;

/// `--hook`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// tcx ingress: keeps GRO/TSO on veth (best TCP throughput there).
    Tcx,
    /// Generic XDP.
    XdpGeneric,
    /// Driver XDP: fastest flood disposal on NICs; costs TCP throughput on veth.
    XdpNative,
}

impl AgentOptions {
    /// Starts the agent's log ([`start_logging`]) and says what it will run.
    pub fn into_config(self, inputs: InputSource) -> anyhow::Result<AgentConfig> {
        start_logging(&self.log_level)?;
        Ok(AgentConfig {
            inputs,
            bpffs: self.paths.bpffs,
            run_dir: self.paths.run_dir,
            hook: self.hook.into(),
            allow_private_bpffs: self.allow_private_bpffs,
            allow_unprotect: self.allow_unprotect,
            conntrack_entries: self.conntrack_entries,
            events_per_second: self.events_per_second,
            metrics: MetricsOptions {
                address: self.metrics_address,
                endpoints: self.metrics_endpoints,
                statements: self.metrics_statements,
            },
            flow_log: self.flow_log.map(|target| FlowLogOptions {
                target,
                max_bytes: self.flow_log_max_bytes,
            }),
            quarantine: self.quarantine.unwrap_or_default(),
            quarantine_dhcp: if self.quarantine_allow_dhcp {
                QuarantineDhcp::Allowed
            } else {
                QuarantineDhcp::Refused
            },
        })
    }
}

/// Starts the log of a long-running command. Under systemd (stderr is the
/// journal's stream) it goes to journald with its fields; otherwise to
/// stderr as text.
pub fn start_logging(log_level: &str) -> anyhow::Result<()> {
    let journald = stderr_is_the_journal()
        .then(tracing_journald::layer)
        .and_then(Result::ok);
    let text = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
    });
    tracing_subscriber::registry()
        .with(EnvFilter::try_new(log_level)?)
        .with(journald)
        .with(text)
        .init();
    Ok(())
}

/// systemd's `$JOURNAL_STREAM` names stderr's device and inode when stderr
/// is connected to the journal (and not redirected since).
fn stderr_is_the_journal() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream.to_string_lossy() == format!("{}:{}", stderr.dev(), stderr.ino())
}

impl From<Hook> for FromWorkloadHook {
    fn from(hook: Hook) -> FromWorkloadHook {
        match hook {
            Hook::Tcx => FromWorkloadHook::Tcx,
            Hook::XdpGeneric => FromWorkloadHook::XdpGeneric,
            Hook::XdpNative => FromWorkloadHook::XdpNative,
        }
    }
}
