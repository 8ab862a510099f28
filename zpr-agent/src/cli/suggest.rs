//! `zpr suggest`: the statements that the flows a flow log recorded as
//! dropped for want of a statement (or audited: would have been) need,
//! as a policy file, in the inventory's terms; or, with `--live`, the flows
//! this host's agent sees dropped (or audited) while it watches. Check it
//! with `zpr check`, see what else it opens with `zpr diff`, and apply it
//! as any policy.

use std::{
    io::BufRead as _,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Deserialize;
use zpr_common::counters::Reason;

use super::{
    agent_paths::AgentPaths, agent_view::AgentView, duration::parse_duration, event_source::Source,
};
use crate::{
    compile::suggestion::{ObservedFlow, Ports, suggest},
    daemon::{
        event_hub::Frame,
        event_names::{GenerationNames, describe},
    },
    datapath::monotonic_now_ns,
    inputs::{open::Symlinks, open::open_input, text::read_text},
    inventory::Inventory,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The inventory the flows' addresses belong to.
    #[arg(long, value_name = "FILE")]
    inventory: PathBuf,
    /// Flow logs of `zpr run --flow-log` (rotated ones too).
    #[arg(value_name = "FLOW_LOG", required_unless_present = "live")]
    flow_logs: Vec<PathBuf>,
    /// Instead of flow logs: watch what this host's agent drops (or
    /// audits) for this long (`60s`, `10m`; Ctrl-C ends it early).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          conflicts_with = "flow_logs")]
    live: Option<Duration>,
    /// Where the agent `--live` watches keeps its state.
    #[command(flatten)]
    paths: AgentPaths,
    /// Merge each statement's ports into one range from the lowest seen to
    /// the highest, ports never seen included (by default: exactly the
    /// ports seen).
    #[arg(long)]
    widen_ports: bool,
}

/// The fields of a flow log record this reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    #[serde(rename = "type")]
    kind: String,
    verdict: Option<String>,
    reason: Option<String>,
    source_address: Option<std::net::IpAddr>,
    destination_address: Option<std::net::IpAddr>,
    destination_port: Option<u16>,
    protocol: Option<u8>,
}

impl Record {
    fn wanted(&self) -> Option<ObservedFlow> {
        (self.kind == "flow").then_some(())?;
        let flow = ObservedFlow {
            source: self.source_address?,
            destination: self.destination_address?,
            protocol: self.protocol?,
            port: self.destination_port.unwrap_or(0),
        };
        unallowed(self.verdict.as_deref()?, self.reason.as_deref()?, flow)
    }
}

/// `flow` if no statement allowed it (`verdict` DROPPED, or AUDITED: passed
/// only in audit mode, for want of a statement); other drops (spoofed
/// sources, malformed packets, quarantined vNICs) are no policy's matter.
fn unallowed(verdict: &str, reason: &str, flow: ObservedFlow) -> Option<ObservedFlow> {
    let policy_reason = [Reason::NoPolicy, Reason::Revoked, Reason::Audited]
        .iter()
        .any(|wanted| reason == wanted.name());
    (matches!(verdict, "DROPPED" | "AUDITED") && policy_reason).then_some(flow)
}

/// The flows no statement allowed that this host's agent reports while it
/// is watched for `duration` (or until Ctrl-C).
fn watch(paths: &AgentPaths, duration: Duration) -> anyhow::Result<Vec<ObservedFlow>> {
    let started_ns = monotonic_now_ns();
    let view = AgentView::of(paths);
    anyhow::ensure!(view.pins_visible(), "{}", view.why_no_pins());
    eprintln!(
        "zpr suggest: watching this host's drops for {}s (Ctrl-C ends it early)",
        duration.as_secs()
    );
    let deadline = tokio::time::Instant::now() + duration;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let mut source = Source::open(&view.run_dir, &view.pins).await?;
            let mut names = GenerationNames::default();
            let mut flows = Vec::new();
            let mut progress = Instant::now();
            loop {
                let frames = tokio::select! {
                    frames = source.next() => frames?,
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = tokio::signal::ctrl_c() => break,
                };
                let Some(frames) = frames else {
                    eprintln!("zpr suggest: the agent stopped serving events");
                    break;
                };
                for frame in frames {
                    // What was buffered before the watch began is not of it.
                    let Frame::Event(event) = frame else { continue };
                    if event.timestamp_ns < started_ns {
                        continue;
                    }
                    names.refresh(&view.run_dir, event.generation);
                    let seen = describe(&event, &names);
                    let flow = ObservedFlow {
                        source: seen.source.address,
                        destination: seen.destination.address,
                        protocol: seen.protocol,
                        port: seen.destination.port,
                    };
                    flows.extend(unallowed(seen.verdict.name(), seen.reason, flow));
                }
                if progress.elapsed() >= Duration::from_secs(10) {
                    eprintln!("zpr suggest: {} flows so far", flows.len());
                    progress = Instant::now();
                }
            }
            Ok(flows)
        })
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = read_text(&args.inventory, "inventory", Symlinks::Followed)?;
    let inventory = Inventory::from_yaml_str(&text)
        .map_err(|errors| anyhow::anyhow!("{}: {errors}", args.inventory.display()))?;
    let mut flows = match args.live {
        Some(duration) => watch(&args.paths, duration)?,
        None => Vec::new(),
    };
    for path in &args.flow_logs {
        let file = open_input(path, "flow log", Symlinks::Followed)?;
        for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let record: Record = serde_json::from_str(&line).with_context(|| {
                format!(
                    "{}:{}: not a flow log record of `zpr run --flow-log`",
                    path.display(),
                    index + 1
                )
            })?;
            flows.extend(record.wanted());
        }
    }
    let ports = if args.widen_ports {
        Ports::Widened
    } else {
        Ports::Seen
    };
    let suggested = suggest(&inventory, &flows, ports);
    print!("{}", suggested.policy_text());
    eprintln!(
        "zpr suggest: {} statement(s) for {} flow(s) no statement allowed; {} not \
         expressible, {} between untagged addresses (not enforced)",
        suggested.suggestions.len(),
        flows.len(),
        suggested.inexpressible.len(),
        suggested.unenforced
    );
    Ok(ExitCode::SUCCESS)
}
