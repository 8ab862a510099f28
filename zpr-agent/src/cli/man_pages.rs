//! `zpr man-pages DIR` (hidden; `cargo xtask man` runs it): zpr(1) and
//! zpr-COMMAND(1) for every command, from the clap definitions, so the
//! pages never drift from `--help`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::CommandFactory as _;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write the pages (created if missing).
    pub dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let zpr = super::Cli::command();
    let mut written = 0;
    write_page(&args.dir, "zpr", zpr.clone())?;
    written += 1;
    for command in zpr
        .get_subcommands()
        .filter(|command| !command.is_hide_set())
    {
        let name = format!("zpr-{}", command.get_name());
        write_page(&args.dir, &name, command.clone().name(name.clone()))?;
        written += 1;
    }
    eprintln!("wrote {written} man pages to {}", args.dir.display());
    Ok(ExitCode::SUCCESS)
}

fn write_page(dir: &std::path::Path, name: &str, command: clap::Command) -> anyhow::Result<()> {
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .title(name.to_uppercase())
        .render(&mut page)?;
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))
}
