//! `zpr namespace ...`: security-attribute namespaces, through the API.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::api_client::{ApiCommand, field, lines};

pub type Args = ApiCommand<Command>;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// ListSecurityAttributeNamespaces (those you may inspect).
    List,
    /// GetSecurityAttributeNamespace.
    Get { namespace: String },
    /// CreateSecurityAttributeNamespace.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// UpdateSecurityAttributeNamespace: the description.
    Update {
        namespace: String,
        #[arg(long)]
        description: String,
    },
    /// Retire: its attributes can no longer be applied (those applied stay).
    Retire { namespace: String },
    /// Reactivate a retired namespace.
    Reactivate { namespace: String },
    /// DeleteSecurityAttributeNamespace; with --cascade, also removes its
    /// attributes from every endpoint.
    Delete {
        namespace: String,
        #[arg(long)]
        cascade: bool,
    },
}

fn show(namespace: &Value) -> String {
    format!(
        "{}\t{}\t{}\n",
        field(namespace, "name"),
        field(namespace, "id"),
        field(namespace, "lifecycleState")
    )
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let api = &args.api;
    let path = |namespace: &str| format!("/securityAttributeNamespaces/{namespace}");
    match args.command {
        Command::List => api.call("GET", "/securityAttributeNamespaces", None, |answer| {
            lines(answer, |n| show(n).trim_end().to_owned())
        }),
        Command::Get { namespace } => api.call("GET", &path(&namespace), None, show),
        Command::Create { name, description } => api.call(
            "POST",
            "/securityAttributeNamespaces",
            Some(json!({ "name": name, "description": description })),
            show,
        ),
        Command::Update {
            namespace,
            description,
        } => api.call(
            "PUT",
            &path(&namespace),
            Some(json!({ "description": description })),
            show,
        ),
        Command::Retire { namespace } => api.call(
            "PUT",
            &path(&namespace),
            Some(json!({ "isRetired": true })),
            show,
        ),
        Command::Reactivate { namespace } => api.call(
            "PUT",
            &path(&namespace),
            Some(json!({ "isRetired": false })),
            show,
        ),
        Command::Delete { namespace, cascade } => {
            let deleted = |n: &Value| format!("deleted {}\n", field(n, "name"));
            if cascade {
                let action = format!("{}/actions/cascadeDelete", path(&namespace));
                api.call("POST", &action, None, deleted)
            } else {
                api.call("DELETE", &path(&namespace), None, deleted)
            }
        }
    }
}
