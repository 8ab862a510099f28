//! `zpr attribute ...`: security attributes (keys) of a namespace, with a
//! list of values or freeform, through the API.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::api_client::{ApiCommand, field, lines};

pub type Args = ApiCommand<Command>;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// ListSecurityAttributes of a namespace.
    List { namespace: String },
    /// GetSecurityAttribute.
    Get { namespace: String, name: String },
    /// CreateSecurityAttribute: freeform, or limited to --values.
    Create {
        namespace: String,
        name: String,
        #[command(flatten)]
        values: Values,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// UpdateSecurityAttribute: its values (or --freeform) and description.
    Update {
        namespace: String,
        name: String,
        #[command(flatten)]
        values: Values,
        #[arg(long)]
        description: Option<String>,
    },
    /// DeleteSecurityAttribute.
    Delete { namespace: String, name: String },
}

#[derive(clap::Args, Debug)]
pub struct Values {
    /// The values the attribute may take, comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "freeform")]
    pub values: Vec<String>,
    /// Any value.
    #[arg(long)]
    pub freeform: bool,
}

impl Values {
    /// The `validator` field: absent (no change), null (freeform) or values.
    fn validator(&self) -> Option<Value> {
        if self.freeform {
            Some(Value::Null)
        } else if self.values.is_empty() {
            None
        } else {
            Some(json!({ "validatorType": "ENUM", "values": self.values }))
        }
    }
}

fn show(attribute: &Value) -> String {
    let values = match attribute["validator"]["values"].as_array() {
        Some(values) => values
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        None => "(freeform)".to_owned(),
    };
    format!(
        "{}.{}\t{}\t{values}\n",
        field(attribute, "securityAttributeNamespaceName"),
        field(attribute, "name"),
        field(attribute, "id")
    )
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let api = &args.api;
    let list =
        |namespace: &str| format!("/securityAttributeNamespaces/{namespace}/securityAttributes");
    match args.command {
        Command::List { namespace } => api.call("GET", &list(&namespace), None, |answer| {
            lines(answer, |a| show(a).trim_end().to_owned())
        }),
        Command::Get { namespace, name } => {
            api.call("GET", &format!("{}/{name}", list(&namespace)), None, show)
        }
        Command::Create {
            namespace,
            name,
            values,
            description,
        } => {
            let mut body = json!({ "name": name, "description": description });
            if let Some(validator) = values.validator().filter(|v| !v.is_null()) {
                body["validator"] = validator;
            }
            api.call("POST", &list(&namespace), Some(body), show)
        }
        Command::Update {
            namespace,
            name,
            values,
            description,
        } => {
            let mut body = json!({});
            if let Some(validator) = values.validator() {
                body["validator"] = validator;
            }
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            api.call(
                "PUT",
                &format!("{}/{name}", list(&namespace)),
                Some(body),
                show,
            )
        }
        Command::Delete { namespace, name } => api.call(
            "DELETE",
            &format!("{}/{name}", list(&namespace)),
            None,
            |a| format!("deleted {}\n", field(a, "name")),
        ),
    }
}
