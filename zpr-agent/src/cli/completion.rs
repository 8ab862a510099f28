//! `zpr completion SHELL`: the shell's completion script, from the same
//! clap definitions that parse the command line.

use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell;

#[derive(clap::Args, Debug)]
#[command(after_help = "Install, for example:\n  \
    zpr completion bash > /etc/bash_completion.d/zpr\n  \
    zpr completion zsh > /usr/share/zsh/vendor-completions/_zpr\n  \
    zpr completion fish > /usr/share/fish/vendor_completions.d/zpr.fish")]
pub struct Args {
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    clap_complete::generate(
        shell,
        &mut super::Cli::command(),
        "zpr",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::SUCCESS)
}
