//! `zpr run`: the agent.

use std::{io::IsTerminal as _, process::ExitCode};

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

use super::{agent_paths::AgentPaths, input_files::InputFiles};
use crate::{
    daemon::{self, AgentConfig, InputSource},
    datapath::FromWorkloadHook,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub inputs: InputFiles,
    #[command(flatten)]
    pub paths: AgentPaths,
    /// Where the from-workload program runs on each vNIC.
    #[arg(long, value_enum, default_value_t = Hook::Tcx)]
    pub hook: Hook,
    /// error, warn, info or debug (or a tracing filter such as `zpr_agent=debug`).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
}

/// `--hook`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// tcx ingress: keeps GRO/TSO on veth (best TCP throughput there).
    Tcx,
    /// Generic XDP.
    XdpGeneric,
    /// Driver XDP: fastest flood disposal on NICs; costs TCP throughput on veth.
    XdpNative,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_logging(&args.log_level)?;
    daemon::run(AgentConfig {
        inputs: InputSource::Files {
            inventory: args.inputs.inventory,
            policies: args.inputs.policies,
        },
        bpffs: args.paths.bpffs,
        run_dir: args.paths.run_dir,
        hook: args.hook.into(),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The agent's log: to stderr, at `level` (shared with `zpr serve`).
pub fn init_logging(level: &str) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(level)?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    Ok(())
}

impl From<Hook> for FromWorkloadHook {
    fn from(hook: Hook) -> FromWorkloadHook {
        match hook {
            Hook::Tcx => FromWorkloadHook::Tcx,
            Hook::XdpGeneric => FromWorkloadHook::XdpGeneric,
            Hook::XdpNative => FromWorkloadHook::XdpNative,
        }
    }
}
