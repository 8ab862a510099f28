//! `zpr configuration get|enable|disable`: whether ZPR enforces (disabled:
//! every endpoint is audited, nothing is dropped).

use std::process::ExitCode;

use serde_json::{Value, json};

use super::api_client::{ApiCommand, field};

pub type Args = ApiCommand<Command>;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// GetConfiguration.
    Get,
    /// UpdateConfiguration: enforce.
    Enable,
    /// UpdateConfiguration: audit only.
    Disable,
}

fn show(configuration: &Value) -> String {
    format!("zprStatus {}\n", field(configuration, "zprStatus"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let status = match args.command {
        Command::Get => return args.api.call("GET", "/configuration", None, show),
        Command::Enable => "ENABLED",
        Command::Disable => "DISABLED",
    };
    args.api.call(
        "PUT",
        "/configuration",
        Some(json!({ "zprStatus": status })),
        show,
    )
}
