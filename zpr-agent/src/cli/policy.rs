//! `zpr policy list|get|create|update|delete`: ZPR policies in the store
//! of `zpr serve`, through its API.

use std::{path::PathBuf, process::ExitCode};

use serde_json::{Value, json};

use crate::inputs::text::read_text;

use super::api_client::{ApiCommand, field, lines};

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
    /// UpdateZprPolicy.
    Update {
        id: String,
        #[command(flatten)]
        statements: Statements,
        #[arg(long)]
        description: Option<String>,
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
            let text = read_text(path, "policy")?;
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
    let mut text = format!("{name} ({})\n", field(policy, "id"));
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
        } => {
            let mut body = json!({});
            if let Some(statements) = statements.read()? {
                body["statements"] = json!(statements);
            }
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            api.call("PUT", &format!("/zprPolicies/{id}"), Some(body), show)
        }
        Command::Delete { id } => api.call("DELETE", &format!("/zprPolicies/{id}"), None, |p| {
            format!("deleted {}\n", field(p, "name"))
        }),
    }
}
