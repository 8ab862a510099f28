//! `zpr endpoint tag|untag`: apply security attributes to an endpoint or
//! remove them (needs `use` on each attribute's namespace).

use std::process::ExitCode;

use serde_json::{Value, json};

use super::api_client::{ApiCommand, field};

pub type Args = ApiCommand<Command>;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// ApplySecurityAttributes: `namespace.key:value`...
    Tag {
        endpoint: String,
        #[arg(required = true)]
        attributes: Vec<String>,
    },
    /// RemoveSecurityAttributes.
    Untag {
        endpoint: String,
        #[arg(required = true)]
        attributes: Vec<String>,
    },
}

fn show(endpoint: &Value) -> String {
    let attributes: Vec<&str> = endpoint["securityAttributes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!("{}\t{}\n", field(endpoint, "name"), attributes.join(" "))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (endpoint, attributes, action) = match args.command {
        Command::Tag {
            endpoint,
            attributes,
        } => (endpoint, attributes, "applySecurityAttributes"),
        Command::Untag {
            endpoint,
            attributes,
        } => (endpoint, attributes, "removeSecurityAttributes"),
    };
    args.api.call(
        "POST",
        &format!("/endpoints/{endpoint}/actions/{action}"),
        Some(json!({ "securityAttributes": attributes })),
        show,
    )
}
