//! `zpr policy list|get|create|update|delete`: ZPR policies in the store
//! of `zpr serve`, through its API.

use std::{path::PathBuf, process::ExitCode};

use serde_json::{Value, json};

use crate::inputs::open::Symlinks;
use crate::inputs::text::read_text;

use super::api_client::{ApiCommand, field, header, lines};

/// Reads and writes an update tries before giving up when others keep
/// changing the same policy.
const READ_MODIFY_WRITE_ATTEMPTS: usize = 20;

pub type Args = ApiCommand<Command>;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// ListZprPolicies.
    List,
    /// GetZprPolicy: statements with their ids.
    Get { id: String },
    /// CreateZprPolicy (checked first: a bad statement changes nothing).
    Create {
        name: String,
        #[command(flatten)]
        statements: Statements,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// UpdateZprPolicy. `--add-statement`/`--remove-statement` read the
    /// policy, change it and write it back with the etag they read,
    /// reading again when someone else changed it meanwhile (no update is
    /// lost).
    Update {
        id: String,
        #[command(flatten)]
        statements: Statements,
        #[arg(long)]
        description: Option<String>,
        /// Add this statement to the policy's (repeat for more).
        #[arg(long = "add-statement", value_name = "STATEMENT", conflicts_with_all = ["statements", "file"])]
        add: Vec<String>,
        /// Remove this statement from the policy's (repeat for more).
        #[arg(long = "remove-statement", value_name = "STATEMENT", conflicts_with_all = ["statements", "file"])]
        remove: Vec<String>,
        /// Change it only if its etag (from `zpr policy get`) is still this.
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// DeleteZprPolicy.
    Delete { id: String },
}

#[derive(clap::Args, Debug)]
pub struct Statements {
    /// A ZPR statement (repeat for more).
    #[arg(long = "statement", value_name = "STATEMENT")]
    pub statements: Vec<String>,
    /// A policy file: one statement per line; blank lines and `#` comments
    /// are left out.
    #[arg(long, value_name = "FILE", conflicts_with = "statements")]
    pub file: Option<PathBuf>,
}

impl Statements {
    fn read(&self) -> anyhow::Result<Option<Vec<String>>> {
        if let Some(path) = &self.file {
            let text = read_text(path, "policy", Symlinks::Followed)?;
            return Ok(Some(
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && !line.starts_with('#'))
                    .map(str::to_owned)
                    .collect(),
            ));
        }
        Ok((!self.statements.is_empty()).then(|| self.statements.clone()))
    }
}

fn show(policy: &Value) -> String {
    let name = field(policy, "name");
    let mut text = format!(
        "{name} ({}, etag {})\n",
        field(policy, "id"),
        field(policy, "etag")
    );
    if !field(policy, "description").is_empty() {
        text += &format!("  {}\n", field(policy, "description"));
    }
    for (index, statement) in policy["statements"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        text += &format!(
            "  {name}:{} {}\n",
            index + 1,
            statement.as_str().unwrap_or_default()
        );
    }
    text
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let api = &args.api;
    match args.command {
        Command::List => api.call("GET", "/zprPolicies", None, |answer| {
            lines(answer, |p| {
                format!(
                    "{}\t{}\t{} statement(s)",
                    field(p, "name"),
                    field(p, "id"),
                    p["statements"].as_array().map_or(0, Vec::len)
                )
            })
        }),
        Command::Get { id } => api.call("GET", &format!("/zprPolicies/{id}"), None, show),
        Command::Create {
            name,
            statements,
            description,
        } => {
            let statements = statements.read()?.unwrap_or_default();
            let body =
                json!({ "name": name, "description": description, "statements": statements });
            api.call("POST", "/zprPolicies", Some(body), show)
        }
        Command::Update {
            id,
            statements,
            description,
            add,
            remove,
            if_match,
        } => {
            let path = format!("/zprPolicies/{id}");
            let mut body = json!({});
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            if add.is_empty() && remove.is_empty() {
                if let Some(statements) = statements.read()? {
                    body["statements"] = json!(statements);
                }
                return api.call_matching("PUT", &path, if_match.as_deref(), Some(body), show);
            }
            for _ in 0..READ_MODIFY_WRITE_ATTEMPTS {
                let (read, policy) = api.request("GET", &path, None, None)?;
                if read.status != 200 {
                    return api.call("GET", &path, None, show);
                }
                let etag = header(&read, "etag");
                if if_match.is_some() && if_match != etag {
                    break;
                }
                let mut changed: Vec<String> = policy["statements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .filter(|s| !remove.contains(s))
                    .collect();
                changed.extend(add.iter().cloned());
                body["statements"] = json!(changed);
                let (written, answer) = api.request("PUT", &path, etag.as_deref(), Some(&body))?;
                // 412: the policy changed since it was read; 409: the
                // tenancy changed while this change was being committed.
                if written.status != 412 && written.status != 409 {
                    return api.report(&written, &answer, show);
                }
            }
            anyhow::bail!(
                "{id} kept changing while it was being updated (or no longer has etag {}); \
                 nothing was changed by this command",
                if_match.unwrap_or_else(|| "read".to_owned())
            )
        }
        Command::Delete { id } => api.call("DELETE", &format!("/zprPolicies/{id}"), None, |p| {
            format!("deleted {}\n", field(p, "name"))
        }),
    }
}
