//! `zpr key generate`: the Ed25519 key pair an API server signs store
//! states with (`zpr serve --signing-key`) and agents trust
//! (`zpr run --trusted-keys`).

use std::{path::PathBuf, process::ExitCode};

use crate::store::signing;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum KeyCommand {
    /// Write a new key pair: PREFIX.key (private, mode 0600: for
    /// `zpr serve --signing-key`) and PREFIX.pub (for the agents'
    /// `--trusted-keys`). Neither may exist yet.
    Generate {
        /// Where to write, e.g. /etc/zpr/signing/api-2026 (no extension).
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        KeyCommand::Generate { out } => {
            let id = signing::generate(&out)?;
            println!(
                "key {id}: private {}.key (keep it on the API servers), public {}.pub (give \
                 it to every agent)",
                out.display(),
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
