//! `zpr serve`: the agent with its inputs in a store, changed through the
//! management API on a Unix socket and authorised by IAM statements.

use std::{path::PathBuf, process::ExitCode};

use super::agent_options::AgentOptions;
use crate::daemon::{self, InputSource, StoreConfig};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The store (SQLite); created when missing.
    #[arg(long, value_name = "FILE", default_value = "/var/lib/zpr/zpr.db")]
    pub store: PathBuf,
    /// An inventory file to import when the store holds no endpoints yet
    /// (first start); later starts keep what the store holds.
    #[arg(long, value_name = "FILE")]
    pub seed_inventory: Option<PathBuf>,
    /// The API's Unix socket [default: <RUN_DIR>/api.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// IAM statements (`Allow group G to manage zpr-policy in tenancy`, ...).
    #[arg(long, value_name = "FILE")]
    pub iam: Option<PathBuf>,
    /// Grants GROUP `manage all-resources` (the first administrators).
    #[arg(long, value_name = "GROUP")]
    pub bootstrap_admin: Vec<String>,
    #[command(flatten)]
    pub agent: AgentOptions,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let socket = args
        .socket
        .unwrap_or_else(|| args.agent.paths.run_dir.join("api.sock"));
    daemon::run(args.agent.into_config(InputSource::Store(StoreConfig {
        path: args.store,
        seed_inventory: args.seed_inventory,
        socket,
        iam_statements: args.iam,
        bootstrap_admins: args.bootstrap_admin,
    }))?)?;
    Ok(ExitCode::SUCCESS)
}
