//! `zpr endpoint create|get|list|update|delete|import|tag|untag`: the
//! endpoints (workloads' vNICs) of the store of `zpr serve`, through its
//! API. Attributes given or changed need `use` on their namespace.

use std::{path::PathBuf, process::ExitCode};

use serde_json::{Map, Value, json};

use super::api_client::{ApiArgs, ApiCommand, field};
use crate::inputs::{open::Symlinks, text::read_text};

pub type Args = ApiCommand<Command>;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// ListEndpoints (every page), optionally only those on a node, in a
    /// VCN or carrying an attribute.
    List {
        #[arg(long)]
        node: Option<String>,
        #[arg(long)]
        vcn: Option<String>,
        /// `namespace.key:value`.
        #[arg(long)]
        attribute: Option<String>,
    },
    /// GetEndpoint.
    Get { name: String },
    /// CreateEndpoint: checked with the rest of the tenancy first (an
    /// address used by another endpoint, or an interface already used on
    /// the node, is refused).
    Create {
        name: String,
        #[arg(long)]
        vcn: String,
        /// An IPv4 or IPv6 address (repeat for more).
        #[arg(long = "address", value_name = "ADDRESS", required = true)]
        addresses: Vec<String>,
        #[command(flatten)]
        placement: Placement,
        /// `namespace.key:value` (repeat for more).
        #[arg(long = "attribute", value_name = "ATTRIBUTE")]
        attributes: Vec<String>,
    },
    /// UpdateEndpoint: what is given replaces what was; a new --node moves
    /// the endpoint to that host (a migration).
    Update {
        name: String,
        #[arg(long)]
        vcn: Option<String>,
        /// The new addresses (repeat; they replace all of the old ones).
        #[arg(long = "address", value_name = "ADDRESS")]
        addresses: Vec<String>,
        #[command(flatten)]
        placement: Placement,
        /// The new attributes (repeat; they replace all of the old ones).
        #[arg(long = "attribute", value_name = "ATTRIBUTE")]
        attributes: Vec<String>,
        /// Change it only if its etag (from `zpr endpoint get`) is still this.
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// DeleteEndpoint: its identity goes from every host, so an address
    /// another VM reuses inherits nothing; live flows with it are cut.
    Delete {
        name: String,
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// ImportEndpoints: bring the store's VCNs and endpoints in line with
    /// an inventory file. Shows what it changes and which paths that opens
    /// and closes (as `zpr diff`), then applies it all in one commit.
    Import {
        file: PathBuf,
        /// Also delete the endpoints the file does not list.
        #[arg(long)]
        prune: bool,
    },
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

/// Where the endpoint is: its vNIC, host and MAC.
#[derive(clap::Args, Debug)]
pub struct Placement {
    /// The vNIC's name on its host (`vnet3`).
    #[arg(long)]
    interface: Option<String>,
    /// The host (fleet node) whose agent attaches to the interface.
    #[arg(long)]
    node: Option<String>,
    #[arg(long)]
    mac: Option<String>,
    /// `enforce` (default) or `audit` (decided and logged, never dropped).
    #[arg(long)]
    mode: Option<String>,
}

impl Placement {
    fn into_fields(self, body: &mut Map<String, Value>) {
        for (name, value) in [
            ("interface", self.interface),
            ("node", self.node),
            ("mac", self.mac),
            ("mode", self.mode),
        ] {
            if let Some(value) = value {
                body.insert(name.to_owned(), value.into());
            }
        }
    }
}

fn show(endpoint: &Value) -> String {
    let texts = |name: &str| -> String {
        endpoint[name]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let placed = match (field(endpoint, "interface"), field(endpoint, "node")) {
        ("", _) => String::new(),
        (interface, "") => format!(" on {interface}"),
        (interface, node) => format!(" on {interface} at {node}"),
    };
    format!(
        "{}\t{} {}{placed}\t{}\n",
        field(endpoint, "name"),
        field(endpoint, "vcn"),
        texts("addresses"),
        texts("securityAttributes")
    )
}

fn show_imported(imported: &Value) -> String {
    let mut text = String::new();
    for (key, what) in [
        ("vcnsCreated", "VCNs added"),
        ("vcnsUpdated", "VCNs changed"),
        ("created", "endpoints added"),
        ("updated", "endpoints changed"),
        ("deleted", "endpoints removed"),
    ] {
        let names: Vec<&str> = imported[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !names.is_empty() {
            text += &format!("{what}: {}\n", names.join(", "));
        }
    }
    if text.is_empty() {
        text = "the store already matches the file: nothing to change\n".to_owned();
    }
    text
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let api = &args.api;
    match args.command {
        Command::List {
            node,
            vcn,
            attribute,
        } => list(
            api,
            [("node", node), ("vcn", vcn), ("attribute", attribute)],
        ),
        Command::Get { name } => api.call("GET", &format!("/endpoints/{name}"), None, show),
        Command::Create {
            name,
            vcn,
            addresses,
            placement,
            attributes,
        } => {
            let mut body = Map::new();
            body.insert("name".to_owned(), name.into());
            body.insert("vcn".to_owned(), vcn.into());
            body.insert("addresses".to_owned(), addresses.into());
            body.insert("securityAttributes".to_owned(), attributes.into());
            placement.into_fields(&mut body);
            api.call("POST", "/endpoints", Some(Value::Object(body)), show)
        }
        Command::Update {
            name,
            vcn,
            addresses,
            placement,
            attributes,
            if_match,
        } => {
            let mut body = Map::new();
            if let Some(vcn) = vcn {
                body.insert("vcn".to_owned(), vcn.into());
            }
            if !addresses.is_empty() {
                body.insert("addresses".to_owned(), addresses.into());
            }
            if !attributes.is_empty() {
                body.insert("securityAttributes".to_owned(), attributes.into());
            }
            placement.into_fields(&mut body);
            api.call_matching(
                "PUT",
                &format!("/endpoints/{name}"),
                if_match.as_deref(),
                Some(Value::Object(body)),
                show,
            )
        }
        Command::Delete { name, if_match } => api.call_matching(
            "DELETE",
            &format!("/endpoints/{name}"),
            if_match.as_deref(),
            None,
            show,
        ),
        Command::Import { file, prune } => import(api, &file, prune),
        Command::Tag {
            endpoint,
            attributes,
        } => tag(api, &endpoint, attributes, "applySecurityAttributes"),
        Command::Untag {
            endpoint,
            attributes,
        } => tag(api, &endpoint, attributes, "removeSecurityAttributes"),
    }
}

fn tag(
    api: &ApiArgs,
    endpoint: &str,
    attributes: Vec<String>,
    action: &str,
) -> anyhow::Result<ExitCode> {
    api.call(
        "POST",
        &format!("/endpoints/{endpoint}/actions/{action}"),
        Some(json!({ "securityAttributes": attributes })),
        show,
    )
}

/// Every page of ListEndpoints, printed as one list.
fn list(api: &ApiArgs, filters: [(&str, Option<String>); 3]) -> anyhow::Result<ExitCode> {
    let mut query: Vec<String> = filters
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| format!("{name}={}", encoded(&value))))
        .collect();
    let mut items = Vec::new();
    loop {
        let path = format!("/endpoints?{}", query.join("&"));
        let (response, answer) = api.request("GET", &path, None, None)?;
        if !(200..300).contains(&response.status) {
            return api.report(&response, &answer, |_| String::new());
        }
        items.extend(answer["items"].as_array().into_iter().flatten().cloned());
        let Some(next) = answer["nextPage"].as_str() else {
            return api.report(&response, &json!({ "items": items }), |all| {
                super::api_client::lines(all, |endpoint| show(endpoint).trim_end().to_owned())
            });
        };
        query.retain(|pair| !pair.starts_with("page="));
        query.push(format!("page={}", encoded(next)));
    }
}

/// Percent-encodes what a query value may not hold as written.
fn encoded(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Shows the change (a dry run), then makes it, unless `--dry-run` asked
/// only to see it.
fn import(api: &ApiArgs, file: &std::path::Path, prune: bool) -> anyhow::Result<ExitCode> {
    let inventory = read_text(file, "inventory", Symlinks::Followed)?;
    let body = json!({ "inventory": inventory, "prune": prune });
    let preview = ApiArgs {
        dry_run: true,
        ..api.clone()
    };
    let (response, answer) =
        preview.request("POST", "/endpoints/actions/import", None, Some(&body))?;
    if !(200..300).contains(&response.status) || api.dry_run {
        return preview.report(&response, &answer, |_| String::new());
    }
    if api.output == super::Output::Text {
        print!(
            "{}{}",
            show_imported(&answer["resource"]),
            answer["impactText"].as_str().unwrap_or_default()
        );
    }
    api.call("POST", "/endpoints/actions/import", Some(body), |_| {
        "applied in one commit\n".to_owned()
    })
}
