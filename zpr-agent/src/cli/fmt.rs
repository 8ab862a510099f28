use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::inputs::open::Symlinks;
use crate::inputs::text::read_text;

use anyhow::Context as _;

use crate::lang::{SourceFile, format_source, policy_name_from_path};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Change nothing; name the files that are not in canonical form and exit 1.
    #[arg(long)]
    pub check: bool,
    /// Rewrite the files in place instead of printing them.
    #[arg(long, short, conflicts_with = "check")]
    pub write: bool,
    /// Policy files (`*.zpr`).
    #[arg(required = true, value_name = "POLICY")]
    pub policies: Vec<PathBuf>,
}

/// Prints (or with `--write` rewrites) each file in canonical form. Exit 1
/// when a file has errors or, with `--check`, is not canonical.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    for path in &args.policies {
        let source = read_text(path, "policy", Symlinks::Followed)?;
        let file = path.display().to_string();
        let formatted = match format_source(&policy_name_from_path(path), &source) {
            Ok(formatted) => formatted,
            Err(diagnostics) => {
                let source_file = SourceFile::new(&file, &source);
                for diagnostic in &diagnostics {
                    writeln!(stderr, "{}", source_file.render(diagnostic))?;
                }
                writeln!(stderr, "error: {file} has errors; not formatted")?;
                failed = true;
                continue;
            }
        };
        if args.check {
            if formatted != source {
                writeln!(stdout, "{file}")?;
                failed = true;
            }
        } else if args.write {
            if formatted != source {
                std::fs::write(path, &formatted).with_context(|| format!("writing {file}"))?;
            }
        } else {
            write!(stdout, "{formatted}")?;
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
