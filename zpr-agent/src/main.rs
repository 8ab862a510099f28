use std::process::ExitCode;

use clap::Parser as _;
use zpr_agent::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return cli::usage_error(error),
    };
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("zpr: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
