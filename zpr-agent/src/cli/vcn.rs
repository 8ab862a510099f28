//! `zpr vcn create|get|list|update|delete`: the VCNs of the store of
//! `zpr serve`, through its API. A VCN that still holds endpoints is not
//! deleted (409, naming them).

use std::process::ExitCode;

use serde_json::{Map, Value};

use super::api_client::{ApiCommand, field, lines};

pub type Args = ApiCommand<Command>;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// ListVcns.
    List,
    /// GetVcn.
    Get { name: String },
    /// CreateVcn.
    Create {
        name: String,
        /// An address range of the VCN (repeat for more).
        #[arg(long = "cidr", value_name = "CIDR", required = true)]
        cidrs: Vec<String>,
        /// The VCN's own `namespace.key:value` (statements name it: `in
        /// ns.key:value VCN`).
        #[arg(long)]
        security_attribute: Option<String>,
    },
    /// UpdateVcn: what is given replaces what was.
    Update {
        name: String,
        /// The new ranges (repeat; they replace all of the old ones).
        #[arg(long = "cidr", value_name = "CIDR")]
        cidrs: Vec<String>,
        #[arg(long)]
        security_attribute: Option<String>,
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// DeleteVcn.
    Delete {
        name: String,
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
}

fn show(vcn: &Value) -> String {
    let cidrs: Vec<&str> = vcn["cidrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "{}\t{}\t{}\n",
        field(vcn, "name"),
        cidrs.join(" "),
        field(vcn, "securityAttribute")
    )
}

fn details(cidrs: Vec<String>, security_attribute: Option<String>) -> Map<String, Value> {
    let mut body = Map::new();
    if !cidrs.is_empty() {
        body.insert("cidrs".to_owned(), cidrs.into());
    }
    if let Some(attribute) = security_attribute {
        body.insert("securityAttribute".to_owned(), attribute.into());
    }
    body
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let api = &args.api;
    match args.command {
        Command::List => api.call("GET", "/vcns", None, |answer| {
            lines(answer, |vcn| show(vcn).trim_end().to_owned())
        }),
        Command::Get { name } => api.call("GET", &format!("/vcns/{name}"), None, show),
        Command::Create {
            name,
            cidrs,
            security_attribute,
        } => {
            let mut body = details(cidrs, security_attribute);
            body.insert("name".to_owned(), name.into());
            api.call("POST", "/vcns", Some(Value::Object(body)), show)
        }
        Command::Update {
            name,
            cidrs,
            security_attribute,
            if_match,
        } => api.call_matching(
            "PUT",
            &format!("/vcns/{name}"),
            if_match.as_deref(),
            Some(Value::Object(details(cidrs, security_attribute))),
            show,
        ),
        Command::Delete { name, if_match } => api.call_matching(
            "DELETE",
            &format!("/vcns/{name}"),
            if_match.as_deref(),
            None,
            show,
        ),
    }
}
