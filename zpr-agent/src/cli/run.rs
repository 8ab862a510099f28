//! `zpr run`: the agent.

use std::process::ExitCode;

use super::{agent_options::AgentOptions, input_files::InputFiles};
use crate::daemon::{self, InputSource};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub inputs: InputFiles,
    #[command(flatten)]
    pub agent: AgentOptions,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    daemon::run(args.agent.into_config(InputSource::Files {
        inventory: args.inputs.inventory,
        policies: args.inputs.policies,
    })?)?;
    Ok(ExitCode::SUCCESS)
}
