use std::process::ExitCode;

use clap::Parser as _;
use zpr_agent::cli::{self, Cli};

fn main() -> ExitCode {
    match cli::run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("zpr: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
