//! `zpr work-request get|list`: what each change through the API did.

use std::process::ExitCode;

use serde_json::Value;

use super::api_client::{ApiCommand, field, lines};

pub type Args = ApiCommand<Command>;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// The work requests you may see.
    List,
    /// One work request with its errors and log.
    Get { id: String },
}

fn summary(request: &Value) -> String {
    format!(
        "{}\t{}\t{}\t{}",
        field(request, "id"),
        field(request, "operationType"),
        field(request, "status"),
        field(request, "resource")
    )
}

fn show(request: &Value) -> String {
    let mut text = summary(request) + "\n";
    text += &format!("  by {}\n", field(request, "principal"));
    for log in request["logs"].as_array().into_iter().flatten() {
        text += &format!("  log: {}\n", field(log, "message"));
    }
    for error in request["errors"].as_array().into_iter().flatten() {
        text += &format!(
            "  error {}: {}\n",
            field(error, "code"),
            field(error, "message")
        );
    }
    text
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::List => args.api.call("GET", "/workRequests", None, |answer| {
            lines(answer, summary)
        }),
        Command::Get { id } => args
            .api
            .call("GET", &format!("/workRequests/{id}"), None, show),
    }
}
