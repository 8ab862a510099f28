//! `zpr diff`: before a change goes live, exactly which paths it opens and
//! closes. Exit 0 when nothing changes, 2 when something does, 1 on error
//! (like `terraform plan -detailed-exitcode`), so CI can gate on it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};

use super::Output;
use super::agent_paths::AgentPaths;
use super::diff_live::revoked_flows;
use super::input_files::InputFiles;
use crate::compile::Report;
use crate::compile::{Tables, compile_pair, diff};
use crate::inputs::{Checker, Inputs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The policy repository before the change: a directory holding
    /// `inventory.yaml` and the `*.zpr` files (with --base: the directory
    /// to compare, default `.`).
    #[arg(value_name = "OLD")]
    pub old: Option<PathBuf>,
    /// The policy repository after the change.
    #[arg(value_name = "NEW")]
    pub new: Option<PathBuf>,
    /// Compare the working tree's directory against this git revision of it.
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// Also list the connections in the live conntrack tables that the
    /// change would cut when applied (root; the agent's paths below).
    #[arg(long)]
    pub live: bool,
    #[command(flatten)]
    pub paths: AgentPaths,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

const NOTHING_CHANGES: u8 = 0;
const ERROR: u8 = 1;
const SOMETHING_CHANGES: u8 = 2;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match compare(&args) {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(error) => {
            eprintln!("zpr diff: {error:#}");
            Ok(ExitCode::from(ERROR))
        }
    }
}

fn compare(args: &Args) -> anyhow::Result<u8> {
    // One checker for both sides, as the agent checks (its Plans hold the
    // tables of the endpoints with an interface, whose fit it counts):
    // NEW parses only the statements and the inventory that differ from
    // OLD's, and compiles from OLD's Plan.
    let mut checker = Checker::remembering(Tables::Local);
    let (old, new) = match (&args.base, &args.old, &args.new) {
        (Some(revision), directory, None) => {
            let directory = directory.clone().unwrap_or_else(|| PathBuf::from("."));
            let old = Checkout::of(revision, &directory)?;
            (
                load(&old.directory, &mut checker)?,
                load(&directory, &mut checker)?,
            )
        }
        (None, Some(old), Some(new)) => (load(old, &mut checker)?, load(new, &mut checker)?),
        (Some(_), _, Some(_)) => bail!("--base REV takes one directory, not two"),
        (None, _, _) => bail!("give two directories, OLD and NEW, or --base REV [DIR]"),
    };
    let (Some(old), Some(new)) = (old, new) else {
        // The checker has printed the problems.
        return Ok(ERROR);
    };
    let [before, after] = compile_pair(
        (&old.policies, &old.inventory),
        (&new.policies, &new.inventory),
    );
    let mut report = Report::new(&diff(&before, &after));
    if args.live {
        report.revoked = Some(revoked_flows(
            &args.paths.pins(),
            &args.paths.run_dir,
            &old,
            &new,
        )?);
    }
    let mut stdout = std::io::stdout().lock();
    match args.output {
        Output::Text => write!(stdout, "{report}")?,
        Output::Json => {
            serde_json::to_writer_pretty(&mut stdout, &report)?;
            writeln!(stdout)?;
        }
    }
    let code = if report.is_empty() {
        NOTHING_CHANGES
    } else {
        SOMETHING_CHANGES
    };
    // The process ends here: freeing two Plans and the checker's memory, a
    // few million small allocations at size, would only delay the answer.
    std::mem::forget((checker, old, new, before, after));
    Ok(code)
}

/// A policy repository's inputs, checked by the one checker.
fn load(directory: &Path, checker: &mut Checker) -> anyhow::Result<Option<Inputs>> {
    let mut policies: Vec<PathBuf> = std::fs::read_dir(directory)
        .with_context(|| format!("reading {}", directory.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", directory.display()))?;
    policies.retain(|path| path.extension().is_some_and(|ext| ext == "zpr"));
    policies.sort();
    if policies.is_empty() {
        bail!("{} holds no *.zpr files", directory.display());
    }
    InputFiles {
        inventory: directory.join("inventory.yaml"),
        policies,
    }
    .load_with(checker)
}

/// A directory's files as of a git revision, in a temporary directory
/// removed on drop.
struct Checkout {
    directory: PathBuf,
}

impl Checkout {
    fn of(revision: &str, directory: &Path) -> anyhow::Result<Checkout> {
        let names = git(directory, &["ls-tree", "--name-only", revision, "--", "."])?;
        let checkout = Checkout {
            directory: std::env::temp_dir().join(format!("zpr-diff-{}", std::process::id())),
        };
        std::fs::create_dir_all(&checkout.directory)?;
        for name in names.lines() {
            let wanted = name == "inventory.yaml" || name.ends_with(".zpr");
            if !wanted || name.contains('/') {
                continue;
            }
            let text = git(directory, &["show", &format!("{revision}:./{name}")])?;
            std::fs::write(checkout.directory.join(name), text)?;
        }
        Ok(checkout)
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

fn git(directory: &Path, arguments: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(directory)
        .args(arguments)
        .output()
        .context("running git")?;
    if !output.status.success() {
        bail!(
            "git {}: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).context("git printed something other than UTF-8")
}
