//! `zpr diff`: before a change goes live, exactly which paths it opens and
//! closes. Exit 0 when nothing changes, 2 when something does, 1 on error
//! (like `terraform plan -detailed-exitcode`), so CI can gate on it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use super::Output;
use super::agent_paths::AgentPaths;
use super::diff_live::revoked_flows;
use super::git_revision::{files_at, origin};
use super::input_files::{InputFiles, reported};
use crate::compile::Report;
use crate::compile::{Tables, compile_pair, diff};
use crate::inputs::text::text_of;
use crate::inputs::{Checker, InputText, Inputs};
use crate::lang::policy_name_from_path;

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
    // Both sides are trees under review: their symlinks must stay inside.
    let mut checker = Checker::remembering(Tables::Local).within_their_directories();
    let (old, new) = match (&args.base, &args.old, &args.new) {
        (Some(revision), directory, None) => {
            let directory = directory.clone().unwrap_or_else(|| PathBuf::from("."));
            (
                load_revision(revision, &directory, &mut checker)?,
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
    policies.retain(|path| is_policy(path));
    policies.sort();
    if policies.is_empty() {
        bail!("{} holds no *.zpr files", directory.display());
    }
    InputFiles {
        inventory: directory.join(INVENTORY),
        policies,
    }
    .load_with(checker)
}

const INVENTORY: &str = "inventory.yaml";

fn is_policy(path: &Path) -> bool {
    path.extension().is_some_and(|extension| extension == "zpr")
}

/// A policy repository's inputs as of a git revision, checked by the one
/// checker.
fn load_revision(
    revision: &str,
    directory: &Path,
    checker: &mut Checker,
) -> anyhow::Result<Option<Inputs>> {
    let origin = |name: &Path| origin(revision, directory, name);
    let mut inventory = None;
    let mut policies = Vec::new();
    let wanted = |name: &Path| name == Path::new(INVENTORY) || is_policy(name);
    for (name, content) in files_at(revision, directory, wanted)? {
        if name == Path::new(INVENTORY) {
            let text = text_of(content, &origin(&name), "inventory")?;
            inventory = Some(InputText::inventory(origin(&name), text));
        } else {
            let text = text_of(content, &origin(&name), "policy")?;
            policies.push(InputText::policy(
                origin(&name),
                policy_name_from_path(&name),
                text,
            ));
        }
    }
    let inventory =
        inventory.with_context(|| format!("{} does not exist", origin(Path::new(INVENTORY))))?;
    if policies.is_empty() {
        bail!("{} holds no *.zpr files", origin(Path::new("")));
    }
    reported(checker.check(Some(&inventory), &policies))
}
