//! `zpr run`: the agent, from files or from a fleet's store.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use super::{agent_options::AgentOptions, etcd_access::EtcdArgs, fleet_agent::FleetAgent};
use crate::{
    daemon::{self, FileInputs, InputSource},
    store::signing::TrustedKeys,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The inventory: namespaces, VCNs and endpoints (YAML).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "store",
        conflicts_with = "store"
    )]
    pub inventory: Option<PathBuf>,
    /// Policy files (`*.zpr`); together they form the policy set.
    #[arg(value_name = "POLICY", required_unless_present = "store")]
    pub policies: Vec<PathBuf>,
    /// Follow a fleet's tenancy in etcd instead of files.
    #[arg(
        long,
        value_name = "etcd://HOST:PORT[,HOST:PORT]/TENANCY",
        conflicts_with = "policies",
        env = "ZPR_STORE"
    )]
    pub store: Option<String>,
    /// This host's name in the fleet: only endpoints placed on it (or on
    /// no node) are attached here [default: the hostname].
    #[arg(long, value_name = "NAME", requires = "store", env = "ZPR_NODE_NAME")]
    pub node_name: Option<String>,
    /// Refuse to start when the store places no endpoint on this node (a
    /// mistyped node name or tenancy would otherwise leave this host's
    /// workloads unprotected while the agent runs).
    #[arg(long, requires = "store", env = "ZPR_REQUIRE_ENDPOINTS")]
    pub require_endpoints: bool,
    /// Apply only store states signed by one of these public keys (a
    /// `.pub` file of `zpr key generate`, or a directory of them, read
    /// again when they change). Without it the store's content is not
    /// verified, and `zpr status` says so.
    #[arg(
        long,
        value_name = "FILE|DIR",
        requires = "store",
        env = "ZPR_TRUSTED_KEYS"
    )]
    pub trusted_keys: Option<PathBuf>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    #[command(flatten)]
    pub agent: AgentOptions,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match (args.store, args.inventory) {
        (Some(store), _) => {
            let location = args.etcd.location(&store)?;
            let node = match args.node_name {
                Some(node) => node,
                None => hostname()?,
            };
            let fleet = FleetAgent::new(
                location.clone(),
                node.clone(),
                args.require_endpoints,
                args.trusted_keys
                    .as_deref()
                    .map(TrustedKeys::read)
                    .transpose()?,
                &args.agent.paths.run_dir,
            );
            let config = args.agent.into_config(InputSource::Store {
                location: location.to_string(),
                node: Some(node),
            })?;
            daemon::run(config, fleet)?;
        }
        (None, Some(inventory)) => {
            let files = FileInputs::new(inventory.clone(), args.policies.clone());
            let config = args.agent.into_config(InputSource::Files {
                inventory,
                policies: args.policies,
            })?;
            daemon::run(config, files)?;
        }
        (None, None) => unreachable!("clap requires --inventory or --store"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading the hostname (or give --node-name)")?;
    Ok(name.trim().to_owned())
}
