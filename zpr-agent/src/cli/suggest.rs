//! `zpr suggest`: the statements that the flows a flow log recorded as
//! dropped for want of a statement (or audited: would have been) need,
//! as a policy file, in the inventory's terms. Check it with `zpr check`,
//! see what else it opens with `zpr diff`, and apply it as any policy.

use std::{io::BufRead as _, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use serde::Deserialize;
use zpr_common::counters::Reason;

use crate::{
    compile::suggestion::{ObservedFlow, Ports, suggest},
    inputs::{open::Symlinks, open::open_input, text::read_text},
    inventory::Inventory,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The inventory the flows' addresses belong to.
    #[arg(long, value_name = "FILE")]
    inventory: PathBuf,
    /// Flow logs of `zpr run --flow-log` (rotated ones too).
    #[arg(required = true, value_name = "FLOW_LOG")]
    flow_logs: Vec<PathBuf>,
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
    /// A flow no statement allowed (dropped, or passed only in audit mode).
    fn wanted(&self) -> Option<ObservedFlow> {
        let policy_reason = [Reason::NoPolicy, Reason::Revoked, Reason::Audited]
            .iter()
            .any(|reason| self.reason.as_deref() == Some(reason.name()));
        let unallowed = matches!(self.verdict.as_deref(), Some("DROPPED" | "AUDITED"));
        (self.kind == "flow" && unallowed && policy_reason).then_some(())?;
        Some(ObservedFlow {
            source: self.source_address?,
            destination: self.destination_address?,
            protocol: self.protocol?,
            port: self.destination_port.unwrap_or(0),
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = read_text(&args.inventory, "inventory", Symlinks::Followed)?;
    let inventory = Inventory::from_yaml_str(&text)
        .map_err(|errors| anyhow::anyhow!("{}: {errors}", args.inventory.display()))?;
    let mut flows = Vec::new();
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
