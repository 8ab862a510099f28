//! `zpr run`: the agent.

use std::process::ExitCode;

use super::{agent_options::AgentOptions, input_files::InputFiles};
use crate::daemon::{self, FileInputs, InputSource};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub inputs: InputFiles,
    #[command(flatten)]
    pub agent: AgentOptions,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let files = FileInputs::watch(args.inputs.inventory.clone(), args.inputs.policies.clone())?;
    let config = args.agent.into_config(InputSource::Files {
        inventory: args.inputs.inventory,
        policies: args.inputs.policies,
    })?;
    daemon::run(config, files)?;
    Ok(ExitCode::SUCCESS)
}
